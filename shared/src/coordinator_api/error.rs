//! Why a Durable Object route refused a request, as one typed error: each variant knows its
//! HTTP status and the JSON body the caller reads (`{"error": ..., ...}`), so the coordinator
//! maps errors to statuses in one place and callers parse one [`ErrorBody`].

use serde::{Deserialize, Serialize};

use super::RequestError;
use crate::sync_state::LeaseHeld;
use crate::token_lifecycle::ConnectionStatus;
use crate::Timestamp;

/// A route's refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordinatorError {
    /// The request does not decode, or names what does not exist (400 or 404).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The thing the route is about does not exist (404; the message says what).
    #[error("{0}")]
    NotFound(&'static str),
    /// A resource name that cannot be one (400).
    #[error("invalid resource name")]
    InvalidResourceName,
    /// A credential that opens nothing: an unknown, spent or expired live ticket (401).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A single-use value that existed but has expired (410).
    #[error("expired")]
    Expired,
    /// Another run holds the resource's lease (409).
    #[error("a run is already in flight")]
    LeaseHeld(LeaseHeld),
    /// A write by a run that does not hold the lease (409).
    #[error("lease not held by this run")]
    LeaseNotHeld,
    /// The connection's shared rate budget is empty for this long (429).
    #[error("rate budget exhausted")]
    BudgetExhausted {
        /// How long until the cost fits, ms.
        retry_after_ms: u64,
    },
    /// Too many events from one source (429).
    #[error("rate limited")]
    RateLimited {
        /// When to try again, seconds.
        retry_after_secs: u64,
    },
    /// The connection needs a new OAuth flow (409).
    #[error("reauth_required")]
    ReauthRequired {
        /// Why.
        reason: String,
    },
    /// The provider's token endpoint failed; try again later (503).
    #[error("token endpoint unavailable")]
    TokenUnavailable {
        /// Why.
        reason: String,
        /// When to try again, seconds.
        retry_after_secs: i64,
    },
    /// A delete that could not be completed now; nothing was deleted (503).
    #[error("{reason}")]
    RetryLater {
        /// What could not be done.
        reason: &'static str,
        /// Events still waiting for delivery.
        pending_events: usize,
    },
    /// The deployment is misconfigured (500; the message names the setting).
    #[error("{0}")]
    Misconfigured(String),
    /// Something failed that the caller cannot fix (500; the detail goes to the logs).
    #[error("internal error")]
    Internal,
}

/// The JSON body of every refusal: `error` plus the fields the variant carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// The run holding the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// When the lease holding the resource lapses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// The connection's status (`reauth_required`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ConnectionStatus>,
    /// Why (a provider's refusal, a failure's detail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When to try again, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<i64>,
    /// When to try again, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Events still waiting for delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_events: Option<usize>,
}

impl ErrorBody {
    /// A body with only a message.
    pub fn message(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            run_id: None,
            expires_at: None,
            status: None,
            reason: None,
            retry_after_secs: None,
            retry_after_ms: None,
            pending_events: None,
        }
    }
}

