//! `POST /shopify/{shop}/admin/api/{version}/graphql.json`: Shopify's GraphQL Admin API
//! with its cost-based throttle, and the control routes over the shop's data.
//!
//! A request needs `X-Shopify-Access-Token` with a token issued for that shop (OAuth or
//! `POST /__sandbox/shopify/tokens`), else 401 with Shopify's body. The body is
//! `{"query", "variables"?, "operationName"?}` (or a raw document). Every answer is HTTP
//! 200 with `extensions.cost = {requestedQueryCost, actualQueryCost, throttleStatus}`
//! (see [`crate::shopify::cost`] for how costs are computed); a query over 1,000 points
//! gets a `MAX_COST_EXCEEDED` error and a query the shop's bucket cannot pay for gets
//! `THROTTLED`, both without `data`.

use std::sync::{Arc, Mutex};

use async_graphql::parser::parse_query;
use async_graphql::Variables;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::control::{parse_json_body, ControlError};
use crate::shopify::cost::{self, BucketConfig, ThrottleStatus, MAX_QUERY_COST};
use crate::shopify::data::Resource;
use crate::shopify::graphql::{parse_gid, GraphqlBody, RequestData};
use crate::shopify::{error_response, normalize_shop};
use crate::state::{lock, SharedState};
use crate::time::format_secs;

/// Shopify's 401 body for a missing or wrong `X-Shopify-Access-Token`.
pub fn unauthorized_body() -> Value {
    json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"})
}

/// Where Shopify's rate-limit errors point.
const RATE_LIMIT_DOCS: &str = "https://shopify.dev/api/usage/rate-limits";

/// `2025-01`-style versions and `unstable`.
fn valid_version(version: &str) -> bool {
    let b = version.as_bytes();
    version == "unstable"
        || (b.len() == 7
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && b[5..].iter().all(u8::is_ascii_digit))
}

fn bucket_config(state: &SharedState) -> BucketConfig {
    let runtime = state.runtime();
    BucketConfig {
        size: runtime.shopify_bucket_size,
        restore_rate: runtime.shopify_restore_rate,
    }
}

fn cost_json(requested: u64, actual: Option<u64>, status: ThrottleStatus) -> Value {
    json!({
        "requestedQueryCost": requested,
        "actualQueryCost": actual,
        "throttleStatus": status.to_json(),
    })
}

fn json_reply(body: &Value, version: &str) -> Response {
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(version) {
        response
            .headers_mut()
            .insert("x-shopify-api-version", value);
    }
    response
}

/// `POST /shopify/{shop}/admin/api/{version}/graphql.json`.
pub async fn graphql(
    State(state): State<SharedState>,
    Path((shop, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = headers
        .get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or("");
    if token.is_empty() || !state.shopify_token_valid(&shop, token) {
        return (StatusCode::UNAUTHORIZED, Json(unauthorized_body())).into_response();
    }
    if !valid_version(&version) {
        return error_response(StatusCode::NOT_FOUND, "Not Found");
    }
    let shop = normalize_shop(&shop).unwrap_or(shop);
    let Some(request) = GraphqlBody::parse(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"errors": {"query": "Required parameter missing or invalid"}})),
        )
            .into_response();
    };
    let variables = match request.variables.clone() {
        Some(Value::Object(map)) => map,
        // Some clients send the variables JSON-encoded in a string.
        Some(Value::String(text)) => match serde_json::from_str(&text) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        },
        _ => Map::new(),
    };
    let config = bucket_config(&state);
    let now = state.clock.now_ms();

    let doc = parse_query(&request.query).ok();
    let op = doc
        .as_ref()
        .and_then(|d| cost::operation(d, request.operation_name.as_deref()));
    let requested = match (&doc, op) {
        (Some(doc), Some(op)) => cost::requested_cost(doc, op, &variables),
        _ => 0,
    };

    if requested > MAX_QUERY_COST {
        let status = lock(&state.shopify.buckets).peek(&shop, now, config);
        let message = format!(
            "Query cost is {requested}, which exceeds the single query max cost limit ({MAX_QUERY_COST}).\n\n\
             See {RATE_LIMIT_DOCS} for more information on how the\ncost of a query is calculated.\n\n\
             To query larger amounts of data with fewer limits, bulk operations should be used instead.\n"
        );
        let body = json!({
            "errors": [{
                "message": message,
                "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": MAX_QUERY_COST},
            }],
            "extensions": {"cost": cost_json(requested, None, status)},
        });
        return json_reply(&body, &version);
    }

    let taken = lock(&state.shopify.buckets).take(&shop, requested, now, config);
    if let Err(status) = taken {
        let body = json!({
            "errors": [{
                "message": "Throttled",
                "extensions": {"code": "THROTTLED", "documentation": RATE_LIMIT_DOCS},
            }],
            "extensions": {"cost": cost_json(requested, None, status)},
        });
        return json_reply(&body, &version);
    }

    let search = Arc::new(Mutex::new(Vec::new()));
    let origin = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|host| format!("http://{host}"))
        .unwrap_or_default();
    let scopes = lock(&state.shopify.oauth)
        .token_scope(token)
        .map(str::to_owned);
    let data = RequestData {
        state: state.clone(),
        shop: shop.clone(),
        search: Arc::clone(&search),
        bulk: false,
        origin,
        scopes: Some(scopes.unwrap_or_default()),
    };
    let mut gql = async_graphql::Request::new(request.query.clone())
        .variables(Variables::from_json(Value::Object(variables.clone())));
    if let Some(name) = &request.operation_name {
        gql = gql.operation_name(name.clone());
    }
    let response = state.shopify.schema.execute(gql.data(data)).await;
    let warnings = std::mem::take(&mut *lock(&search));
    let mut out = serde_json::to_value(&response).unwrap_or_else(|_| json!({}));
    let actual = match (&doc, op, out.get("data")) {
        (Some(doc), Some(op), Some(data)) => {
            cost::actual_cost(doc, op, &variables, data).min(requested)
        }
        _ => 0,
    };
    let status = lock(&state.shopify.buckets).refund(
        &shop,
        requested.saturating_sub(actual),
        state.clock.now_ms(),
        config,
    );
    if let Some(object) = out.as_object_mut() {
        let extensions = object.entry("extensions").or_insert_with(|| json!({}));
        if let Some(extensions) = extensions.as_object_mut() {
            extensions.insert(
                "cost".to_owned(),
                cost_json(requested, Some(actual), status),
            );
            if !warnings.is_empty() {
                extensions.insert("search".to_owned(), Value::Array(warnings));
            }
        }
    }
    json_reply(&out, &version)
}

