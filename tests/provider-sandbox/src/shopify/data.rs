//! The shop's data behind the GraphQL Admin API: products with variants, inventory items
//! and levels at two locations, orders, customers and collections. Every shop in the URL
//! sees this seeded catalogue (the sandbox stands in for any shop) until a change is made to
//! that shop alone, which gives it a copy of its own (`ShopifyState::write_shop`).
//!
//! Ids are far above 2^53 (e.g. products are `710_000_000_000_000_000 + n`) so a client that
//! parses them as JSON doubles (JavaScript numbers) loses digits and fails its tests; each
//! type has its own range, so a product id used as a variant id finds nothing. Timestamps
//! are whole seconds (Shopify's `DateTime` has no fractions), spread over the year before
//! [`SEED_BASE_MS`], and about 10% of records share a bulk-import instant.

use std::collections::BTreeMap;

use async_graphql::Enum;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::seed::{
    bulk_import_times, chance, pick, slug, BULK_IMPORT_PER_MILLE, DAY_MS, EMAIL_DOMAINS,
    FAMILY_NAMES, GIVEN_NAMES, YEAR_MS,
};
use crate::time::SEED_BASE_MS;

/// First product id minus one: product `n` (1-based) has id `PRODUCT_ID_BASE + n`.
pub const PRODUCT_ID_BASE: u64 = 710_000_000_000_000_000;
/// Variant `v` (1..=3) of product `n` has id `VARIANT_ID_BASE + 4n + v`.
pub const VARIANT_ID_BASE: u64 = 720_000_000_000_000_000;
/// The inventory item of variant `k = 4n + v` has id `INVENTORY_ITEM_ID_BASE + k`.
pub const INVENTORY_ITEM_ID_BASE: u64 = 730_000_000_000_000_000;
/// The level of item `k` at location `l` (1..=2) has id `INVENTORY_LEVEL_ID_BASE + 4k + l`.
pub const INVENTORY_LEVEL_ID_BASE: u64 = 740_000_000_000_000_000;
/// Location `l` has id `LOCATION_ID_BASE + l`.
pub const LOCATION_ID_BASE: u64 = 750_000_000_000_000_000;
/// Order `n` has id `ORDER_ID_BASE + n`.
pub const ORDER_ID_BASE: u64 = 760_000_000_000_000_000;
/// Customer `n` has id `CUSTOMER_ID_BASE + n`.
pub const CUSTOMER_ID_BASE: u64 = 770_000_000_000_000_000;
/// Collection `n` has id `COLLECTION_ID_BASE + n` (new ones take the next number: ids grow,
/// as Shopify's do).
pub const COLLECTION_ID_BASE: u64 = 790_000_000_000_000_000;
/// Collections every shop starts with.
const SEEDED_COLLECTIONS: u64 = 3;

/// `ProductStatus`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProductStatus {
    /// On sale.
    Active,
    /// No longer sold.
    Archived,
    /// Not yet published.
    Draft,
}

/// `OrderDisplayFinancialStatus`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderDisplayFinancialStatus {
    /// Payment authorized.
    Authorized,
    /// Authorization expired.
    Expired,
    /// Paid.
    Paid,
    /// Partly paid.
    PartiallyPaid,
    /// Partly refunded.
    PartiallyRefunded,
    /// Awaiting payment.
    Pending,
    /// Refunded.
    Refunded,
    /// Voided.
    Voided,
}

/// `OrderDisplayFulfillmentStatus`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderDisplayFulfillmentStatus {
    /// Shipped.
    Fulfilled,
    /// In progress.
    InProgress,
    /// On hold.
    OnHold,
    /// Open.
    Open,
    /// Partly shipped.
    PartiallyFulfilled,
    /// Awaiting fulfillment.
    PendingFulfillment,
    /// Restocked.
    Restocked,
    /// Scheduled.
    Scheduled,
    /// Not shipped.
    Unfulfilled,
}

/// A product.
#[derive(Clone, Debug, PartialEq)]
pub struct Product {
    /// Numeric id.
    pub id: u64,
    /// Title as generated; edits append ` (rev N)`.
    pub base_title: String,
    /// How many times the control API edited it.
    pub revision: u32,
    /// URL handle.
    pub handle: String,
    /// Status.
    pub status: ProductStatus,
    /// Vendor.
    pub vendor: String,
    /// Product type.
    pub product_type: String,
    /// Created, unix ms (whole seconds).
    pub created_ms: i64,
    /// Updated, unix ms (whole seconds).
    pub updated_ms: i64,
    /// Variant ids, in position order.
    pub variants: Vec<u64>,
}

