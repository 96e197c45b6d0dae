//! Keap OAuth 2 (<https://developer.infusionsoft.com/getting-started-oauth-keys>):
//! authorization-code grant with auto-approval, code exchange, and refresh tokens that ROTATE
//! and are SINGLE USE (<https://github.com/infusionsoft/infusionsoft-php/issues/99>):
//! every refresh returns a new pair and the old refresh token dies at once, while access
//! tokens already issued stay valid until they expire.

use std::collections::HashMap;
use std::fmt;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

use crate::config::RuntimeConfig;
use crate::state::{lock, SharedState};

/// Authorization codes live 10 minutes (RFC 6749 §4.1.2 recommends at most that).
pub const CODE_TTL_MS: i64 = 10 * 60 * 1000;
/// Length of generated tokens and codes (random alphanumerics, not from the data seed).
const TOKEN_LEN: usize = 40;

/// Issued codes and tokens. Tokens are opaque random strings; the store maps each to its
/// grant so it can check them.
#[derive(Default, Clone, Serialize, Deserialize)]
pub struct OAuthStore {
    /// Codes are short-lived and single use; not worth keeping across restarts.
    #[serde(skip)]
    codes: HashMap<String, PendingCode>,
    access: HashMap<String, Grant>,
    refresh: HashMap<String, Grant>,
}

impl fmt::Debug for OAuthStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Counts only: the keys are live credentials.
        f.debug_struct("OAuthStore")
            .field("codes", &self.codes.len())
            .field("access", &self.access.len())
            .field("refresh", &self.refresh.len())
            .finish()
    }
}

#[derive(Clone)]
struct PendingCode {
    client_id: String,
    redirect_uri: String,
    expires_at_ms: i64,
}

#[derive(Clone, Serialize, Deserialize)]
struct Grant {
    client_id: String,
    expires_at_ms: i64,
}

/// A freshly issued access + refresh token pair.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenPair {
    /// The bearer token for REST calls.
    pub access_token: String,
    /// The single-use refresh token.
    pub refresh_token: String,
    /// Access-token lifetime in seconds.
    pub expires_in: u64,
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("access_token", &"[redacted]")
            .field("refresh_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Live token counts (for `GET /__sandbox/tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TokenStats {
    /// Access tokens not yet expired.
    pub active_access_tokens: usize,
    /// Refresh tokens neither used nor expired.
    pub active_refresh_tokens: usize,
    /// Authorization codes not yet redeemed or expired.
    pub pending_codes: usize,
}

fn random_token() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(TOKEN_LEN)
        .map(char::from)
        .collect()
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

impl OAuthStore {
    /// Issues a single-use code bound to `client_id` and `redirect_uri`.
    pub fn issue_code(&mut self, client_id: &str, redirect_uri: &str, now_ms: i64) -> String {
        self.prune(now_ms);
        let code = random_token();
        self.codes.insert(
            code.clone(),
            PendingCode {
                client_id: client_id.to_owned(),
                redirect_uri: redirect_uri.to_owned(),
                expires_at_ms: now_ms.saturating_add(CODE_TTL_MS),
            },
        );
        code
    }

