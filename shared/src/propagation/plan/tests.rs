//! Propagation plans over a small simulated world: shops hold products and levels, the
//! coordinator's known states live in a map, every write is echoed back as the target's
//! webhook, as Shopify does for changes made through the API.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::propagation::change::VariantSnapshot;
use crate::propagation::rules::SyncRules;

fn t(secs: i64) -> Option<Timestamp> {
    Some(Timestamp::from_millis(1_764_000_000_000 + secs * 1000))
}

fn shop(id: &str, locations: &[(u64, u64)]) -> Target {
    Target {
        connection_id: id.to_owned(),
        provider: Provider::Shopify,
        location_map: locations.iter().copied().collect(),
    }
}

fn all_on() -> SyncRules {
    SyncRules {
        enable_cross_platform_sync: true,
        propagate_creates: true,
        propagate_updates: true,
        propagate_deletes: true,
        propagate_inventory: true,
    }
}

fn lamp(title: &str) -> ProductSnapshot {
    ProductSnapshot {
        id: 1,
        handle: "lamp".into(),
        title: title.into(),
        body_html: String::new(),
        status: "active".into(),
        vendor: "Acme".into(),
        product_type: "Light".into(),
        variants: vec![VariantSnapshot {
            id: 11,
            sku: Some("LAMP-1".into()),
            title: "Default Title".into(),
            price: "19.99".into(),
            inventory_item_id: Some(111),
        }],
    }
}

fn product(created: bool, title: &str, secs: i64) -> Change {
    Change::Product {
        created,
        product: lamp(title),
        updated_at: t(secs),
    }
}

/// The coordinator's memory plus every write made, in order.
#[derive(Default)]
struct World {
    known: HashMap<(String, String), Known>,
    configs: BTreeMap<String, PropagationConfig>,
    writes: Vec<(String, Action)>,
    /// Current levels at the shops: (shop, sku@location) → available.
    levels: HashMap<(String, String), i64>,
    clock: i64,
}

impl World {
    fn config(&mut self, source: &str, targets: Vec<Target>) {
        self.configs.insert(
            source.to_owned(),
            PropagationConfig {
                rules: all_on(),
                targets,
            },
        );
    }

    fn level(&self, shop: &str, location: u64) -> i64 {
        self.levels
            .get(&(shop.to_owned(), level_key("LAMP-1", location)))
            .copied()
            .unwrap_or_default()
    }

    /// A webhook from `source`: plans it, makes the writes, and delivers each write's echo
    /// (the target's own webhook, with the target's ids and a later time).
    fn deliver(&mut self, source: &str, change: Change, sku: Option<&str>) -> Plan {
        let config = self.configs.get(source).cloned().unwrap_or_default();
        let known = &self.known;
        let plan = plan(
            &change,
            &config,
            Facts {
                source,
                sku,
                deleted_handle: Some("lamp"),
            },
            |c, k| known.get(&(c.to_owned(), k.to_owned())).cloned(),
        );
        if let Some((key, state)) = plan.source_update.clone() {
            self.known.insert((source.to_owned(), key), state);
        }
        let time = change.source_time();
        for decision in &plan.decisions {
            let Ok(action) = &decision.outcome else {
                continue;
            };
            self.clock += 1;
            let target = decision.target.clone();
            let (echo, quantity) = match action {
                Action::UpsertProduct { product, created } => (
                    Some(Change::Product {
                        created: *created,
                        product: ProductSnapshot {
                            id: 900 + self.clock.unsigned_abs(),
                            ..product.clone()
                        },
                        updated_at: t(1000 + self.clock),
                    }),
                    None,
                ),
                Action::SetInventory {
                    sku,
                    location_id,
                    change,
                } => {
                    let level = self
                        .levels
                        .entry((target.clone(), level_key(sku, *location_id)))
                        .or_insert(0);
                    *level = change.target_quantity(*level);
                    let echo = Change::Inventory {
                        inventory_item_id: 222,
                        location_id: *location_id,
                        available: *level,
                        updated_at: t(1000 + self.clock),
                    };
                    (Some(echo), Some(*level))
                }
                Action::DeleteProduct { .. }
                | Action::UpsertContact { .. }
                | Action::CreateOrder { .. } => (None, None),
            };
            if let Some((key, state)) = written(action, time, quantity) {
                self.known.insert((target.clone(), key), state);
            }
            self.writes.push((target.clone(), action.clone()));
            if let Some(echo) = echo {
                self.deliver(&target, echo, sku);
            }
        }
        plan
    }
}

