//! The OAuth `state` parameter: an unguessable, single-use, short-lived value that ties a
//! provider's callback to the flow this deployment started (RFC 6749 §10.12, CSRF).
//!
//! The coordinator stores an [`OAuthState`] under its value when the flow starts and deletes
//! it on the first callback that presents it, so a replay finds nothing: single use is the
//! store's job, expiry is [`check_state`]'s.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::{Provider, Timestamp};

/// How long a started flow may take before its state is refused: 10 minutes.
pub const STATE_TTL_MS: i64 = 600_000;

/// Length of a state value: 32 bytes in unpadded base64.
const STATE_VALUE_LEN: usize = 43;

/// A started OAuth flow, stored under its `value` until the callback arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthState {
    /// The `state` sent to the provider ([`new_state_value`]).
    pub value: String,
    /// The Edge Sync user who started the flow.
    pub user_id: String,
    /// The provider being connected.
    pub provider: Provider,
    /// The account, when known up front (the shop domain for Shopify; Keap's comes with the token).
    pub account: Option<String>,
    /// When the flow started.
    pub created_at: Timestamp,
}

impl OAuthState {
    /// A new flow started at `now`, with a state value made from `random` (32 CSPRNG bytes).
    pub fn new(
        random: [u8; 32],
        user_id: &str,
        provider: Provider,
        account: Option<String>,
        now: Timestamp,
    ) -> Self {
        Self {
            value: new_state_value(random),
            user_id: user_id.to_owned(),
            provider,
            account,
            created_at: now,
        }
    }

    /// The first instant at which the state is refused as expired.
    pub fn expires_at(&self) -> Timestamp {
        self.created_at.plus_millis(STATE_TTL_MS)
    }
}

/// Why a callback's state was refused. The browser sees the message; it reveals nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// No flow is stored under this state: never issued, forged, or already used once.
    #[error("state is unknown or was already used")]
    Unknown,
    /// The flow is older than [`STATE_TTL_MS`].
    #[error("state has expired; start the connection again")]
    Expired,
}

/// A state value from 32 random bytes (from the platform CSPRNG): 256 bits, URL-safe base64
/// without padding, so it needs no escaping in a query string.
pub fn new_state_value(random: [u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(random)
}

/// Whether `value` has the shape of a value from [`new_state_value`]; lets a callback refuse
/// junk before using it as a storage key.
pub fn is_well_formed_state(value: &str) -> bool {
    value.len() == STATE_VALUE_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks the state the store found for a callback (`None`: nothing stored under it).
pub fn check_state(stored: Option<&OAuthState>, now: Timestamp) -> Result<(), StateError> {
    let state = stored.ok_or(StateError::Unknown)?;
    if now >= state.expires_at() {
        return Err(StateError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_767_225_600_000);

    fn state() -> OAuthState {
        OAuthState::new([7; 32], "user-1", Provider::Keap, None, T0)
    }

    #[test]
    fn values_are_url_safe_and_distinct() {
        let a = new_state_value([0xfb; 32]);
        let b = new_state_value([0xfc; 32]);
        assert_ne!(a, b);
        assert_eq!(a.len(), STATE_VALUE_LEN);
        assert!(is_well_formed_state(&a) && is_well_formed_state(&b));
        assert!(!a.contains(['+', '/', '=']));
        assert!(!is_well_formed_state("short"));
        assert!(!is_well_formed_state(&format!("{}=", &a[..42])));
    }

    #[test]
    fn fresh_state_passes_until_its_ttl() {
        let stored = state();
        assert_eq!(check_state(Some(&stored), T0), Ok(()));
        assert_eq!(
            check_state(Some(&stored), T0.plus_millis(STATE_TTL_MS - 1)),
            Ok(())
        );
        assert_eq!(
            check_state(Some(&stored), T0.plus_millis(STATE_TTL_MS)),
            Err(StateError::Expired)
        );
    }

    #[test]
    fn missing_or_used_state_is_unknown() {
        assert_eq!(check_state(None, T0), Err(StateError::Unknown));
        assert_eq!(
            StateError::Unknown.to_string(),
            "state is unknown or was already used"
        );
    }

    #[test]
    fn serde_round_trip() {
        let stored = OAuthState {
            account: Some("acme.myshopify.com".to_owned()),
            provider: Provider::Shopify,
            ..state()
        };
        let json = serde_json::to_value(&stored).expect("serialisable");
        assert_eq!(json["provider"], "shopify");
        assert_eq!(json["created_at"], T0.as_millis());
        assert_eq!(
            serde_json::from_value::<OAuthState>(json).expect("parses"),
            stored
        );
    }
}