impl Product {
    /// The title as the API shows it.
    pub fn title(&self) -> String {
        if self.revision == 0 {
            self.base_title.clone()
        } else {
            format!("{} (rev {})", self.base_title, self.revision)
        }
    }
}

/// A product variant.
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    /// Numeric id.
    pub id: u64,
    /// Owning product.
    pub product_id: u64,
    /// Title (`Default Title` when the product has one variant).
    pub title: String,
    /// SKU.
    pub sku: String,
    /// Price in cents.
    pub price_cents: i64,
    /// Its inventory item.
    pub inventory_item_id: u64,
    /// Created, unix ms.
    pub created_ms: i64,
    /// Updated, unix ms.
    pub updated_ms: i64,
}

/// An inventory item (one per variant).
#[derive(Clone, Debug, PartialEq)]
pub struct InventoryItem {
    /// Numeric id.
    pub id: u64,
    /// The variant it tracks.
    pub variant_id: u64,
    /// SKU (same as the variant's).
    pub sku: String,
    /// Whether quantities are tracked.
    pub tracked: bool,
    /// Created, unix ms.
    pub created_ms: i64,
    /// Updated, unix ms. The sandbox bumps it whenever one of its levels changes (whether
    /// Shopify does is UNCONFIRMED), so `inventoryItems(query: "updated_at:>...")` finds
    /// quantity changes.
    pub updated_ms: i64,
}

/// The quantities of one item at one location.
#[derive(Clone, Debug, PartialEq)]
pub struct InventoryLevel {
    /// Numeric id.
    pub id: u64,
    /// The item.
    pub item_id: u64,
    /// The location.
    pub location_id: u64,
    /// `available` quantity.
    pub available: i64,
    /// `committed` quantity (ordered, not shipped).
    pub committed: i64,
    /// `incoming` quantity.
    pub incoming: i64,
    /// Created, unix ms.
    pub created_ms: i64,
    /// Updated, unix ms.
    pub updated_ms: i64,
}

impl InventoryLevel {
    /// A named quantity (Shopify's inventory states); `None` for an unknown name.
    pub fn quantity(&self, name: &str) -> Option<i64> {
        Some(match name {
            "available" => self.available,
            "committed" => self.committed,
            "incoming" => self.incoming,
            "on_hand" => self.available + self.committed,
            "damaged" | "quality_control" | "reserved" | "safety_stock" => 0,
            _ => return None,
        })
    }
}

/// A location.
#[derive(Clone, Debug, PartialEq)]
pub struct Location {
    /// Numeric id.
    pub id: u64,
    /// Name.
    pub name: String,
}

/// An order.
#[derive(Clone, Debug, PartialEq)]
pub struct Order {
    /// Numeric id.
    pub id: u64,
    /// `#1001`, ...
    pub name: String,
    /// Buyer's email.
    pub email: String,
    /// The customer, if not a guest checkout.
    pub customer_id: Option<u64>,
    /// Financial status.
    pub financial: OrderDisplayFinancialStatus,
    /// Fulfillment status.
    pub fulfillment: OrderDisplayFulfillmentStatus,
    /// Total in cents (USD).
    pub total_cents: i64,
    /// Merchant note (edits write here).
    pub note: Option<String>,
    /// Created (= processed), unix ms.
    pub created_ms: i64,
    /// Updated, unix ms.
    pub updated_ms: i64,
}

/// A customer.
#[derive(Clone, Debug, PartialEq)]
pub struct Customer {
    /// Numeric id.
    pub id: u64,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Email.
    pub email: String,
    /// Merchant note (edits write here).
    pub note: Option<String>,
    /// Created, unix ms.
    pub created_ms: i64,
    /// Updated, unix ms.
    pub updated_ms: i64,
}

/// A custom collection.
#[derive(Clone, Debug, PartialEq)]
pub struct Collection {
    /// Numeric id.
    pub id: u64,
    /// Title.
    pub title: String,
    /// URL handle.
    pub handle: String,
    /// Created, unix ms (whole seconds).
    pub created_ms: i64,
    /// Updated, unix ms (whole seconds).
    pub updated_ms: i64,
}

