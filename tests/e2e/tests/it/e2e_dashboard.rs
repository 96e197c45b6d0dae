//! The operator dashboard in a real browser: Debian's Chromium driven by playwright-core
//! (`tests/browser/dashboard.mjs`) against a whole local stack. Screenshots of each page go
//! to `target/dashboard-screenshots/`.

use edge_sync_e2e::{
    flows::{
        connect_keap, deliver_shopify, install_shopify, list_connections, product_body,
        wait_dead_letters,
    },
    stack::repo_root,
    Stack, StackOptions, WEBHOOK_SECRETS,
};
use serde_json::Value;

const USER: &str = "u-dash";
const SHOP: &str = "dash-shop.myshopify.com";

/// Proves, over HTTP: the page's content security policy allows only its own origin and it
/// loads nothing from elsewhere; the API answers 401 without a session; the session cookie
/// is `HttpOnly`, `Secure`, `SameSite=Strict` and scoped to `/dashboard`; a change without
/// the CSRF token, or from another origin, is 403. And in Chromium: a wrong token is refused and the operator's signs in (the token never
/// in the page); both sandbox connections are listed; the live stream opens; a sync started
/// from the page shows its count rising without a reload; a dead letter is replayed from the
/// page; a webhook delivered meanwhile appears live; a product titled
/// `<img src=x onerror=alert(1)>` shows as text in its suggestion (no element, no script);
/// the suggestion is accepted from the page; the session cookie is `HttpOnly`, `Secure`,
/// `SameSite=Strict`, and after sign-out the same cookie opens nothing.
#[tokio::test]
async fn the_dashboard_works_in_a_real_browser() {
    let stack = Stack::start_with(StackOptions {
        postgres_proxy: true,
        vars: vec![
            ("EVENT_MAX_ATTEMPTS".into(), "2".into()),
            ("EVENT_RETRY_MAX_MS".into(), "500".into()),
        ],
        ..StackOptions::default()
    })
    .await;
    connect_keap(&stack, USER).await;
    install_shopify(&stack, USER, SHOP).await;
    let connections = list_connections(&stack).await;
    let keap = connections
        .iter()
        .find(|c| c["provider"] == "keap" && c["user_id"] == USER)
        .and_then(|c| c["id"].as_str())
        .expect("keap connected")
        .to_owned();

    // A dead letter: a delivery that cannot reach Postgres twice.
    stack.set_postgres_down(true);
    let (status, _) = deliver_shopify(
        &stack,
        "products/create",
        SHOP,
        "dash-dead",
        &product_body(8_800_000, "Dead letter lamp"),
    )
    .await;
    assert_eq!(status, 200);
    let dead = wait_dead_letters(&stack, 1).await;
    assert_eq!(dead.len(), 1, "the delivery is dead-lettered: {dead:?}");
    stack.set_postgres_down(false);

    // Over plain HTTP, what the browser relies on: the page's policy, the cookie's flags, no
    // API without a session, no change without the CSRF token.
    let page = stack
        .http
        .get(format!("{}/dashboard", stack.coordinator))
        .send()
        .await
        .expect("page");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let html = page.text().await.unwrap_or_default();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no CDN: {html}"
    );
    let api = format!(
        "{}/dashboard/api/coordinator/connections",
        stack.coordinator
    );
    assert_eq!(
        stack
            .http
            .get(&api)
            .send()
            .await
            .expect("api")
            .status()
            .as_u16(),
        401
    );
    let signed_in = stack
        .http
        .post(format!("{}/dashboard/session", stack.coordinator))
        .json(&serde_json::json!({ "token": stack.admin_token }))
        .send()
        .await
        .expect("sign in");
    assert_eq!(signed_in.status().as_u16(), 200);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/dashboard"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap_or_default().to_owned();
    let csrf = signed_in.json::<Value>().await.expect("csrf")["csrf"]
        .as_str()
        .expect("csrf")
        .to_owned();
    let start = format!(
        "{}/dashboard/api/coordinator/event-loop/{USER}/start",
        stack.coordinator
    );
    let forged = stack
        .http
        .post(&start)
        .header("Cookie", &session)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("forged");
    assert_eq!(forged.status().as_u16(), 403, "no CSRF token: refused");
    let other_origin = stack
        .http
        .post(&start)
        .header("Cookie", &session)
        .header("X-CSRF-Token", &csrf)
        .header("Origin", "https://evil.example")
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("cross-origin");
    assert_eq!(
        other_origin.status().as_u16(),
        403,
        "another origin: refused"
    );
    let listed = stack
        .http
        .get(&api)
        .header("Cookie", &session)
        .send()
        .await
        .expect("listed");
    assert_eq!(listed.status().as_u16(), 200);

    let root = repo_root();
    let screenshots = root.join("target/dashboard-screenshots");
    // Awaited, not blocking: the test's runtime also runs the database proxy.
    let output = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/dashboard.mjs"))
        .current_dir(&root)
        .env("COORDINATOR_URL", &stack.coordinator)
        .env("WEBHOOK_HANDLER_URL", &stack.webhook_handler)
        .env("ADMIN_TOKEN", &stack.admin_token)
        .env("USER_ID", USER)
        .env("KEAP_CONNECTION_ID", &keap)
        .env("SHOP", SHOP)
        .env("SHOPIFY_SECRET", WEBHOOK_SECRETS.shopify)
        .env("SCREENSHOTS", &screenshots)
        .output()
        .await
        .expect("node runs tests/browser/dashboard.mjs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    for step in [
        "a wrong token is refused",
        "a sync started from the page shows its count rising, live",
        "a dead letter is replayed from the page",
        "a webhook-delivered event appears live",
        "a script-injection attempt in event data renders as text",
        "a suggestion is accepted from the page",
        "sign-out ends access",
    ] {
        assert!(stdout.contains(step), "missing step `{step}`:\n{stdout}");
    }
}
