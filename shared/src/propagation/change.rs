//! What a Shopify webhook says changed, in the terms propagation needs, and the event it
//! becomes in `background_events` (`PRODUCT_CREATED`, `PRODUCT_UPDATED`, `PRODUCT_DELETED`,
//! `INVENTORY_UPDATED`, with the source connection, platform ids, location, new quantity and
//! webhook id). Payloads are the REST shapes Shopify delivers
//! (<https://shopify.dev/docs/api/webhooks?reference=toml>); ids are read as 64-bit integers.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::fingerprint;
use crate::coordinator_api::EventEnvelope;
use crate::Timestamp;

/// A variant as propagation matches it (by SKU).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantSnapshot {
    /// The source's variant id.
    pub id: u64,
    /// The SKU (matching key across shops); variants without one are not propagated.
    pub sku: Option<String>,
    /// Variant title.
    pub title: String,
    /// Price as Shopify writes it (`"19.99"`).
    pub price: String,
    /// The source's inventory item.
    pub inventory_item_id: Option<u64>,
}

/// A product as propagation writes it (matched across shops by handle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductSnapshot {
    /// The source's product id.
    pub id: u64,
    /// URL handle (matching key across shops).
    pub handle: String,
    /// Title.
    pub title: String,
    /// Description HTML.
    pub body_html: String,
    /// `active`, `draft` or `archived`.
    pub status: String,
    /// Vendor.
    pub vendor: String,
    /// Product type.
    pub product_type: String,
    /// Variants in position order.
    pub variants: Vec<VariantSnapshot>,
}

impl ProductSnapshot {
    /// The fingerprint of the propagated fields (not ids or times, which differ per shop):
    /// two shops holding the same content have the same fingerprint.
    pub fn fingerprint(&self) -> String {
        let variants: Vec<Value> = self
            .variants
            .iter()
            .map(|v| json!([v.sku, v.title, v.price]))
            .collect();
        fingerprint(
            &json!([
                self.handle,
                self.title,
                self.body_html,
                self.status,
                self.vendor,
                self.product_type,
                variants
            ])
            .to_string(),
        )
    }
}

/// A Shopify customer as a Keap contact is written from it (matched by email).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerSnapshot {
    /// The source's customer id.
    pub id: u64,
    /// Email, lowercase (the matching key in Keap); customers without one are not
    /// propagated.
    pub email: Option<String>,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Phone, as the shop holds it.
    pub phone: Option<String>,
}

impl CustomerSnapshot {
    /// The fingerprint of the propagated fields.
    pub fn fingerprint(&self) -> String {
        fingerprint(&json!([self.email, self.first_name, self.last_name, self.phone]).to_string())
    }

    fn from_payload(value: &Value) -> Option<Self> {
        Some(CustomerSnapshot {
            id: value.get("id").and_then(id)?,
            email: value
                .get("email")
                .and_then(Value::as_str)
                .map(|e| e.trim().to_lowercase())
                .filter(|e| !e.is_empty()),
            first_name: text(value, "first_name"),
            last_name: text(value, "last_name"),
            phone: value
                .get("phone")
                .and_then(Value::as_str)
                .filter(|p| !p.trim().is_empty())
                .map(str::to_owned),
        })
    }
}

/// One line of an order (matched to a Keap product by SKU).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    /// The variant's SKU, if any.
    pub sku: Option<String>,
    /// The line's title.
    pub title: String,
    /// Quantity.
    pub quantity: i64,
    /// Unit price as Shopify writes it (`"19.99"`).
    pub price: String,
}

/// A Shopify order as a Keap order is written from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSnapshot {
    /// The source's order id.
    pub id: u64,
    /// Its name at the shop (`#1001`).
    pub name: String,
    /// The buyer's email, lowercase.
    pub email: Option<String>,
    /// When it was placed (ISO 8601, as sent).
    pub created_at: Option<String>,
    /// Currency code.
    pub currency: String,
    /// Total price as Shopify writes it.
    pub total_price: String,
    /// The buyer, when the order names one.
    pub customer: Option<CustomerSnapshot>,
    /// Its lines.
    pub line_items: Vec<LineItem>,
}

