//! Repository connections (operator): `POST /coordinator/connections` with
//! `"provider": "github" | "gitlab" | "bitbucket"` connects one (its webhook registered at
//! the host with a secret of its own), and `/coordinator/connections/{id}/...` for a
//! repository connection: view, delete (the webhook removed), poll now, recent pull
//! requests, one pull request, the build status of a branch or commit, and the artifacts
//! (release notes, changelog entry, RFC outline, ADR). Served by the connection's own
//! Durable Object.

use edge_sync_shared::{
    auth::Capability,
    code_repos::{
        api::RepoRequest,
        connection::{
            repo_connection_id, repo_webhook_path, RepoConnectRequest, RepoIndexEntry,
            StoreRepoConnection,
        },
    },
    coordinator_api::{self as api, PollRepo},
    event_loop::schedule::DEFAULT_STALE_AFTER_DAYS,
};
use edge_sync_worker_kit::{auth::require, HttpError, HttpResult};
use worker::{Env, Method, Request};

use super::query;
use crate::durable_object::{self, SYSTEM_INSTANCE};

/// Whether a connection request body names a repository host.
pub fn names_repository_host(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("provider")
                .and_then(|p| p.as_str())
                .map(str::to_owned)
        })
        .is_some_and(|p| {
            p.parse::<edge_sync_shared::code_repos::connection::RepoHost>()
                .is_ok()
        })
}

/// `POST /coordinator/connections` for a repository (operator, checked by the caller): 201
/// with the connection (no token), 400 for a bad request or a token the host refuses, 404
/// when the host does not know the repository.
pub async fn connect(body: &str, env: &Env) -> HttpResult {
    let request: RepoConnectRequest = serde_json::from_str(body).map_err(|e| {
        HttpError::bad_request(format!(
            "body must be JSON {{provider, user_id, repository, access_token, base_url?}}: {e}"
        ))
    })?;
    let (request, api_base) = request
        .validated()
        .map_err(|e| HttpError::bad_request(e.to_string()))?;
    let id = repo_connection_id(
        request.provider,
        &api_base,
        &request.repository,
        &request.user_id,
    );
    let webhook_url = crate::config::webhook_registration(env)
        .webhook_base_url
        .map(|base| format!("{base}{}", repo_webhook_path(&id)));
    let store = StoreRepoConnection {
        id: id.clone(),
        user_id: request.user_id.clone(),
        provider: request.provider,
        repository: request.repository.clone(),
        api_base,
        access_token: request.access_token.expose().to_owned(),
        webhook_url,
    };
    let response = durable_object::send(env, &id, Method::Put, "/internal/repo", &store).await?;
    if response.status_code() != 200 {
        return Ok(response);
    }
    durable_object::send(
        env,
        SYSTEM_INSTANCE,
        Method::Put,
        "/internal/repos",
        &RepoIndexEntry {
            id,
            user_id: request.user_id,
            provider: request.provider,
            repository: request.repository,
        },
    )
    .await?;
    Ok(response.with_status(201))
}

/// Every repository connection's view (for the operator's connection list).
pub async fn list(env: &Env) -> Result<Vec<serde_json::Value>, HttpError> {
    let mut index = durable_object::call_system(env, "/internal/repos").await?;
    let entries: Vec<RepoIndexEntry> = durable_object::read(&mut index).await?;
    let mut views = Vec::with_capacity(entries.len());
    for entry in entries {
        let mut response =
            durable_object::call(env, &entry.id, Method::Get, "/internal/repo", None).await?;
        if response.status_code() == 200 {
            views.push(durable_object::read(&mut response).await?);
        }
    }
    Ok(views)
}

/// `/coordinator/connections/{id}/...` of a repository connection (operator).
pub async fn forward(mut req: Request, env: &Env, id: &str, rest: &[&str]) -> HttpResult {
    require(&req, env, Capability::Operate)?;
    let method = req.method();
    let ask = |request: RepoRequest| -> Result<serde_json::Value, HttpError> {
        serde_json::to_value(request).map_err(|e| HttpError::internal(e.to_string()))
    };
    let number = |text: &str| -> Result<u64, HttpError> {
        text.parse()
            .map_err(|_| HttpError::bad_request("the number must be a positive integer"))
    };
    let (path, body) = match (&method, rest) {
        (Method::Get, []) => ("/internal/repo", None),
        (Method::Delete, []) => {
            let response =
                durable_object::call(env, id, Method::Delete, "/internal/repo", None).await?;
            if response.status_code() == 200 {
                durable_object::call(
                    env,
                    SYSTEM_INSTANCE,
                    Method::Delete,
                    &format!("/internal/repos/{id}"),
                    None,
                )
                .await?;
            }
            return Ok(response);
        }
        (Method::Post, ["poll"]) => {
            let days = match query(&req, "stale_after_days")? {
                Some(d) => d
                    .parse()
                    .ok()
                    .filter(|d| (1..=365).contains(d))
                    .ok_or_else(|| HttpError::bad_request("stale_after_days must be 1 to 365"))?,
                None => DEFAULT_STALE_AFTER_DAYS,
            };
            let body = serde_json::to_value(PollRepo {
                stale_after_days: days,
            })
            .map_err(|e| HttpError::internal(e.to_string()))?;
            ("/internal/repo/poll", Some(body))
        }
        (Method::Get, ["pulls"]) => ("/internal/repo/query", Some(ask(RepoRequest::RecentPulls)?)),
        (Method::Get, ["pulls", n]) => (
            "/internal/repo/query",
            Some(ask(RepoRequest::Pull { number: number(n)? })?),
        ),
        (Method::Get, ["builds", reference @ ..]) => {
            // `builds/{ref}` (a branch with slashes keeps them) or `builds?ref=`.
            let reference = match (query(&req, "ref")?, reference.is_empty()) {
                (Some(r), _) => r,
                (None, false) => reference.join("/"),
                (None, true) => return Err(HttpError::bad_request("name a branch or commit")),
            };
            (
                "/internal/repo/query",
                Some(ask(RepoRequest::BuildStatus { reference })?),
            )
        }
        (Method::Post, ["artifacts", kind]) => {
            let text = req
                .text()
                .await
                .map_err(|_| HttpError::bad_request("unreadable body"))?;
            let mut value: serde_json::Value = if text.trim().is_empty() {
                serde_json::json!({})
            } else {
                serde_json::from_str(&text)
                    .map_err(|_| HttpError::bad_request("body must be a JSON object"))?
            };
            let query = match *kind {
                "release-notes" => "release_notes",
                "changelog" => "changelog",
                "rfc" => "rfc",
                "adr" => "adr",
                _ => {
                    return Err(HttpError::new(
                        404,
                        "artifacts are release-notes, changelog, rfc and adr",
                    ))
                }
            };
            let object = value
                .as_object_mut()
                .ok_or_else(|| HttpError::bad_request("body must be a JSON object"))?;
            object.insert("query".into(), query.into());
            let request: RepoRequest = api::decode(&value.to_string())
                .map_err(|e| HttpError::bad_request(e.to_string()))?;
            ("/internal/repo/query", Some(ask(request)?))
        }
        _ => return Err(HttpError::not_found()),
    };
    let method = if body.is_some() { Method::Post } else { method };
    Ok(durable_object::call(env, id, method, path, body.as_ref()).await?)
}
