//! Suggestions and what steers them (operators; the user's own app may also write
//! `user_preferences` in Supabase directly):
//! - `GET`/`PUT /coordinator/users/{user_id}/preferences`
//! - `GET /coordinator/suggestions?user_id=&status=`, `GET /coordinator/suggestions/{id}`,
//!   `POST /coordinator/suggestions/{id}/accept|dismiss` (sets the event's `user_actioned`)
//! - `GET /coordinator/agent-runs?user_id=&status=`, `POST /coordinator/agent-runs/{id}/retry`
//! - `POST /coordinator/users/{user_id}/live/ticket`, then
//!   `GET /coordinator/users/{user_id}/live?ticket=` (WebSocket or Server-Sent Events)

use edge_sync_shared::{
    auth::Capability,
    coordinator_api::{LiveMessage, UserNotice},
    suggestions::{PreferencesError, SuggestionAction, UserPreferences},
    user_token::verify_supabase_token,
};
use edge_sync_worker_kit::{
    auth::{require, secret},
    clock, HttpError, HttpResult,
};
use serde::Serialize;
use worker::{Env, Method, Request, RequestInit, Response};

use super::{database, is_uuid, query};
use crate::{
    config::SUPABASE_JWT_SECRET,
    durable_object::{self, user_instance},
    suggestions::store::{self, Actioned},
};

/// Longest list answered.
const MAX_LIST: i64 = 500;

fn unavailable(e: String) -> HttpError {
    HttpError::new(503, "database unavailable").with_reason(e)
}

/// A user id as it may appear in a path and an instance name.
pub(super) fn checked_user(user_id: &str) -> Result<&str, HttpError> {
    let valid = !user_id.is_empty()
        && user_id.len() <= 128
        && user_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if valid {
        Ok(user_id)
    } else {
        Err(HttpError::bad_request("invalid user id"))
    }
}

/// `GET /coordinator/users/{user_id}/preferences` (defaults when none were set).
pub async fn get_preferences(req: &Request, env: &Env, user_id: &str) -> HttpResult {
    require(req, env, Capability::Operate)?;
    let user_id = checked_user(user_id)?;
    let client = database(env).await?;
    match store::preferences(&client, user_id)
        .await
        .map_err(unavailable)?
    {
        Ok(preferences) => Ok(Response::from_json(&preferences)?),
        // The user's app wrote a row that is not acceptable: say so (409), so it is fixed.
        Err(e) => Err(HttpError::new(
            409,
            format!("stored preferences are not acceptable: {e}"),
        )),
    }
}

/// `PUT /coordinator/users/{user_id}/preferences`: replaces them (400 naming what is wrong).
pub async fn put_preferences(mut req: Request, env: &Env, user_id: &str) -> HttpResult {
    require(&req, env, Capability::Operate)?;
    let user_id = checked_user(user_id)?.to_owned();
    let body = req
        .text()
        .await
        .map_err(|_| HttpError::bad_request("body must be JSON"))?;
    let preferences = UserPreferences::from_put_body(body.as_bytes()).map_err(|e| {
        let status = if matches!(e, PreferencesError::TooLarge) {
            413
        } else {
            400
        };
        HttpError::new(status, format!("invalid preferences: {e}"))
    })?;
    let client = database(env).await?;
    store::save_preferences(&client, &user_id, &preferences)
        .await
        .map_err(unavailable)?;
    Ok(Response::from_json(&preferences)?)
}

#[derive(Serialize)]
struct Suggestions {
    suggestions: Vec<store::SuggestionView>,
}

#[derive(Serialize)]
struct AgentRuns {
    agent_runs: Vec<store::AgentRunView>,
}

/// `status=` when given, checked against `allowed`.
fn status_filter(req: &Request, allowed: &[&str]) -> Result<Option<String>, HttpError> {
    match query(req, "status")? {
        Some(s) if !allowed.contains(&s.as_str()) => Err(HttpError::bad_request(format!(
            "status must be one of: {}",
            allowed.join(", ")
        ))),
        other => Ok(other),
    }
}

/// `GET /coordinator/suggestions?user_id=U[&status=new|accepted|dismissed]`.
pub async fn list_suggestions(req: &Request, env: &Env) -> HttpResult {
    require(req, env, Capability::Operate)?;
    let user_id =
        query(req, "user_id")?.ok_or_else(|| HttpError::bad_request("user_id is required"))?;
    checked_user(&user_id)?;
    let status = status_filter(req, &["new", "accepted", "dismissed"])?;
    let client = database(env).await?;
    let suggestions = store::suggestions(&client, &user_id, status.as_deref(), MAX_LIST)
        .await
        .map_err(unavailable)?;
    Ok(Response::from_json(&Suggestions { suggestions })?)
}

/// `GET /coordinator/suggestions/{id}`.
pub async fn get_suggestion(req: &Request, env: &Env, id: &str) -> HttpResult {
    require(req, env, Capability::Operate)?;
    if !is_uuid(id) {
        return Err(HttpError::not_found());
    }
    let client = database(env).await?;
    match store::suggestion_by_id(&client, id)
        .await
        .map_err(unavailable)?
    {
        Some(suggestion) => Ok(Response::from_json(&suggestion)?),
        None => Err(HttpError::not_found()),
    }
}

