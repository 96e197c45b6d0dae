//! GitHub's REST API over HTTP: bearer tokens, the seeded demo repository newest first,
//! `Link` paging, `ETag` and free 304s, rate headers, workflow runs with their jobs and logs,
//! webhooks that really deliver signed events, and injected secondary limits.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};

use super::receiver::{Receiver, ECHO};
use super::{harness, Harness, Reply};
use crate::github::DEMO_REPOSITORY;

impl Harness {
    async fn github_token(&self) -> String {
        let reply = self.post_json("/__sandbox/github/tokens", json!({})).await;
        reply.json()["token"].as_str().unwrap().to_owned()
    }

    async fn github_get(&self, path: &str, token: &str, etag: Option<&str>) -> Reply {
        let mut request = Request::get(format!("/github/repos/{DEMO_REPOSITORY}/{path}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }
}

#[tokio::test]
async fn lists_are_paged_conditional_and_metered() {
    let h = harness(5);
    assert_eq!(
        h.github_get("pulls", "ghp_unknown", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let token = h.github_token().await;
    let all = h.github_get("pulls?state=all", &token, None).await;
    assert_eq!(all.status, StatusCode::OK);
    let pulls = all.json();
    let numbers: Vec<u64> = pulls
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, vec![5, 1, 2], "newest activity first");
    assert!(pulls[1]["merged_at"].is_string(), "{pulls}");
    assert_eq!(all.header("x-ratelimit-remaining"), Some("4999"));

    let first = h
        .github_get("pulls?state=all&per_page=2", &token, None)
        .await;
    let link = first.header("link").unwrap().to_owned();
    assert!(link.contains("page=2>; rel=\"next\""), "{link}");
    let second = h
        .github_get("pulls?state=all&per_page=2&page=2", &token, None)
        .await;
    assert_eq!(second.json().as_array().map(Vec::len), Some(1));
    assert!(second.header("link").unwrap().contains("rel=\"prev\""));

    let etag = first.header("etag").unwrap().to_owned();
    let again = h
        .github_get("pulls?state=all&per_page=2", &token, Some(&etag))
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(again.header("x-ratelimit-used"), Some("3"), "a 304 is free");

    // Issues include pull requests, as on GitHub.
    let issues = h.github_get("issues?state=all", &token, None).await.json();
    let with_pulls = issues
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i.get("pull_request").is_some())
        .count();
    assert_eq!((issues.as_array().unwrap().len(), with_pulls), (5, 3));
}

#[tokio::test]
async fn a_failed_run_has_its_failing_job_and_log() {
    let h = harness(5);
    let token = h.github_token().await;
    let runs = h.github_get("actions/runs", &token, None).await.json();
    let failed = runs["workflow_runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["conclusion"] == "failure")
        .unwrap()
        .clone();
    let jobs = h
        .github_get(&format!("actions/runs/{}/jobs", failed["id"]), &token, None)
        .await
        .json();
    let job = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["conclusion"] == "failure")
        .unwrap()
        .clone();
    let log = h
        .github_get(&format!("actions/jobs/{}/logs", job["id"]), &token, None)
        .await;
    assert_eq!(log.status, StatusCode::OK);
    assert!(String::from_utf8(log.body)
        .unwrap()
        .contains("assertion failed"));
}

#[tokio::test]
async fn hooks_deliver_signed_events_and_secondary_limits_apply() {
    let h = harness(5);
    let token = h.github_token().await;
    let receiver = Receiver::start(ECHO).await;
    let request = Request::post(format!("/github/repos/{DEMO_REPOSITORY}/hooks"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"config": {"url": receiver.url, "content_type": "json", "secret": "s3cret"},
                   "events": ["pull_request", "workflow_run"]})
            .to_string(),
        ))
        .unwrap();
    let created = h.send(request).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(
        created.json()["config"]["secret"],
        "********",
        "never shown back"
    );
    let opened = h
        .post_json(
            &format!("/__sandbox/github/repos/{DEMO_REPOSITORY}/pulls"),
            json!({"title": "New"}),
        )
        .await
        .json();
    let seen = receiver.wait_for(1).await;
    assert_eq!(seen[0].header("x-github-event"), Some("pull_request"));
    let expected = format!(
        "sha256={}",
        hex::encode(crate::outbound::hmac_sha256(b"s3cret", &seen[0].body))
    );
    assert_eq!(
        seen[0].header("x-hub-signature-256"),
        Some(expected.as_str())
    );
    let event: Value = seen[0].json();
    assert_eq!(event["action"], "opened");
    assert_eq!(event["pull_request"]["number"], opened["number"]);
    assert_eq!(event["repository"]["full_name"], DEMO_REPOSITORY);

    h.post_json(
        "/__sandbox/faults",
        json!({"endpoint": "github.pulls.list", "status": 403, "headers": {"retry-after": "60"}}),
    )
    .await;
    let limited = h.github_get("pulls", &token, None).await;
    assert_eq!(limited.status, StatusCode::FORBIDDEN);
    assert_eq!(limited.header("retry-after"), Some("60"));
    assert!(limited.json()["documentation_url"].is_string());
}

/// Sends a request the shared crate built (its path and headers) to the sandbox.
pub(super) async fn send_spec(
    h: &Harness,
    spec: &edge_sync_shared::oauth::HttpRequestSpec,
) -> (u16, Vec<(String, String)>, String) {
    let path = spec.url.trim_start_matches("http://sandbox");
    let mut request = Request::builder().method(spec.method).uri(path);
    for (name, value) in &spec.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let reply = h.send(request.body(Body::empty()).unwrap()).await;
    let headers = reply
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    (
        reply.status.as_u16(),
        headers,
        String::from_utf8(reply.body).unwrap(),
    )
}

/// The project's GitHub polling core against this imitation: a baseline, free 304s while
/// nothing changes, then exactly the new changes, with the failing job's log for a failed
/// run.
#[tokio::test]
async fn the_polling_core_walks_the_imitation() {
    use edge_sync_shared::code_repos::github::{
        advanced, build_failure_context, read_page, request, Repository, Stream, StreamCursor,
    };
    use edge_sync_shared::{Secret, Timestamp};

    let h = harness(5);
    let token = Secret::new(h.github_token().await);
    let repo = Repository {
        api_base: "http://sandbox/github",
        full_name: DEMO_REPOSITORY,
    };
    let poll = |cursor: StreamCursor, stream: Stream| {
        let (h, repo, token) = (&h, &repo, &token);
        async move {
            let spec = request(repo, stream, &cursor, token, None);
            let (status, headers, body) = send_spec(h, &spec).await;
            let page = read_page(
                repo,
                stream,
                &cursor,
                status,
                &headers,
                &body,
                Timestamp::from_millis(h.clock.now_ms()),
            )
            .expect("page");
            let next = if page.not_modified {
                cursor.clone()
            } else {
                advanced(&cursor, page.etag.clone(), page.newest)
            };
            (page, next)
        }
    };
    let (baseline, cursor) = poll(StreamCursor::default(), Stream::Pulls).await;
    assert!(baseline.events.is_empty(), "the first walk is a baseline");
    assert_eq!(baseline.open_pulls.len(), 2);
    let (idle, cursor) = poll(cursor, Stream::Pulls).await;
    assert!(idle.not_modified, "nothing changed: a 304");
    let used = idle.rate.map(|r| r.remaining);

    h.clock.advance_ms(60_000);
    h.post_json(
        &format!("/__sandbox/github/repos/{DEMO_REPOSITORY}/pulls"),
        json!({"title": "Polled"}),
    )
    .await;
    let (changed, cursor) = poll(cursor, Stream::Pulls).await;
    let events: Vec<&str> = changed.events.iter().map(|e| e.event_type).collect();
    assert_eq!(events, vec!["repo.pr.opened"]);
    assert_eq!(
        changed.events[0].content_key,
        "github:edge-sync/demo-app:repo.pr.opened:6"
    );
    assert_eq!(
        changed.rate.map(|r| r.remaining),
        used.map(|u| u - 1),
        "only the 200 counted"
    );
    h.clock.advance_ms(60_000);
    h.post_json(
        &format!("/__sandbox/github/repos/{DEMO_REPOSITORY}/pulls/6/merge"),
        json!({}),
    )
    .await;
    let (merged, _) = poll(cursor, Stream::Pulls).await;
    assert_eq!(
        merged
            .events
            .iter()
            .map(|e| e.event_type)
            .collect::<Vec<_>>(),
        vec!["repo.pr.merged"]
    );

    let (_, runs_cursor) = poll(StreamCursor::default(), Stream::WorkflowRuns).await;
    h.clock.advance_ms(60_000);
    h.post_json(
        &format!("/__sandbox/github/repos/{DEMO_REPOSITORY}/runs"),
        json!({"conclusion": "failure"}),
    )
    .await;
    let (runs, _) = poll(runs_cursor, Stream::WorkflowRuns).await;
    assert_eq!(runs.events.len(), 1);
    assert_eq!(runs.events[0].event_type, "repo.build.failed");
    let run = runs.events[0].data.clone();
    let jobs = h
        .github_get(
            &format!("actions/runs/{}/jobs", run["id"]),
            token.expose(),
            None,
        )
        .await
        .json();
    let job_id = jobs["jobs"][0]["id"].as_u64().unwrap();
    let log = h
        .github_get(&format!("actions/jobs/{job_id}/logs"), token.expose(), None)
        .await;
    let context = build_failure_context(
        &run,
        &jobs,
        &[(job_id, String::from_utf8(log.body).unwrap())],
        20,
    );
    assert!(context["failing_jobs"][0]["log_tail"]
        .as_str()
        .unwrap()
        .contains("checkout::totals failed"));
}
