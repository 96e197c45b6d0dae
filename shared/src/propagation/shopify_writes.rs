//! The GraphQL Admin API calls a propagation makes at a target shop, as request builders
//! and answer parsers (<https://shopify.dev/docs/api/admin-graphql>):
//! - find a product by handle (`products(query: "handle:…")`), and an inventory level by SKU
//!   and location (`inventoryItems(query: "sku:…") { inventoryLevel(locationId:) }`);
//! - `productSet` identified by handle: creates or updates the product with its variants in
//!   one idempotent call
//!   (<https://shopify.dev/docs/api/admin-graphql/latest/mutations/productSet>);
//! - `productDelete` (<https://shopify.dev/docs/api/admin-graphql/latest/mutations/productDelete>);
//! - `inventorySetQuantities` with `compareQuantity`: compare-and-set, a stale compare is a
//!   user error the caller answers by reading the level again
//!   (<https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities>).
//!
//! Transport failures (401, 429/`THROTTLED`, 5xx) are the sync's [`PageError`]s, so the same
//! retry and pacing rules apply.

use serde_json::{json, Value};

use super::change::ProductSnapshot;
use crate::oauth::HttpRequestSpec;
use crate::sync::values::at;
use crate::sync::{shopify_classify, shopify_graphql_request, shopify_numeric_id, PageError};
use crate::Secret;

/// Why a write did not happen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    /// The call failed as a page fetch would (retry, refresh or wait as the sync does).
    #[error(transparent)]
    Transport(#[from] PageError),
    /// `compareQuantity` did not match: the level changed meanwhile. Read it and retry.
    #[error("the level changed meanwhile (compare-and-set refused)")]
    CompareFailed,
    /// Shopify refused the input (`userErrors`), with its messages.
    #[error("Shopify refused the write: {0}")]
    Refused(String),
    /// A 2xx answer without the expected fields.
    #[error("unexpected answer: {0}")]
    Malformed(String),
}

/// A target's level, as read before a compare-and-set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetLevel {
    /// The inventory item's gid.
    pub inventory_item_id: String,
    /// The location's gid.
    pub location_id: String,
    /// `available` now (the `compareQuantity` of the write).
    pub available: i64,
}

fn location_gid(location_id: u64) -> String {
    format!("gid://shopify/Location/{location_id}")
}

/// A search term value, quoted (single quotes and backslashes escaped).
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn data(status: u16, headers: &[(String, String)], body: &str) -> Result<Value, WriteError> {
    Ok(shopify_classify(status, headers, body)?)
}

