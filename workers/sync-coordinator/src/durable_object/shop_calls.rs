//! A Shopify connection's instance makes the calls real-time propagation needs at its shop
//! (`POST /internal/connection/propagate`): the writes the user's instance planned and
//! queued ([`edge_sync_shared::propagation::plan::Action`]), and SKU reads. Every request
//! takes from the connection's shared rate budget (the one the sync and the polling use); a
//! rejected token is refreshed once; a throttled shop penalizes the budget for everyone; an
//! inventory write is a compare-and-set against the level just read, read again and retried
//! when a sale at the shop got in between.

use std::time::Duration;

use edge_sync_shared::{
    connection::Provider,
    coordinator_api::{
        CoordinatorError, Penalize, RequestError, ShopCall, ShopCallReport, TakeBudget,
    },
    oauth::HttpRequestSpec,
    propagation::{
        plan::Action,
        shopify_writes::{self as writes, WriteError},
    },
    sync::PageError,
    token_lifecycle::ConnectionStatus,
    Secret, Timestamp,
};
use edge_sync_worker_kit::{clock, outbound};

use super::{sync_state, SyncCoordinator};
use crate::api_error::{Failure, Handled};

const TIMEOUT: Duration = Duration::from_secs(20);
/// Compare-and-set attempts of one inventory write (each after reading the level again).
const COMPARE_ATTEMPTS: u32 = 5;

/// Why a call stopped, as the report says it.
struct Stop(ShopCallReport);

impl From<WriteError> for Stop {
    fn from(error: WriteError) -> Self {
        let retryable = matches!(
            error,
            WriteError::Transport(
                PageError::RateLimited { .. } | PageError::Server { .. } | PageError::Unauthorized
            )
        );
        let retry_after_ms = match &error {
            WriteError::Transport(PageError::RateLimited { retry_after_ms }) => *retry_after_ms,
            _ => None,
        };
        Stop(ShopCallReport::failed(
            error.to_string(),
            retryable,
            retry_after_ms,
        ))
    }
}

/// One shop session: the URL, the token, whether it was refreshed.
struct Session {
    url: String,
    token: Secret,
    refreshed: bool,
}

impl SyncCoordinator {
    /// Makes `call` at this connection's shop.
    pub(super) async fn shop_call(
        &self,
        call: ShopCall,
        now: Timestamp,
    ) -> Handled<ShopCallReport> {
        let connection = self.require(now)?;
        if connection.provider != Provider::Shopify {
            return Err(CoordinatorError::Request(RequestError::InvalidBody(
                "only Shopify connections take product and inventory writes".into(),
            ))
            .into());
        }
        if connection.lifecycle.status != ConnectionStatus::Active {
            return Ok(ShopCallReport::failed(
                format!("connection is {}", connection.lifecycle.status.as_str()),
                true,
                None,
            ));
        }
        let url = edge_sync_shared::event_loop::shopify_poll::poll_url(
            &self.config.shopify_source(),
            &connection.account,
        )
        .ok_or_else(|| {
            CoordinatorError::Misconfigured(format!(
                "no Shopify URL for the shop {}",
                connection.account
            ))
        })?;
        let token = match self.access_token(None, now).await {
            Ok(token) => token,
            Err(Failure::Refused(refusal)) => {
                return Ok(ShopCallReport::failed(
                    format!("no access token: {refusal}"),
                    true,
                    None,
                ))
            }
            Err(e) => return Err(e),
        };
        let mut session = Session {
            url,
            token,
            refreshed: false,
        };
        let outcome = match call {
            ShopCall::Sku { inventory_item_id } => self
                .request(&mut session, |s| {
                    writes::find_sku(s.url.clone(), &s.token, inventory_item_id)
                })
                .await
                .and_then(|(status, headers, body)| {
                    Ok(ShopCallReport {
                        ok: true,
                        sku: writes::found_sku(status, &headers, &body)?,
                        ..ShopCallReport::default()
                    })
                }),
            ShopCall::Write { action } => self.write(&mut session, &action).await,
        };
        if let Err(Stop(ShopCallReport {
            retry_after_ms: Some(wait),
            ..
        })) = &outcome
        {
            // Nobody calls the shop until it allows (the sync and polling neither).
            let until = clock::now().plus_millis(i64::try_from(*wait).unwrap_or(i64::MAX));
            sync_state::penalize_budget(
                &self.store,
                Penalize {
                    until_ms: until.as_millis(),
                },
                clock::now(),
            )?;
        }
        Ok(outcome.unwrap_or_else(|Stop(report)| report))
    }

