//! Keap OAuth 2: authorize redirect, code exchange, refresh, and the token response parser.
//!
//! Endpoints and parameters follow Keap's "Getting Started with OAuth2"
//! (<https://developer.infusionsoft.com/getting-started-oauth-keys>); the error bodies are the
//! ones developers report (cited in the tests). Keap's refresh
//! tokens rotate and are single use: the caller must persist the new pair from
//! [`parse_token_response`] before anything else uses the connection.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::{
    expires_in_secs, form_encode, non_empty, parse_raw, with_query, HttpRequestSpec,
    TokenEndpointError, TokenGrant,
};
use crate::Secret;

/// Keap's production authorize endpoint.
pub const AUTHORIZE_URL: &str = "https://accounts.infusionsoft.com/app/oauth/authorize";
/// Keap's production token endpoint.
pub const TOKEN_URL: &str = "https://api.infusionsoft.com/token";
/// The only scope Keap offers.
pub const SCOPE: &str = "full";
/// Keap's access token lifetime (24 h).
pub const ACCESS_TOKEN_LIFETIME_SECS: i64 = 24 * 60 * 60;
/// Keap's refresh token lifetime (45 days): a connection idle this long is lost.
pub const REFRESH_TOKEN_LIFETIME_SECS: i64 = 45 * 24 * 60 * 60;

/// The Keap OAuth client of one deployment. URLs are configurable so the local sandbox can
/// stand in for Keap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeapOAuthConfig {
    /// Authorize endpoint ([`AUTHORIZE_URL`] in production).
    pub authorize_url: String,
    /// Token endpoint ([`TOKEN_URL`] in production).
    pub token_url: String,
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: Secret,
    /// Where Keap sends the browser back (HTTPS in production).
    pub redirect_uri: String,
}

impl KeapOAuthConfig {
    /// A configuration against Keap's production endpoints.
    pub fn production(client_id: &str, client_secret: Secret, redirect_uri: &str) -> Self {
        Self {
            authorize_url: AUTHORIZE_URL.to_owned(),
            token_url: TOKEN_URL.to_owned(),
            client_id: client_id.to_owned(),
            client_secret,
            redirect_uri: redirect_uri.to_owned(),
        }
    }

    /// The URL to send the browser to: Keap's consent page for this app, carrying `state`.
    pub fn authorize_redirect(&self, state: &str) -> String {
        with_query(
            &self.authorize_url,
            &[
                ("client_id", &self.client_id),
                ("redirect_uri", &self.redirect_uri),
                // Keap supports only the code flow and only scope `full`.
                ("response_type", "code"),
                ("scope", SCOPE),
                ("state", state),
            ],
        )
    }

    /// The token request exchanging an authorization `code` (client credentials in the form,
    /// as Keap documents for this grant).
    pub fn code_exchange_request(&self, code: &str) -> HttpRequestSpec {
        let body = form_encode(&[
            ("client_id", &self.client_id),
            ("client_secret", self.client_secret.expose()),
            ("code", code),
            ("grant_type", "authorization_code"),
            ("redirect_uri", &self.redirect_uri),
        ]);
        self.token_request(body, None)
    }

    /// The token request trading `refresh_token` for a new pair (client credentials in HTTP
    /// Basic, as Keap documents for this grant). The old refresh token dies when Keap answers.
    pub fn refresh_request(&self, refresh_token: &Secret) -> HttpRequestSpec {
        let body = form_encode(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ]);
        let credentials = STANDARD.encode(format!(
            "{}:{}",
            self.client_id,
            self.client_secret.expose()
        ));
        self.token_request(body, Some(format!("Basic {credentials}")))
    }

    fn token_request(&self, body: String, authorization: Option<String>) -> HttpRequestSpec {
        let mut headers = vec![
            (
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("Accept".to_owned(), "application/json".to_owned()),
        ];
        if let Some(value) = authorization {
            headers.push(("Authorization".to_owned(), value));
        }
        HttpRequestSpec {
            method: "POST",
            url: self.token_url.clone(),
            headers,
            body,
        }
    }
}