#[test]
fn a_product_reaches_the_other_shop_once_and_its_echo_goes_nowhere() {
    let mut world = World::default();
    world.config("a", vec![shop("b", &[])]);
    world.config("b", vec![shop("a", &[])]);
    let plan = world.deliver("a", product(true, "Lamp", 0), None);
    assert!(matches!(
        plan.decisions[0].outcome,
        Ok(Action::UpsertProduct { created: true, .. })
    ));
    assert_eq!(world.writes.len(), 1, "B's echo was not sent back to A");
    // A redelivery of A's webhook changes nothing either.
    let again = world.deliver("a", product(true, "Lamp", 0), None);
    assert_eq!(again.decisions[0].outcome, Err(Skip::Echo));
    // A real edit at B (later) goes to A, once.
    world.deliver("b", product(false, "Lamp (B's edit)", 5000), None);
    assert_eq!(world.writes.len(), 2);
    assert_eq!(world.writes[1].0, "a");
}

#[test]
fn a_ring_of_three_shops_stops_after_one_hop() {
    let mut world = World::default();
    world.config("a", vec![shop("b", &[])]);
    world.config("b", vec![shop("c", &[])]);
    world.config("c", vec![shop("a", &[])]);
    world.deliver("a", product(false, "Lamp v2", 0), None);
    let targets: Vec<&str> = world.writes.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(targets, ["b"], "B's echo is not a change at B");
}

#[test]
fn stale_events_never_overwrite_newer_content() {
    let mut world = World::default();
    world.config("a", vec![shop("b", &[])]);
    world.deliver("a", product(false, "Newer", 100), None);
    let late = world.deliver("a", product(false, "Older", 10), None);
    assert_eq!(late.decisions[0].outcome, Err(Skip::Stale));
    assert!(
        late.source_update.is_none(),
        "the source's newer state stays"
    );
    assert_eq!(world.writes.len(), 1);
    // A target holding something newer (its own later edit) is not overwritten.
    world.known.insert(
        ("b".into(), product_key("lamp")),
        Known {
            fingerprint: "b's own".into(),
            source_time: t(500),
            quantity: None,
        },
    );
    let plan = world.deliver("a", product(false, "Between", 200), None);
    assert_eq!(plan.decisions[0].outcome, Err(Skip::Stale));
    assert_eq!(world.writes.len(), 1);
}

#[test]
fn rules_decide_what_propagates() {
    let facts = Facts {
        source: "a",
        sku: None,
        deleted_handle: Some("lamp"),
    };
    let nothing = |_: &str, _: &str| None;
    let with = |rules: SyncRules| PropagationConfig {
        rules,
        targets: vec![
            shop("b", &[]),
            Target {
                connection_id: "keap_1".into(),
                provider: Provider::Keap,
                location_map: BTreeMap::new(),
            },
        ],
    };
    let off = plan(
        &product(true, "Lamp", 0),
        &with(SyncRules::default()),
        facts,
        nothing,
    );
    assert!(off
        .decisions
        .iter()
        .all(|d| d.outcome == Err(Skip::SyncDisabled)));
    let no_creates = SyncRules {
        propagate_creates: false,
        ..all_on()
    };
    assert_eq!(
        plan(&product(true, "Lamp", 0), &with(no_creates), facts, nothing).decisions[0].outcome,
        Err(Skip::RuleOff("propagateCreates".into()))
    );
    assert!(plan(
        &product(false, "Lamp", 0),
        &with(no_creates),
        facts,
        nothing
    )
    .decisions[0]
        .outcome
        .is_ok());
    let everything = plan(&product(true, "Lamp", 0), &with(all_on()), facts, nothing);
    assert_eq!(everything.decisions[1].outcome, Err(Skip::NotForPlatform));
    let delete = Change::ProductDeleted { product_id: 1 };
    let no_deletes = SyncRules {
        propagate_deletes: false,
        ..all_on()
    };
    assert_eq!(
        plan(&delete, &with(no_deletes), facts, nothing).decisions[0].outcome,
        Err(Skip::RuleOff("propagateDeletes".into()))
    );
    assert_eq!(
        plan(&delete, &with(all_on()), facts, nothing).decisions[0].outcome,
        Ok(Action::DeleteProduct {
            handle: "lamp".into()
        })
    );
    let unknown = Facts {
        deleted_handle: None,
        ..facts
    };
    assert_eq!(
        plan(&delete, &with(all_on()), unknown, nothing).decisions[0].outcome,
        Err(Skip::UnknownProduct)
    );
}

