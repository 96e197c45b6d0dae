//! What a Keap REST hook leads to. A delivery names up to 1,000 changed ids and carries no
//! record (developer.infusionsoft.com, "REST Hooks": "up to 1,000 objects"; the payload
//! holds ids only). Fetching each id would cost one request per id, outside the
//! connection's shared rate budget and beyond a Worker's subrequest limit
//! (developers.cloudflare.com/workers/platform/limits: 50 on the Free plan). Instead a hook
//! asks for the resource's incremental run, soon: the run reads every change since its
//! cursor in pages of up to 1,000 through the shared budget. Hooks that arrive before the
//! run starts join the same request (debounced), and a request made while a run is in flight
//! waits for it to end, then starts one more (the run in flight may have passed the changed
//! records already).
//!
//! The coordinator keeps one [`HookSyncRequest`] per resource, calls the sync-worker's
//! `POST /sync/hook` ([`HookSyncIn`]) when it is due, and feeds the answer to
//! [`HookSyncRequest::on_answer`].

use serde::{Deserialize, Serialize};

use super::Resource;
use crate::Timestamp;

/// How long a hook waits for more hooks before its run starts.
pub const HOOK_SYNC_DELAY_MS: i64 = 2_000;
/// How long to wait before asking again while a run of the resource is in flight.
pub const HOOK_SYNC_BUSY_RETRY_MS: i64 = 5_000;
/// Longest wait between attempts to reach the sync-worker.
pub const HOOK_SYNC_MAX_BACKOFF_MS: i64 = 300_000;

/// A pending "run this resource's incremental sync soon" (stored by the coordinator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookSyncRequest {
    /// The resource whose records changed.
    pub resource: Resource,
    /// When to ask the sync-worker.
    pub due_at: Timestamp,
    /// Hooks folded into this request.
    pub hooks: u32,
    /// Failed attempts to reach the sync-worker in a row.
    pub failures: u32,
}

/// How the sync-worker answered `POST /sync/hook`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookSyncAnswer {
    /// A run started (or the connection cannot sync: nothing to wait for).
    Started,
    /// A run of the resource is in flight (409).
    Busy,
    /// Refused for good (other 4xx: unknown connection or resource); retrying cannot help.
    Refused,
    /// No answer, or a 5xx: try again later.
    Failed,
}

impl HookSyncAnswer {
    /// Classifies an HTTP status (`None`: no answer).
    pub fn from_status(status: Option<u16>) -> Self {
        match status {
            Some(200..=299) => Self::Started,
            Some(409) => Self::Busy,
            Some(400..=499) => Self::Refused,
            _ => Self::Failed,
        }
    }
}

impl HookSyncRequest {
    /// A hook for `resource` arrived at `now`: a new request due after
    /// [`HOOK_SYNC_DELAY_MS`], or the pending one, unchanged in time, so a steady stream of
    /// hooks cannot postpone the run forever.
    pub fn on_hook(pending: Option<Self>, resource: Resource, now: Timestamp) -> Self {
        match pending {
            Some(mut request) => {
                request.hooks = request.hooks.saturating_add(1);
                request
            }
            None => Self {
                resource,
                due_at: now.plus_millis(HOOK_SYNC_DELAY_MS),
                hooks: 1,
                failures: 0,
            },
        }
    }

    /// The sync-worker answered at `now`: `None` when the request is served (or cannot be),
    /// else the request to keep, due again later.
    pub fn on_answer(mut self, answer: HookSyncAnswer, now: Timestamp) -> Option<Self> {
        match answer {
            HookSyncAnswer::Started | HookSyncAnswer::Refused => None,
            HookSyncAnswer::Busy => {
                self.failures = 0;
                self.due_at = now.plus_millis(HOOK_SYNC_BUSY_RETRY_MS);
                Some(self)
            }
            HookSyncAnswer::Failed => {
                self.failures = self.failures.saturating_add(1);
                let backoff =
                    (HOOK_SYNC_BUSY_RETRY_MS << self.failures.min(8)).min(HOOK_SYNC_MAX_BACKOFF_MS);
                self.due_at = now.plus_millis(backoff);
                Some(self)
            }
        }
    }
}

