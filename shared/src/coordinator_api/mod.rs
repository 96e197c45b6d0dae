//! The coordinator's connection API (`/coordinator/connections/{id}/...`) as typed requests,
//! decoded once by the coordinator and built by sync-worker, in the manner of svix-server's
//! `...In` structs: a body that does not decode is the caller's mistake (400 with serde's
//! message, which names the field), and sync state exists only for the provider's real
//! resources ([`Resource::for_provider`]).

mod answers;
mod connection;
mod error;
mod events;
mod live;
mod propagation;
mod runs;
mod system;

pub use answers::*;
pub use connection::{ConnectRequest, PollConnection, PollRepo, PollReport};
pub use error::{CoordinatorError, ErrorBody};
pub use events::{ConnectionLookup, EventEnvelope, StoreEvent};
pub use live::{live_ticket_key, LiveMessage, LiveTicket, UserNotice, LIVE_TICKET_TTL_MS};
pub use propagation::{
    LastPropagation, PlatformCall, PlatformCallReport, PropagationStatus, PropagationSwitch,
    PutPropagation,
};
pub use runs::ContinueRun;
pub use system::{AuthorizeUrl, ConsumeState, HookToken, IndexEntry, PendingState};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::connection::Provider;
use crate::sync::Resource;
use crate::sync_state::Cursor;

/// Why a request to the connection API was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is not JSON at all (or is empty where one is required).
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
    /// The body is JSON but not the request: a field is missing, unknown or of the wrong type.
    #[error("invalid request body: {0}")]
    InvalidBody(String),
    /// The provider has no such resource.
    #[error("unknown {provider} resource `{name}`; expected one of: {expected}")]
    UnknownResource {
        /// The connection's provider.
        provider: Provider,
        /// The name asked for.
        name: String,
        /// The resources it has, comma-separated.
        expected: String,
    },
    /// The id is not a connection id (`keap_<24 hex>`, `shopify_<24 hex>`).
    #[error("not a connection id")]
    NotAConnection,
}

impl RequestError {
    /// Whether the request names something that does not exist (a 404), rather than being
    /// malformed (a 400).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            RequestError::UnknownResource { .. } | RequestError::NotAConnection
        )
    }
}

/// Decodes a JSON body into `T`, telling malformed JSON from a body of the wrong shape.
pub fn decode<T: DeserializeOwned>(body: &str) -> Result<T, RequestError> {
    serde_json::from_str(body).map_err(|e| {
        if e.is_data() {
            RequestError::InvalidBody(e.to_string())
        } else if body.trim().is_empty() {
            RequestError::MalformedJson("the body is empty".to_owned())
        } else {
            RequestError::MalformedJson(e.to_string())
        }
    })
}

/// The provider of a connection id, from its prefix ([`crate::connection::connection_id`]).
pub fn provider_of(connection_id: &str) -> Result<Provider, RequestError> {
    if !crate::connection::is_connection_id(connection_id) {
        return Err(RequestError::NotAConnection);
    }
    connection_id
        .split_once('_')
        .and_then(|(provider, _)| provider.parse().ok())
        .ok_or(RequestError::NotAConnection)
}

/// The resource of `provider` named `name` in a route (exact name, as sync-worker sends it).
pub fn resource(provider: Provider, name: &str) -> Result<Resource, RequestError> {
    Resource::for_provider(provider)
        .iter()
        .copied()
        .find(|r| r.name() == name)
        .ok_or_else(|| RequestError::UnknownResource {
            provider,
            name: name.chars().take(64).collect(),
            expected: Resource::for_provider(provider)
                .iter()
                .map(|r| r.name())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The lease sync-worker holds on a connection while it starts runs, so two concurrent
/// start requests give one set of runs and one 409 (a lease, but no resource).
pub const START_LEASE: &str = "sync-start";

/// What `.../sync/{name}/lease` may name: a resource of `provider`, or [`START_LEASE`].
pub fn lease_scope(provider: Provider, name: &str) -> Result<(), RequestError> {
    if name == START_LEASE {
        return Ok(());
    }
    resource(provider, name).map(|_| ())
}

/// `POST .../sync/{resource}/lease`: take (or renew) the run lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquireLease {
    /// The run that wants it (not empty).
    pub run_id: String,
    /// How long it may hold it, ms (positive).
    pub ttl_ms: i64,
}

impl AcquireLease {
    /// Refuses an empty run id or a lifetime that is not positive.
    pub fn validate(self) -> Result<Self, RequestError> {
        if self.run_id.is_empty() || self.ttl_ms <= 0 {
            return Err(RequestError::InvalidBody(
                "run_id must not be empty and ttl_ms must be positive".to_owned(),
            ));
        }
        Ok(self)
    }
}

/// `DELETE .../sync/{resource}/lease`: the run releasing the lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRef {
    /// The run.
    pub run_id: String,
}

/// `PUT .../sync/{resource}/cursor`: move the cursor (lease holder only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutCursor {
    /// The run moving it.
    pub run_id: String,
    /// The new cursor, or `null` to start over (full resync).
    pub cursor: Option<Cursor>,
}

