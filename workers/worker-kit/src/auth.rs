//! Bearer auth for internal and admin endpoints (tokens from Worker secrets).

use edge_sync_shared::{
    auth::{authenticate, Caller},
    bindings, Secret,
};
use worker::{Env, Request};

use crate::HttpError;

/// Reads a secret; an unset secret reads as empty, which never authenticates.
pub fn secret(env: &Env, name: &str) -> Secret {
    Secret::new(env.secret(name).map(|s| s.to_string()).unwrap_or_default())
}

/// Authenticates the request's bearer token as admin or internal caller; 401 otherwise.
pub fn require_caller(req: &Request, env: &Env) -> Result<Caller, HttpError> {
    let header = req.headers().get("Authorization").ok().flatten();
    authenticate(
        header.as_deref(),
        &secret(env, bindings::ADMIN_TOKEN),
        &secret(env, bindings::INTERNAL_API_TOKEN),
    )
    .map_err(|e| HttpError::unauthorized(e.to_string()))
}