    /// Redeems a code. Any attempt uses it up, matching or not, so a leaked code cannot be
    /// retried.
    pub fn redeem_code(
        &mut self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        now_ms: i64,
    ) -> Result<(), &'static str> {
        let pending = self
            .codes
            .remove(code)
            .ok_or("Invalid authorization code")?;
        if now_ms >= pending.expires_at_ms {
            return Err("Authorization code expired");
        }
        if pending.client_id != client_id {
            return Err("Authorization code was issued to another client");
        }
        if pending.redirect_uri != redirect_uri {
            return Err("redirect_uri does not match the authorization request");
        }
        Ok(())
    }

    /// Issues a new access + refresh pair with the current lifetimes.
    pub fn issue_pair(&mut self, client_id: &str, now_ms: i64, ttl: &RuntimeConfig) -> TokenPair {
        self.prune(now_ms);
        let pair = TokenPair {
            access_token: random_token(),
            refresh_token: random_token(),
            expires_in: ttl.access_token_ttl_secs,
        };
        self.access.insert(
            pair.access_token.clone(),
            Grant {
                client_id: client_id.to_owned(),
                expires_at_ms: now_ms.saturating_add(secs_to_ms(ttl.access_token_ttl_secs)),
            },
        );
        self.refresh.insert(
            pair.refresh_token.clone(),
            Grant {
                client_id: client_id.to_owned(),
                expires_at_ms: now_ms.saturating_add(secs_to_ms(ttl.refresh_token_ttl_secs)),
            },
        );
        pair
    }

    /// Spends `refresh_token` and issues a new pair. The old refresh token is gone whether or
    /// not the caller ever sees the answer: that is what makes two concurrent refreshes lose
    /// the connection at Keap, and the sandbox reproduces it.
    pub fn rotate(
        &mut self,
        refresh_token: &str,
        client_id: &str,
        now_ms: i64,
        ttl: &RuntimeConfig,
    ) -> Result<TokenPair, &'static str> {
        let grant = self
            .refresh
            .remove(refresh_token)
            .ok_or("Invalid refresh token")?;
        if now_ms >= grant.expires_at_ms || grant.client_id != client_id {
            return Err("Invalid refresh token");
        }
        Ok(self.issue_pair(client_id, now_ms, ttl))
    }

    /// Whether `token` is an issued, unexpired access token.
    pub fn access_token_valid(&self, token: &str, now_ms: i64) -> bool {
        self.access
            .get(token)
            .is_some_and(|grant| now_ms < grant.expires_at_ms)
    }

    /// Makes every access token expired as of `now_ms`; returns how many were live.
    pub fn expire_all_access(&mut self, now_ms: i64) -> usize {
        let mut expired = 0;
        for grant in self.access.values_mut() {
            if grant.expires_at_ms > now_ms {
                grant.expires_at_ms = now_ms;
                expired += 1;
            }
        }
        expired
    }

    /// Forgets every token and code (the user disconnected the app); returns how many
    /// refresh tokens died.
    pub fn revoke_all(&mut self) -> usize {
        let revoked = self.refresh.len();
        self.codes.clear();
        self.access.clear();
        self.refresh.clear();
        revoked
    }

    /// Every token still known (live or recently expired access tokens, live refresh
    /// tokens). Tests use it to prove the Worker never stores them in plain text.
    pub fn issued(&self) -> serde_json::Value {
        let access: Vec<&String> = self.access.keys().collect();
        let refresh: Vec<&String> = self.refresh.keys().collect();
        json!({
            "tokens": access.iter().map(|t| json!({"access_token": t})).chain(
                refresh.iter().map(|t| json!({"refresh_token": t}))).collect::<Vec<_>>()
        })
    }

    /// Live counts.
    pub fn stats(&self, now_ms: i64) -> TokenStats {
        TokenStats {
            active_access_tokens: self
                .access
                .values()
                .filter(|g| now_ms < g.expires_at_ms)
                .count(),
            active_refresh_tokens: self
                .refresh
                .values()
                .filter(|g| now_ms < g.expires_at_ms)
                .count(),
            pending_codes: self
                .codes
                .values()
                .filter(|c| now_ms < c.expires_at_ms)
                .count(),
        }
    }

    fn prune(&mut self, now_ms: i64) {
        self.codes.retain(|_, c| now_ms < c.expires_at_ms);
        // Keep expired access tokens for a day so a request with one gets the same 401
        // a never-issued token gets, while the map stays bounded.
        let keep_after = now_ms.saturating_sub(24 * 60 * 60 * 1000);
        self.access.retain(|_, g| g.expires_at_ms > keep_after);
        self.refresh.retain(|_, g| now_ms < g.expires_at_ms);
    }
}

/// Parses a query or form body; the first value of a repeated key wins.
pub fn parse_pairs(text: &str) -> HashMap<String, String> {
    let mut pairs = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(text.as_bytes()) {
        pairs
            .entry(k.into_owned())
            .or_insert_with(|| v.into_owned());
    }
    pairs
}

fn authorize_error_page(message: &str) -> Response {
    let page = format!(
        "<!doctype html><html><head><title>Keap sandbox: authorization error</title></head>\
         <body><h1>Authorization error</h1><p>{message}</p></body></html>"
    );
    (StatusCode::BAD_REQUEST, Html(page)).into_response()
}

fn redirect_to(mut target: Url, params: &[(&str, &str)]) -> Response {
    // `query_pairs_mut` appends to an existing query and percent-encodes the values.
    {
        let mut query = target.query_pairs_mut();
        for (k, v) in params {
            query.append_pair(k, v);
        }
    }
    match HeaderValue::from_str(target.as_str()) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => authorize_error_page("redirect_uri cannot be used in a Location header"),
    }
}

