//! The Shopify polling fallback, in a Shopify connection's own instance: the owner's event
//! loop asks for a pass on each tick (`POST /internal/connection/poll`), and this instance —
//! which holds the token, the shared rate budget and the connection's event store — walks
//! the streams [`ShopifyPollState`] plans, stores what it finds through the same path as
//! webhook deliveries (deduplicated by delivery key or content key, so a change seen by a
//! webhook and by polling is one event) and saves the cursors after the events.
//!
//! A shop whose webhook subscriptions were all registered is not polled: its deliveries are
//! the events, and an idle tick costs it no request.

use std::time::Duration;

use edge_sync_shared::{
    bindings::workers::SYNC_COORDINATOR as WORKER,
    connection::Provider,
    coordinator_api::{
        CoordinatorError, Penalize, PollConnection, PollReport, RequestError, TakeBudget,
        TokenRequest,
    },
    event_loop::shopify_poll::{poll_url, PollNext, ShopifyPollState},
    log::Level,
    provider_hooks::shopify::SUBSCRIBED_TOPICS,
    sync::PageError,
    token_lifecycle::ConnectionStatus,
    Secret, Timestamp,
};
use edge_sync_worker_kit::{
    clock,
    log::{self, Emit},
    outbound,
};

use super::{sync_state, SyncCoordinator};
use crate::{
    api_error::{Failure, Handled},
    webhook_registration::Registered,
};

const POLL_STATE_KEY: &str = "shopify_poll";
const TIMEOUT: Duration = Duration::from_secs(20);
/// Longest pause for Shopify's cost bucket inside one pass; a longer one ends the walk, which
/// resumes from its saved cursor on the next tick.
const MAX_PACING_WAIT_MS: u64 = 2_000;

impl SyncCoordinator {
    /// One polling pass over the connection's streams (see the module docs). Provider
    /// failures are reported in the answer, not as an error status.
    pub(super) async fn poll_shopify(
        &self,
        request: PollConnection,
        now: Timestamp,
    ) -> Handled<PollReport> {
        let connection = self.require(now)?;
        if connection.provider != Provider::Shopify {
            return Err(CoordinatorError::Request(RequestError::InvalidBody(
                "only Shopify connections are polled".into(),
            ))
            .into());
        }
        if connection.lifecycle.status != ConnectionStatus::Active {
            return Ok(PollReport {
                skipped: Some(format!(
                    "connection is {}",
                    connection.lifecycle.status.as_str()
                )),
                ..PollReport::default()
            });
        }
        let registered: Registered = self.store.get("webhooks", now)?.unwrap_or_default();
        if registered.errors.is_empty()
            && registered.shopify_subscription_ids.len() >= SUBSCRIBED_TOPICS.len()
        {
            return Ok(PollReport {
                skipped: Some("webhook subscriptions are registered".into()),
                ..PollReport::default()
            });
        }
        let settings = self.config.provider_apis();
        let url = poll_url(&settings, &connection.account).ok_or_else(|| {
            CoordinatorError::Misconfigured(format!(
                "no Shopify URL for the shop {}",
                connection.account
            ))
        })?;
        let config = request.config;
        let mut state: ShopifyPollState = self.store.get(POLL_STATE_KEY, now)?.unwrap_or_default();
        let mut report = PollReport::default();
        let mut token = match self.access_token(None, now).await {
            Ok(token) => token,
            Err(Failure::Refused(refusal)) => {
                return Ok(PollReport {
                    error: Some(format!("no access token: {refusal}")),
                    ..PollReport::default()
                })
            }
            Err(e) => return Err(e),
        };
        let mut refreshed = false;
        let order = state.pass_order(&config);
        state.pass_ended_before(None);
        'streams: for stream in order {
            let Some(mut run) = state.begin(stream, clock::now()) else {
                // The stream's baseline: nothing older than now is reported.
                continue;
            };
            loop {
                match self.take_budget(TakeBudget { cost: 1 }, clock::now()) {
                    Ok(_) => {}
                    Err(Failure::Refused(CoordinatorError::BudgetExhausted { .. })) => {
                        // The next pass starts with this stream.
                        state.pass_ended_before(Some(stream));
                        report.deferred = true;
                        break 'streams;
                    }
                    Err(e) => return Err(e),
                }
                let spec = state.request(&run, url.clone(), &token, &config);
                report.requests += 1;
                let answer = match outbound::send(&spec, TIMEOUT).await {
                    Ok(answer) => answer,
                    Err(no_answer) => {
                        report.error = Some(format!("no answer from Shopify: {}", no_answer.0));
                        break 'streams;
                    }
                };
                match state.on_page(
                    &mut run,
                    &config,
                    answer.status,
                    &answer.headers,
                    &answer.body,
                ) {
                    Ok(page) => {
                        for envelope in page.events {
                            let (status, _) =
                                self.ingest(&connection.id, envelope, clock::now()).await?;
                            if status == 201 {
                                report.stored += 1;
                            }
                        }
                        match page.next {
                            PollNext::Done => break,
                            PollNext::Fetch { wait_ms } if wait_ms > MAX_PACING_WAIT_MS => break,
                            PollNext::Fetch { wait_ms } => {
                                worker::Delay::from(Duration::from_millis(wait_ms)).await;
                            }
                        }
                    }
                    Err(PageError::Unauthorized) if !refreshed => {
                        refreshed = true;
                        match self
                            .access_token(Some(token.expose().to_owned()), clock::now())
                            .await
                        {
                            Ok(fresh) => token = fresh,
                            Err(Failure::Refused(refusal)) => {
                                report.error = Some(format!("no access token: {refusal}"));
                                break 'streams;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    Err(PageError::RateLimited { retry_after_ms }) => {
                        // Nobody calls the shop until it allows (the sync neither).
                        if let Some(wait) = retry_after_ms {
                            let until =
                                clock::now().plus_millis(i64::try_from(wait).unwrap_or(i64::MAX));
                            sync_state::penalize_budget(
                                &self.store,
                                Penalize {
                                    until_ms: until.as_millis(),
                                },
                                clock::now(),
                            )?;
                        }
                        state.pass_ended_before(Some(stream));
                        report.error = Some(PageError::RateLimited { retry_after_ms }.to_string());
                        break 'streams;
                    }
                    Err(error) => {
                        // This stream failed; the others are still walked.
                        let text = format!("{stream:?}: {error}");
                        report.error = Some(match report.error.take() {
                            Some(earlier) => format!("{earlier}; {text}"),
                            None => text,
                        });
                        break;
                    }
                }
            }
            // Events first (above), then the cursor: a pass cut off in between finds the
            // same changes again, with the same keys.
            self.store.put(POLL_STATE_KEY, &state, None)?;
        }
        self.store.put(POLL_STATE_KEY, &state, None)?;
        let level = if report.error.is_some() {
            Level::Warn
        } else {
            Level::Info
        };
        log::event(WORKER, level, "shopify_polled")
            .with_connection_id(&connection.id)
            .with("requests", report.requests)
            .with("stored", report.stored)
            .with("deferred", report.deferred)
            .with("error", &report.error)
            .emit();
        Ok(report)
    }

    /// A usable access token from this instance (refreshed once when `rejected` is the token
    /// Shopify just refused).
    pub(super) async fn access_token(
        &self,
        rejected: Option<String>,
        now: Timestamp,
    ) -> Handled<Secret> {
        let issued = self
            .token(
                TokenRequest {
                    rejected_access_token: rejected,
                },
                now,
            )
            .await?;
        Ok(Secret::new(issued.access_token))
    }
}
