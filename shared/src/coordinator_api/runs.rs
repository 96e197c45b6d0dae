//! What the coordinator's alarm asks of the sync-worker (`POST /sync/continue` over the
//! `SYNC_WORKER` binding): continue a run that paused with work left.

use serde::{Deserialize, Serialize};

/// `POST /sync/continue`: one more invocation's worth of pages of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinueRun {
    /// The connection.
    pub connection_id: String,
    /// The resource's name.
    pub resource: String,
    /// The run to continue (it must still hold the lease).
    pub run_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_run_round_trips() {
        let json = r#"{"connection_id":"keap_0123456789abcdef01234567","resource":"contacts","run_id":"r1"}"#;
        let request: ContinueRun = serde_json::from_str(json).expect("decodes");
        assert_eq!(request.run_id, "r1");
        assert_eq!(serde_json::to_string(&request).expect("serialises"), json);
    }
}
