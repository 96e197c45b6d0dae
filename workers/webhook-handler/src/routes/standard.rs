//! `POST /webhooks/standard/{source}`: Standard Webhooks (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`; several signatures during rotation; 5-minute tolerance). Each source
//! has its own secret `STANDARD_WEBHOOK_SECRET_<SOURCE>`; an unconfigured source is 404.

use edge_sync_shared::webhook::{
    classify_standard, verify_standard_webhook, StandardWebhookHeaders,
};
use edge_sync_worker_kit::{clock, HttpError, HttpResult, RequestContext};
use worker::{Env, Request};

use super::{header, malformed, unauthorized};
use crate::{
    body::read_limited,
    config::WebhookConfig,
    handoff::{self, Destination},
};

/// Verifies against the source's secret, classifies, hands over.
pub async fn receive(
    mut req: Request,
    env: &Env,
    config: &WebhookConfig,
    ctx: &RequestContext,
    source: &str,
) -> HttpResult {
    let valid = !source.is_empty()
        && source.len() <= 64
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let unknown = |why: String| HttpError::new(404, "unknown webhook source").with_reason(why);
    if !valid {
        return Err(unknown("malformed source name".to_owned()));
    }
    let (secret_name, secret) = config.standard_secret(source);
    let secret = secret.ok_or_else(|| unknown(format!("{secret_name} is not configured")))?;
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
    handoff::store(env, config, ctx, event, Destination::Source).await
}