// ----- control API -----

fn resource(text: &str) -> Result<Resource, ControlError> {
    Resource::parse(text).ok_or_else(|| {
        ControlError::not_found(format!(
            "unknown Shopify resource '{text}': use products, orders, customers, inventory_levels or inventory_items"
        ))
    })
}

/// An id given as a number, a numeric string or a gid.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IdInput {
    Number(u64),
    Text(String),
}

fn parse_id(resource: Resource, input: &IdInput) -> Result<u64, ControlError> {
    match input {
        IdInput::Number(n) => Ok(*n),
        IdInput::Text(text) => parse_gid(resource.gid_type(), text).ok_or_else(|| {
            ControlError::bad_request(format!(
                "id '{text}' is neither numeric nor a {} gid",
                resource.gid_type()
            ))
        }),
    }
}

/// `?shop=<name>.myshopify.com` on a data control: that shop's own data (copied from the
/// seeded catalogue at its first change); without it, the catalogue every shop without
/// data of its own sees.
#[derive(Debug, Default, Deserialize)]
pub struct ShopParam {
    shop: Option<String>,
}

impl ShopParam {
    /// The canonical shop, if one was named (400 for a malformed one).
    fn shop(&self) -> Result<Option<String>, ControlError> {
        self.shop
            .as_deref()
            .map(|s| {
                normalize_shop(s)
                    .ok_or_else(|| ControlError::bad_request("shop must be <name>.myshopify.com"))
            })
            .transpose()
    }
}

/// `GET /__sandbox/shopify/{resource}`: `{"count": n, "ids": [...]}` (numeric ids, as JSON
/// numbers: they exceed 2^53, so read them as 64-bit integers).
pub async fn control_list(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    Query(param): Query<ShopParam>,
) -> Result<Json<Value>, ControlError> {
    let resource = resource(&name)?;
    let ids = state
        .shopify
        .read_shop(param.shop()?.as_deref(), |data| data.ids(resource));
    Ok(Json(json!({"count": ids.len(), "ids": ids})))
}

/// The selection `GET /__sandbox/shopify/{resource}/{id}` answers with.
fn full_query(resource: Resource) -> (&'static str, &'static str) {
    match resource {
        Resource::Products => (
            "product",
            "id legacyResourceId title handle status vendor productType createdAt updatedAt \
             totalInventory variants(first: 250) { nodes { id legacyResourceId title sku price \
             inventoryQuantity createdAt updatedAt inventoryItem { id } } }",
        ),
        Resource::Orders => (
            "order",
            "id legacyResourceId name email note createdAt processedAt updatedAt \
             displayFinancialStatus displayFulfillmentStatus currencyCode \
             totalPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } } \
             customer { id }",
        ),
        Resource::Customers => (
            "customer",
            "id legacyResourceId email firstName lastName displayName note createdAt updatedAt",
        ),
        Resource::InventoryLevels => (
            "inventoryLevel",
            "id createdAt updatedAt location { id name } item { id sku } \
             quantities(names: [\"available\", \"committed\", \"incoming\", \"on_hand\"]) { name quantity updatedAt }",
        ),
        Resource::InventoryItems => (
            "inventoryItem",
            "id legacyResourceId sku tracked createdAt updatedAt variant { id } \
             inventoryLevels(first: 250) { nodes { id updatedAt location { id name } \
             quantities(names: [\"available\", \"on_hand\"]) { name quantity } } }",
        ),
    }
}

