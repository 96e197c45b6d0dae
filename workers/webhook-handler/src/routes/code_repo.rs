//! `POST /webhooks/code-repo`: GitHub (`X-Hub-Signature-256`), GitLab (`X-Gitlab-Token`) and
//! Bitbucket (`X-Hub-Signature`), told apart by their event headers.

use edge_sync_shared::webhook::{
    classify_git, verify_bitbucket, verify_github, verify_gitlab, GitHeaders, Source, VerifyError,
};
use edge_sync_worker_kit::{HttpError, HttpResult, RequestContext};
use worker::{Env, Request};

use super::{header, malformed, unauthorized};
use crate::config::{names, WebhookConfig};
use crate::{
    body::read_limited,
    handoff::{self, Destination},
};

/// Verifies with the sending host's secret, classifies, hands over.
pub async fn receive(
    mut req: Request,
    env: &Env,
    config: &WebhookConfig,
    ctx: &RequestContext,
) -> HttpResult {
    let body = read_limited(&mut req, config.max_body_bytes()).await?;
    let names = [
        "X-GitHub-Event",
        "X-GitHub-Delivery",
        "X-Gitlab-Event",
        "X-Gitlab-Event-UUID",
        "Idempotency-Key",
        "X-Event-Key",
        "X-Request-UUID",
    ];
    let values: Vec<Option<String>> = names.iter().map(|n| header(&req, n)).collect();
    let headers = GitHeaders {
        github_event: values[0].as_deref(),
        github_delivery: values[1].as_deref(),
        gitlab_event: values[2].as_deref(),
        gitlab_event_uuid: values[3].as_deref(),
        gitlab_idempotency_key: values[4].as_deref(),
        bitbucket_event_key: values[5].as_deref(),
        bitbucket_request_uuid: values[6].as_deref(),
    };
    let host = headers
        .host()
        .ok_or_else(|| HttpError::bad_request("not a GitHub, GitLab or Bitbucket delivery"))?;
    let missing_secret = |name: &str| {
        unauthorized(VerifyError::Mismatch).with_reason(format!("{name} is not configured"))
    };
    match host {
        Source::GitHub => {
            let secret = config
                .github_secret()
                .ok_or_else(|| missing_secret(names::GITHUB_WEBHOOK_SECRET))?;
            verify_github(
                &body,
                header(&req, "X-Hub-Signature-256").as_deref(),
                secret,
            )
        }
        Source::GitLab => {
            let secret = config
                .gitlab_token()
                .ok_or_else(|| missing_secret(names::GITLAB_WEBHOOK_TOKEN))?;
            verify_gitlab(header(&req, "X-Gitlab-Token").as_deref(), secret)
        }
        _ => {
            let secret = config
                .bitbucket_secret()
                .ok_or_else(|| missing_secret(names::BITBUCKET_WEBHOOK_SECRET))?;
            verify_bitbucket(&body, header(&req, "X-Hub-Signature").as_deref(), secret)
        }
    }
    .map_err(unauthorized)?;
    let (_, event) = classify_git(&headers, &body).map_err(malformed)?;
    handoff::store(env, config, ctx, event, Destination::Source).await
}
