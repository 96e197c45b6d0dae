//! The repository watcher's decisions, whatever the host: which streams a poll walks and how
//! (the host modules' requests and readers behind one [`RepoStream`]), a walk's pages
//! folded into events and the stream's next cursor ([`StreamWalk`]), the open work read
//! for staleness ([`StaleScan`]: the oldest-updated open pull requests and issues, asked
//! for conditionally, so an unchanged list costs a 304 on GitHub), the stale events due
//! ([`stale_events`]), and the host's rate limit kept per connection ([`HostBudget`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::connection::RepoHost;
use super::poll::{advanced, content_key, PolledPage, RateLimit, RepoEvent, StreamCursor};
use super::stale::{stale_period, StaleReport};
use super::{bitbucket, github, gitlab, Issue, PullRequest};
use crate::oauth::HttpRequestSpec;
use crate::sync::PageError;
use crate::{Secret, Timestamp};

/// Pages one stream may walk in one poll; a longer walk is cut off and keeps its old
/// cursor, so the next poll walks it again from the top (events are deduplicated by key).
pub const MAX_PAGES_PER_STREAM: usize = 10;

/// One stream of one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoStream {
    /// A GitHub stream.
    GitHub(github::Stream),
    /// A GitLab stream.
    GitLab(gitlab::Stream),
    /// A Bitbucket stream.
    Bitbucket(bitbucket::Stream),
}

fn snake<T: Serialize>(value: T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl RepoStream {
    /// Every stream polled for `host`, in order.
    pub fn all(host: RepoHost) -> Vec<RepoStream> {
        match host {
            RepoHost::GitHub => github::Stream::ALL.map(RepoStream::GitHub).to_vec(),
            RepoHost::GitLab => gitlab::Stream::ALL.map(RepoStream::GitLab).to_vec(),
            RepoHost::Bitbucket => bitbucket::Stream::ALL.map(RepoStream::Bitbucket).to_vec(),
        }
    }

    /// The stream's name in storage keys and reports (`pulls`, `merge_requests`, ...).
    pub fn name(self) -> String {
        match self {
            RepoStream::GitHub(s) => snake(s),
            RepoStream::GitLab(s) => snake(s),
            RepoStream::Bitbucket(s) => snake(s),
        }
    }

    /// The request for the stream's next page (`page_url`) or its first.
    pub fn request(
        self,
        api_base: &str,
        repository: &str,
        cursor: &StreamCursor,
        token: &Secret,
        page_url: Option<&str>,
    ) -> HttpRequestSpec {
        match self {
            RepoStream::GitHub(s) => github::request(
                &github::Repository {
                    api_base,
                    full_name: repository,
                },
                s,
                cursor,
                token,
                page_url,
            ),
            RepoStream::GitLab(s) => gitlab::request(
                &gitlab::Project {
                    api_base,
                    path: repository,
                },
                s,
                cursor,
                token,
                page_url,
            ),
            RepoStream::Bitbucket(s) => bitbucket::request(
                &bitbucket::Repository {
                    api_base,
                    full_name: repository,
                },
                s,
                cursor,
                token,
                page_url,
            ),
        }
    }

    /// Reads the answer to the request of `url`.
    #[allow(clippy::too_many_arguments)]
    pub fn read_page(
        self,
        api_base: &str,
        repository: &str,
        cursor: &StreamCursor,
        url: &str,
        status: u16,
        headers: &[(String, String)],
        body: &str,
        now: Timestamp,
    ) -> Result<PolledPage, PageError> {
        match self {
            RepoStream::GitHub(s) => github::read_page(
                &github::Repository {
                    api_base,
                    full_name: repository,
                },
                s,
                cursor,
                status,
                headers,
                body,
                now,
            ),
            RepoStream::GitLab(s) => gitlab::read_page(
                &gitlab::Project {
                    api_base,
                    path: repository,
                },
                s,
                cursor,
                url,
                status,
                headers,
                body,
                now,
            ),
            RepoStream::Bitbucket(s) => bitbucket::read_page(
                &bitbucket::Repository {
                    api_base,
                    full_name: repository,
                },
                s,
                cursor,
                status,
                headers,
                body,
                now,
            ),
        }
    }
}

/// One walk of a stream, page by page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamWalk {
    cursor: StreamCursor,
    first_etag: Option<String>,
    newest: Option<Timestamp>,
    pages: usize,
    complete: bool,
    /// The events found so far, in page order.
    pub events: Vec<RepoEvent>,
    /// The rate limit the last answer stated.
    pub rate: Option<RateLimit>,
    /// Whether the first page was a 304 (nothing changed, nothing counted).
    pub not_modified: bool,
}