/// `GET /__sandbox/shopify/{resource}/{id}`: the current record as the GraphQL API shows it
/// (the fields of [`full_query`]), whatever the credentials and the bucket.
pub async fn control_get(
    State(state): State<SharedState>,
    Path((name, id)): Path<(String, String)>,
    Query(param): Query<ShopParam>,
) -> Result<Json<Value>, ControlError> {
    let shop = param.shop()?.unwrap_or_default();
    let resource = resource(&name)?;
    let id = parse_id(resource, &IdInput::Text(id))?;
    let (root, fields) = full_query(resource);
    let query = format!("query($id: ID!) {{ node: {root}(id: $id) {{ {fields} }} }}");
    let gid = format!("gid://shopify/{}/{id}", resource.gid_type());
    let request = async_graphql::Request::new(query)
        .variables(Variables::from_json(json!({"id": gid})))
        .data(RequestData {
            state: state.clone(),
            shop,
            search: Arc::new(Mutex::new(Vec::new())),
            bulk: false,
            origin: String::new(),
            scopes: None,
        });
    let response = state.shopify.schema.execute(request).await;
    if let Some(error) = response.errors.first() {
        return Err(ControlError::bad_request(error.message.clone()));
    }
    let data = response.data.into_json().unwrap_or(Value::Null);
    match data.get("node") {
        Some(node) if !node.is_null() => Ok(Json(node.clone())),
        _ => Err(ControlError::not_found(format!("no {name} {id}"))),
    }
}

/// Body of `POST /__sandbox/shopify/{resource}/update`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRequest {
    #[serde(default)]
    ids: Option<Vec<IdInput>>,
    #[serde(default)]
    count: Option<usize>,
}

/// `POST /__sandbox/shopify/{resource}/update` `{"count":N}` or `{"ids":[..]}` (numbers,
/// numeric strings or gids): edits those records (the first N by id) and sets `updatedAt`
/// to the sandbox's now. Answers `{"ids":[..],"updated":n,"updated_at":".."}`.
pub async fn control_update(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    Query(param): Query<ShopParam>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let resource = resource(&name)?;
    if resource == Resource::InventoryItems {
        return Err(ControlError::bad_request(
            "inventory items change through their levels: use inventory_levels",
        ));
    }
    let request: UpdateRequest = parse_json_body(&body)?;
    let now = state.clock.now_ms();
    let changed = state.shopify.write_shop(param.shop()?.as_deref(), |data| {
        let wanted: Vec<u64> = match (&request.ids, request.count) {
            (Some(ids), None) => ids
                .iter()
                .map(|id| parse_id(resource, id))
                .collect::<Result<_, _>>()?,
            (None, Some(count)) => data.ids(resource).into_iter().take(count).collect(),
            _ => {
                return Err(ControlError::bad_request(
                    "give exactly one of \"ids\" and \"count\"",
                ))
            }
        };
        Ok(data.edit(resource, &wanted, now))
    })?;
    Ok(Json(json!({
        "ids": changed,
        "updated": changed.len(),
        "updated_at": format_secs(now),
    })))
}

/// `DELETE /__sandbox/shopify/{resource}/{id}`.
pub async fn control_delete(
    State(state): State<SharedState>,
    Path((name, id)): Path<(String, String)>,
    Query(param): Query<ShopParam>,
) -> Result<StatusCode, ControlError> {
    let resource = resource(&name)?;
    if resource == Resource::InventoryItems {
        return Err(ControlError::bad_request(
            "inventory items go with their product: delete the product",
        ));
    }
    let id = parse_id(resource, &IdInput::Text(id))?;
    if state
        .shopify
        .write_shop(param.shop()?.as_deref(), |data| data.delete(resource, id))
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ControlError::not_found(format!("no {name} {id}")))
    }
}

/// Body of `POST /__sandbox/shopify/products`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProduct {
    title: String,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default = "default_available")]
    available: i64,
    #[serde(default)]
    vendor: Option<String>,
    #[serde(default)]
    product_type: Option<String>,
}

fn default_available() -> i64 {
    10
}

/// Body of `POST /__sandbox/shopify/collections`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCollection {
    title: String,
    #[serde(default)]
    handle: Option<String>,
}