impl HookSyncRequest {
    /// The request `sent` got `answer` at `now`, and `current` is what is stored now: hooks
    /// that joined while the call was in flight (`current.hooks` beyond `sent.hooks`) may
    /// name records the run just started has already passed, so they keep a request of
    /// their own, due once that run has had time to end.
    pub fn after_call(
        sent: &Self,
        current: Option<&Self>,
        answer: HookSyncAnswer,
        now: Timestamp,
    ) -> Option<Self> {
        let joined = current.map_or(0, |c| c.hooks.saturating_sub(sent.hooks));
        match sent.clone().on_answer(answer, now) {
            Some(kept) => Some(Self {
                hooks: kept.hooks.saturating_add(joined),
                ..kept
            }),
            None if joined > 0 && answer == HookSyncAnswer::Started => Some(Self {
                resource: sent.resource,
                due_at: now.plus_millis(HOOK_SYNC_BUSY_RETRY_MS),
                hooks: joined,
                failures: 0,
            }),
            None => None,
        }
    }
}

/// Body of the sync-worker's `POST /sync/hook` (internal; the coordinator calls it): start an
/// incremental run of `resource` for `connection_id`, recorded with trigger `webhook`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSyncIn {
    /// The connection whose provider sent the hook.
    pub connection_id: String,
    /// The resource's name (`contacts`, `opportunities`, `orders`, `tasks`).
    pub resource: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timestamp = Timestamp(1_000_000);

    #[test]
    fn hooks_before_the_run_join_one_request_without_postponing_it() {
        let first = HookSyncRequest::on_hook(None, Resource::KeapContacts, T);
        assert_eq!(first.due_at, T.plus_millis(HOOK_SYNC_DELAY_MS));
        let later = HookSyncRequest::on_hook(
            Some(first.clone()),
            Resource::KeapContacts,
            T.plus_millis(1_500),
        );
        assert_eq!(later.due_at, first.due_at);
        assert_eq!(later.hooks, 2);
    }

    #[test]
    fn answers_decide_what_stays() {
        let request = HookSyncRequest::on_hook(None, Resource::KeapTasks, T);
        let now = T.plus_millis(2_000);
        assert_eq!(
            request.clone().on_answer(HookSyncAnswer::Started, now),
            None
        );
        assert_eq!(
            request.clone().on_answer(HookSyncAnswer::Refused, now),
            None
        );
        let busy = request
            .clone()
            .on_answer(HookSyncAnswer::Busy, now)
            .expect("kept");
        assert_eq!(busy.due_at, now.plus_millis(HOOK_SYNC_BUSY_RETRY_MS));
        let mut failing = request;
        let mut waits = Vec::new();
        for _ in 0..10 {
            failing = failing
                .on_answer(HookSyncAnswer::Failed, now)
                .expect("kept");
            waits.push(failing.due_at.millis_since(now));
        }
        assert_eq!(&waits[..3], &[10_000, 20_000, 40_000]);
        assert_eq!(waits[9], HOOK_SYNC_MAX_BACKOFF_MS);
        // A busy answer after failures starts the backoff over.
        assert_eq!(
            failing
                .on_answer(HookSyncAnswer::Busy, now)
                .expect("kept")
                .failures,
            0
        );
    }

    #[test]
    fn hooks_joining_during_the_call_get_a_run_of_their_own() {
        let sent = HookSyncRequest::on_hook(None, Resource::KeapContacts, T);
        let now = T.plus_millis(2_000);
        // Nothing joined: served.
        assert_eq!(
            HookSyncRequest::after_call(&sent, Some(&sent), HookSyncAnswer::Started, now),
            None
        );
        // Two joined while the run was being started: one more run, later.
        let mut current = sent.clone();
        current.hooks = 3;
        let next = HookSyncRequest::after_call(&sent, Some(&current), HookSyncAnswer::Started, now)
            .expect("kept");
        assert_eq!(next.hooks, 2);
        assert_eq!(next.due_at, now.plus_millis(HOOK_SYNC_BUSY_RETRY_MS));
        // Busy keeps all of them.
        let busy = HookSyncRequest::after_call(&sent, Some(&current), HookSyncAnswer::Busy, now)
            .expect("kept");
        assert_eq!(busy.hooks, 3);
    }

    #[test]
    fn statuses_classify() {
        assert_eq!(
            HookSyncAnswer::from_status(Some(202)),
            HookSyncAnswer::Started
        );
        assert_eq!(HookSyncAnswer::from_status(Some(409)), HookSyncAnswer::Busy);
        assert_eq!(
            HookSyncAnswer::from_status(Some(404)),
            HookSyncAnswer::Refused
        );
        assert_eq!(
            HookSyncAnswer::from_status(Some(502)),
            HookSyncAnswer::Failed
        );
        assert_eq!(HookSyncAnswer::from_status(None), HookSyncAnswer::Failed);
    }
}
