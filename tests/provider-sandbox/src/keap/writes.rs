//! Keap writes, as Keap documents them: contacts created and updated through REST v2
//! (`POST /crm/rest/v2/contacts`, `PATCH /crm/rest/v2/contacts/{contact_id}` with
//! `update_mask`; keap-sdk `sdks/v2/swagger.yml`), products listed and created and orders
//! created through REST v1 (`/crm/rest/v1/products`, `POST /crm/rest/v1/orders`,
//! <https://developer.infusionsoft.com/docs/rest/>). Each change made here fires the REST
//! hooks registered for it (`contact.add`, `contact.edit`, `order.add`), as Keap does for
//! changes made through the API. Orders created here join the v2 order records, so
//! `GET /crm/rest/v2/orders` (and the sync) see them.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::hooks::notify_change;
use super::records::Resource;
use super::{authenticate, KeapError};
use crate::state::{lock, read, write, SharedState};
use crate::time::format_ms;

/// The products Keap holds for the account: the seed's orders name products 1 to 8 by
/// these names (`records_seed`), so they exist here too, without SKUs.
const SEED_PRODUCTS: &[(&str, f64)] = &[
    ("Starter Kit", 49.0),
    ("Consultation (1 hour)", 150.0),
    ("Monthly Membership", 29.0),
    ("Premium Widget", 89.5),
    ("Gift Card", 50.0),
    ("Workshop Ticket", 125.0),
    ("Annual Subscription", 299.0),
    ("Shipping", 9.95),
];

/// v1 products, in id order.
#[derive(Debug)]
pub struct ProductStore {
    products: Vec<Value>,
}

impl Default for ProductStore {
    fn default() -> Self {
        Self {
            products: SEED_PRODUCTS
                .iter()
                .zip(1u64..)
                .map(|((name, price), id)| product_json(id, name, *price, None, true))
                .collect(),
        }
    }
}

fn product_json(id: u64, name: &str, price: f64, sku: Option<&str>, active: bool) -> Value {
    json!({
        "id": id,
        "product_name": name,
        "product_price": price,
        "sku": sku,
        "active": active,
        "product_short_desc": "",
        "product_desc": "",
        "subscription_only": false,
    })
}

impl ProductStore {
    /// The product with `id`.
    pub fn get(&self, id: u64) -> Option<&Value> {
        self.products.iter().find(|p| p["id"] == id)
    }

    /// Every product.
    pub fn all(&self) -> &[Value] {
        &self.products
    }
}

fn created(body: Value) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

fn object(body: &Bytes) -> Result<Map<String, Value>, KeapError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(KeapError::bad_request("the body must be a JSON object")),
        Err(e) => Err(KeapError::bad_request(format!("the body is not JSON: {e}"))),
    }
}

