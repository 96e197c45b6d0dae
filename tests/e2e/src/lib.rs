//! End-to-end harness: starts a whole Edge Sync stack — a fresh PostgreSQL database, the
//! provider sandbox and the three Workers in one real workerd process
//! (`scripts/local-stack.mjs`, service bindings in-process as on Cloudflare) — on free
//! ports, and tears it down when dropped, even when the test panicked.
//!
//! Every stack is isolated: its own database, its own workerd, its own persisted state
//! directory and its own ports, so tests run in parallel without colliding.

pub mod bench_util;
pub mod flows;
pub mod pg_proxy;
pub mod stack;

pub use stack::{Readiness, ScratchDatabase, Stack, StackOptions, SANDBOX_MODEL, WEBHOOK_SECRETS};
