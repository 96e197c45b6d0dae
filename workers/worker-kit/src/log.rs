//! Writing structured log lines ([`LogLine`]) to the console, where `wrangler tail` and
//! Workers Logs read them. The one way a Worker logs something that is not a request (the
//! request line is written by [`crate::serve`]).

use edge_sync_shared::log::{Level, LogLine};
use worker::console_log;

use crate::clock;

/// A line for `event` happening now, written by `worker`; add context with the `with_*`
/// methods, then [`Emit::emit`] it.
pub fn event(worker: &'static str, level: Level, event: &str) -> LogLine {
    let now = clock::now();
    LogLine::event(worker, event, level, now, now)
}

/// Writes a line to the console.
pub trait Emit {
    /// Prints the line as one JSON object.
    fn emit(self);
}

impl Emit for LogLine {
    fn emit(self) {
        console_log!("{}", self.to_json());
    }
}
