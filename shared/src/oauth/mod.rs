//! OAuth with Keap and Shopify as pure request builders and response parsers.
//!
//! Each provider call is a [`HttpRequestSpec`] built here, sent by the Worker's fetch adapter,
//! and its status and body handed back to a parser here (style.md, "A provider call =
//! request builder + response parser"; the shape follows oauth2-rs).

pub mod keap;
pub mod shopify;
pub mod state;

use std::fmt;

use serde::Deserialize;

use crate::Secret;

pub use state::{check_state, new_state_value, OAuthState, StateError, STATE_TTL_MS};

/// An HTTP request for the Worker to send. `Debug` prints only the method and URL, because
/// headers and body carry client secrets, codes and refresh tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequestSpec {
    /// `GET`, `POST`, ...
    pub method: &'static str,
    /// Absolute URL.
    pub url: String,
    /// Headers to send, in order.
    pub headers: Vec<(String, String)>,
    /// The body (empty for none).
    pub body: String,
}

impl HttpRequestSpec {
    /// The value of the first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

impl fmt::Debug for HttpRequestSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequestSpec")
            .field("method", &self.method)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Tokens a token endpoint granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// The bearer token for API calls.
    pub access_token: Secret,
    /// The token to get the next access token; Keap rotates it on every refresh.
    pub refresh_token: Option<Secret>,
    /// Lifetime of the access token in seconds; 0 means it never expires (Shopify offline).
    pub expires_in_secs: i64,
    /// Scopes granted, as the provider wrote them.
    pub scope: Option<String>,
}

/// Why a token endpoint did not grant tokens. Messages never include tokens or codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenEndpointError {
    /// The grant is dead (`invalid_grant`, or Keap's `invalid_request` naming the refresh token): reauthorise.
    #[error("the provider rejected the grant: {description}")]
    InvalidGrant {
        /// The provider's `error_description`, shortened.
        description: String,
    },
    /// A temporary failure (5xx, 429, 408): retry with backoff.
    #[error("the token endpoint is temporarily unavailable (HTTP {status})")]
    Transient {
        /// HTTP status received.
        status: u16,
    },
    /// Any other refusal, e.g. 401 `invalid_client` after a client secret change.
    #[error("the token endpoint refused the request (HTTP {status}, {error})")]
    Rejected {
        /// HTTP status received.
        status: u16,
        /// The OAuth `error` code, or `unknown`.
        error: String,
    },
    /// A 2xx answer that is not a token response (unparseable, or a required field missing).
    #[error("the token endpoint answered success without a usable token")]
    Malformed,
}

impl TokenEndpointError {
    /// Whether trying again later can succeed without the user reauthorising.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, TokenEndpointError::InvalidGrant { .. })
    }
}

/// The RFC 6749 §5.1 success body, with every field optional so a missing one is reported as
/// [`TokenEndpointError::Malformed`] by the provider's parser rather than by serde.
#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    scope: Option<String>,
}

/// RFC 6749 §5.2 error body; Keap's gateway sometimes answers in Apigee's `fault` shape instead.
#[derive(Deserialize)]
struct RawErrorResponse {
    error: Option<String>,
    error_description: Option<String>,
    fault: Option<RawFault>,
}

#[derive(Deserialize)]
struct RawFault {
    detail: Option<RawFaultDetail>,
}

#[derive(Deserialize)]
struct RawFaultDetail {
    errorcode: Option<String>,
}

/// Longest provider description kept in an error (they end up in logs and `last_error`).
const MAX_DESCRIPTION_CHARS: usize = 200;

/// Parses a 2xx token body into its fields, or classifies a non-2xx answer.
fn parse_raw(status: u16, body: &str) -> Result<RawTokenResponse, TokenEndpointError> {
    if (200..300).contains(&status) {
        return serde_json::from_str(body).map_err(|_| TokenEndpointError::Malformed);
    }
    Err(classify_error(status, body))
}

/// Maps a non-2xx token endpoint answer to a [`TokenEndpointError`].
fn classify_error(status: u16, body: &str) -> TokenEndpointError {
    if status == 408 || status == 429 || status >= 500 {
        return TokenEndpointError::Transient { status };
    }
    let raw: Option<RawErrorResponse> = serde_json::from_str(body).ok();
    let (error, description) = match raw {
        Some(raw) => {
            let error = raw
                .error
                .or_else(|| raw.fault.and_then(|f| f.detail).and_then(|d| d.errorcode));
            (error, raw.error_description)
        }
        None => (None, None),
    };
    let error = error.map(|e| sanitize_code(&e)).unwrap_or_default();
    let description = description.map(|d| shorten(&d)).unwrap_or_default();
    let mentions_refresh_token = {
        let lower = description.to_ascii_lowercase();
        lower.contains("refresh token") || lower.contains("refresh_token")
    };
    // Keap: a bad refresh is 400 invalid_grant
    // (https://github.com/infusionsoft/infusionsoft-php/issues/61), and has also been seen as
    // 400 invalid_request "Invalid Refresh Token"
    // (https://integration.keap.com/t/invalid-refresh-token/82597). Either way the refresh
    // token is gone.
    // invalid_grant is accepted with any 4xx because some servers send it with 401.
    let dead_grant = error == "invalid_grant"
        || (status == 400 && error == "invalid_request" && mentions_refresh_token);
    if dead_grant && (400..500).contains(&status) {
        let description = if description.is_empty() {
            error.clone()
        } else {
            description
        };
        return TokenEndpointError::InvalidGrant { description };
    }
    TokenEndpointError::Rejected {
        status,
        error: if error.is_empty() {
            "unknown".to_owned()
        } else {
            error
        },
    }
}

