//! Keap REST Hooks over HTTP: subscribe, the `X-Hook-Secret` handshake against real local
//! receivers, verify / delayedVerify, update, delete, and signed event deliveries.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::receiver::{Mode, Receiver, ECHO, SILENT};
use super::shopify::hmac_sha256_from_scratch;
use super::{harness, harness_with, Harness, Reply};
use crate::SandboxConfig;

const HOOKS: &str = "/crm/rest/v1/hooks";

impl Harness {
    pub(super) async fn keap_call(
        &self,
        method: &str,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json");
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        self.send(request.body(body).unwrap()).await
    }

    pub(super) async fn subscribe(&self, token: &str, event_key: &str, url: &str) -> Value {
        let reply = self
            .keap_call(
                "POST",
                HOOKS,
                token,
                Some(json!({"eventKey": event_key, "hookUrl": url})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json());
        reply.json()
    }

    async fn control_hooks(&self) -> Vec<Value> {
        let reply = self.get("/__sandbox/keap/hooks", None).await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.json()["hooks"].as_array().unwrap().clone()
    }

    /// Waits (real time) until hook `key` has run `n` handshakes; its control record.
    pub(super) async fn handshakes_done(&self, key: &str, n: u64) -> Value {
        for _ in 0..1000 {
            let hooks = self.control_hooks().await;
            if let Some(hook) = hooks.iter().find(|h| h["key"] == key) {
                if hook["handshakes"].as_u64().unwrap() >= n {
                    return hook.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("hook {key} never finished handshake {n}");
    }

    async fn deliver(&self, body: Value) -> Value {
        let reply = self.post_json("/__sandbox/keap/hooks/deliver", body).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json());
        reply.json()
    }
}

#[tokio::test]
async fn handshake_verifies_only_receivers_that_echo_the_secret() {
    let h = harness(5);
    let (token, _) = h.connect().await;
    let echo = Receiver::start(ECHO).await;
    let silent = Receiver::start(SILENT).await;
    let failing = Receiver::start(Mode {
        echo: true,
        status: 500,
    })
    .await;

    let created = h.subscribe(&token, "contact.edit", &echo.url).await;
    assert_eq!(
        created,
        json!({"key": "1", "eventKey": "contact.edit", "hookUrl": echo.url, "status": "Unverified"})
    );
    h.subscribe(&token, "contact.edit", &silent.url).await;
    h.subscribe(&token, "contact.add", &failing.url).await;

    let verified = h.handshakes_done("1", 1).await;
    assert_eq!(verified["status"], "Verified");
    assert_eq!(verified["handshake"]["trigger"], "create");
    assert_eq!(verified["handshake"]["status"], 200);
    assert_eq!(verified["handshake"]["echoed"], true);
    let unechoed = h.handshakes_done("2", 1).await;
    assert_eq!(unechoed["status"], "Unverified");
    assert_eq!(unechoed["handshake"]["status"], 200);
    assert_eq!(unechoed["handshake"]["echoed"], false);
    let errored = h.handshakes_done("3", 1).await;
    assert_eq!(errored["status"], "Unverified");
    assert_eq!(errored["handshake"]["status"], 500);
    assert_eq!(errored["handshake"]["echoed"], true);

    // The handshake: a POST of `[]` with a random X-Hook-Secret.
    let seen = echo.wait_for(1).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/hook");
    assert_eq!(seen[0].body, b"[]");
    let secret = seen[0].header("x-hook-secret").unwrap();
    assert_eq!(secret.len(), 64);
    let other = silent.wait_for(1).await[0]
        .header("x-hook-secret")
        .unwrap()
        .to_owned();
    assert_ne!(secret, other);

    // The REST view.
    let list = h.get(HOOKS, Some(&token)).await;
    assert_eq!(list.status, StatusCode::OK);
    let listed = list.json();
    let statuses: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|hook| hook["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["Verified", "Unverified", "Unverified"]);
    assert!(list.header("x-keap-tenant-id").is_some());
    let one = h.get(&format!("{HOOKS}/1"), Some(&token)).await;
    assert_eq!(one.json()["status"], "Verified");
    assert_eq!(
        h.get(&format!("{HOOKS}/99"), Some(&token)).await.status,
        StatusCode::NOT_FOUND
    );
    let keys = h
        .get(&format!("{HOOKS}/event_keys"), Some(&token))
        .await
        .json();
    for key in [
        "contact.add",
        "contact.edit",
        "contact.delete",
        "opportunity.stage_move",
        "order.edit",
        "task.complete",
        "task.incomplete",
    ] {
        assert!(keys.as_array().unwrap().contains(&json!(key)), "{key}");
    }

    // Errors: unknown event key, bad URL, no credentials.
    let bad = h
        .keap_call(
            "POST",
            HOOKS,
            &token,
            Some(json!({"eventKey": "contact.sneeze", "hookUrl": echo.url})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["status"], "INVALID_ARGUMENT");
    let bad = h
        .keap_call(
            "POST",
            HOOKS,
            &token,
            Some(json!({"eventKey": "contact.add", "hookUrl": "ftp://x"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.get(HOOKS, None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.control_hooks().await.len(), 3);

    let counters = h.counters().await;
    assert_eq!(counters["requests"]["keap.hooks.create"], 5);
    assert_eq!(counters["statuses"]["keap.hooks.create"]["400"], 2);
    assert_eq!(counters["requests"]["keap.hooks.list"], 2);
    assert_eq!(counters["requests"]["keap.hooks.get"], 2);
    assert_eq!(counters["requests"]["keap.hooks.event_keys"], 1);
}

#[tokio::test]
async fn events_reach_only_verified_hooks_signed() {
    let h = harness(5);
    let (token, _) = h.connect().await;
    let echo = Receiver::start(ECHO).await;
    let silent = Receiver::start(SILENT).await;
    let other_event = Receiver::start(ECHO).await;
    h.subscribe(&token, "contact.edit", &echo.url).await;
    h.subscribe(&token, "contact.edit", &silent.url).await;
    h.subscribe(&token, "contact.add", &other_event.url).await;
    for key in ["1", "2", "3"] {
        h.handshakes_done(key, 1).await;
    }

    let request = Request::post("/__sandbox/keap/hooks/deliver")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::HOST, "sandbox.test:9999")
        .body(Body::from(
            json!({"event_key": "contact.edit", "ids": ["1", 2, "3"], "signature_secret": "s3cret"})
                .to_string(),
        ))
        .unwrap();
    let reply = h.send(request).await;
    assert_eq!(reply.status, StatusCode::OK);
    let deliveries = reply.json()["deliveries"].as_array().unwrap().clone();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(deliveries[0]["hook_key"], "1");
    assert_eq!(deliveries[0]["url"], echo.url.as_str());
    assert_eq!(deliveries[0]["status"], 200);

    let seen = echo.wait_for(2).await;
    let event = &seen[1];
    assert_eq!(event.header("content-type"), Some("application/json"));
    assert_eq!(event.header("x-hook-secret"), None);
    let body = event.json();
    assert_eq!(body["event_key"], "contact.edit");
    assert_eq!(body["object_type"], "contact");
    let keys = body["object_keys"].as_array().unwrap();
    let ids: Vec<&Value> = keys.iter().map(|k| &k["id"]).collect();
    assert_eq!(ids, [&json!(1), &json!(2), &json!(3)]);
    assert_eq!(
        keys[0]["apiUrl"],
        "http://sandbox.test:9999/crm/rest/v1/contacts/1"
    );
    assert!(crate::time::parse_ms(keys[0]["timestamp"].as_str().unwrap()).is_some());
    assert_eq!(
        event.header("x-hook-signature").unwrap(),
        hmac_sha256_from_scratch(b"s3cret", &event.body)
    );
    assert_eq!(
        deliveries[0]["body_sha256"].as_str().unwrap(),
        hex::encode(Sha256::digest(&event.body))
    );
    // The unverified hook got its handshake only; the other event key nothing more.
    assert_eq!(silent.received().len(), 1);
    assert_eq!(other_event.received().len(), 1);

    // Unsigned unless a secret is given or configured.
    let unsigned = h
        .deliver(json!({"event_key": "contact.edit", "ids": [4]}))
        .await;
    assert_eq!(unsigned["deliveries"].as_array().unwrap().len(), 1);
    let seen = echo.wait_for(3).await;
    assert_eq!(seen[2].header("x-hook-signature"), None);
    let record = &h.control_hooks().await[0];
    assert_eq!(record["deliveries"], 2);
    assert_eq!(record["last_delivery"]["status"], 200);

    // Nobody listens to contact.delete; unknown keys are refused.
    let none = h
        .deliver(json!({"event_key": "contact.delete", "ids": [1]}))
        .await;
    assert_eq!(none["deliveries"], json!([]));
    let bad = h
        .post_json(
            "/__sandbox/keap/hooks/deliver",
            json!({"event_key": "contact.nope", "ids": [1]}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // More than 1,000 ids go out in batches of 1,000, as Keap sends them.
    let many: Vec<u64> = (1..=1500).collect();
    let batched = h
        .deliver(json!({"event_key": "contact.edit", "ids": many}))
        .await;
    let objects: Vec<u64> = batched["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["objects"].as_u64().unwrap())
        .collect();
    assert_eq!(objects, [1000, 500]);
}

#[tokio::test]
async fn configured_secret_signs_every_delivery() {
    let h = harness_with(SandboxConfig {
        keap_contacts: 1,
        keap_webhook_secret: Some(crate::Secret::new("from-config")),
        log_requests: false,
        ..SandboxConfig::default()
    });
    let (token, _) = h.connect().await;
    let echo = Receiver::start(ECHO).await;
    h.subscribe(&token, "order.add", &echo.url).await;
    h.handshakes_done("1", 1).await;
    let reply = h
        .deliver(json!({"event_key": "order.add", "ids": ["abc"]}))
        .await;
    assert_eq!(reply["deliveries"][0]["status"], 200);
    let event = &echo.wait_for(2).await[1];
    assert_eq!(
        event.header("x-hook-signature").unwrap(),
        hmac_sha256_from_scratch(b"from-config", &event.body)
    );
    // A non-numeric id stays a string; the apiUrl points at orders.
    assert_eq!(event.json()["object_keys"][0]["id"], "abc");
    assert_eq!(event.json()["object_type"], "order");
    assert!(event.json()["object_keys"][0]["apiUrl"]
        .as_str()
        .unwrap()
        .ends_with("/crm/rest/v1/orders/abc"));
    // A per-call secret wins over the configured one.
    h.deliver(json!({"event_key": "order.add", "ids": [1], "signature_secret": "rotated"}))
        .await;
    let event = &echo.wait_for(3).await[2];
    assert_eq!(
        event.header("x-hook-signature").unwrap(),
        hmac_sha256_from_scratch(b"rotated", &event.body)
    );
}

#[tokio::test]
async fn update_verify_delayed_verify_and_delete() {
    let h = harness(5);
    let (token, _) = h.connect().await;
    let receiver = Receiver::start(SILENT).await;
    let echo = Receiver::start(ECHO).await;
    h.subscribe(&token, "task.complete", &receiver.url).await;
    assert_eq!(h.handshakes_done("1", 1).await["status"], "Unverified");

    // The receiver learns to echo: POST /verify runs the handshake before answering.
    receiver.set_mode(ECHO);
    let verified = h
        .keap_call("POST", &format!("{HOOKS}/1/verify"), &token, None)
        .await;
    assert_eq!(verified.status, StatusCode::OK);
    assert_eq!(verified.json()["status"], "Verified");
    assert_eq!(
        h.handshakes_done("1", 2).await["handshake"]["trigger"],
        "verify"
    );

    // A new URL needs a new handshake: Unverified at once, Verified when the echo arrives.
    let moved = h
        .keap_call(
            "PUT",
            &format!("{HOOKS}/1"),
            &token,
            Some(json!({"eventKey": "task.complete", "hookUrl": echo.url})),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK);
    assert_eq!(moved.json()["status"], "Unverified");
    assert_eq!(moved.json()["hookUrl"], echo.url.as_str());
    let after = h.handshakes_done("1", 3).await;
    assert_eq!(after["status"], "Verified");
    assert_eq!(after["handshake"]["trigger"], "update");
    assert_eq!(echo.received().len(), 1);
    // Same values: nothing to verify again.
    let same = h
        .keap_call(
            "PUT",
            &format!("{HOOKS}/1"),
            &token,
            Some(json!({"eventKey": "task.complete", "hookUrl": echo.url})),
        )
        .await;
    assert_eq!(same.json()["status"], "Verified");
    let bad = h
        .keap_call(
            "PUT",
            &format!("{HOOKS}/1"),
            &token,
            Some(json!({"eventKey": "task.nope"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Delayed confirmation: the receiver did not echo, the app sends the secret back.
    receiver.set_mode(SILENT);
    h.subscribe(&token, "task.add", &receiver.url).await;
    h.handshakes_done("2", 1).await;
    let seen = receiver.received();
    let secret = seen.last().unwrap().header("x-hook-secret").unwrap();
    let wrong = Request::post(format!("{HOOKS}/2/delayedVerify"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header("x-hook-secret", "not-it")
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(wrong).await.json()["status"], "Unverified");
    let right = Request::post(format!("{HOOKS}/2/delayedVerify"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header("x-hook-secret", secret)
        .body(Body::empty())
        .unwrap();
    let right = h.send(right).await;
    assert_eq!(right.status, StatusCode::OK);
    assert_eq!(right.json()["status"], "Verified");

    // Delete: 204, then 404, and no more events.
    let deleted = h
        .keap_call("DELETE", &format!("{HOOKS}/1"), &token, None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.keap_call("DELETE", &format!("{HOOKS}/1"), &token, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get(&format!("{HOOKS}/1"), Some(&token)).await.status,
        StatusCode::NOT_FOUND
    );
    let none = h
        .deliver(json!({"event_key": "task.complete", "ids": [1]}))
        .await;
    assert_eq!(none["deliveries"], json!([]));
    assert_eq!(echo.received().len(), 1);

    // Hook endpoints take faults like any other key.
    let fault = h
        .post_json(
            "/__sandbox/faults",
            json!({"endpoint": "keap.hooks.create", "status": 503}),
        )
        .await;
    assert_eq!(fault.status, StatusCode::OK);
    let failed = h
        .keap_call(
            "POST",
            HOOKS,
            &token,
            Some(json!({"eventKey": "contact.add", "hookUrl": echo.url})),
        )
        .await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.control_hooks().await.len(), 1);
    let counters = h.counters().await;
    assert_eq!(counters["requests"]["keap.hooks.verify"], 1);
    assert_eq!(counters["requests"]["keap.hooks.update"], 3);
    assert_eq!(counters["requests"]["keap.hooks.delete"], 2);
    assert_eq!(counters["requests"]["keap.hooks.delayed_verify"], 2);
}

#[tokio::test]
async fn unreachable_receivers_stay_unverified() {
    let h = harness(1);
    let (token, _) = h.connect().await;
    // Nothing listens on port 1.
    h.subscribe(&token, "contact.add", "http://127.0.0.1:1/hook")
        .await;
    let hook = h.handshakes_done("1", 1).await;
    assert_eq!(hook["status"], "Unverified");
    assert_eq!(hook["handshake"]["status"], 0);
    assert!(hook["handshake"]["error"].as_str().is_some());
}

#[tokio::test]
async fn state_file_keeps_hooks_across_restarts() {
    let path = std::env::temp_dir().join(format!(
        "provider-sandbox-hooks-state-{}-{}.json",
        std::process::id(),
        rand::random::<u64>()
    ));
    let config = SandboxConfig {
        keap_contacts: 3,
        state_file: Some(path.clone()),
        log_requests: false,
        ..SandboxConfig::default()
    };
    let echo = Receiver::start(ECHO).await;
    let silent = Receiver::start(SILENT).await;

    let first = harness_with(config.clone());
    let (token, _) = first.connect().await;
    first.subscribe(&token, "contact.edit", &echo.url).await;
    first.subscribe(&token, "order.add", &silent.url).await;
    let gone = first
        .subscribe(&token, "task.add", "http://127.0.0.1:9/gone")
        .await;
    assert_eq!(gone["key"], "3");
    let reply = first
        .keap_call("DELETE", &format!("{HOOKS}/3"), &token, None)
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(first.handshakes_done("1", 1).await["status"], "Verified");
    assert_eq!(first.handshakes_done("2", 1).await["status"], "Unverified");
    let before = first.get(HOOKS, Some(&token)).await.json();
    assert_eq!(before.as_array().unwrap().len(), 2);
    // The handshake secret is in-flight state, not something the file keeps.
    let secret = echo.received()[0]
        .header("x-hook-secret")
        .unwrap()
        .to_owned();
    let file = std::fs::read_to_string(&path).unwrap();
    assert!(!file.contains(&secret), "{file}");

    // Restart: same hooks (keys, event keys, URLs, status), same token.
    let second = harness_with(config);
    assert!(second.state.restore().unwrap());
    let after = second.get(HOOKS, Some(&token)).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.json(), before);
    assert_eq!(
        after.json(),
        json!([
            {"key": "1", "eventKey": "contact.edit", "hookUrl": echo.url, "status": "Verified"},
            {"key": "2", "eventKey": "order.add", "hookUrl": silent.url, "status": "Unverified"},
        ])
    );
    let one = second.get(&format!("{HOOKS}/1"), Some(&token)).await;
    assert_eq!(one.json()["status"], "Verified");
    assert_eq!(
        second.get(&format!("{HOOKS}/3"), Some(&token)).await.status,
        StatusCode::NOT_FOUND
    );
    // The control view keeps the latest handshake; delivery counters start afresh.
    let control = second.control_hooks().await;
    assert_eq!(control[0]["handshakes"], 1);
    assert_eq!(control[0]["handshake"]["trigger"], "create");
    assert_eq!(control[0]["handshake"]["verified"], true);
    assert_eq!(control[0]["deliveries"], 0);

    // The restored verified hook still gets events.
    let delivered = second
        .deliver(json!({"event_key": "contact.edit", "ids": [1]}))
        .await;
    assert_eq!(delivered["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(delivered["deliveries"][0]["hook_key"], "1");
    assert_eq!(delivered["deliveries"][0]["status"], 200);
    let seen = echo.wait_for(2).await;
    assert_eq!(seen[1].json()["event_key"], "contact.edit");

    // A new hook gets a fresh key: neither a live one nor the deleted 3.
    let fresh = second.subscribe(&token, "contact.add", &echo.url).await;
    assert_eq!(fresh["key"], "4");
    assert_eq!(second.handshakes_done("4", 1).await["status"], "Verified");

    // Changes after the restart are persisted too: a third start sees them.
    let reply = second
        .keap_call("DELETE", &format!("{HOOKS}/2"), &token, None)
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let third = harness_with(SandboxConfig {
        keap_contacts: 3,
        state_file: Some(path.clone()),
        log_requests: false,
        ..SandboxConfig::default()
    });
    assert!(third.state.restore().unwrap());
    let keys: Vec<Value> = third
        .get(HOOKS, Some(&token))
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|h| json!([h["key"], h["status"]]))
        .collect();
    assert_eq!(keys, [json!(["1", "Verified"]), json!(["4", "Verified"])]);
    std::fs::remove_file(&path).unwrap();
}
