//! Polling a GitHub repository when its webhook is not configured, costing nothing when
//! nothing changed: each stream's first page is asked for with the `ETag` of its last
//! answer (`If-None-Match`), and a 304 does not count against the rate limit
//! (<https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#use-conditional-requests-if-appropriate>).
//! Lists are walked newest first and stop at what was already seen; pages follow the
//! `Link` header (<https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api>).
//! The first walk of a stream is its baseline: nothing older is reported. Rate limits:
//! `X-RateLimit-Remaining` / `X-RateLimit-Reset`, and secondary limits answered 403 or 429
//! with `Retry-After` (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>).
//!
//! Events carry the content key a webhook of the same change carries ([`content_key`]), so
//! a change seen both ways is one event.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use super::poll::{
    advanced, content_key, next_link, PolledPage, RateLimit, RepoEvent, StreamCursor,
};
use super::poll::{header, text, time};
use super::{Issue, PullRequest};
use crate::oauth::HttpRequestSpec;
use crate::sync::PageError;
use crate::{Secret, Timestamp};

/// Items asked for per page.
pub const PER_PAGE: u32 = 50;

/// What is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Pull requests: opened, merged; the open ones for staleness.
    Pulls,
    /// Issues (pull requests filtered out): created; the open ones for staleness.
    Issues,
    /// Issue comments: created (comments on pull requests are not issue comments).
    IssueComments,
    /// GitHub Actions workflow runs: failed, completed.
    WorkflowRuns,
    /// Dependabot alerts: outdated (vulnerable) dependencies.
    DependabotAlerts,
}

impl Stream {
    /// Every stream, in polling order.
    pub const ALL: [Stream; 5] = [
        Stream::Pulls,
        Stream::Issues,
        Stream::IssueComments,
        Stream::WorkflowRuns,
        Stream::DependabotAlerts,
    ];

    fn path(self) -> &'static str {
        match self {
            Stream::Pulls => "pulls?state=all&sort=updated&direction=desc",
            Stream::Issues => "issues?state=all&sort=updated&direction=desc",
            Stream::IssueComments => "issues/comments?sort=updated&direction=desc",
            Stream::WorkflowRuns => "actions/runs?",
            Stream::DependabotAlerts => "dependabot/alerts?state=open&sort=updated&direction=desc",
        }
    }

    /// The time the cursor follows: the last update (for a workflow run, when it completed;
    /// runs are listed by creation, so a page is read whole).
    fn order_time(self, item: &Value) -> Option<Timestamp> {
        time(item, "updated_at")
    }
}

/// The repository polled: the API base (`https://api.github.com`, or a GitHub Enterprise
/// Server's `https://host/api/v3`) and `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository<'a> {
    /// API base, no trailing slash.
    pub api_base: &'a str,
    /// `owner/name`.
    pub full_name: &'a str,
}

/// The request for a stream's page: `page_url` (a `Link` `next`) or its first page, with
/// the stream's `ETag` on the first page.
pub fn request(
    repo: &Repository<'_>,
    stream: Stream,
    cursor: &StreamCursor,
    token: &Secret,
    page_url: Option<&str>,
) -> HttpRequestSpec {
    let (url, first) = match page_url {
        Some(url) => (url.to_owned(), false),
        None => (
            format!(
                "{}/repos/{}/{}&per_page={PER_PAGE}",
                repo.api_base.trim_end_matches('/'),
                repo.full_name,
                stream.path()
            )
            .replace("?&", "?"),
            true,
        ),
    };
    let mut headers = vec![
        (
            "Accept".to_owned(),
            "application/vnd.github+json".to_owned(),
        ),
        (
            "Authorization".to_owned(),
            format!("Bearer {}", token.expose()),
        ),
        ("X-GitHub-Api-Version".to_owned(), "2022-11-28".to_owned()),
        ("User-Agent".to_owned(), "edge-sync".to_owned()),
    ];
    if let (true, Some(etag)) = (first, &cursor.etag) {
        headers.push(("If-None-Match".to_owned(), etag.clone()));
    }
    HttpRequestSpec {
        method: "GET",
        url,
        headers,
        body: String::new(),
    }
}

