//! Keap REST hooks (v1 only: <https://developer.infusionsoft.com/rest-hook-documentation>;
//! endpoints in the REST v1 reference, <https://developer.infusionsoft.com/docs/rest/>):
//! create, list, verify and delete a hook.

use serde::Deserialize;
use serde_json::json;

use super::{classify_status, json_request, HookApiError};
use crate::oauth::HttpRequestSpec;
use crate::Secret;

/// Keap's v1 REST base in production; hooks exist only in v1.
pub const PRODUCTION_REST_V1_BASE: &str = "https://api.infusionsoft.com/crm/rest/v1";

/// The event keys registered unless the deployment names others: every change to the
/// records the sync consumes (contacts, opportunities, orders, tasks).
pub const DEFAULT_EVENT_KEYS: [&str; 12] = [
    "contact.add",
    "contact.edit",
    "contact.delete",
    "opportunity.add",
    "opportunity.edit",
    "opportunity.delete",
    "order.add",
    "order.edit",
    "order.delete",
    "task.add",
    "task.edit",
    "task.delete",
];

/// The URL Keap delivers a connection's hooks to: webhook-handler's
/// `POST /webhook/keap/{hook_token}` under `webhook_base` (no trailing slash). Keap signs
/// nothing, so the unguessable token is what authenticates deliveries.
pub fn hook_url(webhook_base: &str, hook_token: &str) -> String {
    format!("{webhook_base}/webhook/keap/{hook_token}")
}

/// Parses a comma-separated list of event keys, dropping blanks.
pub fn parse_event_keys(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A hook's state as Keap reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookStatus {
    /// The verification handshake has not succeeded: Keap sends no events.
    Unverified,
    /// Events flow.
    Verified,
    /// Deliveries kept failing; no events until verified again.
    Inactive,
    /// A status this code does not know, as Keap wrote it.
    Other(String),
}

impl HookStatus {
    fn parse(text: &str) -> Self {
        match text {
            "Unverified" => HookStatus::Unverified,
            "Verified" => HookStatus::Verified,
            "Inactive" => HookStatus::Inactive,
            other => HookStatus::Other(other.to_owned()),
        }
    }
}

/// One REST hook: `{key, eventKey, hookUrl, status}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeapHook {
    /// The hook's key (Keap documents a string; a number is accepted too).
    pub key: String,
    /// The event key, e.g. `contact.edit`.
    pub event_key: String,
    /// Where Keap delivers.
    pub hook_url: String,
    /// Whether events flow.
    pub status: HookStatus,
}

impl KeapHook {
    /// Whether this is the hook for `event_key` delivering to `hook_url`.
    pub fn is_for(&self, event_key: &str, hook_url: &str) -> bool {
        self.event_key == event_key && self.hook_url == hook_url
    }
}

/// A hook as the wire has it, every field optional so a missing one is handled here.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHook {
    key: Option<serde_json::Value>,
    event_key: Option<String>,
    hook_url: Option<String>,
    status: Option<String>,
}

impl RawHook {
    fn key(&self) -> Option<String> {
        match &self.key {
            Some(serde_json::Value::String(key)) if !key.is_empty() => Some(key.clone()),
            Some(serde_json::Value::Number(key)) => Some(key.to_string()),
            _ => None,
        }
    }

    fn into_hook(self) -> Option<KeapHook> {
        Some(KeapHook {
            key: self.key()?,
            event_key: self.event_key?,
            hook_url: self.hook_url?,
            status: HookStatus::parse(self.status.as_deref().unwrap_or_default()),
        })
    }
}

/// Keap's REST error body `{code, message, status, details}` (429: `{code, message, status}`).
#[derive(Deserialize)]
struct RawError {
    message: Option<String>,
}

fn error(status: u16, body: &str) -> HookApiError {
    let message = serde_json::from_str::<RawError>(body)
        .ok()
        .and_then(|e| e.message);
    classify_status(status, message)
}

/// Keap's hooks API for one account: the v1 base and the account's access token.
#[derive(Debug, Clone)]
pub struct KeapHooksApi<'a> {
    /// v1 base without the trailing slash ([`PRODUCTION_REST_V1_BASE`], or the sandbox).
    v1_base: &'a str,
    token: &'a Secret,
}

impl<'a> KeapHooksApi<'a> {
    /// The API at `v1_base` (a trailing slash is ignored) with a bearer `token`.
    pub fn new(v1_base: &'a str, token: &'a Secret) -> Self {
        Self {
            v1_base: v1_base.trim_end_matches('/'),
            token,
        }
    }

    fn request(&self, method: &'static str, path: &str, body: Option<String>) -> HttpRequestSpec {
        json_request(
            method,
            format!("{}{path}", self.v1_base),
            (
                "Authorization".to_owned(),
                format!("Bearer {}", self.token.expose()),
            ),
            body,
        )
    }

