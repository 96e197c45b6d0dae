//! What polling a repository host shares, whatever the host: a stream's cursor, the events
//! found, a page as read, the rate limit an answer states, content keys equal to the
//! webhooks' (so a change seen both ways is one event), and `Link` paging
//! (<https://www.rfc-editor.org/rfc/rfc8288>).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Issue, PullRequest};
use crate::sync::values::parse_time;
use crate::Timestamp;

/// What a stream remembers between polls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCursor {
    /// The first page's `ETag` at the last complete walk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The newest ordering time seen (`None` until the baseline walk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_until: Option<Timestamp>,
}

/// An event found by polling, as the event store takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoEvent {
    /// `repo.pr.opened`, `repo.pr.merged`, `issue.created`, `issue.comment.created`,
    /// `repo.build.failed`, `repo.build.completed`, `repo.dependency.outdated`.
    pub event_type: &'static str,
    /// The key the webhook of the same change has ([`content_key`]).
    pub content_key: String,
    /// When it happened.
    pub occurred_at: Option<Timestamp>,
    /// The host's record.
    pub data: Value,
}

/// One page, read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolledPage {
    /// 304: nothing changed since the last walk (no events, no next page).
    pub not_modified: bool,
    /// Changes newer than the cursor (none on a baseline walk).
    pub events: Vec<RepoEvent>,
    /// Open pull requests on this page (for staleness).
    pub open_pulls: Vec<PullRequest>,
    /// Open issues on this page (for staleness).
    pub open_issues: Vec<Issue>,
    /// The next page to walk, when this one did not reach what was seen.
    pub next: Option<String>,
    /// This page's `ETag` (kept from the first page).
    pub etag: Option<String>,
    /// The newest ordering time on the page.
    pub newest: Option<Timestamp>,
    /// Requests left in the rate-limit window, and when it resets.
    pub rate: Option<RateLimit>,
}

/// The primary rate limit as the answer states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// `X-RateLimit-Remaining`.
    pub remaining: u64,
    /// `X-RateLimit-Reset` (unix seconds) as a time.
    pub reset_at: Timestamp,
}

/// The content key of a repository change, the same for its webhook and its poll:
/// `<host>:<owner/name>:<event type>:<subject id>`.
pub fn content_key(host: &str, repository: &str, event_type: &str, subject: &str) -> String {
    format!(
        "{host}:{}:{event_type}:{subject}",
        repository.to_ascii_lowercase()
    )
}

pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

pub(crate) fn time(item: &Value, key: &str) -> Option<Timestamp> {
    item.get(key).and_then(Value::as_str).and_then(parse_time)
}

pub(crate) fn text(item: &Value, key: &str) -> String {
    item.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The `rel="next"` URL of a `Link` header.
pub fn next_link(headers: &[(String, String)]) -> Option<String> {
    header(headers, "link")?.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

/// The cursor after a complete walk whose first page was `first` and whose newest item is
/// `newest` (a walk cut off keeps the old cursor, so it is walked again from the top).
pub fn advanced(
    cursor: &StreamCursor,
    first_etag: Option<String>,
    newest: Option<Timestamp>,
) -> StreamCursor {
    StreamCursor {
        etag: first_etag.or_else(|| cursor.etag.clone()),
        seen_until: match (cursor.seen_until, newest) {
            (Some(s), Some(n)) => Some(s.max(n)),
            (s, n) => n.or(s),
        },
    }
}
