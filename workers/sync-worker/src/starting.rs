//! Starting runs, for the routes (`/sync/full`, `/sync/<resource>`, `/sync/hook`) and the
//! cron alike: all or nothing per request, answered with a typed [`StartReport`].

use edge_sync_shared::{
    bindings::workers::SYNC_WORKER as WORKER,
    connection::ConnectionView,
    // The per-connection lease that serialises starting runs (named in the shared crate, so
    // the coordinator knows it is no resource).
    coordinator_api::START_LEASE,
    log::Level,
    sync::{Resource, RunCheckpoint, RunRecord, SyncMode},
    token_lifecycle::ConnectionStatus,
};
use edge_sync_worker_kit::log::{self, Emit};
use edge_sync_worker_kit::{clock, random};
use serde::Serialize;
use serde_json::json;
use worker::Env;

use crate::{
    config::SyncConfig,
    coordinator_client::{self as coordinator, Checkpoint, LeaseOutcome},
    postgres_writer::Writer,
    run::{infra, RunError},
};

/// What happened to one requested run.
#[derive(Debug, Clone, Serialize)]
pub struct RunStart {
    /// The connection.
    pub connection_id: String,
    /// The resource's name.
    pub resource: &'static str,
    /// The outcome, serialised as `status` plus its fields.
    #[serde(flatten)]
    pub outcome: Started,
}

/// The answer to a request to start runs.
#[derive(Debug, Clone)]
pub enum StartReport {
    /// Runs were considered one by one.
    Runs {
        /// Full or incremental.
        mode: SyncMode,
        /// One entry per connection and resource.
        runs: Vec<RunStart>,
    },
    /// Another request is starting runs for a connection right now; nothing was started.
    Busy {
        /// The connection.
        connection_id: String,
        /// The other start's id.
        holder: String,
    },
}

impl StartReport {
    /// The runs considered (none when busy).
    pub fn runs(&self) -> &[RunStart] {
        match self {
            StartReport::Runs { runs, .. } => runs,
            StartReport::Busy { .. } => &[],
        }
    }

    /// How many runs started.
    pub fn started(&self) -> usize {
        self.runs()
            .iter()
            .filter(|r| matches!(r.outcome, Started::Run { .. }))
            .count()
    }

    /// 409 when nothing started because everything asked for is already in flight (or being
    /// started), else 202.
    pub fn status(&self) -> u16 {
        let conflicts = self
            .runs()
            .iter()
            .filter(|r| matches!(r.outcome, Started::AlreadyRunning { .. }))
            .count();
        match self {
            StartReport::Busy { .. } => 409,
            StartReport::Runs { .. } if self.started() == 0 && conflicts > 0 => 409,
            StartReport::Runs { .. } => 202,
        }
    }

    /// The JSON body the routes answer with.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            StartReport::Runs { mode, runs } => {
                serde_json::json!({ "mode": mode.as_str(), "runs": runs })
            }
            StartReport::Busy {
                connection_id,
                holder,
            } => serde_json::json!({
                "error": "a sync is being started for this connection",
                "connection_id": connection_id, "run_id": holder, "runs": [],
            }),
        }
    }
}

/// Why runs could not be started at all.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StartError {
    /// The coordinator did not answer (502).
    #[error("coordinator unavailable: {0}")]
    Coordinator(String),
    /// A run could not be started (502).
    #[error("could not start the run: {0}")]
    Run(String),
}

/// Starts the runs asked for (every resource of each connection, or `resource_name` where
/// the provider has it). Starting is all or nothing: a short per-connection "start" lease,
/// taken for every connection in a fixed order before any run starts, makes two concurrent
/// requests give one set of runs and one [`StartReport::Busy`] instead of two halves.
pub async fn start_runs(
    env: &Env,
    config: &SyncConfig,
    connections: &[ConnectionView],
    resource_name: Option<&str>,
    mode: SyncMode,
    trigger: &str,
    request_id: &str,
) -> Result<StartReport, StartError> {
    let batch =
        edge_sync_worker_kit::random::hex_id().map_err(|e| StartError::Run(e.to_string()))?;
    let mut held = Vec::new();
    for connection in connections {
        match acquire_start_lease(env, &connection.id, &batch, request_id).await {
            Ok(coordinator::LeaseOutcome::Acquired) => held.push(connection.id.clone()),
            Ok(coordinator::LeaseOutcome::Held { run_id }) => {
                release_start_leases(env, &held, &batch, request_id).await;
                return Ok(StartReport::Busy {
                    connection_id: connection.id.clone(),
                    holder: run_id,
                });
            }
            Err(e) => {
                release_start_leases(env, &held, &batch, request_id).await;
                return Err(StartError::Coordinator(e.to_string()));
            }
        }
    }
    let outcome = start_each(
        env,
        config,
        connections,
        resource_name,
        mode,
        trigger,
        request_id,
    )
    .await;
    release_start_leases(env, &held, &batch, request_id).await;
    outcome
}

const START_LEASE_TTL_MS: i64 = 60_000;

/// How long a start waits for a concurrent one.
const START_WAIT_MS: u64 = 10_000;