    /// `POST /hooks {eventKey, hookUrl}`: subscribes `hook_url` to `event_key`; Keap then
    /// runs the verification handshake against `hook_url`.
    pub fn create_hook(&self, event_key: &str, hook_url: &str) -> HttpRequestSpec {
        let body = json!({ "eventKey": event_key, "hookUrl": hook_url });
        self.request("POST", "/hooks", Some(body.to_string()))
    }

    /// `GET /hooks`: every hook of the account.
    pub fn list_hooks(&self) -> HttpRequestSpec {
        self.request("GET", "/hooks", None)
    }

    /// `POST /hooks/{key}/verify`: runs the verification handshake again.
    pub fn verify_hook(&self, key: &str) -> HttpRequestSpec {
        self.request(
            "POST",
            &format!("/hooks/{}/verify", path_segment(key)),
            None,
        )
    }

    /// `DELETE /hooks/{key}`.
    pub fn delete_hook(&self, key: &str) -> HttpRequestSpec {
        self.request("DELETE", &format!("/hooks/{}", path_segment(key)), None)
    }
}

/// A hook key as one URL path segment (Keap's keys are digits; anything else is encoded).
fn path_segment(key: &str) -> String {
    url::form_urlencoded::byte_serialize(key.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Parses the answer to [`KeapHooksApi::create_hook`]: the new hook, or `None` when Keap
/// answered success without a readable hook (it exists all the same; the next repair finds
/// it by URL, so this is not an error).
pub fn parse_create_hook(status: u16, body: &str) -> Result<Option<KeapHook>, HookApiError> {
    if !(200..300).contains(&status) {
        return Err(error(status, body));
    }
    Ok(serde_json::from_str::<RawHook>(body)
        .ok()
        .and_then(RawHook::into_hook))
}

/// Parses the answer to [`KeapHooksApi::list_hooks`]: a JSON array of hooks. Entries
/// without a key, event key or URL are skipped (they cannot be ours).
pub fn parse_list_hooks(status: u16, body: &str) -> Result<Vec<KeapHook>, HookApiError> {
    if status != 200 {
        return Err(error(status, body));
    }
    let raw: Vec<RawHook> = serde_json::from_str(body).map_err(|_| HookApiError::Malformed)?;
    Ok(raw.into_iter().filter_map(RawHook::into_hook).collect())
}

/// Parses the answer to [`KeapHooksApi::verify_hook`]: the hook as the handshake left it
/// (`None` if the body is not a hook; the request succeeded all the same).
pub fn parse_verify_hook(status: u16, body: &str) -> Result<Option<KeapHook>, HookApiError> {
    parse_create_hook(status, body)
}

/// What a delete achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// Keap deleted the hook.
    Deleted,
    /// Keap had no such hook (404): someone removed it already.
    AlreadyGone,
}

/// Parses the answer to [`KeapHooksApi::delete_hook`] (Keap answers 204 without a body).
pub fn parse_delete_hook(status: u16, body: &str) -> Result<Deleted, HookApiError> {
    match status {
        200..=299 => Ok(Deleted::Deleted),
        404 => Ok(Deleted::AlreadyGone),
        _ => Err(error(status, body)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CREATED: &str = include_str!("fixtures/keap_create_hook.json");
    const LISTED: &str = include_str!("fixtures/keap_list_hooks.json");
    const VERIFIED: &str = include_str!("fixtures/keap_verify_hook.json");
    const BAD_EVENT_KEY: &str = include_str!("fixtures/keap_error_400_event_key.json");
    const UNAUTHORIZED: &str = include_str!("fixtures/keap_error_401.json");
    const NOT_FOUND: &str = include_str!("fixtures/keap_error_404.json");
    const THROTTLED: &str = include_str!("fixtures/keap_error_429.json");
    const FAILED: &str = include_str!("fixtures/keap_error_500.json");

    fn token() -> Secret {
        Secret::new("at-123")
    }

    #[test]
    fn create_posts_event_key_and_url_with_bearer_token() {
        let token = token();
        let api = KeapHooksApi::new("http://sandbox/crm/rest/v1/", &token);
        let request = api.create_hook("contact.add", "https://hooks.example/webhook/keap/t0k");
        assert_eq!(request.method, "POST");
        assert_eq!(request.url, "http://sandbox/crm/rest/v1/hooks");
        assert_eq!(request.header("authorization"), Some("Bearer at-123"));
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("accept"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(
            body,
            json!({"eventKey": "contact.add", "hookUrl": "https://hooks.example/webhook/keap/t0k"})
        );
    }

    #[test]
    fn list_verify_and_delete_address_the_hook() {
        let token = token();
        let api = KeapHooksApi::new(PRODUCTION_REST_V1_BASE, &token);
        let list = api.list_hooks();
        assert_eq!(
            (list.method, list.url.as_str()),
            ("GET", "https://api.infusionsoft.com/crm/rest/v1/hooks")
        );
        assert_eq!(list.header("content-type"), None);
        assert!(list.body.is_empty());
        let verify = api.verify_hook("17");
        assert_eq!(
            (verify.method, verify.url.as_str()),
            (
                "POST",
                "https://api.infusionsoft.com/crm/rest/v1/hooks/17/verify"
            )
        );
        let delete = api.delete_hook("17");
        assert_eq!(
            (delete.method, delete.url.as_str()),
            (
                "DELETE",
                "https://api.infusionsoft.com/crm/rest/v1/hooks/17"
            )
        );
        assert_eq!(
            api.delete_hook("a/b").url,
            "https://api.infusionsoft.com/crm/rest/v1/hooks/a%2Fb"
        );
        assert!(!format!("{delete:?}").contains("at-123"));
    }

    #[test]
    fn parses_a_created_hook() {
        let hook = parse_create_hook(200, CREATED).unwrap().unwrap();
        assert_eq!(hook.key, "1");
        assert_eq!(hook.event_key, "contact.add");
        assert_eq!(hook.status, HookStatus::Unverified);
        assert!(hook.is_for(
            "contact.add",
            "https://webhooks.example.com/webhook/keap/4f1c0a9e5b7d2c3e"
        ));
        // A success without a readable hook still succeeded.
        assert_eq!(parse_create_hook(201, "").unwrap(), None);
        // Keap's documented example writes the key as a number.
        let numeric =
            r#"{"key": 9, "eventKey": "task.add", "hookUrl": "https://x", "status": "Verified"}"#;
        assert_eq!(parse_create_hook(200, numeric).unwrap().unwrap().key, "9");
    }

    #[test]
    fn parses_listed_hooks() {
        let hooks = parse_list_hooks(200, LISTED).unwrap();
        assert_eq!(hooks.len(), 4);
        let statuses: Vec<_> = hooks.iter().map(|h| h.status.clone()).collect();
        assert_eq!(
            statuses,
            [
                HookStatus::Unverified,
                HookStatus::Unverified,
                HookStatus::Verified,
                HookStatus::Inactive
            ]
        );
        assert_eq!(hooks[2].key, "4");
        assert!(hooks[3].is_for(
            "task.add",
            "http://127.0.0.1:18800/webhook/keap/4f1c0a9e5b7d2c3e"
        ));
        assert_eq!(parse_list_hooks(200, "[]").unwrap(), Vec::new());
        assert_eq!(parse_list_hooks(200, "{}"), Err(HookApiError::Malformed));
        // Entries that cannot be ours are skipped, not fatal.
        let partial =
            r#"[{"key": "1"}, {"key": "2", "eventKey": "a.b", "hookUrl": "u", "status": "Gone"}]"#;
        let hooks = parse_list_hooks(200, partial).unwrap();
        assert_eq!(hooks.len(), 1);
        assert_eq!(hooks[0].status, HookStatus::Other("Gone".into()));
    }

    #[test]
    fn parses_a_verified_hook() {
        let hook = parse_verify_hook(200, VERIFIED).unwrap().unwrap();
        assert_eq!(
            (hook.key.as_str(), hook.status),
            ("5", HookStatus::Verified)
        );
    }

    #[test]
    fn delete_treats_404_as_already_gone() {
        assert_eq!(parse_delete_hook(204, ""), Ok(Deleted::Deleted));
        assert_eq!(parse_delete_hook(404, NOT_FOUND), Ok(Deleted::AlreadyGone));
        assert_eq!(
            parse_delete_hook(401, UNAUTHORIZED),
            Err(HookApiError::Unauthorized)
        );
    }

    #[test]
    fn classifies_recorded_error_bodies() {
        assert_eq!(
            parse_create_hook(400, BAD_EVENT_KEY),
            Err(HookApiError::Rejected {
                status: 400,
                message: "Invalid eventKey 'contact.nope': see GET /hooks/event_keys".into()
            })
        );
        assert_eq!(
            parse_list_hooks(401, UNAUTHORIZED),
            Err(HookApiError::Unauthorized)
        );
        assert_eq!(
            parse_verify_hook(404, NOT_FOUND),
            Err(HookApiError::NotFound)
        );
        assert_eq!(
            parse_list_hooks(429, THROTTLED),
            Err(HookApiError::RateLimited { status: 429 })
        );
        assert_eq!(
            parse_create_hook(500, FAILED),
            Err(HookApiError::Unavailable { status: 500 })
        );
        assert_eq!(
            parse_create_hook(400, "<html>"),
            Err(HookApiError::Rejected {
                status: 400,
                message: String::new()
            })
        );
    }

    #[test]
    fn hook_urls_carry_the_token() {
        assert_eq!(
            hook_url("https://hooks.example", "t0k"),
            "https://hooks.example/webhook/keap/t0k"
        );
    }

    #[test]
    fn event_key_lists_drop_blanks() {
        assert_eq!(
            parse_event_keys(" contact.add, ,order.edit,"),
            vec!["contact.add".to_owned(), "order.edit".to_owned()]
        );
        assert_eq!(
            parse_event_keys(&DEFAULT_EVENT_KEYS.join(",")).len(),
            DEFAULT_EVENT_KEYS.len()
        );
    }
}
