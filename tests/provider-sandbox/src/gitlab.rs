//! GitLab's REST API (v4) for one seeded demo project and any project a control creates,
//! served under `/gitlab/api/v4` in place of `https://gitlab.com/api/v4` (a connection's
//! `base_url`). As GitLab documents it (<https://docs.gitlab.com/api/rest/>):
//! - `PRIVATE-TOKEN` (or `Authorization: Bearer`) tokens (`POST /__sandbox/gitlab/tokens`
//!   issues one); 401 `{"message": "401 Unauthorized"}`;
//! - projects by URL-encoded path (`edge-sync%2Fdemo-app`);
//! - lists with `order_by`/`sort`, `updated_after`, `state`, `page`/`per_page` and the
//!   `X-Page`, `X-Per-Page`, `X-Next-Page`, `X-Total` headers
//!   (<https://docs.gitlab.com/api/rest/#pagination>);
//! - `RateLimit-Limit/Remaining/Reset` on every answer, 429 with `Retry-After` past the limit
//!   (<https://docs.gitlab.com/security/rate_limits/>);
//! - project hooks (`POST /projects/:id/hooks` `{url, token, *_events}`) delivering
//!   `X-Gitlab-Event`, `X-Gitlab-Event-UUID` and the hook's `X-Gitlab-Token`
//!   (<https://docs.gitlab.com/user/project/integrations/webhooks/>).

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

/// The project every sandbox starts with.
pub const DEMO_PROJECT: &str = "edge-sync/demo-app";
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Requests per token per minute (GitLab.com's authenticated API limit is 2,000).
const RATE_LIMIT: u64 = 2_000;

#[derive(Debug, Clone)]
struct MergeRequest {
    iid: u64,
    id: u64,
    title: String,
    created_ms: i64,
    updated_ms: i64,
    merged_ms: Option<i64>,
}

#[derive(Debug, Clone)]
struct IssueRecord {
    iid: u64,
    id: u64,
    title: String,
    description: String,
    created_ms: i64,
    updated_ms: i64,
}

#[derive(Debug, Clone)]
struct Job {
    id: u64,
    name: String,
    status: &'static str,
    trace: String,
}

#[derive(Debug, Clone)]
struct Pipeline {
    id: u64,
    branch: String,
    sha: String,
    status: &'static str,
    created_ms: i64,
    updated_ms: i64,
    jobs: Vec<Job>,
}

#[derive(Debug, Clone)]
struct Hook {
    id: u64,
    url: String,
    token: String,
}

#[derive(Debug, Default)]
struct Project {
    id: u64,
    merge_requests: Vec<MergeRequest>,
    issues: Vec<IssueRecord>,
    pipelines: Vec<Pipeline>,
    hooks: Vec<Hook>,
    /// (tag, released at)
    releases: Vec<(String, i64)>,
    next_mr_iid: u64,
    next_issue_iid: u64,
}

/// GitLab's stores.
#[derive(Debug, Default)]
pub struct GitLabState {
    projects: Mutex<BTreeMap<String, Project>>,
    tokens: Mutex<BTreeSet<String>>,
    /// Per token: requests in the current minute window and when it resets.
    rate: Mutex<BTreeMap<String, (u64, i64)>>,
    next_id: Mutex<u64>,
}

impl GitLabState {
    /// Seeds [`DEMO_PROJECT`] around `now_ms`: a merged merge request, an open one idle for
    /// 30 days and a fresh one, a fresh and a 40-day-idle issue, a failed pipeline (with its
    /// failing job's trace) and a passing one, a release five days old.
    pub fn seeded(now_ms: i64) -> Self {
        let mr = |iid: u64, title: &str, days: i64, merged: bool| MergeRequest {
            iid,
            id: 5000 + iid,
            title: title.to_owned(),
            created_ms: now_ms - days * DAY_MS - 2 * HOUR_MS,
            updated_ms: now_ms - days * DAY_MS - HOUR_MS,
            merged_ms: merged.then_some(now_ms - days * DAY_MS - HOUR_MS),
        };
        let issue = |iid: u64, title: &str, days: i64| IssueRecord {
            iid,
            id: 7000 + iid,
            title: title.to_owned(),
            description: format!("{title}: please look into it."),
            created_ms: now_ms - days * DAY_MS,
            updated_ms: now_ms - days * DAY_MS,
        };
        let project = Project {
            id: 4242,
            merge_requests: vec![
                mr(1, "feat: gift cards at checkout", 3, true),
                mr(2, "fix: rounding in totals", 30, false),
                mr(3, "Add dark mode", 0, false),
            ],
            issues: vec![
                issue(1, "Checkout is slow on mobile", 1),
                issue(2, "Old export bug", 40),
            ],
            pipelines: vec![
                Pipeline {
                    id: 9101,
                    branch: "main".into(),
                    sha: "4f2a9c1".into(),
                    status: "failed",
                    created_ms: now_ms - 2 * HOUR_MS,
                    updated_ms: now_ms - 2 * HOUR_MS + 300_000,
                    jobs: vec![
                        Job {
                            id: 81001,
                            name: "test".into(),
                            status: "failed",
                            trace: "running tests\nerror: test checkout::totals failed".into(),
                        },
                        Job {
                            id: 81002,
                            name: "lint".into(),
                            status: "success",
                            trace: "ok".into(),
                        },
                    ],
                },
                Pipeline {
                    id: 9102,
                    branch: "main".into(),
                    sha: "9b1d3e7".into(),
                    status: "success",
                    created_ms: now_ms - HOUR_MS,
                    updated_ms: now_ms - HOUR_MS + 240_000,
                    jobs: Vec::new(),
                },
            ],
            hooks: Vec::new(),
            releases: vec![("v1.0.0".into(), now_ms - 5 * DAY_MS)],
            next_mr_iid: 4,
            next_issue_iid: 3,
        };
        Self {
            projects: Mutex::new(BTreeMap::from([(DEMO_PROJECT.to_owned(), project)])),
            tokens: Mutex::new(BTreeSet::new()),
            rate: Mutex::new(BTreeMap::new()),
            next_id: Mutex::new(200_000),
        }
    }

    fn next_id(&self) -> u64 {
        let mut id = lock(&self.next_id);
        *id += 1;
        *id
    }
}

fn time(ms: i64) -> String {
    format_ms(ms)
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({ "message": text }))).into_response()
}

fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "404 Project Not Found")
}

/// The caller's token, counted against its minute window: `Err` is the refusal (401, or
/// 429 with `Retry-After`); `Ok` the rate headers to add.
fn admit(
    state: &SharedState,
    headers: &HeaderMap,
) -> Result<Vec<(&'static str, String)>, Box<Response>> {
    let token = headers
        .get("private-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    if token.is_empty() || !lock(&state.gitlab.tokens).contains(&token) {
        return Err(Box::new(message(
            StatusCode::UNAUTHORIZED,
            "401 Unauthorized",
        )));
    }
    let now = state.clock.now_ms();
    let (used, reset_ms) = {
        let mut rate = lock(&state.gitlab.rate);
        let window = rate.entry(token).or_insert((0, now + 60_000));
        if now >= window.1 {
            *window = (0, now + 60_000);
        }
        window.0 += 1;
        *window
    };
    let rate = vec![
        ("ratelimit-limit", RATE_LIMIT.to_string()),
        (
            "ratelimit-remaining",
            RATE_LIMIT.saturating_sub(used).to_string(),
        ),
        ("ratelimit-reset", (reset_ms / 1000).to_string()),
    ];
    if used > RATE_LIMIT {
        let mut response = message(StatusCode::TOO_MANY_REQUESTS, "Retry later");
        let wait = ((reset_ms - now) / 1000).max(1).to_string();
        add(&mut response, &[("retry-after", wait)]);
        add(&mut response, &rate);
        return Err(Box::new(response));
    }
    Ok(rate)
}

fn add(response: &mut Response, headers: &[(&'static str, String)]) {
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, value);
        }
    }
}