/// The handle Shopify makes from a title: lowercase words joined by `-`
/// (<https://shopify.dev/docs/api/admin-graphql/latest/objects/Product#field-handle>).
pub fn handle_of(title: &str) -> String {
    title
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// What `productSet` writes ([`ShopData::set_product`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ProductInput {
    /// The handle (the product's identity here).
    pub handle: String,
    /// Title.
    pub title: String,
    /// Status.
    pub status: ProductStatus,
    /// Vendor.
    pub vendor: String,
    /// Product type.
    pub product_type: String,
    /// Variants in position order.
    pub variants: Vec<VariantInput>,
}

/// One variant of a [`ProductInput`].
#[derive(Clone, Debug, PartialEq)]
pub struct VariantInput {
    /// Title (its option value).
    pub title: String,
    /// SKU (of its inventory item).
    pub sku: String,
    /// Price in cents.
    pub price_cents: i64,
}

/// What [`ShopData::create_product`] made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreatedProduct {
    /// The product.
    pub id: u64,
    /// Its one variant.
    pub variant_id: u64,
    /// The variant's inventory item.
    pub inventory_item_id: u64,
    /// The item's level at the shop's first location.
    pub inventory_level_id: u64,
}

/// A resource the control API can list, edit and delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// Products (deleting one deletes its variants, items and levels).
    Products,
    /// Orders.
    Orders,
    /// Customers.
    Customers,
    /// Inventory levels (editing one changes `available` and bumps its item).
    InventoryLevels,
    /// Inventory items (list and read only).
    InventoryItems,
}

impl Resource {
    /// Parses the `{resource}` path segment.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "products" => Self::Products,
            "orders" => Self::Orders,
            "customers" => Self::Customers,
            "inventory_levels" => Self::InventoryLevels,
            "inventory_items" => Self::InventoryItems,
            _ => return None,
        })
    }

    /// The GraphQL type name in its gids.
    pub fn gid_type(self) -> &'static str {
        match self {
            Self::Products => "Product",
            Self::Orders => "Order",
            Self::Customers => "Customer",
            Self::InventoryLevels => "InventoryLevel",
            Self::InventoryItems => "InventoryItem",
        }
    }
}

/// Everything the shop holds.
#[derive(Clone, Debug, Default)]
pub struct ShopData {
    /// Products by id.
    pub products: BTreeMap<u64, Product>,
    /// Variants by id.
    pub variants: BTreeMap<u64, Variant>,
    /// Inventory items by id.
    pub items: BTreeMap<u64, InventoryItem>,
    /// Inventory levels by id.
    pub levels: BTreeMap<u64, InventoryLevel>,
    /// Locations by id.
    pub locations: BTreeMap<u64, Location>,
    /// Orders by id.
    pub orders: BTreeMap<u64, Order>,
    /// Customers by id.
    pub customers: BTreeMap<u64, Customer>,
    /// Collections by id.
    pub collections: BTreeMap<u64, Collection>,
}

#[rustfmt::skip]
const ADJECTIVES: &[&str] = &[
    "Classic", "Organic", "Vintage", "Everyday", "Premium", "Handmade", "Lightweight", "Cozy",
    "Rugged", "Minimalist", "Recycled", "Deluxe",
];
#[rustfmt::skip]
const NOUNS: &[&str] = &[
    "Tote Bag", "Coffee Mug", "Hoodie", "Water Bottle", "Notebook", "Candle", "Beanie",
    "Backpack", "T-Shirt", "Scarf", "Sunglasses", "Phone Case", "Socks", "Apron",
];
#[rustfmt::skip]
const VENDORS: &[&str] = &[
    "Northwind Goods", "Acme Supply", "Harbor & Pine", "Blue Fern", "Summit Outfitters",
];
#[rustfmt::skip]
const PRODUCT_TYPES: &[&str] = &["Apparel", "Accessories", "Home", "Outdoor", "Stationery"];
const SIZES: &[&str] = &["Small", "Medium", "Large"];
const COLORS: &[&str] = &["Red", "Blue", "Green"];
const LOCATIONS: &[&str] = &["Main Warehouse", "Downtown Store"];

const PRODUCT_STREAM: u64 = 0x10;
const ORDER_STREAM: u64 = 0x11;
const CUSTOMER_STREAM: u64 = 0x12;

fn rng_for(seed: u64, tag: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((tag << 56) | index);
    rng
}

/// Whole seconds, as Shopify stores them.
fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000) * 1000
}

