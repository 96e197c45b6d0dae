//! GitHub's REST API for one seeded demo repository and any repository a control creates,
//! served under `/github` in place of `https://api.github.com` (so `GITHUB_API_BASE_URL`
//! is the only switch): pull requests, issues, GitHub Actions workflow runs with their jobs
//! and logs, and repository webhooks that really deliver signed events. As GitHub documents
//! it (<https://docs.github.com/en/rest>):
//! - bearer tokens (`POST /__sandbox/github/tokens` issues one); 401 `Bad credentials`;
//! - lists newest first, `per_page` (≤ 100) and `page`, with a `Link` header;
//! - an `ETag` on every list, and `If-None-Match` with the current one answered 304, which
//!   does not count against the rate limit;
//! - `X-RateLimit-Limit/Remaining/Used/Reset/Resource` per token (5,000 an hour);
//! - `POST /repos/{o}/{r}/hooks` `{config: {url, content_type, secret}, events}`; deliveries
//!   carry `X-GitHub-Event`, `X-GitHub-Delivery` and `X-Hub-Signature-256`
//!   (<https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries>).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::control::{parse_json_body, ControlError};
use crate::endpoint::Endpoint;
use crate::middleware::tagged;
use crate::outbound;
use crate::state::{lock, SharedState};
use crate::time::format_ms;

/// The repository every sandbox starts with.
pub const DEMO_REPOSITORY: &str = "edge-sync/demo-app";
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Requests per token per hour.
const RATE_LIMIT: u64 = 5_000;
const DOCS: &str = "https://docs.github.com/rest";

/// A pull request.
#[derive(Debug, Clone)]
struct Pull {
    number: u64,
    title: String,
    author: String,
    body: String,
    labels: Vec<String>,
    created_ms: i64,
    updated_ms: i64,
    merged_ms: Option<i64>,
}

/// An issue.
#[derive(Debug, Clone)]
struct IssueRecord {
    number: u64,
    title: String,
    author: String,
    body: String,
    created_ms: i64,
    updated_ms: i64,
}

/// A job of a workflow run, with its log.
#[derive(Debug, Clone)]
struct Job {
    id: u64,
    name: String,
    conclusion: &'static str,
    log: String,
}

/// A completed workflow run.
#[derive(Debug, Clone)]
struct Run {
    id: u64,
    name: String,
    branch: String,
    sha: String,
    conclusion: &'static str,
    created_ms: i64,
    updated_ms: i64,
    jobs: Vec<Job>,
}

/// A repository webhook.
#[derive(Debug, Clone)]
struct Hook {
    id: u64,
    url: String,
    secret: String,
    events: Vec<String>,
}

/// A comment on an issue.
#[derive(Debug, Clone)]
struct Comment {
    id: u64,
    issue: u64,
    body: String,
    created_ms: i64,
}

/// A published release.
#[derive(Debug, Clone)]
struct Release {
    id: u64,
    tag: String,
    published_ms: i64,
}

/// A Dependabot alert.
#[derive(Debug, Clone)]
struct Alert {
    number: u64,
    package: String,
    created_ms: i64,
}

#[derive(Debug, Default)]
struct Repo {
    pulls: Vec<Pull>,
    issues: Vec<IssueRecord>,
    runs: Vec<Run>,
    hooks: Vec<Hook>,
    comments: Vec<Comment>,
    releases: Vec<Release>,
    alerts: Vec<Alert>,
    /// Pull requests and issues share one numbering, as on GitHub.
    next_number: u64,
}

/// GitHub's stores.
#[derive(Debug, Default)]
pub struct GitHubState {
    repos: Mutex<BTreeMap<String, Repo>>,
    tokens: Mutex<BTreeSet<String>>,
    /// Per token: requests counted in the current hour window and when it resets.
    rate: Mutex<BTreeMap<String, (u64, i64)>>,
    next_id: Mutex<u64>,
}

