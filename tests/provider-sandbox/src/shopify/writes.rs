//! The Admin API's write mutations a propagation uses, on the shop of the request (which gets
//! data of its own at its first write), each followed by the webhooks Shopify sends for a
//! change made through the API (<https://shopify.dev/docs/apps/build/webhooks>), so a client
//! must recognise its own writes when they come back:
//! - `productSet(input:, identifier: {handle} | {id}, synchronous:)`: creates or updates a
//!   product with its variants (matched by SKU); `products/create` or `products/update`
//!   (<https://shopify.dev/docs/api/admin-graphql/latest/mutations/productSet>). The
//!   description (`descriptionHtml`) is accepted and not kept.
//! - `productDelete(input: {id})`: `products/delete`
//!   (<https://shopify.dev/docs/api/admin-graphql/latest/mutations/productDelete>).
//! - `inventorySetQuantities(input: {name: "available", reason, quantities: [{inventoryItemId,
//!   locationId, quantity, compareQuantity}], ignoreCompareQuantity})`: compare-and-set; a
//!   `compareQuantity` that differs from the current quantity is the user error
//!   `COMPARE_QUANTITY_STALE` and nothing changes; `inventory_levels/update` per level set
//!   (<https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities>).

use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};

use crate::shopify::data::{ProductInput, ProductStatus, VariantInput};
use crate::shopify::graphql::require_scope;
use crate::shopify::graphql::{gid, parse_gid, request_data, ProductNode};
use crate::shopify::webhooks::{notify_change, WebhookSubscriptionTopic};

/// A user error with Shopify's code.
#[derive(SimpleObject, Debug, Clone)]
pub struct CodedUserError {
    /// Path to the input field at fault.
    pub field: Option<Vec<String>>,
    /// What is wrong.
    pub message: String,
    /// Machine-readable code.
    pub code: Option<String>,
}

fn coded(field: &[&str], message: &str, code: &str) -> CodedUserError {
    CodedUserError {
        field: Some(field.iter().map(|f| (*f).to_owned()).collect()),
        message: message.to_owned(),
        code: Some(code.to_owned()),
    }
}

/// `ProductSetIdentifiers`.
#[derive(InputObject, Debug, Clone)]
pub struct ProductSetIdentifiers {
    /// By id.
    pub id: Option<ID>,
    /// By handle.
    pub handle: Option<String>,
}

/// `OptionValueInput` (the sandbox reads the name).
#[derive(InputObject, Debug, Clone)]
pub struct OptionValueSetInput {
    /// Option value.
    pub name: Option<String>,
}

/// `OptionSetInput`.
#[derive(InputObject, Debug, Clone)]
pub struct OptionSetInput {
    /// Option name.
    pub name: Option<String>,
    /// Its values.
    pub values: Option<Vec<OptionValueSetInput>>,
}

/// `VariantOptionValueInput`.
#[derive(InputObject, Debug, Clone)]
pub struct VariantOptionValueInput {
    /// The option.
    pub option_name: Option<String>,
    /// The value (the variant's title here).
    pub name: Option<String>,
}

/// `InventoryItemInput` (the SKU).
#[derive(InputObject, Debug, Clone)]
pub struct InventoryItemInput {
    /// SKU.
    pub sku: Option<String>,
    /// Tracked.
    pub tracked: Option<bool>,
}

/// `ProductVariantSetInput`.
#[derive(InputObject, Debug, Clone)]
pub struct ProductVariantSetInput {
    /// Option values (the first one's name is the variant's title).
    pub option_values: Vec<VariantOptionValueInput>,
    /// Price, e.g. `"19.99"`.
    pub price: Option<String>,
    /// The inventory item (its SKU).
    pub inventory_item: Option<InventoryItemInput>,
}

/// `ProductSetInput`.
#[derive(InputObject, Debug, Clone)]
pub struct ProductSetInput {
    /// Handle.
    pub handle: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Description (accepted, not kept).
    pub description_html: Option<String>,
    /// Vendor.
    pub vendor: Option<String>,
    /// Product type.
    pub product_type: Option<String>,
    /// Status.
    pub status: Option<ProductStatus>,
    /// Options.
    pub product_options: Option<Vec<OptionSetInput>>,
    /// Variants.
    pub variants: Option<Vec<ProductVariantSetInput>>,
}

/// `ProductSetPayload`.
#[derive(SimpleObject, Debug, Clone)]
pub struct ProductSetPayload {
    /// The product written.
    pub product: Option<ProductNode>,
    /// Why not.
    pub user_errors: Vec<CodedUserError>,
}

/// `ProductDeleteInput`.
#[derive(InputObject, Debug, Clone)]
pub struct ProductDeleteInput {
    /// The product.
    pub id: ID,
}

/// `ProductDeletePayload`.
#[derive(SimpleObject, Debug, Clone)]
pub struct ProductDeletePayload {
    /// The deleted product's id.
    pub deleted_product_id: Option<ID>,
    /// Why not.
    pub user_errors: Vec<CodedUserError>,
}

