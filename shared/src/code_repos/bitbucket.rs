//! Polling a Bitbucket Cloud repository when its webhook is not configured
//! (<https://developer.atlassian.com/cloud/bitbucket/rest/intro/>): pull requests and issues
//! filtered with `q=updated_on>"…"` and sorted `-updated_on` (so an idle poll is one small
//! empty page per stream), pipelines newest first; pages follow the body's `next`; 429 with
//! `Retry-After` is a rate limit. The first walk of a stream is its baseline. Repository
//! access tokens go in `Authorization: Bearer`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::poll::{content_key, header, text, time, PolledPage, RepoEvent, StreamCursor};
use super::{Issue, PullRequest};
use crate::oauth::HttpRequestSpec;
use crate::sync::PageError;
use crate::{Secret, Timestamp};

/// Items asked for per page (Bitbucket allows up to 50 on these lists).
pub const PAGE_LEN: u32 = 50;
/// Looked back past the cursor (events are deduplicated by content key).
pub const OVERLAP_MS: i64 = 60_000;

/// What is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Pull requests: opened, merged; the open ones for staleness.
    PullRequests,
    /// Issues (the repository's issue tracker): created; the open ones for staleness.
    Issues,
    /// Bitbucket Pipelines: failed, succeeded.
    Pipelines,
}

impl Stream {
    /// Every stream, in polling order.
    pub const ALL: [Stream; 3] = [Stream::PullRequests, Stream::Issues, Stream::Pipelines];
}

/// The repository polled: API base (`https://api.bitbucket.org/2.0`) and `workspace/slug`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository<'a> {
    /// API base, no trailing slash.
    pub api_base: &'a str,
    /// `workspace/repo_slug`.
    pub full_name: &'a str,
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The request for a stream's page: `page_url` (the body's `next`) or its first page.
pub fn request(
    repo: &Repository<'_>,
    stream: Stream,
    cursor: &StreamCursor,
    token: &Secret,
    page_url: Option<&str>,
) -> HttpRequestSpec {
    let url = page_url.map_or_else(
        || {
            let base = format!(
                "{}/repositories/{}",
                repo.api_base.trim_end_matches('/'),
                repo.full_name
            );
            let since = cursor.seen_until.map(|s| {
                encode(&format!(
                    "updated_on>\"{}\"",
                    s.plus_millis(-OVERLAP_MS).to_iso8601()
                ))
            });
            match stream {
                Stream::PullRequests => format!(
                    "{base}/pullrequests?state=OPEN&state=MERGED&state=DECLINED&sort=-updated_on&pagelen={PAGE_LEN}{}",
                    since.map(|q| format!("&q={q}")).unwrap_or_default()
                ),
                Stream::Issues => format!(
                    "{base}/issues?sort=-updated_on&pagelen={PAGE_LEN}{}",
                    since.map(|q| format!("&q={q}")).unwrap_or_default()
                ),
                Stream::Pipelines => format!("{base}/pipelines/?sort=-created_on&pagelen={PAGE_LEN}"),
            }
        },
        str::to_owned,
    );
    HttpRequestSpec {
        method: "GET",
        url,
        headers: vec![
            (
                "Authorization".to_owned(),
                format!("Bearer {}", token.expose()),
            ),
            ("Accept".to_owned(), "application/json".to_owned()),
        ],
        body: String::new(),
    }
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
                    v.pointer("/error/message")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| format!("HTTP {status}")),
        },
    }
}

