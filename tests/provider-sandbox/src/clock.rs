//! Where "now" comes from. Stores take `now_ms` as an argument (style.md habit 2); handlers
//! read it from the [`Clock`] in the shared state, so tests can pin and advance time.
//!
//! Both kinds of clock can be moved forward (`POST /__sandbox/clock/advance`): the wall
//! clock keeps an offset, so a local run can jump a day ahead to expire tokens or age data.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time in unix milliseconds.
#[derive(Clone, Debug)]
pub enum Clock {
    /// The machine's wall clock plus an offset (0 until advanced).
    System(Arc<AtomicI64>),
    /// A clock that only moves when told to (tests).
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// The wall clock.
    pub fn system() -> Self {
        Self::System(Arc::new(AtomicI64::new(0)))
    }

    /// A manual clock starting at `start_ms`.
    pub fn manual(start_ms: i64) -> Self {
        Self::Manual(Arc::new(AtomicI64::new(start_ms)))
    }

    /// Current time in unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match self {
            Self::System(offset) => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .saturating_add(offset.load(Ordering::SeqCst)),
            Self::Manual(ms) => ms.load(Ordering::SeqCst),
        }
    }

    /// Moves the clock forward by `ms` (the wall clock through its offset).
    pub fn advance_ms(&self, ms: i64) {
        match self {
            Self::System(offset) => offset.fetch_add(ms, Ordering::SeqCst),
            Self::Manual(now) => now.fetch_add(ms, Ordering::SeqCst),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_clocks_advance() {
        let manual = Clock::manual(1_000);
        manual.advance_ms(500);
        assert_eq!(manual.now_ms(), 1_500);
        let system = Clock::system();
        let before = system.now_ms();
        system.advance_ms(86_400_000);
        assert!(system.now_ms() >= before + 86_400_000);
    }
}
