//! The `system` Durable Object instance's routes: single-use OAuth states, the index of
//! connections and Keap hook tokens.

use serde::{Deserialize, Serialize};

use crate::connection::Provider;
use crate::oauth::OAuthState;
use crate::Timestamp;

/// `POST /internal/oauth-states`: a pending OAuth state with its expiry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingState {
    /// The state and who it is bound to.
    pub state: OAuthState,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
}

/// `POST /internal/oauth-states/consume`: the state to take (answered with the
/// [`OAuthState`]; 404 unknown, 410 expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumeState {
    /// The `state` query parameter the provider sent back.
    pub value: String,
}

/// `PUT /internal/index` and `GET /internal/index`: one connection in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Connection id (also the name of its Durable Object).
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Provider.
    pub provider: Provider,
    /// Provider account.
    pub account: String,
}

/// `PUT /internal/hooks/{token}`: a Keap REST hook's token (the unguessable part of its URL)
/// and what it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookToken {
    /// Connection the hook delivers for.
    pub connection_id: String,
    /// Keap's hook keys registered with this token (to delete them with the connection).
    #[serde(default)]
    pub hook_keys: Vec<String>,
    /// Whether Keap completed the X-Hook-Secret handshake.
    #[serde(default)]
    pub verified: bool,
}

/// `GET /oauth/*/initiate` with `Accept: application/json`: where to send the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeUrl {
    /// The provider's authorize page, with our state.
    pub authorize_url: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_requests_keep_their_wire_shape() {
        let entry = r#"{"id":"keap_0123456789abcdef01234567","user_id":"u1","provider":"keap","account":"app"}"#;
        let decoded: IndexEntry = serde_json::from_str(entry).expect("decodes");
        assert_eq!(decoded.provider, Provider::Keap);
        assert_eq!(serde_json::to_string(&decoded).expect("serialises"), entry);
        let hook: HookToken =
            serde_json::from_str(r#"{"connection_id":"keap_1"}"#).expect("defaults");
        assert_eq!(
            serde_json::to_string(&hook).expect("serialises"),
            r#"{"connection_id":"keap_1","hook_keys":[],"verified":false}"#
        );
        let consume = ConsumeState { value: "s".into() };
        assert_eq!(
            serde_json::to_string(&consume).expect("serialises"),
            r#"{"value":"s"}"#
        );
        let url = AuthorizeUrl {
            authorize_url: "https://x".into(),
        };
        assert_eq!(
            serde_json::to_string(&url).expect("serialises"),
            r#"{"authorize_url":"https://x"}"#
        );
    }
}