fn user_errors(value: &Value, mutation: &str) -> Vec<(Option<String>, String)> {
    at(value, &["data", mutation, "userErrors"])
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|e| {
                    (
                        e.get("code").and_then(Value::as_str).map(str::to_owned),
                        e.get("message")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn refused(errors: &[(Option<String>, String)]) -> WriteError {
    WriteError::Refused(
        errors
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// The query for the product with `handle` (its id, to update or delete it).
pub fn find_product(url: String, token: &Secret, handle: &str) -> HttpRequestSpec {
    let body = json!({
        "query": "query EdgeSyncFindProduct($q: String!) { products(first: 1, query: $q) { nodes { id handle } } }",
        "variables": { "q": format!("handle:{}", quoted(handle)) },
    });
    shopify_graphql_request(url, token, &body)
}

/// The product's gid, or `None` when the shop has no product with that handle.
pub fn found_product(
    status: u16,
    headers: &[(String, String)],
    body: &str,
    handle: &str,
) -> Result<Option<String>, WriteError> {
    let value = data(status, headers, body)?;
    let nodes = at(&value, &["data", "products", "nodes"])
        .and_then(Value::as_array)
        .ok_or_else(|| WriteError::Malformed("no products.nodes".into()))?;
    Ok(nodes
        .iter()
        .find(|n| n.get("handle").and_then(Value::as_str) == Some(handle))
        .and_then(|n| n.get("id").and_then(Value::as_str))
        .map(str::to_owned))
}

/// `productSet` identified by the product's handle: the target's product with that handle
/// is updated (or created) to hold `product`'s content. Each variant's SKU is its
/// inventory item's SKU, so levels can be matched by it afterwards.
pub fn set_product(url: String, token: &Secret, product: &ProductSnapshot) -> HttpRequestSpec {
    let option_values: Vec<Value> = product
        .variants
        .iter()
        .map(|v| json!({ "name": v.title }))
        .collect();
    let variants: Vec<Value> = product
        .variants
        .iter()
        .map(|v| {
            json!({
                "optionValues": [{ "optionName": "Title", "name": v.title }],
                "price": v.price,
                "inventoryItem": { "sku": v.sku, "tracked": true },
            })
        })
        .collect();
    let body = json!({
        "query": "mutation EdgeSyncProductSet($input: ProductSetInput!, $identifier: ProductSetIdentifiers) { \
    productSet(input: $input, identifier: $identifier, synchronous: true) { \
    product { id handle updatedAt variants(first: 100) { nodes { id sku inventoryItem { id } } } } \
    userErrors { field message code } } }",
        "variables": {
            "identifier": { "handle": product.handle },
            "input": {
                "handle": product.handle,
                "title": product.title,
                "descriptionHtml": product.body_html,
                "vendor": product.vendor,
                "productType": product.product_type,
                "status": product.status.to_ascii_uppercase(),
                "productOptions": [{ "name": "Title", "values": option_values }],
                "variants": variants,
            },
        },
    });
    shopify_graphql_request(url, token, &body)
}

/// The written product's gid.
pub fn product_set(
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<String, WriteError> {
    let value = data(status, headers, body)?;
    let errors = user_errors(&value, "productSet");
    if !errors.is_empty() {
        return Err(refused(&errors));
    }
    at(&value, &["data", "productSet", "product", "id"])
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| WriteError::Malformed("no productSet.product.id".into()))
}

/// `productDelete` of the product `product_gid` (from [`found_product`]).
pub fn delete_product(url: String, token: &Secret, product_gid: &str) -> HttpRequestSpec {
    let body = json!({
        "query": "mutation EdgeSyncProductDelete($input: ProductDeleteInput!) { \
    productDelete(input: $input) { deletedProductId userErrors { field message } } }",
        "variables": { "input": { "id": product_gid } },
    });
    shopify_graphql_request(url, token, &body)
}

/// The deleted product's gid.
pub fn product_deleted(
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<String, WriteError> {
    let value = data(status, headers, body)?;
    let errors = user_errors(&value, "productDelete");
    if !errors.is_empty() {
        return Err(refused(&errors));
    }
    at(&value, &["data", "productDelete", "deletedProductId"])
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| WriteError::Malformed("no productDelete.deletedProductId".into()))
}

/// The query for the level of the item with `sku` at `location_id` (the target's).
pub fn find_level(url: String, token: &Secret, sku: &str, location_id: u64) -> HttpRequestSpec {
    let body = json!({
        "query": "query EdgeSyncFindLevel($q: String!, $location: ID!) { \
    inventoryItems(first: 5, query: $q) { nodes { id sku inventoryLevel(locationId: $location) { \
    id quantities(names: [\"available\"]) { name quantity } } } } }",
        "variables": { "q": format!("sku:{}", quoted(sku)), "location": location_gid(location_id) },
    });
    shopify_graphql_request(url, token, &body)
}

/// The level, or `None` when no item has that SKU or it is not stocked at the location.
pub fn found_level(
    status: u16,
    headers: &[(String, String)],
    body: &str,
    sku: &str,
    location_id: u64,
) -> Result<Option<TargetLevel>, WriteError> {
    let value = data(status, headers, body)?;
    let nodes = at(&value, &["data", "inventoryItems", "nodes"])
        .and_then(Value::as_array)
        .ok_or_else(|| WriteError::Malformed("no inventoryItems.nodes".into()))?;
    let Some(item) = nodes
        .iter()
        .find(|n| n.get("sku").and_then(Value::as_str) == Some(sku))
    else {
        return Ok(None);
    };
    let Some(level) = item.get("inventoryLevel").filter(|l| !l.is_null()) else {
        return Ok(None);
    };
    let available = level
        .get("quantities")
        .and_then(Value::as_array)
        .and_then(|q| {
            q.iter()
                .find(|q| q.get("name").and_then(Value::as_str) == Some("available"))
        })
        .and_then(|q| q.get("quantity").and_then(Value::as_i64))
        .ok_or_else(|| WriteError::Malformed("no available quantity".into()))?;
    let item_id = item
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| shopify_numeric_id(id).is_some())
        .ok_or_else(|| WriteError::Malformed("no inventory item id".into()))?;
    Ok(Some(TargetLevel {
        inventory_item_id: item_id.to_owned(),
        location_id: location_gid(location_id),
        available,
    }))
}

/// `inventorySetQuantities` setting `level` to `quantity` if it still holds
/// `level.available` (`compareQuantity`).
pub fn set_quantity(
    url: String,
    token: &Secret,
    level: &TargetLevel,
    quantity: i64,
) -> HttpRequestSpec {
    let body = json!({
        "query": "mutation EdgeSyncSetQuantity($input: InventorySetQuantitiesInput!) { \
    inventorySetQuantities(input: $input) { inventoryAdjustmentGroup { id } userErrors { field message code } } }",
        "variables": { "input": {
            "name": "available",
            "reason": "correction",
            "quantities": [{
                "inventoryItemId": level.inventory_item_id,
                "locationId": level.location_id,
                "quantity": quantity,
                "compareQuantity": level.available,
            }],
        } },
    });
    shopify_graphql_request(url, token, &body)
}

/// `Ok` when the quantity was set; [`WriteError::CompareFailed`] when the level had changed.
pub fn quantity_set(
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<(), WriteError> {
    let value = data(status, headers, body)?;
    let errors = user_errors(&value, "inventorySetQuantities");
    if errors.iter().any(|(code, message)| {
        code.as_deref() == Some("COMPARE_QUANTITY_STALE")
            || message.to_ascii_lowercase().contains("compare quantity")
    }) {
        return Err(WriteError::CompareFailed);
    }
    if !errors.is_empty() {
        return Err(refused(&errors));
    }
    Ok(())
}

/// The query for the SKU of inventory item `inventory_item_id` (an `inventory_levels/update`
/// names only the item).
pub fn find_sku(url: String, token: &Secret, inventory_item_id: u64) -> HttpRequestSpec {
    let body = json!({
        "query": "query EdgeSyncItemSku($id: ID!) { inventoryItem(id: $id) { id sku } }",
        "variables": { "id": format!("gid://shopify/InventoryItem/{inventory_item_id}") },
    });
    shopify_graphql_request(url, token, &body)
}

/// The item's SKU; `None` when the item is unknown or has no SKU.
pub fn found_sku(
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<Option<String>, WriteError> {
    let value = data(status, headers, body)?;
    Ok(at(&value, &["data", "inventoryItem", "sku"])
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::change::VariantSnapshot;

    const URL: &str = "https://b.myshopify.com/admin/api/2025-01/graphql.json";

    fn token() -> Secret {
        Secret::new("shpat_b")
    }

    fn body(spec: &HttpRequestSpec) -> Value {
        assert!(
            !format!("{spec:?}").contains("shpat_b"),
            "the token is redacted"
        );
        serde_json::from_str(&spec.body).expect("json")
    }

    #[test]
    fn product_set_is_identified_by_handle_and_carries_skus() {
        let product = ProductSnapshot {
            id: 1,
            handle: "lamp".into(),
            title: "Lamp".into(),
            body_html: "<p>Warm</p>".into(),
            status: "active".into(),
            vendor: "Acme".into(),
            product_type: "Light".into(),
            variants: vec![VariantSnapshot {
                id: 11,
                sku: Some("LAMP-1".into()),
                title: "Default Title".into(),
                price: "19.99".into(),
                inventory_item_id: None,
            }],
        };
        let sent = body(&set_product(URL.into(), &token(), &product));
        assert_eq!(sent["variables"]["identifier"]["handle"], "lamp");
        assert_eq!(sent["variables"]["input"]["status"], "ACTIVE");
        assert_eq!(
            sent["variables"]["input"]["variants"][0]["inventoryItem"]["sku"],
            "LAMP-1"
        );
        assert_eq!(sent["variables"]["input"]["variants"][0]["price"], "19.99");
        let ok = r#"{"data":{"productSet":{"product":{"id":"gid://shopify/Product/7","handle":"lamp"},"userErrors":[]}}}"#;
        assert_eq!(
            product_set(200, &[], ok).as_deref(),
            Ok("gid://shopify/Product/7")
        );
        let refused = r#"{"data":{"productSet":{"product":null,"userErrors":[{"field":["input","title"],"message":"Title can't be blank","code":"BLANK"}]}}}"#;
        assert_eq!(
            product_set(200, &[], refused),
            Err(WriteError::Refused("Title can't be blank".into()))
        );
        assert!(matches!(
            product_set(401, &[], ""),
            Err(WriteError::Transport(PageError::Unauthorized))
        ));
    }

    #[test]
    fn products_and_levels_are_found_by_handle_and_sku() {
        let sent = body(&find_product(URL.into(), &token(), "o'lamp"));
        assert_eq!(sent["variables"]["q"], "handle:'o\\'lamp'");
        let answer =
            r#"{"data":{"products":{"nodes":[{"id":"gid://shopify/Product/7","handle":"lamp"}]}}}"#;
        assert_eq!(
            found_product(200, &[], answer, "lamp")
                .expect("parsed")
                .as_deref(),
            Some("gid://shopify/Product/7")
        );
        assert_eq!(found_product(200, &[], answer, "other"), Ok(None));

        let sent = body(&find_level(URL.into(), &token(), "LAMP-1", 21));
        assert_eq!(sent["variables"]["location"], "gid://shopify/Location/21");
        let level = r#"{"data":{"inventoryItems":{"nodes":[{"id":"gid://shopify/InventoryItem/5","sku":"LAMP-1",
            "inventoryLevel":{"id":"gid://shopify/InventoryLevel/9?inventory_item_id=5",
            "quantities":[{"name":"available","quantity":17}]}}]}}}"#;
        assert_eq!(
            found_level(200, &[], level, "LAMP-1", 21),
            Ok(Some(TargetLevel {
                inventory_item_id: "gid://shopify/InventoryItem/5".into(),
                location_id: "gid://shopify/Location/21".into(),
                available: 17
            }))
        );
        let unstocked = r#"{"data":{"inventoryItems":{"nodes":[{"id":"gid://shopify/InventoryItem/5","sku":"LAMP-1","inventoryLevel":null}]}}}"#;
        assert_eq!(found_level(200, &[], unstocked, "LAMP-1", 21), Ok(None));
    }

    #[test]
    fn compare_and_set_failures_are_told_apart() {
        let level = TargetLevel {
            inventory_item_id: "gid://shopify/InventoryItem/5".into(),
            location_id: "gid://shopify/Location/21".into(),
            available: 17,
        };
        let sent = body(&set_quantity(URL.into(), &token(), &level, 14));
        let quantity = &sent["variables"]["input"]["quantities"][0];
        assert_eq!(quantity["quantity"], 14);
        assert_eq!(quantity["compareQuantity"], 17);
        assert_eq!(sent["variables"]["input"]["name"], "available");
        let ok = r#"{"data":{"inventorySetQuantities":{"inventoryAdjustmentGroup":{"id":"gid://shopify/InventoryAdjustmentGroup/1"},"userErrors":[]}}}"#;
        assert_eq!(quantity_set(200, &[], ok), Ok(()));
        let stale = r#"{"data":{"inventorySetQuantities":{"inventoryAdjustmentGroup":null,"userErrors":[{"field":["input","quantities","0","compareQuantity"],"message":"The compare quantity does not match the current quantity.","code":"COMPARE_QUANTITY_STALE"}]}}}"#;
        assert_eq!(
            quantity_set(200, &[], stale),
            Err(WriteError::CompareFailed)
        );
        let other = r#"{"data":{"inventorySetQuantities":{"inventoryAdjustmentGroup":null,"userErrors":[{"field":["input"],"message":"The specified location could not be found.","code":"INVALID_LOCATION"}]}}}"#;
        assert!(matches!(
            quantity_set(200, &[], other),
            Err(WriteError::Refused(_))
        ));
        let deleted = r#"{"data":{"productDelete":{"deletedProductId":"gid://shopify/Product/7","userErrors":[]}}}"#;
        assert_eq!(
            product_deleted(200, &[], deleted).as_deref(),
            Ok("gid://shopify/Product/7")
        );
        let sent = body(&delete_product(
            URL.into(),
            &token(),
            "gid://shopify/Product/7",
        ));
        assert_eq!(sent["variables"]["input"]["id"], "gid://shopify/Product/7");
    }
}