impl CoordinatorError {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            CoordinatorError::Request(e) if e.is_not_found() => 404,
            CoordinatorError::Request(_) | CoordinatorError::InvalidResourceName => 400,
            CoordinatorError::NotFound(_) => 404,
            CoordinatorError::Unauthorized(_) => 401,
            CoordinatorError::Expired => 410,
            CoordinatorError::LeaseHeld(_)
            | CoordinatorError::LeaseNotHeld
            | CoordinatorError::ReauthRequired { .. } => 409,
            CoordinatorError::BudgetExhausted { .. } | CoordinatorError::RateLimited { .. } => 429,
            CoordinatorError::TokenUnavailable { .. } | CoordinatorError::RetryLater { .. } => 503,
            CoordinatorError::Misconfigured(_) | CoordinatorError::Internal => 500,
        }
    }

    /// The `Retry-After` header's seconds, for refusals that say when to come back.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            CoordinatorError::BudgetExhausted { retry_after_ms } => {
                Some(retry_after_ms.div_ceil(1000).max(1))
            }
            CoordinatorError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            CoordinatorError::TokenUnavailable {
                retry_after_secs, ..
            } => Some(u64::try_from(*retry_after_secs).unwrap_or(1)),
            CoordinatorError::RetryLater { .. } => Some(5),
            _ => None,
        }
    }

    /// The JSON body the caller reads.
    pub fn body(&self) -> ErrorBody {
        let mut body = ErrorBody::message(self.to_string());
        match self {
            CoordinatorError::LeaseHeld(held) => {
                body.run_id = Some(held.run_id.clone());
                body.expires_at = Some(held.expires_at);
            }
            CoordinatorError::BudgetExhausted { retry_after_ms } => {
                body.retry_after_ms = Some(*retry_after_ms);
            }
            CoordinatorError::RateLimited { retry_after_secs } => {
                body.retry_after_secs = i64::try_from(*retry_after_secs).ok();
            }
            CoordinatorError::ReauthRequired { reason } => {
                body.status = Some(ConnectionStatus::ReauthRequired);
                body.reason = Some(reason.clone());
            }
            CoordinatorError::TokenUnavailable {
                reason,
                retry_after_secs,
            } => {
                body.reason = Some(reason.clone());
                body.retry_after_secs = Some(*retry_after_secs);
            }
            CoordinatorError::RetryLater { pending_events, .. } => {
                body.pending_events = Some(*pending_events);
            }
            _ => {}
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(error: &CoordinatorError) -> (u16, String, Option<u64>) {
        (
            error.status(),
            serde_json::to_string(&error.body()).expect("serialises"),
            error.retry_after_secs(),
        )
    }

    #[test]
    fn each_refusal_has_its_status_body_and_retry_after() {
        let cases: Vec<(CoordinatorError, u16, &str, Option<u64>)> = vec![
            (
                CoordinatorError::NotFound("connection not found"),
                404,
                r#"{"error":"connection not found"}"#,
                None,
            ),
            (
                CoordinatorError::Request(RequestError::NotAConnection),
                404,
                r#"{"error":"not a connection id"}"#,
                None,
            ),
            (
                CoordinatorError::Request(RequestError::InvalidBody("x".into())),
                400,
                r#"{"error":"invalid request body: x"}"#,
                None,
            ),
            (
                CoordinatorError::InvalidResourceName,
                400,
                r#"{"error":"invalid resource name"}"#,
                None,
            ),
            (
                CoordinatorError::Expired,
                410,
                r#"{"error":"expired"}"#,
                None,
            ),
            (
                CoordinatorError::LeaseHeld(LeaseHeld {
                    run_id: "r1".into(),
                    expires_at: Timestamp::from_millis(5),
                }),
                409,
                r#"{"error":"a run is already in flight","run_id":"r1","expires_at":5}"#,
                None,
            ),
            (
                CoordinatorError::LeaseNotHeld,
                409,
                r#"{"error":"lease not held by this run"}"#,
                None,
            ),
            (
                CoordinatorError::BudgetExhausted {
                    retry_after_ms: 1001,
                },
                429,
                r#"{"error":"rate budget exhausted","retry_after_ms":1001}"#,
                Some(2),
            ),
            (
                CoordinatorError::RateLimited {
                    retry_after_secs: 7,
                },
                429,
                r#"{"error":"rate limited","retry_after_secs":7}"#,
                Some(7),
            ),
            (
                CoordinatorError::ReauthRequired {
                    reason: "invalid_grant".into(),
                },
                409,
                r#"{"error":"reauth_required","status":"reauth_required","reason":"invalid_grant"}"#,
                None,
            ),
            (
                CoordinatorError::TokenUnavailable {
                    reason: "500".into(),
                    retry_after_secs: 30,
                },
                503,
                r#"{"error":"token endpoint unavailable","reason":"500","retry_after_secs":30}"#,
                Some(30),
            ),
            (
                CoordinatorError::RetryLater {
                    reason: "later",
                    pending_events: 2,
                },
                503,
                r#"{"error":"later","pending_events":2}"#,
                Some(5),
            ),
            (
                CoordinatorError::Misconfigured("TOKEN_KEY is missing".into()),
                500,
                r#"{"error":"TOKEN_KEY is missing"}"#,
                None,
            ),
            (
                CoordinatorError::Internal,
                500,
                r#"{"error":"internal error"}"#,
                None,
            ),
        ];
        for (error, status, body, retry_after) in cases {
            assert_eq!(
                wire(&error),
                (status, body.to_owned(), retry_after),
                "{error:?}"
            );
            let read: ErrorBody = serde_json::from_str(body).expect("callers read it back");
            assert_eq!(read, error.body());
        }
    }
}