/// `PUT .../sync/{resource}/run`: record a run's progress or result (lease holder only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutRun {
    /// The run.
    pub run_id: String,
    /// Result and counts (state, pages, records, errors, progress), shown by `/sync/status`.
    pub result: serde_json::Value,
    /// Whether the run is over (then its lease is released and its continuation dropped).
    #[serde(default)]
    pub finished: bool,
    /// When the run should be continued in a fresh sync-worker invocation (Unix ms): now
    /// when it paused with work left, or later as a watchdog in case the invocation dies.
    #[serde(default)]
    pub continue_at_ms: Option<i64>,
    /// Moves the resource cursor in the same write (the page's rows are committed).
    #[serde(default)]
    pub cursor: Option<Cursor>,
}

/// `POST .../budget/take`: draw from the connection's shared rate budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TakeBudget {
    /// Requests about to be made.
    pub cost: u32,
}

/// `POST .../budget/penalize`: nobody calls the provider before a time (its 429 said so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Penalize {
    /// Unix milliseconds before which nobody may call the provider.
    pub until_ms: i64,
}

/// `POST .../token` (body optional): a valid access token. No `Debug`: it may hold a token.
#[derive(Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_debug_implementations)]
pub struct TokenRequest {
    /// The access token the provider just refused with 401 (forces one refresh).
    #[serde(default)]
    pub rejected_access_token: Option<String>,
}

impl TokenRequest {
    /// Decodes the optional body: empty means "no rejected token".
    pub fn decode(body: &str) -> Result<Self, RequestError> {
        if body.trim().is_empty() {
            return Ok(Self::default());
        }
        decode(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_missing_and_mistyped_bodies_are_told_apart() {
        let error = decode::<AcquireLease>("{\"run_id\":").expect_err("malformed");
        assert!(matches!(error, RequestError::MalformedJson(_)), "{error}");
        let error = decode::<AcquireLease>("  ").expect_err("empty");
        assert_eq!(error.to_string(), "malformed JSON body: the body is empty");
        let error = decode::<AcquireLease>(r#"{"run_id":"r1"}"#).expect_err("missing");
        assert!(
            error.to_string().contains("missing field `ttl_ms`"),
            "{error}"
        );
        let error = decode::<AcquireLease>(r#"{"run_id":"r1","ttl_ms":"soon"}"#).expect_err("type");
        assert!(error.to_string().contains("invalid type"), "{error}");
        let error = decode::<TakeBudget>(r#"{"cost":-1}"#).expect_err("negative");
        assert!(matches!(error, RequestError::InvalidBody(_)), "{error}");
        let error = decode::<RunRef>(r#"{"run_id":"r","extra":1}"#).expect_err("unknown");
        assert!(
            error.to_string().contains("unknown field `extra`"),
            "{error}"
        );
        assert!(!error.is_not_found());
        let lease = decode::<AcquireLease>(r#"{"run_id":"r1","ttl_ms":1000}"#).expect("valid");
        assert_eq!(lease.clone().validate(), Ok(lease));
        assert!(decode::<AcquireLease>(r#"{"run_id":"","ttl_ms":1}"#)
            .expect("decodes")
            .validate()
            .is_err());
    }

    #[test]
    fn resources_exist_only_for_their_provider() {
        let keap = provider_of("keap_0123456789abcdef01234567").expect("keap id");
        assert_eq!(keap, Provider::Keap);
        assert_eq!(resource(keap, "contacts"), Ok(Resource::KeapContacts));
        let error = resource(keap, "products").expect_err("a Shopify resource");
        assert!(error.is_not_found());
        assert_eq!(
            error.to_string(),
            "unknown keap resource `products`; expected one of: contacts, opportunities, orders, tasks"
        );
        let shopify = provider_of("shopify_0123456789abcdef01234567").expect("shopify id");
        assert_eq!(resource(shopify, "orders"), Ok(Resource::ShopifyOrders));
        assert!(resource(shopify, "tasks").is_err());
        assert_eq!(provider_of("system"), Err(RequestError::NotAConnection));
        assert_eq!(lease_scope(keap, START_LEASE), Ok(()));
        assert_eq!(lease_scope(keap, "tasks"), Ok(()));
        assert!(lease_scope(keap, "widgets").is_err());
        assert!(
            resource(keap, START_LEASE).is_err(),
            "no cursor or run for the start lease"
        );
    }

    #[test]
    fn token_request_body_is_optional() {
        assert_eq!(
            TokenRequest::decode("")
                .expect("empty")
                .rejected_access_token,
            None
        );
        assert!(TokenRequest::decode(r#"{"rejected_access_token":5}"#).is_err());
    }
}
