//! `POST /webhooks/standard/{source}`: Standard Webhooks (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`; several signatures during rotation; 5-minute tolerance). Each source
//! has its own secret `STANDARD_WEBHOOK_SECRET_<SOURCE>`; an unconfigured source is 404.

use edge_sync_shared::webhook::{
    classify_standard, verify_standard_webhook, StandardWebhookHeaders,
};
use edge_sync_worker_kit::{clock, HttpError, HttpResult, RequestContext};
use worker::{Env, Request};

use super::{header, malformed, unauthorized};
use crate::{body::read_limited, config::WebhookConfig, handoff};

/// Verifies against the source's secret, classifies, hands over.
pub async fn receive(
    mut req: Request,
    env: &Env,
    ctx: &RequestContext,
    source: &str,
) -> HttpResult {
    let config = WebhookConfig::new(env);
    let valid = !source.is_empty()
        && source.len() <= 64
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let secret_name = format!(
        "STANDARD_WEBHOOK_SECRET_{}",
        source.to_ascii_uppercase().replace('-', "_")
    );
    let secret = valid
        .then(|| config.secret(&secret_name))
        .flatten()
        .ok_or_else(|| {
            HttpError::new(404, "unknown webhook source")
                .with_reason(format!("{secret_name} is not configured"))
        })?;
    let body = read_limited(&mut req, config.max_body_bytes()).await?;
    let (id, timestamp, signature) = (
        header(&req, "webhook-id"),
        header(&req, "webhook-timestamp"),
        header(&req, "webhook-signature"),
    );
    let headers = StandardWebhookHeaders {
        id: id.as_deref(),
        timestamp: timestamp.as_deref(),
        signature: signature.as_deref(),
    };
    verify_standard_webhook(&body, &headers, &secret, clock::now()).map_err(unauthorized)?;
    let event = classify_standard(
        &source.to_ascii_lowercase(),
        id.as_deref().unwrap_or_default(),
        &body,
    )
    .map_err(malformed)?;
    handoff::store(env, ctx, event, None).await
}