/// `POST /__sandbox/shopify/{resource}`: a change made at the shop (by the merchant, not
/// through the API), sending no webhook (tests deliver them with
/// `/__sandbox/shopify/webhooks/deliver`):
/// - `products` `{"title", "sku"?, "available"? (10), "vendor"?, "product_type"?}`: a product
///   with one variant, its inventory item and a level at the first location, created and
///   updated now. 201 `{"id","variant_id","inventory_item_id","inventory_level_id",
///   "created_at"}` (ids as JSON numbers).
/// - `collections` `{"title", "handle"?}`: a collection with the next id. 201
///   `{"id","created_at"}`.
pub async fn control_create(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    Query(param): Query<ShopParam>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ControlError> {
    let shop = param.shop()?;
    let now = state.clock.now_ms();
    let created_at = format_secs(now);
    match name.as_str() {
        "products" => {
            let request: NewProduct = parse_json_body(&body)?;
            if request.title.trim().is_empty() {
                return Err(ControlError::bad_request("title must not be empty"));
            }
            let made = state.shopify.write_shop(shop.as_deref(), |data| {
                data.create_product(
                    request.title.trim(),
                    request.sku.as_deref(),
                    request.available,
                    request.vendor.as_deref().unwrap_or("Sandbox Goods"),
                    request.product_type.as_deref().unwrap_or("Thing"),
                    now,
                )
            });
            Ok((
                StatusCode::CREATED,
                Json(json!({
                    "id": made.id,
                    "variant_id": made.variant_id,
                    "inventory_item_id": made.inventory_item_id,
                    "inventory_level_id": made.inventory_level_id,
                    "created_at": created_at,
                })),
            ))
        }
        "collections" => {
            let request: NewCollection = parse_json_body(&body)?;
            if request.title.trim().is_empty() {
                return Err(ControlError::bad_request("title must not be empty"));
            }
            let id = state.shopify.write_shop(shop.as_deref(), |data| {
                data.create_collection(request.title.trim(), request.handle.as_deref(), now)
            });
            Ok((
                StatusCode::CREATED,
                Json(json!({ "id": id, "created_at": created_at })),
            ))
        }
        other => Err(ControlError::not_found(format!(
            "cannot create '{other}': use products or collections"
        ))),
    }
}

/// Body of `POST /__sandbox/shopify/inventory_levels/{id}/set`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetLevel {
    available: i64,
}

/// `POST /__sandbox/shopify/inventory_levels/{id}/set` `{"available": N}`: sets a level's
/// `available` quantity (a sale or a count at the shop); the level and its inventory item
/// are updated now. Answers `{"id","available","updated_at"}`; 404 for an unknown level.
pub async fn control_set_level(
    State(state): State<SharedState>,
    Path((name, id)): Path<(String, String)>,
    Query(param): Query<ShopParam>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let resource = resource(&name)?;
    if resource != Resource::InventoryLevels {
        return Err(ControlError::not_found(
            "only inventory_levels have quantities to set",
        ));
    }
    let id = parse_id(resource, &IdInput::Text(id))?;
    let request: SetLevel = parse_json_body(&body)?;
    let now = state.clock.now_ms();
    if !state.shopify.write_shop(param.shop()?.as_deref(), |data| {
        data.set_available(id, request.available, now)
    }) {
        return Err(ControlError::not_found(format!("no inventory level {id}")));
    }
    Ok(Json(json!({
        "id": id,
        "available": request.available,
        "updated_at": format_secs(now),
    })))
}

/// Body of `POST /__sandbox/shopify/bucket`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketRequest {
    shop: String,
    #[serde(default)]
    currently_available: Option<f64>,
}

/// `POST /__sandbox/shopify/bucket {"shop","currently_available"?}`: sets (or only reads)
/// a shop's cost bucket; answers its `throttleStatus`.
pub async fn control_bucket(
    State(state): State<SharedState>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let request: BucketRequest = parse_json_body(&body)?;
    let shop = normalize_shop(&request.shop)
        .ok_or_else(|| ControlError::bad_request("shop must be <name>.myshopify.com"))?;
    let config = bucket_config(&state);
    let now = state.clock.now_ms();
    let mut buckets = lock(&state.shopify.buckets);
    let status = match request.currently_available {
        Some(level) if level.is_finite() => buckets.set(&shop, level, now, config),
        Some(_) => {
            return Err(ControlError::bad_request(
                "currently_available must be a number",
            ))
        }
        None => buckets.peek(&shop, now, config),
    };
    Ok(Json(
        json!({"shop": shop, "throttleStatus": status.to_json()}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for ok in ["2025-01", "2024-10", "unstable"] {
            assert!(valid_version(ok), "{ok}");
        }
        for bad in ["2025-1", "latest", "2025_01", ""] {
            assert!(!valid_version(bad), "{bad}");
        }
    }
}
