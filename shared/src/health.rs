//! The `/health` report every Worker serves.
//!
//! Shape: `{"status":"healthy","timestamp":"<ISO>","services":{"kv_cache":true,...}}`.
//! Any failed check makes the whole report `degraded` and the HTTP status 503.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::Timestamp;

/// Service key: the Durable Object namespace answered.
pub const DURABLE_OBJECTS: &str = "durable_objects";
/// Service key: the KV namespace answered a read.
pub const KV_CACHE: &str = "kv_cache";
/// Service key: Postgres answered `SELECT 1` through Hyperdrive.
pub const HYPERDRIVE: &str = "hyperdrive";
/// Service key: the coordinator answered over the service binding (and reached its DO).
pub const COORDINATOR: &str = "coordinator";

/// Overall state of a Worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Every check passed.
    Healthy,
    /// At least one check failed.
    Degraded,
}

/// The body of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// `healthy` when every service check passed.
    pub status: HealthStatus,
    /// When the checks ran (ISO 8601, UTC).
    pub timestamp: String,
    /// One boolean per bound service.
    pub services: BTreeMap<&'static str, bool>,
}

impl HealthReport {
    /// Builds the report from the outcome of each check, taken at `now`.
    pub fn from_checks(
        now: Timestamp,
        checks: impl IntoIterator<Item = (&'static str, bool)>,
    ) -> Self {
        let services: BTreeMap<_, _> = checks.into_iter().collect();
        let status = if services.values().all(|ok| *ok) {
            HealthStatus::Healthy
        } else {
            HealthStatus::Degraded
        };
        Self {
            status,
            timestamp: now.to_iso8601(),
            services,
        }
    }

    /// 200 when healthy, 503 when degraded.
    pub fn http_status(&self) -> u16 {
        match self.status {
            HealthStatus::Healthy => 200,
            HealthStatus::Degraded => 503,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_checks_passing_is_healthy_200() {
        let report = HealthReport::from_checks(
            Timestamp::from_millis(0),
            [
                (DURABLE_OBJECTS, true),
                (KV_CACHE, true),
                (HYPERDRIVE, true),
            ],
        );
        assert_eq!(report.http_status(), 200);
        assert_eq!(
            serde_json::to_value(&report).expect("serialisable"),
            serde_json::json!({
                "status": "healthy",
                "timestamp": "1970-01-01T00:00:00.000Z",
                "services": {"durable_objects": true, "kv_cache": true, "hyperdrive": true}
            })
        );
    }

    #[test]
    fn one_failing_check_is_degraded_503() {
        let report = HealthReport::from_checks(
            Timestamp::from_millis(0),
            [(KV_CACHE, true), (HYPERDRIVE, false)],
        );
        assert_eq!(report.status, HealthStatus::Degraded);
        assert_eq!(report.http_status(), 503);
        assert_eq!(report.services.get(HYPERDRIVE), Some(&false));
    }
}