impl GitHubState {
    /// Seeds [`DEMO_REPOSITORY`] around `now_ms`: a merged pull request, a fresh open one and
    /// one idle for 30 days, an open issue and an idle one, a failed and a passing CI run.
    pub fn seeded(now_ms: i64) -> Self {
        let pull = |number, title: &str, created_days: i64, merged: bool| Pull {
            number,
            title: title.to_owned(),
            author: "demo-dev".to_owned(),
            body: format!("{title}.\n\nCloses nothing."),
            labels: if title.starts_with("feat") {
                vec!["enhancement".to_owned()]
            } else {
                Vec::new()
            },
            // Opened two hours before the day's mark, last touched an hour later: never in
            // the future of the sandbox's clock.
            created_ms: now_ms - created_days * DAY_MS - 2 * HOUR_MS,
            updated_ms: now_ms - created_days * DAY_MS - HOUR_MS,
            merged_ms: merged.then_some(now_ms - created_days * DAY_MS - HOUR_MS),
        };
        let issue = |number, title: &str, days: i64| IssueRecord {
            number,
            title: title.to_owned(),
            author: "demo-user".to_owned(),
            body: format!("{title}: please look into it."),
            created_ms: now_ms - days * DAY_MS,
            updated_ms: now_ms - days * DAY_MS,
        };
        let failing_log = (1..=40)
            .map(|n| format!("2026-12-01T10:00:{:02}Z test step {n}", n % 60))
            .chain([
                "thread 'checkout::totals' panicked at src/checkout.rs:42: assertion failed: total == 3998".to_owned(),
                "error: test failed, to rerun pass `--lib`".to_owned(),
            ])
            .collect::<Vec<_>>()
            .join("\n");
        let repo = Repo {
            pulls: vec![
                pull(1, "feat: gift cards at checkout", 3, true),
                pull(2, "fix: rounding in totals", 30, false),
                pull(5, "Add dark mode", 0, false),
            ],
            issues: vec![
                issue(3, "Checkout is slow on mobile", 1),
                issue(4, "Old export bug", 40),
            ],
            runs: vec![
                Run {
                    id: 9001,
                    name: "CI".to_owned(),
                    branch: "main".to_owned(),
                    sha: "4f2a9c1".to_owned(),
                    conclusion: "failure",
                    created_ms: now_ms - 2 * HOUR_MS,
                    updated_ms: now_ms - 2 * HOUR_MS + 300_000,
                    jobs: vec![
                        Job {
                            id: 70001,
                            name: "test".to_owned(),
                            conclusion: "failure",
                            log: failing_log,
                        },
                        Job {
                            id: 70002,
                            name: "lint".to_owned(),
                            conclusion: "success",
                            log: "ok".to_owned(),
                        },
                    ],
                },
                Run {
                    id: 9002,
                    name: "CI".to_owned(),
                    branch: "main".to_owned(),
                    sha: "9b1d3e7".to_owned(),
                    conclusion: "success",
                    created_ms: now_ms - HOUR_MS,
                    updated_ms: now_ms - HOUR_MS + 240_000,
                    jobs: vec![Job {
                        id: 70003,
                        name: "test".to_owned(),
                        conclusion: "success",
                        log: "ok".to_owned(),
                    }],
                },
            ],
            hooks: Vec::new(),
            comments: vec![Comment {
                id: 80001,
                issue: 3,
                body: "Seeing this on Android too.".to_owned(),
                created_ms: now_ms - 20 * HOUR_MS,
            }],
            releases: vec![Release {
                id: 60001,
                tag: "v1.0.0".to_owned(),
                published_ms: now_ms - 5 * DAY_MS,
            }],
            alerts: vec![Alert {
                number: 1,
                package: "lodash".to_owned(),
                created_ms: now_ms - 2 * DAY_MS,
            }],
            next_number: 6,
        };
        Self {
            repos: Mutex::new(BTreeMap::from([(DEMO_REPOSITORY.to_owned(), repo)])),
            tokens: Mutex::new(BTreeSet::new()),
            rate: Mutex::new(BTreeMap::new()),
            next_id: Mutex::new(100_000),
        }
    }

    fn next_id(&self) -> u64 {
        let mut id = lock(&self.next_id);
        *id += 1;
        *id
    }
}

/// GitHub's error body.
pub fn error_body(message: &str) -> Value {
    json!({ "message": message, "documentation_url": DOCS })
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(error_body(message))).into_response()
}

fn repo_name(owner: &str, name: &str) -> String {
    format!("{owner}/{name}").to_ascii_lowercase()
}

fn time(ms: i64) -> String {
    // GitHub writes seconds, `Z`.
    let text = format_ms(ms - ms.rem_euclid(1000));
    text.replace(".000Z", "Z")
}

/// The caller's token when it is one the sandbox issued (`Bearer` or `token` scheme).
fn authorized(state: &SharedState, headers: &HeaderMap) -> Option<String> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
        })
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    (!token.is_empty() && lock(&state.github.tokens).contains(&token)).then_some(token)
}