fn nickname(item: &Value, key: &str) -> String {
    item.get(key)
        .and_then(|a| a.get("nickname").or_else(|| a.get("display_name")))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn web_url(item: &Value) -> String {
    item.pointer("/links/html/href")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A pull request as Bitbucket describes it (no merge time: a merged one's last update).
pub fn pull_request_of(item: &Value, now: Timestamp) -> PullRequest {
    let merged = (item.get("state").and_then(Value::as_str) == Some("MERGED"))
        .then(|| time(item, "updated_on"))
        .flatten();
    PullRequest {
        number: item.get("id").and_then(Value::as_u64).unwrap_or_default(),
        title: text(item, "title"),
        author: nickname(item, "author"),
        url: web_url(item),
        labels: Vec::new(),
        body: text(item, "description"),
        updated_at: time(item, "updated_on").unwrap_or(now),
        merged_at: merged,
    }
}

/// An issue as Bitbucket describes it.
pub fn issue_of(item: &Value, now: Timestamp) -> Issue {
    Issue {
        number: item.get("id").and_then(Value::as_u64).unwrap_or_default(),
        title: text(item, "title"),
        author: nickname(item, "reporter"),
        url: web_url(item),
        labels: Vec::new(),
        body: item
            .pointer("/content/raw")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        updated_at: time(item, "updated_on").unwrap_or(now),
    }
}

/// Reads the answer to a request of `stream` against `cursor`.
pub fn read_page(
    repo: &Repository<'_>,
    stream: Stream,
    cursor: &StreamCursor,
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
        .get("values")
        .and_then(Value::as_array)
        .ok_or_else(|| PageError::Malformed(format!("no {stream:?} values")))?;
    let seen = cursor.seen_until;
    let after = |t: Option<Timestamp>| matches!((t, seen), (Some(t), Some(s)) if t > s);
    let order_key = match stream {
        Stream::Pipelines => "completed_on",
        _ => "updated_on",
    };
    let mut page = PolledPage {
        newest: items.iter().filter_map(|i| time(i, order_key)).max(),
        ..PolledPage::default()
    };
    let mut reached_seen = false;
    for item in items {
        let id = item.get("id").and_then(Value::as_u64).unwrap_or_default();
        if seen.is_some() && !after(time(item, order_key)) {
            reached_seen = true;
        }
        let mut push = |event_type: &'static str, subject: String, at: Option<Timestamp>| {
            page.events.push(RepoEvent {
                event_type,
                content_key: content_key("bitbucket", repo.full_name, event_type, &subject),
                occurred_at: at,
                data: item.clone(),
            });
        };
        let state = item
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match stream {
            Stream::PullRequests => {
                let created = time(item, "created_on");
                if after(created) {
                    push("repo.pr.opened", id.to_string(), created);
                }
                // Bitbucket has no merge time: a merged pull request's last update is it.
                let merged = (state == "MERGED")
                    .then(|| time(item, "updated_on"))
                    .flatten();
                if after(merged) {
                    push("repo.pr.merged", id.to_string(), merged);
                }
                if state == "OPEN" {
                    page.open_pulls.push(pull_request_of(item, now));
                }
            }
            Stream::Issues => {
                let created = time(item, "created_on");
                if after(created) {
                    push("issue.created", id.to_string(), created);
                }
                if matches!(state, "new" | "open") {
                    page.open_issues.push(issue_of(item, now));
                }
            }
            Stream::Pipelines => {
                let kind = match item.pointer("/state/result/name").and_then(Value::as_str) {
                    Some("FAILED" | "ERROR") => Some("repo.build.failed"),
                    Some("SUCCESSFUL") => Some("repo.build.completed"),
                    _ => None,
                };
                let completed = time(item, "completed_on");
                if let (Some(kind), true) = (kind, after(completed)) {
                    let number = item
                        .get("build_number")
                        .and_then(Value::as_u64)
                        .unwrap_or_default();
                    push(kind, number.to_string(), completed);
                }
            }
        }
    }
    if seen.is_none() {
        page.events.clear();
    } else if !reached_seen || stream != Stream::Pipelines {
        page.next = value.get("next").and_then(Value::as_str).map(str::to_owned);
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const REPO: Repository<'static> = Repository {
        api_base: "https://api.bitbucket.org/2.0",
        full_name: "acme/shop",
    };

    fn at(hours: i64) -> Timestamp {
        Timestamp::from_millis(1_764_000_000_000 + hours * 3_600_000)
    }

    fn pr(id: u64, state: &str, created: i64, updated: i64) -> Value {
        json!({"id": id, "title": format!("PR {id}"), "state": state, "author": {"nickname": "dev"},
               "links": {"html": {"href": format!("https://bitbucket.org/acme/shop/pull-requests/{id}")}},
               "created_on": at(created).to_iso8601(), "updated_on": at(updated).to_iso8601()})
    }

    #[test]
    fn requests_filter_by_update_time_after_the_baseline() {
        let token = Secret::new("bbt".to_owned());
        let first = request(
            &REPO,
            Stream::PullRequests,
            &StreamCursor::default(),
            &token,
            None,
        );
        assert!(!first.url.contains("q="), "{}", first.url);
        assert_eq!(first.header("Authorization"), Some("Bearer bbt"));
        let cursor = StreamCursor {
            etag: None,
            seen_until: Some(at(1)),
        };
        let later = request(&REPO, Stream::PullRequests, &cursor, &token, None);
        assert!(later.url.contains("&q=updated_on%3E%22"), "{}", later.url);
        let next = request(
            &REPO,
            Stream::PullRequests,
            &cursor,
            &token,
            Some("https://api.bitbucket.org/2.0/x?page=2"),
        );
        assert_eq!(next.url, "https://api.bitbucket.org/2.0/x?page=2");
    }

    #[test]
    fn baseline_then_opened_merged_and_failed() {
        let body = json!({"values": [pr(1, "OPEN", 0, 0)], "pagelen": 50}).to_string();
        let baseline = read_page(
            &REPO,
            Stream::PullRequests,
            &StreamCursor::default(),
            200,
            &[],
            &body,
            at(1),
        )
        .expect("page");
        assert!(baseline.events.is_empty());
        assert_eq!(baseline.open_pulls.len(), 1);
        let cursor = StreamCursor {
            etag: None,
            seen_until: baseline.newest,
        };
        let body = json!({"values": [pr(2, "OPEN", 2, 2), pr(1, "MERGED", 0, 3)],
                          "next": "https://api.bitbucket.org/2.0/repositories/acme/shop/pullrequests?page=2"}).to_string();
        let page =
            read_page(&REPO, Stream::PullRequests, &cursor, 200, &[], &body, at(4)).expect("page");
        let keys: Vec<&str> = page.events.iter().map(|e| e.content_key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "bitbucket:acme/shop:repo.pr.opened:2",
                "bitbucket:acme/shop:repo.pr.merged:1"
            ]
        );
        assert!(page.next.is_some());

        let pipelines = json!({"values": [
            {"build_number": 12, "state": {"name": "COMPLETED", "result": {"name": "FAILED"}}, "completed_on": at(3).to_iso8601()},
            {"build_number": 11, "state": {"name": "IN_PROGRESS"}}
        ]}).to_string();
        let page = read_page(
            &REPO,
            Stream::Pipelines,
            &cursor,
            200,
            &[],
            &pipelines,
            at(4),
        )
        .expect("page");
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.events[0].event_type, "repo.build.failed");
        assert_eq!(
            read_page(
                &REPO,
                Stream::Issues,
                &cursor,
                429,
                &[("Retry-After".to_owned(), "5".to_owned())],
                "",
                at(4)
            ),
            Err(PageError::RateLimited {
                retry_after_ms: Some(5_000)
            })
        );
        assert!(matches!(
            read_page(&REPO, Stream::Issues, &cursor, 404, &[], r#"{"type":"error","error":{"message":"Repository not found"}}"#, at(4)),
            Err(PageError::Rejected { status: 404, message }) if message == "Repository not found"
        ));
    }

    #[test]
    fn a_pull_request_seen_by_hook_and_by_poll_has_one_key() {
        use crate::webhook::{classify_git, GitHeaders};
        let hook =
            json!({"pullrequest": pr(2, "OPEN", 2, 2), "repository": {"full_name": "acme/shop"}});
        let headers = GitHeaders {
            bitbucket_event_key: Some("pullrequest:created"),
            ..GitHeaders::default()
        };
        let (_, hooked) = classify_git(&headers, hook.to_string().as_bytes()).expect("classified");
        let cursor = StreamCursor {
            etag: None,
            seen_until: Some(at(1)),
        };
        let body = json!({"values": [pr(2, "OPEN", 2, 2)]}).to_string();
        let polled =
            read_page(&REPO, Stream::PullRequests, &cursor, 200, &[], &body, at(3)).expect("page");
        assert_eq!(
            hooked.content_key.as_deref(),
            Some(polled.events[0].content_key.as_str())
        );
        // A Bitbucket Pipelines build status names its build number in its URL.
        let status = json!({"commit_status": {"state": "FAILED", "key": "k",
            "url": "https://bitbucket.org/acme/shop/pipelines/results/7",
            "updated_on": at(2).to_iso8601()}, "repository": {"full_name": "acme/shop"}});
        let headers = GitHeaders {
            bitbucket_event_key: Some("repo:commit_status_updated"),
            ..GitHeaders::default()
        };
        let (_, hooked) =
            classify_git(&headers, status.to_string().as_bytes()).expect("classified");
        let pipeline = json!({"uuid": "{p}", "build_number": 7,
            "state": {"name": "COMPLETED", "result": {"name": "FAILED"}},
            "completed_on": at(2).to_iso8601(), "created_on": at(2).to_iso8601()});
        let body = json!({"values": [pipeline]}).to_string();
        let polled =
            read_page(&REPO, Stream::Pipelines, &cursor, 200, &[], &body, at(3)).expect("page");
        assert_eq!(polled.events[0].event_type, "repo.build.failed");
        assert_eq!(
            hooked.content_key.as_deref(),
            Some(polled.events[0].content_key.as_str())
        );
    }
}
