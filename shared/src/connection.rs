//! Connections: one user's authorisation of one provider account, and how they are named.
//!
//! A connection is owned by exactly one Durable Object, addressed by [`connection_id`]. The id
//! is derived, not random, so a second OAuth flow for the same user and account lands on the
//! same object and replaces its tokens instead of creating a rival that would race it for
//! Keap's single-use refresh tokens (<https://github.com/infusionsoft/infusionsoft-php/issues/99>).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::token_lifecycle::{ConnectionStatus, TokenLifecycle};
use crate::Timestamp;

/// A provider Edge Sync connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Keap (formerly Infusionsoft) CRM.
    Keap,
    /// Shopify, one shop per connection.
    Shopify,
}

impl Provider {
    /// Every provider, in a stable order.
    pub const ALL: [Provider; 2] = [Provider::Keap, Provider::Shopify];

    /// The lowercase name used in URLs, ids, storage and JSON (`keap`, `shopify`).
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Keap => "keap",
            Provider::Shopify => "shopify",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider name that is neither `keap` nor `shopify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider; expected `keap` or `shopify`")]
pub struct UnknownProvider;

impl FromStr for Provider {
    type Err = UnknownProvider;

    /// Parses `keap` or `shopify`, ignoring ASCII case (route segments, query parameters).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or(UnknownProvider)
    }
}

/// The id of the connection of `user_id` to `account` at `provider`:
/// `"{provider}_" + first 24 hex chars of sha256("{provider}\n{account}\n{user_id}")`.
///
/// Pass the account in its canonical form (a lowercase shop domain, Keap's app name) so the
/// same account always yields the same id. The newline separators keep `("a\nb", "c")` and
/// `("a", "b\nc")` apart only if neither part contains a newline; account names and user ids
/// never do.
pub fn connection_id(provider: Provider, account: &str, user_id: &str) -> String {
    let digest = Sha256::digest(format!("{provider}\n{account}\n{user_id}").as_bytes());
    // 12 bytes = 24 hex chars = 96 bits: collisions are out of reach for any number of
    // connections one deployment will ever hold.
    format!("{provider}_{}", hex::encode(&digest[..12]))
}

/// Whether `id` has the shape [`connection_id`] produces (`keap_<24 hex>`,
/// `shopify_<24 hex>`), so arbitrary names never create Durable Objects.
pub fn is_connection_id(id: &str) -> bool {
    let Some((provider, digest)) = id.split_once('_') else {
        return false;
    };
    provider
        .parse::<Provider>()
        .is_ok_and(|p| p.as_str() == provider)
        && digest.len() == 24
        && digest.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What the coordinator shows about a connection (admin and status routes). Never tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionView {
    /// The connection id ([`connection_id`]).
    pub id: String,
    /// The Edge Sync user who authorised it.
    pub user_id: String,
    /// Which provider.
    pub provider: Provider,
    /// The provider account: the shop domain, or Keap's app name.
    pub account: String,
    /// Whether its tokens are usable.
    pub status: ConnectionStatus,
    /// Scopes the provider granted, as the provider wrote them.
    pub scopes: Option<String>,
    /// When the access token expires (ISO 8601); `None` when it never does (Shopify).
    pub access_expires_at: Option<String>,
    /// When the tokens were last obtained, by the OAuth flow or a refresh (ISO 8601).
    pub last_refresh_at: Option<String>,
    /// Why the last refresh failed, if it did (never contains a token).
    pub last_error: Option<String>,
    /// When the connection was first made (ISO 8601).
    pub created_at: String,
}

impl ConnectionView {
    /// Builds the view of a connection from its identity and token lifecycle.
    pub fn new(
        user_id: &str,
        provider: Provider,
        account: &str,
        lifecycle: &TokenLifecycle,
        scopes: Option<String>,
        created_at: Timestamp,
    ) -> Self {
        Self {
            id: connection_id(provider, account, user_id),
            user_id: user_id.to_owned(),
            provider,
            account: account.to_owned(),
            status: lifecycle.status,
            scopes,
            access_expires_at: lifecycle.access_expires_at.map(Timestamp::to_iso8601),
            last_refresh_at: lifecycle.last_refresh_at.map(Timestamp::to_iso8601),
            last_error: lifecycle.last_error.clone(),
            created_at: created_at.to_iso8601(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_connection_ids() {
        assert!(is_connection_id(&connection_id(
            Provider::Keap,
            "ab1.infusionsoft.com",
            "u"
        )));
        assert!(is_connection_id(&connection_id(
            Provider::Shopify,
            "s.myshopify.com",
            "u"
        )));
        assert!(!is_connection_id("keap_123"));
        assert!(!is_connection_id("stripe_000000000000000000000000"));
        assert!(!is_connection_id("system"));
    }

    #[test]
    fn provider_round_trips_through_text_and_json() {
        for provider in Provider::ALL {
            assert_eq!(provider.to_string().parse::<Provider>(), Ok(provider));
            let json = serde_json::to_string(&provider).expect("serialisable");
            assert_eq!(json, format!("\"{provider}\""));
            assert_eq!(
                serde_json::from_str::<Provider>(&json).expect("parses"),
                provider
            );
        }
        assert_eq!("Shopify".parse::<Provider>(), Ok(Provider::Shopify));
        assert_eq!("salesforce".parse::<Provider>(), Err(UnknownProvider));
        assert!(serde_json::from_str::<Provider>("\"Keap\"").is_err());
    }

    #[test]
    fn connection_id_is_deterministic_and_separates_its_inputs() {
        let id = connection_id(Provider::Shopify, "acme.myshopify.com", "user-1");
        assert_eq!(
            id,
            connection_id(Provider::Shopify, "acme.myshopify.com", "user-1")
        );
        let expected = hex::encode(&Sha256::digest(b"shopify\nacme.myshopify.com\nuser-1")[..12]);
        assert_eq!(id, format!("shopify_{expected}"));
        assert_eq!(id.len(), "shopify_".len() + 24);
        assert_ne!(
            id,
            connection_id(Provider::Shopify, "acme.myshopify.com", "user-2")
        );
        assert_ne!(
            id,
            connection_id(Provider::Keap, "acme.myshopify.com", "user-1")
        );
        assert!(connection_id(Provider::Keap, "ab123", "u").starts_with("keap_"));
    }

    #[test]
    fn view_carries_lifecycle_times_as_iso_and_no_tokens() {
        let now = Timestamp::from_millis(1_767_225_600_000);
        let lifecycle = TokenLifecycle::new_from_grant(86_400, true, now);
        let view = ConnectionView::new(
            "user-1",
            Provider::Keap,
            "ab123.infusionsoft.com",
            &lifecycle,
            Some("full|ab123.infusionsoft.com".to_owned()),
            now,
        );
        let json = serde_json::to_value(&view).expect("serialisable");
        assert_eq!(json["status"], "active");
        assert_eq!(json["provider"], "keap");
        assert_eq!(json["access_expires_at"], "2026-01-02T00:00:00.000Z");
        assert_eq!(json["last_refresh_at"], "2026-01-01T00:00:00.000Z");
        assert_eq!(json["created_at"], "2026-01-01T00:00:00.000Z");
        assert_eq!(
            json["id"],
            connection_id(Provider::Keap, "ab123.infusionsoft.com", "user-1")
        );
        let back: ConnectionView = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, view);
    }
}
