//! Keap opportunities, orders and tasks over HTTP, and the generic mutation controls.

use std::collections::HashSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};

use super::{enc, harness_with, Harness, Reply};
use crate::time::{format_ms, parse_ms, SEED_BASE_MS};
use crate::SandboxConfig;

fn records_harness(count: usize) -> Harness {
    harness_with(SandboxConfig {
        keap_contacts: 50,
        keap_opportunities: count,
        keap_orders: count,
        keap_tasks: count,
        log_requests: false,
        ..SandboxConfig::default()
    })
}

/// (resource, update-time field, order_by name for it)
const RESOURCES: [(&str, &str, &str); 3] = [
    ("opportunities", "last_updated_time", "update_time"),
    ("orders", "modification_time", "modification_time"),
    ("tasks", "modification_time", "update_time"),
];

impl Harness {
    /// Follows `next_page_token` from `first`; returns every record and the page count.
    async fn walk_records(&self, resource: &str, first: &str, token: &str) -> (Vec<Value>, usize) {
        let mut records = Vec::new();
        let mut pages = 0;
        let mut query = first.to_owned();
        loop {
            let reply = self
                .get(&format!("/crm/rest/v2/{resource}?{query}"), Some(token))
                .await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{resource}?{query}: {:?}",
                reply.json()
            );
            assert!(reply.header("x-keap-product-throttle-available").is_some());
            assert!(reply.header("x-keap-tenant-id").is_some());
            let body = reply.json();
            pages += 1;
            records.extend(body[resource].as_array().unwrap().iter().cloned());
            let next = body["next_page_token"].as_str().unwrap();
            if next.is_empty() {
                return (records, pages);
            }
            let page_size = first
                .split('&')
                .find_map(|p| p.strip_prefix("page_size="))
                .unwrap_or("50");
            query = format!("page_size={page_size}&page_token={}", enc(next));
        }
    }

    async fn delete(&self, uri: &str) -> Reply {
        self.send(Request::delete(uri).body(Body::empty()).unwrap())
            .await
    }
}

