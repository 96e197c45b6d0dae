//! The GraphQL Admin API schema: the subset of Shopify's real schema a poller needs, with
//! Shopify's type, field, argument and enum names, so queries written against the real API
//! run here unchanged.
//!
//! Query fields: `products`, `orders`, `customers`, `inventoryItems`, `locations`
//! (connections with `first`/`after`/`last`/`before`/`reverse`, plus `query` and `sortKey`
//! where Shopify has them), `product`, `order`, `customer`, `inventoryItem`,
//! `inventoryLevel`, `location` (by `id`), `shop`, and the webhook subscriptions
//! (`webhookSubscriptions`, `webhookSubscription`). Mutations: `webhookSubscriptionCreate`,
//! `webhookSubscriptionUpdate`, `webhookSubscriptionDelete` (see [`crate::shopify::webhooks`]).
//!
//! Connections have `nodes`, `edges { node cursor }` and
//! `pageInfo { hasNextPage hasPreviousPage startCursor endCursor }`. Results are ordered by
//! `(sort key, id)`, so pagination is stable even when many records share an `updatedAt`;
//! cursors are opaque base64 and remember the sort key they were issued for. `first` or
//! `last` is required and at most 250, as at Shopify.

use std::sync::{Arc, Mutex};

use async_graphql::parser::parse_query;
use async_graphql::{
    Context, EmptySubscription, Enum, Error, InputValueError, InputValueResult, Object, Result,
    Scalar, ScalarType, Schema, SimpleObject, Value as GqlValue, ID,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::shopify::bulk;
use crate::shopify::cost;
use crate::shopify::data::{
    Collection, Customer, InventoryItem, InventoryLevel, Location, Order,
    OrderDisplayFinancialStatus, OrderDisplayFulfillmentStatus, Product, ProductStatus, ShopData,
    Variant,
};
use crate::shopify::search::{FieldValue, Search};
use crate::shopify::webhooks::{
    self, SubscriptionMutations, Url, WebhookSubscriptionConnection, WebhookSubscriptionFormat,
    WebhookSubscriptionNode, WebhookSubscriptionTopic,
};
use crate::state::{lock, SharedState};
use crate::time::format_secs;

/// The mutation root: subscriptions and bulk operations, and the writes.
#[derive(async_graphql::MergedObject, Clone, Copy, Debug, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    SubscriptionMutations,
    crate::shopify::writes::WriteMutations,
);

/// The sandbox's Admin API schema.
pub type ShopifySchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Builds the schema.
pub fn build_schema() -> ShopifySchema {
    Schema::build(QueryRoot, MutationRoot::default(), EmptySubscription).finish()
}

/// The schema's root fields (queries and mutations): the names `shopify.graphql.<field>`
/// keys accept.
pub const QUERY_FIELDS: &[&str] = &[
    "products",
    "product",
    "orders",
    "order",
    "customers",
    "customer",
    "collections",
    "collection",
    "inventoryItems",
    "inventoryItem",
    "inventoryLevel",
    "locations",
    "location",
    "shop",
    "webhookSubscriptions",
    "webhookSubscription",
    "webhookSubscriptionCreate",
    "webhookSubscriptionUpdate",
    "webhookSubscriptionDelete",
    "productSet",
    "productDelete",
    "inventorySetQuantities",
    "bulkOperationRunQuery",
    "bulkOperationCancel",
    "currentBulkOperation",
    "bulkOperation",
];

/// Shopify's cap on `first`/`last`.
pub const MAX_PAGE_SIZE: i32 = 250;

/// What every resolver can reach during one request.
#[derive(Debug)]
pub struct RequestData {
    /// The sandbox.
    pub state: SharedState,
    /// The shop in the URL (canonical form).
    pub shop: String,
    /// `extensions.search` entries (warnings about ignored search terms); the handler
    /// keeps a clone to read them after execution.
    pub search: Arc<Mutex<Vec<Value>>>,
    /// A bulk operation's execution: connections are unbounded ([`Window::unbounded`]).
    pub bulk: bool,
    /// `http://host:port` the request came to (where bulk results are served).
    pub origin: String,
    /// The access scopes of the request's token (`None`: a sandbox control, which may do
    /// anything).
    pub scopes: Option<String>,
}

/// Refuses a field the request's token has no `scope` for, as Shopify does: a top-level
/// `ACCESS_DENIED` error (<https://shopify.dev/docs/api/usage/access-scopes>).
pub(crate) fn require_scope(ctx: &Context<'_>, field: &str, scope: &str) -> Result<()> {
    let granted = request_data(ctx)?
        .scopes
        .as_deref()
        .is_none_or(|scopes| scopes.split(',').any(|s| s.trim() == scope));
    if granted {
        return Ok(());
    }
    use async_graphql::ErrorExtensions;
    Err(async_graphql::Error::new(format!(
        "Access denied for {field} field. Required access: `{scope}` access scope."
    ))
    .extend_with(|_, e| {
        e.set("code", "ACCESS_DENIED");
        e.set(
            "documentation",
            "https://shopify.dev/api/usage/access-scopes",
        );
        e.set("requiredAccess", format!("`{scope}` access scope."));
    }))
}

pub(crate) fn request_data<'a>(ctx: &Context<'a>) -> Result<&'a RequestData> {
    ctx.data::<RequestData>()
}

/// Runs `f` with the shop's data read-locked.
fn with_data<T>(ctx: &Context<'_>, f: impl FnOnce(&ShopData) -> T) -> Result<T> {
    let rd = request_data(ctx)?;
    Ok(rd.state.shopify.read_shop(Some(&rd.shop), f))
}

/// The top-level fields a request body asks for (`products`, ...): empty if the body or
/// its query cannot be parsed. Accepts JSON bodies and raw `application/graphql` ones.
pub fn root_fields(body: &[u8]) -> Vec<String> {
    let Some(request) = GraphqlBody::parse(body) else {
        return Vec::new();
    };
    let Ok(doc) = parse_query(&request.query) else {
        return Vec::new();
    };
    cost::operation(&doc, request.operation_name.as_deref())
        .map(|op| cost::top_level_fields(&doc, op))
        .unwrap_or_default()
}

/// A GraphQL request body.
#[derive(Debug, Clone, Deserialize)]
pub struct GraphqlBody {
    /// The document.
    pub query: String,
    /// Which operation to run.
    #[serde(default, rename = "operationName")]
    pub operation_name: Option<String>,
    /// Variables (an object or null).
    #[serde(default)]
    pub variables: Option<Value>,
}