fn bad_credentials() -> Response {
    error(StatusCode::UNAUTHORIZED, "Bad credentials")
}

/// Answers `items` (newest first) paged, with `ETag`, `Link` and rate headers; 304 when the
/// caller's `If-None-Match` is the current `ETag`.
fn list_answer(
    state: &SharedState,
    headers: &HeaderMap,
    raw: Option<&str>,
    path: &str,
    items: Vec<Value>,
    wrap: Option<&str>,
) -> Response {
    let Some(token) = authorized(state, headers) else {
        return bad_credentials();
    };
    let query: BTreeMap<String, String> = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let per_page = query
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = query
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let total = items.len();
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let body = match wrap {
        Some(key) => json!({ "total_count": total, key: slice }),
        None => Value::Array(slice),
    }
    .to_string();
    let etag = format!("W/\"{}\"", &outbound::sha256_hex(body.as_bytes())[..32]);
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == etag);
    let (used, reset_ms) = count_request(state, token, !not_modified);
    let mut response = if used > RATE_LIMIT {
        error(StatusCode::FORBIDDEN, "API rate limit exceeded")
    } else if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = (
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            body,
        )
            .into_response();
        let last = total.div_ceil(per_page).max(1);
        let keep: String = query
            .iter()
            .filter(|(k, _)| k.as_str() != "page")
            .map(|(k, v)| format!("{k}={v}&"))
            .collect();
        let url = |n: usize| format!("<{path}?{keep}page={n}>");
        let mut links = Vec::new();
        if page < last {
            links.push(format!("{}; rel=\"next\"", url(page + 1)));
            links.push(format!("{}; rel=\"last\"", url(last)));
        }
        if page > 1 {
            links.push(format!("{}; rel=\"prev\"", url(page - 1)));
            links.push(format!("{}; rel=\"first\"", url(1)));
        }
        if let Ok(value) = HeaderValue::from_str(&links.join(", ")) {
            if !links.is_empty() {
                response.headers_mut().insert(header::LINK, value);
            }
        }
        response
    };
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    set_rate_headers(&mut response, used, reset_ms);
    response
}

/// Counts a request of `token` in its hour window (unless it is a free 304): the requests
/// used and when the window resets.
fn count_request(state: &SharedState, token: String, counted: bool) -> (u64, i64) {
    let now = state.clock.now_ms();
    let mut rate = lock(&state.github.rate);
    let window = rate.entry(token).or_insert((0, now + HOUR_MS));
    if now >= window.1 {
        *window = (0, now + HOUR_MS);
    }
    if counted {
        window.0 += 1;
    }
    *window
}

/// GitHub's `X-RateLimit-*` headers.
fn set_rate_headers(response: &mut Response, used: u64, reset_ms: i64) {
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("x-ratelimit-limit", RATE_LIMIT.to_string());
    set(
        "x-ratelimit-remaining",
        RATE_LIMIT.saturating_sub(used).to_string(),
    );
    set("x-ratelimit-used", used.to_string());
    set("x-ratelimit-reset", (reset_ms / 1000).to_string());
    set("x-ratelimit-resource", "core".to_owned());
}

fn user(login: &str) -> Value {
    json!({ "login": login, "type": "User" })
}

fn pull_json(base: &str, repo: &str, p: &Pull) -> Value {
    json!({
        "number": p.number, "title": p.title, "body": p.body, "user": user(&p.author),
        "state": if p.merged_ms.is_some() { "closed" } else { "open" },
        "labels": p.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
        "html_url": format!("https://github.com/{repo}/pull/{}", p.number),
        "url": format!("{base}/repos/{repo}/pulls/{}", p.number),
        "created_at": time(p.created_ms), "updated_at": time(p.updated_ms),
        "closed_at": p.merged_ms.map(time), "merged_at": p.merged_ms.map(time),
        "head": {"ref": format!("pr-{}", p.number)}, "base": {"ref": "main"},
    })
}

fn issue_json(repo: &str, i: &IssueRecord) -> Value {
    json!({
        "number": i.number, "title": i.title, "body": i.body, "user": user(&i.author),
        "state": "open", "labels": [],
        "html_url": format!("https://github.com/{repo}/issues/{}", i.number),
        "created_at": time(i.created_ms), "updated_at": time(i.updated_ms),
    })
}

