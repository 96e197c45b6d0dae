//! Polling a GitLab project (gitlab.com or self-hosted) when its webhook is not configured.
//! Each stream asks only for what changed since it last looked (`updated_after`, ordered by
//! `updated_at`; <https://docs.gitlab.com/api/merge_requests/>,
//! <https://docs.gitlab.com/api/issues/>, <https://docs.gitlab.com/api/pipelines/>), so an
//! idle poll is one small empty answer per stream. Pages follow `X-Next-Page` (or `Link`,
//! <https://docs.gitlab.com/api/rest/#pagination>); rate limits are `RateLimit-*` and 429
//! with `Retry-After` (<https://docs.gitlab.com/security/rate_limits/>). The first walk of a
//! stream is its baseline. Tokens go in `PRIVATE-TOKEN`
//! (<https://docs.gitlab.com/api/rest/authentication/>).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::poll::{header, next_link, text, time, PolledPage, RateLimit, RepoEvent, StreamCursor};
use super::{Issue, PullRequest};
use crate::oauth::HttpRequestSpec;
use crate::sync::PageError;
use crate::{Secret, Timestamp};

/// Items asked for per page.
pub const PER_PAGE: u32 = 50;
/// Looked back past the cursor, so clock skew between GitLab's nodes loses nothing (events
/// are deduplicated by content key).
pub const OVERLAP_MS: i64 = 60_000;

/// What is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Merge requests: opened, merged; the open ones for staleness.
    MergeRequests,
    /// Issues: created; the open ones for staleness.
    Issues,
    /// CI/CD pipelines: failed, succeeded.
    Pipelines,
}

impl Stream {
    /// Every stream, in polling order.
    pub const ALL: [Stream; 3] = [Stream::MergeRequests, Stream::Issues, Stream::Pipelines];

    fn path(self) -> &'static str {
        match self {
            Stream::MergeRequests => "merge_requests?state=all&",
            Stream::Issues => "issues?state=all&",
            Stream::Pipelines => "pipelines?",
        }
    }
}

/// The project polled: the API base (`https://gitlab.com/api/v4`, or a self-hosted
/// instance's) and its path (`group/subgroup/project`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project<'a> {
    /// API base, no trailing slash.
    pub api_base: &'a str,
    /// The project's full path.
    pub path: &'a str,
}

/// The request for a stream's page: `page_url` (a next page) or its first page, asking only
/// for what was updated after the cursor (less [`OVERLAP_MS`]).
pub fn request(
    project: &Project<'_>,
    stream: Stream,
    cursor: &StreamCursor,
    token: &Secret,
    page_url: Option<&str>,
) -> HttpRequestSpec {
    let url = match page_url {
        Some(url) => url.to_owned(),
        None => {
            let id: String =
                url::form_urlencoded::byte_serialize(project.path.as_bytes()).collect();
            let mut url = format!(
                "{}/projects/{id}/{}order_by=updated_at&sort=desc&per_page={PER_PAGE}",
                project.api_base.trim_end_matches('/'),
                stream.path()
            );
            if let Some(seen) = cursor.seen_until {
                let after = seen.plus_millis(-OVERLAP_MS).to_iso8601();
                let after: String =
                    url::form_urlencoded::byte_serialize(after.as_bytes()).collect();
                url.push_str(&format!("&updated_after={after}"));
            }
            url
        }
    };
    HttpRequestSpec {
        method: "GET",
        url,
        headers: vec![
            ("PRIVATE-TOKEN".to_owned(), token.expose().to_owned()),
            ("Accept".to_owned(), "application/json".to_owned()),
        ],
        body: String::new(),
    }
}

/// The rate limit an answer states (`RateLimit-Remaining`, `RateLimit-Reset` in unix
/// seconds).
pub fn rate_limit(headers: &[(String, String)]) -> Option<RateLimit> {
    let remaining = header(headers, "ratelimit-remaining")?.parse().ok()?;
    let reset: i64 = header(headers, "ratelimit-reset")?.parse().ok()?;
    Some(RateLimit {
        remaining,
        reset_at: Timestamp::from_millis(reset.saturating_mul(1000)),
    })
}

fn refusal(status: u16, headers: &[(String, String)], body: &str) -> PageError {
    match status {
        401 => PageError::Unauthorized,
        429 => PageError::RateLimited {
            retry_after_ms: header(headers, "retry-after")
                .and_then(|s| s.parse::<u64>().ok())
                .map(|s| s * 1000),
        },
        408 | 500..=599 => PageError::Server { status },
        _ => PageError::Rejected {
            status,
            message: serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .or_else(|| v.get("error"))
                        .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned))
                })
                .unwrap_or_else(|| format!("HTTP {status}")),
        },
    }
}

/// The next page: `X-Next-Page` on the same URL, else the `Link` header's `next`.
fn next_page(url: &str, headers: &[(String, String)]) -> Option<String> {
    if let Some(page) = header(headers, "x-next-page").filter(|p| !p.is_empty()) {
        let base = url.split("&page=").next().unwrap_or(url);
        return Some(format!("{base}&page={page}"));
    }
    next_link(headers)
}