/// The primary rate limit stated by `headers`.
pub fn rate_limit(headers: &[(String, String)]) -> Option<RateLimit> {
    let remaining = header(headers, "x-ratelimit-remaining")?.parse().ok()?;
    let reset: i64 = header(headers, "x-ratelimit-reset")?.parse().ok()?;
    Some(RateLimit {
        remaining,
        reset_at: Timestamp::from_millis(reset.saturating_mul(1000)),
    })
}

/// Why an answer is not a page: 401 (refresh or stop), a rate limit with its wait, 5xx, or
/// another refusal.
fn refusal(status: u16, headers: &[(String, String)], body: &str, now: Timestamp) -> PageError {
    let limited_until = || {
        rate_limit(headers)
            .filter(|r| r.remaining == 0)
            .map(|r| u64::try_from(r.reset_at.millis_since(now).max(0)).unwrap_or(0))
    };
    match status {
        401 => PageError::Unauthorized,
        403 | 429
            if header(headers, "retry-after").is_some()
                || limited_until().is_some()
                || status == 429 =>
        {
            let retry_after_ms = header(headers, "retry-after")
                .and_then(|s| s.parse::<u64>().ok())
                .map(|s| s * 1000)
                .or_else(limited_until);
            PageError::RateLimited { retry_after_ms }
        }
        408 | 500..=599 => PageError::Server { status },
        _ => PageError::Rejected {
            status,
            message: serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| format!("HTTP {status}")),
        },
    }
}