impl OrderSnapshot {
    /// The email the Keap contact is matched by: the order's, else its customer's.
    pub fn buyer_email(&self) -> Option<&str> {
        self.email
            .as_deref()
            .or_else(|| self.customer.as_ref().and_then(|c| c.email.as_deref()))
    }
}

/// A change at a Shopify shop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// `products/create` (`created`) or `products/update`.
    Product {
        /// Whether the product is new at the source.
        created: bool,
        /// Its content.
        product: ProductSnapshot,
        /// `updated_at` at the source.
        updated_at: Option<Timestamp>,
    },
    /// `products/delete`: only the id is sent, so the handle comes from what is known of
    /// the product ([`super::plan::Known`]).
    ProductDeleted {
        /// The source's product id.
        product_id: u64,
    },
    /// `inventory_levels/update`.
    Inventory {
        /// The source's inventory item.
        inventory_item_id: u64,
        /// The source's location.
        location_id: u64,
        /// The new `available` quantity.
        available: i64,
        /// `updated_at` at the source.
        updated_at: Option<Timestamp>,
    },
    /// `customers/create` (`created`) or `customers/update`.
    Customer {
        /// Whether the customer is new at the source.
        created: bool,
        /// Its content.
        customer: CustomerSnapshot,
        /// `updated_at` at the source.
        updated_at: Option<Timestamp>,
    },
    /// `orders/create`.
    Order {
        /// Its content.
        order: OrderSnapshot,
    },
}

/// Why a payload is not a change propagation understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// A topic propagation does not handle (acknowledged, not propagated).
    #[error("topic {0} is not propagated")]
    UnknownTopic(String),
    /// The payload lacks a field the topic needs.
    #[error("{topic} payload has no usable {field}")]
    Missing {
        /// The topic.
        topic: String,
        /// What is missing.
        field: &'static str,
    },
    /// Not JSON.
    #[error("payload is not JSON: {0}")]
    NotJson(String),
}

