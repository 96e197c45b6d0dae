//! Sans-IO core of Edge Sync.
//!
//! This crate parses, verifies, plans and decides; the three Workers carry the decisions out.
//! It performs no I/O and never reads a clock: time is always passed in as a [`Timestamp`].
//! It builds natively (`cargo test -p edge-sync-shared`) and for `wasm32-unknown-unknown`.

pub mod auth;
pub mod bindings;
pub mod code_repos;
pub mod connection;
pub mod coordinator_api;
pub mod dashboard;
pub mod event_loop;
pub mod health;
pub mod log;
pub mod oauth;
pub mod propagation;
pub mod provider_hooks;
pub mod rate_budget;
pub mod secret;
pub mod suggestions;
pub mod sync;
pub mod sync_state;
pub mod time;
pub mod token_cipher;
pub mod token_lifecycle;
pub mod user_token;
pub mod webhook;

pub use connection::Provider;
pub use secret::Secret;
pub use time::Timestamp;
