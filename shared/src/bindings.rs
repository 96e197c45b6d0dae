//! Names of bindings, secrets and variables. They must match the files in `wrangler/`
//! and `.dev.vars.example`; every Worker reads them through these constants.

/// Durable Object namespace of the `SyncCoordinator` class (sync-coordinator only).
pub const SYNC_COORDINATOR_DO: &str = "SYNC_COORDINATOR";
/// KV namespace used as a read cache of status (all three Workers).
pub const SYNC_CACHE_KV: &str = "SYNC_CACHE";
/// Hyperdrive binding to the user's Postgres (sync-coordinator and sync-worker).
pub const HYPERDRIVE: &str = "HYPERDRIVE";
/// Service binding from sync-worker and webhook-handler to sync-coordinator.
pub const COORDINATOR_SERVICE: &str = "COORDINATOR";
/// Service binding from sync-coordinator to sync-worker (continuing long syncs from alarms).
pub const SYNC_WORKER_SERVICE: &str = "SYNC_WORKER";

/// Secret: bearer token for operators (`/coordinator/*`, `/sync/*`, admin actions).
pub const ADMIN_TOKEN: &str = "ADMIN_TOKEN";
/// Secret: the credential webhook-handler presents to sync-coordinator (store events, look
/// up a delivery's connection). Held by webhook-handler and, to check it, the coordinator.
pub const WEBHOOK_HANDLER_TOKEN: &str = "WEBHOOK_HANDLER_TOKEN";
/// Secret: the credential sync-worker presents to sync-coordinator (tokens, leases, cursors,
/// runs, rate budget). Held by sync-worker and, to check it, the coordinator.
pub const SYNC_WORKER_TOKEN: &str = "SYNC_WORKER_TOKEN";
/// Secret: the credential sync-coordinator presents to sync-worker (continuing runs from its
/// alarms). Held by the coordinator and, to check it, sync-worker.
pub const COORDINATOR_TOKEN: &str = "COORDINATOR_TOKEN";
/// Variable: deployment environment name (`development` or `production`).
pub const ENVIRONMENT: &str = "ENVIRONMENT";

/// Worker names, as in the `name` field of each wrangler file.
pub mod workers {
    /// The Durable Object host: OAuth, tokens, sync state, event store.
    pub const SYNC_COORDINATOR: &str = "sync-coordinator";
    /// The cron- and curl-triggered poller.
    pub const SYNC_WORKER: &str = "sync-worker";
    /// The webhook receiver.
    pub const WEBHOOK_HANDLER: &str = "webhook-handler";
}
