//! The only clock the Workers read; everything downstream takes a `Timestamp`.

use edge_sync_shared::Timestamp;

/// Now, from the Workers runtime (`Date.now()`).
pub fn now() -> Timestamp {
    Timestamp::from_millis(i64::try_from(worker::Date::now().as_millis()).unwrap_or(i64::MAX))
}