fn author(item: &Value) -> String {
    item.get("author")
        .and_then(|a| a.get("username"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn labels(item: &Value) -> Vec<String> {
    item.get("labels")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A merge request as GitLab describes it (`now` stands in for a missing update time).
pub fn pull_request_of(item: &Value, now: Timestamp) -> PullRequest {
    PullRequest {
        number: item.get("iid").and_then(Value::as_u64).unwrap_or_default(),
        title: text(item, "title"),
        author: author(item),
        url: text(item, "web_url"),
        labels: labels(item),
        body: text(item, "description"),
        updated_at: time(item, "updated_at").unwrap_or(now),
        merged_at: time(item, "merged_at"),
    }
}

/// An issue as GitLab describes it.
pub fn issue_of(item: &Value, now: Timestamp) -> Issue {
    Issue {
        number: item.get("iid").and_then(Value::as_u64).unwrap_or_default(),
        title: text(item, "title"),
        author: author(item),
        url: text(item, "web_url"),
        labels: labels(item),
        body: text(item, "description"),
        updated_at: time(item, "updated_at").unwrap_or(now),
    }
}

/// Reads the answer to a request for `url` of `stream` against `cursor`.
#[allow(clippy::too_many_arguments)]
pub fn read_page(
    project: &Project<'_>,
    stream: Stream,
    cursor: &StreamCursor,
    url: &str,
    status: u16,
    headers: &[(String, String)],
    body: &str,
    now: Timestamp,
) -> Result<PolledPage, PageError> {
    if !(200..300).contains(&status) {
        return Err(refusal(status, headers, body));
    }
    let value: Value =
        serde_json::from_str(body).map_err(|e| PageError::Malformed(format!("not JSON: {e}")))?;
    let items = value
        .as_array()
        .ok_or_else(|| PageError::Malformed(format!("no {stream:?} list")))?;
    let seen = cursor.seen_until;
    let after = |t: Option<Timestamp>| matches!((t, seen), (Some(t), Some(s)) if t > s);
    let key = |event_type: &str, subject: String| {
        super::poll::content_key("gitlab", project.path, event_type, &subject)
    };
    let mut page = PolledPage {
        newest: items.iter().filter_map(|i| time(i, "updated_at")).max(),
        rate: rate_limit(headers),
        ..PolledPage::default()
    };
    for item in items {
        let iid = item.get("iid").and_then(Value::as_u64).unwrap_or_default();
        let opened = item.get("state").and_then(Value::as_str) == Some("opened");
        let mut push = |event_type: &'static str, subject: String, at: Option<Timestamp>| {
            page.events.push(RepoEvent {
                event_type,
                content_key: key(event_type, subject),
                occurred_at: at,
                data: item.clone(),
            });
        };
        match stream {
            Stream::MergeRequests => {
                let created = time(item, "created_at");
                let merged = time(item, "merged_at");
                if after(created) {
                    push("repo.pr.opened", iid.to_string(), created);
                }
                if after(merged) {
                    push("repo.pr.merged", iid.to_string(), merged);
                }
                if opened {
                    page.open_pulls.push(pull_request_of(item, now));
                }
            }
            Stream::Issues => {
                let created = time(item, "created_at");
                if after(created) {
                    push("issue.created", iid.to_string(), created);
                }
                if opened {
                    page.open_issues.push(issue_of(item, now));
                }
            }
            Stream::Pipelines => {
                let kind = match item.get("status").and_then(Value::as_str) {
                    Some("failed") => Some("repo.build.failed"),
                    Some("success") => Some("repo.build.completed"),
                    _ => None,
                };
                let updated = time(item, "updated_at");
                if let (Some(kind), true) = (kind, after(updated)) {
                    let id = item.get("id").and_then(Value::as_u64).unwrap_or_default();
                    push(kind, id.to_string(), updated);
                }
            }
        }
    }
    if seen.is_some() {
        page.next = next_page(url, headers);
    } else {
        // The baseline: nothing older than now is reported, nothing more is walked.
        page.events.clear();
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PROJECT: Project<'static> = Project {
        api_base: "https://gitlab.com/api/v4",
        path: "acme/web/shop",
    };

    fn at(hours: i64) -> Timestamp {
        Timestamp::from_millis(1_764_000_000_000 + hours * 3_600_000)
    }

    fn mr(iid: u64, created: i64, updated: i64, merged: Option<i64>) -> Value {
        json!({"iid": iid, "title": format!("MR {iid}"), "state": if merged.is_some() { "merged" } else { "opened" },
               "author": {"username": "dev"}, "web_url": format!("https://gitlab.com/acme/web/shop/-/merge_requests/{iid}"),
               "labels": ["feature"], "description": "", "created_at": at(created).to_iso8601(),
               "updated_at": at(updated).to_iso8601(), "merged_at": merged.map(|m| at(m).to_iso8601())})
    }

    #[test]
    fn requests_ask_only_for_what_changed() {
        let token = Secret::new("glpat-x".to_owned());
        let first = request(
            &PROJECT,
            Stream::MergeRequests,
            &StreamCursor::default(),
            &token,
            None,
        );
        assert_eq!(
            first.url,
            "https://gitlab.com/api/v4/projects/acme%2Fweb%2Fshop/merge_requests?state=all&order_by=updated_at&sort=desc&per_page=50"
        );
        assert_eq!(first.header("PRIVATE-TOKEN"), Some("glpat-x"));
        let cursor = StreamCursor {
            etag: None,
            seen_until: Some(at(2)),
        };
        let later = request(&PROJECT, Stream::Pipelines, &cursor, &token, None);
        let after = at(2)
            .plus_millis(-OVERLAP_MS)
            .to_iso8601()
            .replace(':', "%3A");
        assert!(
            later.url.ends_with(&format!("&updated_after={after}")),
            "{}",
            later.url
        );
    }

    #[test]
    fn baseline_then_new_changes_with_keys_and_paging() {
        let url = "https://gitlab.com/api/v4/projects/acme%2Fweb%2Fshop/merge_requests?state=all";
        let body = json!([mr(3, 5, 5, None), mr(2, 1, 4, Some(4))]).to_string();
        let baseline = read_page(
            &PROJECT,
            Stream::MergeRequests,
            &StreamCursor::default(),
            url,
            200,
            &[],
            &body,
            at(6),
        )
        .expect("page");
        assert!(baseline.events.is_empty());
        assert_eq!(baseline.open_pulls.len(), 1);
        let cursor = super::super::poll::advanced(&StreamCursor::default(), None, baseline.newest);
        let body = json!([mr(4, 7, 7, None), mr(3, 5, 8, Some(8))]).to_string();
        let headers = vec![
            ("X-Next-Page".to_owned(), "2".to_owned()),
            ("RateLimit-Remaining".to_owned(), "1999".to_owned()),
            ("RateLimit-Reset".to_owned(), "1764003600".to_owned()),
        ];
        let page = read_page(
            &PROJECT,
            Stream::MergeRequests,
            &cursor,
            url,
            200,
            &headers,
            &body,
            at(9),
        )
        .expect("page");
        let keys: Vec<&str> = page.events.iter().map(|e| e.content_key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "gitlab:acme/web/shop:repo.pr.opened:4",
                "gitlab:acme/web/shop:repo.pr.merged:3"
            ]
        );
        assert_eq!(page.next.as_deref(), Some(format!("{url}&page=2").as_str()));
        assert_eq!(page.rate.map(|r| r.remaining), Some(1999));

        let pipelines =
            json!([{"id": 55, "status": "failed", "ref": "main", "updated_at": at(9).to_iso8601()},
                               {"id": 56, "status": "running", "updated_at": at(9).to_iso8601()}])
            .to_string();
        let page = read_page(
            &PROJECT,
            Stream::Pipelines,
            &cursor,
            url,
            200,
            &[],
            &pipelines,
            at(10),
        )
        .expect("page");
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.events[0].event_type, "repo.build.failed");
    }

    #[test]
    fn refusals() {
        let url = "u";
        let limited = read_page(
            &PROJECT,
            Stream::Issues,
            &StreamCursor::default(),
            url,
            429,
            &[("Retry-After".to_owned(), "30".to_owned())],
            "",
            at(0),
        );
        assert_eq!(
            limited,
            Err(PageError::RateLimited {
                retry_after_ms: Some(30_000)
            })
        );
        assert_eq!(
            read_page(
                &PROJECT,
                Stream::Issues,
                &StreamCursor::default(),
                url,
                401,
                &[],
                "",
                at(0)
            ),
            Err(PageError::Unauthorized)
        );
        assert!(matches!(
            read_page(&PROJECT, Stream::Issues, &StreamCursor::default(), url, 404, &[], r#"{"message":"404 Project Not Found"}"#, at(0)),
            Err(PageError::Rejected { status: 404, message }) if message == "404 Project Not Found"
        ));
    }

    #[test]
    fn a_merge_request_seen_by_hook_and_by_poll_has_one_key() {
        use crate::webhook::{classify_git, GitHeaders};
        let hook = json!({"object_kind": "merge_request", "project": {"path_with_namespace": "acme/web/shop"},
            "object_attributes": {"iid": 4, "action": "open", "state": "opened",
                                  "created_at": "2026-11-20 10:00:00 UTC", "updated_at": "2026-11-20 10:00:00 UTC"}});
        let headers = GitHeaders {
            gitlab_event: Some("Merge Request Hook"),
            ..GitHeaders::default()
        };
        let (_, hooked) = classify_git(&headers, hook.to_string().as_bytes()).expect("classified");
        assert_eq!(hooked.event_type.as_deref(), Some("repo.pr.opened"));
        let cursor = StreamCursor {
            etag: None,
            seen_until: Some(at(0)),
        };
        let body = json!([mr(4, 7, 7, None)]).to_string();
        let polled = read_page(
            &PROJECT,
            Stream::MergeRequests,
            &cursor,
            "u",
            200,
            &[],
            &body,
            at(8),
        )
        .expect("page");
        assert_eq!(
            hooked.content_key.as_deref(),
            Some(polled.events[0].content_key.as_str())
        );
    }
}