fn query(raw: Option<&str>) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// `items` as (order time, record), filtered by `updated_after`, ordered by `sort`, paged.
fn list(
    rate: &[(&'static str, String)],
    raw: Option<&str>,
    mut items: Vec<(i64, Value)>,
) -> Response {
    let q = query(raw);
    if let Some(after) = q
        .get("updated_after")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    {
        let after = after.timestamp_millis();
        items.retain(|(t, _)| *t > after);
    }
    items.sort_by_key(|(t, _)| *t);
    if q.get("sort").map(String::as_str) != Some("asc") {
        items.reverse();
    }
    let per_page = q
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let page = q
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let total = items.len();
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|(_, v)| v)
        .collect();
    let mut response = Json(Value::Array(slice)).into_response();
    let next = if page * per_page < total {
        (page + 1).to_string()
    } else {
        String::new()
    };
    add(
        &mut response,
        &[
            ("x-page", page.to_string()),
            ("x-per-page", per_page.to_string()),
            ("x-next-page", next),
            ("x-total", total.to_string()),
        ],
    );
    add(&mut response, rate);
    response
}

fn one(rate: &[(&'static str, String)], value: Option<Value>) -> Response {
    let mut response = match value {
        Some(value) => Json(value).into_response(),
        None => message(StatusCode::NOT_FOUND, "404 Not found"),
    };
    add(&mut response, rate);
    response
}

fn author() -> Value {
    json!({"username": "demo-dev", "name": "Demo Dev"})
}

fn mr_json(project: &str, m: &MergeRequest) -> Value {
    json!({
        "id": m.id, "iid": m.iid, "title": m.title, "description": format!("{}.", m.title),
        "state": if m.merged_ms.is_some() { "merged" } else { "opened" },
        "author": author(), "labels": if m.title.starts_with("feat") { vec!["feature"] } else { vec![] },
        "source_branch": format!("mr-{}", m.iid), "target_branch": "main",
        "web_url": format!("https://gitlab.com/{project}/-/merge_requests/{}", m.iid),
        "created_at": time(m.created_ms), "updated_at": time(m.updated_ms),
        "merged_at": m.merged_ms.map(time),
    })
}

fn issue_json(project: &str, i: &IssueRecord) -> Value {
    json!({
        "id": i.id, "iid": i.iid, "title": i.title, "description": i.description,
        "state": "opened", "author": author(), "labels": [],
        "web_url": format!("https://gitlab.com/{project}/-/issues/{}", i.iid),
        "created_at": time(i.created_ms), "updated_at": time(i.updated_ms),
    })
}

fn pipeline_json(project: &str, p: &Pipeline) -> Value {
    json!({
        "id": p.id, "iid": p.id - 9000, "status": p.status, "ref": p.branch, "sha": p.sha,
        "source": "push", "web_url": format!("https://gitlab.com/{project}/-/pipelines/{}", p.id),
        "created_at": time(p.created_ms), "updated_at": time(p.updated_ms),
    })
}

type ProjectPath = Path<String>;

async fn merge_requests(
    State(state): State<SharedState>,
    Path(project): ProjectPath,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let rate = match admit(&state, &headers) {
        Ok(rate) => rate,
        Err(refused) => return *refused,
    };
    let wanted = query(raw.as_deref())
        .get("state")
        .cloned()
        .unwrap_or_else(|| "all".into());
    let projects = lock(&state.gitlab.projects);
    let Some(p) = projects.get(&project) else {
        return not_found();
    };
    let items = p
        .merge_requests
        .iter()
        .filter(|m| match wanted.as_str() {
            "opened" => m.merged_ms.is_none(),
            "merged" => m.merged_ms.is_some(),
            "closed" => false,
            _ => true,
        })
        .map(|m| (m.updated_ms, mr_json(&project, m)))
        .collect();
    list(&rate, raw.as_deref(), items)
}

async fn merge_request(
    State(state): State<SharedState>,
    Path((project, iid)): Path<(String, u64)>,
    headers: HeaderMap,
) -> Response {
    let rate = match admit(&state, &headers) {
        Ok(rate) => rate,
        Err(refused) => return *refused,
    };
    let projects = lock(&state.gitlab.projects);
    let value = projects.get(&project).and_then(|p| {
        p.merge_requests
            .iter()
            .find(|m| m.iid == iid)
            .map(|m| mr_json(&project, m))
    });
    one(&rate, value)
}

async fn issues(
    State(state): State<SharedState>,
    Path(project): ProjectPath,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let rate = match admit(&state, &headers) {
        Ok(rate) => rate,
        Err(refused) => return *refused,
    };
    let projects = lock(&state.gitlab.projects);
    let Some(p) = projects.get(&project) else {
        return not_found();
    };
    let items = p
        .issues
        .iter()
        .map(|i| (i.updated_ms, issue_json(&project, i)))
        .collect();
    list(&rate, raw.as_deref(), items)
}

async fn issue(
    State(state): State<SharedState>,
    Path((project, iid)): Path<(String, u64)>,
    headers: HeaderMap,
) -> Response {
    let rate = match admit(&state, &headers) {
        Ok(rate) => rate,
        Err(refused) => return *refused,
    };
    let projects = lock(&state.gitlab.projects);
    let value = projects.get(&project).and_then(|p| {
        p.issues
            .iter()
            .find(|i| i.iid == iid)
            .map(|i| issue_json(&project, i))
    });
    one(&rate, value)
}

async fn pipelines(
    State(state): State<SharedState>,
    Path(project): ProjectPath,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let rate = match admit(&state, &headers) {
        Ok(rate) => rate,
        Err(refused) => return *refused,
    };
    let q = query(raw.as_deref());
    let projects = lock(&state.gitlab.projects);
    let Some(p) = projects.get(&project) else {
        return not_found();
    };
    let items = p
        .pipelines
        .iter()
        .filter(|pl| q.get("ref").is_none_or(|r| *r == pl.branch))
        .filter(|pl| q.get("sha").is_none_or(|s| *s == pl.sha))
        .map(|pl| (pl.updated_ms, pipeline_json(&project, pl)))
        .collect();
    list(&rate, raw.as_deref(), items)
}

async fn pipeline_jobs(
    State(state): State<SharedState>,
    Path((project, pipeline)): Path<(String, u64)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let rate = match admit(&state, &headers) {
        Ok(rate) => rate,
        Err(refused) => return *refused,
    };
    let projects = lock(&state.gitlab.projects);
    let Some(pl) = projects
        .get(&project)
        .and_then(|p| p.pipelines.iter().find(|pl| pl.id == pipeline))
    else {
        return not_found();
    };
    let items = pl
        .jobs
        .iter()
        .map(|j| {
            (
                0,
                json!({"id": j.id, "name": j.name, "status": j.status, "stage": "test",
                       "pipeline": {"id": pl.id}}),
            )
        })
        .collect();
    list(&rate, raw.as_deref(), items)
}

/// `GET /projects/:id/jobs/:job_id/trace`: the job's log as plain text.
async fn job_trace(
    State(state): State<SharedState>,
    Path((project, job)): Path<(String, u64)>,
    headers: HeaderMap,
) -> Response {
    let rate = match admit(&state, &headers) {
        Ok(rate) => rate,
        Err(refused) => return *refused,
    };
    let projects = lock(&state.gitlab.projects);
    let trace = projects.get(&project).and_then(|p| {
        p.pipelines
            .iter()
            .flat_map(|pl| &pl.jobs)
            .find(|j| j.id == job)
            .map(|j| j.trace.clone())
    });
    let mut response = match trace {
        Some(trace) => ([(header::CONTENT_TYPE, "text/plain")], trace).into_response(),
        None => message(StatusCode::NOT_FOUND, "404 Not found"),
    };
    add(&mut response, &rate);
    response
}

async fn releases(
    State(state): State<SharedState>,
    Path(project): ProjectPath,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let rate = match admit(&state, &headers) {
        Ok(rate) => rate,
        Err(refused) => return *refused,
    };
    let projects = lock(&state.gitlab.projects);
    let Some(p) = projects.get(&project) else {
        return not_found();
    };
    // GitLab sorts releases by `released_at`, newest first.
    let items = p
        .releases
        .iter()
        .map(|(tag, at)| {
            (
                *at,
                json!({"tag_name": tag, "name": tag, "released_at": time(*at), "created_at": time(*at)}),
            )
        })
        .collect();
    list(&rate, raw.as_deref(), items)
}

async fn create_hook(
    State(state): State<SharedState>,
    Path(project): ProjectPath,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rate = match admit(&state, &headers) {
        Ok(rate) => rate,
        Err(refused) => return *refused,
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return message(StatusCode::BAD_REQUEST, "400 Bad request");
    };
    let Some(url) = request
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("http"))
    else {
        return message(StatusCode::BAD_REQUEST, "400 Bad request - url is missing");
    };
    let hook = Hook {
        id: state.gitlab.next_id(),
        url: url.to_owned(),
        token: request
            .get("token")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    };
    let mut projects = lock(&state.gitlab.projects);
    let Some(p) = projects.get_mut(&project) else {
        return not_found();
    };
    p.hooks.push(hook.clone());
    let mut response = (
        StatusCode::CREATED,
        Json(json!({"id": hook.id, "url": hook.url, "project_id": p.id,
                    "merge_requests_events": true, "pipeline_events": true, "issues_events": true})),
    )
        .into_response();
    add(&mut response, &rate);
    response
}

async fn list_hooks(
    State(state): State<SharedState>,
    Path(project): ProjectPath,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let rate = match admit(&state, &headers) {
        Ok(rate) => rate,
        Err(refused) => return *refused,
    };
    let projects = lock(&state.gitlab.projects);
    let Some(p) = projects.get(&project) else {
        return not_found();
    };
    let items = p
        .hooks
        .iter()
        .map(|h| (0, json!({"id": h.id, "url": h.url})))
        .collect();
    list(&rate, raw.as_deref(), items)
}

async fn delete_hook(
    State(state): State<SharedState>,
    Path((project, id)): Path<(String, u64)>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = admit(&state, &headers) {
        return *refused;
    }
    let mut projects = lock(&state.gitlab.projects);
    let Some(p) = projects.get_mut(&project) else {
        return not_found();
    };
    let before = p.hooks.len();
    p.hooks.retain(|h| h.id != id);
    if p.hooks.len() == before {
        return message(StatusCode::NOT_FOUND, "404 Not found");
    }
    StatusCode::NO_CONTENT.into_response()
}

/// GitLab's public routes, under `/gitlab/api/v4`.
pub fn router(state: &SharedState) -> Router<SharedState> {
    let p = "/gitlab/api/v4/projects/{project}";
    let read = |route| tagged(state, Endpoint::GitLabRead, route);
    Router::new()
        .route(&format!("{p}/merge_requests"), read(get(merge_requests)))
        .route(
            &format!("{p}/merge_requests/{{iid}}"),
            read(get(merge_request)),
        )
        .route(&format!("{p}/issues"), read(get(issues)))
        .route(&format!("{p}/issues/{{iid}}"), read(get(issue)))
        .route(&format!("{p}/pipelines"), read(get(pipelines)))
        .route(
            &format!("{p}/pipelines/{{pipeline}}/jobs"),
            read(get(pipeline_jobs)),
        )
        .route(&format!("{p}/jobs/{{job}}/trace"), read(get(job_trace)))
        .route(&format!("{p}/releases"), read(get(releases)))
        .route(
            &format!("{p}/hooks"),
            tagged(
                state,
                Endpoint::GitLabHooks,
                get(list_hooks).post(create_hook),
            ),
        )
        .route(
            &format!("{p}/hooks/{{hook}}"),
            tagged(state, Endpoint::GitLabHooks, delete(delete_hook)),
        )
}

/// Sends `event` (`Merge Request Hook`, ...) to the project's hooks with each hook's token.
fn deliver(state: &SharedState, project: &str, event: &'static str, payload: Value) {
    let hooks: Vec<Hook> = lock(&state.gitlab.projects)
        .get(project)
        .map(|p| p.hooks.clone())
        .unwrap_or_default();
    let state = state.clone();
    tokio::spawn(async move {
        let body = payload.to_string().into_bytes();
        for hook in hooks {
            let headers = vec![
                ("content-type", "application/json".to_owned()),
                ("x-gitlab-event", event.to_owned()),
                ("x-gitlab-event-uuid", outbound::uuid_v4()),
                ("x-gitlab-token", hook.token.clone()),
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

/// `POST /__sandbox/gitlab/tokens`: a token valid for every project.
pub async fn control_token(State(state): State<SharedState>) -> Json<Value> {
    let token = format!("glpat-{}", &outbound::uuid_v4().replace('-', "")[..20]);
    lock(&state.gitlab.tokens).insert(token.clone());
    Json(json!({ "token": token }))
}

/// `POST /__sandbox/gitlab/projects/{namespace}/{project}/{change}`: a change made at
/// GitLab, with its webhook: `merge_requests` `{"title"}` opens one,
/// `merge_requests/{iid}/merge` merges one, `issues` `{"title"}` opens an issue,
/// `pipelines` `{"status": "failed"|"success"}` finishes a pipeline, `releases`
/// `{"tag_name"}` publishes a release.
pub async fn control_change(
    State(state): State<SharedState>,
    Path((namespace, name, change)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let request: Value = if body.is_empty() {
        json!({})
    } else {
        parse_json_body(&body)?
    };
    let path = format!("{namespace}/{name}");
    let now = state.clock.now_ms();
    let title = request
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or("Sandbox change")
        .to_owned();
    let mut projects = lock(&state.gitlab.projects);
    let next_project_id = 4300 + projects.len() as u64;
    let p = projects.entry(path.clone()).or_insert_with(|| Project {
        id: next_project_id,
        next_mr_iid: 1,
        next_issue_iid: 1,
        ..Project::default()
    });
    let project = json!({"id": p.id, "path_with_namespace": path,
                         "web_url": format!("https://gitlab.com/{path}")});
    let (event, payload, answer) = match change.as_str() {
        "merge_requests" => {
            let m = MergeRequest {
                iid: p.next_mr_iid,
                id: state.gitlab.next_id(),
                title,
                created_ms: now,
                updated_ms: now,
                merged_ms: None,
            };
            p.next_mr_iid += 1;
            p.merge_requests.push(m.clone());
            let mut attributes = mr_json(&path, &m);
            attributes["action"] = json!("open");
            (
                Some("Merge Request Hook"),
                json!({"object_kind": "merge_request", "project": project, "object_attributes": attributes}),
                mr_json(&path, &m),
            )
        }
        merge if merge.starts_with("merge_requests/") && merge.ends_with("/merge") => {
            let iid: u64 = merge
                .trim_start_matches("merge_requests/")
                .trim_end_matches("/merge")
                .parse()
                .map_err(|_| ControlError::bad_request("merge request iid"))?;
            let m = p
                .merge_requests
                .iter_mut()
                .find(|m| m.iid == iid)
                .ok_or_else(|| ControlError::not_found("no such merge request"))?;
            m.merged_ms = Some(now);
            m.updated_ms = now;
            let m = m.clone();
            let mut attributes = mr_json(&path, &m);
            attributes["action"] = json!("merge");
            (
                Some("Merge Request Hook"),
                json!({"object_kind": "merge_request", "project": project, "object_attributes": attributes}),
                mr_json(&path, &m),
            )
        }
        "issues" => {
            let i = IssueRecord {
                iid: p.next_issue_iid,
                id: state.gitlab.next_id(),
                title,
                description: String::new(),
                created_ms: now,
                updated_ms: now,
            };
            p.next_issue_iid += 1;
            p.issues.push(i.clone());
            let mut attributes = issue_json(&path, &i);
            attributes["action"] = json!("open");
            (
                Some("Issue Hook"),
                json!({"object_kind": "issue", "project": project, "object_attributes": attributes}),
                issue_json(&path, &i),
            )
        }
        "pipelines" => {
            let failed = request.get("status").and_then(Value::as_str) != Some("success");
            let id = state.gitlab.next_id();
            let pl = Pipeline {
                id,
                branch: "main".into(),
                sha: format!("{id:07x}"),
                status: if failed { "failed" } else { "success" },
                created_ms: now,
                updated_ms: now,
                jobs: vec![Job {
                    id: state.gitlab.next_id(),
                    name: "test".into(),
                    status: if failed { "failed" } else { "success" },
                    trace: if failed {
                        "running tests\nerror: test checkout::totals failed".into()
                    } else {
                        "ok".into()
                    },
                }],
            };
            p.pipelines.push(pl.clone());
            let mut attributes = pipeline_json(&path, &pl);
            attributes["finished_at"] = json!(time(now));
            (
                Some("Pipeline Hook"),
                json!({"object_kind": "pipeline", "project": project, "object_attributes": attributes}),
                pipeline_json(&path, &pl),
            )
        }
        "releases" => {
            let tag = request
                .get("tag_name")
                .and_then(Value::as_str)
                .ok_or_else(|| ControlError::bad_request("tag_name is required"))?
                .to_owned();
            p.releases.push((tag.clone(), now));
            (None, Value::Null, json!({"tag_name": tag, "released_at": time(now)}))
        }
        other => {
            return Err(ControlError::not_found(format!(
                "unknown change '{other}': merge_requests, merge_requests/{{iid}}/merge, issues, pipelines, releases"
            )))
        }
    };
    drop(projects);
    if let Some(event) = event {
        deliver(&state, &path, event, payload);
    }
    Ok(Json(answer))
}
