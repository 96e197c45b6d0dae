//! Bearer auth for every non-public route: the caller's credential (a Worker secret) is
//! matched in constant time and must hold the route's capability (`edge_sync_shared::auth`).

use edge_sync_shared::{
    auth::{authorize, Caller, Capability},
    Secret,
};
use worker::{Env, Request};

use crate::HttpError;

/// Reads a secret; an unset secret reads as empty, which never authenticates.
pub fn secret(env: &Env, name: &str) -> Secret {
    Secret::new(env.secret(name).map(|s| s.to_string()).unwrap_or_default())
}

/// The credential this Worker presents when it calls another as `caller`.
pub fn own_credential(env: &Env, caller: Caller) -> Secret {
    secret(env, caller.secret_name())
}

/// Authenticates the request's bearer token and checks that its caller holds `needed`:
/// 401 for no or an unknown token, 403 for a known caller outside its capabilities.
pub fn require(req: &Request, env: &Env, needed: Capability) -> Result<Caller, HttpError> {
    let header = req.headers().get("Authorization").ok().flatten();
    let credentials: Vec<(Caller, Secret)> = Caller::ALL
        .into_iter()
        .map(|caller| (caller, own_credential(env, caller)))
        .collect();
    authorize(header.as_deref(), &credentials, needed).map_err(|e| match e.status() {
        403 => HttpError::new(403, "forbidden").with_reason(e.to_string()),
        _ => HttpError::unauthorized(e.to_string()),
    })
}
