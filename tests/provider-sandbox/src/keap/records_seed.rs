//! Deterministic seed data for Keap opportunities, orders and tasks, shaped like keap-sdk's
//! v2 models (`RestV2Opportunity`, `OrderV2`, `Task`). Record `n` of a resource is drawn
//! from its own ChaCha stream, so it is the same whatever the count, and every timestamp
//! lies in the year before [`SEED_BASE_MS`]. About 10% of records share one of the
//! account's bulk-import instants (as contacts do), so listing must tie-break on id.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::keap::records::Resource;
use crate::seed::{
    chance, generate_contact, pick, BULK_IMPORT_PER_MILLE, COMPANIES, DAY_MS, NOTE_SENTENCES,
    YEAR_MS,
};
use crate::time::{format_ms, SEED_BASE_MS};

/// Stream tag per resource, in the top byte (contacts use the plain index).
fn stream(resource: Resource, index: u64) -> u64 {
    let tag: u64 = match resource {
        Resource::Opportunities => 1,
        Resource::Orders => 2,
        Resource::Tasks => 3,
    };
    (tag << 56) | index
}

#[rustfmt::skip]
const STAGES: &[(&str, &str)] = &[
    ("1", "New Lead"), ("2", "Qualified"), ("3", "Proposal Sent"), ("4", "Negotiation"),
    ("5", "Won"), ("6", "Lost"),
];
#[rustfmt::skip]
const DEALS: &[&str] = &[
    "Annual plan", "Website redesign", "Quarterly retainer", "Premium package",
    "Onboarding bundle", "Consulting block", "Renewal", "Upgrade to Pro",
];
#[rustfmt::skip]
const PRODUCTS: &[(&str, i64)] = &[
    ("Starter Kit", 4_900), ("Consultation (1 hour)", 15_000), ("Monthly Membership", 2_900),
    ("Premium Widget", 8_950), ("Gift Card", 5_000), ("Workshop Ticket", 12_500),
    ("Annual Subscription", 29_900), ("Shipping", 995),
];
#[rustfmt::skip]
const TASK_TITLES: &[&str] = &[
    "Follow up on proposal", "Call to confirm appointment", "Send onboarding email",
    "Prepare quote", "Check in after purchase", "Schedule quarterly review",
    "Collect testimonial", "Renewal reminder",
];
const TASK_TYPES: &[&str] = &["CALL", "EMAIL", "APPOINTMENT", "OTHER"];
const PRIORITIES: &[&str] = &["CRITICAL", "ESSENTIAL", "NONESSENTIAL"];
/// Users of the account (contacts' `owner_id` ranges over 1..8 too).
const USERS: &[(&str, &str)] = &[
    ("Jane", "Doe"),
    ("Sam", "Rivera"),
    ("Priya", "Shah"),
    ("Tom", "Becker"),
    ("Ana", "Lopes"),
    ("Kenji", "Mori"),
    ("Lea", "Novak"),
];

fn money(cents: i64) -> Value {
    json!({
        "amount": cents,
        "currency_code": "USD",
        "formatted_amount": format!("${}.{:02}", cents / 100, cents % 100),
    })
}

/// (create, update) instants: a tenth from a bulk import (both equal), otherwise created
/// within the year and updated later (a third never updated).
fn times<R: Rng>(rng: &mut R, bulk: &[i64; 4]) -> (i64, i64) {
    if chance(rng, BULK_IMPORT_PER_MILLE) {
        let at = bulk[rng.gen_range(0..bulk.len())];
        return (at, at);
    }
    let create = SEED_BASE_MS - rng.gen_range(DAY_MS..YEAR_MS);
    let update = if chance(rng, 333) {
        create
    } else {
        create + rng.gen_range(0..SEED_BASE_MS - create)
    };
    (create, update)
}

