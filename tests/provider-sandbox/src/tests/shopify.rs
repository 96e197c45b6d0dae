//! Shopify OAuth install flow over HTTP: signed redirect, code exchange, errors, control API,
//! counters and faults.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{enc, harness, harness_with, Harness, Reply};
use crate::config::DEFAULT_SHOPIFY_CLIENT_ID as CLIENT_ID;
use crate::config::DEFAULT_SHOPIFY_CLIENT_SECRET as CLIENT_SECRET;
use crate::SandboxConfig;

const SHOP: &str = "acme.myshopify.com";
const REDIRECT: &str = "http://localhost:8787/oauth/shopify/callback";
const SCOPES: &str = "read_products,read_orders";

/// HMAC-SHA256 (RFC 2104) written out from the SHA-256 primitive, so the test does not trust
/// the `hmac` crate the sandbox signs with.
pub(super) fn hmac_sha256_from_scratch(key: &[u8], message: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut block_key = [0u8; BLOCK];
    if key.len() > BLOCK {
        block_key[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = block_key.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = block_key.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

/// Shopify's rule, applied to a received redirect: drop `hmac`, sort the rest by key, join
/// the decoded `key=value` pairs with `&`, HMAC-SHA256 with the client secret, lowercase hex.
fn expected_hmac(pairs: &[(String, String)], secret: &str) -> String {
    let mut rest: Vec<&(String, String)> = pairs.iter().filter(|(k, _)| k != "hmac").collect();
    rest.sort_by(|a, b| a.0.cmp(&b.0));
    let message = rest
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    hmac_sha256_from_scratch(secret.as_bytes(), message.as_bytes())
}

fn location_pairs(reply: &Reply) -> (String, Vec<(String, String)>) {
    let location = url::Url::parse(reply.header("location").unwrap()).unwrap();
    let pairs = location.query_pairs().into_owned().collect();
    let mut base = location.clone();
    base.set_query(None);
    (base.to_string(), pairs)
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn authorize_uri(shop: &str, extra: &str) -> String {
    format!(
        "/shopify/{shop}/admin/oauth/authorize?client_id={CLIENT_ID}&scope={}&redirect_uri={}{extra}",
        enc(SCOPES),
        enc(REDIRECT)
    )
}

impl Harness {
    async fn shopify_authorize(&self, shop: &str, state: &str) -> Reply {
        self.get(
            &authorize_uri(shop, &format!("&state={}", enc(state))),
            None,
        )
        .await
    }

    /// Authorizes at `shop` and returns the code from the redirect.
    async fn shopify_code(&self, shop: &str) -> String {
        let reply = self.shopify_authorize(shop, "nonce").await;
        assert_eq!(reply.status, StatusCode::FOUND);
        let (_, pairs) = location_pairs(&reply);
        param(&pairs, "code").unwrap().to_owned()
    }

    async fn shopify_exchange(&self, shop: &str, body: Value) -> Reply {
        self.post_json(&format!("/shopify/{shop}/admin/oauth/access_token"), body)
            .await
    }

    async fn shopify_exchange_code(&self, shop: &str, code: &str) -> Reply {
        self.shopify_exchange(
            shop,
            json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "code": code}),
        )
        .await
    }
}

#[test]
fn from_scratch_hmac_matches_known_answers() {
    // RFC 4231 test case 2.
    assert_eq!(
        hmac_sha256_from_scratch(b"Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    // Shopify's documented OAuth verification example (secret "hush").
    let pairs: Vec<(String, String)> = [
        ("code", "0907a61c0c8d55e99db179b68161bc00"),
        ("hmac", "ignored"),
        ("shop", "some-shop.myshopify.com"),
        ("timestamp", "1337178173"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(
        expected_hmac(&pairs, "hush"),
        "4712bf92ffc2917d15a2f5a273e39f0116667419aa4b6ac0b3baaf26fa3c4d20"
    );
}

#[tokio::test]
async fn install_redirect_is_signed_and_code_exchanges_once() {
    let h = harness(1);
    // `grant_options[]` is accepted; a state with spaces and slashes pins down that values
    // are signed decoded.
    let reply = h
        .get(
            &authorize_uri(SHOP, "&state=0.67%20a%2Fb&grant_options%5B%5D="),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::FOUND);
    let (base, pairs) = location_pairs(&reply);
    assert_eq!(base, REDIRECT);
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["code", "hmac", "host", "shop", "state", "timestamp"],
        "sorted, each once"
    );
    let hmac = param(&pairs, "hmac").unwrap();
    assert_eq!(hmac, expected_hmac(&pairs, CLIENT_SECRET));
    assert_eq!(hmac.len(), 64);
    assert_ne!(hmac, expected_hmac(&pairs, "another-secret"));
    assert_eq!(param(&pairs, "shop"), Some(SHOP));
    assert_eq!(param(&pairs, "state"), Some("0.67 a/b"));
    let host = URL_SAFE_NO_PAD
        .decode(param(&pairs, "host").unwrap())
        .unwrap();
    assert_eq!(host, format!("{SHOP}/admin").as_bytes());
    let now_secs = h.clock.now_ms() / 1000;
    assert_eq!(
        param(&pairs, "timestamp"),
        Some(now_secs.to_string().as_str())
    );
    let code = param(&pairs, "code").unwrap().to_owned();
    assert_eq!(code.len(), 32);
    assert!(code.chars().all(|c| c.is_ascii_hexdigit()));

    // Exchange (JSON, as shopify.dev shows): an offline token, no expiry, no refresh token.
    let reply = h.shopify_exchange_code(SHOP, &code).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json());
    let body = reply.json();
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("shpat_"), "{token}");
    assert_eq!(token.len(), "shpat_".len() + 32);
    assert!(token["shpat_".len()..]
        .chars()
        .all(|c| c.is_ascii_hexdigit()));
    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["access_token", "scope"]));
    assert_eq!(body["scope"], SCOPES);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert!(h.state.shopify_token_valid(SHOP, &token));
    assert!(h.state.shopify_token_valid("ACME.myshopify.com", &token));
    assert!(!h.state.shopify_token_valid("other.myshopify.com", &token));
    assert!(!h.state.shopify_token_valid(SHOP, "shpat_nope"));

    // The code is single use.
    let reply = h.shopify_exchange_code(SHOP, &code).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.json(),
        json!({"error": "invalid_request",
               "error_description": "The authorization code was not found or was already used"})
    );

    // Form-encoded bodies work too.
    let code = h.shopify_code(SHOP).await;
    let request = Request::post(format!("/shopify/{SHOP}/admin/oauth/access_token"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}&code={code}"
        )))
        .unwrap();
    let reply = h.send(request).await;
    assert_eq!(reply.status, StatusCode::OK);
    let second = reply.json()["access_token"].as_str().unwrap().to_owned();
    assert_ne!(second, token);

    let stats = h.get("/__sandbox/tokens", None).await.json();
    assert_eq!(stats["shopify"]["active_access_tokens"], 2);
    assert_eq!(stats["shopify"]["pending_codes"], 0);
    assert_eq!(stats["shopify"]["shops"], json!([SHOP]));
    assert_eq!(stats["keap"]["active_access_tokens"], 0);
    let counters = h.counters().await;
    assert_eq!(counters["shopify_code_exchanges"], 2);
    assert_eq!(counters["shopify_code_exchange_failures"], 1);
}

