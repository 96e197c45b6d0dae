//! Shopify webhooks: `POST /webhooks/shopify` (shop from `X-Shopify-Shop-Domain`) and
//! `POST /webhook/shopify/{connection_id}`. HMAC-SHA256 of the raw body with the app secret
//! (either of two during rotation), checked before anything else.

use edge_sync_shared::{
    webhook::{classify_shopify, verify_shopify},
    Provider,
};
use edge_sync_worker_kit::{HttpError, HttpResult, RequestContext};
use worker::{Env, Request};

use super::{header, malformed, unauthorized};
use crate::{body::read_limited, config::WebhookConfig, handoff};

/// Verifies, classifies and hands over one delivery.
pub async fn receive(
    mut req: Request,
    env: &Env,
    ctx: &RequestContext,
    connection_id: Option<&str>,
) -> HttpResult {
    let config = WebhookConfig::new(env);
    let body = read_limited(&mut req, config.max_body_bytes()).await?;
    verify_shopify(
        &body,
        header(&req, "X-Shopify-Hmac-Sha256").as_deref(),
        &config.shopify_secrets(),
    )
    .map_err(unauthorized)?;
    let topic = header(&req, "X-Shopify-Topic")
        .ok_or_else(|| HttpError::bad_request("missing X-Shopify-Topic"))?;
    let shop = header(&req, "X-Shopify-Shop-Domain").map(|s| s.to_ascii_lowercase());
    let event = classify_shopify(
        &topic,
        header(&req, "X-Shopify-Webhook-Id").as_deref(),
        header(&req, "X-Shopify-Event-Id").as_deref(),
        header(&req, "X-Shopify-Triggered-At").as_deref(),
        &body,
        config.low_stock_threshold(),
    )
    .map_err(malformed)?;
    let connection = handoff::find_connection(env, ctx, Provider::Shopify, shop.as_deref(), |c| {
        c["status"] == "active"
            && match connection_id {
                Some(id) => c["id"] == id && shop.as_deref().is_none_or(|s| c["account"] == s),
                None => shop.as_deref().is_some_and(|s| c["account"] == s),
            }
    })
    .await?;
    let Some(connection) = connection else {
        return Err(HttpError::new(404, "unknown connection")
            .with_reason(format!("no Shopify connection for {shop:?}")));
    };
    handoff::store(env, ctx, event, connection["id"].as_str()).await
}
