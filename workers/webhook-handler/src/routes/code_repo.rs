//! `POST /webhooks/code-repo`: GitHub (`X-Hub-Signature-256`), GitLab (`X-Gitlab-Token`) and
//! Bitbucket (`X-Hub-Signature`), told apart by their event headers, verified with the
//! deployment's secret per host; and `POST /webhooks/code-repo/{connection_id}`: the webhook
//! a repository connection registered, verified with that repository's own secret (derived
//! from `REPO_WEBHOOK_SIGNING_KEY`) and stored in the connection's instance, where polling
//! stores what it finds too.

use edge_sync_shared::code_repos::connection::{repo_connection_host, repo_webhook_secret};
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

/// Verifies with the sending host's secret (the repository connection's own, on its
/// route), classifies, hands over.
pub async fn receive(
    mut req: Request,
    env: &Env,
    config: &WebhookConfig,
    ctx: &RequestContext,
    connection_id: Option<&str>,
) -> HttpResult {
    // A repository connection's route: its host is in its id, its secret derived from it.
    let repository = match connection_id {
        Some(id) => {
            let host = repo_connection_host(id).ok_or_else(HttpError::not_found)?;
            let key = config.repo_webhook_key().ok_or_else(|| {
                unauthorized(VerifyError::Mismatch).with_reason(format!(
                    "{} is not configured",
                    names::REPO_WEBHOOK_SIGNING_KEY
                ))
            })?;
            Some((id, host, repo_webhook_secret(key, id)))
        }
        None => None,
    };
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
    if let Some((_, connection_host, _)) = &repository {
        if connection_host.as_str() != host.as_str() {
            return Err(unauthorized(VerifyError::Mismatch)
                .with_reason("a delivery from another host than the connection's"));
        }
    }
    let own = repository.as_ref().map(|(_, _, secret)| secret);
    match host {
        Source::GitHub => {
            let secret = own
                .or(config.github_secret())
                .ok_or_else(|| missing_secret(names::GITHUB_WEBHOOK_SECRET))?;
            verify_github(
                &body,
                header(&req, "X-Hub-Signature-256").as_deref(),
                secret,
            )
        }
        Source::GitLab => {
            let secret = own
                .or(config.gitlab_token())
                .ok_or_else(|| missing_secret(names::GITLAB_WEBHOOK_TOKEN))?;
            verify_gitlab(header(&req, "X-Gitlab-Token").as_deref(), secret)
        }
        _ => {
            let secret = own
                .or(config.bitbucket_secret())
                .ok_or_else(|| missing_secret(names::BITBUCKET_WEBHOOK_SECRET))?;
            verify_bitbucket(&body, header(&req, "X-Hub-Signature").as_deref(), secret)
        }
    }
    .map_err(unauthorized)?;
    let (_, event) = classify_git(&headers, &body).map_err(malformed)?;
    let destination = match &repository {
        Some((id, _, _)) => Destination::Connection(id),
        None => Destination::Source,
    };
    handoff::store(env, config, ctx, event, destination).await
}
