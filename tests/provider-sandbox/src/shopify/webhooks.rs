//! Shopify webhooks (<https://shopify.dev/docs/apps/build/webhooks>):
//! subscriptions through the GraphQL Admin API, and deliveries driven by the control API.
//!
//! GraphQL (same endpoint, token and cost bucket as the queries; a mutation costs 10):
//!
//! - `webhookSubscriptionCreate(topic: WebhookSubscriptionTopic!, webhookSubscription:
//!   WebhookSubscriptionInput!)` with `{callbackUrl: URL, format: JSON, includeFields,
//!   metafieldNamespaces, filter}` answers `{webhookSubscription userErrors {field message}}`;
//!   the same topic and address twice is the user error "Address for this topic has already
//!   been taken".
//! - `webhookSubscriptionUpdate(id, webhookSubscription)`, `webhookSubscriptionDelete(id)`
//!   (`{deletedWebhookSubscriptionId userErrors}`).
//! - `webhookSubscriptions(first/after/last/before/reverse, topics, callbackUrl, format)`
//!   and `webhookSubscription(id)`.
//!
//! `WebhookSubscription {id legacyResourceId topic format endpoint {... on
//! WebhookHttpEndpoint {callbackUrl}} callbackUrl includeFields metafieldNamespaces filter
//! createdAt updatedAt}`. Subscriptions belong to the shop in the URL.
//!
//! Deliveries (`POST /__sandbox/shopify/webhooks/deliver`) carry Shopify's REST JSON shapes
//! (numeric ids as exact JSON integers, lowercase enums, times in the shop's zone: a fixed
//! `-05:00`) and headers: `X-Shopify-Topic`, `X-Shopify-Shop-Domain`,
//! `X-Shopify-API-Version`, `X-Shopify-Webhook-Id`, `X-Shopify-Event-Id`,
//! `X-Shopify-Triggered-At` and `X-Shopify-Hmac-Sha256` = base64(HMAC-SHA256(client secret,
//! raw body)). Shopify's retries are not modelled; `times` repeats a delivery with the same
//! ids, as a retry or a duplicate would.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_graphql::{
    Context, Enum, InputObject, InputValueError, InputValueResult, Object, Result, Scalar,
    ScalarType, SimpleObject, Union, Value as GqlValue, ID,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime as ChronoDateTime, FixedOffset, Offset as _, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use crate::control::{parse_json_body, ControlError};
use crate::outbound;
use crate::shopify::data::{
    InventoryItem, InventoryLevel, Order, OrderDisplayFulfillmentStatus, Product, ShopData,
};
use crate::shopify::graphql::{
    amount, gid, list, parse_gid, request_data, snake, time, DateTime, PageInfo, SortVal,
    UnsignedInt64, Window,
};
use crate::shopify::{normalize_shop, SHOP_SUFFIX};
use crate::state::{lock, SharedState};
use crate::time::format_ms;

/// Subscription `n` has id `WEBHOOK_SUBSCRIPTION_ID_BASE + n` (above 2^53, like every
/// sandbox id).
pub const WEBHOOK_SUBSCRIPTION_ID_BASE: u64 = 780_000_000_000_000_000;
/// A collection webhook describes the stored collection of that id; for any other id `n`
/// below this base, a made-up collection `COLLECTION_ID_BASE + n` (load tests cycle through
/// the first ten).
pub use crate::shopify::data::COLLECTION_ID_BASE;
/// `X-Shopify-API-Version` when the control call names none.
pub const DEFAULT_API_VERSION: &str = "2025-01";
/// The shop's time zone in REST payloads (Shopify writes local times with their offset).
const SHOP_UTC_OFFSET_SECS: i32 = -5 * 3600;
/// Largest `times` and `concurrency` the control call accepts.
const MAX_TIMES: u32 = 100;
const MAX_CONCURRENCY: usize = 256;
/// The shop's id in `app/uninstalled` payloads.
const SHOP_ID: u64 = 548_380_009;

// ----- enums and scalars -----

/// `WebhookSubscriptionTopic` (the topics Edge Sync can use; Shopify has many more). The
/// state file spells them as GraphQL does (`PRODUCTS_UPDATE`).
#[derive(
    Enum, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WebhookSubscriptionTopic {
    /// `app/uninstalled`.
    AppUninstalled,
    /// `collections/create`.
    CollectionsCreate,
    /// `collections/delete`.
    CollectionsDelete,
    /// `collections/update`.
    CollectionsUpdate,
    /// `customers/create`.
    CustomersCreate,
    /// `customers/delete`.
    CustomersDelete,
    /// `customers/update`.
    CustomersUpdate,
    /// `inventory_items/create`.
    InventoryItemsCreate,
    /// `inventory_items/delete`.
    InventoryItemsDelete,
    /// `inventory_items/update`.
    InventoryItemsUpdate,
    /// `inventory_levels/update`.
    InventoryLevelsUpdate,
    /// `orders/create`.
    OrdersCreate,
    /// `orders/delete`.
    OrdersDelete,
    /// `orders/updated` (Shopify's spelling).
    OrdersUpdated,
    /// `products/create`.
    ProductsCreate,
    /// `products/delete`.
    ProductsDelete,
    /// `products/update`.
    ProductsUpdate,
}

/// What a topic's payload describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Shop,
    Collection,
    Customer,
    InventoryItem,
    InventoryLevel,
    Order,
    Product,
}

impl WebhookSubscriptionTopic {
    /// Every topic.
    pub const ALL: [Self; 17] = [
        Self::AppUninstalled,
        Self::CollectionsCreate,
        Self::CollectionsDelete,
        Self::CollectionsUpdate,
        Self::CustomersCreate,
        Self::CustomersDelete,
        Self::CustomersUpdate,
        Self::InventoryItemsCreate,
        Self::InventoryItemsDelete,
        Self::InventoryItemsUpdate,
        Self::InventoryLevelsUpdate,
        Self::OrdersCreate,
        Self::OrdersDelete,
        Self::OrdersUpdated,
        Self::ProductsCreate,
        Self::ProductsDelete,
        Self::ProductsUpdate,
    ];