    async fn write(&self, s: &mut Session, action: &Action) -> Result<ShopCallReport, Stop> {
        let written = ShopCallReport {
            ok: true,
            ..ShopCallReport::default()
        };
        match action {
            Action::UpsertProduct { product, .. } => {
                let (status, headers, body) = self
                    .request(s, |s| writes::set_product(s.url.clone(), &s.token, product))
                    .await?;
                writes::product_set(status, &headers, &body)?;
                Ok(written)
            }
            Action::DeleteProduct { handle } => {
                let (status, headers, body) = self
                    .request(s, |s| writes::find_product(s.url.clone(), &s.token, handle))
                    .await?;
                let Some(gid) = writes::found_product(status, &headers, &body, handle)? else {
                    return Ok(ShopCallReport {
                        detail: Some("not_at_target".into()),
                        ..written
                    });
                };
                let (status, headers, body) = self
                    .request(s, |s| writes::delete_product(s.url.clone(), &s.token, &gid))
                    .await?;
                writes::product_deleted(status, &headers, &body)?;
                Ok(written)
            }
            Action::SetInventory {
                sku,
                location_id,
                change,
            } => {
                let mut conflicts = 0;
                loop {
                    let (status, headers, body) = self
                        .request(s, |s| {
                            writes::find_level(s.url.clone(), &s.token, sku, *location_id)
                        })
                        .await?;
                    let Some(level) =
                        writes::found_level(status, &headers, &body, sku, *location_id)?
                    else {
                        // The product may still be on its way (retried), or the item is not
                        // stocked there (dead-lettered after the retries, replayable).
                        return Err(Stop(ShopCallReport::failed(
                            format!("no level of SKU {sku} at location {location_id}"),
                            true,
                            None,
                        )));
                    };
                    let quantity = change.target_quantity(level.available);
                    let (status, headers, body) = self
                        .request(s, |s| {
                            writes::set_quantity(s.url.clone(), &s.token, &level, quantity)
                        })
                        .await?;
                    match writes::quantity_set(status, &headers, &body) {
                        Ok(()) => {
                            return Ok(ShopCallReport {
                                new_quantity: Some(quantity),
                                detail: (conflicts > 0).then(|| {
                                    format!(
                                        "compare_and_set: {conflicts} concurrent change(s) at the target kept"
                                    )
                                }),
                                ..written
                            })
                        }
                        Err(WriteError::CompareFailed) if conflicts + 1 < COMPARE_ATTEMPTS => {
                            conflicts += 1;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }

    /// Sends the request `build` makes, after taking one unit of the shared budget; a
    /// rejected token is refreshed once and the request sent again.
    async fn request(
        &self,
        s: &mut Session,
        build: impl Fn(&Session) -> HttpRequestSpec,
    ) -> Result<(u16, Vec<(String, String)>, String), Stop> {
        loop {
            match self.take_budget(TakeBudget { cost: 1 }, clock::now()) {
                Ok(_) => {}
                Err(Failure::Refused(CoordinatorError::BudgetExhausted { retry_after_ms })) => {
                    return Err(Stop(ShopCallReport::failed(
                        "the connection's rate budget is spent",
                        true,
                        Some(retry_after_ms),
                    )))
                }
                Err(e) => {
                    return Err(Stop(ShopCallReport::failed(
                        format!("rate budget: {e:?}"),
                        true,
                        None,
                    )))
                }
            }
            let answer = outbound::send(&build(s), TIMEOUT)
                .await
                .map_err(|no_answer| {
                    Stop(ShopCallReport::failed(
                        format!("no answer from Shopify: {}", no_answer.0),
                        true,
                        None,
                    ))
                })?;
            if answer.status == 401 && !s.refreshed {
                s.refreshed = true;
                match self
                    .access_token(Some(s.token.expose().to_owned()), clock::now())
                    .await
                {
                    Ok(fresh) => {
                        s.token = fresh;
                        continue;
                    }
                    Err(_) => {
                        return Err(Stop(ShopCallReport::failed(
                            "the shop rejected the token and no fresh one could be had",
                            true,
                            None,
                        )))
                    }
                }
            }
            return Ok((answer.status, answer.headers, answer.body));
        }
    }
}
