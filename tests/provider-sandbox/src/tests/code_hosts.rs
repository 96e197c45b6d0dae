//! GitLab's and Bitbucket's imitations driven by the project's host-generic repository
//! watcher (`edge_sync_shared::code_repos::watch`): a baseline walk reports nothing, a
//! change made through the controls is exactly one event whose content key equals its
//! webhook's, paging follows each host's own scheme, the stale scan finds the idle work,
//! and unknown tokens and rate limits are refused as the hosts document.

use serde_json::{json, Value};

use super::github::send_spec;
use super::{harness, Harness};
use edge_sync_shared::code_repos::connection::RepoHost;
use edge_sync_shared::code_repos::poll::StreamCursor;
use edge_sync_shared::code_repos::watch::{
    read_stale_scan, stale_scan_request, RepoStream, StaleScan, StreamWalk, WorkKind,
};
use edge_sync_shared::sync::PageError;
use edge_sync_shared::{Secret, Timestamp};

const REPO: &str = "edge-sync/demo-app";

fn api_base(host: RepoHost) -> &'static str {
    match host {
        RepoHost::GitLab => "http://sandbox/gitlab/api/v4",
        RepoHost::Bitbucket => "http://sandbox/bitbucket/2.0",
        RepoHost::GitHub => "http://sandbox/github",
    }
}

async fn issue_token(h: &Harness, host: RepoHost) -> Secret {
    let reply = h
        .post_json(&format!("/__sandbox/{}/tokens", host.as_str()), json!({}))
        .await;
    Secret::new(reply.json()["token"].as_str().unwrap().to_owned())
}

/// Walks `stream` from `cursor` to its end (or the page limit): the walk.
async fn walk(
    h: &Harness,
    host: RepoHost,
    stream: RepoStream,
    cursor: StreamCursor,
    token: &Secret,
) -> Result<StreamWalk, PageError> {
    let mut walk = StreamWalk::new(cursor);
    let mut url = None;
    loop {
        let spec = stream.request(api_base(host), REPO, walk.cursor(), token, url.as_deref());
        let (status, headers, body) = send_spec(h, &spec).await;
        let page = stream.read_page(
            api_base(host),
            REPO,
            walk.cursor(),
            &spec.url,
            status,
            &headers,
            &body,
            Timestamp::from_millis(h.clock.now_ms()),
        )?;
        match walk.take(page) {
            Some(next) => url = Some(next),
            None => return Ok(walk),
        }
    }
}

#[tokio::test]
async fn gitlab_and_bitbucket_are_polled_like_github() {
    let h = harness(5);
    for (host, control, open) in [
        (RepoHost::GitLab, "gitlab/projects", "merge_requests"),
        (
            RepoHost::Bitbucket,
            "bitbucket/repositories",
            "pullrequests",
        ),
    ] {
        let token = issue_token(&h, host).await;
        let pulls = RepoStream::all(host)[0];
        let baseline = walk(&h, host, pulls, StreamCursor::default(), &token)
            .await
            .expect("baseline");
        assert!(baseline.events.is_empty(), "{host:?}: a baseline");
        let cursor = baseline.next_cursor();
        assert!(cursor.seen_until.is_some(), "{host:?}: {cursor:?}");

        h.clock.advance_ms(120_000);
        let made = h
            .post_json(
                &format!("/__sandbox/{control}/{REPO}/{open}"),
                json!({"title": "feat: polled"}),
            )
            .await
            .json();
        let after = walk(&h, host, pulls, cursor.clone(), &token)
            .await
            .expect("walk");
        let opened: Vec<_> = after
            .events
            .iter()
            .filter(|e| e.event_type == "repo.pr.opened")
            .collect();
        assert_eq!(opened.len(), 1, "{host:?}: {:?}", after.events);
        let number = made
            .get("iid")
            .or_else(|| made.get("id"))
            .and_then(Value::as_u64);
        assert_eq!(
            opened[0].content_key,
            format!(
                "{}:{REPO}:repo.pr.opened:{}",
                host.as_str(),
                number.unwrap()
            ),
            "{host:?}: the webhook's key"
        );

        // The oldest-updated open work first: the 30-day-idle one.
        let scan_spec = stale_scan_request(
            host,
            api_base(host),
            REPO,
            WorkKind::PullRequests,
            &StaleScan::default(),
            &token,
        );
        let (status, headers, body) = send_spec(&h, &scan_spec).await;
        let (scan, _) = read_stale_scan(
            host,
            api_base(host),
            REPO,
            WorkKind::PullRequests,
            &StaleScan::default(),
            status,
            &headers,
            &body,
            Timestamp::from_millis(h.clock.now_ms()),
        )
        .expect("scan");
        assert_eq!(scan.pulls.first().map(|p| p.number), Some(2), "{host:?}");

        let refused = walk(
            &h,
            host,
            pulls,
            StreamCursor::default(),
            &Secret::new("not-issued".to_owned()),
        )
        .await;
        assert_eq!(refused.err(), Some(PageError::Unauthorized), "{host:?}");
    }
}

#[tokio::test]
async fn pages_follow_each_hosts_scheme_and_limits_are_retryable() {
    let h = harness(5);
    // GitLab: `X-Next-Page` on the same URL.
    let token = issue_token(&h, RepoHost::GitLab).await;
    let first = h
        .send(
            axum::http::Request::get(format!(
                "/gitlab/api/v4/projects/{}/merge_requests?per_page=2",
                REPO.replace('/', "%2F")
            ))
            .header("PRIVATE-TOKEN", token.expose())
            .body(axum::body::Body::empty())
            .unwrap(),
        )
        .await;
    assert_eq!(first.header("x-next-page"), Some("2"));
    assert_eq!(first.header("x-total"), Some("3"));
    assert!(first.header("ratelimit-remaining").is_some());
    h.post_json(
        "/__sandbox/faults",
        json!({"endpoint": "gitlab.read", "status": 429, "headers": {"retry-after": "30"}}),
    )
    .await;
    let limited = walk(
        &h,
        RepoHost::GitLab,
        RepoStream::all(RepoHost::GitLab)[0],
        StreamCursor::default(),
        &token,
    )
    .await;
    assert_eq!(
        limited.err(),
        Some(PageError::RateLimited {
            retry_after_ms: Some(30_000)
        })
    );

    // Bitbucket: the body's `next`.
    let token = issue_token(&h, RepoHost::Bitbucket).await;
    let page = h
        .send(
            axum::http::Request::get(format!(
                "/bitbucket/2.0/repositories/{REPO}/pullrequests?state=OPEN&state=MERGED&pagelen=2&sort=-updated_on"
            ))
            .header("Authorization", format!("Bearer {}", token.expose()))
            .body(axum::body::Body::empty())
            .unwrap(),
        )
        .await
        .json();
    assert_eq!(page["size"], 3);
    assert!(page["next"].as_str().unwrap().contains("page=2"), "{page}");
}
