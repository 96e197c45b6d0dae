//! Users' background loops (operators):
//! - `POST /coordinator/event-loop/{user_id}/start` (optional `{"interval_secs": N,
//!   "watchers": [...]}`), `POST /coordinator/event-loop/{user_id}/stop`,
//!   `GET /coordinator/event-loop/{user_id}`: served by the user's instance;
//! - `POST /coordinator/event-loop/start-all`: starts the loop of every user with an active
//!   connection (default config, or the body's).

use std::collections::BTreeSet;

use edge_sync_shared::{auth::Capability, token_lifecycle::ConnectionStatus};
use edge_sync_worker_kit::{auth::require, HttpError, HttpResult};
use serde::Serialize;
use worker::{Env, Method, Request, Response};

use super::{connections::active_users, suggestions::checked_user};
use crate::durable_object::{self, user_instance};

/// `POST .../{user_id}/start|stop` and `GET .../{user_id}`.
pub async fn user_loop(
    mut req: Request,
    env: &Env,
    user_id: &str,
    action: Option<&str>,
) -> HttpResult {
    require(&req, env, Capability::Operate)?;
    let user_id = checked_user(user_id)?;
    let instance = user_instance(user_id);
    let response = match action {
        None => {
            durable_object::call(
                env,
                &instance,
                Method::Get,
                &format!("/internal/user/{user_id}/loop"),
                None,
            )
            .await?
        }
        Some("stop") => {
            durable_object::call(
                env,
                &instance,
                Method::Post,
                &format!("/internal/user/{user_id}/loop/stop"),
                None,
            )
            .await?
        }
        Some("start") => {
            let body = req
                .text()
                .await
                .map_err(|_| HttpError::bad_request("body must be JSON"))?;
            let body = if body.trim().is_empty() {
                None
            } else {
                Some(
                    serde_json::from_str::<serde_json::Value>(&body)
                        .map_err(|e| HttpError::bad_request(format!("body must be JSON: {e}")))?,
                )
            };
            durable_object::call(
                env,
                &instance,
                Method::Post,
                &format!("/internal/user/{user_id}/loop/start"),
                body.as_ref(),
            )
            .await?
        }
        Some(_) => return Err(HttpError::not_found()),
    };
    Ok(response)
}

#[derive(Serialize)]
struct StartedAll {
    started: Vec<String>,
    failed: Vec<String>,
}

/// `POST /coordinator/event-loop/start-all`.
pub async fn start_all(mut req: Request, env: &Env) -> HttpResult {
    require(&req, env, Capability::Operate)?;
    let body = req
        .text()
        .await
        .map_err(|_| HttpError::bad_request("body must be JSON"))?;
    let config = if body.trim().is_empty() {
        None
    } else {
        Some(
            serde_json::from_str::<serde_json::Value>(&body)
                .map_err(|e| HttpError::bad_request(format!("body must be JSON: {e}")))?,
        )
    };
    let users: BTreeSet<String> = active_users(env, ConnectionStatus::Active).await?;
    let mut answer = StartedAll {
        started: Vec::new(),
        failed: Vec::new(),
    };
    for user_id in users {
        let Ok(user) = checked_user(&user_id) else {
            answer.failed.push(user_id);
            continue;
        };
        let started = durable_object::call(
            env,
            &user_instance(user),
            Method::Post,
            &format!("/internal/user/{user}/loop/start"),
            config.as_ref(),
        )
        .await;
        match started {
            Ok(r) if r.status_code() == 200 => answer.started.push(user_id),
            Ok(r) if r.status_code() == 400 => return Ok(r),
            _ => answer.failed.push(user_id),
        }
    }
    Ok(Response::from_json(&answer)?)
}
