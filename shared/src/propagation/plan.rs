//! What to write where for one change: the source's new known state, and per target an
//! action or the reason it is skipped.
//!
//! A change propagates one hop: to the source's own targets, and only when it is new
//! content at the source. What this system wrote to a shop comes back as that shop's
//! webhook with content the shop was already known to hold, so it is an echo and goes
//! nowhere: not back to the source, nor on around a ring (A→B→C→A stops at B). Each
//! source's rules say exactly who receives its changes.

use serde::{Deserialize, Serialize};

use super::change::{Change, CustomerSnapshot, OrderSnapshot, ProductSnapshot};
use super::rules::{PropagationConfig, Target};
use crate::connection::Provider;
use crate::Timestamp;

/// What is known of one resource at one connection: seen in its webhook, or written there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    /// Fingerprint of the propagated content.
    pub fingerprint: String,
    /// The source time of that content (the `updated_at` it was read or written with).
    pub source_time: Option<Timestamp>,
    /// Inventory: the `available` quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
}

/// The key of a product at any shop: its handle.
pub fn product_key(handle: &str) -> String {
    format!("product:{handle}")
}

/// The key of a customer (Shopify) or contact (Keap): the email.
pub fn customer_key(email: &str) -> String {
    format!("customer:{email}")
}

/// The key of an order of `source`: a target that holds it has it already.
pub fn order_key(source: &str, order_id: u64) -> String {
    format!("order:{source}:{order_id}")
}

/// The key of an inventory level at one shop: SKU and that shop's location.
pub fn level_key(sku: &str, location_id: u64) -> String {
    format!("level:{sku}@{location_id}")
}

fn quantity_known(quantity: i64, source_time: Option<Timestamp>) -> Known {
    Known {
        fingerprint: format!("available={quantity}"),
        source_time,
        quantity: Some(quantity),
    }
}

/// How a target's level changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LevelChange {
    /// Add the source's change (new minus last seen): a sale at the target meanwhile is
    /// kept.
    Delta(i64),
    /// The source's level was never seen before: set the target to the same quantity.
    Absolute(i64),
}

impl LevelChange {
    /// The quantity to write given the target's current one (written with
    /// `compareQuantity` = `current`; on a compare-and-set failure, read again and call
    /// this again).
    pub fn target_quantity(self, current: i64) -> i64 {
        match self {
            LevelChange::Delta(d) => current.saturating_add(d),
            LevelChange::Absolute(q) => q,
        }
    }
}

/// A write to a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Create the product at the target, or update the one with the same handle
    /// (`productSet` identified by handle).
    UpsertProduct {
        /// The content to write.
        product: ProductSnapshot,
        /// The source created it (reported; the write is the same).
        created: bool,
    },
    /// Delete the target's product with this handle.
    DeleteProduct {
        /// Its handle.
        handle: String,
    },
    /// Create the Keap contact with this email, or update the one that has it.
    UpsertContact {
        /// The customer's content.
        contact: CustomerSnapshot,
    },
    /// Create the order at Keap, for the contact with its buyer's email (made if missing),
    /// with a Keap product per SKU (made if missing).
    CreateOrder {
        /// The order.
        order: OrderSnapshot,
        /// The source connection (the order's key at the target).
        source: String,
    },
    /// Change the target's level of this SKU at this (target) location.
    SetInventory {
        /// The SKU.
        sku: String,
        /// The target's location.
        location_id: u64,
        /// By how much, or to what.
        change: LevelChange,
    },
}

impl Action {
    /// Its name in activity records: `upsert_product`, `delete_product`, `set_inventory`.
    pub fn name(&self) -> &'static str {
        match self {
            Action::UpsertProduct { .. } => "upsert_product",
            Action::DeleteProduct { .. } => "delete_product",
            Action::SetInventory { .. } => "set_inventory",
            Action::UpsertContact { .. } => "upsert_contact",
            Action::CreateOrder { .. } => "create_order",
        }
    }
}

