//! The background event loop's pure half: per-user loop scheduling ([`schedule`]), the
//! Supabase schema watch ([`schema_watch`]), pending migrations ([`migrations`]) and the
//! Shopify polling fallback ([`shopify_poll`]).
//!
//! Sans-IO like the rest of the crate. The coordinator's per-user Durable Object instance
//! (`user:<user_id>`) owns a [`schedule::LoopState`]: on each alarm it calls
//! [`schedule::LoopState::on_tick`], runs the watchers the [`schedule::TickPlan`] names (SQL
//! through Hyperdrive, Shopify through its fetch adapter), hands their answers to the
//! parsers here, stores the resulting [`EventEnvelope`]s through the same durable path as
//! webhook events, reports each watcher's outcome with
//! [`schedule::LoopState::on_watcher_result`] and sets the alarm to
//! [`schedule::LoopState::next_alarm`].
//!
//! Every watcher event carries a stable `dedup_key`, so a change seen twice (two ticks, an
//! overlap window, a restart between storing events and saving state) is stored once. Order
//! for the Worker: store the events first, then save the watcher's state.

pub mod migrations;
pub mod schedule;
pub mod schema_watch;
pub mod shopify_poll;

use sha2::{Digest, Sha256};

pub use crate::coordinator_api::EventEnvelope;

/// Why a loop request or a watcher's input cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventLoopError {
    /// The requested interval is below the floor in force (400 to the caller).
    #[error("interval_secs must be at least {min} (got {given})")]
    IntervalTooShort {
        /// What was asked for.
        given: u64,
        /// The floor in force.
        min: u64,
    },
    /// `stale_after_days` is outside 1 to 365 (400 to the caller).
    #[error("stale_after_days must be from 1 to 365 (got {0})")]
    StaleDays(u32),
    /// The interval floor setting is not a whole number of seconds between 1 and the default.
    #[error("{setting} must be a whole number of seconds from 1 to {max} (got {given:?})")]
    InvalidFloor {
        /// The setting's name.
        setting: &'static str,
        /// Largest allowed value (the floor can only be lowered).
        max: u64,
        /// What was given.
        given: String,
    },
    /// A row of a watcher's query lacks a value it must have; names it.
    #[error("unusable row from {query}: {reason}")]
    BadRow {
        /// Which query's row.
        query: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// First 16 hex digits of the SHA-256 of `text`: enough to tell states apart in a dedup
/// key, short enough to keep keys readable.
pub(crate) fn short_digest(text: &str) -> String {
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    digest[..16].to_owned()
}