/// (created, updated): a tenth share a bulk-import instant, the rest spread over the year.
fn times<R: Rng>(rng: &mut R, bulk: &[i64; 4]) -> (i64, i64) {
    if chance(rng, BULK_IMPORT_PER_MILLE) {
        let at = bulk[rng.gen_range(0..bulk.len())];
        return (at, at);
    }
    let created = secs(SEED_BASE_MS - rng.gen_range(DAY_MS..YEAR_MS));
    let updated = if chance(rng, 333) {
        created
    } else {
        secs(created + rng.gen_range(0..SEED_BASE_MS - created))
    };
    (created, updated)
}

/// Generates customer `index` (id `CUSTOMER_ID_BASE + index + 1`).
pub fn generate_customer(seed: u64, index: u64, bulk: &[i64; 4]) -> Customer {
    let mut rng = rng_for(seed, CUSTOMER_STREAM, index);
    let n = index + 1;
    let first = pick(&mut rng, GIVEN_NAMES);
    let last = pick(&mut rng, FAMILY_NAMES);
    let domain = pick(&mut rng, EMAIL_DOMAINS);
    let (created_ms, updated_ms) = times(&mut rng, bulk);
    Customer {
        id: CUSTOMER_ID_BASE + n,
        first_name: first.to_owned(),
        last_name: last.to_owned(),
        email: format!("{}.{}{n}@{domain}", slug(first), slug(last)),
        note: None,
        created_ms,
        updated_ms,
    }
}

impl ShopData {
    /// Generates the shop: two locations, `products` products (1-3 variants each, every
    /// variant with an inventory item stocked at both locations), `orders` orders and
    /// `customers` customers. Record `n` is the same whatever the counts.
    pub fn generate(seed: u64, products: usize, orders: usize, customers: usize) -> Self {
        let bulk = bulk_import_times(seed);
        let mut data = Self::default();
        for (l, name) in (1u64..).zip(LOCATIONS) {
            let id = LOCATION_ID_BASE + l;
            data.locations.insert(
                id,
                Location {
                    id,
                    name: (*name).to_owned(),
                },
            );
        }
        for index in 0..products as u64 {
            data.add_product(seed, index, &bulk);
        }
        for index in 0..customers as u64 {
            let customer = generate_customer(seed, index, &bulk);
            data.customers.insert(customer.id, customer);
        }
        for index in 0..orders as u64 {
            let order = generate_order(seed, index, customers, &bulk);
            data.orders.insert(order.id, order);
        }
        for n in 1..=SEEDED_COLLECTIONS {
            let at = secs(SEED_BASE_MS - i64::try_from(n).unwrap_or(0) * 30 * DAY_MS);
            data.insert_collection(n, format!("Collection {n}"), format!("collection-{n}"), at);
        }
        data
    }

    fn insert_collection(&mut self, n: u64, title: String, handle: String, at_ms: i64) -> u64 {
        let id = COLLECTION_ID_BASE + n;
        self.collections.insert(
            id,
            Collection {
                id,
                title,
                handle,
                created_ms: at_ms,
                updated_ms: at_ms,
            },
        );
        id
    }

    /// Adds a collection with the next id (created and updated now); returns its id.
    pub fn create_collection(&mut self, title: &str, handle: Option<&str>, now_ms: i64) -> u64 {
        let n = self
            .collections
            .keys()
            .next_back()
            .map_or(1, |id| id - COLLECTION_ID_BASE + 1);
        let handle = handle.map_or_else(|| handle_of(title), str::to_owned);
        self.insert_collection(n, title.to_owned(), handle, secs(now_ms))
    }