#[tokio::test]
async fn bad_client_credentials_are_401_and_keep_the_code() {
    let h = harness(1);
    let code = h.shopify_code(SHOP).await;
    for body in [
        json!({"client_id": CLIENT_ID, "client_secret": "wrong", "code": code}),
        json!({"client_id": "someone-else", "client_secret": CLIENT_SECRET, "code": code}),
        json!({"client_id": CLIENT_ID, "code": code}),
    ] {
        let reply = h.shopify_exchange(SHOP, body).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.json()["error"], "invalid_client");
    }
    // Refusing the client did not spend the code.
    assert_eq!(
        h.shopify_exchange_code(SHOP, &code).await.status,
        StatusCode::OK
    );
    // A missing code is a bad request.
    let reply = h
        .shopify_exchange(
            SHOP,
            json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"], "invalid_request");
}

#[tokio::test]
async fn bad_shops_and_authorize_errors() {
    let h = harness(1);
    for shop in [
        "evil.com",
        "acme.myshopify.com.evil.com",
        "-acme.myshopify.com",
        "acme_shop.myshopify.com",
    ] {
        let reply = h.shopify_authorize(shop, "s").await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{shop}");
        assert!(reply.header("location").is_none());
        assert!(reply
            .header("content-type")
            .unwrap()
            .starts_with("text/html"));
        let reply = h
            .shopify_exchange(
                shop,
                json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "code": "x"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{shop}");
        assert_eq!(reply.json()["error"], "invalid_request");
    }

    // A code is bound to its shop: another shop does not know it, and the try uses it up.
    let code = h.shopify_code(SHOP).await;
    let reply = h.shopify_exchange_code("other.myshopify.com", &code).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        h.shopify_exchange_code(SHOP, &code).await.status,
        StatusCode::BAD_REQUEST
    );

    // Codes expire after 10 minutes.
    let code = h.shopify_code(SHOP).await;
    h.clock.advance_ms(10 * 60 * 1000);
    assert_eq!(
        h.shopify_exchange_code(SHOP, &code).await.status,
        StatusCode::BAD_REQUEST
    );

    // Wrong client_id, missing or bad redirect_uri, bad scope: a page, never a redirect.
    for uri in [
        format!("/shopify/{SHOP}/admin/oauth/authorize?client_id=nope&scope=read_products&redirect_uri={}", enc(REDIRECT)),
        format!("/shopify/{SHOP}/admin/oauth/authorize?scope=read_products&redirect_uri={}", enc(REDIRECT)),
        format!("/shopify/{SHOP}/admin/oauth/authorize?client_id={CLIENT_ID}&scope=read_products"),
        format!("/shopify/{SHOP}/admin/oauth/authorize?client_id={CLIENT_ID}&scope=read_products&redirect_uri=javascript%3Aalert(1)"),
        format!("/shopify/{SHOP}/admin/oauth/authorize?client_id={CLIENT_ID}&scope=READ+ALL&redirect_uri={}", enc(REDIRECT)),
    ] {
        let reply = h.get(&uri, None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(reply.header("location").is_none(), "{uri}");
    }

    // approve=false: back to the app with error=access_denied and no code.
    let reply = h
        .get(&authorize_uri(SHOP, "&state=s1&approve=false"), None)
        .await;
    assert_eq!(reply.status, StatusCode::FOUND);
    let (_, pairs) = location_pairs(&reply);
    assert_eq!(param(&pairs, "error"), Some("access_denied"));
    assert_eq!(param(&pairs, "state"), Some("s1"));
    assert_eq!(param(&pairs, "code"), None);

    // Unknown paths under a shop answer in Shopify's error shape.
    let reply = h.get(&format!("/shopify/{SHOP}/admin/nothing"), None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json(), json!({"errors": "Not Found"}));
}

#[tokio::test]
async fn counters_and_faults_work_for_shopify_endpoints() {
    let h = harness(1);
    let code = h.shopify_code(SHOP).await;
    h.shopify_exchange_code(SHOP, &code).await;

    // A 503 on the authorize page.
    let reply = h
        .post_json(
            "/__sandbox/faults",
            json!({"endpoint": "shopify.oauth.authorize", "status": 503}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json());
    let reply = h.shopify_authorize(SHOP, "s").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.header("location").is_none());
    assert_eq!(
        h.shopify_authorize(SHOP, "s").await.status,
        StatusCode::FOUND
    );

    // A 400 on the token endpoint answers Shopify's error body without spending the code.
    let code = h.shopify_code(SHOP).await;
    h.post_json(
        "/__sandbox/faults",
        json!({"endpoint": "shopify.oauth.access_token", "status": 400}),
    )
    .await;
    let reply = h.shopify_exchange_code(SHOP, &code).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"], "invalid_request");
    assert_eq!(
        h.shopify_exchange_code(SHOP, &code).await.status,
        StatusCode::OK
    );

    // A 500 with a custom body, after one request passes.
    h.post_json(
        "/__sandbox/faults",
        json!({"endpoint": "shopify.oauth.access_token", "status": 500, "after": 1,
               "body": {"errors": "boom"}}),
    )
    .await;
    let code = h.shopify_code(SHOP).await;
    assert_eq!(
        h.shopify_exchange_code(SHOP, &code).await.status,
        StatusCode::OK
    );
    let reply = h.shopify_exchange_code(SHOP, "whatever").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.json(), json!({"errors": "boom"}));

    let counters = h.counters().await;
    assert_eq!(counters["requests"]["shopify.oauth.authorize"], 5);
    assert_eq!(counters["requests"]["shopify.oauth.access_token"], 5);
    assert_eq!(counters["statuses"]["shopify.oauth.authorize"]["503"], 1);
    assert_eq!(counters["statuses"]["shopify.oauth.authorize"]["302"], 4);
    assert_eq!(counters["statuses"]["shopify.oauth.access_token"]["200"], 3);
    assert_eq!(counters["statuses"]["shopify.oauth.access_token"]["400"], 1);
    assert_eq!(counters["statuses"]["shopify.oauth.access_token"]["500"], 1);
    // Injected faults are not handler refusals.
    assert_eq!(counters["shopify_code_exchange_failures"], 0);
    assert_eq!(counters["requests"]["keap.oauth.token"], 0);

    let log = h
        .get("/__sandbox/requests?endpoint=shopify.oauth.authorize", None)
        .await
        .json();
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 5);
    assert_eq!(log[1]["fault"], true);
    assert!(log[0]["path_and_query"]
        .as_str()
        .unwrap()
        .starts_with(&format!("/shopify/{SHOP}/admin/oauth/authorize?client_id=")));

    h.post_json("/__sandbox/counters/reset", json!({})).await;
    assert_eq!(
        h.counters().await["requests"]["shopify.oauth.access_token"],
        0
    );
}