    /// The topic as `X-Shopify-Topic` names it (`products/update`).
    pub fn name(self) -> &'static str {
        match self {
            Self::AppUninstalled => "app/uninstalled",
            Self::CollectionsCreate => "collections/create",
            Self::CollectionsDelete => "collections/delete",
            Self::CollectionsUpdate => "collections/update",
            Self::CustomersCreate => "customers/create",
            Self::CustomersDelete => "customers/delete",
            Self::CustomersUpdate => "customers/update",
            Self::InventoryItemsCreate => "inventory_items/create",
            Self::InventoryItemsDelete => "inventory_items/delete",
            Self::InventoryItemsUpdate => "inventory_items/update",
            Self::InventoryLevelsUpdate => "inventory_levels/update",
            Self::OrdersCreate => "orders/create",
            Self::OrdersDelete => "orders/delete",
            Self::OrdersUpdated => "orders/updated",
            Self::ProductsCreate => "products/create",
            Self::ProductsDelete => "products/delete",
            Self::ProductsUpdate => "products/update",
        }
    }

    /// The GraphQL enum value (`PRODUCTS_UPDATE`).
    pub fn enum_name(self) -> String {
        snake(self).to_uppercase()
    }

    /// `products/update` or `PRODUCTS_UPDATE` (any case).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        Self::ALL.into_iter().find(|t| {
            t.name().eq_ignore_ascii_case(text) || t.enum_name().eq_ignore_ascii_case(text)
        })
    }

    fn kind(self) -> Kind {
        match self {
            Self::AppUninstalled => Kind::Shop,
            Self::CollectionsCreate | Self::CollectionsDelete | Self::CollectionsUpdate => {
                Kind::Collection
            }
            Self::CustomersCreate | Self::CustomersDelete | Self::CustomersUpdate => Kind::Customer,
            Self::InventoryItemsCreate
            | Self::InventoryItemsDelete
            | Self::InventoryItemsUpdate => Kind::InventoryItem,
            Self::InventoryLevelsUpdate => Kind::InventoryLevel,
            Self::OrdersCreate | Self::OrdersDelete | Self::OrdersUpdated => Kind::Order,
            Self::ProductsCreate | Self::ProductsDelete | Self::ProductsUpdate => Kind::Product,
        }
    }

    fn is_delete(self) -> bool {
        self.name().ends_with("/delete")
    }
}

/// `WebhookSubscriptionFormat`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WebhookSubscriptionFormat {
    /// JSON (the only format the sandbox delivers).
    Json,
    /// XML (refused with a user error).
    Xml,
}

/// `URL`: an absolute URL as a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url(pub String);

#[Scalar(name = "URL")]
impl ScalarType for Url {
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

// ----- store -----

/// Where and how a subscription delivers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The receiver (`WebhookHttpEndpoint.callbackUrl`).
    pub callback_url: String,
    /// Payload format.
    pub format: WebhookSubscriptionFormat,
    /// `includeFields` (stored and shown; payloads are always complete).
    #[serde(default)]
    pub include_fields: Vec<String>,
    /// `metafieldNamespaces` (stored and shown).
    #[serde(default)]
    pub metafield_namespaces: Vec<String>,
    /// `filter` (stored and shown, not applied).
    #[serde(default)]
    pub filter: Option<String>,
}

/// One webhook subscription. `--state-file` keeps everything but the delivery counters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Subscription {
    /// Numeric id.
    pub id: u64,
    /// The shop it belongs to (canonical).
    pub shop: String,
    /// Topic.
    pub topic: WebhookSubscriptionTopic,
    /// Endpoint and options.
    pub target: Target,
    /// Created, unix ms.
    pub created_ms: i64,
    /// Updated, unix ms.
    pub updated_ms: i64,
    /// Deliveries sent to it (each attempt counts; not kept across restarts).
    #[serde(skip)]
    pub deliveries: u64,
    /// Status of the latest delivery (0: unreachable; not kept across restarts).
    #[serde(skip)]
    pub last_status: Option<u16>,
}

impl Subscription {
    fn control_json(&self) -> Value {
        json!({
            "id": gid("WebhookSubscription", self.id).0,
            "legacy_id": self.id,
            "topic": self.topic.enum_name(),
            "topic_name": self.topic.name(),
            "callback_url": self.target.callback_url,
            "format": snake(self.target.format).to_uppercase(),
            "include_fields": self.target.include_fields,
            "created_at": format_ms(self.created_ms),
            "updated_at": format_ms(self.updated_ms),
            "deliveries": self.deliveries,
            "last_status": self.last_status,
        })
    }
}

/// A failed create or update, as a `UserError`.
fn user_error(field: &[&str], message: &str) -> UserError {
    UserError {
        field: Some(field.iter().map(|f| (*f).to_owned()).collect()),
        message: message.to_owned(),
    }
}

const TAKEN: &str = "Address for this topic has already been taken";
const NOT_FOUND: &str = "Webhook subscription does not exist";

/// Every shop's subscriptions (kept in `--state-file`, like Shopify keeps them).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WebhookStore {
    /// The highest `n` ever handed out (ids of deleted subscriptions are not reused).
    #[serde(default)]
    last: u64,
    #[serde(default)]
    subscriptions: BTreeMap<u64, Subscription>,
}

impl WebhookStore {
    fn taken(&self, shop: &str, topic: WebhookSubscriptionTopic, url: &str, except: u64) -> bool {
        self.subscriptions.values().any(|s| {
            s.id != except && s.shop == shop && s.topic == topic && s.target.callback_url == url
        })
    }

    /// Subscribes `shop` to `topic`; a user error for a taken address.
    pub fn create(
        &mut self,
        shop: &str,
        topic: WebhookSubscriptionTopic,
        target: Target,
        now_ms: i64,
    ) -> Result<Subscription, UserError> {
        if self.taken(shop, topic, &target.callback_url, 0) {
            return Err(user_error(&["webhookSubscription", "callbackUrl"], TAKEN));
        }
        // `max`: a hand-edited state file without `last` still cannot cause a collision.
        let highest = self
            .subscriptions
            .keys()
            .next_back()
            .map_or(0, |id| id.saturating_sub(WEBHOOK_SUBSCRIPTION_ID_BASE));
        self.last = self.last.max(highest) + 1;
        let subscription = Subscription {
            id: WEBHOOK_SUBSCRIPTION_ID_BASE + self.last,
            shop: shop.to_owned(),
            topic,
            target,
            created_ms: now_ms,
            updated_ms: now_ms,
            deliveries: 0,
            last_status: None,
        };
        self.subscriptions
            .insert(subscription.id, subscription.clone());
        Ok(subscription)
    }

    /// Replaces a subscription's target (`webhookSubscriptionUpdate`).
    pub fn update(
        &mut self,
        shop: &str,
        id: u64,
        change: impl FnOnce(&mut Target),
        now_ms: i64,
    ) -> Result<Subscription, UserError> {
        let Some(current) = self.get(shop, id) else {
            return Err(user_error(&["id"], NOT_FOUND));
        };
        let mut target = current.target.clone();
        let topic = current.topic;
        change(&mut target);
        if self.taken(shop, topic, &target.callback_url, id) {
            return Err(user_error(&["webhookSubscription", "callbackUrl"], TAKEN));
        }
        let Some(subscription) = self.subscriptions.get_mut(&id) else {
            return Err(user_error(&["id"], NOT_FOUND));
        };
        subscription.target = target;
        subscription.updated_ms = now_ms;
        Ok(subscription.clone())
    }

    /// Removes one of `shop`'s subscriptions; whether it existed.
    pub fn delete(&mut self, shop: &str, id: u64) -> bool {
        if self.get(shop, id).is_none() {
            return false;
        }
        self.subscriptions.remove(&id).is_some()
    }