impl StreamWalk {
    /// A walk from `cursor`.
    pub fn new(cursor: StreamCursor) -> Self {
        Self {
            cursor,
            ..Self::default()
        }
    }

    /// The cursor the walk's requests are made against.
    pub fn cursor(&self) -> &StreamCursor {
        &self.cursor
    }

    /// Takes a page; answers the next page's URL while there is one to walk within
    /// [`MAX_PAGES_PER_STREAM`].
    pub fn take(&mut self, page: PolledPage) -> Option<String> {
        if self.pages == 0 {
            self.first_etag = page.etag.clone();
            self.not_modified = page.not_modified;
        }
        self.pages += 1;
        self.rate = page.rate.or(self.rate);
        self.newest = match (self.newest, page.newest) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.events.extend(page.events);
        match page.next {
            Some(next) if self.pages < MAX_PAGES_PER_STREAM => Some(next),
            Some(_) => None,
            None => {
                self.complete = true;
                None
            }
        }
    }

    /// The cursor to keep: advanced after a complete walk, unchanged after one cut off.
    pub fn next_cursor(&self) -> StreamCursor {
        if self.complete {
            advanced(&self.cursor, self.first_etag.clone(), self.newest)
        } else {
            self.cursor.clone()
        }
    }
}

/// Pull requests or issues, for staleness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkKind {
    /// Pull requests (GitLab: merge requests).
    PullRequests,
    /// Issues.
    Issues,
}

impl WorkKind {
    /// Both kinds.
    pub const ALL: [WorkKind; 2] = [WorkKind::PullRequests, WorkKind::Issues];

    /// `pull_requests` or `issues`.
    pub fn name(self) -> &'static str {
        match self {
            WorkKind::PullRequests => "pull_requests",
            WorkKind::Issues => "issues",
        }
    }

    fn event_type(self) -> &'static str {
        match self {
            WorkKind::PullRequests => "repo.pr.stale",
            WorkKind::Issues => "issue.stale",
        }
    }
}

/// The open work of one kind as last read (oldest update first), with the answer's `ETag`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleScan {
    /// The `ETag` of the last answer (GitHub).
    #[serde(default)]
    pub etag: Option<String>,
    /// Open pull requests.
    #[serde(default)]
    pub pulls: Vec<PullRequest>,
    /// Open issues.
    #[serde(default)]
    pub issues: Vec<Issue>,
}

/// The stream whose reader reads `kind`'s open work on `host`.
fn scan_stream(host: RepoHost, kind: WorkKind) -> RepoStream {
    match (host, kind) {
        (RepoHost::GitHub, WorkKind::PullRequests) => RepoStream::GitHub(github::Stream::Pulls),
        (RepoHost::GitHub, WorkKind::Issues) => RepoStream::GitHub(github::Stream::Issues),
        (RepoHost::GitLab, WorkKind::PullRequests) => {
            RepoStream::GitLab(gitlab::Stream::MergeRequests)
        }
        (RepoHost::GitLab, WorkKind::Issues) => RepoStream::GitLab(gitlab::Stream::Issues),
        (RepoHost::Bitbucket, WorkKind::PullRequests) => {
            RepoStream::Bitbucket(bitbucket::Stream::PullRequests)
        }
        (RepoHost::Bitbucket, WorkKind::Issues) => RepoStream::Bitbucket(bitbucket::Stream::Issues),
    }
}