    /// Adds a product with the next number: one variant (`sku`, or one made from the
    /// number), its inventory item and a level of `available` at the first location, all
    /// created and updated now.
    pub fn create_product(
        &mut self,
        title: &str,
        sku: Option<&str>,
        available: i64,
        vendor: &str,
        product_type: &str,
        now_ms: i64,
    ) -> CreatedProduct {
        let now = secs(now_ms);
        let n = self
            .products
            .keys()
            .next_back()
            .map_or(1, |id| id - PRODUCT_ID_BASE + 1);
        let id = PRODUCT_ID_BASE + n;
        let k = 4 * n + 1;
        let variant_id = VARIANT_ID_BASE + k;
        let item_id = INVENTORY_ITEM_ID_BASE + k;
        let location_id = self
            .locations
            .keys()
            .next()
            .copied()
            .unwrap_or(LOCATION_ID_BASE + 1);
        let level_id = INVENTORY_LEVEL_ID_BASE + 4 * k + (location_id - LOCATION_ID_BASE);
        let sku = sku.map_or_else(|| format!("NEW-{n:05}-1"), str::to_owned);
        self.products.insert(
            id,
            Product {
                id,
                base_title: title.to_owned(),
                revision: 0,
                handle: handle_of(title),
                status: ProductStatus::Active,
                vendor: vendor.to_owned(),
                product_type: product_type.to_owned(),
                created_ms: now,
                updated_ms: now,
                variants: vec![variant_id],
            },
        );
        self.variants.insert(
            variant_id,
            Variant {
                id: variant_id,
                product_id: id,
                title: "Default Title".to_owned(),
                sku: sku.clone(),
                price_cents: 1999,
                inventory_item_id: item_id,
                created_ms: now,
                updated_ms: now,
            },
        );
        self.items.insert(
            item_id,
            InventoryItem {
                id: item_id,
                variant_id,
                sku,
                tracked: true,
                created_ms: now,
                updated_ms: now,
            },
        );
        self.levels.insert(
            level_id,
            InventoryLevel {
                id: level_id,
                item_id,
                location_id,
                available,
                committed: 0,
                incoming: 0,
                created_ms: now,
                updated_ms: now,
            },
        );
        CreatedProduct {
            id,
            variant_id,
            inventory_item_id: item_id,
            inventory_level_id: level_id,
        }
    }

    /// The product with `handle`.
    pub fn product_by_handle(&self, handle: &str) -> Option<u64> {
        self.products
            .values()
            .find(|p| p.handle == handle)
            .map(|p| p.id)
    }

    /// Creates the product with `input.handle`, or updates it: fields replaced, variants
    /// matched by SKU (kept with their items and levels), new SKUs added with an item and a
    /// level of 0 at every location, variants no longer listed removed. Returns the
    /// product's id and whether it was created.
    pub fn set_product(&mut self, input: &ProductInput, now_ms: i64) -> (u64, bool) {
        let now = secs(now_ms);
        let existing = self.product_by_handle(&input.handle);
        let created = existing.is_none();
        let id = existing.unwrap_or_else(|| {
            let n = self
                .products
                .keys()
                .next_back()
                .map_or(1, |id| id - PRODUCT_ID_BASE + 1);
            PRODUCT_ID_BASE + n
        });
        let n = id - PRODUCT_ID_BASE;
        let old_variants: Vec<Variant> = existing
            .and_then(|id| self.products.get(&id))
            .map(|p| {
                p.variants
                    .iter()
                    .filter_map(|v| self.variants.get(v).cloned())
                    .collect()
            })
            .unwrap_or_default();
        let mut variant_ids = Vec::new();
        for (position, wanted) in (1u64..).zip(&input.variants) {
            let kept = old_variants
                .iter()
                .find(|v| !wanted.sku.is_empty() && v.sku == wanted.sku);
            let variant_id = match kept {
                Some(v) => v.id,
                None => {
                    // A fresh id past every id this product ever used.
                    let k = (4 * n + position..)
                        .find(|k| !self.variants.contains_key(&(VARIANT_ID_BASE + k)))
                        .unwrap_or(4 * n + position);
                    let item_id = INVENTORY_ITEM_ID_BASE + k;
                    self.items.insert(
                        item_id,
                        InventoryItem {
                            id: item_id,
                            variant_id: VARIANT_ID_BASE + k,
                            sku: wanted.sku.clone(),
                            tracked: true,
                            created_ms: now,
                            updated_ms: now,
                        },
                    );
                    let locations: Vec<u64> = self.locations.keys().copied().collect();
                    for location_id in locations {
                        let level_id =
                            INVENTORY_LEVEL_ID_BASE + 4 * k + (location_id - LOCATION_ID_BASE);
                        self.levels.insert(
                            level_id,
                            InventoryLevel {
                                id: level_id,
                                item_id,
                                location_id,
                                available: 0,
                                committed: 0,
                                incoming: 0,
                                created_ms: now,
                                updated_ms: now,
                            },
                        );
                    }
                    VARIANT_ID_BASE + k
                }
            };
            let item_id = kept.map_or(
                INVENTORY_ITEM_ID_BASE + (variant_id - VARIANT_ID_BASE),
                |v| v.inventory_item_id,
            );
            let created_ms = kept.map_or(now, |v| v.created_ms);
            self.variants.insert(
                variant_id,
                Variant {
                    id: variant_id,
                    product_id: id,
                    title: wanted.title.clone(),
                    sku: wanted.sku.clone(),
                    price_cents: wanted.price_cents,
                    inventory_item_id: item_id,
                    created_ms,
                    updated_ms: now,
                },
            );
            variant_ids.push(variant_id);
        }
        for gone in old_variants.iter().filter(|v| !variant_ids.contains(&v.id)) {
            self.variants.remove(&gone.id);
            self.items.remove(&gone.inventory_item_id);
            self.levels
                .retain(|_, l| l.item_id != gone.inventory_item_id);
        }
        let created_ms = existing
            .and_then(|id| self.products.get(&id))
            .map_or(now, |p| p.created_ms);
        self.products.insert(
            id,
            Product {
                id,
                base_title: input.title.clone(),
                revision: 0,
                handle: input.handle.clone(),
                status: input.status,
                vendor: input.vendor.clone(),
                product_type: input.product_type.clone(),
                created_ms,
                updated_ms: now,
                variants: variant_ids,
            },
        );
        (id, created)
    }