    /// One of `shop`'s subscriptions.
    pub fn get(&self, shop: &str, id: u64) -> Option<&Subscription> {
        self.subscriptions.get(&id).filter(|s| s.shop == shop)
    }

    /// `shop`'s subscriptions, by id.
    pub fn for_shop<'a>(&'a self, shop: &'a str) -> impl Iterator<Item = &'a Subscription> {
        self.subscriptions.values().filter(move |s| s.shop == shop)
    }

    /// `(id, callback URL)` of `shop`'s subscriptions to `topic`.
    pub fn matching(&self, shop: &str, topic: WebhookSubscriptionTopic) -> Vec<(u64, String)> {
        self.for_shop(shop)
            .filter(|s| s.topic == topic)
            .map(|s| (s.id, s.target.callback_url.clone()))
            .collect()
    }

    fn record(&mut self, id: u64, status: u16) {
        if let Some(subscription) = self.subscriptions.get_mut(&id) {
            subscription.deliveries += 1;
            subscription.last_status = Some(status);
        }
    }
}

// ----- GraphQL -----

/// `UserError`.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct UserError {
    /// Path to the input field at fault.
    pub field: Option<Vec<String>>,
    /// What is wrong.
    pub message: String,
}

/// `WebhookHttpEndpoint`.
#[derive(SimpleObject, Clone, Debug)]
pub struct WebhookHttpEndpoint {
    /// Where deliveries go.
    pub callback_url: Url,
}

/// `WebhookEventBridgeEndpoint` (never returned: the sandbox delivers over HTTP only; here
/// so fragments on it validate).
#[derive(SimpleObject, Clone, Debug)]
pub struct WebhookEventBridgeEndpoint {
    /// The event source ARN.
    pub arn: String,
}

/// `WebhookPubSubEndpoint` (never returned, like [`WebhookEventBridgeEndpoint`]).
#[derive(SimpleObject, Clone, Debug)]
pub struct WebhookPubSubEndpoint {
    /// Google Cloud project.
    pub pub_sub_project: String,
    /// Pub/Sub topic.
    pub pub_sub_topic: String,
}

/// `WebhookSubscriptionEndpoint`.
#[derive(Union, Clone, Debug)]
pub enum WebhookSubscriptionEndpoint {
    /// An HTTPS (here: HTTP) endpoint.
    Http(WebhookHttpEndpoint),
    /// Amazon EventBridge.
    EventBridge(WebhookEventBridgeEndpoint),
    /// Google Pub/Sub.
    PubSub(WebhookPubSubEndpoint),
}

/// `WebhookSubscription`.
#[derive(Clone, Debug)]
pub struct WebhookSubscriptionNode(pub Subscription);

#[Object(name = "WebhookSubscription")]
impl WebhookSubscriptionNode {
    async fn id(&self) -> ID {
        gid("WebhookSubscription", self.0.id)
    }
    async fn legacy_resource_id(&self) -> UnsignedInt64 {
        UnsignedInt64(self.0.id)
    }
    async fn topic(&self) -> WebhookSubscriptionTopic {
        self.0.topic
    }
    async fn format(&self) -> WebhookSubscriptionFormat {
        self.0.target.format
    }
    async fn endpoint(&self) -> WebhookSubscriptionEndpoint {
        WebhookSubscriptionEndpoint::Http(WebhookHttpEndpoint {
            callback_url: Url(self.0.target.callback_url.clone()),
        })
    }
    /// Deprecated at Shopify in favour of `endpoint`, still served.
    async fn callback_url(&self) -> Url {
        Url(self.0.target.callback_url.clone())
    }
    async fn include_fields(&self) -> &[String] {
        &self.0.target.include_fields
    }
    async fn metafield_namespaces(&self) -> &[String] {
        &self.0.target.metafield_namespaces
    }
    async fn filter(&self) -> Option<&str> {
        self.0.target.filter.as_deref()
    }
    async fn created_at(&self) -> DateTime {
        time(self.0.created_ms)
    }
    async fn updated_at(&self) -> DateTime {
        time(self.0.updated_ms)
    }
}

/// `WebhookSubscriptionInput`.
#[derive(InputObject, Clone, Debug)]
pub struct WebhookSubscriptionInput {
    /// The receiver (required to create).
    pub callback_url: Option<Url>,
    /// `JSON` (default) or `XML` (refused).
    pub format: Option<WebhookSubscriptionFormat>,
    /// Fields to include.
    pub include_fields: Option<Vec<String>>,
    /// Metafield namespaces to include.
    pub metafield_namespaces: Option<Vec<String>>,
    /// Shopify's search-syntax filter.
    pub filter: Option<String>,
}

/// `WebhookSubscriptionCreatePayload`.
#[derive(SimpleObject, Clone, Debug)]
pub struct WebhookSubscriptionCreatePayload {
    /// The new subscription, unless there are user errors.
    pub webhook_subscription: Option<WebhookSubscriptionNode>,
    /// What was wrong with the input.
    pub user_errors: Vec<UserError>,
}

/// `WebhookSubscriptionUpdatePayload`.
#[derive(SimpleObject, Clone, Debug)]
pub struct WebhookSubscriptionUpdatePayload {
    /// The changed subscription, unless there are user errors.
    pub webhook_subscription: Option<WebhookSubscriptionNode>,
    /// What was wrong with the input.
    pub user_errors: Vec<UserError>,
}

/// `WebhookSubscriptionDeletePayload`.
#[derive(SimpleObject, Clone, Debug)]
pub struct WebhookSubscriptionDeletePayload {
    /// The gid of the deleted subscription.
    pub deleted_webhook_subscription_id: Option<ID>,
    /// What was wrong with the input.
    pub user_errors: Vec<UserError>,
}

/// `WebhookSubscriptionConnection`.
#[derive(SimpleObject, Clone, Debug)]
pub struct WebhookSubscriptionConnection {
    /// The subscriptions.
    pub nodes: Vec<WebhookSubscriptionNode>,
    /// The subscriptions with their cursors.
    pub edges: Vec<WebhookSubscriptionEdge>,
    /// Where the page lies.
    pub page_info: PageInfo,
}

/// `WebhookSubscriptionEdge`.
#[derive(SimpleObject, Clone, Debug)]
pub struct WebhookSubscriptionEdge {
    /// The subscription.
    pub node: WebhookSubscriptionNode,
    /// Its cursor.
    pub cursor: String,
}

/// The `webhookSubscriptions` filters.
#[derive(Debug, Default)]
pub struct Filter {
    /// Only these topics.
    pub topics: Option<Vec<WebhookSubscriptionTopic>>,
    /// Only this address.
    pub callback_url: Option<Url>,
    /// Only this format.
    pub format: Option<WebhookSubscriptionFormat>,
}