/// The request for the oldest-updated open work of `kind` (one page: the stale candidates
/// come first), conditional on the last answer's `ETag`.
pub fn stale_scan_request(
    host: RepoHost,
    api_base: &str,
    repository: &str,
    kind: WorkKind,
    last: &StaleScan,
    token: &Secret,
) -> HttpRequestSpec {
    let base = api_base.trim_end_matches('/');
    let encoded: String = url::form_urlencoded::byte_serialize(repository.as_bytes()).collect();
    let url = match (host, kind) {
        (RepoHost::GitHub, WorkKind::PullRequests) => format!("{base}/repos/{repository}/pulls?state=open&sort=updated&direction=asc&per_page=50"),
        (RepoHost::GitHub, WorkKind::Issues) => format!("{base}/repos/{repository}/issues?state=open&sort=updated&direction=asc&per_page=50"),
        (RepoHost::GitLab, WorkKind::PullRequests) => format!("{base}/projects/{encoded}/merge_requests?state=opened&order_by=updated_at&sort=asc&per_page=50"),
        (RepoHost::GitLab, WorkKind::Issues) => format!("{base}/projects/{encoded}/issues?state=opened&order_by=updated_at&sort=asc&per_page=50"),
        (RepoHost::Bitbucket, WorkKind::PullRequests) => format!("{base}/repositories/{repository}/pullrequests?state=OPEN&sort=updated_on&pagelen=50"),
        (RepoHost::Bitbucket, WorkKind::Issues) => format!(
                "{base}/repositories/{repository}/issues?q={}&sort=updated_on&pagelen=50",
                url::form_urlencoded::byte_serialize(b"state=\"new\" OR state=\"open\"")
                    .collect::<String>()
            ),
    };
    let stream = scan_stream(host, kind);
    let mut spec = stream.request(
        api_base,
        repository,
        &StreamCursor::default(),
        token,
        Some(&url),
    );
    if let Some(etag) = &last.etag {
        spec.headers
            .push(("If-None-Match".to_owned(), etag.clone()));
    }
    spec
}

/// Reads the answer to [`stale_scan_request`]: the open work (the last list on a 304).
#[allow(clippy::too_many_arguments)]
pub fn read_stale_scan(
    host: RepoHost,
    api_base: &str,
    repository: &str,
    kind: WorkKind,
    last: &StaleScan,
    status: u16,
    headers: &[(String, String)],
    body: &str,
    now: Timestamp,
) -> Result<(StaleScan, Option<RateLimit>), PageError> {
    let stream = scan_stream(host, kind);
    // The stream readers read a 304 only where they send conditional requests.
    let rate = match host {
        RepoHost::GitHub => github::rate_limit(headers),
        RepoHost::GitLab => gitlab::rate_limit(headers),
        RepoHost::Bitbucket => None,
    };
    if status == 304 {
        return Ok((last.clone(), rate));
    }
    // No seen mark: the readers report no events, only the open work on the page.
    let page = stream.read_page(
        api_base,
        repository,
        &StreamCursor::default(),
        "",
        status,
        headers,
        body,
        now,
    )?;
    let etag = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("etag"))
        .map(|(_, v)| v.clone());
    Ok((
        StaleScan {
            etag,
            pulls: page.open_pulls,
            issues: page.open_issues,
        },
        page.rate.or(rate),
    ))
}

/// The stale events due at `now` for the open work of `scan`, and the reports to keep
/// (one per item still open, keyed by kind and number): each item idle past
/// `threshold_days` is reported once per staleness period ([`stale_period`]).
pub fn stale_events(
    host: RepoHost,
    repository: &str,
    kind: WorkKind,
    scan: &StaleScan,
    reported: &BTreeMap<u64, StaleReport>,
    threshold_days: u32,
    now: Timestamp,
) -> (Vec<RepoEvent>, BTreeMap<u64, StaleReport>) {
    let items: Vec<(u64, Timestamp, Value)> = match kind {
        WorkKind::PullRequests => scan
            .pulls
            .iter()
            .map(|p| {
                (
                    p.number,
                    p.updated_at,
                    serde_json::to_value(p).unwrap_or_default(),
                )
            })
            .collect(),
        WorkKind::Issues => scan
            .issues
            .iter()
            .map(|i| {
                (
                    i.number,
                    i.updated_at,
                    serde_json::to_value(i).unwrap_or_default(),
                )
            })
            .collect(),
    };
    let mut events = Vec::new();
    let mut keep = BTreeMap::new();
    for (number, last_activity, mut data) in items {
        let previous = reported.get(&number).copied();
        match stale_period(last_activity, now, threshold_days, previous) {
            Some(period) => {
                let idle_days = now.millis_since(last_activity) / 86_400_000;
                data["idle_days"] = Value::from(idle_days);
                data["threshold_days"] = Value::from(threshold_days);
                data["repository"] = Value::from(repository);
                events.push(RepoEvent {
                    event_type: kind.event_type(),
                    content_key: content_key(
                        host.as_str(),
                        repository,
                        kind.event_type(),
                        &format!("{number}:{}:{period}", last_activity.as_millis()),
                    ),
                    occurred_at: Some(now),
                    data,
                });
                keep.insert(
                    number,
                    StaleReport {
                        last_activity,
                        period,
                    },
                );
            }
            None => {
                if let Some(previous) = previous {
                    keep.insert(number, previous);
                }
            }
        }
    }
    (events, keep)
}