#[test]
fn inventory_moves_by_the_source_change_so_concurrent_sales_are_kept() {
    let mut world = World::default();
    // A's location 11 is B's location 21; A's 12 is not mapped.
    world.config("a", vec![shop("b", &[(11, 21)])]);
    world.config("b", vec![shop("a", &[(21, 11)])]);
    let level = |location_id, available, secs| Change::Inventory {
        inventory_item_id: 111,
        location_id,
        available,
        updated_at: t(secs),
    };
    world
        .levels
        .insert(("b".into(), level_key("LAMP-1", 21)), 20);
    // First sight of A's level: B is set to the same quantity; B's echo is no change.
    let first = world.deliver("a", level(11, 10, 0), Some("LAMP-1"));
    assert_eq!(
        first.decisions[0].outcome,
        Ok(Action::SetInventory {
            sku: "LAMP-1".into(),
            location_id: 21,
            change: LevelChange::Absolute(10)
        })
    );
    assert_eq!(world.level("b", 21), 10);
    assert_eq!(world.writes.len(), 1);
    // A sells 3 while B sold 2: B ends at 10 - 2 - 3, not at A's 7.
    *world
        .levels
        .get_mut(&("b".into(), level_key("LAMP-1", 21)))
        .expect("level") -= 2;
    let sale = world.deliver("a", level(11, 7, 10), Some("LAMP-1"));
    assert!(matches!(
        sale.decisions[0].outcome,
        Ok(Action::SetInventory {
            change: LevelChange::Delta(-3),
            ..
        })
    ));
    assert_eq!(world.level("b", 21), 5);
    assert_eq!(world.level("a", 11), 0, "nothing came back to A");
    // A compare-and-set refused (B changed again): the delta applies to the new quantity.
    assert_eq!(LevelChange::Delta(-3).target_quantity(19), 16);
    assert_eq!(LevelChange::Absolute(4).target_quantity(19), 4);
    // A redelivery of A's webhook is no change.
    assert_eq!(
        world
            .deliver("a", level(11, 7, 10), Some("LAMP-1"))
            .decisions[0]
            .outcome,
        Err(Skip::NoChange)
    );
    assert_eq!(world.writes.len(), 2);
    assert_eq!(
        world
            .deliver("a", level(12, 1, 20), Some("LAMP-1"))
            .decisions[0]
            .outcome,
        Err(Skip::UnmappedLocation)
    );
    assert_eq!(
        world.deliver("a", level(11, 1, 20), None).decisions[0].outcome,
        Err(Skip::NoSku)
    );
    world
        .configs
        .get_mut("a")
        .expect("a")
        .rules
        .propagate_inventory = false;
    assert_eq!(
        world
            .deliver("a", level(11, 1, 30), Some("LAMP-1"))
            .decisions[0]
            .outcome,
        Err(Skip::RuleOff("propagateInventory".into()))
    );
}

fn keap(id: &str) -> Target {
    Target {
        connection_id: id.to_owned(),
        provider: Provider::Keap,
        location_map: BTreeMap::new(),
    }
}

