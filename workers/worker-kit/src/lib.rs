//! The wasm-side pieces every Edge Sync Worker shares: the request wrapper that writes one
//! JSON log line per request, JSON error answers, bearer auth, Postgres through Hyperdrive,
//! and calls to the coordinator over its service binding.
//!
//! Decisions live in `edge-sync-shared`; this crate only carries them out with `worker` APIs.
#![cfg(target_family = "wasm")]

pub mod auth;
pub mod clock;
pub mod coordinator;
pub mod env_vars;
pub mod health;
pub mod http;
pub mod log;
pub mod outbound;
pub mod postgres;
pub mod random;
pub mod serve;
pub mod timeout;

pub use http::{HttpError, HttpResult};
pub use serve::{serve, RequestContext};