/// The host's rate limit as one connection's polls and API calls share it: requests wait
/// while the primary limit is spent (until its reset) or a secondary limit's `Retry-After`
/// runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostBudget {
    /// Requests left in the window, as last stated.
    #[serde(default)]
    pub remaining: Option<u64>,
    /// When the window resets.
    #[serde(default)]
    pub reset_at: Option<Timestamp>,
    /// No request before this (a secondary limit's `Retry-After`, or a spent window).
    #[serde(default)]
    pub blocked_until: Option<Timestamp>,
}

/// Waited when a host limits without saying for how long.
pub const DEFAULT_LIMIT_WAIT_MS: u64 = 60_000;

impl HostBudget {
    /// `Ok` when a request may go now, else the time it may.
    pub fn may_call(&self, now: Timestamp) -> Result<(), Timestamp> {
        match self.blocked_until {
            Some(until) if until > now => Err(until),
            _ => match (self.remaining, self.reset_at) {
                (Some(0), Some(reset)) if reset > now => Err(reset),
                _ => Ok(()),
            },
        }
    }

    /// An answer stated `rate`.
    pub fn on_rate(&mut self, rate: Option<RateLimit>) {
        if let Some(rate) = rate {
            self.remaining = Some(rate.remaining);
            self.reset_at = Some(rate.reset_at);
        }
    }