/// `POST /coordinator/suggestions/{id}/accept|dismiss`: 200 with the suggestion; 409 when
/// it was already acted on the other way.
pub async fn action_suggestion(req: &Request, env: &Env, id: &str, action: &str) -> HttpResult {
    require(req, env, Capability::Operate)?;
    let action = match action {
        "accept" => SuggestionAction::Accept,
        "dismiss" => SuggestionAction::Dismiss,
        _ => return Err(HttpError::not_found()),
    };
    if !is_uuid(id) {
        return Err(HttpError::not_found());
    }
    let client = database(env).await?;
    match store::action(&client, id, action)
        .await
        .map_err(unavailable)?
    {
        Actioned::NotFound => Err(HttpError::not_found()),
        Actioned::Refused(why) => Err(HttpError::new(409, why.to_string())),
        Actioned::Done { user_id, changed } => {
            if changed {
                let message = LiveMessage::SuggestionActioned {
                    id: id.to_owned(),
                    status: action.target().as_str().to_owned(),
                };
                notify(env, &user_id, vec![message], false).await;
            }
            let suggestion = store::suggestion_by_id(&client, id)
                .await
                .map_err(unavailable)?
                .ok_or_else(HttpError::not_found)?;
            Ok(Response::from_json(&suggestion)?)
        }
    }
}

/// `GET /coordinator/agent-runs[?user_id=U][&status=running|retrying|succeeded|failed]`.
pub async fn list_runs(req: &Request, env: &Env) -> HttpResult {
    require(req, env, Capability::Operate)?;
    let user_id = query(req, "user_id")?;
    if let Some(user_id) = &user_id {
        checked_user(user_id)?;
    }
    let status = status_filter(req, &["running", "retrying", "succeeded", "failed"])?;
    let client = database(env).await?;
    let agent_runs = store::runs(&client, user_id.as_deref(), status.as_deref(), MAX_LIST)
        .await
        .map_err(unavailable)?;
    Ok(Response::from_json(&AgentRuns { agent_runs })?)
}

/// `POST /coordinator/agent-runs/{id}/retry`: a failed run goes back in line (202); 404 when
/// no failed run has that id.
pub async fn retry_run(req: &Request, env: &Env, id: &str) -> HttpResult {
    require(req, env, Capability::Operate)?;
    if !is_uuid(id) {
        return Err(HttpError::not_found());
    }
    let client = database(env).await?;
    let Some(user_id) = store::retry_failed(&client, id)
        .await
        .map_err(unavailable)?
    else {
        return Err(HttpError::new(404, "no failed agent run with this id"));
    };
    // The run is due in Postgres; waking the user's instance makes it run now. If the wake
    // fails, the next event of the user (or the next retry) picks it up.
    notify(env, &user_id, Vec::new(), true).await;
    Ok(
        Response::from_json(&serde_json::json!({ "id": id, "status": "retrying" }))?
            .with_status(202),
    )
}

/// Tells `user_id`'s instance (best effort: what it is told about is in Postgres).
async fn notify(env: &Env, user_id: &str, messages: Vec<LiveMessage>, process: bool) {
    let notice = UserNotice {
        user_id: user_id.to_owned(),
        messages,
        process,
    };
    let _ = durable_object::send(
        env,
        &user_instance(user_id),
        Method::Post,
        "/internal/user/notify",
        &notice,
    )
    .await;
}

/// `POST /coordinator/users/{user_id}/live/ticket`: a one-time ticket for the live stream,
/// for the operator, or for the user themselves with their Supabase access token (HS256,
/// verified with `SUPABASE_JWT_SECRET` when it is set; its `sub` must be `user_id`).
pub async fn live_ticket(req: &Request, env: &Env, user_id: &str) -> HttpResult {
    let user_id = checked_user(user_id)?;
    if let Err(refused) = require(req, env, Capability::Operate) {
        let jwt_secret = secret(env, SUPABASE_JWT_SECRET);
        let bearer = req
            .headers()
            .get("Authorization")?
            .and_then(|h| h.strip_prefix("Bearer ").map(str::to_owned));
        let user = match (jwt_secret.expose().is_empty(), bearer) {
            (false, Some(token)) => verify_supabase_token(&token, &jwt_secret, clock::now())
                .map_err(|e| HttpError::unauthorized(format!("user token: {e}")))?,
            _ => return Err(refused),
        };
        if user != user_id {
            return Err(HttpError::new(403, "forbidden")
                .with_reason("a user may open only their own live stream"));
        }
    }
    Ok(durable_object::call(
        env,
        &user_instance(user_id),
        Method::Post,
        &format!("/internal/user/{user_id}/ticket"),
        None,
    )
    .await?)
}

/// `GET /coordinator/users/{user_id}/live?ticket=T`: the live stream, authenticated by the
/// ticket alone (browsers cannot send headers with a WebSocket or `EventSource`); the user's
/// instance spends the ticket and answers with the WebSocket or the event stream.
pub async fn live_stream(req: &Request, env: &Env, user_id: &str) -> HttpResult {
    let user_id = checked_user(user_id)?;
    let ticket =
        query(req, "ticket")?.ok_or_else(|| HttpError::new(401, "a live ticket is required"))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get)
        .with_headers(req.headers().clone());
    let mut url = worker::Url::parse(&format!("https://user.do/internal/user/{user_id}/live"))
        .map_err(|e| HttpError::internal(e.to_string()))?;
    url.query_pairs_mut().append_pair("ticket", &ticket);
    let inner = Request::new_with_init(url.as_str(), &init)?;
    Ok(durable_object::stub(env, &user_instance(user_id))?
        .fetch_with_request(inner)
        .await?)
}