fn customer(first_name: &str, secs: i64, created: bool) -> Change {
    Change::Customer {
        created,
        customer: CustomerSnapshot {
            id: 5,
            email: Some("ann@example.com".into()),
            first_name: first_name.into(),
            last_name: "Lee".into(),
            phone: None,
        },
        updated_at: t(secs),
    }
}

/// Plans `change` from shop `a` to a Keap account and shop `b`, then records what the writes
/// leave known, as the coordinator does.
fn plan_to_keap(
    known: &mut HashMap<(String, String), Known>,
    change: &Change,
    rules: SyncRules,
) -> Vec<Decision> {
    let config = PropagationConfig {
        rules,
        targets: vec![keap("keap"), shop("b", &[])],
    };
    let facts = Facts {
        source: "a",
        sku: None,
        deleted_handle: None,
    };
    let planned = plan(change, &config, facts, |c, k| {
        known.get(&(c.to_owned(), k.to_owned())).cloned()
    });
    if let Some((key, state)) = planned.source_update {
        known.insert(("a".into(), key), state);
    }
    for decision in &planned.decisions {
        if let Ok(action) = &decision.outcome {
            if let Some((key, state)) = written(action, change.source_time(), None) {
                known.insert((decision.target.clone(), key), state);
            }
        }
    }
    planned.decisions
}

#[test]
fn customers_become_keap_contacts_once_and_shops_are_not_written() {
    let mut known = HashMap::new();
    let decisions = plan_to_keap(&mut known, &customer("Ann", 1, true), all_on());
    assert!(matches!(
        &decisions[0].outcome,
        Ok(Action::UpsertContact { contact }) if contact.email.as_deref() == Some("ann@example.com")
    ));
    assert_eq!(decisions[1].outcome, Err(Skip::NotForPlatform));
    // The same content again (products/create and update, a redelivery): nothing.
    let again = plan_to_keap(&mut known, &customer("Ann", 1, false), all_on());
    assert_eq!(again[0].outcome, Err(Skip::Echo));
    // A later edit is written; an older one is not.
    let edit = plan_to_keap(&mut known, &customer("Annie", 5, false), all_on());
    assert!(matches!(edit[0].outcome, Ok(Action::UpsertContact { .. })));
    let stale = plan_to_keap(&mut known, &customer("Ann B", 3, false), all_on());
    assert_eq!(stale[0].outcome, Err(Skip::Stale));
    // Updates off: an edit is recorded as skipped by that rule.
    let off = SyncRules {
        propagate_updates: false,
        ..all_on()
    };
    let skipped = plan_to_keap(&mut known, &customer("Anna", 9, false), off);
    assert_eq!(
        skipped[0].outcome,
        Err(Skip::RuleOff("propagateUpdates".into()))
    );
}

#[test]
fn an_order_is_created_at_keap_once_and_needs_an_email() {
    let order = |email: Option<&str>| Change::Order {
        order: OrderSnapshot {
            id: 1001,
            name: "#1001".into(),
            email: email.map(str::to_owned),
            created_at: None,
            currency: "USD".into(),
            total_price: "19.99".into(),
            customer: None,
            line_items: Vec::new(),
        },
    };
    let mut known = HashMap::new();
    let first = plan_to_keap(&mut known, &order(Some("bob@example.com")), all_on());
    assert!(matches!(first[0].outcome, Ok(Action::CreateOrder { .. })));
    let redelivered = plan_to_keap(&mut known, &order(Some("bob@example.com")), all_on());
    assert_eq!(redelivered[0].outcome, Err(Skip::Echo), "never two orders");
    let mut fresh = HashMap::new();
    assert_eq!(
        plan_to_keap(&mut fresh, &order(None), all_on())[0].outcome,
        Err(Skip::NoEmail)
    );
    let creates_off = SyncRules {
        propagate_creates: false,
        ..all_on()
    };
    assert_eq!(
        plan_to_keap(&mut fresh, &order(Some("c@example.com")), creates_off)[0].outcome,
        Err(Skip::RuleOff("propagateCreates".into()))
    );
}
