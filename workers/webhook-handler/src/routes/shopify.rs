//! Shopify webhooks: `POST /webhooks/shopify` (shop from `X-Shopify-Shop-Domain`) and
//! `POST /webhook/shopify/{connection_id}`. HMAC-SHA256 of the raw body with the app secret
//! (either of two during rotation), checked before anything else; then the delivery must
//! belong to the connection it lands in, which the coordinator finds by the shop and checks
//! (`edge_sync_shared::webhook::shop`): every shop of the app signs with the same secret, so
//! a signature alone says nothing about the shop.

use edge_sync_shared::webhook::{classify_shopify, delivery_shop, verify_shopify};
use edge_sync_worker_kit::{HttpError, HttpResult, RequestContext};
use worker::{Env, Request};

use super::{header, malformed, unauthorized};
use crate::{
    body::read_limited,
    config::WebhookConfig,
    handoff::{self, Destination},
};

/// Verifies, classifies and hands over one delivery.
pub async fn receive(
    mut req: Request,
    env: &Env,
    config: &WebhookConfig,
    ctx: &RequestContext,
    connection_id: Option<&str>,
) -> HttpResult {
    let body = read_limited(&mut req, config.max_body_bytes()).await?;
    verify_shopify(
        &body,
        header(&req, "X-Shopify-Hmac-Sha256").as_deref(),
        config.shopify_secrets(),
    )
    .map_err(unauthorized)?;
    let topic = header(&req, "X-Shopify-Topic")
        .ok_or_else(|| HttpError::bad_request("missing X-Shopify-Topic"))?;
    let shop =
        delivery_shop(header(&req, "X-Shopify-Shop-Domain").as_deref(), &body).map_err(|e| {
            HttpError::new(401, "delivery does not belong to a known shop")
                .with_reason(e.to_string())
        })?;
    let event = classify_shopify(
        &topic,
        header(&req, "X-Shopify-Webhook-Id").as_deref(),
        header(&req, "X-Shopify-Event-Id").as_deref(),
        header(&req, "X-Shopify-Triggered-At").as_deref(),
        &body,
        config.low_stock_threshold(),
    )
    .map_err(malformed)?;
    handoff::store(
        env,
        config,
        ctx,
        event,
        Destination::Shop {
            shop: &shop,
            route_connection: connection_id,
        },
    )
    .await
}