    /// The level of item `item_id` at `location_id`.
    pub fn level_at(&self, item_id: u64, location_id: u64) -> Option<&InventoryLevel> {
        self.levels
            .values()
            .find(|l| l.item_id == item_id && l.location_id == location_id)
    }

    /// Sets a level's `available` quantity; the level and its item are updated now.
    /// `false` for an unknown level.
    pub fn set_available(&mut self, level_id: u64, available: i64, now_ms: i64) -> bool {
        let now = secs(now_ms);
        let Some(level) = self.levels.get_mut(&level_id) else {
            return false;
        };
        level.available = available;
        level.updated_ms = now;
        let item_id = level.item_id;
        if let Some(item) = self.items.get_mut(&item_id) {
            item.updated_ms = now;
        }
        true
    }

    fn add_product(&mut self, seed: u64, index: u64, bulk: &[i64; 4]) {
        let mut rng = rng_for(seed, PRODUCT_STREAM, index);
        let n = index + 1;
        let title = format!("{} {}", pick(&mut rng, ADJECTIVES), pick(&mut rng, NOUNS));
        let (created_ms, updated_ms) = times(&mut rng, bulk);
        let status = match rng.gen_range(0..100) {
            0..80 => ProductStatus::Active,
            80..95 => ProductStatus::Draft,
            _ => ProductStatus::Archived,
        };
        let variant_count = rng.gen_range(1..=3u64);
        let options = if chance(&mut rng, 500) { SIZES } else { COLORS };
        let base_price = rng.gen_range(5..200i64) * 100 - 1;
        let sku_prefix: String = slug(&title)
            .chars()
            .take(4)
            .collect::<String>()
            .to_uppercase();
        let mut variants = Vec::new();
        for v in 1..=variant_count {
            let k = 4 * n + v;
            let variant_id = VARIANT_ID_BASE + k;
            let item_id = INVENTORY_ITEM_ID_BASE + k;
            let sku = format!("{sku_prefix}-{n:05}-{v}");
            let variant_title = if variant_count == 1 {
                "Default Title".to_owned()
            } else {
                options[usize::try_from(v - 1).unwrap_or(0)].to_owned()
            };
            let price_cents = base_price + rng.gen_range(0..3i64) * 200;
            self.variants.insert(
                variant_id,
                Variant {
                    id: variant_id,
                    product_id: PRODUCT_ID_BASE + n,
                    title: variant_title,
                    sku: sku.clone(),
                    price_cents,
                    inventory_item_id: item_id,
                    created_ms,
                    updated_ms,
                },
            );
            // Levels changed at some point between creation and the product's last update.
            let level_ms = secs(created_ms + rng.gen_range(0..=updated_ms - created_ms));
            let mut item_updated = created_ms;
            for &location_id in self.locations.keys() {
                let l = location_id - LOCATION_ID_BASE;
                let level_id = INVENTORY_LEVEL_ID_BASE + 4 * k + l;
                let level_updated = if chance(&mut rng, 500) {
                    level_ms
                } else {
                    created_ms
                };
                item_updated = item_updated.max(level_updated);
                self.levels.insert(
                    level_id,
                    InventoryLevel {
                        id: level_id,
                        item_id,
                        location_id,
                        available: rng.gen_range(0..120),
                        committed: rng.gen_range(0..6),
                        incoming: if chance(&mut rng, 200) {
                            rng.gen_range(1..50)
                        } else {
                            0
                        },
                        created_ms,
                        updated_ms: level_updated,
                    },
                );
            }
            self.items.insert(
                item_id,
                InventoryItem {
                    id: item_id,
                    variant_id,
                    sku,
                    tracked: true,
                    created_ms,
                    updated_ms: item_updated,
                },
            );
            variants.push(variant_id);
        }
        let id = PRODUCT_ID_BASE + n;
        self.products.insert(
            id,
            Product {
                id,
                handle: format!("{}-{n}", slug_handle(&title)),
                base_title: title,
                revision: 0,
                status,
                vendor: pick(&mut rng, VENDORS).to_owned(),
                product_type: pick(&mut rng, PRODUCT_TYPES).to_owned(),
                created_ms,
                updated_ms,
                variants,
            },
        );
    }

