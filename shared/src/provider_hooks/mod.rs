//! Registering webhooks with the providers (Keap REST hooks, Shopify webhook subscriptions)
//! as pure request builders and response parsers.
//!
//! As with [`crate::oauth`], each call is a [`HttpRequestSpec`] built here, sent by the
//! Worker's fetch adapter, and its status and body handed back to a parser here. Parsers are
//! tested against recorded answers in `fixtures/`.

pub mod keap;
pub mod shopify;

use crate::oauth::HttpRequestSpec;

/// Why a registration call did not do what was asked. Messages never include tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookApiError {
    /// 401: the access token was refused (expired, revoked, or the app was uninstalled).
    #[error("HTTP 401 (unauthorized)")]
    Unauthorized,
    /// 404: the hook or endpoint does not exist.
    #[error("HTTP 404 (not found)")]
    NotFound,
    /// 429, or Shopify's GraphQL `THROTTLED`: too many calls; try again later.
    #[error("HTTP {status} (rate limited)")]
    RateLimited {
        /// HTTP status received (200 for a throttled GraphQL answer).
        status: u16,
    },
    /// 5xx: the provider failed; try again later.
    #[error("HTTP {status} (provider unavailable)")]
    Unavailable {
        /// HTTP status received.
        status: u16,
    },
    /// Any other non-success status, e.g. 400 for an unknown event key.
    #[error("HTTP {status}: {message}")]
    Rejected {
        /// HTTP status received.
        status: u16,
        /// The provider's message, shortened.
        message: String,
    },
    /// Shopify refused the mutation's input (`userErrors`).
    #[error("{}", user_errors_text(.0))]
    UserErrors(Vec<UserError>),
    /// Shopify answered top-level GraphQL `errors` (a bad query, an access scope missing).
    #[error("GraphQL error: {0}")]
    GraphQl(String),
    /// A success answer that is not the documented shape.
    #[error("unexpected answer")]
    Malformed,
}

impl HookApiError {
    /// Whether trying again later can succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            HookApiError::RateLimited { .. } | HookApiError::Unavailable { .. }
        )
    }
}

/// One entry of a GraphQL `userErrors` list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct UserError {
    /// Path to the input field at fault, when the provider names one.
    #[serde(default)]
    pub field: Option<Vec<String>>,
    /// What is wrong.
    pub message: String,
}

fn user_errors_text(errors: &[UserError]) -> String {
    let text = errors
        .iter()
        .map(|e| match &e.field {
            Some(field) if !field.is_empty() => format!("{}: {}", field.join("."), e.message),
            _ => e.message.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    shorten(&text)
}

/// Longest provider message kept in an error (they end up in logs and connection status).
const MAX_MESSAGE_CHARS: usize = 200;

/// Cuts a provider message to a loggable length, dropping control characters.
fn shorten(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect()
}

/// Classifies a non-success status; `message` is what the body says, if anything.
fn classify_status(status: u16, message: Option<String>) -> HookApiError {
    match status {
        401 => HookApiError::Unauthorized,
        404 => HookApiError::NotFound,
        429 => HookApiError::RateLimited { status },
        500..=599 => HookApiError::Unavailable { status },
        _ => HookApiError::Rejected {
            status,
            message: message.map(|m| shorten(&m)).unwrap_or_default(),
        },
    }
}

/// A JSON API request: `Accept: application/json`, and `Content-Type: application/json`
/// when there is a body. `auth` is the provider's credential header.
fn json_request(
    method: &'static str,
    url: String,
    auth: (String, String),
    body: Option<String>,
) -> HttpRequestSpec {
    let mut headers = vec![auth];
    if body.is_some() {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    headers.push(("Accept".to_owned(), "application/json".to_owned()));
    HttpRequestSpec {
        method,
        url,
        headers,
        body: body.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses() {
        assert_eq!(classify_status(401, None), HookApiError::Unauthorized);
        assert_eq!(classify_status(404, None), HookApiError::NotFound);
        assert!(classify_status(429, None).is_retryable());
        assert!(classify_status(503, None).is_retryable());
        let rejected = classify_status(400, Some("bad\nkey".repeat(100)));
        assert!(!rejected.is_retryable());
        match rejected {
            HookApiError::Rejected { status, message } => {
                assert_eq!(status, 400);
                assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS);
                assert!(!message.contains('\n'));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn user_errors_read_as_field_and_message() {
        let error = HookApiError::UserErrors(vec![
            UserError {
                field: Some(vec!["webhookSubscription".into(), "callbackUrl".into()]),
                message: "Address is invalid".into(),
            },
            UserError {
                field: None,
                message: "Something else".into(),
            },
        ]);
        assert_eq!(
            error.to_string(),
            "webhookSubscription.callbackUrl: Address is invalid; Something else"
        );
    }
}