/// Why a target does not receive a change (recorded as the propagation's result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// `enableCrossPlatformSync` is off.
    SyncDisabled,
    /// The rule for this kind of change is off (names it).
    RuleOff(String),
    /// The source already held this content (our own write coming back, or a redelivery).
    Echo,
    /// Older than what the source or the target holds.
    Stale,
    /// The target already holds this content.
    AlreadyHeld,
    /// The target's platform does not take this kind of change.
    NotForPlatform,
    /// A level at a source location the pair's map does not name.
    UnmappedLocation,
    /// No SKU is known for the level's inventory item (its product was never seen).
    NoSku,
    /// A deleted product whose handle is not known.
    UnknownProduct,
    /// The source's level did not change.
    NoChange,
    /// A customer or order without an email: nothing to match a Keap contact by.
    NoEmail,
}

impl Skip {
    /// Its name in activity records (`rule_off:propagateDeletes`, `echo`, ...).
    pub fn describe(&self) -> String {
        match self {
            Skip::RuleOff(rule) => format!("rule_off:{rule}"),
            other => serde_json::to_value(other)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        }
    }
}

/// One target's part of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The target connection.
    pub target: String,
    /// The write, or why none.
    pub outcome: Result<Action, Skip>,
}

/// What the Worker knows when it plans (read from the coordinator's storage).
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The source connection.
    pub source: &'a str,
    /// For a level: the SKU of its inventory item (from the source's products).
    pub sku: Option<&'a str>,
    /// For a deletion: the handle of the deleted product (from the source's products).
    pub deleted_handle: Option<&'a str>,
}

/// The plan of one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Store this as the source's known state of the resource (before the writes).
    pub source_update: Option<(String, Known)>,
    /// Per target.
    pub decisions: Vec<Decision>,
}

fn skip_all(config: &PropagationConfig, reason: Skip) -> Vec<Decision> {
    config
        .targets
        .iter()
        .map(|t| Decision {
            target: t.connection_id.clone(),
            outcome: Err(reason.clone()),
        })
        .collect()
}

/// The plan of a change no target receives, for `reason`.
fn skipped(
    config: &PropagationConfig,
    reason: Skip,
    source_update: Option<(String, Known)>,
) -> Plan {
    Plan {
        source_update: kept_on_skip(&reason).then_some(source_update).flatten(),
        decisions: skip_all(config, reason),
    }
}

/// Whether a change skipped for `reason` still updates what is known at its source: a
/// stale event leaves the newer state; an echo or a redelivery leaves the state as written,
/// with the original source's time (the target's own later webhook time would make the next
/// real change at the source look stale there).
fn kept_on_skip(reason: &Skip) -> bool {
    !matches!(reason, Skip::Stale | Skip::Echo | Skip::NoChange)
}

fn newer(held: Option<&Known>, time: Option<Timestamp>) -> bool {
    matches!((held.and_then(|k| k.source_time), time), (Some(h), Some(t)) if h > t)
}