    /// Variants of a product, in position order.
    pub fn product_variants(&self, product: &Product) -> Vec<&Variant> {
        product
            .variants
            .iter()
            .filter_map(|id| self.variants.get(id))
            .collect()
    }

    /// Levels of an item, by location: one key-range read, since the levels of item `k` are
    /// ids `INVENTORY_LEVEL_ID_BASE + 4k + l` (a scan of every level made a bulk query of a
    /// large shop quadratic).
    pub fn item_levels(&self, item_id: u64) -> Vec<&InventoryLevel> {
        let first = INVENTORY_LEVEL_ID_BASE + 4 * item_id.saturating_sub(INVENTORY_ITEM_ID_BASE);
        self.levels
            .range(first..first + 4)
            .map(|(_, level)| level)
            .filter(|l| l.item_id == item_id)
            .collect()
    }

    /// Sum of `available` over the item's levels (a variant's `inventoryQuantity`).
    pub fn item_available(&self, item_id: u64) -> i64 {
        self.item_levels(item_id).iter().map(|l| l.available).sum()
    }

    /// Current ids of a resource, ascending.
    pub fn ids(&self, resource: Resource) -> Vec<u64> {
        match resource {
            Resource::Products => self.products.keys().copied().collect(),
            Resource::Orders => self.orders.keys().copied().collect(),
            Resource::Customers => self.customers.keys().copied().collect(),
            Resource::InventoryLevels => self.levels.keys().copied().collect(),
            Resource::InventoryItems => self.items.keys().copied().collect(),
        }
    }

    /// Edits the given records (a visible field changes; `updatedAt` becomes `now_ms`,
    /// truncated to seconds); returns the ids changed. Products get ` (rev N)` in the
    /// title, orders and customers a `note`, levels one more `available` unit (and their
    /// item's `updatedAt` moves too). Inventory items cannot be edited directly.
    pub fn edit(&mut self, resource: Resource, ids: &[u64], now_ms: i64) -> Vec<u64> {
        let now = secs(now_ms);
        let note = format!(
            "Edited through the sandbox at {}",
            crate::time::format_secs(now)
        );
        let mut changed = Vec::new();
        for &id in ids {
            let done = match resource {
                Resource::Products => self.products.get_mut(&id).map(|p| {
                    p.revision += 1;
                    p.updated_ms = now;
                }),
                Resource::Orders => self.orders.get_mut(&id).map(|o| {
                    o.note = Some(note.clone());
                    o.updated_ms = now;
                }),
                Resource::Customers => self.customers.get_mut(&id).map(|c| {
                    c.note = Some(note.clone());
                    c.updated_ms = now;
                }),
                Resource::InventoryLevels => {
                    let item = self.levels.get_mut(&id).map(|l| {
                        l.available += 1;
                        l.updated_ms = now;
                        l.item_id
                    });
                    item.map(|item_id| {
                        if let Some(item) = self.items.get_mut(&item_id) {
                            item.updated_ms = now;
                        }
                    })
                }
                Resource::InventoryItems => None,
            };
            if done.is_some() {
                changed.push(id);
            }
        }
        changed
    }

    /// Deletes a record; returns whether it existed. A product takes its variants,
    /// inventory items and levels with it.
    pub fn delete(&mut self, resource: Resource, id: u64) -> bool {
        match resource {
            Resource::Products => {
                let Some(product) = self.products.remove(&id) else {
                    return false;
                };
                for variant_id in product.variants {
                    if let Some(variant) = self.variants.remove(&variant_id) {
                        self.items.remove(&variant.inventory_item_id);
                        self.levels
                            .retain(|_, l| l.item_id != variant.inventory_item_id);
                    }
                }
                true
            }
            Resource::Orders => self.orders.remove(&id).is_some(),
            Resource::Customers => self.customers.remove(&id).is_some(),
            Resource::InventoryLevels => self.levels.remove(&id).is_some(),
            Resource::InventoryItems => false,
        }
    }
}