/// Takes the start lease, waiting a few seconds for a concurrent start to finish (after
/// which the resource leases report the runs it started).
async fn acquire_start_lease(
    env: &Env,
    connection_id: &str,
    batch: &str,
    request_id: &str,
) -> Result<coordinator::LeaseOutcome, coordinator::CoordinatorError> {
    let mut waited_ms = 0;
    loop {
        let outcome = coordinator::acquire_lease(
            env,
            connection_id,
            START_LEASE,
            batch,
            START_LEASE_TTL_MS,
            request_id,
        )
        .await?;
        if matches!(outcome, coordinator::LeaseOutcome::Acquired) || waited_ms >= START_WAIT_MS {
            return Ok(outcome);
        }
        worker::Delay::from(std::time::Duration::from_millis(200)).await;
        waited_ms += 200;
    }
}

async fn release_start_leases(env: &Env, connection_ids: &[String], batch: &str, request_id: &str) {
    for id in connection_ids {
        let _ = coordinator::release_lease(env, id, START_LEASE, batch, request_id).await;
    }
}

async fn start_each(
    env: &Env,
    config: &SyncConfig,
    connections: &[ConnectionView],
    resource_name: Option<&str>,
    mode: SyncMode,
    trigger: &str,
    request_id: &str,
) -> Result<StartReport, StartError> {
    let mut runs = Vec::new();
    for connection in connections {
        let resources: Vec<Resource> = match resource_name {
            None => Resource::for_provider(connection.provider).to_vec(),
            Some(name) => match Resource::parse(connection.provider, name) {
                Some(resource) => vec![resource],
                None => continue,
            },
        };
        for resource in resources {
            let outcome = start(env, config, connection, resource, mode, trigger, request_id)
                .await
                .map_err(|e| StartError::Run(e.to_string()))?;
            runs.push(RunStart {
                connection_id: connection.id.clone(),
                resource: resource.name(),
                outcome,
            });
        }
    }
    Ok(StartReport::Runs { mode, runs })
}

/// What starting a run led to; serialised as `status` plus its fields in start answers.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Started {
    /// A new (or resumed) run, continued by the coordinator's alarm.
    #[serde(rename = "started")]
    Run {
        /// Its id.
        run_id: String,
        /// It picks up a failed run where it stopped.
        resumed: bool,
    },
    /// A run is already in flight for this connection and resource.
    AlreadyRunning {
        /// The running run.
        run_id: String,
    },
    /// The connection cannot sync (reauthorisation needed, or deleted).
    Skipped {
        /// Why.
        reason: String,
    },
}

/// Starts a run (or resumes a failed one of the same mode) and hands it to the coordinator
/// to continue at once. Returns without fetching anything.
pub async fn start(
    env: &Env,
    config: &SyncConfig,
    connection: &ConnectionView,
    resource: Resource,
    mode: SyncMode,
    trigger: &str,
    request_id: &str,
) -> Result<Started, RunError> {
    if connection.status != ConnectionStatus::Active {
        return Ok(Started::Skipped {
            reason: format!("connection is {}", connection.status),
        });
    }
    let run_id = random::uuid_v4().map_err(infra)?;
    let name = resource.name();
    match coordinator::acquire_lease(
        env,
        &connection.id,
        name,
        &run_id,
        config.lease_ttl_ms,
        request_id,
    )
    .await
    .map_err(infra)?
    {
        LeaseOutcome::Held { run_id } => return Ok(Started::AlreadyRunning { run_id }),
        LeaseOutcome::Acquired => {}
    }
    let now = clock::now();
    let state = coordinator::resource_state(env, &connection.id, name, request_id)
        .await
        .map_err(infra)?;
    let previous: Option<RunRecord> = state.last_run.and_then(|r| serde_json::from_value(r).ok());
    // A failed run of the same mode is resumed from its last committed page (keeping its
    // marker, so a resumed full resync still knows every row it saw).
    let resumed = previous.filter(|p| p.resumable_as(mode));
    let checkpoint = match &resumed {
        Some(previous) => previous.checkpoint.clone(),
        None => {
            let since = match mode {
                SyncMode::Incremental => state.cursor,
                SyncMode::Full => None,
            };
            // Full Shopify runs read the whole resource through one bulk operation.
            RunCheckpoint::new(&run_id, resource, mode, since, now)
                .with_overlap_ms(config.source.overlap_ms)
                .with_bulk_when_full()
        }
    };
    let record = RunRecord::started(&run_id, trigger, checkpoint, now);
    let writer = Writer::connect(env).await.map_err(infra)?;
    writer
        .run_started(
            &run_id,
            &connection.id,
            resource,
            trigger,
            mode,
            &json!(record.checkpoint.since),
        )
        .await
        .map_err(infra)?;
    let written = coordinator::checkpoint(
        env,
        &connection.id,
        name,
        Checkpoint {
            run_id: &run_id,
            result: serde_json::to_value(&record).map_err(infra)?,
            cursor: None,
            finished: false,
            continue_at_ms: Some(now.as_millis()),
        },
        request_id,
    )
    .await
    .map_err(infra)?;
    if !written {
        return Err(RunError::Infrastructure("lease lost while starting".into()));
    }
    log::event(WORKER, Level::Info, "sync_run_started")
        .with_connection_id(&connection.id)
        .with("resource", name)
        .with("run_id", &run_id)
        .with("mode", mode.as_str())
        .with("trigger", trigger)
        .with("resumed", resumed.is_some())
        .emit();
    Ok(Started::Run {
        run_id,
        resumed: resumed.is_some(),
    })
}