fn id(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn time(value: &Value) -> Option<Timestamp> {
    value
        .get("updated_at")
        .and_then(Value::as_str)
        .and_then(Timestamp::parse_iso8601)
}

impl Change {
    /// The source's time of the change (`updated_at`), where the payload has one.
    pub fn source_time(&self) -> Option<Timestamp> {
        match self {
            Change::Product { updated_at, .. }
            | Change::Inventory { updated_at, .. }
            | Change::Customer { updated_at, .. } => *updated_at,
            Change::ProductDeleted { .. } | Change::Order { .. } => None,
        }
    }

    /// Reads a delivery of `topic` (e.g. `products/update`). The body is parsed with
    /// serde_json's integers, so ids beyond 2^53 stay exact.
    pub fn from_webhook(topic: &str, body: &[u8]) -> Result<Self, ChangeError> {
        let payload: Value =
            serde_json::from_slice(body).map_err(|e| ChangeError::NotJson(e.to_string()))?;
        Self::from_payload(topic, &payload)
    }

    /// Reads the parsed payload of a delivery of `topic`.
    pub fn from_payload(topic: &str, payload: &Value) -> Result<Self, ChangeError> {
        let missing = |field| ChangeError::Missing {
            topic: topic.to_owned(),
            field,
        };
        match topic {
            "products/create" | "products/update" => {
                let product_id = payload.get("id").and_then(id).ok_or(missing("id"))?;
                let handle = text(payload, "handle");
                if handle.is_empty() {
                    return Err(missing("handle"));
                }
                let variants = payload
                    .get("variants")
                    .and_then(Value::as_array)
                    .map(|list| {
                        list.iter()
                            .filter_map(|v| {
                                Some(VariantSnapshot {
                                    id: v.get("id").and_then(id)?,
                                    sku: v
                                        .get("sku")
                                        .and_then(Value::as_str)
                                        .filter(|s| !s.trim().is_empty())
                                        .map(str::to_owned),
                                    title: text(v, "title"),
                                    price: text(v, "price"),
                                    inventory_item_id: v.get("inventory_item_id").and_then(id),
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(Change::Product {
                    created: topic == "products/create",
                    product: ProductSnapshot {
                        id: product_id,
                        handle,
                        title: text(payload, "title"),
                        body_html: text(payload, "body_html"),
                        status: text(payload, "status"),
                        vendor: text(payload, "vendor"),
                        product_type: text(payload, "product_type"),
                        variants,
                    },
                    updated_at: time(payload),
                })
            }
            "products/delete" => Ok(Change::ProductDeleted {
                product_id: payload.get("id").and_then(id).ok_or(missing("id"))?,
            }),
            "inventory_levels/update" => Ok(Change::Inventory {
                inventory_item_id: payload
                    .get("inventory_item_id")
                    .and_then(id)
                    .ok_or(missing("inventory_item_id"))?,
                location_id: payload
                    .get("location_id")
                    .and_then(id)
                    .ok_or(missing("location_id"))?,
                available: payload
                    .get("available")
                    .and_then(Value::as_i64)
                    .ok_or(missing("available"))?,
                updated_at: time(payload),
            }),
            "customers/create" | "customers/update" => Ok(Change::Customer {
                created: topic == "customers/create",
                customer: CustomerSnapshot::from_payload(payload).ok_or(missing("id"))?,
                updated_at: time(payload),
            }),
            "orders/create" => {
                let line_items = payload
                    .get("line_items")
                    .and_then(Value::as_array)
                    .map(|lines| {
                        lines
                            .iter()
                            .map(|l| LineItem {
                                sku: l
                                    .get("sku")
                                    .and_then(Value::as_str)
                                    .filter(|s| !s.trim().is_empty())
                                    .map(str::to_owned),
                                title: text(l, "title"),
                                quantity: l.get("quantity").and_then(Value::as_i64).unwrap_or(1),
                                price: text(l, "price"),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(Change::Order {
                    order: OrderSnapshot {
                        id: payload.get("id").and_then(id).ok_or(missing("id"))?,
                        name: text(payload, "name"),
                        email: payload
                            .get("email")
                            .and_then(Value::as_str)
                            .map(|e| e.trim().to_lowercase())
                            .filter(|e| !e.is_empty()),
                        created_at: payload
                            .get("created_at")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        currency: text(payload, "currency"),
                        total_price: text(payload, "total_price"),
                        customer: payload
                            .get("customer")
                            .and_then(CustomerSnapshot::from_payload),
                        line_items,
                    },
                })
            }
            other => Err(ChangeError::UnknownTopic(other.to_owned())),
        }
    }

    /// The `background_events` row of this change: `(event_type, event_data)`.
    pub fn event(
        &self,
        source_connection_id: &str,
        webhook_id: Option<&str>,
    ) -> (&'static str, Value) {
        let at = |t: &Option<Timestamp>| t.map(Timestamp::to_iso8601);
        match self {
            Change::Product {
                created,
                product,
                updated_at,
            } => (
                if *created {
                    "PRODUCT_CREATED"
                } else {
                    "PRODUCT_UPDATED"
                },
                json!({
                    "source_connection_id": source_connection_id,
                    "platform": "shopify",
                    "product_id": product.id,
                    "handle": product.handle,
                    "title": product.title,
                    "variant_ids": product.variants.iter().map(|v| v.id).collect::<Vec<_>>(),
                    "skus": product.variants.iter().filter_map(|v| v.sku.clone()).collect::<Vec<_>>(),
                    "updated_at": at(updated_at),
                    "webhook_id": webhook_id,
                }),
            ),
            Change::ProductDeleted { product_id } => (
                "PRODUCT_DELETED",
                json!({
                    "source_connection_id": source_connection_id,
                    "platform": "shopify",
                    "product_id": product_id,
                    "webhook_id": webhook_id,
                }),
            ),
            Change::Inventory {
                inventory_item_id,
                location_id,
                available,
                updated_at,
            } => (
                "INVENTORY_UPDATED",
                json!({
                    "source_connection_id": source_connection_id,
                    "platform": "shopify",
                    "inventory_item_id": inventory_item_id,
                    "location_id": location_id,
                    "new_quantity": available,
                    "updated_at": at(updated_at),
                    "webhook_id": webhook_id,
                }),
            ),
            Change::Customer {
                created,
                customer,
                updated_at,
            } => (
                if *created {
                    "CUSTOMER_CREATED"
                } else {
                    "CUSTOMER_UPDATED"
                },
                json!({
                    "source_connection_id": source_connection_id,
                    "platform": "shopify",
                    "customer_id": customer.id,
                    "email": customer.email,
                    "updated_at": at(updated_at),
                    "webhook_id": webhook_id,
                }),
            ),
            Change::Order { order } => (
                "ORDER_CREATED",
                json!({
                    "source_connection_id": source_connection_id,
                    "platform": "shopify",
                    "order_id": order.id,
                    "name": order.name,
                    "email": order.buyer_email(),
                    "total_price": order.total_price,
                    "currency": order.currency,
                    "skus": order.line_items.iter().filter_map(|l| l.sku.clone()).collect::<Vec<_>>(),
                    "webhook_id": webhook_id,
                }),
            ),
        }
    }
}

/// The topic of a delivery a propagation starts from: by its event type, or — for the
/// customer topics, which are record changes without an event type — by its dedup key
/// (`shopify:<topic>:<delivery id>`, as [`crate::webhook::classify_shopify`] writes it).
fn topic_of(delivery: &EventEnvelope) -> Option<&'static str> {
    Some(match delivery.event_type.as_deref() {
        Some("shopify.product.created") => "products/create",
        Some("shopify.product.updated") => "products/update",
        Some("shopify.product.deleted") => "products/delete",
        Some("shopify.inventory.updated" | "shopify.inventory.low") => "inventory_levels/update",
        Some("shopify.order.created") => "orders/create",
        Some(_) => return None,
        None => match delivery
            .dedup_key
            .as_deref()
            .and_then(|k| k.strip_prefix("shopify:"))
            .and_then(|k| k.split(':').next())
        {
            Some("customers/create") => "customers/create",
            Some("customers/update") => "customers/update",
            _ => return None,
        },
    })
}

/// The event types of propagation events, as `background_events` holds them.
pub const PROPAGATION_EVENT_TYPES: [&str; 7] = [
    "PRODUCT_CREATED",
    "PRODUCT_UPDATED",
    "PRODUCT_DELETED",
    "INVENTORY_UPDATED",
    "CUSTOMER_CREATED",
    "CUSTOMER_UPDATED",
    "ORDER_CREATED",
];

/// The propagation event stored with a Shopify delivery of a source connection (its
/// `event_data` is [`Change::event`]'s, plus the `change` itself for the planner), or `None`
/// when the delivery is not a product or inventory change. Its dedup key is the delivery's,
/// prefixed, so a redelivery stores neither twice.
pub fn propagation_envelope(
    delivery: &EventEnvelope,
    source_connection_id: &str,
) -> Option<Result<EventEnvelope, ChangeError>> {
    if delivery.source != "shopify" {
        return None;
    }
    let topic = topic_of(delivery)?;
    let change = match Change::from_payload(topic, &delivery.event_data) {
        Ok(change) => change,
        Err(e) => return Some(Err(e)),
    };
    // `shopify:<topic>:<webhook or event id>`; a body digest is no webhook id.
    let webhook_id = delivery
        .dedup_key
        .as_deref()
        .and_then(|k| k.rsplit_once(':'))
        .filter(|(prefix, _)| !prefix.ends_with(":sha256"))
        .map(|(_, id)| id);
    let (event_type, mut data) = change.event(source_connection_id, webhook_id);
    if let (Some(object), Ok(change)) = (data.as_object_mut(), serde_json::to_value(&change)) {
        object.insert("change".to_owned(), change);
    }
    Some(Ok(EventEnvelope {
        source: delivery.source.clone(),
        event_type: Some(event_type.to_owned()),
        dedup_key: delivery
            .dedup_key
            .as_ref()
            .map(|k| format!("propagation:{k}")),
        content_key: None,
        event_data: data,
        occurred_at: delivery.occurred_at,
        record_change: None,
        user_id: None,
        rate_limit_per_minute: 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRODUCT: &str = r#"{"id": 9007199254740993, "title": "Lamp", "handle": "lamp",
        "body_html": "<p>Warm</p>", "status": "active", "vendor": "Acme", "product_type": "Light",
        "updated_at": "2026-11-20T10:00:00-05:00",
        "variants": [{"id": 9007199254740995, "title": "Default Title", "sku": "LAMP-1",
                      "price": "19.99", "inventory_item_id": 9007199254740997},
                     {"id": 2, "title": "No SKU", "sku": "", "price": "1.00"}]}"#;

    #[test]
    fn products_are_read_with_exact_ids_and_variants_by_sku() {
        let change = Change::from_webhook("products/create", PRODUCT.as_bytes()).expect("change");
        let Change::Product {
            created,
            product,
            updated_at,
        } = &change
        else {
            panic!("a product: {change:?}");
        };
        assert!(created);
        assert_eq!(product.id, 9_007_199_254_740_993);
        assert_eq!(product.variants[0].sku.as_deref(), Some("LAMP-1"));
        assert_eq!(
            product.variants[0].inventory_item_id,
            Some(9_007_199_254_740_997)
        );
        assert_eq!(product.variants[1].sku, None, "blank SKUs match nothing");
        assert_eq!(
            *updated_at,
            Timestamp::parse_iso8601("2026-11-20T15:00:00Z")
        );
        let (event_type, data) = change.event("shopify_a", Some("wh-1"));
        assert_eq!(event_type, "PRODUCT_CREATED");
        assert_eq!(data["product_id"].as_u64(), Some(9_007_199_254_740_993));
        assert_eq!(data["source_connection_id"], "shopify_a");
        assert_eq!(data["webhook_id"], "wh-1");
        assert_eq!(data["skus"], json!(["LAMP-1"]));
    }

    #[test]
    fn the_fingerprint_ignores_ids_and_times_but_not_content() {
        let a = Change::from_webhook("products/update", PRODUCT.as_bytes()).expect("a");
        let elsewhere = PRODUCT
            .replace("9007199254740993", "42")
            .replace("2026-11-20T10:00:00-05:00", "2026-11-21T00:00:00Z");
        let b = Change::from_webhook("products/update", elsewhere.as_bytes()).expect("b");
        let retitled = Change::from_webhook(
            "products/update",
            PRODUCT.replace("\"Lamp\"", "\"Lamp II\"").as_bytes(),
        )
        .expect("c");
        let print = |c: &Change| match c {
            Change::Product { product, .. } => product.fingerprint(),
            _ => String::new(),
        };
        assert_eq!(print(&a), print(&b));
        assert_ne!(print(&a), print(&retitled));
    }

    #[test]
    fn deletes_levels_and_refusals() {
        assert_eq!(
            Change::from_webhook("products/delete", br#"{"id": 7}"#),
            Ok(Change::ProductDeleted { product_id: 7 })
        );
        let level = Change::from_webhook(
            "inventory_levels/update",
            br#"{"inventory_item_id": 43729076867345678, "location_id": 64357974123456789,
                 "available": 3, "updated_at": "2026-11-20T10:00:00Z"}"#,
        )
        .expect("level");
        let (event_type, data) = level.event("shopify_a", None);
        assert_eq!(event_type, "INVENTORY_UPDATED");
        assert_eq!(data["new_quantity"], 3);
        assert_eq!(data["location_id"].as_u64(), Some(64_357_974_123_456_789));
        assert_eq!(
            Change::from_webhook("inventory_levels/update", br#"{"inventory_item_id": 1}"#),
            Err(ChangeError::Missing {
                topic: "inventory_levels/update".into(),
                field: "location_id"
            })
        );
        assert!(matches!(
            Change::from_webhook("collections/create", b"{}"),
            Err(ChangeError::UnknownTopic(_))
        ));
        assert!(matches!(
            Change::from_webhook("products/update", b"not json"),
            Err(ChangeError::NotJson(_))
        ));
    }

    fn delivery(event_type: &str, dedup_key: &str, data: Value) -> EventEnvelope {
        EventEnvelope {
            source: "shopify".into(),
            event_type: Some(event_type.into()),
            dedup_key: Some(dedup_key.into()),
            content_key: Some("content".into()),
            event_data: data,
            occurred_at: None,
            record_change: None,
            user_id: None,
            rate_limit_per_minute: 60,
        }
    }

    #[test]
    fn a_source_delivery_gets_its_propagation_event() {
        let product: Value = serde_json::from_str(PRODUCT).expect("json");
        let event = propagation_envelope(
            &delivery(
                "shopify.product.created",
                "shopify:products/create:ev-1",
                product,
            ),
            "shopify_a",
        )
        .expect("a product change")
        .expect("readable");
        assert_eq!(event.event_type.as_deref(), Some("PRODUCT_CREATED"));
        assert_eq!(
            event.dedup_key.as_deref(),
            Some("propagation:shopify:products/create:ev-1"),
            "a redelivery stores neither twice"
        );
        assert_eq!(event.content_key, None);
        assert_eq!(
            event.rate_limit_per_minute, 0,
            "counted once, with its delivery"
        );
        assert_eq!(event.event_data["webhook_id"], "ev-1");
        let change: Change =
            serde_json::from_value(event.event_data["change"].clone()).expect("the change");
        assert!(matches!(change, Change::Product { created: true, .. }));

        let level = json!({"inventory_item_id": 7, "location_id": 8, "available": 2,
                           "low_stock_threshold": 5});
        let event = propagation_envelope(
            &delivery(
                "shopify.inventory.low",
                "shopify:inventory_levels/update:sha256:ab",
                level,
            ),
            "shopify_a",
        )
        .expect("an inventory change")
        .expect("readable");
        assert_eq!(event.event_type.as_deref(), Some("INVENTORY_UPDATED"));
        assert_eq!(event.event_data["new_quantity"], 2);
        assert_eq!(
            event.event_data["webhook_id"],
            Value::Null,
            "a digest is no webhook id"
        );

        let collection = delivery("shopify.collection.created", "k", json!({"id": 1}));
        assert!(propagation_envelope(&collection, "shopify_a").is_none());

        let order = json!({"id": 450789469, "name": "#1001", "email": "Bob@Example.com",
            "created_at": "2026-11-20T10:00:00-05:00", "currency": "USD", "total_price": "39.98",
            "customer": {"id": 207119551, "email": "bob@example.com", "first_name": "Bob",
                         "last_name": "Norman", "phone": null},
            "line_items": [{"sku": "LAMP-1", "title": "Lamp", "quantity": 2, "price": "19.99"},
                           {"sku": "", "title": "Gift wrap", "quantity": 1, "price": "0.00"}]});
        let event = propagation_envelope(
            &delivery("shopify.order.created", "shopify:orders/create:ev-2", order),
            "shopify_a",
        )
        .expect("an order")
        .expect("readable");
        assert_eq!(event.event_type.as_deref(), Some("ORDER_CREATED"));
        assert_eq!(event.event_data["email"], "bob@example.com");
        let Ok(Change::Order { order }) =
            serde_json::from_value(event.event_data["change"].clone())
        else {
            panic!("an order change: {}", event.event_data);
        };
        assert_eq!(order.line_items[0].quantity, 2);
        assert_eq!(order.line_items[1].sku, None, "blank SKUs are none");

        // Customer deliveries have no event type: the topic is read from the dedup key.
        let mut customer = delivery(
            "",
            "shopify:customers/update:ev-3",
            json!({"id": 5, "email": " Ann@Example.com ", "first_name": "Ann", "last_name": "Lee"}),
        );
        customer.event_type = None;
        let event = propagation_envelope(&customer, "shopify_a")
            .expect("a customer")
            .expect("readable");
        assert_eq!(event.event_type.as_deref(), Some("CUSTOMER_UPDATED"));
        assert_eq!(event.event_data["email"], "ann@example.com");
        let broken = delivery("shopify.product.updated", "k", json!({"id": 1}));
        assert!(matches!(
            propagation_envelope(&broken, "shopify_a"),
            Some(Err(ChangeError::Missing {
                field: "handle",
                ..
            }))
        ));
    }
}