fn login(item: &Value) -> String {
    item.get("user")
        .and_then(|u| u.get("login"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn labels(item: &Value) -> Vec<String> {
    item.get("labels")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|l| l.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A pull request as GitHub describes it (`now` stands in for a missing update time).
pub fn pull_request_of(item: &Value, now: Timestamp) -> PullRequest {
    PullRequest {
        number: item
            .get("number")
            .and_then(Value::as_u64)
            .unwrap_or_default(),
        title: text(item, "title"),
        author: login(item),
        url: text(item, "html_url"),
        labels: labels(item),
        body: text(item, "body"),
        updated_at: time(item, "updated_at").unwrap_or(now),
        merged_at: time(item, "merged_at"),
    }
}

/// An issue as GitHub describes it.
pub fn issue_of(item: &Value, now: Timestamp) -> Issue {
    Issue {
        number: item
            .get("number")
            .and_then(Value::as_u64)
            .unwrap_or_default(),
        title: text(item, "title"),
        author: login(item),
        url: text(item, "html_url"),
        labels: labels(item),
        body: text(item, "body"),
        updated_at: time(item, "updated_at").unwrap_or(now),
    }
}

/// Reads an answer to [`request`] for `stream` against `cursor`, at `now`.
pub fn read_page(
    repo: &Repository<'_>,
    stream: Stream,
    cursor: &StreamCursor,
    status: u16,
    headers: &[(String, String)],
    body: &str,
    now: Timestamp,
) -> Result<PolledPage, PageError> {
    let rate = rate_limit(headers);
    if status == 304 {
        return Ok(PolledPage {
            not_modified: true,
            etag: cursor.etag.clone(),
            rate,
            ..PolledPage::default()
        });
    }
    if !(200..300).contains(&status) {
        return Err(refusal(status, headers, body, now));
    }
    let value: Value =
        serde_json::from_str(body).map_err(|e| PageError::Malformed(format!("not JSON: {e}")))?;
    let items = match stream {
        Stream::WorkflowRuns => value.get("workflow_runs").and_then(Value::as_array),
        _ => value.as_array(),
    }
    .ok_or_else(|| PageError::Malformed(format!("no {stream:?} list")))?;
    let seen = cursor.seen_until;
    let after = |t: Option<Timestamp>| matches!((t, seen), (Some(t), Some(s)) if t > s);
    let key = |event_type: &str, subject: String| {
        content_key("github", repo.full_name, event_type, &subject)
    };
    let mut page = PolledPage {
        etag: header(headers, "etag").map(str::to_owned),
        newest: items.iter().filter_map(|i| stream.order_time(i)).max(),
        rate,
        ..PolledPage::default()
    };
    let mut reached_seen = false;
    for item in items {
        let ordered = stream.order_time(item);
        if seen.is_some() && !after(ordered) {
            reached_seen = true;
        }
        let number = item
            .get("number")
            .and_then(Value::as_u64)
            .unwrap_or_default();
        let open = item.get("state").and_then(Value::as_str) == Some("open");
        let mut push = |event_type: &'static str, subject: String, at: Option<Timestamp>| {
            page.events.push(RepoEvent {
                event_type,
                content_key: key(event_type, subject),
                occurred_at: at,
                data: item.clone(),
            });
        };
        match stream {
            Stream::Pulls => {
                let created = time(item, "created_at");
                let merged = time(item, "merged_at");
                if after(created) {
                    push("repo.pr.opened", number.to_string(), created);
                }
                if after(merged) {
                    push("repo.pr.merged", number.to_string(), merged);
                }
                if open {
                    page.open_pulls.push(pull_request_of(item, now));
                }
            }
            Stream::Issues => {
                // The issues list includes pull requests; they are the pulls stream's.
                if item.get("pull_request").is_some_and(|p| !p.is_null()) {
                    continue;
                }
                let created = time(item, "created_at");
                if after(created) {
                    push("issue.created", number.to_string(), created);
                }
                if open {
                    page.open_issues.push(issue_of(item, now));
                }
            }
            Stream::IssueComments => {
                let on_pull = text(item, "html_url").contains("/pull/");
                let created = time(item, "created_at");
                if !on_pull && after(created) {
                    let id = item.get("id").and_then(Value::as_u64).unwrap_or_default();
                    push("issue.comment.created", id.to_string(), created);
                }
            }
            Stream::WorkflowRuns => {
                let completed = item.get("status").and_then(Value::as_str) == Some("completed");
                let kind = match item.get("conclusion").and_then(Value::as_str) {
                    Some("failure" | "timed_out" | "startup_failure") => Some("repo.build.failed"),
                    Some("success") => Some("repo.build.completed"),
                    _ => None,
                };
                if let (true, Some(kind)) = (completed, kind) {
                    if after(ordered) {
                        let id = item.get("id").and_then(Value::as_u64).unwrap_or_default();
                        push(kind, id.to_string(), time(item, "updated_at"));
                    }
                }
            }
            Stream::DependabotAlerts => {
                if after(time(item, "created_at")) {
                    push(
                        "repo.dependency.outdated",
                        number.to_string(),
                        time(item, "created_at"),
                    );
                }
            }
        }
    }
    if !reached_seen && seen.is_some() {
        page.next = next_link(headers);
    }
    if seen.is_none() {
        // The baseline: nothing older than now is reported, nothing more is walked.
        page.events.clear();
    }
    Ok(page)
}

/// A failed workflow run's prompt material: its name, branch and the failing jobs' names and
/// log tails (`jobs` as `GET .../actions/runs/{id}/jobs` lists them; `logs` per job id).
pub fn build_failure_context(
    run: &Value,
    jobs: &Value,
    logs: &[(u64, String)],
    tail_lines: usize,
) -> Value {
    let failing: Vec<Value> = jobs
        .get("jobs")
        .and_then(Value::as_array)
        .map(|jobs| {
            jobs.iter()
                .filter(|j| j.get("conclusion").and_then(Value::as_str) == Some("failure"))
                .map(|j| {
                    let id = j.get("id").and_then(Value::as_u64).unwrap_or_default();
                    let log = logs
                        .iter()
                        .find(|(job, _)| *job == id)
                        .map(|(_, log)| super::api::log_tail(log, tail_lines))
                        .unwrap_or_default();
                    json!({"name": text(j, "name"), "log_tail": log})
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "workflow": text(run, "name"),
        "branch": text(run, "head_branch"),
        "commit": text(run, "head_sha"),
        "url": text(run, "html_url"),
        "failing_jobs": failing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPO: Repository<'static> = Repository {
        api_base: "https://api.github.com",
        full_name: "acme/shop",
    };

    fn at(hours: i64) -> Timestamp {
        Timestamp::from_millis(1_764_000_000_000 + hours * 3_600_000)
    }

    fn iso(hours: i64) -> String {
        at(hours).to_iso8601()
    }

    fn pull(number: u64, created: i64, updated: i64, merged: Option<i64>) -> Value {
        json!({"number": number, "title": format!("PR {number}"), "state": if merged.is_some() { "closed" } else { "open" },
               "user": {"login": "dev"}, "html_url": format!("https://github.com/acme/shop/pull/{number}"),
               "labels": [{"name": "feature"}], "body": "", "created_at": iso(created),
               "updated_at": iso(updated), "merged_at": merged.map(iso)})
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn requests_are_conditional_on_the_first_page_only() {
        let token = Secret::new("ghp_x".to_owned());
        let cursor = StreamCursor {
            etag: Some("W/\"abc\"".into()),
            seen_until: Some(at(0)),
        };
        let first = request(&REPO, Stream::Pulls, &cursor, &token, None);
        assert_eq!(
            first.url,
            "https://api.github.com/repos/acme/shop/pulls?state=all&sort=updated&direction=desc&per_page=50"
        );
        assert_eq!(first.header("If-None-Match"), Some("W/\"abc\""));
        assert_eq!(first.header("Authorization"), Some("Bearer ghp_x"));
        assert_eq!(first.header("X-GitHub-Api-Version"), Some("2022-11-28"));
        let runs = request(&REPO, Stream::WorkflowRuns, &cursor, &token, None);
        assert!(
            runs.url.ends_with("/actions/runs?per_page=50"),
            "{}",
            runs.url
        );
        let next = request(
            &REPO,
            Stream::Pulls,
            &cursor,
            &token,
            Some("https://api.github.com/x?page=2"),
        );
        assert_eq!(next.header("If-None-Match"), None);
    }

    #[test]
    fn the_first_walk_is_a_baseline_then_only_newer_changes_count() {
        let body = json!([
            pull(3, 9, 9, None),
            pull(2, 1, 8, Some(8)),
            pull(1, 0, 2, None)
        ])
        .to_string();
        let h = headers(&[
            ("ETag", "W/\"v1\""),
            ("X-RateLimit-Remaining", "4999"),
            ("X-RateLimit-Reset", "1764003600"),
        ]);
        let baseline = read_page(
            &REPO,
            Stream::Pulls,
            &StreamCursor::default(),
            200,
            &h,
            &body,
            at(10),
        )
        .expect("page");
        assert!(
            baseline.events.is_empty(),
            "nothing older than now is reported"
        );
        assert_eq!(baseline.open_pulls.len(), 2, "open ones, for staleness");
        assert_eq!(baseline.rate.map(|r| r.remaining), Some(4999));
        let cursor = advanced(
            &StreamCursor::default(),
            baseline.etag.clone(),
            baseline.newest,
        );
        assert_eq!(cursor.seen_until, Some(at(9)));

        let later = json!([
            pull(4, 11, 11, None),
            pull(2, 1, 12, Some(12)),
            pull(3, 9, 9, None)
        ])
        .to_string();
        let page = read_page(
            &REPO,
            Stream::Pulls,
            &cursor,
            200,
            &headers(&[("ETag", "W/\"v2\"")]),
            &later,
            at(13),
        )
        .expect("page");
        let kinds: Vec<(&str, &str)> = page
            .events
            .iter()
            .map(|e| (e.event_type, e.content_key.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("repo.pr.opened", "github:acme/shop:repo.pr.opened:4"),
                ("repo.pr.merged", "github:acme/shop:repo.pr.merged:2"),
            ]
        );
        assert_eq!(page.next, None, "it reached what was seen");
        let not_modified =
            read_page(&REPO, Stream::Pulls, &cursor, 304, &[], "", at(13)).expect("304");
        assert!(not_modified.not_modified && not_modified.events.is_empty());
        assert_eq!(not_modified.etag, cursor.etag);
    }

    #[test]
    fn pages_follow_the_link_header_until_the_seen_mark() {
        let cursor = StreamCursor {
            etag: None,
            seen_until: Some(at(0)),
        };
        let link = r#"<https://api.github.com/repositories/1/pulls?page=2>; rel="next", <https://api.github.com/repositories/1/pulls?page=9>; rel="last""#;
        let body = json!([pull(9, 5, 5, None), pull(8, 4, 4, None)]).to_string();
        let page = read_page(
            &REPO,
            Stream::Pulls,
            &cursor,
            200,
            &headers(&[("Link", link)]),
            &body,
            at(6),
        )
        .expect("page");
        assert_eq!(
            page.next.as_deref(),
            Some("https://api.github.com/repositories/1/pulls?page=2")
        );
        let old = json!([pull(7, 1, 1, None), pull(6, -1, -1, None)]).to_string();
        let page = read_page(
            &REPO,
            Stream::Pulls,
            &cursor,
            200,
            &headers(&[("Link", link)]),
            &old,
            at(6),
        )
        .expect("page");
        assert_eq!(
            page.next, None,
            "the page reached what was seen: the walk ends"
        );
        assert_eq!(page.events.len(), 1);
    }

    #[test]
    fn issues_comments_runs_and_alerts() {
        let cursor = StreamCursor {
            etag: None,
            seen_until: Some(at(0)),
        };
        let issues = json!([
            {"number": 5, "title": "Bug", "state": "open", "user": {"login": "ann"}, "html_url": "u", "created_at": iso(1), "updated_at": iso(1)},
            {"number": 6, "title": "A PR", "state": "open", "pull_request": {"url": "x"}, "created_at": iso(1), "updated_at": iso(1)}
        ]).to_string();
        let page =
            read_page(&REPO, Stream::Issues, &cursor, 200, &[], &issues, at(2)).expect("issues");
        assert_eq!(page.events.len(), 1, "pull requests are not issues");
        assert_eq!(
            page.events[0].content_key,
            "github:acme/shop:issue.created:5"
        );
        assert_eq!(page.open_issues.len(), 1);

        let comments = json!([
            {"id": 77, "html_url": "https://github.com/acme/shop/issues/5#issuecomment-77", "created_at": iso(1), "updated_at": iso(1)},
            {"id": 78, "html_url": "https://github.com/acme/shop/pull/6#issuecomment-78", "created_at": iso(1), "updated_at": iso(1)}
        ]).to_string();
        let page = read_page(
            &REPO,
            Stream::IssueComments,
            &cursor,
            200,
            &[],
            &comments,
            at(2),
        )
        .expect("comments");
        assert_eq!(
            page.events.len(),
            1,
            "comments on pull requests are not issue comments"
        );

        let runs = json!({"total_count": 2, "workflow_runs": [
            {"id": 10, "name": "CI", "status": "completed", "conclusion": "failure", "created_at": iso(1), "updated_at": iso(1)},
            {"id": 11, "name": "CI", "status": "in_progress", "conclusion": null, "created_at": iso(1), "updated_at": iso(1)}
        ]}).to_string();
        let page =
            read_page(&REPO, Stream::WorkflowRuns, &cursor, 200, &[], &runs, at(2)).expect("runs");
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.events[0].event_type, "repo.build.failed");

        let alerts =
            json!([{"number": 3, "state": "open", "created_at": iso(1), "updated_at": iso(1),
                             "dependency": {"package": {"name": "lodash"}}}])
            .to_string();
        let page = read_page(
            &REPO,
            Stream::DependabotAlerts,
            &cursor,
            200,
            &[],
            &alerts,
            at(2),
        )
        .expect("alerts");
        assert_eq!(page.events[0].event_type, "repo.dependency.outdated");
    }

    #[test]
    fn limits_and_refusals() {
        let cursor = StreamCursor::default();
        let secondary = read_page(
            &REPO,
            Stream::Pulls,
            &cursor,
            403,
            &headers(&[("Retry-After", "60")]),
            "{}",
            at(0),
        );
        assert_eq!(
            secondary,
            Err(PageError::RateLimited {
                retry_after_ms: Some(60_000)
            })
        );
        let reset = (at(0).as_millis() / 1000 + 120).to_string();
        let primary = read_page(
            &REPO,
            Stream::Pulls,
            &cursor,
            403,
            &headers(&[
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", &reset),
            ]),
            "{}",
            at(0),
        );
        assert_eq!(
            primary,
            Err(PageError::RateLimited {
                retry_after_ms: Some(120_000)
            })
        );
        assert_eq!(
            read_page(&REPO, Stream::Pulls, &cursor, 401, &[], "{}", at(0)),
            Err(PageError::Unauthorized)
        );
        assert!(matches!(
            read_page(&REPO, Stream::Pulls, &cursor, 404, &[], r#"{"message":"Not Found"}"#, at(0)),
            Err(PageError::Rejected { status: 404, message }) if message == "Not Found"
        ));
        assert!(matches!(
            read_page(&REPO, Stream::Pulls, &cursor, 502, &[], "", at(0)),
            Err(PageError::Server { status: 502 })
        ));
    }

    #[test]
    fn a_failed_build_brings_its_failing_jobs_log_tails() {
        let run = json!({"name": "CI", "head_branch": "main", "head_sha": "abc", "html_url": "u"});
        let jobs = json!({"jobs": [{"id": 1, "name": "test", "conclusion": "failure"},
                                   {"id": 2, "name": "lint", "conclusion": "success"}]});
        let log = (1..=100)
            .map(|n| format!("line {n}"))
            .collect::<Vec<_>>()
            .join("\n");
        let context = build_failure_context(&run, &jobs, &[(1, log)], 3);
        assert_eq!(context["failing_jobs"].as_array().map(Vec::len), Some(1));
        assert_eq!(context["failing_jobs"][0]["name"], "test");
        assert_eq!(
            context["failing_jobs"][0]["log_tail"],
            "line 98\nline 99\nline 100"
        );
    }

    #[test]
    fn a_change_seen_by_webhook_and_by_poll_has_one_content_key() {
        use crate::webhook::{classify_git, GitHeaders};
        let payload = json!({"action": "opened", "number": 4,
            "pull_request": pull(4, 11, 11, None), "repository": {"full_name": "Acme/Shop"}});
        let headers = GitHeaders {
            github_event: Some("pull_request"),
            github_delivery: Some("d-1"),
            ..GitHeaders::default()
        };
        let (_, hooked) =
            classify_git(&headers, payload.to_string().as_bytes()).expect("classified");
        let cursor = StreamCursor {
            etag: None,
            seen_until: Some(at(0)),
        };
        let body = json!([pull(4, 11, 11, None)]).to_string();
        let polled =
            read_page(&REPO, Stream::Pulls, &cursor, 200, &[], &body, at(12)).expect("page");
        assert_eq!(
            hooked.content_key.as_deref(),
            Some(polled.events[0].content_key.as_str())
        );
    }
}
