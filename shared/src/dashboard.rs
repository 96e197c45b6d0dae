//! The operator dashboard's sessions, decided without I/O: the operator's token is
//! exchanged once for a session whose id travels only in an `HttpOnly`, `Secure`,
//! `SameSite=Strict` cookie, and whose CSRF token must accompany every state-changing call
//! (`X-CSRF-Token`), so a page on another origin can neither read the session nor act with
//! it (<https://cheatsheetseries.owasp.org/cheatsheets/Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html>).

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::Timestamp;

/// The session cookie's name (`__Host-` would forbid `Path=/dashboard`; the path keeps the
/// cookie off every other route).
pub const SESSION_COOKIE: &str = "edge_sync_dashboard";
/// The header a state-changing call carries the session's CSRF token in.
pub const CSRF_HEADER: &str = "X-CSRF-Token";
/// How long a session lasts: 12 hours.
pub const SESSION_TTL_MS: i64 = 12 * 60 * 60 * 1000;

/// A signed-in session, kept server-side under its id until it expires or signs out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The CSRF token of the session (not secret from the page; never in a URL).
    pub csrf: String,
    /// When it was opened.
    pub created_at: Timestamp,
    /// When it ends.
    pub expires_at: Timestamp,
}

impl Session {
    /// A session opened at `now` with `csrf`.
    pub fn open(csrf: String, now: Timestamp) -> Self {
        Self {
            csrf,
            created_at: now,
            expires_at: now.plus_millis(SESSION_TTL_MS),
        }
    }

    /// Whether `presented` (the `X-CSRF-Token` header) is this session's token.
    pub fn csrf_matches(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| {
            p.len() == self.csrf.len() && bool::from(p.as_bytes().ct_eq(self.csrf.as_bytes()))
        })
    }
}

/// The `Set-Cookie` value that carries session `id` for `max_age_secs`.
pub fn session_cookie(id: &str, max_age_secs: i64) -> String {
    format!(
        "{SESSION_COOKIE}={id}; Path=/dashboard; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=Strict"
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cleared_cookie() -> String {
    session_cookie("", 0)
}

/// The session id in a `Cookie` header, when it has the shape ids have (64 hex chars).
pub fn session_id(cookie_header: Option<&str>) -> Option<&str> {
    cookie_header?
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether a state-changing request may proceed: its `Origin` (when the browser sends one)
/// is the dashboard's own, and it carries the session's CSRF token.
pub fn may_change(
    session: &Session,
    origin: Option<&str>,
    own_origin: &str,
    csrf: Option<&str>,
) -> bool {
    origin.is_none_or(|o| o == own_origin) && session.csrf_matches(csrf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_http_only_secure_strict_and_scoped() {
        let cookie = session_cookie(&"a".repeat(64), 43_200);
        for part in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/dashboard",
            "Max-Age=43200",
        ] {
            assert!(cookie.contains(part), "{cookie}");
        }
        assert!(cleared_cookie().contains("Max-Age=0"));
    }

    #[test]
    fn session_ids_are_read_only_in_their_shape() {
        let id = "0123456789abcdef".repeat(4);
        let header = format!("theme=dark; {SESSION_COOKIE}={id}; other=1");
        assert_eq!(session_id(Some(&header)), Some(id.as_str()));
        assert_eq!(session_id(Some(&format!("{SESSION_COOKIE}=short"))), None);
        assert_eq!(session_id(Some("x=1")), None);
        assert_eq!(session_id(None), None);
    }

    #[test]
    fn changes_need_the_csrf_token_and_the_own_origin() {
        let now = Timestamp::from_millis(1_000);
        let session = Session::open("c".repeat(43), now);
        assert_eq!(session.expires_at, now.plus_millis(SESSION_TTL_MS));
        let token = "c".repeat(43);
        let own = "https://coordinator.example";
        assert!(may_change(&session, Some(own), own, Some(&token)));
        assert!(may_change(&session, None, own, Some(&token)));
        assert!(!may_change(
            &session,
            Some("https://evil.example"),
            own,
            Some(&token)
        ));
        assert!(!may_change(&session, Some(own), own, None));
        assert!(!may_change(&session, Some(own), own, Some("c")));
    }
}
