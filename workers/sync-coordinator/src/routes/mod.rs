//! Routing of the coordinator's HTTP API.

mod connections;
mod coordinator;
mod cors;
mod dashboard;
mod event_loop;
mod events;
mod health;
mod oauth;
mod privacy;
mod realtime_sync;
mod repositories;
mod suggestions;

use edge_sync_shared::auth::Capability;
use edge_sync_worker_kit::{auth::require, postgres, HttpError, HttpResult, RequestContext};
use worker::{Env, Method, Request};

use crate::config::CoordinatorConfig;

/// Sends each request to the handler of its route.
pub async fn dispatch(req: Request, env: Env, ctx: RequestContext) -> HttpResult {
    let path = req.path();
    let method = req.method();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let config = CoordinatorConfig::from_env(&env);
    if method == Method::Options
        && matches!(segments.first(), Some(&"coordinator") | Some(&"oauth"))
    {
        return cors::preflight(&req, &config);
    }
    let origin_req = req.clone()?;
    let response = match (method, segments.as_slice()) {
        (Method::Get, ["health"]) => health::get(&env).await,
        (Method::Get, ["dashboard"]) => dashboard::static_asset(""),
        (Method::Get, ["dashboard", name @ ("" | "index.html" | "app.js" | "app.css")]) => {
            dashboard::static_asset(name)
        }
        (Method::Post, ["dashboard", "session"]) => {
            dashboard::sign_in(req, &env, edge_sync_worker_kit::clock::now()).await
        }
        (Method::Get, ["dashboard", "session"]) => dashboard::current(&req, &env).await,
        (Method::Post, ["dashboard", "logout"]) => dashboard::sign_out(&req, &env).await,
        (_, ["dashboard", "api", rest @ ..]) => {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
            return dashboard::api(req, env, ctx, &rest).await;
        }
        (_, ["dashboard", ..]) => Err(HttpError::not_found()),
        (_, ["health"]) => Err(HttpError::method_not_allowed("GET")),
        (Method::Get, ["oauth", "initiate"]) => oauth::keap_initiate(&req, &env, &config).await,
        (Method::Get, ["oauth", "callback"]) => oauth::keap_callback(&req, &env, &config).await,
        (Method::Get, ["oauth", "shopify", "install"]) => {
            oauth::shopify_install(&req, &env, &config).await
        }
        (Method::Get, ["oauth", "shopify", "callback"]) => {
            oauth::shopify_callback(&req, &env, &config).await
        }
        (_, ["oauth", ..]) => Err(HttpError::method_not_allowed("GET")),
        (Method::Get, ["realtime-sync", "health"]) => realtime_sync::health(req, &env).await,
        (method, ["realtime-sync", action, id]) => {
            let id = id.to_string();
            match (method, *action) {
                (Method::Post, "enable") => realtime_sync::enable(req, &env, &id).await,
                (Method::Post, "disable") => realtime_sync::disable(req, &env, &id).await,
                (Method::Get, "status") => realtime_sync::status(req, &env, &id).await,
                (Method::Post, "test") => realtime_sync::test(req, &env, &id).await,
                (Method::Post, "replay") => realtime_sync::replay(req, &env, &id).await,
                (Method::Get, "activity") => realtime_sync::activity(req, &env, &id).await,
                _ => {
                    require(&req, &env, Capability::Ping)?;
                    Err(HttpError::not_found())
                }
            }
        }
        (Method::Get, ["coordinator", "ping"]) => coordinator::ping(&req, &env, &ctx).await,
        (Method::Get, ["coordinator", "connections"]) => connections::list(&req, &env).await,
        (Method::Post, ["coordinator", "events"]) => events::ingest(req, &env).await,
        (Method::Get, ["coordinator", "events"]) => events::list(&req, &env).await,
        (Method::Get, ["coordinator", "events", "recent"]) => events::recent(&req, &env).await,
        (Method::Post, ["coordinator", "events", "replay"]) => {
            events::replay_since(&req, &env).await
        }
        (Method::Post, ["coordinator", "events", id, "replay"]) => {
            let id = id.to_string();
            events::replay_one(&req, &env, &id).await
        }
        (Method::Get, ["coordinator", "privacy", "requests"]) => privacy::list(&req, &env).await,
        (Method::Get, ["coordinator", "privacy", "requests", id]) => {
            let id = id.to_string();
            privacy::get(&req, &env, &id).await
        }
        (Method::Get, ["coordinator", "hooks", token]) => {
            let token = token.to_string();
            events::hook(&req, &env, &token, false).await
        }
        (Method::Post, ["coordinator", "hooks", token, "verified"]) => {
            let token = token.to_string();
            events::hook(&req, &env, &token, true).await
        }
        (Method::Post, ["coordinator", "connections"]) => {
            require(&req, &env, Capability::Operate)?;
            let mut req = req;
            let body = req
                .text()
                .await
                .map_err(|_| HttpError::bad_request("unreadable body"))?;
            if repositories::names_repository_host(&body) {
                repositories::connect(&body, &env).await
            } else {
                oauth::register_token(&body, &env).await
            }
        }
        (Method::Get, ["coordinator", "sync-targets"]) => {
            connections::sync_targets(&req, &env).await
        }
        (Method::Get, ["coordinator", "lookup"]) => connections::lookup(&req, &env).await,
        (Method::Get, ["coordinator", "users", user_id, "preferences"]) => {
            let user_id = user_id.to_string();
            suggestions::get_preferences(&req, &env, &user_id).await
        }
        (Method::Put, ["coordinator", "users", user_id, "preferences"]) => {
            let user_id = user_id.to_string();
            suggestions::put_preferences(req, &env, &user_id).await
        }
        (Method::Post, ["coordinator", "users", user_id, "live", "ticket"]) => {
            let user_id = user_id.to_string();
            suggestions::live_ticket(&req, &env, &user_id).await
        }
        (Method::Get, ["coordinator", "users", user_id, "live"]) => {
            let user_id = user_id.to_string();
            // The stream itself: no CORS decoration (a WebSocket answer cannot take headers).
            return suggestions::live_stream(&req, &env, &user_id).await;
        }
        (Method::Post, ["coordinator", "event-loop", "start-all"]) => {
            event_loop::start_all(req, &env).await
        }
        (Method::Post, ["coordinator", "event-loop", user_id, action @ ("start" | "stop")]) => {
            let (user_id, action) = (user_id.to_string(), action.to_string());
            event_loop::user_loop(req, &env, &user_id, Some(&action)).await
        }
        (Method::Get, ["coordinator", "event-loop", user_id]) => {
            let user_id = user_id.to_string();
            event_loop::user_loop(req, &env, &user_id, None).await
        }
        (Method::Get, ["coordinator", "suggestions"]) => {
            suggestions::list_suggestions(&req, &env).await
        }
        (Method::Get, ["coordinator", "suggestions", id]) => {
            let id = id.to_string();
            suggestions::get_suggestion(&req, &env, &id).await
        }
        (Method::Post, ["coordinator", "suggestions", id, action]) => {
            let (id, action) = (id.to_string(), action.to_string());
            suggestions::action_suggestion(&req, &env, &id, &action).await
        }
        (Method::Get, ["coordinator", "agent-runs"]) => suggestions::list_runs(&req, &env).await,
        (Method::Post, ["coordinator", "agent-runs", id, "retry"]) => {
            let id = id.to_string();
            suggestions::retry_run(&req, &env, &id).await
        }
        (_, ["coordinator", "connections", id, rest @ ..])
            if edge_sync_shared::code_repos::connection::repo_connection_host(id).is_some() =>
        {
            let (id, rest) = (
                id.to_string(),
                rest.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            );
            let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
            repositories::forward(req, &env, &id, &rest).await
        }
        (_, ["coordinator", "connections", id, rest @ ..]) => {
            let (id, rest) = (
                id.to_string(),
                rest.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            );
            let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
            connections::forward(req, &env, &id, &rest).await
        }
        (_, ["coordinator", ..]) => {
            // Unknown routes are 404 only to an authenticated caller.
            require(&req, &env, Capability::Ping)?;
            Err(HttpError::not_found())
        }
        _ => Err(HttpError::not_found()),
    }?;
    Ok(cors::decorate(&origin_req, &config, response))
}

/// A Postgres session through Hyperdrive (503 when the database cannot be reached).
async fn database(env: &Env) -> Result<tokio_postgres::Client, HttpError> {
    postgres::connect(env)
        .await
        .map_err(|e| HttpError::new(503, "database unavailable").with_reason(e.0))
}

/// Whether `id` is a UUID in its text form (ids of Postgres rows).
fn is_uuid(id: &str) -> bool {
    id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The value of the query parameter `name`, if given.
fn query(req: &Request, name: &str) -> Result<Option<String>, HttpError> {
    Ok(req
        .url()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned()))
}
