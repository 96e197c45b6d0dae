//! Shopify webhooks (<https://shopify.dev/docs/apps/build/webhooks>; REST webhook payloads).
//!
//! Record payloads are rewritten into the GraphQL node shape the sync reads and then go
//! through the sync's own node readers, so a webhook upsert yields exactly the columns
//! (and the same `raw` shape) a sync run would.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::{
    dedup_key, delivery_id, parse_object, time_at, IncomingEvent, ParseError, PrivacySubject,
    RecordChange,
};
use crate::sync::values::{at, parse_time};
use crate::sync::{shopify_inventory_records, shopify_numeric_id, shopify_record, Resource};

/// The sync reads the first 100 variants of a product; a webhook record keeps as many.
const MAX_VARIANTS: usize = 100;

/// What a topic means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topic {
    /// A product record (`products/create`, `products/update`).
    Product,
    /// An order record (`orders/create`, `orders/updated`, `orders/paid`, ...).
    Order,
    /// A customer record (`customers/create`, `customers/update`).
    Customer,
    /// An inventory level (`inventory_levels/update`, `inventory_levels/connect`).
    InventoryLevel,
    /// `{id}` of a deleted product, order or customer.
    Deleted(Resource),
    /// `inventory_levels/disconnect`: `{inventory_item_id, location_id}`.
    InventoryDisconnected,
    /// `customers/data_request`: report what is held about a customer.
    DataRequest,
    /// `customers/redact`: erase a customer's personal data.
    CustomerRedact,
    /// `shop/redact`: erase everything of the shop.
    ShopRedact,
    /// A topic with no record table.
    Other,
}

/// The event type of `app/uninstalled`: the coordinator revokes the connection on it.
pub const APP_UNINSTALLED_EVENT: &str = "shopify.app.uninstalled";

/// Topics Shopify still sends after the app is uninstalled (`shop/redact` comes 48 hours
/// later; shopify.dev/docs/apps/build/compliance/privacy-law-compliance), so they are
/// accepted for a revoked connection too.
pub fn accepted_after_uninstall(topic: &str) -> bool {
    matches!(
        topic.trim().to_ascii_lowercase().as_str(),
        "customers/data_request" | "customers/redact" | "shop/redact" | "app/uninstalled"
    )
}

/// The event types of the topics [`accepted_after_uninstall`] names.
pub fn event_accepted_after_uninstall(event_type: Option<&str>) -> bool {
    matches!(
        event_type,
        Some(
            "shopify.customers.data_request"
                | "shopify.customers.redact"
                | "shopify.shop.redact"
                | APP_UNINSTALLED_EVENT
        )
    )
}