/// `GET /app/oauth/authorize`: the sandbox approves at once (there is no user to ask) unless
/// the query carries `approve=false`.
///
/// Errors follow RFC 6749 §4.1.2.1: a bad `client_id` or `redirect_uri` gets a 400 page (never
/// redirect to an unverified target); anything else redirects back with `error=...`.
pub async fn authorize(State(state): State<SharedState>, RawQuery(query): RawQuery) -> Response {
    let q = parse_pairs(query.as_deref().unwrap_or(""));
    let get = |k: &str| q.get(k).map(String::as_str);

    if get("client_id") != Some(state.config.keap_client_id.as_str()) {
        return authorize_error_page("Invalid client_id");
    }
    let Some(redirect_uri) = get("redirect_uri") else {
        return authorize_error_page("Missing redirect_uri");
    };
    let target = match Url::parse(redirect_uri) {
        // Production Keap insists on HTTPS; the sandbox also allows http for local Workers.
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.fragment().is_none() => url,
        _ => return authorize_error_page("Invalid redirect_uri"),
    };

    let code;
    let mut params: Vec<(&str, &str)> = Vec::new();
    if get("approve") == Some("false") {
        params.push(("error", "access_denied"));
    } else if get("response_type") != Some("code") {
        // Keap supports only `response_type=code` (see the module docs).
        params.push(("error", "unsupported_response_type"));
    } else if get("scope") != Some("full") {
        // ... and only `scope=full`.
        params.push(("error", "invalid_scope"));
    } else {
        let now = state.clock.now_ms();
        code = lock(&state.keap.oauth).issue_code(&state.config.keap_client_id, redirect_uri, now);
        params.push(("code", &code));
    }
    if let Some(s) = get("state") {
        params.push(("state", s));
    }
    redirect_to(target, &params)
}

fn oauth_error(status: StatusCode, error: &str, description: Option<&str>) -> Response {
    let body = match description {
        Some(d) => json!({"error": error, "error_description": d}),
        None => json!({"error": error}),
    };
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"keap\""),
        );
    }
    response
}

/// The token response Keap sends (see the module docs).
pub fn token_response(state: &SharedState, pair: &TokenPair) -> Response {
    let body = json!({
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "expires_in": pair.expires_in,
        "token_type": "bearer",
        "scope": format!("full|{}.infusionsoft.com", state.config.keap_tenant_id),
    });
    // RFC 6749 §5.1: token responses must not be cached.
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(body),
    )
        .into_response()
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

fn client_ok(state: &SharedState, client_id: &str, client_secret: &str) -> bool {
    client_id == state.config.keap_client_id
        && state.config.keap_client_secret.matches(client_secret)
}

/// `POST /token`: code exchange and refresh, `application/x-www-form-urlencoded`.
pub async fn token(State(state): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !form_type {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("Content-Type must be application/x-www-form-urlencoded"),
        );
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("Body is not UTF-8"),
        );
    };
    let form = parse_pairs(text);
    let now = state.clock.now_ms();
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => exchange_code(&state, &form, now),
        Some("refresh_token") => refresh(&state, &headers, &form, now),
        Some(_) => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", None),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("Missing grant_type"),
        ),
    }
}

