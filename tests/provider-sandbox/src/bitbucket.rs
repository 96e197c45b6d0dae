//! Bitbucket Cloud's REST API (2.0) for one seeded demo repository and any repository a
//! control creates, served under `/bitbucket/2.0` in place of `https://api.bitbucket.org/2.0`
//! (a connection's `base_url`). As Atlassian documents it
//! (<https://developer.atlassian.com/cloud/bitbucket/rest/intro/>):
//! - `Authorization: Bearer` repository access tokens (`POST /__sandbox/bitbucket/tokens`
//!   issues one); 401 `{"type": "error", "error": {"message": ...}}`;
//! - paginated bodies `{values, pagelen, page, size, next}` with `pagelen`, `page`, `sort`
//!   and `q` filters (`updated_on>"…"`)
//!   (<https://developer.atlassian.com/cloud/bitbucket/rest/intro/#pagination>,
//!   <https://developer.atlassian.com/cloud/bitbucket/rest/intro/#filtering>);
//! - 1,000 requests an hour per token, then 429 with `Retry-After`
//!   (<https://support.atlassian.com/bitbucket-cloud/docs/api-request-limits/>);
//! - repository hooks (`POST /repositories/{w}/{r}/hooks` `{url, secret, events}`)
//!   delivering `X-Event-Key`, `X-Request-UUID`, `X-Hook-UUID` and `X-Hub-Signature`
//!   (<https://support.atlassian.com/bitbucket-cloud/docs/manage-webhooks/>).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
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
const RATE_LIMIT: u64 = 1_000;

#[derive(Debug, Clone)]
struct PullRequest {
    id: u64,
    title: String,
    created_ms: i64,
    updated_ms: i64,
    merged: bool,
}

#[derive(Debug, Clone)]
struct IssueRecord {
    id: u64,
    title: String,
    created_ms: i64,
    updated_ms: i64,
}

#[derive(Debug, Clone)]
struct Step {
    uuid: String,
    name: String,
    result: &'static str,
    log: String,
}

#[derive(Debug, Clone)]
struct Pipeline {
    uuid: String,
    build_number: u64,
    branch: String,
    commit: String,
    result: &'static str,
    created_ms: i64,
    completed_ms: i64,
    steps: Vec<Step>,
}

#[derive(Debug, Clone)]
struct Hook {
    uuid: String,
    url: String,
    secret: String,
    events: Vec<String>,
}

#[derive(Debug, Default)]
struct Repo {
    pulls: Vec<PullRequest>,
    issues: Vec<IssueRecord>,
    pipelines: Vec<Pipeline>,
    hooks: Vec<Hook>,
    /// (tag, commit date)
    tags: Vec<(String, i64)>,
    next_pull: u64,
    next_issue: u64,
    next_build: u64,
}

/// Bitbucket's stores.
#[derive(Debug, Default)]
pub struct BitbucketState {
    repos: Mutex<BTreeMap<String, Repo>>,
    tokens: Mutex<BTreeSet<String>>,
    rate: Mutex<BTreeMap<String, (u64, i64)>>,
}

fn braced_uuid() -> String {
    format!("{{{}}}", outbound::uuid_v4())
}

