//! Health checks shared by the Workers: KV, Postgres through Hyperdrive, and the coordinator
//! over its service binding. Each returns a plain bool for the report and logs why it failed.

use std::time::Duration;

use edge_sync_shared::{auth::Caller, bindings};
use worker::{console_log, Env, Method};

use crate::{coordinator, postgres, timeout::with_timeout};

const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The KV namespace answers a read.
pub async fn kv(worker: &'static str, env: &Env) -> bool {
    let outcome = match env.kv(bindings::SYNC_CACHE_KV) {
        Ok(kv) => with_timeout(CHECK_TIMEOUT, kv.get("health:probe").text())
            .await
            .map(|r| r.map(|_| ()).map_err(|e| e.to_string())),
        Err(e) => Some(Err(e.to_string())),
    };
    logged(worker, "kv_cache", matches!(outcome, Some(Ok(()))), || {
        format!("{outcome:?}")
    })
}

/// Postgres answers `SELECT 1` through Hyperdrive.
pub async fn hyperdrive(worker: &'static str, env: &Env) -> bool {
    let outcome = postgres::ping(env).await;
    logged(worker, "hyperdrive", outcome.is_ok(), || {
        format!("{outcome:?}")
    })
}

/// The coordinator answers `/coordinator/ping` over the service binding, which includes a
/// round trip into its Durable Object.
pub async fn coordinator(worker: &'static str, env: &Env, request_id: &str) -> bool {
    let Some(caller) = Caller::of_worker(worker) else {
        return logged(worker, "coordinator", false, || {
            format!("{worker} has no credential")
        });
    };
    let outcome = with_timeout(
        CHECK_TIMEOUT,
        coordinator::call(
            env,
            caller,
            Method::Get,
            "/coordinator/ping",
            None,
            request_id,
        ),
    )
    .await;
    let ok = matches!(outcome, Some(Ok(ref r)) if r.status_code() == 200);
    logged(worker, "coordinator", ok, || {
        format!("{:?}", outcome.map(|r| r.map(|r| r.status_code())))
    })
}

/// Logs a failed check's reason (the body only says `false`) and passes `ok` through.
pub fn logged(
    worker: &'static str,
    service: &str,
    ok: bool,
    reason: impl FnOnce() -> String,
) -> bool {
    if !ok {
        let line = serde_json::json!({
            "level": "warn", "worker": worker, "event": "health_check_failed",
            "service": service, "reason": reason(),
        });
        console_log!("{line}");
    }
    ok
}