/// The customer of a privacy payload (`customer{id,email,phone}`) and the orders it names
/// under `orders_key`.
fn privacy_subject(payload: &Value, orders_key: &str) -> PrivacySubject {
    let customer = payload.get("customer").cloned().unwrap_or(Value::Null);
    let text = |key: &str| {
        customer
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let orders = payload
        .get(orders_key)
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(|id| match id {
                    Value::Number(n) => n.as_u64().map(|n| n.to_string()),
                    Value::String(s) => shopify_numeric_id(s).map(str::to_owned),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    PrivacySubject {
        customer_id: id_at(&customer, "id"),
        email: text("email").map(|e| e.to_ascii_lowercase()),
        phone: text("phone"),
        orders,
    }
}

/// The record kind a (lowercase) topic carries.
fn topic_kind(topic: &str) -> Topic {
    match topic {
        "products/create" | "products/update" => Topic::Product,
        "orders/create"
        | "orders/updated"
        | "orders/paid"
        | "orders/fulfilled"
        | "orders/partially_fulfilled"
        | "orders/cancelled" => Topic::Order,
        "customers/create" | "customers/update" => Topic::Customer,
        "inventory_levels/update" | "inventory_levels/connect" => Topic::InventoryLevel,
        "products/delete" => Topic::Deleted(Resource::ShopifyProducts),
        "orders/delete" => Topic::Deleted(Resource::ShopifyOrders),
        "customers/delete" => Topic::Deleted(Resource::ShopifyCustomers),
        "inventory_levels/disconnect" => Topic::InventoryDisconnected,
        "customers/data_request" => Topic::DataRequest,
        "customers/redact" => Topic::CustomerRedact,
        "shop/redact" => Topic::ShopRedact,
        _ => Topic::Other,
    }
}

/// The seed's event type of a topic (lowercase); `None` for topics the seed does not know.
fn event_type(topic: &str, payload: &Value, low_stock_threshold: i64) -> Option<&'static str> {
    Some(match topic {
        "products/create" => "shopify.product.created",
        "products/update" => "shopify.product.updated",
        "products/delete" => "shopify.product.deleted",
        "collections/create" => "shopify.collection.created",
        "orders/create" => "shopify.order.created",
        "customers/data_request" => "shopify.customers.data_request",
        "customers/redact" => "shopify.customers.redact",
        "shop/redact" => "shopify.shop.redact",
        "app/uninstalled" => APP_UNINSTALLED_EVENT,
        "inventory_levels/update" => {
            // `available` is null when the item is not tracked: that is no low stock.
            let available = payload.get("available").and_then(Value::as_i64);
            if available.is_some_and(|n| n <= low_stock_threshold) {
                "shopify.inventory.low"
            } else {
                "shopify.inventory.updated"
            }
        }
        _ => return None,
    })
}

/// A Shopify id as exact decimal text: an integer (read through `as_u64`/`as_i64`, never
/// f64, as these ids exceed 2^53), a decimal string, or a GID.
fn id_at(payload: &Value, key: &str) -> Option<String> {
    match payload.get(key)? {
        Value::Number(n) => n
            .as_u64()
            .map(|id| id.to_string())
            .or_else(|| n.as_i64().map(|id| id.to_string())),
        Value::String(s) => shopify_numeric_id(s).map(str::to_owned),
        _ => None,
    }
}

/// The payload's `id`, else the number of its `admin_graphql_api_id`.
fn record_id(payload: &Value) -> Option<String> {
    id_at(payload, "id").or_else(|| id_at(payload, "admin_graphql_api_id"))
}

/// A required id, or a [`ParseError`] naming the field.
fn required_id(payload: &Value, key: &str, topic: &str) -> Result<String, ParseError> {
    let id = if key == "id" {
        record_id(payload)
    } else {
        id_at(payload, key)
    };
    id.ok_or_else(|| ParseError::Malformed(format!("{topic} payload has no integer `{key}`")))
}

/// `gid://shopify/<kind>/<id>`.
fn gid(kind: &str, id: &str) -> String {
    format!("gid://shopify/{kind}/{id}")
}

/// The GID of the id at `key`, or null.
fn gid_at(payload: &Value, key: &str, kind: &str) -> Value {
    id_at(payload, key).map_or(Value::Null, |id| Value::String(gid(kind, &id)))
}

/// A field as is, or null when absent.
fn field(payload: &Value, key: &str) -> Value {
    payload.get(key).cloned().unwrap_or(Value::Null)
}

/// A REST time (shop offset, e.g. `2025-11-20T04:15:00-05:00`) in GraphQL's `DateTime`
/// form (UTC, `Z`); null when absent or unreadable.
fn graphql_time(payload: &Value, key: &str) -> Value {
    let Some(time) = at(payload, &[key])
        .and_then(Value::as_str)
        .and_then(parse_time)
    else {
        return Value::Null;
    };
    let millis = time.as_millis();
    let format = if millis % 1000 == 0 {
        SecondsFormat::Secs
    } else {
        SecondsFormat::Millis
    };
    DateTime::<Utc>::from_timestamp_millis(millis).map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(format, true))
    })
}

/// A REST enum value (`paid`, `active`) as the GraphQL enum (`PAID`, `ACTIVE`).
fn graphql_enum(payload: &Value, key: &str) -> Value {
    match payload.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            Value::String(s.trim().to_ascii_uppercase())
        }
        _ => Value::Null,
    }
}

/// REST `fulfillment_status` as GraphQL `displayFulfillmentStatus`: null means nothing is
/// fulfilled yet, `partial` is `PARTIALLY_FULFILLED`; an absent field stays null.
fn fulfillment_status(payload: &Value) -> Value {
    match payload.get("fulfillment_status") {
        None => Value::Null,
        Some(Value::Null) => Value::String("UNFULFILLED".to_owned()),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("partial") => {
            Value::String("PARTIALLY_FULFILLED".to_owned())
        }
        Some(_) => graphql_enum(payload, "fulfillment_status"),
    }
}