impl BitbucketState {
    /// Seeds [`DEMO_REPOSITORY`] like the other hosts' demo: a merged pull request, an open
    /// one idle for 30 days and a fresh one, a fresh and a 40-day-idle issue, a failed
    /// pipeline (with its failing step's log) and a passing one, a tag five days old.
    pub fn seeded(now_ms: i64) -> Self {
        let pull = |id: u64, title: &str, days: i64, merged: bool| PullRequest {
            id,
            title: title.to_owned(),
            created_ms: now_ms - days * DAY_MS - 2 * HOUR_MS,
            updated_ms: now_ms - days * DAY_MS - HOUR_MS,
            merged,
        };
        let issue = |id: u64, title: &str, days: i64| IssueRecord {
            id,
            title: title.to_owned(),
            created_ms: now_ms - days * DAY_MS,
            updated_ms: now_ms - days * DAY_MS,
        };
        let pipeline = |build_number: u64, result: &'static str, hours: i64| Pipeline {
            uuid: braced_uuid(),
            build_number,
            branch: "main".into(),
            commit: format!("{:040x}", build_number),
            result,
            created_ms: now_ms - hours * HOUR_MS,
            completed_ms: now_ms - hours * HOUR_MS + 300_000,
            steps: vec![Step {
                uuid: braced_uuid(),
                name: "Build and test".into(),
                result,
                log: if result == "FAILED" {
                    "running tests\nerror: test checkout::totals failed".into()
                } else {
                    "ok".into()
                },
            }],
        };
        let repo = Repo {
            pulls: vec![
                pull(1, "feat: gift cards at checkout", 3, true),
                pull(2, "fix: rounding in totals", 30, false),
                pull(3, "Add dark mode", 0, false),
            ],
            issues: vec![
                issue(1, "Checkout is slow on mobile", 1),
                issue(2, "Old export bug", 40),
            ],
            pipelines: vec![pipeline(1, "FAILED", 2), pipeline(2, "SUCCESSFUL", 1)],
            hooks: Vec::new(),
            tags: vec![("v1.0.0".into(), now_ms - 5 * DAY_MS)],
            next_pull: 4,
            next_issue: 3,
            next_build: 3,
        };
        Self {
            repos: Mutex::new(BTreeMap::from([(DEMO_REPOSITORY.to_owned(), repo)])),
            ..Self::default()
        }
    }
}

fn time(ms: i64) -> String {
    format_ms(ms)
}

fn error(status: StatusCode, text: &str) -> Response {
    (
        status,
        Json(json!({"type": "error", "error": {"message": text}})),
    )
        .into_response()
}

fn repo_name(workspace: &str, slug: &str) -> String {
    format!("{workspace}/{slug}").to_ascii_lowercase()
}

/// The caller's token counted against its hour window; `Err` is the refusal.
fn admit(state: &SharedState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    if token.is_empty() || !lock(&state.bitbucket.tokens).contains(&token) {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "Access token expired or invalid",
        )));
    }
    let now = state.clock.now_ms();
    let (used, reset_ms) = {
        let mut rate = lock(&state.bitbucket.rate);
        let window = rate.entry(token).or_insert((0, now + HOUR_MS));
        if now >= window.1 {
            *window = (0, now + HOUR_MS);
        }
        window.0 += 1;
        *window
    };
    if used > RATE_LIMIT {
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit for this resource has been exceeded",
        );
        if let Ok(value) = HeaderValue::from_str(&((reset_ms - now) / 1000).max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Err(Box::new(response));
    }
    Ok(())
}

fn query(raw: Option<&str>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()).into_owned() {
        out.entry(k).or_default().push(v);
    }
    out
}

fn first<'a>(q: &'a BTreeMap<String, Vec<String>>, key: &str) -> Option<&'a str> {
    q.get(key).and_then(|v| v.first()).map(String::as_str)
}