fn run_json(repo: &str, r: &Run) -> Value {
    json!({
        "id": r.id, "name": r.name, "head_branch": r.branch, "head_sha": r.sha,
        "status": "completed", "conclusion": r.conclusion, "event": "push",
        "html_url": format!("https://github.com/{repo}/actions/runs/{}", r.id),
        "created_at": time(r.created_ms), "updated_at": time(r.updated_ms),
    })
}

/// The sandbox's own base for `url` fields.
fn base(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map_or_else(String::new, |host| format!("http://{host}/github"))
}

async fn list_pulls(
    State(state): State<SharedState>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let repo = repo_name(&owner, &name);
    let items = {
        let repos = lock(&state.github.repos);
        let Some(r) = repos.get(&repo) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        let filter = ListFilter::of(raw.as_deref());
        let mut pulls: Vec<&Pull> = r
            .pulls
            .iter()
            .filter(|p| filter.state_matches(p.merged_ms.is_none()))
            .collect();
        pulls.sort_by_key(|p| (p.updated_ms, p.number));
        if !filter.ascending {
            pulls.reverse();
        }
        pulls
            .iter()
            .map(|p| pull_json(&base(&headers), &repo, p))
            .collect()
    };
    list_answer(
        &state,
        &headers,
        raw.as_deref(),
        &format!("{}/repos/{repo}/pulls", base(&headers)),
        items,
        None,
    )
}

async fn list_issues(
    State(state): State<SharedState>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let repo = repo_name(&owner, &name);
    let items = {
        let repos = lock(&state.github.repos);
        let Some(r) = repos.get(&repo) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        // As on GitHub, the issues list holds the pull requests too (with `pull_request`).
        let filter = ListFilter::of(raw.as_deref());
        let mut items: Vec<(i64, Value)> = r
            .issues
            .iter()
            .filter(|_| filter.state_matches(true))
            .map(|i| (i.updated_ms, issue_json(&repo, i)))
            .chain(
                r.pulls
                    .iter()
                    .filter(|p| filter.state_matches(p.merged_ms.is_none()))
                    .map(|p| {
                        let mut value = pull_json(&base(&headers), &repo, p);
                        value["pull_request"] = json!({ "url": value["url"].clone() });
                        (p.updated_ms, value)
                    }),
            )
            .collect();
        items.sort_by_key(|(t, _)| *t);
        if !filter.ascending {
            items.reverse();
        }
        items.into_iter().map(|(_, v)| v).collect()
    };
    list_answer(
        &state,
        &headers,
        raw.as_deref(),
        &format!("{}/repos/{repo}/issues", base(&headers)),
        items,
        None,
    )
}

async fn list_runs(
    State(state): State<SharedState>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let repo = repo_name(&owner, &name);
    let items = {
        let repos = lock(&state.github.repos);
        let Some(r) = repos.get(&repo) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        let mut runs = r.runs.clone();
        runs.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
        runs.iter().map(|run| run_json(&repo, run)).collect()
    };
    list_answer(
        &state,
        &headers,
        raw.as_deref(),
        &format!("{}/repos/{repo}/actions/runs", base(&headers)),
        items,
        Some("workflow_runs"),
    )
}

