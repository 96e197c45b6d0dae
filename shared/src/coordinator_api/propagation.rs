//! The coordinator's internal calls for real-time propagation
//! ([`crate::propagation`]): the user's instance plans and queues, and asks each target's
//! connection instance to make the write with its own token, rate budget and cost pacing.

use serde::{Deserialize, Serialize};

use crate::propagation::plan::Action;
use crate::propagation::rules::PropagationConfig;

/// `PUT /internal/connection/propagation` on the source connection's instance: whether its
/// Shopify deliveries also store their propagation events (`PRODUCT_*`,
/// `INVENTORY_UPDATED`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropagationSwitch {
    /// On while the source's `enableCrossPlatformSync` is on.
    pub enabled: bool,
}

/// `PUT /internal/user/{user_id}/propagation/{source}` on the user's instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutPropagation {
    /// The validated rules and targets (every target is the user's own connection).
    pub config: PropagationConfig,
}

/// `POST /internal/connection/propagate` on a Shopify connection's instance: one call at
/// its shop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum PlatformCall {
    /// Make a planned write.
    Write {
        /// The write (boxed: it is much larger than the other call).
        action: Box<Action>,
    },
    /// Read the SKU of one of the shop's inventory items (an `inventory_levels/update`
    /// names only the item).
    Sku {
        /// The inventory item's numeric id.
        inventory_item_id: u64,
    },
}

/// How a [`PlatformCall`] went. Provider failures are reported here, not as an error status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformCallReport {
    /// The call was made and succeeded.
    pub ok: bool,
    /// The level's quantity after a written `SetInventory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_quantity: Option<i64>,
    /// The SKU read by a [`PlatformCall::Sku`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// What the write met on its way (e.g. a compare-and-set that found a concurrent
    /// change and was resolved by reading the level again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether trying again later can succeed (transport errors, 429, 5xx, an exhausted
    /// budget); `false` when the shop refused the input.
    #[serde(default)]
    pub retryable: bool,
    /// Not before this many ms (the shop's or the budget's wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Nothing failed: the platform is throttling or the connection's shared budget is
    /// spent, so the call waits `retry_after_ms` without counting as an attempt.
    #[serde(default)]
    pub deferred: bool,
}

impl PlatformCallReport {
    /// A call that must wait `retry_after_ms` (throttled, or the budget is spent).
    pub fn deferred(reason: impl Into<String>, retry_after_ms: Option<u64>) -> Self {
        Self {
            deferred: true,
            ..Self::failed(reason, true, retry_after_ms)
        }
    }

    /// A failure.
    pub fn failed(error: impl Into<String>, retryable: bool, retry_after_ms: Option<u64>) -> Self {
        Self {
            error: Some(error.into()),
            retryable,
            retry_after_ms,
            ..Self::default()
        }
    }
}

/// The last propagation of a source connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastPropagation {
    /// When it settled.
    pub at: crate::Timestamp,
    /// The source change (`PRODUCT_CREATED`, ...).
    pub event_type: String,
    /// The target.
    pub target_connection_id: String,
    /// `upsert_product`, `delete_product`, `set_inventory`.
    pub action: String,
    /// `written` or `dead`.
    pub result: String,
    /// From the source webhook's acknowledgement to the write at the target.
    pub latency_ms: i64,
}

/// `GET /realtime-sync/status/{connection_id}`: a source connection's propagation (served by
/// the user's instance; the subscriptions by the source's own instance).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropagationStatus {
    /// The source connection.
    pub connection_id: String,
    /// Its rules and targets (defaults when never enabled).
    pub config: PropagationConfig,
    /// The provider's webhook subscriptions registered for the source.
    #[serde(default)]
    pub subscriptions_registered: usize,
    /// Writes waiting (or retrying) at the targets, in order.
    pub queue_depth: usize,
    /// Writes that exhausted their retries or were refused, replayable.
    pub dead_letters: usize,
    /// Writes made.
    pub written: u64,
    /// Target parts skipped (rule off, echo, stale, ...).
    pub skipped: u64,
    /// Writes failed for good (dead-lettered).
    pub failures: u64,
    /// The last settled write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_propagation: Option<LastPropagation>,
}