/// An OAuth error code is ASCII without spaces (RFC 6749 §5.2); keep only such characters so a
/// hostile body cannot inject text into logs.
fn sanitize_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(64)
        .collect()
}

/// Cuts a provider description to a loggable length, dropping control characters.
fn shorten(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_DESCRIPTION_CHARS)
        .collect()
}

/// Reads `expires_in` as seconds, accepting a JSON number or a numeric string.
fn expires_in_secs(value: Option<&serde_json::Value>) -> Option<i64> {
    match value? {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A non-empty token string, or `None`.
fn non_empty(token: Option<String>) -> Option<Secret> {
    token.filter(|t| !t.trim().is_empty()).map(Secret::new)
}

/// Appends `pairs` as an `application/x-www-form-urlencoded` query to `base`, which may
/// already have a query.
fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let query = form_encode(pairs);
    let separator = match base.rfind('?') {
        None => "?",
        Some(i) if i + 1 == base.len() || base.ends_with('&') => "",
        Some(_) => "&",
    };
    format!("{base}{separator}{query}")
}

/// Encodes `pairs` as `application/x-www-form-urlencoded`.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Decodes a query string (without the `?`) into pairs, in order; for callback handlers.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
        .into_owned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_debug_shows_only_method_and_url() {
        let spec = HttpRequestSpec {
            method: "POST",
            url: "https://api.infusionsoft.com/token".to_owned(),
            headers: vec![("Authorization".to_owned(), "Basic c2VjcmV0".to_owned())],
            body: "refresh_token=rt-secret-value".to_owned(),
        };
        let printed = format!("{spec:?}");
        assert!(printed.contains("POST") && printed.contains("api.infusionsoft.com/token"));
        assert!(!printed.contains("c2VjcmV0"));
        assert!(!printed.contains("rt-secret-value"));
        assert_eq!(spec.header("authorization"), Some("Basic c2VjcmV0"));
    }

    #[test]
    fn classifies_error_answers() {
        assert_eq!(
            classify_error(503, "<html>down</html>"),
            TokenEndpointError::Transient { status: 503 }
        );
        assert_eq!(
            classify_error(
                429,
                r#"{"code":"429","message":"Quota Exceeded","status":"Request Throttled"}"#
            ),
            TokenEndpointError::Transient { status: 429 }
        );
        assert_eq!(
            classify_error(408, ""),
            TokenEndpointError::Transient { status: 408 }
        );
        assert_eq!(
            classify_error(401, r#"{"error":"invalid_client"}"#),
            TokenEndpointError::Rejected {
                status: 401,
                error: "invalid_client".to_owned()
            }
        );
        assert_eq!(
            classify_error(400, "not json"),
            TokenEndpointError::Rejected {
                status: 400,
                error: "unknown".to_owned()
            }
        );
        assert_eq!(
            classify_error(
                401,
                r#"{"fault":{"faultstring":"Invalid Access Token","detail":{"errorcode":"keymanagement.service.invalid_access_token"}}}"#
            ),
            TokenEndpointError::Rejected {
                status: 401,
                error: "keymanagement.service.invalid_access_token".to_owned()
            }
        );
        assert_eq!(
            classify_error(400, r#"{"error":"invalid_grant\nFAKE LOG LINE"}"#),
            TokenEndpointError::Rejected {
                status: 400,
                error: "invalid_grantFAKELOGLINE".to_owned()
            }
        );
        assert_eq!(
            classify_error(400, r#"{"error":"invalid_grant"}"#),
            TokenEndpointError::InvalidGrant {
                description: "invalid_grant".to_owned()
            }
        );
    }

    #[test]
    fn only_invalid_grant_is_not_retryable() {
        assert!(!TokenEndpointError::InvalidGrant {
            description: String::new()
        }
        .is_retryable());
        assert!(TokenEndpointError::Transient { status: 503 }.is_retryable());
        assert!(TokenEndpointError::Malformed.is_retryable());
    }

    #[test]
    fn builds_and_parses_queries() {
        assert_eq!(
            with_query("https://x.test/a", &[("k", "a b&c")]),
            "https://x.test/a?k=a+b%26c"
        );
        assert_eq!(
            with_query("https://x.test/a?x=1", &[("k", "v")]),
            "https://x.test/a?x=1&k=v"
        );
        assert_eq!(
            with_query("https://x.test/a?", &[("k", "v")]),
            "https://x.test/a?k=v"
        );
        assert_eq!(
            parse_query("?code=a%2Bb&shop=x.myshopify.com&e="),
            vec![
                ("code".to_owned(), "a+b".to_owned()),
                ("shop".to_owned(), "x.myshopify.com".to_owned()),
                ("e".to_owned(), String::new()),
            ]
        );
    }
}