/// Parses Keap's token endpoint answer (code exchange or refresh).
///
/// A 2xx must carry `access_token` and `expires_in` (Keap always sends both; a grant with an
/// unknown lifetime could not be scheduled for refresh, so it is `Malformed`).
pub fn parse_token_response(status: u16, body: &str) -> Result<TokenGrant, TokenEndpointError> {
    let raw = parse_raw(status, body)?;
    let access_token = non_empty(raw.access_token).ok_or(TokenEndpointError::Malformed)?;
    let expires_in_secs = expires_in_secs(raw.expires_in.as_ref())
        .filter(|secs| *secs > 0)
        .ok_or(TokenEndpointError::Malformed)?;
    Ok(TokenGrant {
        access_token,
        refresh_token: non_empty(raw.refresh_token),
        expires_in_secs,
        scope: raw.scope,
    })
}

/// The Keap account a token belongs to, from its scope `full|<app>.infusionsoft.com`
/// (Keap's token response, see the module docs): e.g. `ab123.infusionsoft.com`, lowercased.
pub fn account_from_scope(scope: &str) -> Option<String> {
    let (_, account) = scope.split_once('|')?;
    let account = account.trim();
    (!account.is_empty()).then(|| account.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::parse_query;

    fn config() -> KeapOAuthConfig {
        KeapOAuthConfig::production(
            "client id&1",
            Secret::new("s3cr3t:with=chars"),
            "https://sync.example.com/oauth/keap/callback",
        )
    }

    fn form(body: &str) -> Vec<(String, String)> {
        parse_query(body)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn authorize_redirect_is_encoded() {
        let url = config().authorize_redirect("st/ate+1");
        let (base, query) = url.split_once('?').expect("has a query");
        assert_eq!(base, AUTHORIZE_URL);
        assert_eq!(
            query,
            "client_id=client+id%261\
             &redirect_uri=https%3A%2F%2Fsync.example.com%2Foauth%2Fkeap%2Fcallback\
             &response_type=code&scope=full&state=st%2Fate%2B1"
        );
        assert_eq!(
            parse_query(query),
            pairs(&[
                ("client_id", "client id&1"),
                (
                    "redirect_uri",
                    "https://sync.example.com/oauth/keap/callback"
                ),
                ("response_type", "code"),
                ("scope", "full"),
                ("state", "st/ate+1"),
            ])
        );
    }

    #[test]
    fn code_exchange_posts_the_documented_form() {
        let spec = config().code_exchange_request("code/xyz");
        assert_eq!(spec.method, "POST");
        assert_eq!(spec.url, TOKEN_URL);
        assert_eq!(
            spec.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(spec.header("accept"), Some("application/json"));
        assert_eq!(spec.header("authorization"), None);
        assert_eq!(
            form(&spec.body),
            pairs(&[
                ("client_id", "client id&1"),
                ("client_secret", "s3cr3t:with=chars"),
                ("code", "code/xyz"),
                ("grant_type", "authorization_code"),
                (
                    "redirect_uri",
                    "https://sync.example.com/oauth/keap/callback"
                ),
            ])
        );
    }

    #[test]
    fn refresh_uses_basic_auth_and_the_documented_form() {
        let spec = config().refresh_request(&Secret::new("rt+1/2"));
        assert_eq!(spec.url, TOKEN_URL);
        let basic = spec
            .header("authorization")
            .and_then(|v| v.strip_prefix("Basic "))
            .expect("basic auth");
        assert_eq!(
            STANDARD.decode(basic).expect("base64"),
            b"client id&1:s3cr3t:with=chars"
        );
        assert_eq!(
            spec.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            form(&spec.body),
            pairs(&[("grant_type", "refresh_token"), ("refresh_token", "rt+1/2")])
        );
        assert!(!format!("{spec:?}").contains("rt+1/2"));
    }

    #[test]
    fn parses_the_documented_success_body() {
        // Keap's token response ("Getting Started with OAuth2", see the module docs).
        let body = r#"{"access_token":"AT-abc","refresh_token":"RT-def","expires_in":86400,
            "token_type":"bearer","scope":"full|ab123.infusionsoft.com"}"#;
        let grant = parse_token_response(200, body).expect("a grant");
        assert_eq!(grant.access_token.expose(), "AT-abc");
        assert_eq!(
            grant.refresh_token.as_ref().map(Secret::expose),
            Some("RT-def")
        );
        assert_eq!(grant.expires_in_secs, ACCESS_TOKEN_LIFETIME_SECS);
        assert_eq!(grant.scope.as_deref(), Some("full|ab123.infusionsoft.com"));
        assert_eq!(
            account_from_scope("full|AB123.infusionsoft.com").as_deref(),
            Some("ab123.infusionsoft.com")
        );
        assert_eq!(account_from_scope("full"), None);
        let printed = format!("{grant:?}");
        assert!(!printed.contains("AT-abc") && !printed.contains("RT-def"));
    }

    #[test]
    fn tolerates_string_expiry() {
        let grant = parse_token_response(200, r#"{"access_token":"a","expires_in":"3600"}"#)
            .expect("a grant");
        assert_eq!(grant.expires_in_secs, 3600);
        assert_eq!(grant.refresh_token, None);
    }

    #[test]
    fn success_without_usable_fields_is_malformed() {
        for body in [
            "",
            "<html></html>",
            "{}",
            r#"{"access_token":"","expires_in":86400}"#,
            r#"{"access_token":"a"}"#,
            r#"{"access_token":"a","expires_in":0}"#,
            r#"{"refresh_token":"r","expires_in":86400}"#,
        ] {
            assert_eq!(
                parse_token_response(200, body),
                Err(TokenEndpointError::Malformed),
                "{body}"
            );
        }
    }

    #[test]
    fn both_recorded_bad_refresh_bodies_mean_the_grant_is_dead() {
        // Keap's bad-refresh bodies as developers report them:
        // https://github.com/infusionsoft/infusionsoft-php/issues/61 (invalid_grant) and
        // https://integration.keap.com/t/invalid-refresh-token/82597 (invalid_request).
        let invalid_grant =
            r#"{"error":"invalid_grant","error_description":"Invalid refresh token"}"#;
        let invalid_request =
            r#"{"error":"invalid_request","error_description":"Invalid Refresh Token"}"#;
        for body in [invalid_grant, invalid_request] {
            let error = parse_token_response(400, body).expect_err("refused");
            assert!(
                matches!(error, TokenEndpointError::InvalidGrant { .. }),
                "{body}"
            );
            assert!(!error.is_retryable());
        }
        assert_eq!(
            parse_token_response(400, invalid_grant)
                .expect_err("refused")
                .to_string(),
            "the provider rejected the grant: Invalid refresh token"
        );
    }

    #[test]
    fn other_refusals_are_not_mistaken_for_a_dead_grant() {
        assert_eq!(
            parse_token_response(
                400,
                r#"{"error":"invalid_request","error_description":"Missing grant_type"}"#
            ),
            Err(TokenEndpointError::Rejected {
                status: 400,
                error: "invalid_request".to_owned()
            })
        );
        assert_eq!(
            parse_token_response(401, r#"{"error":"invalid_client"}"#),
            Err(TokenEndpointError::Rejected {
                status: 401,
                error: "invalid_client".to_owned()
            })
        );
        assert_eq!(
            parse_token_response(502, "Bad Gateway"),
            Err(TokenEndpointError::Transient { status: 502 })
        );
        assert_eq!(
            parse_token_response(
                429,
                r#"{"code":"429","message":"Quota Exceeded","status":"Request Throttled"}"#
            ),
            Err(TokenEndpointError::Transient { status: 429 })
        );
    }
}