/// Plans `change` from `facts.source` under `config`; `known(connection, key)` reads what
/// is known of a resource at a connection.
pub fn plan(
    change: &Change,
    config: &PropagationConfig,
    facts: Facts<'_>,
    known: impl Fn(&str, &str) -> Option<Known>,
) -> Plan {
    let rules = config.rules;
    match change {
        Change::Customer {
            created,
            customer,
            updated_at,
        } => {
            let Some(email) = customer.email.as_deref() else {
                return skipped(config, Skip::NoEmail, None);
            };
            let content = Known {
                fingerprint: customer.fingerprint(),
                source_time: *updated_at,
                quantity: None,
            };
            plan_content(
                config,
                facts.source,
                (customer_key(email), content),
                *created,
                Provider::Keap,
                || Action::UpsertContact {
                    contact: customer.clone(),
                },
                &known,
            )
        }
        Change::Order { order } => {
            if order.buyer_email().is_none() {
                return skipped(config, Skip::NoEmail, None);
            }
            // Known once planned: a redelivery is an echo, and a target holding it has it.
            let placed = Known {
                fingerprint: "placed".into(),
                source_time: None,
                quantity: None,
            };
            plan_content(
                config,
                facts.source,
                (order_key(facts.source, order.id), placed),
                true,
                Provider::Keap,
                || Action::CreateOrder {
                    order: order.clone(),
                    source: facts.source.to_owned(),
                },
                &known,
            )
        }
        Change::Product {
            created,
            product,
            updated_at,
        } => {
            let content = Known {
                fingerprint: product.fingerprint(),
                source_time: *updated_at,
                quantity: None,
            };
            plan_content(
                config,
                facts.source,
                (product_key(&product.handle), content),
                *created,
                Provider::Shopify,
                || Action::UpsertProduct {
                    product: product.clone(),
                    created: *created,
                },
                &known,
            )
        }
        Change::ProductDeleted { .. } => {
            let reason = if !rules.enable_cross_platform_sync {
                Some(Skip::SyncDisabled)
            } else if !rules.propagate_deletes {
                Some(Skip::RuleOff("propagateDeletes".into()))
            } else if facts.deleted_handle.is_none() {
                Some(Skip::UnknownProduct)
            } else {
                None
            };
            let handle = facts.deleted_handle.unwrap_or_default().to_owned();
            let decisions = match reason {
                Some(reason) => skip_all(config, reason),
                None => config
                    .targets
                    .iter()
                    .map(|target| Decision {
                        target: target.connection_id.clone(),
                        outcome: if target.provider == Provider::Shopify {
                            Ok(Action::DeleteProduct {
                                handle: handle.clone(),
                            })
                        } else {
                            Err(Skip::NotForPlatform)
                        },
                    })
                    .collect(),
            };
            Plan {
                source_update: None,
                decisions,
            }
        }
        Change::Inventory {
            location_id,
            available,
            updated_at,
            ..
        } => {
            let Some(sku) = facts.sku else {
                return Plan {
                    source_update: None,
                    decisions: skip_all(config, Skip::NoSku),
                };
            };
            let key = level_key(sku, *location_id);
            let at_source = known(facts.source, &key);
            let source_update = Some((key, quantity_known(*available, *updated_at)));
            let previous = at_source.as_ref().and_then(|k| k.quantity);
            let level_change = match previous {
                Some(p) => LevelChange::Delta(available - p),
                None => LevelChange::Absolute(*available),
            };
            let early = if newer(at_source.as_ref(), *updated_at) {
                Some(Skip::Stale)
            } else if level_change == LevelChange::Delta(0) {
                // What we wrote there coming back, or a redelivery.
                Some(Skip::NoChange)
            } else if !rules.enable_cross_platform_sync {
                Some(Skip::SyncDisabled)
            } else if !rules.propagate_inventory {
                Some(Skip::RuleOff("propagateInventory".into()))
            } else {
                None
            };
            if let Some(reason) = early {
                return skipped(config, reason, source_update);
            }
            let decisions = config
                .targets
                .iter()
                .map(|target| Decision {
                    target: target.connection_id.clone(),
                    outcome: level_outcome(target, sku, *location_id, *updated_at, &known).map(
                        |target_location| Action::SetInventory {
                            sku: sku.to_owned(),
                            location_id: target_location,
                            change: level_change,
                        },
                    ),
                })
                .collect();
            Plan {
                source_update,
                decisions,
            }
        }
    }
}

/// The switch and the create/update rule, for a change `created` at the source or not.
fn rule_skip(rules: super::rules::SyncRules, created: bool) -> Option<Skip> {
    if !rules.enable_cross_platform_sync {
        Some(Skip::SyncDisabled)
    } else if created && !rules.propagate_creates {
        Some(Skip::RuleOff("propagateCreates".into()))
    } else if !created && !rules.propagate_updates {
        Some(Skip::RuleOff("propagateUpdates".into()))
    } else {
        None
    }
}