async fn run_jobs(
    State(state): State<SharedState>,
    Path((owner, name, run_id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let repo = repo_name(&owner, &name);
    let items = {
        let repos = lock(&state.github.repos);
        let Some(run) = repos
            .get(&repo)
            .and_then(|r| r.runs.iter().find(|r| r.id == run_id))
        else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        run.jobs
            .iter()
            .map(|j| json!({"id": j.id, "run_id": run.id, "name": j.name, "status": "completed", "conclusion": j.conclusion}))
            .collect()
    };
    list_answer(
        &state,
        &headers,
        raw.as_deref(),
        &format!("{}/repos/{repo}/actions/runs/{run_id}/jobs", base(&headers)),
        items,
        Some("jobs"),
    )
}

/// `GET /repos/{o}/{r}/actions/jobs/{id}/logs`: GitHub answers with a redirect to the log;
/// the sandbox serves the plain text itself.
async fn job_logs(
    State(state): State<SharedState>,
    Path((owner, name, job_id)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    if authorized(&state, &headers).is_none() {
        return bad_credentials();
    }
    let repos = lock(&state.github.repos);
    let log = repos
        .get(&repo_name(&owner, &name))
        .and_then(|r| {
            r.runs
                .iter()
                .flat_map(|run| &run.jobs)
                .find(|j| j.id == job_id)
        })
        .map(|j| j.log.clone());
    match log {
        Some(log) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], log).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// A list's `state` (`open`, `closed`, `all`; default `open`) and `direction` (`asc`,
/// `desc`; default `desc`).
struct ListFilter {
    state: String,
    ascending: bool,
}

impl ListFilter {
    fn of(raw: Option<&str>) -> Self {
        let query: BTreeMap<String, String> =
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        Self {
            state: query.get("state").cloned().unwrap_or_else(|| "open".into()),
            ascending: query.get("direction").is_some_and(|d| d == "asc"),
        }
    }

    fn state_matches(&self, open: bool) -> bool {
        match self.state.as_str() {
            "all" => true,
            "closed" => !open,
            _ => open,
        }
    }
}

/// One record (`None`: 404), with the rate headers, as GitHub answers a `GET` of one.
fn one_answer(state: &SharedState, headers: &HeaderMap, value: Option<Value>) -> Response {
    let Some(token) = authorized(state, headers) else {
        return bad_credentials();
    };
    let (used, reset_ms) = count_request(state, token, true);
    let mut response = match value {
        _ if used > RATE_LIMIT => error(StatusCode::FORBIDDEN, "API rate limit exceeded"),
        Some(value) => (StatusCode::OK, Json(value)).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    };
    set_rate_headers(&mut response, used, reset_ms);
    response
}

/// `GET /repos/{o}/{r}/pulls/{n}`.
async fn get_pull(
    State(state): State<SharedState>,
    Path((owner, name, number)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    let repo = repo_name(&owner, &name);
    let value = lock(&state.github.repos).get(&repo).and_then(|r| {
        r.pulls
            .iter()
            .find(|p| p.number == number)
            .map(|p| pull_json(&base(&headers), &repo, p))
    });
    one_answer(&state, &headers, value)
}

/// `GET /repos/{o}/{r}/issues/{n}` (a pull request's number answers it too, as on GitHub).
async fn get_issue(
    State(state): State<SharedState>,
    Path((owner, name, number)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    let repo = repo_name(&owner, &name);
    let value = lock(&state.github.repos).get(&repo).and_then(|r| {
        r.issues
            .iter()
            .find(|i| i.number == number)
            .map(|i| issue_json(&repo, i))
    });
    one_answer(&state, &headers, value)
}

fn comment_json(repo: &str, c: &Comment) -> Value {
    json!({
        "id": c.id, "body": c.body, "user": user("demo-user"),
        "html_url": format!("https://github.com/{repo}/issues/{}#issuecomment-{}", c.issue, c.id),
        "issue_url": format!("https://api.github.com/repos/{repo}/issues/{}", c.issue),
        "created_at": time(c.created_ms), "updated_at": time(c.created_ms),
    })
}

/// `GET /repos/{o}/{r}/issues/comments`: the repository's issue comments.
async fn list_comments(
    State(state): State<SharedState>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let repo = repo_name(&owner, &name);
    let items = {
        let repos = lock(&state.github.repos);
        let Some(r) = repos.get(&repo) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        let mut comments = r.comments.clone();
        comments.sort_by_key(|c| std::cmp::Reverse((c.created_ms, c.id)));
        comments.iter().map(|c| comment_json(&repo, c)).collect()
    };
    list_answer(
        &state,
        &headers,
        raw.as_deref(),
        &format!("{}/repos/{repo}/issues/comments", base(&headers)),
        items,
        None,
    )
}

/// `GET /repos/{o}/{r}/dependabot/alerts`.
async fn list_alerts(
    State(state): State<SharedState>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let repo = repo_name(&owner, &name);
    let items = {
        let repos = lock(&state.github.repos);
        let Some(r) = repos.get(&repo) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        let mut alerts = r.alerts.clone();
        alerts.sort_by_key(|a| std::cmp::Reverse(a.created_ms));
        alerts
            .iter()
            .map(|a| {
                json!({
                    "number": a.number, "state": "open",
                    "dependency": {"package": {"ecosystem": "npm", "name": a.package}},
                    "security_advisory": {"summary": format!("Vulnerable {}", a.package), "severity": "high"},
                    "security_vulnerability": {"first_patched_version": {"identifier": "4.17.21"}},
                    "html_url": format!("https://github.com/{repo}/security/dependabot/{}", a.number),
                    "created_at": time(a.created_ms), "updated_at": time(a.created_ms),
                })
            })
            .collect()
    };
    list_answer(
        &state,
        &headers,
        raw.as_deref(),
        &format!("{}/repos/{repo}/dependabot/alerts", base(&headers)),
        items,
        None,
    )
}

/// `GET /repos/{o}/{r}/commits/{ref}/check-runs`: the check runs of the workflow runs on a
/// branch (its newest run) or a commit.
async fn check_runs(
    State(state): State<SharedState>,
    Path((owner, name, reference)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let repo = repo_name(&owner, &name);
    let items = {
        let repos = lock(&state.github.repos);
        let Some(r) = repos.get(&repo) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        let run = r
            .runs
            .iter()
            .filter(|run| run.sha == reference || run.branch == reference)
            .max_by_key(|run| run.created_ms);
        run.map(|run| {
            run.jobs
                .iter()
                .map(|j| {
                    json!({"id": j.id, "name": j.name, "head_sha": run.sha, "status": "completed",
                           "conclusion": j.conclusion,
                           "html_url": format!("https://github.com/{repo}/runs/{}", j.id)})
                })
                .collect()
        })
        .unwrap_or_default()
    };
    list_answer(
        &state,
        &headers,
        raw.as_deref(),
        &format!(
            "{}/repos/{repo}/commits/{reference}/check-runs",
            base(&headers)
        ),
        items,
        Some("check_runs"),
    )
}

/// `GET /repos/{o}/{r}/releases/latest`: 404 when there is none.
async fn latest_release(
    State(state): State<SharedState>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let repo = repo_name(&owner, &name);
    let value = lock(&state.github.repos).get(&repo).and_then(|r| {
        r.releases
            .iter()
            .max_by_key(|rel| rel.published_ms)
            .map(|rel| {
                json!({"id": rel.id, "tag_name": rel.tag, "name": rel.tag, "draft": false,
                   "prerelease": false, "created_at": time(rel.published_ms),
                   "published_at": time(rel.published_ms),
                   "html_url": format!("https://github.com/{repo}/releases/tag/{}", rel.tag)})
            })
    });
    one_answer(&state, &headers, value)
}

fn hook_json(repo: &str, h: &Hook) -> Value {
    json!({
        "id": h.id, "type": "Repository", "name": "web", "active": true, "events": h.events,
        "config": {"url": h.url, "content_type": "json", "insecure_ssl": "0", "secret": "********"},
        "url": format!("https://api.github.com/repos/{repo}/hooks/{}", h.id),
    })
}

async fn create_hook(
    State(state): State<SharedState>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if authorized(&state, &headers).is_none() {
        return bad_credentials();
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let Some(url) = request
        .pointer("/config/url")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("http"))
    else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed: config.url is required",
        );
    };
    let events: Vec<String> = request
        .get("events")
        .and_then(Value::as_array)
        .map(|e| {
            e.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_else(|| vec!["push".to_owned()]);
    let repo = repo_name(&owner, &name);
    let hook = Hook {
        id: state.github.next_id(),
        url: url.to_owned(),
        secret: request
            .pointer("/config/secret")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        events,
    };
    let mut repos = lock(&state.github.repos);
    let Some(r) = repos.get_mut(&repo) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    r.hooks.push(hook.clone());
    (StatusCode::CREATED, Json(hook_json(&repo, &hook))).into_response()
}

async fn list_hooks(
    State(state): State<SharedState>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let repo = repo_name(&owner, &name);
    let items = {
        let repos = lock(&state.github.repos);
        let Some(r) = repos.get(&repo) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        r.hooks.iter().map(|h| hook_json(&repo, h)).collect()
    };
    list_answer(
        &state,
        &headers,
        raw.as_deref(),
        &format!("{}/repos/{repo}/hooks", base(&headers)),
        items,
        None,
    )
}

async fn delete_hook(
    State(state): State<SharedState>,
    Path((owner, name, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    if authorized(&state, &headers).is_none() {
        return bad_credentials();
    }
    let mut repos = lock(&state.github.repos);
    let Some(r) = repos.get_mut(&repo_name(&owner, &name)) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let before = r.hooks.len();
    r.hooks.retain(|h| h.id != id);
    if r.hooks.len() == before {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    StatusCode::NO_CONTENT.into_response()
}

/// GitHub's public routes, under `/github`.
pub fn router(state: &SharedState) -> Router<SharedState> {
    let repo = "/github/repos/{owner}/{repo}";
    Router::new()
        .route(
            &format!("{repo}/pulls"),
            tagged(state, Endpoint::GitHubPullsList, get(list_pulls)),
        )
        .route(
            &format!("{repo}/issues"),
            tagged(state, Endpoint::GitHubIssuesList, get(list_issues)),
        )
        .route(
            &format!("{repo}/pulls/{{number}}"),
            tagged(state, Endpoint::GitHubPullGet, get(get_pull)),
        )
        .route(
            &format!("{repo}/issues/comments"),
            tagged(state, Endpoint::GitHubCommentsList, get(list_comments)),
        )
        .route(
            &format!("{repo}/issues/{{number}}"),
            tagged(state, Endpoint::GitHubIssueGet, get(get_issue)),
        )
        .route(
            &format!("{repo}/dependabot/alerts"),
            tagged(state, Endpoint::GitHubAlertsList, get(list_alerts)),
        )
        .route(
            &format!("{repo}/commits/{{reference}}/check-runs"),
            tagged(state, Endpoint::GitHubCheckRuns, get(check_runs)),
        )
        .route(
            &format!("{repo}/releases/latest"),
            tagged(state, Endpoint::GitHubLatestRelease, get(latest_release)),
        )
        .route(
            &format!("{repo}/actions/runs"),
            tagged(state, Endpoint::GitHubRunsList, get(list_runs)),
        )
        .route(
            &format!("{repo}/actions/runs/{{run_id}}/jobs"),
            tagged(state, Endpoint::GitHubRunJobs, get(run_jobs)),
        )
        .route(
            &format!("{repo}/actions/jobs/{{job_id}}/logs"),
            tagged(state, Endpoint::GitHubJobLogs, get(job_logs)),
        )
        .route(
            &format!("{repo}/hooks"),
            tagged(state, Endpoint::GitHubHooksList, get(list_hooks)).merge(tagged(
                state,
                Endpoint::GitHubHooksCreate,
                post(create_hook),
            )),
        )
        .route(
            &format!("{repo}/hooks/{{hook_id}}"),
            tagged(state, Endpoint::GitHubHooksDelete, delete(delete_hook)),
        )
}

/// Sends `event` with `payload` to the repository's hooks subscribed to it, signed with each
/// hook's secret, in the background.
fn deliver(state: &SharedState, repo: &str, event: &str, payload: Value) {
    let hooks: Vec<Hook> = lock(&state.github.repos)
        .get(repo)
        .map(|r| {
            r.hooks
                .iter()
                .filter(|h| h.events.iter().any(|e| e == event || e == "*"))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if hooks.is_empty() {
        return;
    }
    let (state, event) = (state.clone(), event.to_owned());
    tokio::spawn(async move {
        let body = payload.to_string().into_bytes();
        for hook in hooks {
            let signature = format!(
                "sha256={}",
                hex::encode(outbound::hmac_sha256(hook.secret.as_bytes(), &body))
            );
            let headers = vec![
                ("content-type", "application/json".to_owned()),
                ("x-github-event", event.clone()),
                ("x-github-delivery", outbound::uuid_v4()),
                ("x-github-hook-id", hook.id.to_string()),
                ("x-hub-signature-256", signature),
            ];
            outbound::post(
                &state.http,
                &hook.url,
                &headers,
                body.clone(),
                outbound::SHOPIFY_TIMEOUT,
            )
            .await;
        }
    });
}

/// `POST /__sandbox/github/tokens`: a token valid for every repository.
pub async fn control_token(State(state): State<SharedState>) -> Json<Value> {
    let token = format!("ghp_{}", &outbound::uuid_v4().replace('-', "")[..30]);
    lock(&state.github.tokens).insert(token.clone());
    Json(json!({ "token": token }))
}

/// `POST /__sandbox/github/repos/{o}/{r}/{change}`: a change made at GitHub, with its
/// webhook: `pulls` `{"title"}` opens a pull request; `pulls/{n}/merge` merges one;
/// `runs` `{"conclusion": "failure"|"success"}` completes a CI run (a failing one with a
/// failing `test` job and its log); `issues` `{"title"}` opens an issue;
/// `issues/{n}/comments` `{"body"}` comments on one; `releases` `{"tag_name"}` publishes a
/// release. Answers the record.
pub async fn control_change(
    State(state): State<SharedState>,
    Path((owner, name, change)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let request: Value = if body.is_empty() {
        json!({})
    } else {
        parse_json_body(&body)?
    };
    let repo = repo_name(&owner, &name);
    let now = state.clock.now_ms();
    let title = request
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or("Sandbox change")
        .to_owned();
    let mut repos = lock(&state.github.repos);
    let r = repos.entry(repo.clone()).or_insert_with(|| Repo {
        next_number: 1,
        ..Repo::default()
    });
    let repository = json!({ "full_name": repo, "name": name, "owner": user(&owner) });
    let (event, payload, answer) = match change.as_str() {
        "pulls" => {
            let p = Pull {
                number: r.next_number,
                title,
                author: "sandbox".into(),
                body: String::new(),
                labels: Vec::new(),
                created_ms: now,
                updated_ms: now,
                merged_ms: None,
            };
            r.next_number += 1;
            r.pulls.push(p.clone());
            let value = pull_json("", &repo, &p);
            (
                "pull_request",
                json!({"action": "opened", "number": p.number, "pull_request": value, "repository": repository}),
                value,
            )
        }
        merge if merge.starts_with("pulls/") && merge.ends_with("/merge") => {
            let number: u64 = merge
                .trim_start_matches("pulls/")
                .trim_end_matches("/merge")
                .parse()
                .map_err(|_| ControlError::bad_request("pull number"))?;
            let p = r
                .pulls
                .iter_mut()
                .find(|p| p.number == number)
                .ok_or_else(|| ControlError::not_found("no such pull request"))?;
            p.merged_ms = Some(now);
            p.updated_ms = now;
            let mut value = pull_json("", &repo, p);
            value["merged"] = json!(true);
            (
                "pull_request",
                json!({"action": "closed", "number": number, "pull_request": value, "repository": repository}),
                value,
            )
        }
        "issues" => {
            let i = IssueRecord {
                number: r.next_number,
                title,
                author: "sandbox".into(),
                body: String::new(),
                created_ms: now,
                updated_ms: now,
            };
            r.next_number += 1;
            r.issues.push(i.clone());
            let value = issue_json(&repo, &i);
            (
                "issues",
                json!({"action": "opened", "issue": value, "repository": repository}),
                value,
            )
        }
        "runs" => {
            let failed = request.get("conclusion").and_then(Value::as_str) != Some("success");
            let id = state.github.next_id();
            let job_id = state.github.next_id();
            let run = Run {
                id,
                name: "CI".into(),
                branch: "main".into(),
                sha: format!("{id:07x}"),
                conclusion: if failed { "failure" } else { "success" },
                created_ms: now,
                updated_ms: now,
                jobs: vec![Job {
                    id: job_id,
                    name: "test".into(),
                    conclusion: if failed { "failure" } else { "success" },
                    log: if failed {
                        "running tests\nerror: test checkout::totals failed".into()
                    } else {
                        "ok".into()
                    },
                }],
            };
            r.runs.push(run.clone());
            let value = run_json(&repo, &run);
            (
                "workflow_run",
                json!({"action": "completed", "workflow_run": value, "repository": repository}),
                value,
            )
        }
        comment if comment.starts_with("issues/") && comment.ends_with("/comments") => {
            let number: u64 = comment
                .trim_start_matches("issues/")
                .trim_end_matches("/comments")
                .parse()
                .map_err(|_| ControlError::bad_request("issue number"))?;
            let issue = r
                .issues
                .iter()
                .find(|i| i.number == number)
                .cloned()
                .ok_or_else(|| ControlError::not_found("no such issue"))?;
            let c = Comment {
                id: state.github.next_id(),
                issue: number,
                body: request
                    .get("body")
                    .and_then(Value::as_str)
                    .unwrap_or("A comment")
                    .to_owned(),
                created_ms: now,
            };
            r.comments.push(c.clone());
            let value = comment_json(&repo, &c);
            (
                "issue_comment",
                json!({"action": "created", "issue": issue_json(&repo, &issue), "comment": value,
                       "repository": repository}),
                value,
            )
        }
        "releases" => {
            let tag = request
                .get("tag_name")
                .and_then(Value::as_str)
                .ok_or_else(|| ControlError::bad_request("tag_name is required"))?
                .to_owned();
            let release = Release {
                id: state.github.next_id(),
                tag,
                published_ms: now,
            };
            r.releases.push(release.clone());
            let value = json!({"id": release.id, "tag_name": release.tag,
                               "published_at": time(release.published_ms)});
            (
                "release",
                json!({"action": "published", "release": value, "repository": repository}),
                value,
            )
        }
        other => {
            return Err(ControlError::not_found(format!(
                "unknown change '{other}': pulls, pulls/{{n}}/merge, issues, issues/{{n}}/comments, runs, releases"
            )))
        }
    };
    drop(repos);
    deliver(&state, &repo, event, payload);
    Ok(Json(answer))
}
