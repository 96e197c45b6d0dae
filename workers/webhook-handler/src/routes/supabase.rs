//! Supabase Database Webhooks: not signed
//! (<https://supabase.com/docs/guides/database/webhooks>), so authenticated by a shared secret
//! header configured on the trigger (`Authorization: Bearer <SUPABASE_WEBHOOK_SECRET>` or
//! `X-Webhook-Secret`), compared in constant time.

use edge_sync_shared::webhook::{classify_supabase, verify_shared_secret, VerifyError};
use edge_sync_worker_kit::{HttpResult, RequestContext};
use worker::{Env, Request};

use super::{header, malformed, unauthorized};
use crate::config::{names, WebhookConfig};
use crate::{
    body::read_limited,
    handoff::{self, Destination},
};

/// `POST /webhooks/supabase`.
pub async fn receive(
    mut req: Request,
    env: &Env,
    config: &WebhookConfig,
    ctx: &RequestContext,
) -> HttpResult {
    let body = read_limited(&mut req, config.max_body_bytes()).await?;
    let secret = config.supabase_secret().ok_or_else(|| {
        unauthorized(VerifyError::Mismatch).with_reason(format!(
            "{} is not configured",
            names::SUPABASE_WEBHOOK_SECRET
        ))
    })?;
    let presented = header(&req, "X-Webhook-Secret").or_else(|| header(&req, "Authorization"));
    verify_shared_secret(presented.as_deref(), secret).map_err(unauthorized)?;
    let event = classify_supabase(&body).map_err(malformed)?;
    handoff::store(env, config, ctx, event, Destination::Source).await
}