/// `POST /crm/rest/v2/contacts`: a contact with the given fields (at least a name or an
/// email), the next id, created now. Duplicate emails are allowed, as in Keap.
pub async fn create_contact(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, KeapError> {
    let now = state.clock.now_ms();
    authenticate(&state, &headers, now)?;
    let fields = object(&body)?;
    if fields.contains_key("id") {
        return Err(KeapError::bad_request("id is assigned by Keap"));
    }
    let named = ["given_name", "family_name"].iter().any(|k| {
        fields
            .get(*k)
            .and_then(Value::as_str)
            .is_some_and(|v| !v.trim().is_empty())
    });
    let emailed = fields
        .get("email_addresses")
        .and_then(Value::as_array)
        .is_some_and(|list| !list.is_empty());
    if !named && !emailed {
        return Err(KeapError::bad_request(
            "a contact needs a given_name, a family_name or an email address",
        ));
    }
    let (id, contact) = {
        let mut contacts = write(&state.keap.contacts);
        let record = contacts
            .insert(&fields, now)
            .map_err(KeapError::bad_request)?;
        (record.id, record.to_value())
    };
    notify_change(&state, &headers, "contact.add", id);
    Ok(created(contact))
}

/// `PATCH /crm/rest/v2/contacts/{contact_id}[?update_mask=a,b]`: the body's fields (only
/// those the mask names, when given) replace the contact's; `update_time` moves to now.
pub async fn update_contact(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(contact_id): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, KeapError> {
    let now = state.clock.now_ms();
    authenticate(&state, &headers, now)?;
    let id = contact_id
        .parse::<u64>()
        .map_err(|_| KeapError::bad_request("contact_id must be numeric"))?;
    let mut fields = object(&body)?;
    if let Some(mask) = url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "update_mask")
        .map(|(_, v)| v.into_owned())
    {
        let named: Vec<&str> = mask
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        fields.retain(|key, _| named.contains(&key.as_str()));
    }
    fields.remove("update_time");
    if fields.contains_key("id") {
        return Err(KeapError::bad_request("id cannot change"));
    }
    let value = {
        let mut contacts = write(&state.keap.contacts);
        if contacts.get(id).is_none() {
            return Err(KeapError::not_found(format!("Contact {id} not found")));
        }
        contacts
            .patch(id, &fields, now)
            .map_err(KeapError::bad_request)?
            .to_value()
    };
    notify_change(&state, &headers, "contact.edit", id);
    Ok(Json(value).into_response())
}

/// `GET /crm/rest/v1/products?limit=&offset=`: `{products, count, next, previous}`.
pub async fn list_products(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, KeapError> {
    authenticate(&state, &headers, state.clock.now_ms())?;
    let mut limit = 1000usize;
    let mut offset = 0usize;
    for (key, value) in url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| KeapError::bad_request(format!("{key} must be a number")))
        };
        match key.as_ref() {
            "limit" => limit = number()?.clamp(1, 1000),
            "offset" => offset = number()?,
            _ => {}
        }
    }
    let products = lock(&state.keap.products);
    let all = products.all();
    let page: Vec<Value> = all.iter().skip(offset).take(limit).cloned().collect();
    let base = "/crm/rest/v1/products";
    let next = (offset + page.len() < all.len())
        .then(|| format!("{base}?limit={limit}&offset={}", offset + limit));
    let previous = (offset > 0).then(|| {
        format!(
            "{base}?limit={limit}&offset={}",
            offset.saturating_sub(limit)
        )
    });
    Ok(Json(json!({
        "products": page,
        "count": all.len(),
        "next": next,
        "previous": previous,
    }))
    .into_response())
}

