//! Real-time propagation between a user's platforms, the pure half: the sync rules of a
//! source connection and their targets ([`rules`]), what a Shopify webhook says changed
//! ([`change`]), and what to write where ([`plan`]): which targets receive a change, with
//! which action, and which are skipped and why (rule off, echo, stale, unmapped location).
//!
//! # One rule for echoes, rings and stale events
//! For every (connection, resource) the coordinator keeps a [`plan::Known`] state: the
//! fingerprint of the content last seen there (read from its webhook, or written by us)
//! and the source time it carries. A change is written to a target only when the target
//! does not already hold that content and holds nothing newer. So the webhook a target
//! sends back for our own write finds every other participant already holding it (no echo
//! back to the source), a ring A→B→C→A stops once each shop holds the change, and an event
//! older than what a target holds never overwrites it.
//!
//! Inventory is propagated as the change of the source's level (new minus last seen), added
//! to the target's current quantity with compare-and-set (`inventorySetQuantities` with
//! `compareQuantity`), so a sale at the target meanwhile is kept, never overwritten.

pub mod change;
pub mod keap_writes;
pub mod plan;
pub mod rules;
pub mod shopify_writes;

use sha2::{Digest, Sha256};

/// SHA-256 of `text`, hex: the fingerprint of a resource's propagated fields.
pub(crate) fn fingerprint(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}