fn ids(records: &[Value]) -> Vec<u64> {
    records
        .iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

fn assert_each_once(ids: &[u64], expected: usize) {
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicates");
    assert_eq!(ids.len(), expected);
}

#[tokio::test]
async fn lists_walk_every_record_once_across_equal_timestamps() {
    let h = records_harness(400);
    let (access, _) = h.connect().await;
    for (resource, field, order) in RESOURCES {
        // 150 records on one instant: many small pages end inside the run.
        let shared: Vec<u64> = (1..=400).filter(|id| id % 8 < 3).collect();
        let reply = h
            .post_json(
                &format!("/__sandbox/keap/{resource}/touch"),
                json!({"ids": shared, "update_time": "2025-07-01T12:00:00Z"}),
            )
            .await;
        assert_eq!(reply.json()["updated"], 150, "{resource}");
        for page_size in [1000, 7] {
            for dir in ["asc", "desc"] {
                let (records, pages) = h
                    .walk_records(
                        resource,
                        &format!("page_size={page_size}&order_by={order}%20{dir}"),
                        &access,
                    )
                    .await;
                assert_each_once(&ids(&records), 400);
                assert_eq!(pages, 400usize.div_ceil(page_size), "{resource}");
                let keys: Vec<(i64, u64)> = records
                    .iter()
                    .zip(ids(&records))
                    .map(|(r, id)| (parse_ms(r[field].as_str().unwrap()).unwrap(), id))
                    .collect();
                let ordered = if dir == "asc" {
                    keys.windows(2).all(|w| w[0] < w[1])
                } else {
                    keys.windows(2).all(|w| w[0] > w[1])
                };
                assert!(ordered, "{resource} {order} {dir} page_size={page_size}");
            }
        }
        let (records, _) = h
            .walk_records(resource, "page_size=1000&order_by=id", &access)
            .await;
        assert_eq!(ids(&records), (1..=400).collect::<Vec<u64>>());
    }
}

#[tokio::test]
async fn orders_and_tasks_filter_on_modification_time_inclusively() {
    let h = records_harness(300);
    let (access, _) = h.connect().await;
    let start = "2025-06-01T00:00:00.000Z";
    let end = "2025-09-01T00:00:00.000Z";
    for (resource, since, until) in [
        ("orders", "modified_since_time", "modified_until_time"),
        ("tasks", "since_time", "until_time"),
    ] {
        // Records exactly on both bounds count.
        h.post_json(
            &format!("/__sandbox/keap/{resource}/touch"),
            json!({"ids": [1], "update_time": start}),
        )
        .await;
        h.post_json(
            &format!("/__sandbox/keap/{resource}/touch"),
            json!({"ids": ["2"], "update_time": end}),
        )
        .await;
        let (all, _) = h.walk_records(resource, "page_size=1000", &access).await;
        let (lo, hi) = (parse_ms(start).unwrap(), parse_ms(end).unwrap());
        let expected: HashSet<u64> = all
            .iter()
            .filter(|r| {
                let t = parse_ms(r["modification_time"].as_str().unwrap()).unwrap();
                lo <= t && t <= hi
            })
            .map(|r| r["id"].as_str().unwrap().parse().unwrap())
            .collect();
        assert!(expected.contains(&1) && expected.contains(&2));
        for query in [
            format!("page_size=11&{since}={start}&{until}={end}"),
            format!(
                "page_size=11&filter={}",
                enc(&format!("{since}=={start};{until}=={end}"))
            ),
        ] {
            let (records, _) = h.walk_records(resource, &query, &access).await;
            let got = ids(&records);
            assert_each_once(&got, expected.len());
            assert_eq!(got.into_iter().collect::<HashSet<_>>(), expected, "{query}");
        }
        // Incremental sync: update three records now, then ask for changes since now.
        let now = format_ms(h.clock.now_ms());
        let reply = h
            .post_json(
                &format!("/__sandbox/keap/{resource}/update"),
                json!({"ids": [5, "9", 200]}),
            )
            .await;
        assert_eq!(reply.json()["ids"], json!([5, 9, 200]));
        assert_eq!(reply.json()["update_time"], now);
        let (records, _) = h
            .walk_records(
                resource,
                &format!("page_size=2&{since}={}", enc(&now)),
                &access,
            )
            .await;
        assert_eq!(ids(&records), [5, 9, 200]);
        let update_order = if resource == "orders" {
            "modification_time"
        } else {
            "update_time"
        };
        let reply = h
            .get(
                &format!("/crm/rest/v2/{resource}?page_size=3&order_by={update_order}%20desc"),
                Some(&access),
            )
            .await;
        assert_eq!(ids(reply.json()[resource].as_array().unwrap()), [200, 9, 5]);
    }
}

#[tokio::test]
async fn opportunities_have_no_update_time_filter() {
    let h = records_harness(50);
    let (access, _) = h.connect().await;
    for filter in [
        "start_update_time==2025-01-01T00:00:00Z",
        "since_time==2025-01-01T00:00:00Z",
        "modified_since_time==2025-01-01T00:00:00Z",
        "last_updated_time==2025-01-01T00:00:00Z",
    ] {
        let reply = h
            .get(
                &format!("/crm/rest/v2/opportunities?filter={}", enc(filter)),
                Some(&access),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{filter}");
        let body = reply.json();
        assert_eq!(body["status"], "INVALID_ARGUMENT");
        assert_eq!(body["code"], "400");
        assert!(body["message"].as_str().unwrap().contains("filter"));
    }
    // What a Worker does instead: walk newest first and stop at its cursor.
    h.post_json("/__sandbox/keap/opportunities/update", json!({"count": 2}))
        .await;
    let reply = h
        .get(
            "/crm/rest/v2/opportunities?page_size=2&order_by=update_time%20desc",
            Some(&access),
        )
        .await;
    let body = reply.json();
    assert_eq!(ids(body["opportunities"].as_array().unwrap()), [2, 1]);
    let first = &body["opportunities"][0];
    assert_eq!(first["last_updated_time"], format_ms(h.clock.now_ms()));
    for key in [
        "opportunity_title",
        "contact",
        "stage",
        "user",
        "projected_revenue_low",
        "projected_revenue_high",
        "estimated_close_time",
        "created_time",
    ] {
        assert!(first.get(key).is_some(), "{key}");
    }
    assert!(first["contact"]["id"].is_string() && first["stage"]["name"].is_string());
    assert!(body["next_page_token"].as_str().unwrap().len() > 10);
}

#[tokio::test]
async fn auth_errors_and_deletes_look_like_keap() {
    let h = records_harness(20);
    let (access, _) = h.connect().await;
    for resource in ["opportunities", "orders", "tasks"] {
        let reply = h.get(&format!("/crm/rest/v2/{resource}"), None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            reply.json(),
            json!({"code":"401","message":"Unauthorized","status":"UNAUTHENTICATED","details":[]})
        );
        let reply = h
            .get(&format!("/crm/rest/v2/{resource}/3"), Some("wrong"))
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

        let via_api = h
            .get(&format!("/crm/rest/v2/{resource}/3"), Some(&access))
            .await;
        assert_eq!(via_api.status, StatusCode::OK);
        let via_control = h.get(&format!("/__sandbox/keap/{resource}/3"), None).await;
        assert_eq!(via_control.json(), via_api.json());

        let reply = h.delete(&format!("/__sandbox/keap/{resource}/3")).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
        let reply = h
            .get(&format!("/crm/rest/v2/{resource}/3"), Some(&access))
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(reply.json()["status"], "NOT_FOUND");
        assert_eq!(reply.json()["details"], json!([]));
        let (records, _) = h.walk_records(resource, "page_size=1000", &access).await;
        assert_eq!(records.len(), 19);
        assert!(!ids(&records).contains(&3));
        let listing = h
            .get(&format!("/__sandbox/keap/{resource}"), None)
            .await
            .json();
        assert_eq!(listing["count"], 19);
        assert_eq!(listing["ids"][2], 4);
        assert_eq!(
            h.delete(&format!("/__sandbox/keap/{resource}/3"))
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            h.get(&format!("/crm/rest/v2/{resource}/abc"), Some(&access))
                .await
                .status,
            StatusCode::BAD_REQUEST
        );
    }
}

#[tokio::test]
async fn generic_controls_and_the_clock() {
    let h = records_harness(10);
    let (access, _) = h.connect().await;
    // Contacts take part in the generic controls too.
    let reply = h
        .post_json("/__sandbox/keap/contacts/update", json!({"count": 2}))
        .await;
    assert_eq!(reply.json()["ids"], json!([1, 2]));
    let contact = h.get("/__sandbox/keap/contacts/2", None).await.json();
    assert_eq!(contact["update_time"], format_ms(h.clock.now_ms()));
    assert!(contact["notes"].as_str().unwrap().starts_with("Edited"));
    let listing = h.get("/__sandbox/keap/contacts", None).await.json();
    assert_eq!(listing["count"], 50);

    // The clock moves update times and expires tokens.
    let reply = h
        .post_json("/__sandbox/clock/advance", json!({"ms": 90_000}))
        .await;
    assert_eq!(reply.json()["now_ms"], h.clock.now_ms());
    assert_eq!(h.clock.now_ms(), SEED_BASE_MS + 3_600_000 + 90_000);
    let reply = h
        .post_json("/__sandbox/keap/tasks/update", json!({"ids": [4, 99]}))
        .await;
    assert_eq!(reply.json()["ids"], json!([4]));
    let task = h.get("/__sandbox/keap/tasks/4", None).await.json();
    assert_eq!(task["modification_time"], format_ms(h.clock.now_ms()));
    let reply = h
        .post_json("/__sandbox/keap/tasks/touch", json!({"ids": [5, 6]}))
        .await;
    assert_eq!(reply.json()["ids"], json!([5, 6]));

    let patched = h
        .send(
            Request::patch("/__sandbox/keap/orders/7")
                .body(Body::from(r#"{"title":"Renamed"}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(patched.json()["title"], "Renamed");
    let created = h
        .post_json("/__sandbox/keap/opportunities", json!({}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.json()["id"], "11");

    for (uri, body) in [
        ("/__sandbox/keap/tasks/update", json!({})),
        (
            "/__sandbox/keap/tasks/update",
            json!({"count": 1, "ids": [1]}),
        ),
        ("/__sandbox/keap/tasks/update", json!({"ids": ["x"]})),
        (
            "/__sandbox/keap/tasks/touch",
            json!({"ids": [1], "update_time": "soon"}),
        ),
        ("/__sandbox/clock/advance", json!({"ms": -5})),
    ] {
        assert_eq!(
            h.post_json(uri, body.clone()).await.status,
            StatusCode::BAD_REQUEST,
            "{uri} {body}"
        );
    }
    assert_eq!(
        h.get("/__sandbox/keap/invoices", None).await.status,
        StatusCode::NOT_FOUND
    );

    assert_eq!(
        h.get("/crm/rest/v2/orders", Some(&access)).await.status,
        StatusCode::OK
    );
    h.post_json("/__sandbox/clock/advance", json!({"ms": 86_400_000}))
        .await;
    assert_eq!(
        h.get("/crm/rest/v2/orders", Some(&access)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn faults_hit_one_page_per_key() {
    let h = records_harness(30);
    let (access, _) = h.connect().await;
    let reply = h
        .post_json(
            "/__sandbox/faults",
            json!({"endpoint": "keap.orders.list", "status": 503, "after": 1}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json());
    // Other keys do not count towards `after`.
    for _ in 0..3 {
        let reply = h.get("/crm/rest/v2/tasks?page_size=5", Some(&access)).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let first = h
        .get("/crm/rest/v2/orders?page_size=10", Some(&access))
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let token = first.json()["next_page_token"].as_str().unwrap().to_owned();
    let uri = format!(
        "/crm/rest/v2/orders?page_size=10&page_token={}",
        enc(&token)
    );
    let second = h.get(&uri, Some(&access)).await;
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(second.json()["status"], "UNAVAILABLE");
    assert!(second.header("x-keap-product-throttle-limit").is_some());
    // The retry of the same page succeeds.
    assert_eq!(h.get(&uri, Some(&access)).await.status, StatusCode::OK);

    let counters = h.counters().await;
    assert_eq!(counters["requests"]["keap.orders.list"], 3);
    assert_eq!(counters["requests"]["keap.tasks.list"], 3);
    assert_eq!(counters["statuses"]["keap.orders.list"]["503"], 1);
    assert_eq!(counters["requests"]["keap.opportunities.get"], 0);
    let log = h
        .get("/__sandbox/requests?endpoint=keap.orders.list", None)
        .await
        .json();
    assert_eq!(log.as_array().unwrap().len(), 3);
    assert_eq!(log[1]["fault"], true);
}