/// `POST /crm/rest/v1/products` `{product_name, product_price?, sku?, active?,
/// product_short_desc?}`.
pub async fn create_product(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, KeapError> {
    authenticate(&state, &headers, state.clock.now_ms())?;
    let fields = object(&body)?;
    let name = fields
        .get("product_name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| KeapError::bad_request("product_name is required"))?;
    let price = match fields.get("product_price") {
        None | Some(Value::Null) => 0.0,
        Some(v) => v
            .as_f64()
            .filter(|p| *p >= 0.0)
            .ok_or_else(|| KeapError::bad_request("product_price must be a number >= 0"))?,
    };
    let mut products = lock(&state.keap.products);
    let id = products
        .products
        .last()
        .and_then(|p| p["id"].as_u64())
        .unwrap_or(0)
        + 1;
    let mut product = product_json(
        id,
        name,
        price,
        fields.get("sku").and_then(Value::as_str),
        fields
            .get("active")
            .and_then(Value::as_bool)
            .unwrap_or(true),
    );
    if let Some(short) = fields.get("product_short_desc").and_then(Value::as_str) {
        product["product_short_desc"] = Value::from(short);
    }
    products.products.push(product.clone());
    Ok(created(product))
}

/// `POST /crm/rest/v1/orders`: an order for an existing contact, its items naming existing
/// products. Answers the v1 order; the order joins the v2 order records.
pub async fn create_order(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, KeapError> {
    let now = state.clock.now_ms();
    authenticate(&state, &headers, now)?;
    let fields = object(&body)?;
    let text = |key: &str| {
        fields
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| KeapError::bad_request(format!("{key} is required")))
    };
    let contact_id = fields
        .get("contact_id")
        .and_then(Value::as_u64)
        .ok_or_else(|| KeapError::bad_request("contact_id is required"))?;
    let order_date = text("order_date")?;
    crate::time::parse_ms(order_date)
        .ok_or_else(|| KeapError::bad_request("order_date must be an ISO 8601 date-time"))?;
    let title = text("order_title")?;
    let order_type = text("order_type")?.to_ascii_uppercase();
    if !matches!(order_type.as_str(), "OFFLINE" | "ONLINE") {
        return Err(KeapError::bad_request(
            "order_type must be Offline or Online",
        ));
    }
    let items = fields
        .get("order_items")
        .and_then(Value::as_array)
        .filter(|items| !items.is_empty())
        .ok_or_else(|| KeapError::bad_request("order_items must list at least one item"))?;
    let contact = read(&state.keap.contacts)
        .get(contact_id)
        .map(|c| c.to_value())
        .ok_or_else(|| KeapError::bad_request(format!("Contact {contact_id} not found")))?;
    let mut v1_items = Vec::with_capacity(items.len());
    let mut v2_items = Vec::with_capacity(items.len());
    let mut total_cents: i64 = 0;
    {
        let products = lock(&state.keap.products);
        for (n, item) in items.iter().enumerate() {
            let product_id = item
                .get("product_id")
                .and_then(Value::as_u64)
                .ok_or_else(|| KeapError::bad_request("every item needs a product_id"))?;
            let product = products
                .get(product_id)
                .ok_or_else(|| KeapError::bad_request(format!("Product {product_id} not found")))?;
            let quantity = item
                .get("quantity")
                .and_then(Value::as_i64)
                .filter(|q| *q >= 1)
                .ok_or_else(|| {
                    KeapError::bad_request("every item needs a quantity of 1 or more")
                })?;
            let price = item
                .get("price")
                .and_then(Value::as_f64)
                .or_else(|| product["product_price"].as_f64())
                .unwrap_or(0.0);
            let cents = (price * 100.0).round() as i64;
            total_cents += cents * quantity;
            let name = product["product_name"].as_str().unwrap_or_default();
            let description = item
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or(name);
            v1_items.push(json!({
                "id": n + 1,
                "name": name,
                "description": description,
                "quantity": quantity,
                "price": price,
                "product": {"id": product_id, "name": name, "sku": product["sku"],
                            "description": product["product_short_desc"]},
            }));
            v2_items.push(json!({
                "id": (n + 1).to_string(),
                "name": name,
                "quantity": quantity,
                "item_type": "PRODUCT",
                "price_per_unit": money(cents),
                "product": {"id": product_id.to_string(), "name": name},
            }));
        }
    }
    let email = contact["email_addresses"][0]["email"].clone();
    let stamp = format_ms(now);
    let v2 = {
        let mut orders = write(state.keap.records(Resource::Orders));
        let fields: Map<String, Value> = json!({
            "title": title,
            "status": "UNPAID",
            "total": money(total_cents),
            "total_paid": money(0),
            "total_due": money(total_cents),
            "contact": {"id": contact["id"], "email": email,
                        "given_name": contact["given_name"], "family_name": contact["family_name"]},
            "notes": Value::Null,
            "order_type": order_type,
            "source_type": "API",
            "order_items": v2_items,
            "order_time": order_date,
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        orders
            .create(&fields, now)
            .map_err(KeapError::bad_request)?
            .to_value()
    };
    let id = v2["id"]
        .as_str()
        .and_then(|id| id.parse::<u64>().ok())
        .unwrap_or_default();
    notify_change(&state, &headers, "order.add", id);
    Ok(created(json!({
        "id": id,
        "title": title,
        "status": "UNPAID",
        "recurring": false,
        "total": total_cents as f64 / 100.0,
        "contact": {"id": contact_id, "email": email, "first_name": contact["given_name"],
                    "last_name": contact["family_name"]},
        "notes": Value::Null,
        "terms": Value::Null,
        "source_type": "API",
        "creation_date": stamp,
        "modification_date": stamp,
        "order_date": order_date,
        "order_items": v1_items,
    })))
}

/// A v2 money value (`amount` in cents, as the seed's orders hold it).
fn money(cents: i64) -> Value {
    json!({
        "amount": cents,
        "currency_code": "USD",
        "formatted_amount": format!("${}.{:02}", cents / 100, cents % 100),
    })
}

/// Control API: `GET /__sandbox/keap/products`: every product.
pub async fn control_products(State(state): State<SharedState>) -> Response {
    let products = lock(&state.keap.products).all().to_vec();
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "count": products.len(), "products": products }).to_string(),
    )
        .into_response()
}