impl Filter {
    fn matches(&self, s: &Subscription) -> bool {
        self.topics.as_ref().is_none_or(|t| t.contains(&s.topic))
            && self
                .callback_url
                .as_ref()
                .is_none_or(|u| u.0 == s.target.callback_url)
            && self.format.is_none_or(|f| f == s.target.format)
    }
}

/// `webhookSubscriptions(...)` for the request's shop.
pub(crate) fn connection(
    ctx: &Context<'_>,
    window: &Window,
    filter: &Filter,
) -> Result<WebhookSubscriptionConnection> {
    let rd = request_data(ctx)?;
    let store = lock(&rd.state.shopify.webhooks);
    let (items, page_info) = list(
        "ID",
        store.for_shop(&rd.shop).filter(|s| filter.matches(s)),
        |s| s.id,
        |_| SortVal::Int(0),
        |id| {
            store
                .get(&rd.shop, id)
                .cloned()
                .map(WebhookSubscriptionNode)
        },
        window,
    )?;
    Ok(WebhookSubscriptionConnection {
        nodes: items.iter().map(|(node, _)| node.clone()).collect(),
        edges: items
            .into_iter()
            .map(|(node, cursor)| WebhookSubscriptionEdge { node, cursor })
            .collect(),
        page_info,
    })
}

/// `webhookSubscription(id)` for the request's shop.
pub(crate) fn by_id(ctx: &Context<'_>, id: &ID) -> Result<Option<WebhookSubscriptionNode>> {
    let rd = request_data(ctx)?;
    let Some(id) = parse_gid("WebhookSubscription", id) else {
        return Ok(None);
    };
    let store = lock(&rd.state.shopify.webhooks);
    Ok(store
        .get(&rd.shop, id)
        .cloned()
        .map(WebhookSubscriptionNode))
}

