//! Keap REST hooks. Keap signs nothing (developer.infusionsoft.com/docs/rest/#tag/REST-Hooks):
//! each hook URL carries an unguessable per-hook token (`POST /webhook/keap/{hook_token}`),
//! which is what authenticates those deliveries; the seed's `X-Hook-Signature` HMAC
//! (`KEAP_WEBHOOK_SECRET`) belongs to the seed route `POST /webhook` only, since demanding it
//! on hook URLs would refuse every real Keap delivery and get the hooks deactivated. Keap's
//! verification handshake (`X-Hook-Secret`) is answered 200 echoing the header, and the hook
//! is marked verified.

use edge_sync_shared::{
    auth::Caller,
    webhook::{classify_keap, verify_keap_signature, VerifyError},
    Provider,
};
use edge_sync_worker_kit::{coordinator, HttpError, HttpResult, RequestContext};
use worker::{Env, Method, Request, Response};

use super::{header, malformed, unauthorized};
use crate::{
    body::read_limited,
    config::WebhookConfig,
    handoff::{self, Destination},
};

/// Answers the handshake: 200 with the same `X-Hook-Secret`.
fn handshake(secret: &str) -> HttpResult {
    let mut response = Response::ok("")?;
    response.headers_mut().set("X-Hook-Secret", secret)?;
    Ok(response)
}

/// `POST /webhook/keap/{hook_token}`.
pub async fn hook_route(
    mut req: Request,
    env: &Env,
    config: &WebhookConfig,
    ctx: &RequestContext,
    token: &str,
) -> HttpResult {
    let valid = !token.is_empty()
        && token.len() <= 128
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(HttpError::new(404, "unknown hook").with_reason("malformed hook token"));
    }
    let body = read_limited(&mut req, config.max_body_bytes()).await?;
    if let Some(secret) = header(&req, "X-Hook-Secret") {
        // The handshake (once per hook): the hook must exist, then it is marked verified.
        require_hook(env, ctx, token).await?;
        coordinator::call(
            env,
            Caller::WebhookHandler,
            Method::Post,
            &format!("/coordinator/hooks/{token}/verified"),
            None,
            &ctx.request_id,
        )
        .await
        .map_err(|e| HttpError::new(503, "coordinator unavailable").with_reason(e.to_string()))?;
        return handshake(&secret);
    }
    match classify_keap(&body) {
        // The coordinator finds the hook's connection: one call per delivery.
        Ok(event) => handoff::store(env, config, ctx, event, Destination::KeapHook(token)).await,
        // An unknown hook is 404 whatever it was sent; only a known one's body is judged.
        Err(e) => {
            require_hook(env, ctx, token).await?;
            Err(malformed(e))
        }
    }
}

/// Refuses (404) a token no hook has.
async fn require_hook(env: &Env, ctx: &RequestContext, token: &str) -> Result<(), HttpError> {
    let lookup = coordinator::call(
        env,
        Caller::WebhookHandler,
        Method::Get,
        &format!("/coordinator/hooks/{token}"),
        None,
        &ctx.request_id,
    )
    .await
    .map_err(|e| HttpError::new(503, "coordinator unavailable").with_reason(e.to_string()))?;
    match lookup.status_code() {
        200 => Ok(()),
        404 => Err(HttpError::new(404, "unknown hook").with_reason("unknown hook token")),
        status => Err(HttpError::new(503, "coordinator unavailable")
            .with_reason(format!("hook lookup {status}"))),
    }
}

/// `POST /webhook` (the seed's route): requires the seed's `X-Hook-Signature` HMAC (with
/// no per-hook token there is nothing else to authenticate by); the connection is
/// `?connection=` or the only Keap connection.
pub async fn seed_route(
    mut req: Request,
    env: &Env,
    config: &WebhookConfig,
    ctx: &RequestContext,
) -> HttpResult {
    let body = read_limited(&mut req, config.max_body_bytes()).await?;
    let Some(secret) = config.keap_secret() else {
        return Err(unauthorized(VerifyError::Missing)
            .with_reason("POST /webhook needs KEAP_WEBHOOK_SECRET; use the per-hook URL"));
    };
    if let Some(handshake_secret) = header(&req, "X-Hook-Secret") {
        return handshake(&handshake_secret);
    }
    verify_keap_signature(&body, header(&req, "X-Hook-Signature").as_deref(), secret)
        .map_err(unauthorized)?;
    let event = classify_keap(&body).map_err(malformed)?;
    let wanted = req
        .url()?
        .query_pairs()
        .find(|(k, _)| k == "connection")
        .map(|(_, v)| v.into_owned());
    let keap = handoff::connections(env, ctx, Provider::Keap).await?;
    let connection = match &wanted {
        Some(id) => keap.iter().find(|c| &c.id == id),
        None if keap.len() == 1 => keap.first(),
        None => None,
    };
    let Some(connection) = connection else {
        return Err(HttpError::new(404, "unknown connection")
            .with_reason("no single Keap connection; pass ?connection="));
    };
    handoff::store(
        env,
        config,
        ctx,
        event,
        Destination::Connection(&connection.id),
    )
    .await
}