/// A REST product as the sync's GraphQL product node.
fn product_node(payload: &Value, id: &str) -> Value {
    let variants: Vec<Value> = payload
        .get("variants")
        .and_then(Value::as_array)
        .map(|variants| {
            variants
                .iter()
                .take(MAX_VARIANTS)
                .map(|v| {
                    json!({
                        "id": gid_at(v, "id", "ProductVariant"),
                        "title": field(v, "title"),
                        "sku": field(v, "sku"),
                        "price": field(v, "price"),
                        "inventoryQuantity": field(v, "inventory_quantity"),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "id": gid("Product", id),
        "title": field(payload, "title"),
        "handle": field(payload, "handle"),
        "status": graphql_enum(payload, "status"),
        "vendor": field(payload, "vendor"),
        "productType": field(payload, "product_type"),
        "createdAt": graphql_time(payload, "created_at"),
        "updatedAt": graphql_time(payload, "updated_at"),
        "variants": {"nodes": variants},
    })
}

/// A REST order as the sync's GraphQL order node (`total_price` and `currency` are in
/// the shop currency, like `totalPriceSet.shopMoney`).
fn order_node(payload: &Value, id: &str) -> Value {
    let customer = payload
        .get("customer")
        .and_then(|c| id_at(c, "id"))
        .map_or(Value::Null, |id| json!({"id": gid("Customer", &id)}));
    json!({
        "id": gid("Order", id),
        "name": field(payload, "name"),
        "email": field(payload, "email"),
        "createdAt": graphql_time(payload, "created_at"),
        "updatedAt": graphql_time(payload, "updated_at"),
        "displayFinancialStatus": graphql_enum(payload, "financial_status"),
        "displayFulfillmentStatus": fulfillment_status(payload),
        "totalPriceSet": {"shopMoney": {
            "amount": field(payload, "total_price"),
            "currencyCode": field(payload, "currency"),
        }},
        "customer": customer,
    })
}

/// A REST customer as the sync's GraphQL customer node.
fn customer_node(payload: &Value, id: &str) -> Value {
    json!({
        "id": gid("Customer", id),
        "email": field(payload, "email"),
        "firstName": field(payload, "first_name"),
        "lastName": field(payload, "last_name"),
        "createdAt": graphql_time(payload, "created_at"),
        "updatedAt": graphql_time(payload, "updated_at"),
    })
}

/// A REST inventory level as the sync's GraphQL inventory item node with that one level.
/// The webhook does not say the item's SKU or update time; those stay null.
fn inventory_item_node(payload: &Value, item_id: &str, location_id: &str) -> Value {
    let level_id = match payload.get("admin_graphql_api_id") {
        Some(Value::String(s)) if !s.trim().is_empty() => Value::String(s.trim().to_owned()),
        _ => Value::Null,
    };
    json!({
        "id": gid("InventoryItem", item_id),
        "sku": null,
        "updatedAt": null,
        "inventoryLevels": {"nodes": [{
            "id": level_id,
            "updatedAt": graphql_time(payload, "updated_at"),
            "location": {"id": gid("Location", location_id)},
            "quantities": [{"name": "available", "quantity": field(payload, "available")}],
        }]},
    })
}

/// The record change a topic asks for.
fn record_change(topic: &str, payload: &Value) -> Result<Option<RecordChange>, ParseError> {
    let upsert = |resource: Resource, node: Value| {
        let records = shopify_record(resource, node).into_iter().collect();
        RecordChange::Upsert { resource, records }
    };
    let change = match topic_kind(topic) {
        Topic::Product => {
            let id = required_id(payload, "id", topic)?;
            upsert(Resource::ShopifyProducts, product_node(payload, &id))
        }
        Topic::Order => {
            let id = required_id(payload, "id", topic)?;
            upsert(Resource::ShopifyOrders, order_node(payload, &id))
        }
        Topic::Customer => {
            let id = required_id(payload, "id", topic)?;
            upsert(Resource::ShopifyCustomers, customer_node(payload, &id))
        }
        Topic::InventoryLevel => {
            let item = required_id(payload, "inventory_item_id", topic)?;
            let location = required_id(payload, "location_id", topic)?;
            RecordChange::Upsert {
                resource: Resource::ShopifyInventoryLevels,
                records: shopify_inventory_records(&inventory_item_node(payload, &item, &location)),
            }
        }
        Topic::Deleted(resource) => RecordChange::SoftDelete {
            resource,
            ids: vec![required_id(payload, "id", topic)?],
        },
        Topic::InventoryDisconnected => {
            let item = required_id(payload, "inventory_item_id", topic)?;
            let location = required_id(payload, "location_id", topic)?;
            RecordChange::SoftDelete {
                resource: Resource::ShopifyInventoryLevels,
                ids: vec![format!("{item}:{location}")],
            }
        }
        Topic::DataRequest => {
            RecordChange::ReportCustomer(privacy_subject(payload, "orders_requested"))
        }
        Topic::CustomerRedact => {
            RecordChange::RedactCustomer(privacy_subject(payload, "orders_to_redact"))
        }
        Topic::ShopRedact => RecordChange::PurgeShop,
        Topic::Other => return Ok(None),
    };
    Ok(Some(change))
}

/// The key of a change whoever reports it, webhook or polling fallback: a delivery has
/// `X-Shopify-Event-Id`, a poll does not, so both also carry this key, built from what both
/// see. `shopify:content:<event type>:<resource id>` for creations (a resource is created
/// once, whatever its later `updated_at`), else `...:<resource id>@<updated_at, Unix
/// seconds>` (REST sends seconds with the shop's offset, GraphQL seconds in UTC: both read
/// as the same instant). Inventory levels use `<item id>:<location id>` as resource id.
pub fn shopify_content_key(
    event_type: &str,
    resource_id: &str,
    updated_at: Option<crate::Timestamp>,
) -> String {
    if event_type.ends_with(".created") {
        return format!("shopify:content:{event_type}:{resource_id}");
    }
    let secs = updated_at.map_or_else(String::new, |t| {
        format!("@{}", t.as_millis().div_euclid(1000))
    });
    format!("shopify:content:{event_type}:{resource_id}{secs}")
}

/// The content key of a delivery whose event the polling fallback also reports
/// (product created/updated, collection created, order created, inventory low).
fn content_key(event_type: Option<&str>, payload: &Value) -> Option<String> {
    let event_type = event_type?;
    let updated_at = time_at(payload, &[&["updated_at"]]);
    let resource_id = match event_type {
        "shopify.product.created"
        | "shopify.product.updated"
        | "shopify.collection.created"
        | "shopify.order.created" => record_id(payload)?,
        "shopify.inventory.low" => format!(
            "{}:{}",
            id_at(payload, "inventory_item_id")?,
            id_at(payload, "location_id")?
        ),
        _ => return None,
    };
    Some(shopify_content_key(event_type, &resource_id, updated_at))
}

/// Classifies a Shopify delivery (headers `X-Shopify-Topic`, `X-Shopify-Webhook-Id`,
/// `X-Shopify-Event-Id`, `X-Shopify-Triggered-At`).
///
/// - `event_type`: `products/create|update|delete` → `shopify.product.created|updated|
///   deleted`, `collections/create` → `shopify.collection.created`, `orders/create` →
///   `shopify.order.created`, `inventory_levels/update` → `shopify.inventory.low` when
///   `available <= low_stock_threshold`, else `shopify.inventory.updated` (also when
///   `available` is null); any other topic → `None`.
/// - `dedup_key`: `shopify:<topic>:<event id>`, else `shopify:<topic>:<webhook id>`, else
///   `shopify:<topic>:sha256:<body digest>`. The topic is part of the key because one
///   change fires several topics (`products/create` and `products/update`, often with the
///   same body), and those are different events.
/// - `content_key`: [`shopify_content_key`] for the events polling also reports.
/// - `occurred_at`: `X-Shopify-Triggered-At`, else the payload's `updated_at`/`created_at`.
/// - `record_change`: products, orders, customers and inventory levels are upserted in
///   the sync's record shape; `*/delete` and `inventory_levels/disconnect` soft-delete.
///
/// Fails when the body is not a JSON object, the topic is blank, or a record topic's
/// payload lacks its integer ids.
pub fn classify_shopify(
    topic: &str,
    webhook_id: Option<&str>,
    event_id: Option<&str>,
    triggered_at: Option<&str>,
    body: &[u8],
    low_stock_threshold: i64,
) -> Result<IncomingEvent, ParseError> {
    let topic = topic.trim().to_ascii_lowercase();
    if topic.is_empty() {
        return Err(ParseError::Malformed(
            "no X-Shopify-Topic for the delivery".to_owned(),
        ));
    }
    let payload = parse_object(body)?;
    let record_change = record_change(&topic, &payload)?;
    let delivery = [event_id, webhook_id]
        .into_iter()
        .find_map(|id| delivery_id(id));
    let occurred_at = triggered_at
        .and_then(parse_time)
        .or_else(|| time_at(&payload, &[&["updated_at"], &["created_at"]]));
    let event_type = event_type(&topic, &payload, low_stock_threshold);
    let content_key = content_key(event_type, &payload);
    let mut payload = payload;
    if event_type == Some("shopify.inventory.low") {
        // The level was judged against this threshold: the suggestion needs both.
        if let Some(object) = payload.as_object_mut() {
            object.insert("low_stock_threshold".to_owned(), low_stock_threshold.into());
        }
    }
    Ok(IncomingEvent {
        source: "shopify".to_owned(),
        event_type: event_type.map(str::to_owned),
        dedup_key: Some(dedup_key(&format!("shopify:{topic}"), delivery, body)),
        content_key,
        event_data: payload,
        occurred_at,
        record_change,
    })
}