fn sentences<R: Rng>(rng: &mut R, min: usize, max: usize) -> String {
    (0..rng.gen_range(min..=max))
        .map(|_| pick(rng, NOTE_SENTENCES))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Generates the record at zero-based `index` (id `index + 1`) of `resource`; it refers to
/// a contact among `1..=contacts`.
pub fn generate(
    resource: Resource,
    seed: u64,
    index: u64,
    contacts: usize,
    bulk: &[i64; 4],
) -> Value {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream(resource, index));
    let id = index + 1;
    let contact_index = rng.gen_range(0..contacts.max(1) as u64);
    let contact = generate_contact(seed, contact_index, bulk);
    let email = contact
        .email_addresses
        .first()
        .map_or_else(String::new, |e| e.email.clone());
    let (create_ms, update_ms) = times(&mut rng, bulk);
    let user = rng.gen_range(0..USERS.len());
    match resource {
        Resource::Opportunities => {
            let (stage_id, stage_name) = STAGES[rng.gen_range(0..STAGES.len())];
            let company = contact.company.as_ref().map_or_else(
                || pick(&mut rng, COMPANIES).to_owned(),
                |c| c.company_name.clone(),
            );
            let low = f64::from(rng.gen_range(5..200u32)) * 50.0;
            let high = low + f64::from(rng.gen_range(0..100u32)) * 25.0;
            json!({
                "id": id.to_string(),
                "opportunity_title": format!("{} for {company}", pick(&mut rng, DEALS)),
                "contact": {
                    "id": contact.id,
                    "first_name": contact.given_name,
                    "last_name": contact.family_name,
                    "email": email,
                },
                "stage": {"id": stage_id, "name": stage_name},
                "user": {
                    "id": (user + 1).to_string(),
                    "first_name": USERS[user].0,
                    "last_name": USERS[user].1,
                },
                "include_in_forecast": chance(&mut rng, 700),
                "projected_revenue_low": low,
                "projected_revenue_high": high,
                "estimated_close_time": format_ms(create_ms + rng.gen_range(7..120) * DAY_MS),
                "next_action_time": format_ms(update_ms + rng.gen_range(1..30) * DAY_MS),
                "next_action_notes": sentences(&mut rng, 1, 1),
                "opportunity_notes": sentences(&mut rng, 0, 1),
                "created_time": format_ms(create_ms),
                "last_updated_time": format_ms(update_ms),
            })
        }
        Resource::Orders => {
            let items: Vec<Value> = (0..rng.gen_range(1..=3u64))
                .map(|k| {
                    let (name, price) = PRODUCTS[rng.gen_range(0..PRODUCTS.len())];
                    let quantity = rng.gen_range(1..4i64);
                    json!({
                        "id": (id * 10 + k).to_string(),
                        "name": name,
                        "quantity": quantity,
                        "item_type": "PRODUCT",
                        "price_per_unit": money(price),
                        "product": {"id": (PRODUCTS.iter().position(|p| p.0 == name).unwrap_or(0) + 1).to_string(), "name": name},
                    })
                })
                .collect();
            let total: i64 = items
                .iter()
                .map(|i| {
                    i["quantity"].as_i64().unwrap_or(0)
                        * i["price_per_unit"]["amount"].as_i64().unwrap_or(0)
                })
                .sum();
            let status =
                ["DRAFT", "SENT", "VIEWED", "PAID", "PAID", "PAID"][rng.gen_range(0..6usize)];
            let paid = if status == "PAID" { total } else { 0 };
            json!({
                "id": id.to_string(),
                "title": format!("Order for {} {}", contact.given_name, contact.family_name),
                "status": status,
                "total": money(total),
                "total_paid": money(paid),
                "total_due": money(total - paid),
                "contact": {
                    "id": contact.id,
                    "email": email,
                    "given_name": contact.given_name,
                    "family_name": contact.family_name,
                },
                "notes": sentences(&mut rng, 0, 1),
                "order_type": if chance(&mut rng, 800) { "ONLINE" } else { "OFFLINE" },
                "source_type": pick(&mut rng, &["API", "CHECKOUT_FORM", "INVOICE", "MANUAL_PAYMENT"]),
                "order_items": items,
                "order_time": format_ms(create_ms),
                "creation_time": format_ms(create_ms),
                "modification_time": format_ms(update_ms),
            })
        }
        Resource::Tasks => {
            let completed = update_ms > create_ms && chance(&mut rng, 400);
            let title = pick(&mut rng, TASK_TITLES);
            let remind = [5, 15, 30, 60, 1440][rng.gen_range(0..5)];
            let mut task = json!({
                "id": id.to_string(),
                "title": format!("{title}: {} {}", contact.given_name, contact.family_name),
                "description": sentences(&mut rng, 1, 2),
                "type": pick(&mut rng, TASK_TYPES),
                "priority": pick(&mut rng, PRIORITIES),
                "completed": completed,
                "assigned_to_user_id": (user + 1).to_string(),
                "created_by_user_id": rng.gen_range(1..=USERS.len()).to_string(),
                "contact_id": contact.id,
                "accepted": chance(&mut rng, 800),
                "remind_time_mins": remind,
                "create_time": format_ms(create_ms),
                "modification_time": format_ms(update_ms),
            });
            if let Some(object) = task.as_object_mut() {
                if chance(&mut rng, 800) {
                    object.insert(
                        "due_time".to_owned(),
                        Value::from(format_ms(create_ms + rng.gen_range(1..60) * DAY_MS)),
                    );
                }
                if completed {
                    object.insert(
                        "completion_time".to_owned(),
                        Value::from(format_ms(update_ms)),
                    );
                }
                if chance(&mut rng, 300) {
                    object.insert(
                        "opportunity_id".to_owned(),
                        Value::from(rng.gen_range(1..200u32).to_string()),
                    );
                }
            }
            task
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::{bulk_import_times, FAMILY_NAMES, GIVEN_NAMES};

    #[test]
    fn names_come_from_the_referenced_contact() {
        let bulk = bulk_import_times(42);
        let order = generate(Resource::Orders, 42, 0, 50, &bulk);
        let contact_id: u64 = order["contact"]["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        assert!((1..=50).contains(&contact_id));
        let contact = generate_contact(42, contact_id - 1, &bulk);
        assert_eq!(order["contact"]["given_name"], contact.given_name.as_str());
        assert!(GIVEN_NAMES.contains(&contact.given_name.as_str()));
        assert!(FAMILY_NAMES.contains(&contact.family_name.as_str()));
    }
}