/// `items` as (update time, record): `q=updated_on>"…"` filtered, `sort` ordered,
/// `pagelen`/`page` paged, with the body's `next`.
fn page(path: &str, raw: Option<&str>, mut items: Vec<(i64, Value)>) -> Response {
    let q = query(raw);
    if let Some(filter) = first(&q, "q") {
        if let Some(after) = filter
            .split("updated_on>\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            let after = after.timestamp_millis();
            items.retain(|(t, _)| *t > after);
        }
    }
    items.sort_by_key(|(t, _)| *t);
    if first(&q, "sort").is_some_and(|s| s.starts_with('-')) {
        items.reverse();
    }
    let pagelen = first(&q, "pagelen")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let number = first(&q, "page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let size = items.len();
    let values: Vec<Value> = items
        .into_iter()
        .skip((number - 1) * pagelen)
        .take(pagelen)
        .map(|(_, v)| v)
        .collect();
    let mut body = json!({"values": values, "pagelen": pagelen, "page": number, "size": size});
    if number * pagelen < size {
        let keep: String = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .filter(|(k, _)| k != "page")
            .map(|(k, v)| {
                format!(
                    "{}={}&",
                    k,
                    url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                )
            })
            .collect();
        body["next"] = json!(format!("{path}?{keep}page={}", number + 1));
    }
    Json(body).into_response()
}

fn user() -> Value {
    json!({"nickname": "demo-dev", "display_name": "Demo Dev"})
}

fn link(href: String) -> Value {
    json!({"html": {"href": href}})
}

fn pull_json(repo: &str, p: &PullRequest) -> Value {
    json!({
        "id": p.id, "title": p.title, "description": format!("{}.", p.title),
        "state": if p.merged { "MERGED" } else { "OPEN" }, "author": user(),
        "source": {"branch": {"name": format!("pr-{}", p.id)}},
        "destination": {"branch": {"name": "main"}},
        "links": link(format!("https://bitbucket.org/{repo}/pull-requests/{}", p.id)),
        "created_on": time(p.created_ms), "updated_on": time(p.updated_ms),
    })
}

fn issue_json(repo: &str, i: &IssueRecord) -> Value {
    json!({
        "id": i.id, "title": i.title, "state": "new", "reporter": user(),
        "content": {"raw": format!("{}: please look into it.", i.title)},
        "links": link(format!("https://bitbucket.org/{repo}/issues/{}", i.id)),
        "created_on": time(i.created_ms), "updated_on": time(i.updated_ms),
    })
}

fn pipeline_json(repo: &str, p: &Pipeline) -> Value {
    json!({
        "uuid": p.uuid, "build_number": p.build_number,
        "state": {"name": "COMPLETED", "result": {"name": p.result}},
        "target": {"ref_type": "branch", "ref_name": p.branch, "commit": {"hash": p.commit}},
        "links": link(format!("https://bitbucket.org/{repo}/pipelines/results/{}", p.build_number)),
        "created_on": time(p.created_ms), "completed_on": time(p.completed_ms),
    })
}

type RepoPath = Path<(String, String)>;

/// Runs `read` on the repository when the caller is admitted; 404 for an unknown one.
fn with_repo(
    state: &SharedState,
    headers: &HeaderMap,
    workspace: &str,
    slug: &str,
    read: impl FnOnce(&str, &Repo) -> Response,
) -> Response {
    if let Err(refused) = admit(state, headers) {
        return *refused;
    }
    let name = repo_name(workspace, slug);
    let repos = lock(&state.bitbucket.repos);
    match repos.get(&name) {
        Some(repo) => read(&name, repo),
        None => error(StatusCode::NOT_FOUND, "Repository not found"),
    }
}

fn base(headers: &HeaderMap, name: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}/bitbucket/2.0/repositories/{name}")
}

async fn pulls(
    State(state): State<SharedState>,
    Path((workspace, slug)): RepoPath,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    with_repo(&state, &headers, &workspace, &slug, |name, r| {
        let q = query(raw.as_deref());
        let states: Vec<String> = q
            .get("state")
            .cloned()
            .unwrap_or_else(|| vec!["OPEN".into()]);
        let items = r
            .pulls
            .iter()
            .filter(|p| {
                states
                    .iter()
                    .any(|s| s == if p.merged { "MERGED" } else { "OPEN" })
            })
            .map(|p| (p.updated_ms, pull_json(name, p)))
            .collect();
        page(
            &format!("{}/pullrequests", base(&headers, name)),
            raw.as_deref(),
            items,
        )
    })
}