#[tokio::test]
async fn control_issues_and_revokes_shopify_tokens() {
    let h = harness(1);
    let reply = h
        .post_json(
            "/__sandbox/shopify/tokens",
            json!({"shop": "Acme.myshopify.com"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json());
    let body = reply.json();
    assert_eq!(body["shop"], SHOP);
    assert_eq!(body["scope"], crate::shopify::oauth::DEFAULT_SCOPES);
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("shpat_"));
    assert!(h.state.shopify_token_valid(SHOP, &token));

    let reply = h
        .post_json(
            "/__sandbox/shopify/tokens",
            json!({"shop": "b.myshopify.com", "scope": "read_products, write_products"}),
        )
        .await;
    assert_eq!(reply.json()["scope"], "read_products,write_products");

    for bad in [
        json!({"shop": "evil.com"}),
        json!({"shop": SHOP, "scope": "Read"}),
        json!({"shopp": SHOP}),
    ] {
        let reply = h.post_json("/__sandbox/shopify/tokens", bad.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }

    let stats = h.get("/__sandbox/tokens", None).await.json();
    assert_eq!(
        stats["shopify"]["shops"],
        json!(["acme.myshopify.com", "b.myshopify.com"])
    );
    // Offline tokens do not expire: expire-all leaves them alone.
    h.post_json("/__sandbox/tokens/expire-all", json!({})).await;
    assert!(h.state.shopify_token_valid(SHOP, &token));
    // Revoke-all is an uninstall everywhere.
    let reply = h.post_json("/__sandbox/tokens/revoke-all", json!({})).await;
    assert_eq!(reply.json()["revoked_shopify_tokens"], 2);
    assert!(!h.state.shopify_token_valid(SHOP, &token));
}

#[tokio::test]
async fn state_file_keeps_shopify_tokens() {
    let path = std::env::temp_dir().join(format!(
        "provider-sandbox-shopify-state-{}-{}.json",
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
    let code = first.shopify_code(SHOP).await;
    let token = first.shopify_exchange_code(SHOP, &code).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = harness_with(config);
    assert!(second.state.restore().unwrap());
    assert!(second.state.shopify_token_valid(SHOP, &token));
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn configured_client_secret_signs_and_checks() {
    let h = harness_with(SandboxConfig {
        keap_contacts: 1,
        shopify_client_id: "my-app".to_owned(),
        shopify_client_secret: crate::Secret::new("shpss_custom"),
        log_requests: false,
        ..SandboxConfig::default()
    });
    let reply = h
        .get(
            &format!(
                "/shopify/{SHOP}/admin/oauth/authorize?client_id=my-app&scope=read_products&redirect_uri={}&state=abc",
                enc(REDIRECT)
            ),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::FOUND);
    let (_, pairs) = location_pairs(&reply);
    assert_eq!(
        param(&pairs, "hmac").unwrap(),
        expected_hmac(&pairs, "shpss_custom")
    );
    let code = param(&pairs, "code").unwrap();
    let reply = h
        .shopify_exchange(
            SHOP,
            json!({"client_id": "my-app", "client_secret": "shpss_custom", "code": code}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["scope"], "read_products");
}