impl GraphqlBody {
    /// JSON `{"query","variables","operationName"}`, or a raw query document (Shopify
    /// also accepts `Content-Type: application/graphql`).
    pub fn parse(body: &[u8]) -> Option<Self> {
        if let Ok(request) = serde_json::from_slice::<Self>(body) {
            return Some(request);
        }
        let text = std::str::from_utf8(body).ok()?.trim();
        if text.is_empty() || serde_json::from_str::<Value>(text).is_ok() {
            return None;
        }
        Some(Self {
            query: text.to_owned(),
            operation_name: None,
            variables: None,
        })
    }
}

// ----- scalars -----

/// `DateTime`: ISO 8601 in UTC, whole seconds (`2025-03-01T12:34:56Z`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateTime(pub String);

#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: GqlValue) -> InputValueResult<Self> {
        match value {
            GqlValue::String(s) => Ok(Self(s)),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> GqlValue {
        GqlValue::String(self.0.clone())
    }
}

/// `Decimal`: a decimal number as a string (`"19.99"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decimal(pub String);

#[Scalar(name = "Decimal")]
impl ScalarType for Decimal {
    fn parse(value: GqlValue) -> InputValueResult<Self> {
        match value {
            GqlValue::String(s) => Ok(Self(s)),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> GqlValue {
        GqlValue::String(self.0.clone())
    }
}

/// `Money`: an amount as a string (`"19.99"`), as `ProductVariant.price` returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Money(pub String);

#[Scalar(name = "Money")]
impl ScalarType for Money {
    fn parse(value: GqlValue) -> InputValueResult<Self> {
        match value {
            GqlValue::String(s) => Ok(Self(s)),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> GqlValue {
        GqlValue::String(self.0.clone())
    }
}

/// `UnsignedInt64`: serialised as a string, so ids above 2^53 survive JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsignedInt64(pub u64);

#[Scalar(name = "UnsignedInt64")]
impl ScalarType for UnsignedInt64 {
    fn parse(value: GqlValue) -> InputValueResult<Self> {
        match &value {
            GqlValue::String(s) => s
                .parse()
                .map(Self)
                .map_err(|_| InputValueError::expected_type(value.clone())),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> GqlValue {
        GqlValue::String(self.0.to_string())
    }
}

pub(crate) fn time(ms: i64) -> DateTime {
    DateTime(format_secs(ms))
}

pub(crate) fn amount(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents.rem_euclid(100))
}

/// `gid://shopify/<Type>/<id>`.
pub fn gid(ty: &str, id: u64) -> ID {
    ID(format!("gid://shopify/{ty}/{id}"))
}

/// The numeric id in `gid://shopify/<ty>/<id>[?...]`, or a bare number.
pub fn parse_gid(ty: &str, text: &str) -> Option<u64> {
    let rest = match text.strip_prefix("gid://shopify/") {
        Some(rest) => rest.strip_prefix(ty)?.strip_prefix('/')?,
        None => text,
    };
    rest.split('?').next()?.parse().ok()
}

pub(crate) fn snake(debug: impl std::fmt::Debug) -> String {
    let mut out = String::new();
    for (i, c) in format!("{debug:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

// ----- enums -----

/// `CurrencyCode` (the sandbox's shop sells in USD).
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CurrencyCode {
    /// US dollars.
    Usd,
}

/// `ProductSortKeys`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProductSortKeys {
    /// Creation time.
    CreatedAt,
    /// Id (the default).
    Id,
    /// Total inventory (not implemented).
    InventoryTotal,
    /// Product type.
    ProductType,
    /// Publication time (not implemented).
    PublishedAt,
    /// Relevance (the sandbox orders by id).
    Relevance,
    /// Title.
    Title,
    /// Last update time.
    UpdatedAt,
    /// Vendor.
    Vendor,
}

/// `OrderSortKeys`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderSortKeys {
    /// Creation time.
    CreatedAt,
    /// Customer name (not implemented).
    CustomerName,
    /// Destination (not implemented).
    Destination,
    /// Financial status (not implemented).
    FinancialStatus,
    /// Fulfillment status (not implemented).
    FulfillmentStatus,
    /// Id (the default).
    Id,
    /// Order number.
    OrderNumber,
    /// PO number (not implemented).
    PoNumber,
    /// Processing time (= creation time here).
    ProcessedAt,
    /// Relevance (the sandbox orders by id).
    Relevance,
    /// Total item quantity (not implemented).
    TotalItemsQuantity,
    /// Total price.
    TotalPrice,
    /// Last update time.
    UpdatedAt,
}

/// `CustomerSortKeys`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CustomerSortKeys {
    /// Creation time.
    CreatedAt,
    /// Id (the default).
    Id,
    /// Location (not implemented).
    Location,
    /// Name.
    Name,
    /// Relevance (the sandbox orders by id).
    Relevance,
    /// Last update time.
    UpdatedAt,
}

/// `CollectionSortKeys`
/// (<https://shopify.dev/docs/api/admin-graphql/latest/enums/CollectionSortKeys>).
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CollectionSortKeys {
    /// Id (the default).
    Id,
    /// Relevance (the sandbox orders by id).
    Relevance,
    /// Title.
    Title,
    /// Last update time.
    UpdatedAt,
}

/// `LocationSortKeys`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocationSortKeys {
    /// Id.
    Id,
    /// Name (the default at Shopify).
    Name,
    /// Relevance (the sandbox orders by id).
    Relevance,
}

fn unsupported_sort(sort: impl std::fmt::Debug) -> Error {
    Error::new(format!(
        "sortKey {} is valid at Shopify but not implemented by the sandbox",
        snake(sort).to_uppercase()
    ))
}

// ----- pagination -----

/// A sort key value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum SortVal {
    Int(i64),
    Str(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct CursorData {
    /// Sort key name the cursor belongs to.
    s: String,
    k: SortVal,
    id: u64,
}

fn encode_cursor(sort: &str, key: &SortVal, id: u64) -> String {
    let data = CursorData {
        s: sort.to_owned(),
        k: key.clone(),
        id,
    };
    STANDARD.encode(serde_json::to_vec(&data).unwrap_or_default())
}

fn decode_cursor(sort: &str, text: &str) -> Result<(SortVal, u64)> {
    let invalid = || Error::new(format!("Invalid cursor '{text}' for sort key {sort}"));
    let bytes = STANDARD.decode(text.trim()).map_err(|_| invalid())?;
    let data: CursorData = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if data.s != sort {
        return Err(invalid());
    }
    Ok((data.k, data.id))
}

/// `first`/`after`/`last`/`before`/`reverse`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Window {
    pub(crate) first: Option<i32>,
    pub(crate) after: Option<String>,
    pub(crate) last: Option<i32>,
    pub(crate) before: Option<String>,
    pub(crate) reverse: bool,
    /// Every record, with no `first`/`last` needed and no page-size limit (bulk operations).
    pub(crate) unbounded: bool,
}

/// `PageInfo`.
#[derive(SimpleObject, Debug, Clone, Default)]
pub struct PageInfo {
    /// Whether more records follow.
    pub has_next_page: bool,
    /// Whether records precede.
    pub has_previous_page: bool,
    /// Cursor of the first record returned.
    pub start_cursor: Option<String>,
    /// Cursor of the last record returned.
    pub end_cursor: Option<String>,
}

/// Orders `keys` by `(key, id)` (reversed if asked) and cuts out the window: the chosen
/// ids with their cursors, and the page info.
fn paginate(
    sort: &str,
    mut keys: Vec<(SortVal, u64)>,
    window: &Window,
) -> Result<(Vec<(u64, String)>, PageInfo)> {
    let n = match (window.first, window.last) {
        _ if window.unbounded => MAX_PAGE_SIZE,
        (Some(n), None) | (None, Some(n)) => n,
        (None, None) => return Err(Error::new("you must provide one of first or last")),
        (Some(_), Some(_)) => return Err(Error::new("first and last cannot be used together")),
    };
    if !(0..=MAX_PAGE_SIZE).contains(&n) {
        return Err(Error::new(format!(
            "The page size must be between 0 and {MAX_PAGE_SIZE}, got {n}"
        )));
    }
    let n = if window.unbounded {
        usize::MAX
    } else {
        usize::try_from(n).unwrap_or(0)
    };
    keys.sort();
    if window.reverse {
        keys.reverse();
    }
    let reverse = window.reverse;
    let order = |a: &(SortVal, u64), b: &(SortVal, u64)| {
        if reverse {
            b.cmp(a)
        } else {
            a.cmp(b)
        }
    };
    let len = keys.len();
    let start = match &window.after {
        None => 0,
        Some(c) => {
            let c = decode_cursor(sort, c)?;
            keys.iter()
                .position(|k| order(k, &c).is_gt())
                .unwrap_or(len)
        }
    };
    let end = match &window.before {
        None => len,
        Some(c) => {
            let c = decode_cursor(sort, c)?;
            keys.iter()
                .position(|k| !order(k, &c).is_lt())
                .unwrap_or(len)
        }
    }
    .max(start);
    let (lo, hi) = if window.first.is_some() || window.unbounded {
        (start, start.saturating_add(n).min(end))
    } else {
        (end.saturating_sub(n).max(start), end)
    };
    let page: Vec<(u64, String)> = keys[lo..hi]
        .iter()
        .map(|(k, id)| (*id, encode_cursor(sort, k, *id)))
        .collect();
    let info = PageInfo {
        has_next_page: hi < len,
        has_previous_page: lo > 0,
        start_cursor: page.first().map(|(_, c)| c.clone()),
        end_cursor: page.last().map(|(_, c)| c.clone()),
    };
    Ok((page, info))
}

macro_rules! connection {
    ($conn:ident, $edge:ident, $node:ty, $what:literal) => {
        #[doc = concat!("A page of ", $what, ".")]
        #[derive(SimpleObject, Debug, Clone)]
        pub struct $conn {
            /// The records.
            pub nodes: Vec<$node>,
            /// The records with their cursors.
            pub edges: Vec<$edge>,
            /// Where the page lies.
            pub page_info: PageInfo,
        }

        #[doc = concat!("One of ", $what, " with its cursor.")]
        #[derive(SimpleObject, Debug, Clone)]
        pub struct $edge {
            /// The record.
            pub node: $node,
            /// Its cursor.
            pub cursor: String,
        }

        impl $conn {
            fn from_page(items: Vec<($node, String)>, page_info: PageInfo) -> Self {
                Self {
                    nodes: items.iter().map(|(node, _)| node.clone()).collect(),
                    edges: items
                        .into_iter()
                        .map(|(node, cursor)| $edge { node, cursor })
                        .collect(),
                    page_info,
                }
            }
        }
    };
}

connection!(ProductConnection, ProductEdge, ProductNode, "products");
connection!(
    ProductVariantConnection,
    ProductVariantEdge,
    VariantNode,
    "product variants"
);
connection!(OrderConnection, OrderEdge, OrderNode, "orders");
connection!(CustomerConnection, CustomerEdge, CustomerNode, "customers");
connection!(
    InventoryItemConnection,
    InventoryItemEdge,
    ItemNode,
    "inventory items"
);
connection!(
    InventoryLevelConnection,
    InventoryLevelEdge,
    LevelNode,
    "inventory levels"
);
connection!(LocationConnection, LocationEdge, LocationNode, "locations");
connection!(
    CollectionConnection,
    CollectionEdge,
    CollectionNode,
    "collections"
);

/// Lists `records` matching `search`, sorted by `key`, and cuts the window; `node` makes
/// the GraphQL objects.
pub(crate) fn list<R, N>(
    sort: &str,
    records: impl Iterator<Item = R>,
    id: impl Fn(&R) -> u64,
    key: impl Fn(&R) -> SortVal,
    node: impl Fn(u64) -> Option<N>,
    window: &Window,
) -> Result<(Vec<(N, String)>, PageInfo)> {
    let keys = records.map(|r| (key(&r), id(&r))).collect();
    let (page, info) = paginate(sort, keys, window)?;
    let items = page
        .into_iter()
        .filter_map(|(id, cursor)| node(id).map(|n| (n, cursor)))
        .collect();
    Ok((items, info))
}

fn note_search(ctx: &Context<'_>, field: &str, query: Option<&str>, search: &Search) {
    if search.warnings().is_empty() {
        return;
    }
    if let Ok(rd) = request_data(ctx) {
        lock(&rd.search).push(json!({
            "path": [field],
            "query": query.unwrap_or(""),
            "warnings": search.warnings(),
        }));
    }
}

// ----- objects -----

/// `Product`.
#[derive(Debug, Clone)]
pub struct ProductNode(pub Product);

#[Object(name = "Product")]
impl ProductNode {
    async fn id(&self) -> ID {
        gid("Product", self.0.id)
    }
    async fn legacy_resource_id(&self) -> UnsignedInt64 {
        UnsignedInt64(self.0.id)
    }
    async fn title(&self) -> String {
        self.0.title()
    }
    async fn handle(&self) -> &str {
        &self.0.handle
    }
    async fn status(&self) -> ProductStatus {
        self.0.status
    }
    async fn vendor(&self) -> &str {
        &self.0.vendor
    }
    async fn product_type(&self) -> &str {
        &self.0.product_type
    }
    async fn created_at(&self) -> DateTime {
        time(self.0.created_ms)
    }
    async fn updated_at(&self) -> DateTime {
        time(self.0.updated_ms)
    }
    /// Sum of the variants' `inventoryQuantity`.
    async fn total_inventory(&self, ctx: &Context<'_>) -> Result<i32> {
        with_data(ctx, |data| {
            let total: i64 = data
                .product_variants(&self.0)
                .iter()
                .map(|v| data.item_available(v.inventory_item_id))
                .sum();
            i32::try_from(total).unwrap_or(i32::MAX)
        })
    }
    async fn variants(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        #[graphql(default)] reverse: bool,
    ) -> Result<ProductVariantConnection> {
        let window = Window {
            first,
            after,
            last,
            before,
            reverse,
            unbounded: request_data(ctx)?.bulk,
        };
        let (items, info) = with_data(ctx, |data| {
            let variants = data.product_variants(&self.0);
            list(
                "POSITION",
                variants.iter().enumerate(),
                |(_, v)| v.id,
                |(i, _)| SortVal::Int(i64::try_from(*i).unwrap_or(0)),
                |id| data.variants.get(&id).cloned().map(VariantNode),
                &window,
            )
        })??;
        Ok(ProductVariantConnection::from_page(items, info))
    }
}

/// `ProductVariant`.
#[derive(Debug, Clone)]
pub struct VariantNode(pub Variant);

#[Object(name = "ProductVariant")]
impl VariantNode {
    async fn id(&self) -> ID {
        gid("ProductVariant", self.0.id)
    }
    async fn legacy_resource_id(&self) -> UnsignedInt64 {
        UnsignedInt64(self.0.id)
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn sku(&self) -> Option<&str> {
        Some(&self.0.sku)
    }
    async fn price(&self) -> Money {
        Money(amount(self.0.price_cents))
    }
    /// Sum of `available` over the item's levels.
    async fn inventory_quantity(&self, ctx: &Context<'_>) -> Result<Option<i32>> {
        with_data(ctx, |data| {
            i32::try_from(data.item_available(self.0.inventory_item_id)).ok()
        })
    }
    async fn created_at(&self) -> DateTime {
        time(self.0.created_ms)
    }
    async fn updated_at(&self) -> DateTime {
        time(self.0.updated_ms)
    }
    async fn inventory_item(&self, ctx: &Context<'_>) -> Result<ItemNode> {
        with_data(ctx, |data| {
            data.items
                .get(&self.0.inventory_item_id)
                .cloned()
                .map(ItemNode)
        })?
        .ok_or_else(|| Error::new("inventory item not found"))
    }
    async fn product(&self, ctx: &Context<'_>) -> Result<ProductNode> {
        with_data(ctx, |data| {
            data.products
                .get(&self.0.product_id)
                .cloned()
                .map(ProductNode)
        })?
        .ok_or_else(|| Error::new("product not found"))
    }
}

/// `InventoryItem`.
#[derive(Debug, Clone)]
pub struct ItemNode(pub InventoryItem);

#[Object(name = "InventoryItem")]
impl ItemNode {
    async fn id(&self) -> ID {
        gid("InventoryItem", self.0.id)
    }
    async fn legacy_resource_id(&self) -> UnsignedInt64 {
        UnsignedInt64(self.0.id)
    }
    async fn sku(&self) -> Option<&str> {
        Some(&self.0.sku)
    }
    async fn tracked(&self) -> bool {
        self.0.tracked
    }
    async fn created_at(&self) -> DateTime {
        time(self.0.created_ms)
    }
    async fn updated_at(&self) -> DateTime {
        time(self.0.updated_ms)
    }
    async fn variant(&self, ctx: &Context<'_>) -> Result<VariantNode> {
        with_data(ctx, |data| {
            data.variants
                .get(&self.0.variant_id)
                .cloned()
                .map(VariantNode)
        })?
        .ok_or_else(|| Error::new("variant not found"))
    }
    async fn inventory_levels(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        #[graphql(default)] reverse: bool,
    ) -> Result<InventoryLevelConnection> {
        let window = Window {
            first,
            after,
            last,
            before,
            reverse,
            unbounded: request_data(ctx)?.bulk,
        };
        let (items, info) = with_data(ctx, |data| {
            list(
                "ID",
                data.item_levels(self.0.id).into_iter(),
                |l| l.id,
                |_| SortVal::Int(0),
                |id| data.levels.get(&id).cloned().map(LevelNode),
                &window,
            )
        })??;
        Ok(InventoryLevelConnection::from_page(items, info))
    }
    async fn inventory_level(
        &self,
        ctx: &Context<'_>,
        location_id: ID,
    ) -> Result<Option<LevelNode>> {
        let location = parse_gid("Location", &location_id);
        with_data(ctx, |data| {
            data.item_levels(self.0.id)
                .into_iter()
                .find(|l| Some(l.location_id) == location)
                .cloned()
                .map(LevelNode)
        })
    }
}

/// `InventoryQuantity`.
#[derive(SimpleObject, Debug, Clone)]
pub struct InventoryQuantity {
    /// `available`, `on_hand`, `committed`, `incoming`, ...
    pub name: String,
    /// The quantity.
    pub quantity: i32,
    /// When the level last changed.
    pub updated_at: Option<DateTime>,
}

/// `InventoryLevel`.
#[derive(Debug, Clone)]
pub struct LevelNode(pub InventoryLevel);

#[Object(name = "InventoryLevel")]
impl LevelNode {
    /// `gid://shopify/InventoryLevel/<id>?inventory_item_id=<item id>`, Shopify's form.
    async fn id(&self) -> ID {
        ID(format!(
            "gid://shopify/InventoryLevel/{}?inventory_item_id={}",
            self.0.id, self.0.item_id
        ))
    }
    async fn created_at(&self) -> DateTime {
        time(self.0.created_ms)
    }
    async fn updated_at(&self) -> DateTime {
        time(self.0.updated_ms)
    }
    async fn location(&self, ctx: &Context<'_>) -> Result<LocationNode> {
        with_data(ctx, |data| {
            data.locations
                .get(&self.0.location_id)
                .cloned()
                .map(LocationNode)
        })?
        .ok_or_else(|| Error::new("location not found"))
    }
    async fn item(&self, ctx: &Context<'_>) -> Result<ItemNode> {
        with_data(ctx, |data| {
            data.items.get(&self.0.item_id).cloned().map(ItemNode)
        })?
        .ok_or_else(|| Error::new("inventory item not found"))
    }
    async fn quantities(&self, names: Vec<String>) -> Result<Vec<InventoryQuantity>> {
        names
            .into_iter()
            .map(|name| {
                let quantity = self.0.quantity(&name).ok_or_else(|| {
                    Error::new(format!("The quantity name '{name}' is not valid."))
                })?;
                Ok(InventoryQuantity {
                    name,
                    quantity: i32::try_from(quantity).unwrap_or(i32::MAX),
                    updated_at: Some(time(self.0.updated_ms)),
                })
            })
            .collect()
    }
}

/// `Location`.
#[derive(Debug, Clone)]
pub struct LocationNode(pub Location);

#[Object(name = "Location")]
impl LocationNode {
    async fn id(&self) -> ID {
        gid("Location", self.0.id)
    }
    async fn legacy_resource_id(&self) -> UnsignedInt64 {
        UnsignedInt64(self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn is_active(&self) -> bool {
        true
    }
}

/// `MoneyV2`.
#[derive(SimpleObject, Debug, Clone)]
pub struct MoneyV2 {
    /// Decimal amount (`"19.99"`).
    pub amount: Decimal,
    /// Currency.
    pub currency_code: CurrencyCode,
}

/// `MoneyBag`.
#[derive(SimpleObject, Debug, Clone)]
pub struct MoneyBag {
    /// In the shop's currency.
    pub shop_money: MoneyV2,
    /// In the customer's currency (the same here).
    pub presentment_money: MoneyV2,
}

/// `Order`.
#[derive(Debug, Clone)]
pub struct OrderNode(pub Order);

#[Object(name = "Order")]
impl OrderNode {
    async fn id(&self) -> ID {
        gid("Order", self.0.id)
    }
    async fn legacy_resource_id(&self) -> UnsignedInt64 {
        UnsignedInt64(self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn email(&self) -> Option<&str> {
        Some(&self.0.email)
    }
    async fn note(&self) -> Option<&str> {
        self.0.note.as_deref()
    }
    async fn created_at(&self) -> DateTime {
        time(self.0.created_ms)
    }
    async fn processed_at(&self) -> DateTime {
        time(self.0.created_ms)
    }
    async fn updated_at(&self) -> DateTime {
        time(self.0.updated_ms)
    }
    async fn display_financial_status(&self) -> Option<OrderDisplayFinancialStatus> {
        Some(self.0.financial)
    }
    async fn display_fulfillment_status(&self) -> OrderDisplayFulfillmentStatus {
        self.0.fulfillment
    }
    async fn currency_code(&self) -> CurrencyCode {
        CurrencyCode::Usd
    }
    async fn total_price_set(&self) -> MoneyBag {
        let money = MoneyV2 {
            amount: Decimal(amount(self.0.total_cents)),
            currency_code: CurrencyCode::Usd,
        };
        MoneyBag {
            shop_money: money.clone(),
            presentment_money: money,
        }
    }
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<CustomerNode>> {
        with_data(ctx, |data| {
            self.0
                .customer_id
                .and_then(|id| data.customers.get(&id))
                .cloned()
                .map(CustomerNode)
        })
    }
}

/// `Customer`.
#[derive(Debug, Clone)]
pub struct CustomerNode(pub Customer);

#[Object(name = "Customer")]
impl CustomerNode {
    async fn id(&self) -> ID {
        gid("Customer", self.0.id)
    }
    async fn legacy_resource_id(&self) -> UnsignedInt64 {
        UnsignedInt64(self.0.id)
    }
    async fn email(&self) -> Option<&str> {
        Some(&self.0.email)
    }
    async fn first_name(&self) -> Option<&str> {
        Some(&self.0.first_name)
    }
    async fn last_name(&self) -> Option<&str> {
        Some(&self.0.last_name)
    }
    async fn display_name(&self) -> String {
        format!("{} {}", self.0.first_name, self.0.last_name)
    }
    async fn note(&self) -> Option<&str> {
        self.0.note.as_deref()
    }
    async fn created_at(&self) -> DateTime {
        time(self.0.created_ms)
    }
    async fn updated_at(&self) -> DateTime {
        time(self.0.updated_ms)
    }
}

/// `Collection` (<https://shopify.dev/docs/api/admin-graphql/latest/objects/Collection>).
#[derive(Debug, Clone)]
pub struct CollectionNode(pub Collection);

#[Object(name = "Collection")]
impl CollectionNode {
    async fn id(&self) -> ID {
        gid("Collection", self.0.id)
    }
    async fn legacy_resource_id(&self) -> UnsignedInt64 {
        UnsignedInt64(self.0.id)
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn handle(&self) -> &str {
        &self.0.handle
    }
    async fn updated_at(&self) -> DateTime {
        time(self.0.updated_ms)
    }
}

/// `Shop`.
#[derive(Debug, Clone)]
pub struct ShopNode {
    domain: String,
}

#[Object(name = "Shop")]
impl ShopNode {
    async fn name(&self) -> String {
        self.domain
            .strip_suffix(crate::shopify::SHOP_SUFFIX)
            .unwrap_or(&self.domain)
            .to_owned()
    }
    async fn myshopify_domain(&self) -> &str {
        &self.domain
    }
    async fn currency_code(&self) -> CurrencyCode {
        CurrencyCode::Usd
    }
}

// ----- search fields -----

const PRODUCT_SEARCH: &[&str] = &[
    "id",
    "created_at",
    "updated_at",
    "title",
    "handle",
    "status",
    "vendor",
    "product_type",
];
const ORDER_SEARCH: &[&str] = &[
    "id",
    "created_at",
    "processed_at",
    "updated_at",
    "name",
    "email",
    "financial_status",
    "fulfillment_status",
    "customer_id",
];
const CUSTOMER_SEARCH: &[&str] = &[
    "id",
    "created_at",
    "updated_at",
    "email",
    "first_name",
    "last_name",
];
const ITEM_SEARCH: &[&str] = &["id", "created_at", "updated_at", "sku"];
const COLLECTION_SEARCH: &[&str] = &["id", "updated_at", "title", "handle"];

fn collection_field(c: &Collection, field: &str) -> Option<FieldValue> {
    match field {
        "id" => Some(FieldValue::Int(c.id)),
        "updated_at" => Some(FieldValue::Time(c.updated_ms)),
        "title" => text(&c.title),
        "handle" => text(&c.handle),
        _ => None,
    }
}
const LOCATION_SEARCH: &[&str] = &["id", "name"];

fn text(s: &str) -> Option<FieldValue> {
    Some(FieldValue::Text(s.to_owned()))
}

fn product_field(p: &Product, field: &str) -> Option<FieldValue> {
    match field {
        "id" => Some(FieldValue::Int(p.id)),
        "created_at" => Some(FieldValue::Time(p.created_ms)),
        "updated_at" => Some(FieldValue::Time(p.updated_ms)),
        "title" => Some(FieldValue::Text(p.title())),
        "handle" => text(&p.handle),
        "status" => Some(FieldValue::Text(snake(p.status))),
        "vendor" => text(&p.vendor),
        "product_type" => text(&p.product_type),
        _ => None,
    }
}

fn order_field(o: &Order, field: &str) -> Option<FieldValue> {
    match field {
        "id" => Some(FieldValue::Int(o.id)),
        "created_at" | "processed_at" => Some(FieldValue::Time(o.created_ms)),
        "updated_at" => Some(FieldValue::Time(o.updated_ms)),
        "name" => text(&o.name),
        "email" => text(&o.email),
        "financial_status" => Some(FieldValue::Text(snake(o.financial))),
        "fulfillment_status" => Some(FieldValue::Text(snake(o.fulfillment))),
        "customer_id" => o.customer_id.map(FieldValue::Int),
        _ => None,
    }
}

fn customer_field(c: &Customer, field: &str) -> Option<FieldValue> {
    match field {
        "id" => Some(FieldValue::Int(c.id)),
        "created_at" => Some(FieldValue::Time(c.created_ms)),
        "updated_at" => Some(FieldValue::Time(c.updated_ms)),
        "email" => text(&c.email),
        "first_name" => text(&c.first_name),
        "last_name" => text(&c.last_name),
        _ => None,
    }
}

fn item_field(i: &InventoryItem, field: &str) -> Option<FieldValue> {
    match field {
        "id" => Some(FieldValue::Int(i.id)),
        "created_at" => Some(FieldValue::Time(i.created_ms)),
        "updated_at" => Some(FieldValue::Time(i.updated_ms)),
        "sku" => text(&i.sku),
        _ => None,
    }
}

// ----- query root -----

/// The query root.
#[derive(Debug, Clone, Copy)]
pub struct QueryRoot;

#[Object(name = "QueryRoot")]
impl QueryRoot {
    /// The shop's latest bulk operation ([`crate::shopify::bulk`]).
    async fn current_bulk_operation(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "type")] kind: Option<bulk::BulkOperationType>,
    ) -> Result<Option<bulk::BulkOperation>> {
        bulk::current(ctx, kind)
    }

    /// One of the shop's bulk operations.
    async fn bulk_operation(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<Option<bulk::BulkOperation>> {
        bulk::by_id(ctx, &id)
    }

    #[allow(clippy::too_many_arguments)]
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        #[graphql(default)] reverse: bool,
        sort_key: Option<ProductSortKeys>,
        query: Option<String>,
    ) -> Result<ProductConnection> {
        let window = Window {
            first,
            after,
            last,
            before,
            reverse,
            unbounded: request_data(ctx)?.bulk,
        };
        let sort = sort_key.unwrap_or(ProductSortKeys::Id);
        let key = |p: &&Product| -> Result<SortVal> {
            Ok(match sort {
                ProductSortKeys::Id | ProductSortKeys::Relevance => SortVal::Int(0),
                ProductSortKeys::CreatedAt => SortVal::Int(p.created_ms),
                ProductSortKeys::UpdatedAt => SortVal::Int(p.updated_ms),
                ProductSortKeys::Title => SortVal::Str(p.title().to_lowercase()),
                ProductSortKeys::Vendor => SortVal::Str(p.vendor.to_lowercase()),
                ProductSortKeys::ProductType => SortVal::Str(p.product_type.to_lowercase()),
                other => return Err(unsupported_sort(other)),
            })
        };
        let search = Search::parse(query.as_deref(), PRODUCT_SEARCH);
        note_search(ctx, "products", query.as_deref(), &search);
        let (items, info) = with_data(ctx, |data| {
            let mut matching = Vec::new();
            for p in data.products.values() {
                if search.matches(|f| product_field(p, f)) {
                    matching.push((key(&p)?, p.id));
                }
            }
            list(
                &snake(sort).to_uppercase(),
                matching.into_iter(),
                |(_, id)| *id,
                |(k, _)| k.clone(),
                |id| data.products.get(&id).cloned().map(ProductNode),
                &window,
            )
        })??;
        Ok(ProductConnection::from_page(items, info))
    }

    async fn product(&self, ctx: &Context<'_>, id: ID) -> Result<Option<ProductNode>> {
        let id = parse_gid("Product", &id);
        with_data(ctx, |data| {
            id.and_then(|id| data.products.get(&id))
                .cloned()
                .map(ProductNode)
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        #[graphql(default)] reverse: bool,
        sort_key: Option<OrderSortKeys>,
        query: Option<String>,
    ) -> Result<OrderConnection> {
        let window = Window {
            first,
            after,
            last,
            before,
            reverse,
            unbounded: request_data(ctx)?.bulk,
        };
        let sort = sort_key.unwrap_or(OrderSortKeys::Id);
        let key = |o: &Order| -> Result<SortVal> {
            Ok(match sort {
                OrderSortKeys::Id | OrderSortKeys::Relevance => SortVal::Int(0),
                OrderSortKeys::CreatedAt | OrderSortKeys::ProcessedAt => SortVal::Int(o.created_ms),
                OrderSortKeys::UpdatedAt => SortVal::Int(o.updated_ms),
                OrderSortKeys::OrderNumber => {
                    SortVal::Int(o.name.trim_start_matches('#').parse().unwrap_or(0))
                }
                OrderSortKeys::TotalPrice => SortVal::Int(o.total_cents),
                other => return Err(unsupported_sort(other)),
            })
        };
        let search = Search::parse(query.as_deref(), ORDER_SEARCH);
        note_search(ctx, "orders", query.as_deref(), &search);
        let (items, info) = with_data(ctx, |data| {
            let mut matching = Vec::new();
            for o in data.orders.values() {
                if search.matches(|f| order_field(o, f)) {
                    matching.push((key(o)?, o.id));
                }
            }
            list(
                &snake(sort).to_uppercase(),
                matching.into_iter(),
                |(_, id)| *id,
                |(k, _)| k.clone(),
                |id| data.orders.get(&id).cloned().map(OrderNode),
                &window,
            )
        })??;
        Ok(OrderConnection::from_page(items, info))
    }

    async fn order(&self, ctx: &Context<'_>, id: ID) -> Result<Option<OrderNode>> {
        let id = parse_gid("Order", &id);
        with_data(ctx, |data| {
            id.and_then(|id| data.orders.get(&id))
                .cloned()
                .map(OrderNode)
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn customers(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        #[graphql(default)] reverse: bool,
        sort_key: Option<CustomerSortKeys>,
        query: Option<String>,
    ) -> Result<CustomerConnection> {
        let window = Window {
            first,
            after,
            last,
            before,
            reverse,
            unbounded: request_data(ctx)?.bulk,
        };
        let sort = sort_key.unwrap_or(CustomerSortKeys::Id);
        let key = |c: &Customer| -> Result<SortVal> {
            Ok(match sort {
                CustomerSortKeys::Id | CustomerSortKeys::Relevance => SortVal::Int(0),
                CustomerSortKeys::CreatedAt => SortVal::Int(c.created_ms),
                CustomerSortKeys::UpdatedAt => SortVal::Int(c.updated_ms),
                CustomerSortKeys::Name => {
                    SortVal::Str(format!("{} {}", c.first_name, c.last_name).to_lowercase())
                }
                other => return Err(unsupported_sort(other)),
            })
        };
        let search = Search::parse(query.as_deref(), CUSTOMER_SEARCH);
        note_search(ctx, "customers", query.as_deref(), &search);
        let (items, info) = with_data(ctx, |data| {
            let mut matching = Vec::new();
            for c in data.customers.values() {
                if search.matches(|f| customer_field(c, f)) {
                    matching.push((key(c)?, c.id));
                }
            }
            list(
                &snake(sort).to_uppercase(),
                matching.into_iter(),
                |(_, id)| *id,
                |(k, _)| k.clone(),
                |id| data.customers.get(&id).cloned().map(CustomerNode),
                &window,
            )
        })??;
        Ok(CustomerConnection::from_page(items, info))
    }

    async fn customer(&self, ctx: &Context<'_>, id: ID) -> Result<Option<CustomerNode>> {
        let id = parse_gid("Customer", &id);
        with_data(ctx, |data| {
            id.and_then(|id| data.customers.get(&id))
                .cloned()
                .map(CustomerNode)
        })
    }

    /// <https://shopify.dev/docs/api/admin-graphql/latest/queries/collections>
    #[allow(clippy::too_many_arguments)]
    async fn collections(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        #[graphql(default)] reverse: bool,
        sort_key: Option<CollectionSortKeys>,
        query: Option<String>,
    ) -> Result<CollectionConnection> {
        let window = Window {
            first,
            after,
            last,
            before,
            reverse,
            unbounded: request_data(ctx)?.bulk,
        };
        let sort = sort_key.unwrap_or(CollectionSortKeys::Id);
        let search = Search::parse(query.as_deref(), COLLECTION_SEARCH);
        note_search(ctx, "collections", query.as_deref(), &search);
        let (items, info) = with_data(ctx, |data| {
            list(
                &snake(sort).to_uppercase(),
                data.collections
                    .values()
                    .filter(|c| search.matches(|f| collection_field(c, f))),
                |c| c.id,
                |c| match sort {
                    CollectionSortKeys::Id | CollectionSortKeys::Relevance => SortVal::Int(0),
                    CollectionSortKeys::Title => SortVal::Str(c.title.to_lowercase()),
                    CollectionSortKeys::UpdatedAt => SortVal::Int(c.updated_ms),
                },
                |id| data.collections.get(&id).cloned().map(CollectionNode),
                &window,
            )
        })??;
        Ok(CollectionConnection::from_page(items, info))
    }

    async fn collection(&self, ctx: &Context<'_>, id: ID) -> Result<Option<CollectionNode>> {
        let id = parse_gid("Collection", &id);
        with_data(ctx, |data| {
            id.and_then(|id| data.collections.get(&id))
                .cloned()
                .map(CollectionNode)
        })
    }

    /// Shopify's `inventoryItems` has no `sortKey`: the order is by id.
    #[allow(clippy::too_many_arguments)]
    async fn inventory_items(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        #[graphql(default)] reverse: bool,
        query: Option<String>,
    ) -> Result<InventoryItemConnection> {
        let window = Window {
            first,
            after,
            last,
            before,
            reverse,
            unbounded: request_data(ctx)?.bulk,
        };
        let search = Search::parse(query.as_deref(), ITEM_SEARCH);
        note_search(ctx, "inventoryItems", query.as_deref(), &search);
        let (items, info) = with_data(ctx, |data| {
            list(
                "ID",
                data.items
                    .values()
                    .filter(|i| search.matches(|f| item_field(i, f))),
                |i| i.id,
                |_| SortVal::Int(0),
                |id| data.items.get(&id).cloned().map(ItemNode),
                &window,
            )
        })??;
        Ok(InventoryItemConnection::from_page(items, info))
    }

    async fn inventory_item(&self, ctx: &Context<'_>, id: ID) -> Result<Option<ItemNode>> {
        let id = parse_gid("InventoryItem", &id);
        with_data(ctx, |data| {
            id.and_then(|id| data.items.get(&id)).cloned().map(ItemNode)
        })
    }

    async fn inventory_level(&self, ctx: &Context<'_>, id: ID) -> Result<Option<LevelNode>> {
        let id = parse_gid("InventoryLevel", &id);
        with_data(ctx, |data| {
            id.and_then(|id| data.levels.get(&id))
                .cloned()
                .map(LevelNode)
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn locations(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        #[graphql(default)] reverse: bool,
        sort_key: Option<LocationSortKeys>,
        query: Option<String>,
    ) -> Result<LocationConnection> {
        let window = Window {
            first,
            after,
            last,
            before,
            reverse,
            unbounded: request_data(ctx)?.bulk,
        };
        let sort = sort_key.unwrap_or(LocationSortKeys::Name);
        let search = Search::parse(query.as_deref(), LOCATION_SEARCH);
        note_search(ctx, "locations", query.as_deref(), &search);
        let (items, info) = with_data(ctx, |data| {
            list(
                &snake(sort).to_uppercase(),
                data.locations.values().filter(|l| {
                    search.matches(|f| match f {
                        "id" => Some(FieldValue::Int(l.id)),
                        "name" => text(&l.name),
                        _ => None,
                    })
                }),
                |l| l.id,
                |l| match sort {
                    LocationSortKeys::Name => SortVal::Str(l.name.to_lowercase()),
                    LocationSortKeys::Id | LocationSortKeys::Relevance => SortVal::Int(0),
                },
                |id| data.locations.get(&id).cloned().map(LocationNode),
                &window,
            )
        })??;
        Ok(LocationConnection::from_page(items, info))
    }

    async fn location(&self, ctx: &Context<'_>, id: ID) -> Result<Option<LocationNode>> {
        let id = parse_gid("Location", &id);
        with_data(ctx, |data| {
            id.and_then(|id| data.locations.get(&id))
                .cloned()
                .map(LocationNode)
        })
    }

    /// The shop's webhook subscriptions, by id (Shopify's default `sortKey` is `CREATED_AT`,
    /// which orders them the same way here).
    #[allow(clippy::too_many_arguments)]
    async fn webhook_subscriptions(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        #[graphql(default)] reverse: bool,
        topics: Option<Vec<WebhookSubscriptionTopic>>,
        callback_url: Option<Url>,
        format: Option<WebhookSubscriptionFormat>,
    ) -> Result<WebhookSubscriptionConnection> {
        let window = Window {
            first,
            after,
            last,
            before,
            reverse,
            unbounded: request_data(ctx)?.bulk,
        };
        let filter = webhooks::Filter {
            topics,
            callback_url,
            format,
        };
        webhooks::connection(ctx, &window, &filter)
    }

    async fn webhook_subscription(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<Option<WebhookSubscriptionNode>> {
        webhooks::by_id(ctx, &id)
    }

    async fn shop(&self, ctx: &Context<'_>) -> Result<ShopNode> {
        Ok(ShopNode {
            domain: request_data(ctx)?.shop.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn keys(n: u64) -> Vec<(SortVal, u64)> {
        (1..=n)
            .map(|id| (SortVal::Int(i64::try_from(id % 3).unwrap()), id))
            .collect()
    }

    fn walk(window: Window, n: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut window = window;
        loop {
            let (page, info) = paginate("UPDATED_AT", keys(n), &window).unwrap();
            out.extend(page.iter().map(|(id, _)| *id));
            if !info.has_next_page {
                return out;
            }
            window.after = info.end_cursor;
        }
    }

    #[test]
    fn pagination_visits_everything_once_in_order() {
        let forward = walk(
            Window {
                first: Some(4),
                ..Window::default()
            },
            20,
        );
        let mut expected: Vec<(SortVal, u64)> = keys(20);
        expected.sort();
        assert_eq!(
            forward,
            expected.iter().map(|(_, id)| *id).collect::<Vec<_>>()
        );
        let backward = walk(
            Window {
                first: Some(3),
                reverse: true,
                ..Window::default()
            },
            20,
        );
        let mut reversed = forward.clone();
        reversed.reverse();
        assert_eq!(backward, reversed);
    }

    #[test]
    fn last_and_before() {
        let (page, _) = paginate(
            "ID",
            keys(10),
            &Window {
                first: Some(5),
                ..Window::default()
            },
        )
        .unwrap();
        let cursor = page[4].1.clone();
        let (before, info) = paginate(
            "ID",
            keys(10),
            &Window {
                last: Some(2),
                before: Some(cursor),
                ..Window::default()
            },
        )
        .unwrap();
        let ids: Vec<u64> = before.iter().map(|(id, _)| *id).collect();
        let all: Vec<u64> = page.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, all[2..4]);
        assert!(info.has_previous_page && info.has_next_page);
    }

    #[test]
    fn bad_windows_and_cursors() {
        let no_size = Window::default();
        assert!(paginate("ID", keys(3), &no_size).is_err());
        let too_big = Window {
            first: Some(251),
            ..Window::default()
        };
        assert!(paginate("ID", keys(3), &too_big).is_err());
        let (page, _) = paginate(
            "ID",
            keys(3),
            &Window {
                first: Some(1),
                ..Window::default()
            },
        )
        .unwrap();
        // A cursor from another sort order is refused.
        let other = Window {
            first: Some(1),
            after: Some(page[0].1.clone()),
            ..Window::default()
        };
        assert!(paginate("UPDATED_AT", keys(3), &other).is_err());
        assert!(paginate("ID", keys(3), &other).is_ok());
    }

    #[test]
    fn gids() {
        assert_eq!(
            parse_gid("Product", "gid://shopify/Product/710000000000000001"),
            Some(710_000_000_000_000_001)
        );
        assert_eq!(
            parse_gid("Product", "710000000000000001"),
            Some(710_000_000_000_000_001)
        );
        assert_eq!(parse_gid("Product", "gid://shopify/Order/1"), None);
        assert_eq!(
            parse_gid(
                "InventoryLevel",
                "gid://shopify/InventoryLevel/7?inventory_item_id=9"
            ),
            Some(7)
        );
        assert_eq!(
            snake(OrderDisplayFinancialStatus::PartiallyPaid),
            "partially_paid"
        );
    }

    #[test]
    fn root_fields_of_bodies() {
        let body = json!({"query": "query Q { a: products(first: 1) { nodes { id } } ...F } fragment F on QueryRoot { orders(first: 1) { nodes { id } } __typename }"});
        assert_eq!(
            root_fields(body.to_string().as_bytes()),
            ["products", "orders"]
        );
        assert_eq!(root_fields(b"{ shop { name } }"), ["shop"]);
        assert!(root_fields(b"not graphql").is_empty());
    }
}