async fn pull(
    State(state): State<SharedState>,
    Path((workspace, slug, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    with_repo(&state, &headers, &workspace, &slug, |name, r| {
        match r.pulls.iter().find(|p| p.id == id) {
            Some(p) => Json(pull_json(name, p)).into_response(),
            None => error(StatusCode::NOT_FOUND, "Pull request not found"),
        }
    })
}

async fn issues(
    State(state): State<SharedState>,
    Path((workspace, slug)): RepoPath,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    with_repo(&state, &headers, &workspace, &slug, |name, r| {
        let items = r
            .issues
            .iter()
            .map(|i| (i.updated_ms, issue_json(name, i)))
            .collect();
        page(
            &format!("{}/issues", base(&headers, name)),
            raw.as_deref(),
            items,
        )
    })
}

async fn issue(
    State(state): State<SharedState>,
    Path((workspace, slug, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    with_repo(&state, &headers, &workspace, &slug, |name, r| {
        match r.issues.iter().find(|i| i.id == id) {
            Some(i) => Json(issue_json(name, i)).into_response(),
            None => error(StatusCode::NOT_FOUND, "Issue not found"),
        }
    })
}

async fn pipelines(
    State(state): State<SharedState>,
    Path((workspace, slug)): RepoPath,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    with_repo(&state, &headers, &workspace, &slug, |name, r| {
        let items = r
            .pipelines
            .iter()
            .map(|p| (p.created_ms, pipeline_json(name, p)))
            .collect();
        page(
            &format!("{}/pipelines/", base(&headers, name)),
            raw.as_deref(),
            items,
        )
    })
}

async fn steps(
    State(state): State<SharedState>,
    Path((workspace, slug, pipeline)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    with_repo(&state, &headers, &workspace, &slug, |name, r| {
        let Some(p) = r.pipelines.iter().find(|p| p.uuid == pipeline) else {
            return error(StatusCode::NOT_FOUND, "Pipeline not found");
        };
        let items = p
            .steps
            .iter()
            .map(|s| {
                (
                    0,
                    json!({"uuid": s.uuid, "name": s.name,
                           "state": {"name": "COMPLETED", "result": {"name": s.result}}}),
                )
            })
            .collect();
        page(
            &format!("{}/pipelines/{pipeline}/steps/", base(&headers, name)),
            raw.as_deref(),
            items,
        )
    })
}

async fn step_log(
    State(state): State<SharedState>,
    Path((workspace, slug, pipeline, step)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    with_repo(&state, &headers, &workspace, &slug, |_, r| {
        let log = r
            .pipelines
            .iter()
            .find(|p| p.uuid == pipeline)
            .and_then(|p| p.steps.iter().find(|s| s.uuid == step))
            .map(|s| s.log.clone());
        match log {
            Some(log) => {
                ([(header::CONTENT_TYPE, "application/octet-stream")], log).into_response()
            }
            None => error(StatusCode::NOT_FOUND, "Step not found"),
        }
    })
}

/// `GET /commit/{revision}/statuses`: the pipelines' build statuses of a commit (a branch
/// name resolves to its newest pipeline's commit).
async fn statuses(
    State(state): State<SharedState>,
    Path((workspace, slug, revision)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    with_repo(&state, &headers, &workspace, &slug, |name, r| {
        let commit = r
            .pipelines
            .iter()
            .filter(|p| p.branch == revision)
            .max_by_key(|p| p.created_ms)
            .map_or(revision.as_str(), |p| p.commit.as_str());
        let items = r
            .pipelines
            .iter()
            .filter(|p| p.commit == commit)
            .map(|p| {
                (
                    p.created_ms,
                    json!({"key": format!("pipeline-{}", p.build_number), "name": format!("Pipeline #{}", p.build_number),
                           "state": p.result, "url": format!("https://bitbucket.org/{name}/pipelines/results/{}", p.build_number),
                           "updated_on": time(p.completed_ms)}),
                )
            })
            .collect();
        page(
            &format!("{}/commit/{revision}/statuses", base(&headers, name)),
            raw.as_deref(),
            items,
        )
    })
}

async fn tags(
    State(state): State<SharedState>,
    Path((workspace, slug)): RepoPath,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    with_repo(&state, &headers, &workspace, &slug, |name, r| {
        let items = r
            .tags
            .iter()
            .map(|(tag, at)| {
                (
                    *at,
                    json!({"name": tag, "target": {"hash": "0", "date": time(*at)}}),
                )
            })
            .collect();
        // `sort=-target.date`: the same order as the generic `-` sort on the tag's date.
        let raw = raw
            .as_deref()
            .map(|r| r.replace("target.date", "updated_on"));
        page(
            &format!("{}/refs/tags", base(&headers, name)),
            raw.as_deref(),
            items,
        )
    })
}

async fn create_hook(
    State(state): State<SharedState>,
    Path((workspace, slug)): RepoPath,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = admit(&state, &headers) {
        return *refused;
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "Bad request");
    };
    let Some(url) = request
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("http"))
    else {
        return error(StatusCode::BAD_REQUEST, "url: This field is required.");
    };
    let hook = Hook {
        uuid: braced_uuid(),
        url: url.to_owned(),
        secret: request
            .get("secret")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        events: request
            .get("events")
            .and_then(Value::as_array)
            .map(|e| {
                e.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    };
    let mut repos = lock(&state.bitbucket.repos);
    let Some(r) = repos.get_mut(&repo_name(&workspace, &slug)) else {
        return error(StatusCode::NOT_FOUND, "Repository not found");
    };
    r.hooks.push(hook.clone());
    (
        StatusCode::CREATED,
        Json(
            json!({"uuid": hook.uuid, "url": hook.url, "active": true, "events": hook.events,
                    "secret_set": !hook.secret.is_empty()}),
        ),
    )
        .into_response()
}

async fn list_hooks(
    State(state): State<SharedState>,
    Path((workspace, slug)): RepoPath,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    with_repo(&state, &headers, &workspace, &slug, |name, r| {
        let items = r
            .hooks
            .iter()
            .map(|h| (0, json!({"uuid": h.uuid, "url": h.url, "events": h.events})))
            .collect();
        page(
            &format!("{}/hooks", base(&headers, name)),
            raw.as_deref(),
            items,
        )
    })
}

async fn delete_hook(
    State(state): State<SharedState>,
    Path((workspace, slug, uid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = admit(&state, &headers) {
        return *refused;
    }
    let mut repos = lock(&state.bitbucket.repos);
    let Some(r) = repos.get_mut(&repo_name(&workspace, &slug)) else {
        return error(StatusCode::NOT_FOUND, "Repository not found");
    };
    let before = r.hooks.len();
    r.hooks.retain(|h| h.uuid != uid);
    if r.hooks.len() == before {
        return error(StatusCode::NOT_FOUND, "Webhook not found");
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Bitbucket's public routes, under `/bitbucket/2.0`.
pub fn router(state: &SharedState) -> Router<SharedState> {
    let r = "/bitbucket/2.0/repositories/{workspace}/{slug}";
    let read = |route| tagged(state, Endpoint::BitbucketRead, route);
    Router::new()
        .route(&format!("{r}/pullrequests"), read(get(pulls)))
        .route(&format!("{r}/pullrequests/{{id}}"), read(get(pull)))
        .route(&format!("{r}/issues"), read(get(issues)))
        .route(&format!("{r}/issues/{{id}}"), read(get(issue)))
        .route(&format!("{r}/pipelines/"), read(get(pipelines)))
        .route(
            &format!("{r}/pipelines/{{pipeline}}/steps/"),
            read(get(steps)),
        )
        .route(
            &format!("{r}/pipelines/{{pipeline}}/steps/{{step}}/log"),
            read(get(step_log)),
        )
        .route(
            &format!("{r}/commit/{{revision}}/statuses"),
            read(get(statuses)),
        )
        .route(&format!("{r}/refs/tags"), read(get(tags)))
        .route(
            &format!("{r}/hooks"),
            tagged(
                state,
                Endpoint::BitbucketHooks,
                get(list_hooks).post(create_hook),
            ),
        )
        .route(
            &format!("{r}/hooks/{{uid}}"),
            tagged(state, Endpoint::BitbucketHooks, delete(delete_hook)),
        )
}

/// Sends `event_key` to the hooks subscribed to it, signed with each hook's secret.
fn deliver(state: &SharedState, repo: &str, event_key: &'static str, payload: Value) {
    let hooks: Vec<Hook> = lock(&state.bitbucket.repos)
        .get(repo)
        .map(|r| {
            r.hooks
                .iter()
                .filter(|h| h.events.iter().any(|e| e == event_key))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let state = state.clone();
    tokio::spawn(async move {
        let body = payload.to_string().into_bytes();
        for hook in hooks {
            let signature = format!(
                "sha256={}",
                hex::encode(outbound::hmac_sha256(hook.secret.as_bytes(), &body))
            );
            let headers = vec![
                ("content-type", "application/json".to_owned()),
                ("x-event-key", event_key.to_owned()),
                ("x-request-uuid", outbound::uuid_v4()),
                ("x-hook-uuid", hook.uuid.clone()),
                ("x-hub-signature", signature),
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

/// `POST /__sandbox/bitbucket/tokens`: a token valid for every repository.
pub async fn control_token(State(state): State<SharedState>) -> Json<Value> {
    let token = format!("ATCTT3x{}", &outbound::uuid_v4().replace('-', "")[..24]);
    lock(&state.bitbucket.tokens).insert(token.clone());
    Json(json!({ "token": token }))
}

/// `POST /__sandbox/bitbucket/repositories/{workspace}/{repo}/{change}`: a change made at
/// Bitbucket, with its webhook: `pullrequests` `{"title"}` opens one,
/// `pullrequests/{id}/merge` merges one, `issues` `{"title"}` opens an issue, `pipelines`
/// `{"result": "FAILED"|"SUCCESSFUL"}` completes a pipeline, `tags` `{"name"}` tags.
pub async fn control_change(
    State(state): State<SharedState>,
    Path((workspace, slug, change)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let request: Value = if body.is_empty() {
        json!({})
    } else {
        parse_json_body(&body)?
    };
    let name = repo_name(&workspace, &slug);
    let now = state.clock.now_ms();
    let title = request
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or("Sandbox change")
        .to_owned();
    let mut repos = lock(&state.bitbucket.repos);
    let r = repos.entry(name.clone()).or_insert_with(|| Repo {
        next_pull: 1,
        next_issue: 1,
        next_build: 1,
        ..Repo::default()
    });
    let repository = json!({"full_name": name, "name": slug, "type": "repository"});
    let (event, payload, answer) = match change.as_str() {
        "pullrequests" => {
            let p = PullRequest {
                id: r.next_pull,
                title,
                created_ms: now,
                updated_ms: now,
                merged: false,
            };
            r.next_pull += 1;
            r.pulls.push(p.clone());
            let value = pull_json(&name, &p);
            (
                Some("pullrequest:created"),
                json!({"pullrequest": value, "repository": repository, "actor": user()}),
                value,
            )
        }
        merge if merge.starts_with("pullrequests/") && merge.ends_with("/merge") => {
            let id: u64 = merge
                .trim_start_matches("pullrequests/")
                .trim_end_matches("/merge")
                .parse()
                .map_err(|_| ControlError::bad_request("pull request id"))?;
            let p = r
                .pulls
                .iter_mut()
                .find(|p| p.id == id)
                .ok_or_else(|| ControlError::not_found("no such pull request"))?;
            p.merged = true;
            p.updated_ms = now;
            let value = pull_json(&name, p);
            (
                Some("pullrequest:fulfilled"),
                json!({"pullrequest": value, "repository": repository, "actor": user()}),
                value,
            )
        }
        "issues" => {
            let i = IssueRecord {
                id: r.next_issue,
                title,
                created_ms: now,
                updated_ms: now,
            };
            r.next_issue += 1;
            r.issues.push(i.clone());
            let value = issue_json(&name, &i);
            (
                Some("issue:created"),
                json!({"issue": value, "repository": repository, "actor": user()}),
                value,
            )
        }
        "pipelines" => {
            let failed = request.get("result").and_then(Value::as_str) != Some("SUCCESSFUL");
            let result = if failed { "FAILED" } else { "SUCCESSFUL" };
            let build_number = r.next_build;
            r.next_build += 1;
            let p = Pipeline {
                uuid: braced_uuid(),
                build_number,
                branch: "main".into(),
                commit: format!("{:040x}", 1000 + build_number),
                result,
                created_ms: now,
                completed_ms: now,
                steps: vec![Step {
                    uuid: braced_uuid(),
                    name: "Build and test".into(),
                    result,
                    log: if failed {
                        "running tests\nerror: test checkout::totals failed".into()
                    } else {
                        "ok".into()
                    },
                }],
            };
            r.pipelines.push(p.clone());
            let value = pipeline_json(&name, &p);
            let status = json!({"key": format!("pipeline-{build_number}"), "state": result,
                                "name": format!("Pipeline #{build_number}"),
                                "url": format!("https://bitbucket.org/{name}/pipelines/results/{build_number}"),
                                "updated_on": time(now), "commit": {"hash": p.commit}});
            (
                Some("repo:commit_status_updated"),
                json!({"commit_status": status, "repository": repository, "actor": user()}),
                value,
            )
        }
        "tags" => {
            let tag = request
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| ControlError::bad_request("name is required"))?
                .to_owned();
            r.tags.push((tag.clone(), now));
            (None, Value::Null, json!({"name": tag, "target": {"date": time(now)}}))
        }
        other => {
            return Err(ControlError::not_found(format!(
                "unknown change '{other}': pullrequests, pullrequests/{{id}}/merge, issues, pipelines, tags"
            )))
        }
    };
    drop(repos);
    if let Some(event) = event {
        deliver(&state, &name, event, payload);
    }
    Ok(Json(answer))
}