/// An absolute http(s) URL (Shopify requires https; the sandbox's receivers are local).
fn valid_callback(url: &str) -> bool {
    url::Url::parse(url)
        .ok()
        .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// Checks the parts of an input that are present.
fn check_input(input: &WebhookSubscriptionInput) -> Vec<UserError> {
    let mut errors = Vec::new();
    if let Some(url) = &input.callback_url {
        if !valid_callback(&url.0) {
            errors.push(user_error(
                &["webhookSubscription", "callbackUrl"],
                "Address is invalid",
            ));
        }
    }
    if input.format == Some(WebhookSubscriptionFormat::Xml) {
        errors.push(user_error(
            &["webhookSubscription", "format"],
            "Format XML is not supported by the sandbox: use JSON",
        ));
    }
    errors
}

/// The webhook-subscription and bulk-operation mutations.
#[derive(Clone, Copy, Debug, Default)]
pub struct SubscriptionMutations;

#[Object(name = "SubscriptionMutations")]
impl SubscriptionMutations {
    /// Starts a bulk query ([`crate::shopify::bulk`]).
    async fn bulk_operation_run_query(
        &self,
        ctx: &Context<'_>,
        query: String,
    ) -> Result<crate::shopify::bulk::BulkOperationRunQueryPayload> {
        crate::shopify::bulk::run_query(ctx, query)
    }

    /// Cancels a running bulk operation.
    async fn bulk_operation_cancel(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<crate::shopify::bulk::BulkOperationCancelPayload> {
        crate::shopify::bulk::cancel(ctx, &id)
    }

    async fn webhook_subscription_create(
        &self,
        ctx: &Context<'_>,
        topic: WebhookSubscriptionTopic,
        webhook_subscription: WebhookSubscriptionInput,
    ) -> Result<WebhookSubscriptionCreatePayload> {
        let rd = request_data(ctx)?;
        let mut user_errors = check_input(&webhook_subscription);
        let Some(callback_url) = webhook_subscription.callback_url.clone() else {
            user_errors.push(user_error(
                &["webhookSubscription", "callbackUrl"],
                "Address can't be blank",
            ));
            return Ok(WebhookSubscriptionCreatePayload {
                webhook_subscription: None,
                user_errors,
            });
        };
        if !user_errors.is_empty() {
            return Ok(WebhookSubscriptionCreatePayload {
                webhook_subscription: None,
                user_errors,
            });
        }
        let target = Target {
            callback_url: callback_url.0,
            format: WebhookSubscriptionFormat::Json,
            include_fields: webhook_subscription.include_fields.unwrap_or_default(),
            metafield_namespaces: webhook_subscription
                .metafield_namespaces
                .unwrap_or_default(),
            filter: webhook_subscription.filter,
        };
        let now = rd.state.clock.now_ms();
        let created = lock(&rd.state.shopify.webhooks).create(&rd.shop, topic, target, now);
        if created.is_ok() {
            rd.state.persist();
        }
        Ok(match created {
            Ok(subscription) => WebhookSubscriptionCreatePayload {
                webhook_subscription: Some(WebhookSubscriptionNode(subscription)),
                user_errors: Vec::new(),
            },
            Err(error) => WebhookSubscriptionCreatePayload {
                webhook_subscription: None,
                user_errors: vec![error],
            },
        })
    }

    async fn webhook_subscription_update(
        &self,
        ctx: &Context<'_>,
        id: ID,
        webhook_subscription: WebhookSubscriptionInput,
    ) -> Result<WebhookSubscriptionUpdatePayload> {
        let rd = request_data(ctx)?;
        let user_errors = check_input(&webhook_subscription);
        if !user_errors.is_empty() {
            return Ok(WebhookSubscriptionUpdatePayload {
                webhook_subscription: None,
                user_errors,
            });
        }
        let Some(id) = parse_gid("WebhookSubscription", &id) else {
            return Ok(WebhookSubscriptionUpdatePayload {
                webhook_subscription: None,
                user_errors: vec![user_error(&["id"], NOT_FOUND)],
            });
        };
        let now = rd.state.clock.now_ms();
        let input = webhook_subscription;
        let updated = lock(&rd.state.shopify.webhooks).update(
            &rd.shop,
            id,
            |target| {
                if let Some(url) = input.callback_url {
                    target.callback_url = url.0;
                }
                if let Some(fields) = input.include_fields {
                    target.include_fields = fields;
                }
                if let Some(namespaces) = input.metafield_namespaces {
                    target.metafield_namespaces = namespaces;
                }
                if input.filter.is_some() {
                    target.filter = input.filter;
                }
            },
            now,
        );
        if updated.is_ok() {
            rd.state.persist();
        }
        Ok(match updated {
            Ok(subscription) => WebhookSubscriptionUpdatePayload {
                webhook_subscription: Some(WebhookSubscriptionNode(subscription)),
                user_errors: Vec::new(),
            },
            Err(error) => WebhookSubscriptionUpdatePayload {
                webhook_subscription: None,
                user_errors: vec![error],
            },
        })
    }

    async fn webhook_subscription_delete(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<WebhookSubscriptionDeletePayload> {
        let rd = request_data(ctx)?;
        let deleted = parse_gid("WebhookSubscription", &id)
            .is_some_and(|n| lock(&rd.state.shopify.webhooks).delete(&rd.shop, n));
        if deleted {
            rd.state.persist();
        }
        Ok(if deleted {
            WebhookSubscriptionDeletePayload {
                deleted_webhook_subscription_id: Some(id),
                user_errors: Vec::new(),
            }
        } else {
            WebhookSubscriptionDeletePayload {
                deleted_webhook_subscription_id: None,
                user_errors: vec![user_error(&["id"], NOT_FOUND)],
            }
        })
    }
}

// ----- REST payloads -----

/// A time as Shopify's REST payloads write it: whole seconds in the shop's zone with its
/// offset (`2025-03-01T07:34:56-05:00`).
pub fn rest_time(ms: i64) -> String {
    let offset = FixedOffset::east_opt(SHOP_UTC_OFFSET_SECS).unwrap_or_else(|| Utc.fix());
    let utc = ChronoDateTime::<Utc>::from_timestamp_millis(ms.div_euclid(1000) * 1000)
        .unwrap_or_default();
    utc.with_timezone(&offset)
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

fn product_payload(data: &ShopData, p: &Product) -> Value {
    let variants: Vec<Value> = (1u64..)
        .zip(data.product_variants(p))
        .map(|(position, v)| {
            let quantity = data.item_available(v.inventory_item_id);
            json!({
                "id": v.id,
                "product_id": v.product_id,
                "title": v.title,
                "price": amount(v.price_cents),
                "sku": v.sku,
                "position": position,
                "inventory_policy": "deny",
                "compare_at_price": null,
                "option1": v.title,
                "option2": null,
                "option3": null,
                "created_at": rest_time(v.created_ms),
                "updated_at": rest_time(v.updated_ms),
                "taxable": true,
                "barcode": null,
                "inventory_item_id": v.inventory_item_id,
                "inventory_quantity": quantity,
                "old_inventory_quantity": quantity,
                "admin_graphql_api_id": gid("ProductVariant", v.id).0,
            })
        })
        .collect();
    let status = snake(p.status);
    let published_at = (status == "active").then(|| rest_time(p.created_ms));
    json!({
        "id": p.id,
        "title": p.title(),
        "body_html": "",
        "vendor": p.vendor,
        "product_type": p.product_type,
        "created_at": rest_time(p.created_ms),
        "handle": p.handle,
        "updated_at": rest_time(p.updated_ms),
        "published_at": published_at,
        "template_suffix": null,
        "published_scope": "web",
        "tags": "",
        "status": status,
        "admin_graphql_api_id": gid("Product", p.id).0,
        "variants": variants,
        "images": [],
        "image": null,
    })
}

/// REST's `fulfillment_status`: `null` until something shipped.
fn fulfillment_status(status: OrderDisplayFulfillmentStatus) -> Value {
    match status {
        OrderDisplayFulfillmentStatus::Fulfilled => json!("fulfilled"),
        OrderDisplayFulfillmentStatus::PartiallyFulfilled => json!("partial"),
        OrderDisplayFulfillmentStatus::Restocked => json!("restocked"),
        _ => Value::Null,
    }
}

fn customer_json(data: &ShopData, id: u64) -> Value {
    data.customers.get(&id).map_or(Value::Null, |c| {
        json!({
            "id": c.id,
            "email": c.email,
            "first_name": c.first_name,
            "last_name": c.last_name,
            "created_at": rest_time(c.created_ms),
            "updated_at": rest_time(c.updated_ms),
            "note": c.note,
            "state": "enabled",
            "verified_email": true,
            "tags": "",
            "currency": "USD",
            "admin_graphql_api_id": gid("Customer", c.id).0,
        })
    })
}

fn order_payload(data: &ShopData, o: &Order) -> Value {
    let number: u64 = o.name.trim_start_matches('#').parse().unwrap_or(0);
    let total = amount(o.total_cents);
    json!({
        "id": o.id,
        "admin_graphql_api_id": gid("Order", o.id).0,
        "name": o.name,
        "order_number": number,
        "number": number.saturating_sub(1000),
        "email": o.email,
        "contact_email": o.email,
        "created_at": rest_time(o.created_ms),
        "processed_at": rest_time(o.created_ms),
        "updated_at": rest_time(o.updated_ms),
        "financial_status": snake(o.financial),
        "fulfillment_status": fulfillment_status(o.fulfillment),
        "total_price": total,
        "subtotal_price": total,
        "currency": "USD",
        "presentment_currency": "USD",
        "note": o.note,
        "customer": o.customer_id.map_or(Value::Null, |id| customer_json(data, id)),
        "line_items": order_lines(data, o),
    })
}

/// An order's lines as REST shows them: the sandbox's orders hold one line, a variant picked
/// by the order's id, at the order's total.
fn order_lines(data: &ShopData, o: &Order) -> Value {
    if data.variants.is_empty() {
        return json!([]);
    }
    let index = usize::try_from(o.id % data.variants.len() as u64).unwrap_or(0);
    let Some(variant) = data.variants.values().nth(index) else {
        return json!([]);
    };
    let title = data
        .products
        .get(&variant.product_id)
        .map_or_else(|| variant.title.clone(), |p| p.title());
    json!([{
        "id": o.id * 10 + 1,
        "admin_graphql_api_id": gid("LineItem", o.id * 10 + 1).0,
        "product_id": variant.product_id,
        "variant_id": variant.id,
        "title": title,
        "variant_title": variant.title,
        "sku": variant.sku,
        "quantity": 1,
        "price": amount(o.total_cents),
        "requires_shipping": true,
        "taxable": true,
    }])
}

fn level_payload(l: &InventoryLevel) -> Value {
    json!({
        "inventory_item_id": l.item_id,
        "location_id": l.location_id,
        "available": l.available,
        "updated_at": rest_time(l.updated_ms),
        "admin_graphql_api_id": format!(
            "gid://shopify/InventoryLevel/{}?inventory_item_id={}",
            l.id, l.item_id
        ),
    })
}

fn item_payload(i: &InventoryItem) -> Value {
    json!({
        "id": i.id,
        "sku": i.sku,
        "created_at": rest_time(i.created_ms),
        "updated_at": rest_time(i.updated_ms),
        "requires_shipping": true,
        "cost": null,
        "country_code_of_origin": null,
        "province_code_of_origin": null,
        "harmonized_system_code": null,
        "tracked": i.tracked,
        "country_harmonized_system_codes": [],
        "admin_graphql_api_id": gid("InventoryItem", i.id).0,
    })
}

fn collection_payload(data: &ShopData, id: u64, now_ms: i64) -> Value {
    let n = if id > COLLECTION_ID_BASE {
        id - COLLECTION_ID_BASE
    } else {
        id
    };
    let id = COLLECTION_ID_BASE + n;
    let (title, handle, updated_ms) = match data.collections.get(&id) {
        Some(c) => (c.title.clone(), c.handle.clone(), c.updated_ms),
        None => (format!("Collection {n}"), format!("collection-{n}"), now_ms),
    };
    json!({
        "id": id,
        "handle": handle,
        "title": title,
        "updated_at": rest_time(updated_ms),
        "body_html": "",
        "published_at": rest_time(now_ms),
        "sort_order": "best-selling",
        "template_suffix": null,
        "published_scope": "web",
        "admin_graphql_api_id": gid("Collection", id).0,
    })
}

fn shop_payload(shop: &str) -> Value {
    let name = shop.strip_suffix(SHOP_SUFFIX).unwrap_or(shop);
    json!({
        "id": SHOP_ID,
        "name": name,
        "email": format!("owner@{shop}"),
        "domain": shop,
        "myshopify_domain": shop,
        "currency": "USD",
        "iana_timezone": "America/Bogota",
        "plan_name": "basic",
    })
}

/// The REST payload of `topic` for record `id` (`None` for topics without a record, such
/// as `app/uninstalled`). Deletes only need the id; the others need the record.
fn rest_payload(
    data: &ShopData,
    topic: WebhookSubscriptionTopic,
    id: Option<u64>,
    shop: &str,
    now_ms: i64,
) -> Result<Value, String> {
    let kind = topic.kind();
    if kind == Kind::Shop {
        return Ok(shop_payload(shop));
    }
    let Some(id) = id else {
        return Err(format!("{} needs ids (or a payload)", topic.name()));
    };
    if topic.is_delete() {
        return Ok(json!({ "id": id }));
    }
    let missing = || format!("no record {id} for {}", topic.name());
    match kind {
        Kind::Product => data
            .products
            .get(&id)
            .map(|p| product_payload(data, p))
            .ok_or_else(missing),
        Kind::Order => data
            .orders
            .get(&id)
            .map(|o| order_payload(data, o))
            .ok_or_else(missing),
        Kind::Customer => Some(customer_json(data, id))
            .filter(|c| !c.is_null())
            .ok_or_else(missing),
        Kind::InventoryLevel => data.levels.get(&id).map(level_payload).ok_or_else(missing),
        Kind::InventoryItem => data.items.get(&id).map(item_payload).ok_or_else(missing),
        Kind::Collection => Ok(collection_payload(data, id, now_ms)),
        Kind::Shop => Ok(shop_payload(shop)),
    }
}

/// Ids a load test cycles through when none are given: the topic's records.
fn catalogue(data: &ShopData, topic: WebhookSubscriptionTopic) -> Vec<Option<u64>> {
    let ids: Vec<u64> = match topic.kind() {
        Kind::Shop => return vec![None],
        Kind::Product => data.products.keys().copied().collect(),
        Kind::Order => data.orders.keys().copied().collect(),
        Kind::Customer => data.customers.keys().copied().collect(),
        Kind::InventoryLevel => data.levels.keys().copied().collect(),
        Kind::InventoryItem => data.items.keys().copied().collect(),
        Kind::Collection => (1..=10).map(|n| COLLECTION_ID_BASE + n).collect(),
    };
    ids.into_iter().map(Some).collect()
}

// ----- control -----

/// `GET /__sandbox/shopify/webhooks`: `{"shops": {"<shop>": [subscription, ...]}}`, each
/// `{id, legacy_id, topic, topic_name, callback_url, format, include_fields, created_at,
/// updated_at, deliveries, last_status}`.
pub async fn control_list(State(state): State<SharedState>) -> Json<Value> {
    let store = lock(&state.shopify.webhooks);
    let mut shops: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for subscription in store.subscriptions.values() {
        shops
            .entry(subscription.shop.clone())
            .or_default()
            .push(subscription.control_json());
    }
    Json(json!({ "shops": shops }))
}

/// An id given as a number, a numeric string or a gid.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IdInput {
    Number(u64),
    Text(String),
}

impl IdInput {
    fn id(&self) -> Result<u64, ControlError> {
        match self {
            Self::Number(n) => Ok(*n),
            Self::Text(text) => text
                .rsplit('/')
                .next()
                .and_then(|last| last.split('?').next())
                .and_then(|n| n.trim().parse().ok())
                .ok_or_else(|| {
                    ControlError::bad_request(format!("id '{text}' is neither numeric nor a gid"))
                }),
        }
    }
}

fn one() -> u32 {
    1
}

/// Keeps `"payload": null` apart from no payload: both mean none.
fn any_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    let value = Value::deserialize(d)?;
    Ok((!value.is_null()).then_some(value))
}

/// Body of `POST /__sandbox/shopify/webhooks/deliver`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliverRequest {
    shop: String,
    topic: String,
    #[serde(default)]
    ids: Option<Vec<IdInput>>,
    #[serde(default, deserialize_with = "any_value")]
    payload: Option<Value>,
    #[serde(default = "one")]
    times: u32,
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    count: Option<usize>,
    #[serde(default)]
    concurrency: Option<usize>,
}

/// One event's body and signature.
#[derive(Debug)]
struct Event {
    id: Option<u64>,
    body: Vec<u8>,
    hmac: String,
}

/// What every delivery of one control call shares.
#[derive(Debug)]
struct Plan {
    shop: String,
    topic: WebhookSubscriptionTopic,
    api_version: String,
    times: u32,
    targets: Vec<(u64, String)>,
    events: Vec<Event>,
}

impl Plan {
    /// Delivers `event` to `target` `times` times with the same ids; the answers.
    async fn send(
        &self,
        state: &SharedState,
        event: &Event,
        target: &(u64, String),
        webhook_id: &str,
        event_id: &str,
        triggered_at: &str,
    ) -> Vec<outbound::Answer> {
        let headers = [
            ("content-type", "application/json".to_owned()),
            ("user-agent", "Shopify-Captain-Hook".to_owned()),
            ("x-shopify-topic", self.topic.name().to_owned()),
            ("x-shopify-shop-domain", self.shop.clone()),
            ("x-shopify-api-version", self.api_version.clone()),
            ("x-shopify-webhook-id", webhook_id.to_owned()),
            ("x-shopify-event-id", event_id.to_owned()),
            ("x-shopify-triggered-at", triggered_at.to_owned()),
            ("x-shopify-hmac-sha256", event.hmac.clone()),
        ];
        let mut answers = Vec::new();
        for _ in 0..self.times {
            let answer = outbound::post(
                &state.http,
                &target.1,
                &headers,
                event.body.clone(),
                outbound::SHOPIFY_TIMEOUT,
            )
            .await;
            lock(&state.shopify.webhooks).record(target.0, answer.status);
            answers.push(answer);
        }
        answers
    }
}

fn event(id: Option<u64>, body: Vec<u8>, secret: &[u8]) -> Event {
    let hmac = STANDARD.encode(outbound::hmac_sha256(secret, &body));
    Event { id, body, hmac }
}

/// `POST /__sandbox/shopify/webhooks/deliver`: sends `topic` to every subscription of
/// `shop` to it, signed with the app's client secret (or `client_secret`).
///
/// - Plain: `{"shop","topic","ids"?:[..],"payload"?:<json>,"times"?:1,"event_id"?,
///   "client_secret"?,"api_version"?}`: one event per id (REST payload of the current
///   record; deletes need only the id) or one with `payload` (a JSON string is sent as the
///   raw body). Each subscription gets its own `X-Shopify-Webhook-Id`; the event's
///   `X-Shopify-Event-Id` (random, or `event_id`) is shared; `times` > 1 sends the same
///   delivery again with the same ids. Answers `{"deliveries":[{"url","status",
///   "webhook_id","event_id","attempt","id"?}]}` (status 0: unreachable).
/// - Load: add `"count": M` (and `"concurrency": N`, default 10): M distinct events, each
///   with fresh ids, cycling through `ids` or the topic's records, N deliveries in flight.
///   Answers `{"statuses":{"200":m,..},"events","deliveries","subscriptions","elapsed_ms"}`.
pub async fn control_deliver(
    State(state): State<SharedState>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let request: DeliverRequest = parse_json_body(&body)?;
    let shop = normalize_shop(&request.shop)
        .ok_or_else(|| ControlError::bad_request("shop must be <name>.myshopify.com"))?;
    let topic = WebhookSubscriptionTopic::parse(&request.topic).ok_or_else(|| {
        ControlError::bad_request(format!(
            "unknown topic '{}'; known: {}",
            request.topic,
            WebhookSubscriptionTopic::ALL
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    if !(1..=MAX_TIMES).contains(&request.times) {
        return Err(ControlError::bad_request(format!(
            "times must be between 1 and {MAX_TIMES}"
        )));
    }
    let secret = request
        .client_secret
        .clone()
        .unwrap_or_else(|| state.config.shopify_client_secret.expose().to_owned());
    let ids: Option<Vec<u64>> = request
        .ids
        .as_ref()
        .map(|ids| ids.iter().map(IdInput::id).collect())
        .transpose()?;
    let now = state.clock.now_ms();

    // The events: a payload as is, one per id, or (load tests) the topic's records.
    let sources: Vec<Option<u64>> = match (&request.payload, &ids, request.count) {
        (Some(_), _, _) => vec![None],
        (None, Some(ids), _) if !ids.is_empty() => ids.iter().copied().map(Some).collect(),
        (None, Some(_), _) => return Err(ControlError::bad_request("ids must not be empty")),
        (None, None, Some(_)) => state
            .shopify
            .read_shop(Some(&shop), |data| catalogue(data, topic)),
        (None, None, None) if topic.kind() == Kind::Shop => vec![None],
        (None, None, None) => {
            return Err(ControlError::bad_request(format!(
                "give ids or a payload for {}",
                topic.name()
            )))
        }
    };
    if sources.is_empty() {
        return Err(ControlError::bad_request(format!(
            "the shop has no records for {}",
            topic.name()
        )));
    }
    // A load test needs at most `count` distinct bodies.
    let needed = request
        .count
        .map_or(sources.len(), |c| c.min(sources.len()));
    let events = match &request.payload {
        Some(Value::String(raw)) => vec![event(None, raw.clone().into_bytes(), secret.as_bytes())],
        Some(payload) => vec![event(
            None,
            payload.to_string().into_bytes(),
            secret.as_bytes(),
        )],
        None => state.shopify.read_shop(Some(&shop), |data| {
            sources
                .iter()
                .take(needed)
                .map(|&id| {
                    rest_payload(data, topic, id, &shop, now)
                        .map(|p| event(id, p.to_string().into_bytes(), secret.as_bytes()))
                        .map_err(ControlError::bad_request)
                })
                .collect::<Result<Vec<_>, _>>()
        })?,
    };
    let plan = Plan {
        targets: lock(&state.shopify.webhooks).matching(&shop, topic),
        shop,
        topic,
        api_version: request
            .api_version
            .clone()
            .unwrap_or_else(|| DEFAULT_API_VERSION.to_owned()),
        times: request.times,
        events,
    };

    match request.count {
        Some(count) => {
            let concurrency = request.concurrency.unwrap_or(10);
            if count == 0 || !(1..=MAX_CONCURRENCY).contains(&concurrency) {
                return Err(ControlError::bad_request(format!(
                    "count must be at least 1 and concurrency between 1 and {MAX_CONCURRENCY}"
                )));
            }
            Ok(Json(load(state, plan, count, concurrency).await))
        }
        None => {
            if request.concurrency.is_some() {
                return Err(ControlError::bad_request("concurrency needs count"));
            }
            Ok(Json(
                plain(&state, &plan, request.event_id.as_deref()).await,
            ))
        }
    }
}

/// Sends `topic` for record `id` of `shop` to its subscriptions in the background, as
/// Shopify does for a change made through the Admin API
/// (<https://shopify.dev/docs/apps/build/webhooks>): same payloads, headers and signature as
/// `/__sandbox/shopify/webhooks/deliver`. Nothing is sent when nobody subscribed.
pub(crate) fn notify_change(
    state: &SharedState,
    shop: &str,
    topic: WebhookSubscriptionTopic,
    id: u64,
) {
    let targets = lock(&state.shopify.webhooks).matching(shop, topic);
    if targets.is_empty() {
        return;
    }
    let now = state.clock.now_ms();
    let secret = state.config.shopify_client_secret.expose().to_owned();
    let Ok(payload) = state.shopify.read_shop(Some(shop), |data| {
        rest_payload(data, topic, Some(id), shop, now)
    }) else {
        return;
    };
    let plan = Plan {
        targets,
        shop: shop.to_owned(),
        topic,
        api_version: DEFAULT_API_VERSION.to_owned(),
        times: 1,
        events: vec![event(
            Some(id),
            payload.to_string().into_bytes(),
            secret.as_bytes(),
        )],
    };
    let state = state.clone();
    tokio::spawn(async move {
        plain(&state, &plan, None).await;
    });
}

/// Every event to every target, in order.
async fn plain(state: &SharedState, plan: &Plan, event_id: Option<&str>) -> Value {
    let mut deliveries = Vec::new();
    for event in &plan.events {
        let event_id = event_id.map_or_else(outbound::uuid_v4, str::to_owned);
        let triggered_at = format_ms(state.clock.now_ms());
        for target in &plan.targets {
            let webhook_id = outbound::uuid_v4();
            let answers = plan
                .send(state, event, target, &webhook_id, &event_id, &triggered_at)
                .await;
            for (attempt, answer) in (1u32..).zip(answers) {
                let mut record = json!({
                    "url": target.1,
                    "status": answer.status,
                    "webhook_id": webhook_id,
                    "event_id": event_id,
                    "attempt": attempt,
                    "id": event.id,
                });
                if let (Some(error), Some(map)) = (answer.error, record.as_object_mut()) {
                    map.insert("error".to_owned(), Value::String(error));
                }
                deliveries.push(record);
            }
        }
    }
    json!({ "deliveries": deliveries })
}

/// `count` events (fresh ids each, bodies cycling), each to every target, `concurrency`
/// deliveries in flight; status counts.
async fn load(state: SharedState, plan: Plan, count: usize, concurrency: usize) -> Value {
    let started = Instant::now();
    let targets = plan.targets.len();
    let jobs = count.saturating_mul(targets);
    let plan = Arc::new(plan);
    let next = Arc::new(AtomicUsize::new(0));
    let statuses: Arc<Mutex<BTreeMap<String, u64>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(jobs) {
        let (state, plan, next, statuses) = (
            state.clone(),
            Arc::clone(&plan),
            Arc::clone(&next),
            Arc::clone(&statuses),
        );
        workers.spawn(async move {
            loop {
                let job = next.fetch_add(1, Ordering::SeqCst);
                if job >= jobs {
                    break;
                }
                let (event, target) = (job / targets, job % targets);
                let (Some(body), Some(target)) = (
                    plan.events.get(event % plan.events.len().max(1)),
                    plan.targets.get(target),
                ) else {
                    break;
                };
                let triggered_at = format_ms(state.clock.now_ms());
                let answers = plan
                    .send(
                        &state,
                        body,
                        target,
                        &outbound::uuid_v4(),
                        &outbound::uuid_v4(),
                        &triggered_at,
                    )
                    .await;
                let mut statuses = lock(&statuses);
                for answer in answers {
                    *statuses.entry(answer.status.to_string()).or_default() += 1;
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let statuses = std::mem::take(&mut *lock(&statuses));
    let deliveries: u64 = statuses.values().sum();
    json!({
        "statuses": statuses,
        "events": count,
        "deliveries": deliveries,
        "subscriptions": targets,
        "elapsed_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::shopify::data::PRODUCT_ID_BASE;

    fn target(url: &str) -> Target {
        Target {
            callback_url: url.to_owned(),
            format: WebhookSubscriptionFormat::Json,
            include_fields: Vec::new(),
            metafield_namespaces: Vec::new(),
            filter: None,
        }
    }

    #[test]
    fn topics_round_trip() {
        for topic in WebhookSubscriptionTopic::ALL {
            assert_eq!(WebhookSubscriptionTopic::parse(topic.name()), Some(topic));
            assert_eq!(
                WebhookSubscriptionTopic::parse(&topic.enum_name()),
                Some(topic)
            );
        }
        assert_eq!(
            WebhookSubscriptionTopic::InventoryLevelsUpdate.enum_name(),
            "INVENTORY_LEVELS_UPDATE"
        );
        assert_eq!(WebhookSubscriptionTopic::parse("products/updated"), None);
    }

    #[test]
    fn store_is_per_shop_and_refuses_duplicates() {
        let mut store = WebhookStore::default();
        let topic = WebhookSubscriptionTopic::ProductsUpdate;
        let a = store
            .create("a.myshopify.com", topic, target("http://x/1"), 0)
            .unwrap();
        assert_eq!(a.id, WEBHOOK_SUBSCRIPTION_ID_BASE + 1);
        let taken = store
            .create("a.myshopify.com", topic, target("http://x/1"), 0)
            .unwrap_err();
        assert_eq!(taken.message, TAKEN);
        // Another shop, or another topic, may use the address.
        assert!(store
            .create("b.myshopify.com", topic, target("http://x/1"), 0)
            .is_ok());
        let other = WebhookSubscriptionTopic::ProductsCreate;
        assert!(store
            .create("a.myshopify.com", other, target("http://x/1"), 0)
            .is_ok());
        assert_eq!(store.matching("a.myshopify.com", topic).len(), 1);
        assert!(!store.delete("b.myshopify.com", a.id));
        assert!(store.delete("a.myshopify.com", a.id));
        assert!(store.matching("a.myshopify.com", topic).is_empty());
    }

    #[test]
    fn store_round_trips_through_json() {
        let mut store = WebhookStore::default();
        let topic = WebhookSubscriptionTopic::InventoryLevelsUpdate;
        let mut with_options = target("http://x/1");
        with_options.include_fields = vec!["id".into()];
        with_options.filter = Some("vendor:acme".into());
        let a = store
            .create("a.myshopify.com", topic, with_options, 5)
            .unwrap();
        store
            .create("b.myshopify.com", topic, target("http://x/2"), 6)
            .unwrap();
        store.record(a.id, 200);
        let text = serde_json::to_string(&store).unwrap();
        assert!(text.contains("\"INVENTORY_LEVELS_UPDATE\""), "{text}");
        assert!(text.contains("\"JSON\""), "{text}");

        let mut restored: WebhookStore = serde_json::from_str(&text).unwrap();
        let got = restored.get("a.myshopify.com", a.id).unwrap();
        assert_eq!((got.topic, &got.target), (a.topic, &a.target));
        assert_eq!((got.created_ms, got.updated_ms), (5, 5));
        assert_eq!((got.deliveries, got.last_status), (0, None));
        assert_eq!(restored.matching("b.myshopify.com", topic).len(), 1);
        let next = restored
            .create("a.myshopify.com", topic, target("http://x/3"), 7)
            .unwrap();
        assert_eq!(next.id, WEBHOOK_SUBSCRIPTION_ID_BASE + 3);

        // Without `last` (a hand-edited file), ids still never collide.
        let mut value: Value = serde_json::from_str(&text).unwrap();
        value.as_object_mut().unwrap().remove("last");
        let mut edited: WebhookStore = serde_json::from_value(value).unwrap();
        let next = edited
            .create("a.myshopify.com", topic, target("http://x/3"), 7)
            .unwrap();
        assert_eq!(next.id, WEBHOOK_SUBSCRIPTION_ID_BASE + 3);
    }

    #[test]
    fn payloads_use_rest_shapes() {
        let data = ShopData::generate(42, 3, 3, 3);
        let id = PRODUCT_ID_BASE + 1;
        let topic = WebhookSubscriptionTopic::ProductsUpdate;
        let p = rest_payload(&data, topic, Some(id), "a.myshopify.com", 0).unwrap();
        assert_eq!(p["id"].as_u64(), Some(id));
        assert!(["active", "draft", "archived"].contains(&p["status"].as_str().unwrap()));
        assert_eq!(p["variants"][0]["product_id"].as_u64(), Some(id));
        assert!(p["updated_at"].as_str().unwrap().ends_with("-05:00"));
        let deleted = rest_payload(
            &data,
            WebhookSubscriptionTopic::ProductsDelete,
            Some(7),
            "",
            0,
        )
        .unwrap();
        assert_eq!(deleted, json!({"id": 7}));
        assert!(rest_payload(&data, topic, Some(1), "", 0).is_err());
        assert!(rest_payload(&data, topic, None, "", 0).is_err());
        assert_eq!(rest_time(1_767_225_600_000), "2025-12-31T19:00:00-05:00");
    }
}
