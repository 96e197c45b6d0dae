//! The fetch adapter of a run: one request from the shared budget, then the page request
//! built, sent and parsed by the shared crate.

use std::time::Duration;

use edge_sync_shared::{bindings::workers::SYNC_WORKER as WORKER, log::Level};
use edge_sync_shared::{
    sync::{parse_page, try_page_request, FetchOutcome, PageError, RunCheckpoint},
    Secret,
};
use edge_sync_worker_kit::log::{self, Emit};
use edge_sync_worker_kit::outbound;
use worker::Env;

use crate::{config::SyncConfig, coordinator_client as coordinator};

/// What fetching a page needs.
pub(super) struct Fetch<'a> {
    pub env: &'a Env,
    pub config: &'a SyncConfig,
    pub connection_id: &'a str,
    pub resource_name: &'a str,
    pub shop: Option<&'a str>,
    pub request_id: &'a str,
}

impl Fetch<'_> {
    /// Draws one request from the shared budget, then fetches and parses the page
    /// `checkpoint` points at.
    pub async fn run(&self, checkpoint: &RunCheckpoint, access: Option<&Secret>) -> FetchOutcome {
        match coordinator::take_budget(self.env, self.connection_id, self.request_id).await {
            Ok(None) => {}
            Ok(Some(wait_ms)) => return FetchOutcome::BudgetEmpty { wait_ms },
            Err(e) => return FetchOutcome::BudgetUnavailable(e.to_string()),
        }
        let Some(access) = access else {
            return FetchOutcome::NotBuilt("no access token".into());
        };
        let request = match try_page_request(checkpoint, &self.config.source, self.shop, access) {
            Ok(request) => request,
            Err(e) => return FetchOutcome::NotBuilt(e.to_string()),
        };
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        FetchOutcome::Page(match outbound::send(&request, timeout).await {
            Ok(answer) => parse_page(checkpoint, answer.status, &answer.headers, &answer.body),
            Err(e) => {
                log::event(WORKER, Level::Warn, "provider_no_answer")
                    .with_connection_id(self.connection_id)
                    .with("resource", self.resource_name)
                    .with_reason(e.0)
                    .emit();
                Err(PageError::Server { status: 0 })
            }
        })
    }
}
