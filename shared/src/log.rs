//! Structured log lines for `wrangler tail`: one JSON object per request, cron run and failure.
//!
//! Fields are chosen by the caller from known-safe values; there is deliberately no way to
//! attach a header map or a request body, so a token cannot slip into a line.

use serde::Serialize;

use crate::Timestamp;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Normal operation.
    Info,
    /// A rejected or unusual request that did not fail the Worker.
    Warn,
    /// A failure.
    Error,
}

/// One log line. Build it with [`LogLine::request`] or [`LogLine::event`], add context with
/// the `with_*` methods, then print [`LogLine::to_json`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    /// When the line was written (ISO 8601).
    pub ts: String,
    /// Severity.
    pub level: Level,
    /// Which Worker wrote it.
    pub worker: &'static str,
    /// HTTP method, for request lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// URL path with its secret segments redacted ([`redact_path`]); never the query string,
    /// which may carry codes or tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Name of a non-HTTP event (`cron`, `alarm`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// HTTP status answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Wall time spent, in milliseconds.
    pub duration_ms: i64,
    /// Request id (from `cf-ray` / `x-request-id`, or generated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Connection the work was for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// Why a request was rejected or failed (never a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Further context chosen by the caller ([`LogLine::with`]): counts, resource names,
    /// waits. Never a header map, a body or a secret.
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// Routes whose path carries a secret, as (prefix, number of segments after it that are
/// secret). Keap hook URLs hold an unguessable per-hook token because Keap signs nothing.
const SECRET_PATH_SEGMENTS: &[(&str, usize)] = &[("/webhook/keap/", 1), ("/coordinator/hooks/", 1)];

/// What stands in for a secret path segment in logs.
pub const REDACTED: &str = "[redacted]";

/// `path` with the secret segments of [`SECRET_PATH_SEGMENTS`] replaced by [`REDACTED`], so
/// `wrangler tail` and Workers Logs never keep a hook token.
pub fn redact_path(path: &str) -> String {
    for (prefix, secret_segments) in SECRET_PATH_SEGMENTS {
        if let Some(rest) = path.strip_prefix(prefix) {
            let mut segments: Vec<&str> = rest.split('/').collect();
            for segment in segments.iter_mut().take(*secret_segments) {
                if !segment.is_empty() {
                    *segment = REDACTED;
                }
            }
            return format!("{prefix}{}", segments.join("/"));
        }
    }
    path.to_owned()
}

impl LogLine {
    /// A line for one HTTP request.
    pub fn request(
        worker: &'static str,
        method: &str,
        path: &str,
        status: u16,
        started: Timestamp,
        finished: Timestamp,
    ) -> Self {
        let level = match status {
            500.. => Level::Error,
            400..=499 => Level::Warn,
            _ => Level::Info,
        };
        Self {
            ts: finished.to_iso8601(),
            level,
            worker,
            method: Some(method.to_owned()),
            route: Some(redact_path(path)),
            event: None,
            status: Some(status),
            duration_ms: finished.millis_since(started),
            request_id: None,
            connection_id: None,
            reason: None,
            fields: serde_json::Map::new(),
        }
    }

    /// A line for a non-HTTP event such as a cron run or an alarm.
    pub fn event(
        worker: &'static str,
        event: &str,
        level: Level,
        started: Timestamp,
        finished: Timestamp,
    ) -> Self {
        Self {
            ts: finished.to_iso8601(),
            level,
            worker,
            method: None,
            route: None,
            event: Some(event.to_owned()),
            status: None,
            duration_ms: finished.millis_since(started),
            request_id: None,
            connection_id: None,
            reason: None,
            fields: serde_json::Map::new(),
        }
    }

    /// Adds the request id.
    pub fn with_request_id(mut self, request_id: impl AsRef<str>) -> Self {
        self.request_id = Some(request_id.as_ref().to_owned());
        self
    }

    /// Adds the connection id.
    pub fn with_connection_id(mut self, connection_id: impl AsRef<str>) -> Self {
        self.connection_id = Some(connection_id.as_ref().to_owned());
        self
    }

    /// Adds a reason; raises the level to at least `warn`.
    pub fn with_reason(mut self, reason: impl AsRef<str>) -> Self {
        self.reason = Some(reason.as_ref().to_owned());
        if self.level == Level::Info {
            self.level = Level::Warn;
        }
        self
    }

    /// Adds a field of context (a count, a resource name, a wait); a name the line already
    /// has as one of its own fields is ignored, so context cannot disguise a line.
    pub fn with(mut self, name: &str, value: impl Serialize) -> Self {
        const OWN: &[&str] = &[
            "ts",
            "level",
            "worker",
            "method",
            "route",
            "event",
            "status",
            "duration_ms",
            "request_id",
            "connection_id",
            "reason",
        ];
        if !OWN.contains(&name) {
            if let Ok(value) = serde_json::to_value(value) {
                self.fields.insert(name.to_owned(), value);
            }
        }
        self
    }

    /// The line as compact JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"level\":\"error\"}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_has_the_fields_tail_readers_filter_on() {
        let line = LogLine::request(
            "webhook-handler",
            "POST",
            "/webhooks/shopify",
            401,
            Timestamp::from_millis(1_000),
            Timestamp::from_millis(1_012),
        )
        .with_request_id("req-1")
        .with_reason("signature mismatch");
        let value: serde_json::Value = serde_json::from_str(&line.to_json()).expect("json");
        assert_eq!(value["level"], "warn");
        assert_eq!(value["worker"], "webhook-handler");
        assert_eq!(value["route"], "/webhooks/shopify");
        assert_eq!(value["status"], 401);
        assert_eq!(value["duration_ms"], 12);
        assert_eq!(value["request_id"], "req-1");
        assert_eq!(value["reason"], "signature mismatch");
    }

    #[test]
    fn hook_tokens_in_paths_are_redacted() {
        let token = "hk_3f9a0c2d8e7b6a5f4e3d2c1b0a998877";
        let line = LogLine::request(
            "webhook-handler",
            "POST",
            &format!("/webhook/keap/{token}"),
            200,
            Timestamp(0),
            Timestamp(0),
        );
        assert_eq!(line.route.as_deref(), Some("/webhook/keap/[redacted]"));
        assert!(!line.to_json().contains(token));
        assert_eq!(
            redact_path(&format!("/coordinator/hooks/{token}/verified")),
            "/coordinator/hooks/[redacted]/verified"
        );
        assert_eq!(redact_path("/webhooks/shopify"), "/webhooks/shopify");
        assert_eq!(redact_path("/webhook/keap/"), "/webhook/keap/");
    }

    #[test]
    fn context_fields_sit_beside_the_line_and_cannot_replace_its_own() {
        let line = LogLine::event(
            "sync-worker",
            "sync_page",
            Level::Info,
            Timestamp(0),
            Timestamp(5),
        )
        .with_connection_id("keap_1")
        .with("resource", "contacts")
        .with("records", 100)
        .with("level", "debug");
        let value: serde_json::Value = serde_json::from_str(&line.to_json()).expect("json");
        assert_eq!(value["event"], "sync_page");
        assert_eq!(value["resource"], "contacts");
        assert_eq!(value["records"], 100);
        assert_eq!(value["level"], "info");
        assert_eq!(value["duration_ms"], 5);
    }

    #[test]
    fn server_errors_are_error_level() {
        let line = LogLine::request("x", "GET", "/", 503, Timestamp(0), Timestamp(0));
        assert_eq!(line.level, Level::Error);
    }
}
