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
        CoordinatorError, Penalize, PlatformCall, PlatformCallReport, RequestError, TakeBudget,
    },
    oauth::HttpRequestSpec,
    propagation::{
        change::CustomerSnapshot,
        keap_writes::{self, KeapWriter},
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
struct Stop(PlatformCallReport);

impl From<WriteError> for Stop {
    fn from(error: WriteError) -> Self {
        let retryable = matches!(
            error,
            WriteError::Transport(
                PageError::RateLimited { .. } | PageError::Server { .. } | PageError::Unauthorized
            )
        );
        match &error {
            WriteError::Transport(PageError::RateLimited { retry_after_ms }) => Stop(
                PlatformCallReport::deferred(error.to_string(), *retry_after_ms),
            ),
            _ => Stop(PlatformCallReport::failed(
                error.to_string(),
                retryable,
                None,
            )),
        }
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
    pub(super) async fn platform_call(
        &self,
        call: PlatformCall,
        now: Timestamp,
    ) -> Handled<PlatformCallReport> {
        let connection = self.require(now)?;
        if connection.lifecycle.status != ConnectionStatus::Active {
            return Ok(PlatformCallReport::failed(
                format!("connection is {}", connection.lifecycle.status.as_str()),
                true,
                None,
            ));
        }
        let url = match connection.provider {
            Provider::Shopify => edge_sync_shared::event_loop::shopify_poll::poll_url(
                &self.config.provider_apis(),
                &connection.account,
            )
            .ok_or_else(|| {
                CoordinatorError::Misconfigured(format!(
                    "no Shopify URL for the shop {}",
                    connection.account
                ))
            })?,
            Provider::Keap => String::new(),
        };
        let token = match self.access_token(None, now).await {
            Ok(token) => token,
            Err(Failure::Refused(refusal)) => {
                return Ok(PlatformCallReport::failed(
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
        let outcome = match (connection.provider, call) {
            (Provider::Keap, PlatformCall::Write { action }) => {
                self.keap_write(&mut session, &action).await
            }
            (Provider::Keap, PlatformCall::Sku { .. }) => {
                return Err(CoordinatorError::Request(RequestError::InvalidBody(
                    "Keap connections have no inventory items".into(),
                ))
                .into())
            }
            (Provider::Shopify, PlatformCall::Sku { inventory_item_id }) => self
                .request(&mut session, |s| {
                    writes::find_sku(s.url.clone(), &s.token, inventory_item_id)
                })
                .await
                .and_then(|(status, headers, body)| {
                    Ok(PlatformCallReport {
                        ok: true,
                        sku: writes::found_sku(status, &headers, &body)?,
                        ..PlatformCallReport::default()
                    })
                }),
            (Provider::Shopify, PlatformCall::Write { action }) => {
                self.shopify_write(&mut session, &action).await
            }
        };
        if let Err(Stop(PlatformCallReport {
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

    async fn shopify_write(
        &self,
        s: &mut Session,
        action: &Action,
    ) -> Result<PlatformCallReport, Stop> {
        let written = PlatformCallReport {
            ok: true,
            ..PlatformCallReport::default()
        };
        match action {
            Action::UpsertContact { .. } | Action::CreateOrder { .. } => {
                Err(Stop(PlatformCallReport::failed(
                    format!("a shop takes no {} write", action.name()),
                    false,
                    None,
                )))
            }
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
                    return Ok(PlatformCallReport {
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
                        return Err(Stop(PlatformCallReport::failed(
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
                            return Ok(PlatformCallReport {
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

    /// A contact or order write at this Keap account (products and inventory are not
    /// Keap's).
    async fn keap_write(
        &self,
        s: &mut Session,
        action: &Action,
    ) -> Result<PlatformCallReport, Stop> {
        let v2_base = format!(
            "{}/rest/v2",
            self.config
                .provider_apis()
                .keap_api_base
                .trim_end_matches('/')
        );
        let v1_base = crate::config::webhook_registration(&self.env).keap_rest_v1_base;
        let keap = |s: &Session, call: &dyn Fn(&KeapWriter<'_>) -> HttpRequestSpec| {
            call(&KeapWriter {
                v2_base: &v2_base,
                v1_base: &v1_base,
                token: &s.token,
            })
        };
        let written = PlatformCallReport {
            ok: true,
            ..PlatformCallReport::default()
        };
        match action {
            Action::UpsertContact { contact } => {
                let email = contact.email.as_deref().unwrap_or_default();
                let (status, headers, body) = self
                    .request(s, |s| keap(s, &|k| k.find_contact(email)))
                    .await?;
                let (status, headers, body) =
                    match keap_writes::found_contact(status, &headers, &body)? {
                        Some(id) => {
                            self.request(s, |s| {
                                keap(s, &|k| k.update_contact(&id.to_string(), contact))
                            })
                            .await?
                        }
                        None => {
                            self.request(s, |s| keap(s, &|k| k.create_contact(contact)))
                                .await?
                        }
                    };
                keap_writes::written_id(status, &headers, &body)?;
                Ok(written)
            }
            Action::CreateOrder { order, .. } => {
                let email = order.buyer_email().unwrap_or_default();
                let (status, headers, body) = self
                    .request(s, |s| keap(s, &|k| k.find_contact(email)))
                    .await?;
                let contact_id = match keap_writes::found_contact(status, &headers, &body)? {
                    Some(id) => id,
                    None => {
                        let buyer = order.customer.clone().map_or_else(
                            || CustomerSnapshot {
                                id: 0,
                                email: Some(email.to_owned()),
                                first_name: String::new(),
                                last_name: String::new(),
                                phone: None,
                            },
                            |c| CustomerSnapshot {
                                email: Some(email.to_owned()),
                                ..c
                            },
                        );
                        let (status, headers, body) = self
                            .request(s, |s| keap(s, &|k| k.create_contact(&buyer)))
                            .await?;
                        keap_writes::written_id(status, &headers, &body)?
                    }
                };
                // Keap order items name products: one per SKU, made when missing.
                let mut products: Vec<(String, u64)> = Vec::new();
                let mut offset = 0;
                loop {
                    let (status, headers, body) = self
                        .request(s, |s| keap(s, &|k| k.list_products(offset)))
                        .await?;
                    let (page, more) = keap_writes::product_page(status, &headers, &body)?;
                    products.extend(page);
                    if !more {
                        break;
                    }
                    offset += keap_writes::PRODUCTS_PAGE;
                }
                let mut product_ids = Vec::with_capacity(order.line_items.len());
                for line in &order.line_items {
                    let sku = keap_writes::line_sku(line);
                    let id = match products.iter().find(|(known, _)| *known == sku) {
                        Some((_, id)) => *id,
                        None => {
                            let (status, headers, body) = self
                                .request(s, |s| keap(s, &|k| k.create_product(&sku, line)))
                                .await?;
                            let id = keap_writes::written_id(status, &headers, &body)?;
                            products.push((sku, id));
                            id
                        }
                    };
                    product_ids.push(id);
                }
                let order_date = order
                    .created_at
                    .as_deref()
                    .and_then(Timestamp::parse_iso8601)
                    .unwrap_or_else(clock::now)
                    .to_iso8601();
                let (status, headers, body) = self
                    .request(s, |s| {
                        keap(s, &|k| {
                            k.create_order(contact_id, order, &product_ids, &order_date)
                        })
                    })
                    .await?;
                let id = keap_writes::written_id(status, &headers, &body)?;
                Ok(PlatformCallReport {
                    detail: Some(format!("keap_order:{id}")),
                    ..written
                })
            }
            other => Err(Stop(PlatformCallReport::failed(
                format!("Keap takes no {} write", other.name()),
                false,
                None,
            ))),
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
                    return Err(Stop(PlatformCallReport::deferred(
                        "the connection's rate budget is spent",
                        Some(retry_after_ms),
                    )))
                }
                Err(e) => {
                    return Err(Stop(PlatformCallReport::failed(
                        format!("rate budget: {e:?}"),
                        true,
                        None,
                    )))
                }
            }
            let answer = outbound::send(&build(s), TIMEOUT)
                .await
                .map_err(|no_answer| {
                    Stop(PlatformCallReport::failed(
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
                        return Err(Stop(PlatformCallReport::failed(
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
