//! Code repositories end to end, against the sandbox's GitHub REST API: a repository
//! connected with a token gets a webhook that really delivers signed events to
//! webhook-handler, the user's loop polls it (conditionally: an idle poll is only 304s),
//! and both paths land in the connection's own event store, so one change is one event.

use std::time::Duration;

use edge_sync_e2e::{
    flows::{db_count, operator, sandbox_control},
    Stack, StackOptions,
};
use serde_json::{json, Value};

const REPO: &str = "edge-sync/demo-app";
const USER: &str = "u-dev";

fn options() -> StackOptions {
    StackOptions {
        vars: vec![("EVENT_LOOP_MIN_INTERVAL_SECS".into(), "1".into())],
        ..StackOptions::default()
    }
}

/// A token the sandbox's GitHub accepts.
async fn github_token(stack: &Stack) -> String {
    sandbox_control(stack, "github/tokens", json!({})).await["token"]
        .as_str()
        .expect("token")
        .to_owned()
}

/// A GET of the sandbox's GitHub API with `token`: (status, headers, JSON body).
async fn github_get(
    stack: &Stack,
    token: &str,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = stack
        .http
        .get(format!("{}/github{path}", stack.sandbox))
        .bearer_auth(token)
        .send()
        .await
        .expect("GitHub GET");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

/// `GitHub`'s count of requests `token` used this hour (reading it costs one).
async fn requests_used(stack: &Stack, token: &str) -> u64 {
    let (_, headers, _) = github_get(stack, token, &format!("/repos/{REPO}/pulls")).await;
    headers["x-ratelimit-used"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("x-ratelimit-used")
}

fn events(event_type: &str, extra: &str) -> String {
    format!(
        "SELECT count(*) FROM background_events WHERE user_id = '{USER}' AND event_type = '{event_type}' {extra}"
    )
}

/// Waits until `sql` counts `expected` (the loop ticks every second).
async fn until(stack: &Stack, sql: &str, expected: i64) {
    for _ in 0..150 {
        if db_count(stack, sql).await == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "`{sql}` never counted {expected} (last {})",
        db_count(stack, sql).await
    );
}

/// Starts (`start`) or stops the user's loop: the repositories watcher alone, every second,
/// stale after 7 days.
async fn set_loop(stack: &Stack, start: bool) {
    let (path, body) = if start {
        (
            "start",
            Some(json!({"interval_secs": 1, "watchers": ["repositories"], "stale_after_days": 7})),
        )
    } else {
        ("stop", None)
    };
    let (status, answer) = operator(
        stack,
        "POST",
        &format!("/coordinator/event-loop/{USER}/{path}"),
        body,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}

/// The user's loop after `n` more ticks than now.
async fn ticks(stack: &Stack, n: u64) -> Value {
    let count = |s: &Value| s["ticks"].as_u64().unwrap_or_default();
    let (_, start) = operator(
        stack,
        "GET",
        &format!("/coordinator/event-loop/{USER}"),
        None,
    )
    .await;
    for _ in 0..100 {
        let (_, status) = operator(
            stack,
            "GET",
            &format!("/coordinator/event-loop/{USER}"),
            None,
        )
        .await;
        if count(&status) >= count(&start) + n {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the loop did not tick {n} more times");
}

/// Proves: connecting checks the request and the token (400 bad body or refused token,
/// 404 unknown repository, 401 without the operator token), registers a webhook at the
/// host that the listing shows without any secret; the loop's first poll is a baseline that
/// reports only work idle past the threshold (`repo.pr.stale` for the 30-day-old pull
/// request, `issue.stale` for the 40-day-old issue), each once however many polls follow;
/// an idle poll costs no rate limit (only 304s); a pull request opened with the webhook in
/// place is delivered AND polled yet stored once; with the webhook gone, polling alone
/// finds a new pull request and a failed CI run, whose event carries the failing job's log
/// tail into the agent's prompt; the API shows recent pull requests, one pull request and
/// a branch's build status; release notes list exactly the pull requests merged since the
/// last release; deleting the connection removes it.
#[tokio::test]
async fn repositories_are_watched_by_webhook_and_polling_without_duplicates() {
    let stack = Stack::start_with(options()).await;
    let token = github_token(&stack).await;
    let base = format!("{}/github", stack.sandbox);
    let connect = |body: Value| {
        let stack = &stack;
        async move { operator(stack, "POST", "/coordinator/connections", Some(body)).await }
    };

    // Refusals, none of which stores anything.
    let (status, _) = connect(
        json!({"provider": "github", "user_id": USER, "repository": "nope",
        "access_token": token, "base_url": base}),
    )
    .await;
    assert_eq!(status, 400, "a repository that is not owner/name");
    let (status, body) = connect(
        json!({"provider": "github", "user_id": USER, "repository": REPO,
        "access_token": "ghp_not_issued_by_the_host", "base_url": base}),
    )
    .await;
    assert_eq!(status, 400, "a token the host refuses: {body}");
    let (status, _) = connect(json!({"provider": "github", "user_id": USER,
        "repository": "edge-sync/missing", "access_token": token, "base_url": base}))
    .await;
    assert_eq!(status, 404, "a repository the host does not know");
    let anonymous = stack
        .http
        .post(format!("{}/coordinator/connections", stack.coordinator))
        .json(&json!({"provider": "github"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(anonymous.status().as_u16(), 401);

    let (status, connected) = connect(json!({"provider": "github", "user_id": USER,
        "repository": REPO, "access_token": token, "base_url": base}))
    .await;
    assert_eq!(status, 201, "{connected}");
    let id = connected["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("github_"), "{id}");
    assert!(connected["webhook_id"].is_string(), "{connected}");
    let (_, listed) = operator(&stack, "GET", "/coordinator/connections", None).await;
    let listing = listed.to_string();
    assert!(listing.contains(&id), "{listing}");
    assert!(!listing.contains(&token), "no token in the listing");
    let (_, _, hooks) = github_get(&stack, &token, &format!("/repos/{REPO}/hooks")).await;
    let hook = &hooks[0];
    assert!(
        hook["config"]["url"]
            .as_str()
            .unwrap_or_default()
            .ends_with(&format!("/webhooks/code-repo/{id}")),
        "{hooks}"
    );

    // The loop: a baseline, then only what is new; stale work once.
    set_loop(&stack, true).await;
    until(
        &stack,
        &events("repo.pr.stale", "AND event_data->>'number' = '2'"),
        1,
    )
    .await;
    until(
        &stack,
        &events("issue.stale", "AND event_data->>'number' = '4'"),
        1,
    )
    .await;
    ticks(&stack, 2).await;
    assert_eq!(
        db_count(&stack, &events("repo.pr.opened", "")).await,
        0,
        "the first poll is a baseline"
    );

    // An idle poll costs nothing against the rate limit: only 304s.
    let before = requests_used(&stack, &token).await;
    let status = ticks(&stack, 3).await;
    assert!(
        status["watchers"]["repositories"]["last_error"].is_null(),
        "{status}"
    );
    let after = requests_used(&stack, &token).await;
    assert_eq!(after, before + 1, "only our own probe counted");

    // With the webhook: delivered (while the loop is stopped, so the webhook alone stores
    // it), then polled too once the loop runs again: stored once.
    set_loop(&stack, false).await;
    let opened = sandbox_control(
        &stack,
        &format!("github/repos/{REPO}/pulls"),
        json!({"title": "feat: wishlist"}),
    )
    .await;
    let number = opened["number"].as_u64().expect("number");
    let this_pr = |n: u64| format!("AND event_data->>'number' = '{n}'");
    until(&stack, &events("repo.pr.opened", &this_pr(number)), 1).await;
    assert_eq!(
        db_count(
            &stack,
            &events(
                "repo.pr.opened",
                "AND dedup_key NOT LIKE '%:repo.pr.opened:%'"
            )
        )
        .await,
        1,
        "stored from the webhook delivery (its delivery id), not by a poll"
    );
    let (status, polled_now) = operator(
        &stack,
        "POST",
        &format!("/coordinator/connections/{id}/poll"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{polled_now}");
    assert_eq!(
        (
            polled_now["stored"].as_u64(),
            polled_now["duplicates"].as_u64()
        ),
        (Some(0), Some(1)),
        "the poll found the same pull request: a duplicate"
    );
    set_loop(&stack, true).await;
    ticks(&stack, 2).await;
    assert_eq!(
        db_count(&stack, &events("repo.pr.opened", "")).await,
        1,
        "the webhook and the poll saw one change"
    );

    // The webhook removed at the host: polling alone.
    let removed = stack
        .http
        .delete(format!(
            "{}/github/repos/{REPO}/hooks/{}",
            stack.sandbox, hook["id"]
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("DELETE hook");
    assert_eq!(removed.status().as_u16(), 204);
    let polled = sandbox_control(
        &stack,
        &format!("github/repos/{REPO}/pulls"),
        json!({"title": "fix: totals"}),
    )
    .await;
    let polled_number = polled["number"].as_u64().expect("number");
    until(
        &stack,
        &events("repo.pr.opened", &this_pr(polled_number)),
        1,
    )
    .await;
    sandbox_control(
        &stack,
        &format!("github/repos/{REPO}/runs"),
        json!({"conclusion": "failure"}),
    )
    .await;
    until(&stack, &events("repo.build.failed", ""), 1).await;
    let tail = db_count(
        &stack,
        &events(
            "repo.build.failed",
            "AND event_data->'failing_jobs'->0->>'log_tail' LIKE '%checkout::totals failed%'",
        ),
    )
    .await;
    assert_eq!(tail, 1, "the failing job's log tail is in the event");
    until(
        &stack,
        "SELECT count(*) FROM agent_runs r JOIN background_events e ON e.id = r.event_id \
         WHERE e.event_type = 'repo.build.failed' AND r.prompt LIKE '%checkout::totals failed%'",
        1,
    )
    .await;
    assert_eq!(
        db_count(&stack, &events("repo.pr.stale", "")).await,
        1,
        "stale work is reported once per period"
    );

    // The API.
    let (status, pulls) = operator(
        &stack,
        "GET",
        &format!("/coordinator/connections/{id}/pulls"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{pulls}");
    let numbers: Vec<u64> = pulls["pull_requests"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["number"].as_u64())
        .collect();
    assert!(
        numbers.contains(&polled_number) && numbers.contains(&1),
        "{numbers:?}"
    );
    let (status, one) = operator(
        &stack,
        "GET",
        &format!("/coordinator/connections/{id}/pulls/1"),
        None,
    )
    .await;
    assert_eq!(
        (status, one["state"].as_str()),
        (200, Some("merged")),
        "{one}"
    );
    let (status, _) = operator(
        &stack,
        "GET",
        &format!("/coordinator/connections/{id}/pulls/999"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, build) = operator(
        &stack,
        "GET",
        &format!("/coordinator/connections/{id}/builds/main"),
        None,
    )
    .await;
    assert_eq!(
        (status, build["state"].as_str()),
        (200, Some("failure")),
        "{build}"
    );

    // Release notes: exactly what was merged since the last release.
    sandbox_control(
        &stack,
        &format!("github/repos/{REPO}/pulls/{number}/merge"),
        json!({}),
    )
    .await;
    sandbox_control(&stack, "clock/advance", json!({"ms": 60_000})).await;
    sandbox_control(
        &stack,
        &format!("github/repos/{REPO}/releases"),
        json!({"tag_name": "v1.1.0"}),
    )
    .await;
    sandbox_control(&stack, "clock/advance", json!({"ms": 60_000})).await;
    sandbox_control(
        &stack,
        &format!("github/repos/{REPO}/pulls/{polled_number}/merge"),
        json!({}),
    )
    .await;
    let (status, notes) = operator(
        &stack,
        "POST",
        &format!("/coordinator/connections/{id}/artifacts/release-notes"),
        Some(json!({"version": "v1.2.0"})),
    )
    .await;
    assert_eq!(status, 200, "{notes}");
    assert_eq!(notes["since_tag"], "v1.1.0");
    let markdown = notes["artifact"]["markdown"].as_str().expect("markdown");
    assert!(
        markdown.contains(&format!("#{polled_number}")),
        "{markdown}"
    );
    assert!(
        !markdown.contains(&format!("#{number}]")),
        "merged before the tag: {markdown}"
    );
    assert!(
        !markdown.contains("gift cards"),
        "merged before the tag: {markdown}"
    );
    assert!(notes["artifact"]["text"].is_string());
    let (status, rfc) = operator(
        &stack,
        "POST",
        &format!("/coordinator/connections/{id}/artifacts/rfc"),
        Some(json!({"number": 3})),
    )
    .await;
    assert_eq!(status, 200, "{rfc}");
    assert!(rfc["artifact"]["markdown"]
        .as_str()
        .unwrap_or_default()
        .contains("Checkout is slow on mobile"));

    // Deleting the connection.
    let (status, _) = operator(
        &stack,
        "DELETE",
        &format!("/coordinator/connections/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = operator(
        &stack,
        "GET",
        &format!("/coordinator/connections/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

/// One non-GitHub host as the second scenario drives it.
struct Host {
    provider: &'static str,
    /// The sandbox's API base under its URL.
    api: &'static str,
    /// The sandbox control path of the demo repository.
    control: &'static str,
    /// Opens a pull/merge request.
    open_pull: &'static str,
    /// Finishes a failed CI run.
    fail_build: (&'static str, &'static str, &'static str),
}

const GITLAB: Host = Host {
    provider: "gitlab",
    api: "gitlab/api/v4",
    control: "gitlab/projects/edge-sync/demo-app",
    open_pull: "merge_requests",
    fail_build: ("pipelines", "status", "failed"),
};

const BITBUCKET: Host = Host {
    provider: "bitbucket",
    api: "bitbucket/2.0",
    control: "bitbucket/repositories/edge-sync/demo-app",
    open_pull: "pullrequests",
    fail_build: ("pipelines", "result", "FAILED"),
};

fn host_events(host: &Host, event_type: &str, extra: &str) -> String {
    events(
        event_type,
        &format!("AND source = '{}' {extra}", host.provider),
    )
}

/// Proves, for GitLab and Bitbucket as the sandbox imitates them: connecting registers the
/// project's or repository's webhook; the loop's baseline reports only the work idle past
/// the threshold (the 30-day-old merge/pull request, the 40-day-old issue), once; a new
/// merge/pull request is delivered by the host's webhook (the loop stopped) and found by
/// polling once the loop runs again, yet stored once; a failed pipeline likewise is one
/// `repo.build.failed`, and on GitLab, whose webhook names no job, the failing job's log
/// tail is fetched from the host for the agent's prompt;
/// the build status of `main` is `failure`; release notes start at the last release or tag.
#[tokio::test]
async fn gitlab_and_bitbucket_repositories_are_watched_too() {
    let stack = Stack::start_with(options()).await;
    let mut ids = Vec::new();
    for host in [&GITLAB, &BITBUCKET] {
        let token = sandbox_control(&stack, &format!("{}/tokens", host.provider), json!({})).await
            ["token"]
            .as_str()
            .expect("token")
            .to_owned();
        let (status, connected) = operator(
            &stack,
            "POST",
            "/coordinator/connections",
            Some(json!({"provider": host.provider, "user_id": USER, "repository": REPO,
                        "access_token": token, "base_url": format!("{}/{}", stack.sandbox, host.api)})),
        )
        .await;
        assert_eq!(status, 201, "{}: {connected}", host.provider);
        assert!(
            connected["webhook_id"].is_string(),
            "{}: {connected}",
            host.provider
        );
        ids.push(connected["id"].as_str().expect("id").to_owned());
    }
    set_loop(&stack, true).await;
    for host in [&GITLAB, &BITBUCKET] {
        until(
            &stack,
            &host_events(host, "repo.pr.stale", "AND event_data->>'number' = '2'"),
            1,
        )
        .await;
        until(
            &stack,
            &host_events(host, "issue.stale", "AND event_data->>'number' = '2'"),
            1,
        )
        .await;
    }
    ticks(&stack, 2).await;
    for host in [&GITLAB, &BITBUCKET] {
        assert_eq!(
            db_count(&stack, &host_events(host, "repo.pr.opened", "")).await,
            0,
            "{}: the first poll is a baseline",
            host.provider
        );
        assert_eq!(
            db_count(&stack, &host_events(host, "repo.pr.stale", "")).await,
            1,
            "{}: only the idle merge/pull request, once",
            host.provider
        );
    }

    // The loop stopped: the webhooks alone deliver what follows.
    set_loop(&stack, false).await;
    for host in [&GITLAB, &BITBUCKET] {
        sandbox_control(
            &stack,
            &format!("{}/{}", host.control, host.open_pull),
            json!({"title": "feat: wishlist"}),
        )
        .await;
        let (path, field, value) = host.fail_build;
        sandbox_control(
            &stack,
            &format!("{}/{path}", host.control),
            json!({ field: value }),
        )
        .await;
    }
    for host in [&GITLAB, &BITBUCKET] {
        until(&stack, &host_events(host, "repo.pr.opened", ""), 1).await;
        until(&stack, &host_events(host, "repo.build.failed", ""), 1).await;
    }
    // The webhook's pipeline event names no job: the failing job's log tail was fetched
    // from GitLab for the prompt (and kept in the event).
    until(
        &stack,
        "SELECT count(*) FROM agent_runs r JOIN background_events e ON e.id = r.event_id \
         WHERE e.source = 'gitlab' AND e.event_type = 'repo.build.failed' \
           AND r.prompt LIKE '%checkout::totals failed%' \
           AND e.event_data->'failing_jobs'->0->>'name' = 'test'",
        1,
    )
    .await;
    set_loop(&stack, true).await;
    ticks(&stack, 3).await;
    for host in [&GITLAB, &BITBUCKET] {
        assert_eq!(
            db_count(&stack, &host_events(host, "repo.pr.opened", "")).await,
            1,
            "{}: webhook and poll, one event",
            host.provider
        );
        assert_eq!(
            db_count(&stack, &host_events(host, "repo.build.failed", "")).await,
            1,
            "{}: webhook and poll, one event",
            host.provider
        );
    }

    for (id, since) in ids.iter().zip(["v1.0.0", "v1.0.0"]) {
        let (status, build) = operator(
            &stack,
            "GET",
            &format!("/coordinator/connections/{id}/builds/main"),
            None,
        )
        .await;
        assert_eq!(
            (status, build["state"].as_str()),
            (200, Some("failure")),
            "{build}"
        );
        let (status, notes) = operator(
            &stack,
            "POST",
            &format!("/coordinator/connections/{id}/artifacts/release-notes"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{notes}");
        assert_eq!(notes["since_tag"], since, "{notes}");
        let markdown = notes["artifact"]["markdown"].as_str().unwrap_or_default();
        assert!(
            markdown.contains("gift cards"),
            "merged after v1.0.0: {markdown}"
        );
    }
}
