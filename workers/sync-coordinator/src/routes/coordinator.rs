//! `/coordinator/ping`: a round trip into the `system` Durable Object, which counts pings in
//! its SQLite storage. Other Workers use it to prove the service binding and the DO answer.

use edge_sync_shared::auth::Capability;
use edge_sync_worker_kit::{auth::require, HttpResult, RequestContext};
use worker::{Env, Request};

use crate::durable_object;

/// `GET /coordinator/ping` (the operator and every Worker).
pub async fn ping(req: &Request, env: &Env, _ctx: &RequestContext) -> HttpResult {
    require(req, env, Capability::Ping)?;
    Ok(durable_object::call_system(env, "/internal/ping").await?)
}
