//! Dev-only routes from the seed, answered only when `ENABLE_TEST_ROUTES=true`:
//! `POST /test/webhook/echo` and `POST /test/webhook/generate/{platform}/{topic}`, which
//! returns a correctly signed sample delivery (path, headers, body) to replay with curl.

use edge_sync_shared::webhook::{sign_github, sign_keap, sign_shopify, sign_standard_webhook};
use edge_sync_worker_kit::{clock, http::json_response, HttpError, HttpResult};
use serde_json::{json, Value};
use worker::Request;

use crate::config::{names, WebhookConfig};

/// Dispatches `/test/...` (segments after `test`).
pub async fn dispatch(mut req: Request, config: &WebhookConfig, segments: &[&str]) -> HttpResult {
    match segments {
        ["webhook", "echo"] => {
            let body = req.text().await.unwrap_or_default();
            let headers: Vec<(String, String)> = req
                .headers()
                .entries()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
                .collect();
            Ok(json_response(
                200,
                &json!({ "method": req.method().to_string(), "headers": headers, "body": body }),
            )?)
        }
        ["webhook", "generate", platform, topic @ ..] if !topic.is_empty() => {
            generate(config, platform, &topic.join("/"))
        }
        _ => Err(HttpError::not_found()),
    }
}

fn id() -> String {
    edge_sync_worker_kit::random::hex_id().unwrap_or_default()
}

fn generate(config: &WebhookConfig, platform: &str, topic: &str) -> HttpResult {
    let missing = |name: &str| HttpError::new(409, format!("{name} is not configured"));
    let (path, headers, body): (String, Vec<(&str, String)>, Value) = match platform {
        "shopify" => {
            let secret = config
                .shopify_secrets()
                .first()
                .ok_or_else(|| missing(names::SHOPIFY_CLIENT_SECRET))?;
            let body = json!({ "id": 788_032_119_674_292_922_u64, "title": "Sample product", "handle": "sample-product", "status": "active",
                "vendor": "Edge Sync", "product_type": "sample", "created_at": "2026-01-01T00:00:00Z", "updated_at": clock::now().to_iso8601(), "variants": [] });
            let text = body.to_string();
            (
                "/webhooks/shopify".into(),
                vec![
                    ("X-Shopify-Topic", topic.to_owned()),
                    (
                        "X-Shopify-Hmac-Sha256",
                        sign_shopify(text.as_bytes(), secret),
                    ),
                    ("X-Shopify-Shop-Domain", "your-shop.myshopify.com".into()),
                    ("X-Shopify-Webhook-Id", id()),
                    ("X-Shopify-Event-Id", id()),
                    ("X-Shopify-Triggered-At", clock::now().to_iso8601()),
                ],
                body,
            )
        }
        "github" => {
            let secret = config
                .github_secret()
                .ok_or_else(|| missing(names::GITHUB_WEBHOOK_SECRET))?;
            let body = json!({ "ref": "refs/heads/main", "repository": { "full_name": "example/repo" }, "commits": [] });
            let text = body.to_string();
            (
                "/webhooks/code-repo".into(),
                vec![
                    ("X-GitHub-Event", topic.to_owned()),
                    ("X-GitHub-Delivery", id()),
                    ("X-Hub-Signature-256", sign_github(text.as_bytes(), secret)),
                ],
                body,
            )
        }
        "keap" => {
            let secret = config
                .keap_secret()
                .ok_or_else(|| missing(names::KEAP_WEBHOOK_SECRET))?;
            let object = topic.split('.').next().unwrap_or("contact");
            let body = json!({ "event_key": topic, "object_type": object, "object_keys": [{ "id": 1, "apiUrl": "", "timestamp": clock::now().to_iso8601() }] });
            let text = body.to_string();
            (
                "/webhook".into(),
                vec![("X-Hook-Signature", sign_keap(text.as_bytes(), secret))],
                body,
            )
        }
        "standard" => {
            let source = topic.split('/').next().unwrap_or("billing");
            let (name, secret) = config.standard_secret(source);
            let secret = secret.ok_or_else(|| missing(&name))?;
            let body = json!({ "type": "sample.created", "data": { "id": id() } });
            let text = body.to_string();
            let (msg_id, ts) = (format!("msg_{}", id()), clock::now().as_millis() / 1000);
            let signature = sign_standard_webhook(&msg_id, ts, text.as_bytes(), &secret)
                .ok_or_else(|| missing(&name))?;
            (
                format!("/webhooks/standard/{source}"),
                vec![
                    ("webhook-id", msg_id),
                    ("webhook-timestamp", ts.to_string()),
                    ("webhook-signature", signature),
                ],
                body,
            )
        }
        _ => {
            return Err(HttpError::new(
                404,
                "platform must be shopify, github, keap or standard",
            ))
        }
    };
    let headers: serde_json::Map<String, Value> = headers
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v)))
        .collect();
    Ok(json_response(
        200,
        &json!({ "method": "POST", "path": path, "headers": headers, "body": body.to_string() }),
    )?)
}