/// The plan of new content (`key` → `content`: a product, customer or order) at `source`:
/// an echo (the source already held it), a stale event or a rule that is off stops it;
/// otherwise each target of `platform` that does not hold it, nor anything newer, gets
/// `action`.
#[allow(clippy::too_many_arguments)]
fn plan_content(
    config: &PropagationConfig,
    source: &str,
    (key, content): (String, Known),
    created: bool,
    platform: Provider,
    action: impl Fn() -> Action,
    known: &impl Fn(&str, &str) -> Option<Known>,
) -> Plan {
    let at_source = known(source, &key);
    let early = if at_source.as_ref().map(|k| &k.fingerprint) == Some(&content.fingerprint) {
        Some(Skip::Echo)
    } else if newer(at_source.as_ref(), content.source_time) {
        Some(Skip::Stale)
    } else {
        rule_skip(config.rules, created)
    };
    let decisions = match early {
        Some(reason) => return skipped(config, reason, Some((key, content))),
        None => config
            .targets
            .iter()
            .map(|target| Decision {
                target: target.connection_id.clone(),
                outcome: content_outcome(target, platform, &key, &content, known)
                    .map(|()| action()),
            })
            .collect(),
    };
    Plan {
        source_update: Some((key, content)),
        decisions,
    }
}

/// Whether `target` (of `platform`) takes `content`: not when it already holds it, nor
/// anything newer.
fn content_outcome(
    target: &Target,
    platform: Provider,
    key: &str,
    content: &Known,
    known: &impl Fn(&str, &str) -> Option<Known>,
) -> Result<(), Skip> {
    if target.provider != platform {
        return Err(Skip::NotForPlatform);
    }
    let held = known(&target.connection_id, key);
    if held.as_ref().map(|k| &k.fingerprint) == Some(&content.fingerprint) {
        return Err(Skip::AlreadyHeld);
    }
    if newer(held.as_ref(), content.source_time) {
        return Err(Skip::Stale);
    }
    Ok(())
}

fn level_outcome(
    target: &Target,
    sku: &str,
    source_location: u64,
    time: Option<Timestamp>,
    known: &impl Fn(&str, &str) -> Option<Known>,
) -> Result<u64, Skip> {
    if target.provider != Provider::Shopify {
        return Err(Skip::NotForPlatform);
    }
    let location = *target
        .location_map
        .get(&source_location)
        .ok_or(Skip::UnmappedLocation)?;
    if newer(
        known(&target.connection_id, &level_key(sku, location)).as_ref(),
        time,
    ) {
        return Err(Skip::Stale);
    }
    Ok(location)
}

/// What to record at a target after a successful write: the product's content, or the
/// level's new quantity (so the target's webhook for it is recognised as an echo).
pub fn written(
    action: &Action,
    source_time: Option<Timestamp>,
    new_quantity: Option<i64>,
) -> Option<(String, Known)> {
    match action {
        Action::UpsertProduct { product, .. } => Some((
            product_key(&product.handle),
            Known {
                fingerprint: product.fingerprint(),
                source_time,
                quantity: None,
            },
        )),
        Action::DeleteProduct { .. } => None,
        Action::UpsertContact { contact } => contact.email.as_ref().map(|email| {
            (
                customer_key(email),
                Known {
                    fingerprint: contact.fingerprint(),
                    source_time,
                    quantity: None,
                },
            )
        }),
        Action::CreateOrder { order, source } => Some((
            order_key(source, order.id),
            Known {
                fingerprint: "placed".into(),
                source_time: None,
                quantity: None,
            },
        )),
        Action::SetInventory {
            sku, location_id, ..
        } => new_quantity.map(|q| (level_key(sku, *location_id), quantity_known(q, source_time))),
    }
}

#[cfg(test)]
mod tests;
