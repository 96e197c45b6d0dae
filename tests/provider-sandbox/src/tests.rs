//! HTTP-level tests: the router driven with `tower::ServiceExt::oneshot` on a manual clock,
//! plus one test through a real socket. Shopify's are in [`shopify`].
#![allow(clippy::unwrap_used)]

mod code_hosts;
mod github;
mod keap_hooks;
mod keap_records;
mod keap_writes;
mod openai;
mod receiver;
mod shopify;
mod shopify_bulk;
mod shopify_graphql;
mod shopify_webhooks;

use std::collections::HashSet;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::config::DEFAULT_KEAP_CLIENT_ID as CLIENT_ID;
use crate::config::DEFAULT_KEAP_CLIENT_SECRET as CLIENT_SECRET;
use crate::time::SEED_BASE_MS;
use crate::{build_app_with_clock, Clock, SandboxConfig, SharedState};

const REDIRECT: &str = "http://localhost:8787/oauth/keap/callback";

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

struct Harness {
    app: Router,
    state: SharedState,
    clock: Clock,
}

fn harness(contacts: usize) -> Harness {
    harness_with(SandboxConfig {
        keap_contacts: contacts,
        log_requests: false,
        ..SandboxConfig::default()
    })
}

fn harness_with(config: SandboxConfig) -> Harness {
    let clock = Clock::manual(SEED_BASE_MS + 3_600_000);
    let (app, state) = build_app_with_clock(config, clock.clone());
    Harness { app, state, clock }
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Harness {
    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str, bearer: Option<&str>) -> Reply {
        let mut request = Request::get(uri);
        if let Some(token) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    async fn post_json(&self, uri: &str, body: Value) -> Reply {
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(request).await
    }

    async fn post_form(&self, form: &str, authorization: Option<&str>) -> Reply {
        let mut request = Request::post("/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        self.send(request.body(Body::from(form.to_owned())).unwrap())
            .await
    }

    async fn authorize(&self, redirect_uri: &str, state: &str) -> Reply {
        self.get(
            &format!(
                "/app/oauth/authorize?client_id={CLIENT_ID}&redirect_uri={}&response_type=code&scope=full&state={}",
                enc(redirect_uri),
                enc(state)
            ),
            None,
        )
        .await
    }

    async fn exchange(&self, code: &str) -> Reply {
        self.post_form(
            &format!(
                "grant_type=authorization_code&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}&code={code}&redirect_uri={}",
                enc(REDIRECT)
            ),
            None,
        )
        .await
    }

    async fn refresh(&self, refresh_token: &str) -> Reply {
        self.post_form(
            &format!("grant_type=refresh_token&refresh_token={refresh_token}"),
            Some(&basic(CLIENT_ID, CLIENT_SECRET)),
        )
        .await
    }

    /// Authorize, take the code from the redirect, exchange it: (access, refresh).
    async fn connect(&self) -> (String, String) {
        let reply = self.authorize(REDIRECT, "s").await;
        assert_eq!(reply.status, StatusCode::FOUND);
        let location = url::Url::parse(reply.header("location").unwrap()).unwrap();
        let code = location
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .into_owned();
        let tokens = self.exchange(&code).await.json();
        (
            tokens["access_token"].as_str().unwrap().to_owned(),
            tokens["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    async fn counters(&self) -> Value {
        self.get("/__sandbox/counters", None).await.json()
    }
}

#[tokio::test]
async fn authorize_code_token_flow() {
    let h = harness(10);
    let reply = h
        .authorize("http://localhost:8787/cb?tenant=a b", "x y&z")
        .await;
    assert_eq!(reply.status, StatusCode::FOUND);
    let location = reply.header("location").unwrap();
    // The existing query stays (the URL parser normalises its space to %20).
    assert!(
        location.starts_with("http://localhost:8787/cb?tenant=a%20b&code="),
        "{location}"
    );
    assert!(location.ends_with("&state=x+y%26z"), "{location}");
    let url = url::Url::parse(location).unwrap();
    let code = url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    assert!(code.len() >= 32);

    // The code is bound to the redirect_uri it was issued for.
    let reply = h.exchange(&code).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"], "invalid_grant");

    let reply = h.authorize(REDIRECT, "s").await;
    let url = url::Url::parse(reply.header("location").unwrap()).unwrap();
    let code = url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let reply = h.exchange(&code).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let tokens = reply.json();
    assert_eq!(tokens["token_type"], "bearer");
    assert_eq!(tokens["expires_in"], 86_400);
    assert_eq!(tokens["scope"], "full|sandbox.infusionsoft.com");
    assert!(tokens["access_token"].as_str().unwrap().len() >= 32);
    assert!(tokens["refresh_token"].as_str().unwrap().len() >= 32);

    // Single use.
    let reply = h.exchange(&code).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"], "invalid_grant");

    let counters = h.counters().await;
    assert_eq!(counters["code_exchanges"], 1);
    assert_eq!(counters["code_exchange_failures"], 2);
    assert_eq!(counters["requests"]["keap.oauth.authorize"], 2);
    assert_eq!(counters["requests"]["keap.oauth.token"], 3);

    // The access token works.
    let access = tokens["access_token"].as_str().unwrap();
    let reply = h.get("/crm/rest/v2/contacts", Some(access)).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn authorize_errors() {
    let h = harness(1);
    let reply = h
        .get(
            &format!("/app/oauth/authorize?client_id=wrong&redirect_uri={}&response_type=code&scope=full", enc(REDIRECT)),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&reply.body).contains("Invalid client_id"));

    let reply = h
        .get(
            &format!("/app/oauth/authorize?client_id={CLIENT_ID}&redirect_uri=not%20a%20url&response_type=code&scope=full"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    for (extra, error) in [
        (
            "response_type=code&scope=full&approve=false",
            "access_denied",
        ),
        (
            "response_type=token&scope=full",
            "unsupported_response_type",
        ),
        ("response_type=code&scope=read", "invalid_scope"),
    ] {
        let reply = h
            .get(
                &format!(
                    "/app/oauth/authorize?client_id={CLIENT_ID}&redirect_uri={}&{extra}&state=st",
                    enc(REDIRECT)
                ),
                None,
            )
            .await;
        assert_eq!(reply.status, StatusCode::FOUND, "{extra}");
        assert_eq!(
            reply.header("location").unwrap(),
            format!("{REDIRECT}?error={error}&state=st")
        );
    }
}

#[tokio::test]
async fn refresh_tokens_rotate_and_are_single_use() {
    let h = harness(5);
    let (access1, refresh1) = h.connect().await;

    let reply = h.refresh(&refresh1).await;
    assert_eq!(reply.status, StatusCode::OK);
    let pair2 = reply.json();
    let refresh2 = pair2["refresh_token"].as_str().unwrap();
    let access2 = pair2["access_token"].as_str().unwrap();
    assert_ne!(refresh1, refresh2);
    assert_ne!(access1, access2);

    // Second use of the old refresh token: exactly Keap's answer.
    let reply = h.refresh(&refresh1).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.json(),
        json!({"error": "invalid_grant", "error_description": "Invalid refresh token"})
    );

    // The old access token keeps working until it expires.
    assert_eq!(
        h.get("/crm/rest/v2/contacts", Some(&access1)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.get("/crm/rest/v2/contacts", Some(access2)).await.status,
        StatusCode::OK
    );

    // Bad client credentials.
    let reply = h
        .post_form(
            &format!("grant_type=refresh_token&refresh_token={refresh2}"),
            Some(&basic(CLIENT_ID, "wrong")),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json(), json!({"error": "invalid_client"}));
    // Credentials in the form instead of the documented Basic header are refused too.
    let reply = h
        .post_form(
            &format!("grant_type=refresh_token&refresh_token={refresh2}&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // ...and neither attempt spent the refresh token.
    assert_eq!(h.refresh(refresh2).await.status, StatusCode::OK);

    let counters = h.counters().await;
    assert_eq!(counters["refreshes"], 2);
    assert_eq!(counters["refresh_failures"], 3);
    assert_eq!(counters["code_exchanges"], 1);
}

#[tokio::test]
async fn token_endpoint_rejects_malformed_requests() {
    let h = harness(1);
    let reply = h
        .send(
            Request::post("/token")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"], "invalid_request");
    let reply = h.post_form("grant_type=password", None).await;
    assert_eq!(reply.json()["error"], "unsupported_grant_type");
    let reply = h.post_form("", None).await;
    assert_eq!(reply.json()["error"], "invalid_request");
}

#[tokio::test]
async fn expired_access_token_is_401() {
    let h = harness(5);
    let reply = h
        .post_json("/__sandbox/config", json!({"access_token_ttl_secs": 60}))
        .await;
    assert_eq!(reply.json()["access_token_ttl_secs"], 60);
    let (access, refresh) = h.connect().await;
    assert_eq!(
        h.get("/crm/rest/v2/contacts", Some(&access)).await.status,
        StatusCode::OK
    );

    h.clock.advance_ms(60_000);
    let reply = h.get("/crm/rest/v2/contacts", Some(&access)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.json(),
        json!({"code": "401", "message": "Unauthorized", "status": "UNAUTHENTICATED", "details": []})
    );
    // Keap's quota headers come on errors too.
    assert!(reply.header("x-keap-product-throttle-available").is_some());

    // Refresh works; then expire-all kills the new access token at once.
    let pair = h.refresh(&refresh).await.json();
    let access2 = pair["access_token"].as_str().unwrap();
    assert_eq!(pair["expires_in"], 60);
    assert_eq!(
        h.get("/crm/rest/v2/contacts", Some(access2)).await.status,
        StatusCode::OK
    );
    let reply = h.post_json("/__sandbox/tokens/expire-all", json!({})).await;
    assert_eq!(reply.json()["expired_access_tokens"], 1);
    assert_eq!(
        h.get("/crm/rest/v2/contacts", Some(access2)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // No credential, or garbage, is 401 too.
    assert_eq!(
        h.get("/crm/rest/v2/contacts", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.get("/crm/rest/v2/contacts", Some("nope")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn revoke_all_breaks_refresh() {
    let h = harness(1);
    let (_, refresh) = h.connect().await;
    h.post_json("/__sandbox/tokens/revoke-all", json!({})).await;
    assert_eq!(h.refresh(&refresh).await.status, StatusCode::BAD_REQUEST);
    let stats = h.get("/__sandbox/tokens", None).await.json();
    assert_eq!(stats["keap"]["active_refresh_tokens"], 0);
}

#[tokio::test]
async fn api_key_is_accepted_when_configured() {
    let h = harness_with(SandboxConfig {
        keap_contacts: 3,
        keap_api_key: Some(crate::Secret::new("pat-123")),
        log_requests: false,
        ..SandboxConfig::default()
    });
    let with_key = |key: &str| {
        Request::get("/crm/rest/v2/contacts")
            .header("X-Keap-API-Key", key)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(h.send(with_key("pat-123")).await.status, StatusCode::OK);
    assert_eq!(
        h.send(with_key("pat-124")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn full_walk_over_http_with_page_size_1000() {
    let h = harness(2500);
    let (access, _) = h.connect().await;
    // Pile 1,200 contacts onto one update_time so a page boundary falls inside the run.
    let ids: Vec<u64> = (1..=2500).filter(|id| id % 2 == 1).take(1200).collect();
    let reply = h
        .post_json(
            "/__sandbox/keap/contacts/touch",
            json!({"ids": ids, "update_time": "2025-06-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(reply.json()["updated"], 1200);

    for order in [
        "",
        "&order_by=update_time%20asc",
        "&order_by=update_time+desc",
        "&order_by=create_time",
    ] {
        let mut seen = Vec::new();
        let mut uri = format!("/crm/rest/v2/contacts?page_size=1000{order}");
        let mut pages = 0;
        loop {
            let reply = h.get(&uri, Some(&access)).await;
            assert_eq!(reply.status, StatusCode::OK, "{uri}");
            assert_eq!(reply.header("x-keap-tenant-id"), Some("sandbox"));
            let page = reply.json();
            pages += 1;
            for contact in page["contacts"].as_array().unwrap() {
                seen.push(contact["id"].as_str().unwrap().to_owned());
            }
            let token = page["next_page_token"].as_str().unwrap();
            if token.is_empty() {
                break;
            }
            uri = format!(
                "/crm/rest/v2/contacts?page_size=1000{order}&page_token={}",
                enc(token)
            );
        }
        assert_eq!(pages, 3, "{order}");
        let unique: HashSet<_> = seen.iter().collect();
        assert_eq!(seen.len(), 2500, "{order}");
        assert_eq!(unique.len(), 2500, "{order}");
    }
}

#[tokio::test]
async fn list_parameter_errors_use_keap_error_shape() {
    let h = harness(3);
    let (access, _) = h.connect().await;
    for query in [
        "page_size=1001",
        "page_size=0",
        "page_token=zzz",
        "filter=shoe_size%3D%3D9",
    ] {
        let reply = h
            .get(&format!("/crm/rest/v2/contacts?{query}"), Some(&access))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        let body = reply.json();
        assert_eq!(body["code"], "400");
        assert_eq!(body["status"], "INVALID_ARGUMENT");
        assert!(body["details"].is_array());
    }
}

#[tokio::test]
async fn faults_fire_exactly_times() {
    let h = harness(3);
    let (access, _) = h.connect().await;
    let reply = h
        .post_json(
            "/__sandbox/faults",
            json!({"endpoint": "keap.contacts.list", "status": 500, "times": 3, "after": 1,
                   "headers": {"X-Test": "yes"}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json());
    let statuses = {
        let mut v = Vec::new();
        for _ in 0..6 {
            let reply = h.get("/crm/rest/v2/contacts", Some(&access)).await;
            if reply.status == StatusCode::INTERNAL_SERVER_ERROR {
                assert_eq!(reply.header("x-test"), Some("yes"));
                assert_eq!(reply.json()["status"], "INTERNAL");
            }
            v.push(reply.status.as_u16());
        }
        v
    };
    assert_eq!(statuses, [200, 500, 500, 500, 200, 200]);
    let counters = h.counters().await;
    assert_eq!(counters["requests"]["keap.contacts.list"], 6);
    assert_eq!(counters["statuses"]["keap.contacts.list"]["500"], 3);
    assert_eq!(h.get("/__sandbox/faults", None).await.json(), json!([]));

    // "Reject a refresh": a 400 fault on the token endpoint answers Keap's invalid_grant
    // without spending the refresh token, so the next attempt succeeds.
    let (_, refresh) = h.connect().await;
    h.post_json(
        "/__sandbox/faults",
        json!({"endpoint": "keap.oauth.token", "status": 400}),
    )
    .await;
    let reply = h.refresh(&refresh).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.json(),
        json!({"error": "invalid_grant", "error_description": "Invalid refresh token"})
    );
    assert_eq!(h.refresh(&refresh).await.status, StatusCode::OK);
    let counters = h.counters().await;
    assert_eq!(counters["statuses"]["keap.oauth.token"]["400"], 1);
    assert_eq!(counters["refreshes"], 1);

    // A latency-only fault delays the real answer.
    h.post_json(
        "/__sandbox/faults",
        json!({"endpoint": "keap.contacts.list", "latency_ms": 30}),
    )
    .await;
    let started = std::time::Instant::now();
    assert_eq!(
        h.get("/crm/rest/v2/contacts", Some(&access)).await.status,
        StatusCode::OK
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(30));

    // Clearing works.
    h.post_json(
        "/__sandbox/faults",
        json!({"endpoint": "keap.contacts.list", "status": 503, "times": 5}),
    )
    .await;
    let reply = h
        .send(
            Request::delete("/__sandbox/faults")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        h.get("/crm/rest/v2/contacts", Some(&access)).await.status,
        StatusCode::OK
    );

    // Unknown endpoint keys are refused.
    let reply = h
        .post_json(
            "/__sandbox/faults",
            json!({"endpoint": "keap.nope", "status": 500}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let h = harness(3);
    let (access, _) = h.connect().await;
    h.post_json("/__sandbox/config", json!({"rate_limit_per_minute": 2}))
        .await;
    // The manual clock sits on a minute boundary; move 20 s into the minute.
    h.clock.advance_ms(20_000);
    let first = h.get("/crm/rest/v2/contacts", Some(&access)).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("x-keap-product-throttle-limit"), Some("2"));
    assert_eq!(first.header("x-keap-product-throttle-available"), Some("1"));
    assert_eq!(
        h.get("/crm/rest/v2/contacts", Some(&access)).await.status,
        StatusCode::OK
    );
    let third = h.get("/crm/rest/v2/contacts", Some(&access)).await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.header("retry-after"), Some("40"));
    assert_eq!(third.header("x-keap-product-throttle-available"), Some("0"));
    assert_eq!(
        third.json(),
        json!({"code": "429", "message": "Quota Exceeded", "status": "Request Throttled"})
    );
    h.clock.advance_ms(40_000);
    assert_eq!(
        h.get("/crm/rest/v2/contacts", Some(&access)).await.status,
        StatusCode::OK
    );

    // Turning the limit off (null) lifts it.
    let reply = h
        .post_json("/__sandbox/config", json!({"rate_limit_per_minute": null}))
        .await;
    assert_eq!(reply.json()["rate_limit_per_minute"], Value::Null);
    for _ in 0..5 {
        assert_eq!(
            h.get("/crm/rest/v2/contacts", Some(&access)).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn injected_429_without_retry_after_still_carries_throttle_headers() {
    let h = harness(3);
    let (access, _) = h.connect().await;
    h.post_json(
        "/__sandbox/faults",
        json!({"endpoint": "keap.contacts.list", "status": 429}),
    )
    .await;
    let reply = h.get("/crm/rest/v2/contacts", Some(&access)).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.header("retry-after"), None);
    assert_eq!(reply.header("x-keap-product-throttle-available"), Some("0"));
    assert_eq!(reply.json()["message"], "Quota Exceeded");

    h.post_json(
        "/__sandbox/faults",
        json!({"endpoint": "keap.contacts.list", "status": 429, "headers": {"Retry-After": "2"}}),
    )
    .await;
    let reply = h.get("/crm/rest/v2/contacts", Some(&access)).await;
    assert_eq!(reply.header("retry-after"), Some("2"));
}

#[tokio::test]
async fn request_log_records_time_and_redacts() {
    let h = harness(3);
    let (access, _) = h.connect().await;
    let t0 = h.clock.now_ms();
    h.clock.advance_ms(5_000);
    h.get("/crm/rest/v2/contacts?page_size=2", Some(&access))
        .await;
    let log = h
        .get("/__sandbox/requests?endpoint=keap.contacts.list", None)
        .await
        .json();
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["at_ms"], t0 + 5_000);
    assert_eq!(
        log[0]["path_and_query"],
        "/crm/rest/v2/contacts?page_size=2"
    );
    assert_eq!(log[0]["status"], 200);

    let tokens = h
        .get("/__sandbox/requests?endpoint=keap.oauth.token", None)
        .await
        .json();
    assert_eq!(tokens.as_array().unwrap().len(), 1);
    let all = h
        .get(&format!("/__sandbox/requests?since_ms={}", t0 + 1), None)
        .await
        .json();
    assert_eq!(all.as_array().unwrap().len(), 1);

    h.post_json("/__sandbox/counters/reset", json!({})).await;
    let counters = h.counters().await;
    assert_eq!(counters["requests"]["keap.contacts.list"], 0);
    assert_eq!(counters["code_exchanges"], 0);
    assert_eq!(
        h.get("/__sandbox/requests?endpoint=nope", None)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn control_contacts_read_and_edit() {
    let h = harness(5);
    let (access, _) = h.connect().await;
    let reply = h.get("/__sandbox/keap/contacts/2", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let before = reply.json();
    assert_eq!(before["id"], "2");
    let via_api = h.get("/crm/rest/v2/contacts/2", Some(&access)).await.json();
    assert_eq!(via_api, before);

    let reply = h
        .send(
            Request::patch("/__sandbox/keap/contacts/2")
                .body(Body::from(r#"{"given_name":"Ada"}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let after = reply.json();
    assert_eq!(after["given_name"], "Ada");
    assert_eq!(
        after["update_time"],
        crate::time::format_ms(h.clock.now_ms())
    );

    // An incremental query from just before now finds exactly that contact.
    let since = crate::time::format_ms(h.clock.now_ms() - 1);
    let page = h
        .get(
            &format!(
                "/crm/rest/v2/contacts?filter=start_update_time%3D%3D{}",
                enc(&since)
            ),
            Some(&access),
        )
        .await
        .json();
    assert_eq!(page["contacts"].as_array().unwrap().len(), 1);
    assert_eq!(page["contacts"][0]["given_name"], "Ada");
    assert_eq!(page["next_page_token"], "");

    let reply = h
        .post_json("/__sandbox/keap/contacts", json!({"given_name": "New"}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.json()["id"], "6");
    let reply = h
        .send(
            Request::delete("/__sandbox/keap/contacts/6")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get("/__sandbox/keap/contacts/6", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get("/crm/rest/v2/contacts/6", Some(&access)).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn unknown_paths_are_keap_404() {
    let h = harness(1);
    let reply = h.get("/crm/rest/v2/nothing", None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["status"], "NOT_FOUND");
    assert_eq!(
        h.get("/__sandbox/health", None).await.json(),
        json!({"status": "ok"})
    );
}

#[tokio::test]
async fn state_file_keeps_tokens_across_restarts() {
    let path = std::env::temp_dir().join(format!(
        "provider-sandbox-state-{}-{}.json",
        std::process::id(),
        rand::random::<u64>()
    ));
    let config = SandboxConfig {
        keap_contacts: 1,
        state_file: Some(path.clone()),
        log_requests: false,
        ..SandboxConfig::default()
    };
    let first = harness_with(config.clone());
    let pair = first
        .post_json("/__sandbox/keap/tokens", json!({}))
        .await
        .json();
    let access = pair["access_token"].as_str().unwrap();
    let refresh = pair["refresh_token"].as_str().unwrap();

    let second = harness_with(config);
    assert!(second.state.restore().unwrap());
    assert_eq!(
        second
            .get("/crm/rest/v2/contacts", Some(access))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(second.refresh(refresh).await.status, StatusCode::OK);
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn state_file_from_before_hooks_still_loads() {
    let path = std::env::temp_dir().join(format!(
        "provider-sandbox-old-state-{}-{}.json",
        std::process::id(),
        rand::random::<u64>()
    ));
    let config = SandboxConfig {
        keap_contacts: 1,
        state_file: Some(path.clone()),
        log_requests: false,
        ..SandboxConfig::default()
    };
    let first = harness_with(config.clone());
    let pair = first
        .post_json("/__sandbox/keap/tokens", json!({}))
        .await
        .json();
    let access = pair["access_token"].as_str().unwrap();
    // A file written before hooks and subscriptions were kept has neither field.
    let mut file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let object = file.as_object_mut().unwrap();
    assert!(object.remove("keap_hooks").is_some());
    assert!(object.remove("shopify_webhooks").is_some());
    std::fs::write(&path, file.to_string()).unwrap();

    let second = harness_with(config);
    assert!(second.state.restore().unwrap());
    assert_eq!(
        second
            .get("/crm/rest/v2/contacts", Some(access))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        second.get("/crm/rest/v1/hooks", Some(access)).await.json(),
        json!([])
    );
    assert_eq!(
        second.get("/__sandbox/shopify/webhooks", None).await.json(),
        json!({"shops": {}})
    );
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn serves_over_a_real_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let sandbox = crate::serve(SandboxConfig {
        keap_contacts: 1,
        log_requests: false,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    assert!(sandbox.base_url().starts_with("http://127.0.0.1:"));
    let mut stream = tokio::net::TcpStream::connect(sandbox.addr).await.unwrap();
    stream
        .write_all(b"GET /__sandbox/health HTTP/1.1\r\nHost: sandbox\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(r#"{"status":"ok"}"#), "{response}");
    sandbox.shutdown().await.unwrap();
}