/// Why the token endpoint refused a grant; each maps to one RFC 6749 §5.2 error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GrantError {
    /// 401 `invalid_client`: missing or wrong client credentials.
    BadClient,
    /// 400 `invalid_request`: a required parameter is missing.
    MissingParameter(&'static str),
    /// 400 `invalid_grant`: unknown, used, expired or mismatched code or refresh token.
    BadGrant(&'static str),
}

impl GrantError {
    fn into_response(self) -> Response {
        match self {
            Self::BadClient => oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", None),
            Self::MissingParameter(why) => {
                oauth_error(StatusCode::BAD_REQUEST, "invalid_request", Some(why))
            }
            Self::BadGrant(why) => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", Some(why)),
        }
    }
}

fn exchange_code(state: &SharedState, form: &HashMap<String, String>, now: i64) -> Response {
    let result = grant_code(state, form, now);
    let mut recorder = lock(&state.recorder);
    match result {
        Ok(pair) => {
            recorder.code_exchanges += 1;
            drop(recorder);
            state.persist();
            token_response(state, &pair)
        }
        Err(error) => {
            recorder.code_exchange_failures += 1;
            error.into_response()
        }
    }
}

fn grant_code(
    state: &SharedState,
    form: &HashMap<String, String>,
    now: i64,
) -> Result<TokenPair, GrantError> {
    // Keap documents the client credentials in the form for this grant.
    let (Some(client_id), Some(client_secret)) = (form.get("client_id"), form.get("client_secret"))
    else {
        return Err(GrantError::BadClient);
    };
    if !client_ok(state, client_id, client_secret) {
        return Err(GrantError::BadClient);
    }
    let (Some(code), Some(redirect_uri)) = (form.get("code"), form.get("redirect_uri")) else {
        return Err(GrantError::MissingParameter("Missing code or redirect_uri"));
    };
    let mut oauth = lock(&state.keap.oauth);
    oauth
        .redeem_code(code, client_id, redirect_uri, now)
        .map_err(GrantError::BadGrant)?;
    Ok(oauth.issue_pair(client_id, now, &state.runtime()))
}

fn refresh(
    state: &SharedState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    now: i64,
) -> Response {
    let result = grant_refresh(state, headers, form, now);
    let mut recorder = lock(&state.recorder);
    match result {
        Ok(pair) => {
            recorder.refreshes += 1;
            drop(recorder);
            state.persist();
            token_response(state, &pair)
        }
        Err(error) => {
            recorder.refresh_failures += 1;
            error.into_response()
        }
    }
}

fn grant_refresh(
    state: &SharedState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    now: i64,
) -> Result<TokenPair, GrantError> {
    // Keap documents `Authorization: Basic base64(client_id:client_secret)` for refresh;
    // the sandbox requires exactly that so a Worker that deviates fails here first.
    let Some((client_id, client_secret)) = basic_credentials(headers) else {
        return Err(GrantError::BadClient);
    };
    if !client_ok(state, &client_id, &client_secret) {
        return Err(GrantError::BadClient);
    }
    let Some(refresh_token) = form.get("refresh_token") else {
        return Err(GrantError::MissingParameter("Missing refresh_token"));
    };
    // Keap answers a bad refresh with 400 invalid_grant "Invalid refresh token"
    // (https://github.com/infusionsoft/infusionsoft-php/issues/61).
    lock(&state.keap.oauth)
        .rotate(refresh_token, &client_id, now, &state.runtime())
        .map_err(GrantError::BadGrant)
}

/// Control API: `POST /__sandbox/keap/tokens` issues a pair without the browser dance, for
/// tests that only need a connected account.
pub async fn control_issue(State(state): State<SharedState>) -> Response {
    let now = state.clock.now_ms();
    let pair =
        lock(&state.keap.oauth).issue_pair(&state.config.keap_client_id, now, &state.runtime());
    state.persist();
    token_response(&state, &pair)
}

/// Control API: `POST /__sandbox/tokens/expire-all` expires every access token now, to force
/// a refresh.
/// `GET /__sandbox/keap/tokens/issued`: the token values themselves (a test double on
/// loopback may reveal them; tests scan the Worker's storage for them).
pub async fn control_issued(State(state): State<SharedState>) -> Json<serde_json::Value> {
    Json(lock(&state.keap.oauth).issued())
}

/// `POST /__sandbox/tokens/expire-all`.
pub async fn control_expire_all(State(state): State<SharedState>) -> Json<serde_json::Value> {
    let now = state.clock.now_ms();
    let expired = lock(&state.keap.oauth).expire_all_access(now);
    state.persist();
    Json(json!({"expired_access_tokens": expired}))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const T0: i64 = 1_767_225_600_000;

    #[test]
    fn codes_are_single_use_and_bound() {
        let mut s = OAuthStore::default();
        let code = s.issue_code("c", "http://x/cb", T0);
        assert!(s.redeem_code(&code, "c", "http://x/other", T0).is_err());
        // The failed attempt used the code up.
        assert!(s.redeem_code(&code, "c", "http://x/cb", T0).is_err());
        let code = s.issue_code("c", "http://x/cb", T0);
        assert!(s
            .redeem_code(&code, "c", "http://x/cb", T0 + CODE_TTL_MS)
            .is_err());
        let code = s.issue_code("c", "http://x/cb", T0);
        assert!(s.redeem_code(&code, "c", "http://x/cb", T0 + 1).is_ok());
    }

    #[test]
    fn refresh_rotates_and_old_access_stays_valid() {
        let ttl = RuntimeConfig::default();
        let mut s = OAuthStore::default();
        let first = s.issue_pair("c", T0, &ttl);
        let second = s.rotate(&first.refresh_token, "c", T0 + 1, &ttl).unwrap();
        assert_ne!(first.refresh_token, second.refresh_token);
        assert_eq!(
            s.rotate(&first.refresh_token, "c", T0 + 2, &ttl),
            Err("Invalid refresh token")
        );
        assert!(s.access_token_valid(&first.access_token, T0 + 3));
        assert!(s.access_token_valid(&second.access_token, T0 + 3));
        let expiry = T0 + secs_to_ms(ttl.access_token_ttl_secs);
        assert!(!s.access_token_valid(&first.access_token, expiry));
        assert!(format!("{second:?}").contains("[redacted]"));
        assert!(!format!("{second:?}").contains(&second.access_token));
    }
}