/// `InventorySetQuantityInput`.
#[derive(InputObject, Debug, Clone)]
pub struct InventorySetQuantityInput {
    /// The item.
    pub inventory_item_id: ID,
    /// The location.
    pub location_id: ID,
    /// The new quantity.
    pub quantity: i32,
    /// The quantity the caller last saw (compare-and-set).
    pub compare_quantity: Option<i32>,
}

/// `InventorySetQuantitiesInput`.
#[derive(InputObject, Debug, Clone)]
pub struct InventorySetQuantitiesInput {
    /// Which quantity (`available`).
    pub name: String,
    /// Why (`correction`, ...).
    pub reason: String,
    /// The levels.
    pub quantities: Vec<InventorySetQuantityInput>,
    /// Skip the comparison (not recommended).
    pub ignore_compare_quantity: Option<bool>,
}

/// `InventoryAdjustmentGroup`.
#[derive(SimpleObject, Debug, Clone)]
pub struct InventoryAdjustmentGroup {
    /// Its id.
    pub id: ID,
    /// Why.
    pub reason: String,
}

/// `InventorySetQuantitiesPayload`.
#[derive(SimpleObject, Debug, Clone)]
pub struct InventorySetQuantitiesPayload {
    /// The change made.
    pub inventory_adjustment_group: Option<InventoryAdjustmentGroup>,
    /// Why not.
    pub user_errors: Vec<CodedUserError>,
}

fn price_cents(price: Option<&str>) -> Option<i64> {
    let price = price.unwrap_or("0").trim();
    let (whole, cents) = price.split_once('.').unwrap_or((price, "0"));
    let cents = format!("{cents:0<2}");
    if cents.len() > 2 {
        return None;
    }
    Some(whole.parse::<i64>().ok()? * 100 + cents.parse::<i64>().ok()?)
}

/// The write mutations.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteMutations;