    /// The host limited the request (`retry_after_ms` when it said).
    pub fn on_limited(&mut self, retry_after_ms: Option<u64>, now: Timestamp) {
        let wait = retry_after_ms.unwrap_or(DEFAULT_LIMIT_WAIT_MS);
        let until = now.plus_millis(i64::try_from(wait).unwrap_or(i64::MAX / 4));
        self.blocked_until = Some(self.blocked_until.map_or(until, |u| u.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(days: i64) -> Timestamp {
        Timestamp::from_millis(1_764_000_000_000 + days * 86_400_000)
    }

    fn pull(number: u64, updated_days: i64) -> PullRequest {
        PullRequest {
            number,
            title: format!("PR {number}"),
            author: "dev".into(),
            url: String::new(),
            labels: Vec::new(),
            body: String::new(),
            updated_at: at(updated_days),
            merged_at: None,
        }
    }

    #[test]
    fn stale_work_is_reported_once_per_period_with_its_own_key() {
        let scan = StaleScan {
            etag: None,
            pulls: vec![pull(2, 0), pull(5, 9)],
            issues: Vec::new(),
        };
        let (events, kept) = stale_events(
            RepoHost::GitHub,
            "acme/shop",
            WorkKind::PullRequests,
            &scan,
            &BTreeMap::new(),
            7,
            at(10),
        );
        assert_eq!(events.len(), 1, "only the pull request idle 10 days");
        assert_eq!(events[0].event_type, "repo.pr.stale");
        assert_eq!(events[0].data["number"], 2);
        assert_eq!(events[0].data["idle_days"], 10);
        assert!(events[0]
            .content_key
            .starts_with("github:acme/shop:repo.pr.stale:2:"));
        let (again, kept2) = stale_events(
            RepoHost::GitHub,
            "acme/shop",
            WorkKind::PullRequests,
            &scan,
            &kept,
            7,
            at(12),
        );
        assert!(again.is_empty(), "same period: nothing new");
        let (second, _) = stale_events(
            RepoHost::GitHub,
            "acme/shop",
            WorkKind::PullRequests,
            &scan,
            &kept2,
            7,
            at(14),
        );
        assert_eq!(second.len(), 1, "a whole second period of silence");
        assert_ne!(second[0].content_key, events[0].content_key);
        // A merged (no longer open) pull request's report is dropped with it.
        let (_, after_merge) = stale_events(
            RepoHost::GitHub,
            "acme/shop",
            WorkKind::PullRequests,
            &StaleScan::default(),
            &kept2,
            7,
            at(14),
        );
        assert!(after_merge.is_empty());
    }

    #[test]
    fn the_stale_scan_is_conditional_and_a_304_keeps_the_list() {
        let token = Secret::new("t".to_owned());
        let last = StaleScan {
            etag: Some("W/\"e1\"".into()),
            pulls: vec![pull(2, 0)],
            issues: Vec::new(),
        };
        let spec = stale_scan_request(
            RepoHost::GitHub,
            "https://api.github.com",
            "acme/shop",
            WorkKind::PullRequests,
            &last,
            &token,
        );
        assert_eq!(
            spec.url,
            "https://api.github.com/repos/acme/shop/pulls?state=open&sort=updated&direction=asc&per_page=50"
        );
        assert_eq!(spec.header("If-None-Match"), Some("W/\"e1\""));
        let (kept, _) = read_stale_scan(
            RepoHost::GitHub,
            "https://api.github.com",
            "acme/shop",
            WorkKind::PullRequests,
            &last,
            304,
            &[],
            "",
            at(1),
        )
        .expect("304");
        assert_eq!(kept, last);
        let body = json!([{"number": 7, "title": "t", "state": "open", "user": {"login": "a"},
            "html_url": "h", "created_at": at(0).to_iso8601(), "updated_at": at(0).to_iso8601()}])
        .to_string();
        let headers = vec![("ETag".to_owned(), "W/\"e2\"".to_owned())];
        let (fresh, _) = read_stale_scan(
            RepoHost::GitHub,
            "https://api.github.com",
            "acme/shop",
            WorkKind::PullRequests,
            &last,
            200,
            &headers,
            &body,
            at(1),
        )
        .expect("200");
        assert_eq!(fresh.etag.as_deref(), Some("W/\"e2\""));
        assert_eq!(fresh.pulls.len(), 1);
        assert_eq!(fresh.pulls[0].number, 7);
        let gitlab = stale_scan_request(
            RepoHost::GitLab,
            "https://gitlab.com/api/v4",
            "acme/web/shop",
            WorkKind::Issues,
            &StaleScan::default(),
            &token,
        );
        assert!(gitlab.url.starts_with(
            "https://gitlab.com/api/v4/projects/acme%2Fweb%2Fshop/issues?state=opened"
        ));
        assert_eq!(gitlab.header("If-None-Match"), None);
    }

    #[test]
    fn walks_advance_only_when_complete() {
        let cursor = StreamCursor {
            etag: Some("old".into()),
            seen_until: Some(at(0)),
        };
        let mut walk = StreamWalk::new(cursor.clone());
        let next = walk.take(PolledPage {
            etag: Some("new".into()),
            newest: Some(at(2)),
            next: Some("p2".into()),
            ..PolledPage::default()
        });
        assert_eq!(next.as_deref(), Some("p2"));
        assert_eq!(walk.next_cursor(), cursor, "cut off here: unchanged");
        assert_eq!(walk.take(PolledPage::default()), None);
        assert_eq!(
            walk.next_cursor(),
            StreamCursor {
                etag: Some("new".into()),
                seen_until: Some(at(2))
            }
        );
        let mut endless = StreamWalk::new(cursor.clone());
        let mut pages = 0;
        while endless
            .take(PolledPage {
                next: Some("more".into()),
                ..PolledPage::default()
            })
            .is_some()
        {
            pages += 1;
        }
        assert_eq!(pages + 1, MAX_PAGES_PER_STREAM);
        assert_eq!(endless.next_cursor(), cursor);
        assert_eq!(
            RepoStream::all(RepoHost::GitLab)
                .into_iter()
                .map(RepoStream::name)
                .collect::<Vec<_>>(),
            ["merge_requests", "issues", "pipelines"]
        );
    }

    #[test]
    fn the_budget_waits_for_resets_and_retry_after() {
        let mut budget = HostBudget::default();
        assert_eq!(budget.may_call(at(0)), Ok(()));
        budget.on_rate(Some(RateLimit {
            remaining: 0,
            reset_at: at(1),
        }));
        assert_eq!(budget.may_call(at(0)), Err(at(1)));
        assert_eq!(budget.may_call(at(1)), Ok(()));
        budget.on_limited(Some(30_000), at(1));
        assert_eq!(budget.may_call(at(1)), Err(at(1).plus_millis(30_000)));
        budget.on_limited(None, at(1));
        assert_eq!(
            budget.may_call(at(1)),
            Err(at(1).plus_millis(60_000)),
            "the longer wait wins"
        );
    }
}