/// `Classic Tote Bag` -> `classic-tote-bag`.
fn slug_handle(title: &str) -> String {
    title
        .split_whitespace()
        .map(slug)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

fn generate_order(seed: u64, index: u64, customers: usize, bulk: &[i64; 4]) -> Order {
    let mut rng = rng_for(seed, ORDER_STREAM, index);
    let n = index + 1;
    let customer = (customers > 0 && chance(&mut rng, 900))
        .then(|| generate_customer(seed, rng.gen_range(0..customers as u64), bulk));
    let (created_ms, updated_ms) = times(&mut rng, bulk);
    let financial = match rng.gen_range(0..100) {
        0..60 => OrderDisplayFinancialStatus::Paid,
        60..72 => OrderDisplayFinancialStatus::Pending,
        72..80 => OrderDisplayFinancialStatus::Authorized,
        80..88 => OrderDisplayFinancialStatus::PartiallyPaid,
        88..94 => OrderDisplayFinancialStatus::Refunded,
        94..97 => OrderDisplayFinancialStatus::PartiallyRefunded,
        _ => OrderDisplayFinancialStatus::Voided,
    };
    let fulfillment = match rng.gen_range(0..10) {
        0..5 => OrderDisplayFulfillmentStatus::Fulfilled,
        5..8 => OrderDisplayFulfillmentStatus::Unfulfilled,
        8 => OrderDisplayFulfillmentStatus::PartiallyFulfilled,
        _ => OrderDisplayFulfillmentStatus::OnHold,
    };
    let email = customer.as_ref().map_or_else(
        || format!("guest{n}@{}", pick(&mut rng, EMAIL_DOMAINS)),
        |c| c.email.clone(),
    );
    Order {
        id: ORDER_ID_BASE + n,
        name: format!("#{}", 1000 + n),
        email,
        customer_id: customer.map(|c| c.id),
        financial,
        fulfillment,
        total_cents: rng.gen_range(500..50_000),
        note: None,
        created_ms,
        updated_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_complete() {
        let a = ShopData::generate(42, 100, 100, 100);
        let b = ShopData::generate(42, 40, 10, 100);
        assert_eq!(a.products.len(), 100);
        for (id, p) in &b.products {
            assert_eq!(a.products.get(id), Some(p));
        }
        assert_eq!(a.locations.len(), 2);
        for p in a.products.values() {
            assert!((1..=3).contains(&p.variants.len()));
            assert!(p.created_ms <= p.updated_ms && p.updated_ms <= SEED_BASE_MS);
            assert_eq!(p.updated_ms % 1000, 0);
            for v in a.product_variants(p) {
                let item = &a.items[&v.inventory_item_id];
                assert_eq!(item.variant_id, v.id);
                assert_eq!(a.item_levels(item.id).len(), 2);
            }
        }
        assert!(a.products.keys().all(|&id| id > 1 << 53));
        let customers: Vec<u64> = a.orders.values().filter_map(|o| o.customer_id).collect();
        assert!(customers.iter().all(|id| a.customers.contains_key(id)));
    }

    #[test]
    fn edits_and_deletes() {
        let mut data = ShopData::generate(42, 5, 3, 3);
        let first = PRODUCT_ID_BASE + 1;
        assert_eq!(
            data.edit(Resource::Products, &[first, 42], SEED_BASE_MS + 1_500),
            [first]
        );
        let p = &data.products[&first];
        assert_eq!(p.updated_ms, SEED_BASE_MS + 1_000);
        assert!(p.title().ends_with(" (rev 1)"));
        let level = *data.levels.keys().next().unwrap_or(&0);
        let item = data.levels[&level].item_id;
        data.edit(Resource::InventoryLevels, &[level], SEED_BASE_MS + 9_000);
        assert_eq!(data.items[&item].updated_ms, SEED_BASE_MS + 9_000);
        let variants = data.products[&first].variants.len();
        let levels = data.levels.len();
        assert!(data.delete(Resource::Products, first));
        assert!(!data.delete(Resource::Products, first));
        assert_eq!(data.levels.len(), levels - 2 * variants);
    }
}