#[Object(name = "WriteMutations")]
impl WriteMutations {
    async fn product_set(
        &self,
        ctx: &Context<'_>,
        input: ProductSetInput,
        identifier: Option<ProductSetIdentifiers>,
        #[graphql(default = true)] synchronous: bool,
    ) -> Result<ProductSetPayload> {
        let _ = synchronous;
        require_scope(ctx, "productSet", "write_products")?;
        let rd = request_data(ctx)?;
        let refuse = |e: CodedUserError| ProductSetPayload {
            product: None,
            user_errors: vec![e],
        };
        let shopify = &rd.state.shopify;
        let shop = Some(rd.shop.as_str());
        // The product to update: by identifier (id or handle), else by the input's handle.
        let by_id = identifier
            .as_ref()
            .and_then(|i| i.id.as_ref())
            .map(|id| parse_gid("Product", id));
        let existing_handle = match by_id {
            Some(Some(id)) => {
                shopify.read_shop(shop, |d| d.products.get(&id).map(|p| p.handle.clone()))
            }
            Some(None) => None,
            None => None,
        };
        if by_id.is_some() && existing_handle.is_none() {
            return Ok(refuse(coded(
                &["identifier", "id"],
                "Product does not exist",
                "PRODUCT_DOES_NOT_EXIST",
            )));
        }
        let handle = existing_handle
            .or_else(|| identifier.as_ref().and_then(|i| i.handle.clone()))
            .or_else(|| input.handle.clone())
            .filter(|h| !h.trim().is_empty());
        let Some(handle) = handle else {
            return Ok(refuse(coded(
                &["input", "handle"],
                "Handle can't be blank",
                "BLANK",
            )));
        };
        let title = input.title.clone().unwrap_or_default();
        if title.trim().is_empty() {
            return Ok(refuse(coded(
                &["input", "title"],
                "Title can't be blank",
                "BLANK",
            )));
        }
        let mut variants = Vec::new();
        for (i, v) in input
            .variants
            .clone()
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let Some(price_cents) = price_cents(v.price.as_deref()) else {
                return Ok(refuse(coded(
                    &["input", "variants", &i.to_string(), "price"],
                    "Price is invalid",
                    "INVALID",
                )));
            };
            variants.push(VariantInput {
                title: v
                    .option_values
                    .first()
                    .and_then(|o| o.name.clone())
                    .unwrap_or_else(|| "Default Title".to_owned()),
                sku: v
                    .inventory_item
                    .and_then(|item| item.sku)
                    .unwrap_or_default(),
                price_cents,
            });
        }
        let product = ProductInput {
            handle,
            title,
            status: input.status.unwrap_or(ProductStatus::Active),
            vendor: input.vendor.clone().unwrap_or_default(),
            product_type: input.product_type.clone().unwrap_or_default(),
            variants,
        };
        let now = rd.state.clock.now_ms();
        let (id, created) = shopify.write_shop(shop, |d| d.set_product(&product, now));
        let topic = if created {
            WebhookSubscriptionTopic::ProductsCreate
        } else {
            WebhookSubscriptionTopic::ProductsUpdate
        };
        notify_change(&rd.state, &rd.shop, topic, id);
        let node = shopify.read_shop(shop, |d| d.products.get(&id).cloned().map(ProductNode));
        Ok(ProductSetPayload {
            product: node,
            user_errors: Vec::new(),
        })
    }

    async fn product_delete(
        &self,
        ctx: &Context<'_>,
        input: ProductDeleteInput,
    ) -> Result<ProductDeletePayload> {
        require_scope(ctx, "productDelete", "write_products")?;
        let rd = request_data(ctx)?;
        let deleted = parse_gid("Product", &input.id).filter(|id| {
            rd.state.shopify.write_shop(Some(&rd.shop), |d| {
                d.delete(crate::shopify::data::Resource::Products, *id)
            })
        });
        Ok(match deleted {
            Some(id) => {
                notify_change(
                    &rd.state,
                    &rd.shop,
                    WebhookSubscriptionTopic::ProductsDelete,
                    id,
                );
                ProductDeletePayload {
                    deleted_product_id: Some(gid("Product", id)),
                    user_errors: Vec::new(),
                }
            }
            None => ProductDeletePayload {
                deleted_product_id: None,
                user_errors: vec![coded(
                    &["id"],
                    "Product does not exist",
                    "PRODUCT_DOES_NOT_EXIST",
                )],
            },
        })
    }

    async fn inventory_set_quantities(
        &self,
        ctx: &Context<'_>,
        input: InventorySetQuantitiesInput,
    ) -> Result<InventorySetQuantitiesPayload> {
        require_scope(ctx, "inventorySetQuantities", "write_inventory")?;
        let rd = request_data(ctx)?;
        let refuse = |e: CodedUserError| InventorySetQuantitiesPayload {
            inventory_adjustment_group: None,
            user_errors: vec![e],
        };
        if input.name != "available" && input.name != "on_hand" {
            return Ok(refuse(coded(
                &["input", "name"],
                "The quantity name must be either 'available' or 'on_hand'.",
                "INVALID_NAME",
            )));
        }
        let ignore = input.ignore_compare_quantity.unwrap_or(false);
        let now = rd.state.clock.now_ms();
        // All or nothing: every level is checked before any is written.
        let outcome = rd.state.shopify.write_shop(Some(&rd.shop), |d| {
            let mut targets = Vec::new();
            for (i, q) in input.quantities.iter().enumerate() {
                let index = i.to_string();
                let field = |name: &'static str| ["input", "quantities", index.as_str(), name];
                let item = parse_gid("InventoryItem", &q.inventory_item_id);
                let location = parse_gid("Location", &q.location_id);
                let Some(level) = item.zip(location).and_then(|(i, l)| d.level_at(i, l)) else {
                    return Err(coded(
                        &field("locationId"),
                        "The specified inventory item is not stocked at the location.",
                        "ITEM_NOT_STOCKED_AT_LOCATION",
                    ));
                };
                match q.compare_quantity {
                    None if !ignore => {
                        return Err(coded(
                            &field("compareQuantity"),
                            "The compareQuantity argument must be given to each quantity or ignored using ignoreCompareQuantity.",
                            "COMPARE_QUANTITY_REQUIRED",
                        ))
                    }
                    Some(expected) if !ignore && i64::from(expected) != level.available => {
                        return Err(coded(
                            &field("compareQuantity"),
                            "The compareQuantity value does not match the current quantity.",
                            "COMPARE_QUANTITY_STALE",
                        ))
                    }
                    _ => targets.push((level.id, i64::from(q.quantity))),
                }
            }
            for (level_id, quantity) in &targets {
                d.set_available(*level_id, *quantity, now);
            }
            Ok(targets)
        });
        match outcome {
            Err(error) => Ok(refuse(error)),
            Ok(levels) => {
                for (level_id, _) in &levels {
                    notify_change(
                        &rd.state,
                        &rd.shop,
                        WebhookSubscriptionTopic::InventoryLevelsUpdate,
                        *level_id,
                    );
                }
                Ok(InventorySetQuantitiesPayload {
                    inventory_adjustment_group: Some(InventoryAdjustmentGroup {
                        id: gid("InventoryAdjustmentGroup", u64::try_from(now).unwrap_or(0)),
                        reason: input.reason,
                    }),
                    user_errors: Vec::new(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::price_cents;

    #[test]
    fn prices_are_read_as_cents() {
        assert_eq!(price_cents(Some("19.99")), Some(1999));
        assert_eq!(price_cents(Some("5")), Some(500));
        assert_eq!(price_cents(Some("5.5")), Some(550));
        assert_eq!(price_cents(Some("5.555")), None);
        assert_eq!(price_cents(Some("x")), None);
    }
}
