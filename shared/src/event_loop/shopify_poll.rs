//! Shopify polling fallback for a connection without working webhook subscriptions:
//! products created and updated, collections created, orders created, and inventory levels
//! falling to the user's low-stock threshold, through the GraphQL Admin API
//! (<https://shopify.dev/docs/api/admin-graphql>) with `updated_at` search filters
//! (<https://shopify.dev/docs/api/usage/search-syntax>) and the sync's cost-based pacing
//! (<https://shopify.dev/docs/api/usage/rate-limits>).
//!
//! The Worker, per stream and tick: [`ShopifyPollState::begin`] (`None`: nothing to ask this
//! time), then for each page [`ShopifyPollState::request`] → send →
//! [`ShopifyPollState::on_page`] → store the page's events → wait `wait_ms` and fetch again
//! while [`PollNext::Fetch`] → save the state after [`PollNext::Done`].
//!
//! # One event per change, webhook or poll
//! A poll has no `X-Shopify-Event-Id`. Each polled event carries `dedup_key` =
//! `content_key` = [`crate::webhook::shopify_content_key`] (event type, resource id and,
//! except for creations, `updated_at`), and the webhook classifier puts the same key in the
//! `content_key` of the deliveries polling also reports. The coordinator must, on storing an
//! event in the connection's instance (polled events go there too, never to `user:<id>`):
//! treat it as a duplicate when its `dedup_key` **or** its `content_key` is already in the
//! instance's dedup table, and on storing it, record **both** keys. Whichever path arrives
//! first is stored; the other is answered as a duplicate.
//!
//! # Cursors
//! A stream's first poll is its baseline: it records the cursor (and for collections the
//! highest id) and reports nothing older. After a complete walk that started at `S`, the
//! cursor moves to `S − overlap` (never further, never backwards); a walk cut short by the
//! page limit moves it to the newest `updatedAt` it read (results are sorted by
//! `UPDATED_AT`), still capped there. Inventory items cannot be sorted, so a cut-short walk
//! leaves their cursor where it was. Records read twice in the overlap give the same keys.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::EventEnvelope;
use crate::oauth::HttpRequestSpec;
use crate::sync::values::at;
use crate::sync::{
    shopify_classify, shopify_graphql_request, shopify_inventory_records, shopify_numeric_id,
    shopify_throttle, shopify_updated_filter, PageError,
};
use crate::webhook::shopify_content_key;
use crate::{Secret, Timestamp};

/// Look-back of a poll's cursor behind its own start time: one minute.
pub const DEFAULT_POLL_OVERLAP_MS: i64 = 60 * 1000;
/// Records per page.
pub const DEFAULT_POLL_PAGE_SIZE: u32 = 50;
/// Pages one stream reads per tick; the rest waits for the next tick.
pub const DEFAULT_POLL_MAX_PAGES: u32 = 5;

/// What is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PollStream {
    /// `shopify.product.created` / `shopify.product.updated`.
    Products,
    /// `shopify.collection.created`.
    Collections,
    /// `shopify.order.created`.
    Orders,
    /// `shopify.inventory.low`.
    InventoryLevels,
}

impl PollStream {
    /// Every stream.
    pub const ALL: [PollStream; 4] = [
        PollStream::Products,
        PollStream::Collections,
        PollStream::Orders,
        PollStream::InventoryLevels,
    ];
}

/// Settings of the polling fallback (missing fields take their defaults when parsed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PollConfig {
    /// A level is low at or below this (`available <= threshold`, as the webhook classifier
    /// judges `inventory_levels/update`, so both paths mean the same by the event type).
    pub low_stock_threshold: i64,
    /// [`DEFAULT_POLL_OVERLAP_MS`].
    pub overlap_ms: i64,
    /// [`DEFAULT_POLL_PAGE_SIZE`] (1..=250).
    pub page_size: u32,
    /// [`DEFAULT_POLL_MAX_PAGES`].
    pub max_pages: u32,
    /// The streams walked each tick (default: all).
    pub streams: BTreeSet<PollStream>,
}

fn all_streams() -> BTreeSet<PollStream> {
    PollStream::ALL.into_iter().collect()
}

impl Default for PollConfig {
    /// Threshold 5, one minute of overlap, 50 records a page, 5 pages a tick, every stream.
    fn default() -> Self {
        Self {
            low_stock_threshold: 5,
            overlap_ms: DEFAULT_POLL_OVERLAP_MS,
            page_size: DEFAULT_POLL_PAGE_SIZE,
            max_pages: DEFAULT_POLL_MAX_PAGES,
            streams: all_streams(),
        }
    }
}

/// A stream's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCursor {
    /// When the stream's baseline was taken; nothing older is reported.
    pub baseline_at: Timestamp,
    /// Records updated at or after this are asked for.
    pub cursor: Timestamp,
}

/// What the fallback remembers for one connection (small: cursors, one id, and only the
/// levels currently low).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopifyPollState {
    /// By stream (collections use `last_collection_id` instead).
    pub cursors: BTreeMap<PollStream, StreamCursor>,
    /// The highest collection id seen (ids grow; a higher one is a new collection).
    pub last_collection_id: Option<u64>,
    /// `"<item id>:<location id>"` → level, for levels last seen low. A level leaves the map
    /// when seen above the threshold, so the next fall reports again.
    pub low_levels: BTreeMap<String, i64>,
    /// The stream a pass cut short (the rate budget ran out) did not reach: the next pass
    /// starts there, so no stream starves behind the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_at: Option<PollStream>,
}

/// One walk of one stream within a tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollRun {
    /// Which stream.
    pub stream: PollStream,
    /// When the walk started (`now` of [`ShopifyPollState::begin`]).
    pub started_at: Timestamp,
    /// The cursor the walk reads from (`None` for collections).
    pub since: Option<Timestamp>,
    /// Taking the collections baseline (the highest id) rather than reading new ones.
    pub baseline: bool,
    /// Collections: the highest id known when the walk began (the filter of every page).
    pub since_id: Option<u64>,
    /// The next page's `after`.
    pub after: Option<String>,
    /// Pages read so far.
    pub pages: u32,
    /// Newest `updatedAt` read so far.
    pub newest_seen: Option<Timestamp>,
}

/// What to do after a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PollNext {
    /// Fetch the next page after waiting `wait_ms` (Shopify's restore rate).
    Fetch {
        /// Milliseconds until the bucket holds the query's cost again.
        wait_ms: u64,
    },
    /// The walk is over; save the state.
    Done,
}

/// A parsed page.
#[derive(Debug, Clone, PartialEq)]
pub struct PollPage {
    /// Events to store (source `shopify`), before saving the state.
    pub events: Vec<EventEnvelope>,
    /// What next.
    pub next: PollNext,
}

const PRODUCTS_QUERY: &str =
    "query EdgeSyncPollProducts($first: Int!, $after: String, $query: String) { \
products(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) { \
nodes { id title handle status vendor productType createdAt updatedAt } \
pageInfo { hasNextPage endCursor } } }";

const ORDERS_QUERY: &str =
    "query EdgeSyncPollOrders($first: Int!, $after: String, $query: String) { \
orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) { \
nodes { id name email createdAt updatedAt displayFinancialStatus \
totalPriceSet { shopMoney { amount currencyCode } } } \
pageInfo { hasNextPage endCursor } } }";

const COLLECTIONS_QUERY: &str =
    "query EdgeSyncPollCollections($first: Int!, $after: String, $query: String) { \
collections(first: $first, after: $after, query: $query, sortKey: ID) { \
nodes { id title handle updatedAt } pageInfo { hasNextPage endCursor } } }";

const COLLECTIONS_BASELINE_QUERY: &str = "query EdgeSyncPollCollectionsBaseline { \
collections(first: 1, sortKey: ID, reverse: true) { nodes { id } pageInfo { hasNextPage endCursor } } }";

const INVENTORY_QUERY: &str =
    "query EdgeSyncPollInventory($first: Int!, $after: String, $query: String) { \
inventoryItems(first: $first, after: $after, query: $query) { \
nodes { id sku updatedAt inventoryLevels(first: 10) { nodes { id updatedAt location { id } \
quantities(names: [\"available\"]) { name quantity } } } } \
pageInfo { hasNextPage endCursor } } }";

/// The query document of a stream (inventory: the sync's own selection).
pub fn poll_query(stream: PollStream) -> &'static str {
    match stream {
        PollStream::Products => PRODUCTS_QUERY,
        PollStream::Orders => ORDERS_QUERY,
        PollStream::Collections => COLLECTIONS_QUERY,
        PollStream::InventoryLevels => INVENTORY_QUERY,
    }
}

fn root_field(stream: PollStream) -> &'static str {
    match stream {
        PollStream::Products => "products",
        PollStream::Orders => "orders",
        PollStream::Collections => "collections",
        PollStream::InventoryLevels => "inventoryItems",
    }
}

/// Estimated cost of a node (Shopify: object 1, connection 2 + first × node).
fn node_cost(stream: PollStream) -> u32 {
    match stream {
        PollStream::Orders => 3,
        PollStream::InventoryLevels => 1 + 2 + 10 * 3,
        _ => 1,
    }
}

/// `first` for a stream: the configured size, capped at 250 and by the 1,000-point limit.
fn page_size(stream: PollStream, config: &PollConfig) -> u32 {
    let by_cost = (crate::sync::SHOPIFY_MAX_QUERY_COST - 2) / node_cost(stream);
    config
        .page_size
        .clamp(1, crate::sync::SHOPIFY_MAX_PAGE_SIZE)
        .min(by_cost)
}

/// The shop's GraphQL endpoint (the sync's URL rule: `SourceConfig::shopify_admin_base`
/// with `{shop}`, `shopify_api_version`); `None` for an invalid shop.
pub fn poll_url(config: &crate::sync::SourceConfig, shop: &str) -> Option<String> {
    crate::sync::shopify_graphql_url(config, Some(shop))
}

fn numeric(gid: Option<&Value>) -> Option<u64> {
    gid.and_then(Value::as_str)
        .and_then(shopify_numeric_id)
        .and_then(|id| id.parse().ok())
}

fn time(node: &Value, key: &str) -> Option<Timestamp> {
    at(node, &[key])
        .and_then(Value::as_str)
        .and_then(Timestamp::parse_iso8601)
}

fn envelope(
    event_type: &str,
    resource_id: &str,
    updated_at: Option<Timestamp>,
    event_data: Value,
) -> EventEnvelope {
    let key = shopify_content_key(event_type, resource_id, updated_at);
    EventEnvelope {
        source: "shopify".to_owned(),
        event_type: Some(event_type.to_owned()),
        dedup_key: Some(key.clone()),
        content_key: Some(key),
        event_data,
        occurred_at: updated_at,
        record_change: None,
        user_id: None,
        rate_limit_per_minute: 0,
    }
}

impl ShopifyPollState {
    /// The streams of `config` in the order this pass walks them: from
    /// [`ShopifyPollState::resume_at`] on, then the others.
    pub fn pass_order(&self, config: &PollConfig) -> Vec<PollStream> {
        let streams: Vec<PollStream> = config.streams.iter().copied().collect();
        let start = self
            .resume_at
            .and_then(|s| streams.iter().position(|&x| x == s))
            .unwrap_or(0);
        let mut order = streams[start..].to_vec();
        order.extend_from_slice(&streams[..start]);
        order
    }

    /// A pass ended before walking `stream` (budget spent): the next pass starts with it.
    /// `None`: the pass walked every stream.
    pub fn pass_ended_before(&mut self, stream: Option<PollStream>) {
        self.resume_at = stream;
    }

    /// Starts a walk of `stream` at `now`, or `None` when this poll only takes the
    /// stream's baseline (products, orders, inventory: the cursor is set to `now`).
    pub fn begin(&mut self, stream: PollStream, now: Timestamp) -> Option<PollRun> {
        let run = |since, baseline| PollRun {
            stream,
            started_at: now,
            since,
            baseline,
            since_id: self.last_collection_id,
            after: None,
            pages: 0,
            newest_seen: None,
        };
        if stream == PollStream::Collections {
            return Some(run(None, self.last_collection_id.is_none()));
        }
        match self.cursors.get(&stream) {
            Some(c) => Some(run(Some(c.cursor), false)),
            None => {
                self.cursors.insert(
                    stream,
                    StreamCursor {
                        baseline_at: now,
                        cursor: now,
                    },
                );
                None
            }
        }
    }

    /// The request for the run's next page.
    pub fn request(
        &self,
        run: &PollRun,
        url: String,
        access_token: &Secret,
        config: &PollConfig,
    ) -> HttpRequestSpec {
        let body = if run.baseline {
            json!({ "query": COLLECTIONS_BASELINE_QUERY, "variables": {} })
        } else {
            let filter = match run.stream {
                PollStream::Collections => run.since_id.map(|id| format!("id:>{id}")),
                _ => run.since.map(shopify_updated_filter),
            };
            json!({
                "query": poll_query(run.stream),
                "variables": {
                    "first": page_size(run.stream, config),
                    "after": run.after,
                    "query": filter,
                },
            })
        };
        shopify_graphql_request(url, access_token, &body)
    }

    /// Reads an answer: the events it holds, and whether to fetch another page. Moves the
    /// cursor when the walk ends (see the module docs). Errors are the sync's
    /// [`PageError`]s (`RateLimited` carries Shopify's wait); the walk can be retried later
    /// from its last saved state.
    pub fn on_page(
        &mut self,
        run: &mut PollRun,
        config: &PollConfig,
        status: u16,
        headers: &[(String, String)],
        body: &str,
    ) -> Result<PollPage, PageError> {
        let value = shopify_classify(status, headers, body)?;
        let field = root_field(run.stream);
        let connection = at(&value, &["data", field])
            .ok_or_else(|| PageError::Malformed(format!("no `data.{field}`")))?;
        let nodes = connection
            .get("nodes")
            .and_then(Value::as_array)
            .ok_or_else(|| PageError::Malformed(format!("no `{field}.nodes`")))?;
        let has_next = at(connection, &["pageInfo", "hasNextPage"])
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let end_cursor = at(connection, &["pageInfo", "endCursor"])
            .and_then(Value::as_str)
            .map(str::to_owned);
        run.pages += 1;
        let mut events = Vec::new();
        if run.baseline {
            self.last_collection_id = Some(
                nodes
                    .iter()
                    .filter_map(|n| numeric(n.get("id")))
                    .max()
                    .unwrap_or(0),
            );
            return Ok(PollPage {
                events,
                next: PollNext::Done,
            });
        }
        for node in nodes {
            if let Some(updated) = time(node, "updatedAt") {
                run.newest_seen = Some(run.newest_seen.map_or(updated, |t| t.max(updated)));
            }
            match run.stream {
                PollStream::Products => events.extend(self.product_event(run, node)),
                PollStream::Orders => events.extend(self.order_event(run, node)),
                PollStream::Collections => events.extend(self.collection_event(node)),
                PollStream::InventoryLevels => events.extend(self.level_events(config, node)),
            }
        }
        let more = has_next && end_cursor.as_deref().is_some_and(|c| !c.is_empty());
        if more && run.pages < config.max_pages {
            run.after = end_cursor;
            let wait_ms = shopify_throttle(&value).map_or(0, |t| t.wait_before_next_ms());
            return Ok(PollPage {
                events,
                next: PollNext::Fetch { wait_ms },
            });
        }
        self.finish(run, config, !more);
        Ok(PollPage {
            events,
            next: PollNext::Done,
        })
    }

    /// Moves the stream's cursor at the end of a walk (`complete`: no page left).
    fn finish(&mut self, run: &PollRun, config: &PollConfig, complete: bool) {
        let Some(cursor) = self.cursors.get_mut(&run.stream) else {
            return;
        };
        let cap = run.started_at.plus_millis(-config.overlap_ms.max(0));
        let target = if complete {
            Some(cap)
        } else if run.stream == PollStream::InventoryLevels {
            None
        } else {
            run.newest_seen.map(|t| t.min(cap))
        };
        if let Some(target) = target {
            cursor.cursor = cursor.cursor.max(target).max(cursor.baseline_at);
        }
    }

    fn baseline(&self, stream: PollStream) -> Option<Timestamp> {
        self.cursors.get(&stream).map(|c| c.baseline_at)
    }

    /// Products: created when `createdAt` is after the walk's cursor, else updated.
    fn product_event(&self, run: &PollRun, node: &Value) -> Option<EventEnvelope> {
        let id = numeric(node.get("id"))?;
        let created = time(node, "createdAt");
        let updated = time(node, "updatedAt");
        if updated
            .zip(self.baseline(run.stream))
            .is_some_and(|(u, b)| u < b)
        {
            return None;
        }
        let is_new = created.zip(run.since).is_some_and(|(c, s)| c > s);
        let event_type = if is_new {
            "shopify.product.created"
        } else {
            "shopify.product.updated"
        };
        let data = json!({
            "id": id,
            "admin_graphql_api_id": node.get("id"),
            "title": node.get("title"),
            "handle": node.get("handle"),
            "status": node.get("status").and_then(Value::as_str).map(str::to_ascii_lowercase),
            "vendor": node.get("vendor"),
            "product_type": node.get("productType"),
            "created_at": node.get("createdAt"),
            "updated_at": node.get("updatedAt"),
            "polled": true,
        });
        Some(envelope(event_type, &id.to_string(), updated, data))
    }

    /// Orders: only those created after the walk's cursor.
    fn order_event(&self, run: &PollRun, node: &Value) -> Option<EventEnvelope> {
        let id = numeric(node.get("id"))?;
        let created = time(node, "createdAt")?;
        if run.since.is_none_or(|s| created <= s) {
            return None;
        }
        let data = json!({
            "id": id,
            "admin_graphql_api_id": node.get("id"),
            "name": node.get("name"),
            "email": node.get("email"),
            "financial_status": node.get("displayFinancialStatus").and_then(Value::as_str).map(str::to_ascii_lowercase),
            "total_price": at(node, &["totalPriceSet", "shopMoney", "amount"]),
            "currency": at(node, &["totalPriceSet", "shopMoney", "currencyCode"]),
            "created_at": node.get("createdAt"),
            "updated_at": node.get("updatedAt"),
            "polled": true,
        });
        Some(envelope(
            "shopify.order.created",
            &id.to_string(),
            time(node, "updatedAt"),
            data,
        ))
    }

    /// Collections: every one above the highest id seen is new.
    fn collection_event(&mut self, node: &Value) -> Option<EventEnvelope> {
        let id = numeric(node.get("id"))?;
        if self.last_collection_id.is_some_and(|last| id <= last) {
            return None;
        }
        self.last_collection_id = Some(id);
        let data = json!({
            "id": id,
            "admin_graphql_api_id": node.get("id"),
            "title": node.get("title"),
            "handle": node.get("handle"),
            "updated_at": node.get("updatedAt"),
            "polled": true,
        });
        Some(envelope(
            "shopify.collection.created",
            &id.to_string(),
            time(node, "updatedAt"),
            data,
        ))
    }

    /// Inventory: `shopify.inventory.low` when a level is low now and was not last time.
    /// A level never seen before counts as not low: it changed since the cursor (it is in
    /// the answer), so a low one has just fallen.
    fn level_events(&mut self, config: &PollConfig, item: &Value) -> Vec<EventEnvelope> {
        let threshold = config.low_stock_threshold;
        let mut events = Vec::new();
        for record in shopify_inventory_records(item) {
            let available = record.columns.get("available").and_then(Value::as_i64);
            let key = record.provider_id.clone();
            match available {
                Some(level) if level <= threshold => {
                    if self.low_levels.insert(key.clone(), level).is_some() {
                        continue;
                    }
                    let number = |name: &str| {
                        record
                            .columns
                            .get(name)
                            .and_then(Value::as_str)
                            .and_then(|s| s.parse::<u64>().ok())
                    };
                    let raw = record.raw.to_value();
                    let data = json!({
                        "inventory_item_id": number("inventory_item_id"),
                        "location_id": number("location_id"),
                        "available": level,
                        "low_stock_threshold": threshold,
                        "updated_at": record.source_updated_at.map(Timestamp::to_iso8601),
                        "admin_graphql_api_id": raw.get("id"),
                        "sku": at(&raw, &["inventoryItem", "sku"]),
                        "polled": true,
                    });
                    events.push(envelope(
                        "shopify.inventory.low",
                        &key,
                        record.source_updated_at,
                        data,
                    ));
                }
                _ => {
                    self.low_levels.remove(&key);
                }
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::classify_shopify;

    const PRODUCTS: &str = include_str!("../../tests/fixtures/shopify_products_page.json");
    const ORDERS: &str = include_str!("../../tests/fixtures/shopify_orders_page.json");
    const INVENTORY: &str = include_str!("../../tests/fixtures/shopify_inventory_page.json");
    const THROTTLED: &str = include_str!("../../tests/fixtures/shopify_throttled.json");
    const PRODUCTS_CREATE: &str =
        include_str!("../../tests/fixtures/webhooks/shopify_products_create.json");
    const LEVELS_UPDATE: &str =
        include_str!("../../tests/fixtures/webhooks/shopify_inventory_levels_update.json");

    fn t(iso: &str) -> Timestamp {
        Timestamp::parse_iso8601(iso).expect("valid time")
    }

    fn last_page(body: &str) -> String {
        body.replace("\"hasNextPage\": true", "\"hasNextPage\": false")
    }

    fn state_from(stream: PollStream, baseline: &str) -> ShopifyPollState {
        let mut state = ShopifyPollState::default();
        assert_eq!(
            state.begin(stream, t(baseline)),
            None,
            "the first poll is a baseline"
        );
        state
    }

    #[test]
    fn requests_filter_since_the_cursor_and_sort_by_updated_at() {
        let mut state = state_from(PollStream::Products, "2025-11-20T09:00:00Z");
        let run = state
            .begin(PollStream::Products, t("2025-11-20T09:10:00Z"))
            .expect("a walk");
        let config = PollConfig::default();
        let request = state.request(
            &run,
            "https://acme.myshopify.com/admin/api/2025-01/graphql.json".into(),
            &Secret::new("shpat_x"),
            &config,
        );
        assert_eq!(request.method, "POST");
        let body: Value = serde_json::from_str(&request.body).expect("json");
        assert_eq!(
            body["variables"]["query"],
            "updated_at:>='2025-11-20T09:00:00Z'"
        );
        assert_eq!(body["variables"]["first"], 50);
        assert!(body["query"]
            .as_str()
            .is_some_and(|q| q.contains("sortKey: UPDATED_AT")));
        assert!(!format!("{request:?}").contains("shpat_x"));
        assert_eq!(
            poll_url(&crate::sync::SourceConfig::default(), "acme.myshopify.com").as_deref(),
            Some("https://acme.myshopify.com/admin/api/2025-01/graphql.json")
        );
    }

    #[test]
    fn products_created_after_the_cursor_are_created_others_updated() {
        let mut state = state_from(PollStream::Products, "2025-11-20T09:00:00Z");
        let mut run = state
            .begin(PollStream::Products, t("2025-11-20T09:20:00Z"))
            .expect("walk");
        let config = PollConfig::default();
        let page = state
            .on_page(&mut run, &config, 200, &[], PRODUCTS)
            .expect("parsed");
        let kinds: Vec<_> = page
            .events
            .iter()
            .map(|e| e.event_type.as_deref().unwrap_or_default())
            .collect();
        assert_eq!(
            kinds,
            ["shopify.product.updated", "shopify.product.created"]
        );
        assert_eq!(
            page.events[1].dedup_key.as_deref(),
            Some("shopify:content:shopify.product.created:788032119674292922")
        );
        assert_eq!(
            page.events[0].event_data["id"].as_u64(),
            Some(9_007_199_254_740_993)
        );
        // hasNextPage with pages left: fetch again, paced by the cost report.
        assert_eq!(page.next, PollNext::Fetch { wait_ms: 0 });
        assert!(run.after.is_some());
        let last = state
            .on_page(&mut run, &config, 200, &[], &last_page(PRODUCTS))
            .expect("parsed");
        assert_eq!(last.next, PollNext::Done);
        // Complete: the cursor moves to the start minus the overlap.
        assert_eq!(
            state.cursors[&PollStream::Products].cursor,
            t("2025-11-20T09:19:00Z")
        );
        // The same records again in the overlap: the same keys.
        assert_eq!(last.events, page.events);
    }

    #[test]
    fn a_poll_and_a_webhook_of_the_same_change_share_a_key() {
        let mut state = state_from(PollStream::Products, "2025-06-01T00:00:00Z");
        let mut run = state
            .begin(PollStream::Products, t("2025-11-20T09:20:00Z"))
            .expect("walk");
        let page = state
            .on_page(&mut run, &PollConfig::default(), 200, &[], PRODUCTS)
            .expect("parsed");
        let polled = &page.events[0];
        assert_eq!(
            polled.event_type.as_deref(),
            Some("shopify.product.created")
        );
        let hook = classify_shopify(
            "products/create",
            None,
            Some("evt-1"),
            None,
            PRODUCTS_CREATE.as_bytes(),
            0,
        )
        .expect("classified");
        assert_eq!(
            hook.dedup_key.as_deref(),
            Some("shopify:products/create:evt-1")
        );
        assert_eq!(hook.content_key, polled.content_key);
        assert_eq!(polled.dedup_key, polled.content_key);
        // An update: the same updated_at read from REST (offset) and GraphQL (UTC).
        let update = classify_shopify(
            "products/update",
            None,
            Some("evt-2"),
            None,
            PRODUCTS_CREATE.as_bytes(),
            0,
        )
        .expect("classified");
        assert_eq!(
            update.content_key.as_deref(),
            Some("shopify:content:shopify.product.updated:9007199254740993@1763630100")
        );
        assert_eq!(
            shopify_content_key(
                "shopify.product.updated",
                "9007199254740993",
                Some(t("2025-11-20T09:15:00Z"))
            ),
            "shopify:content:shopify.product.updated:9007199254740993@1763630100"
        );
    }

    #[test]
    fn orders_only_when_created_after_the_cursor() {
        let mut state = state_from(PollStream::Orders, "2025-11-19T00:00:00Z");
        let mut run = state
            .begin(PollStream::Orders, t("2025-11-19T10:00:00Z"))
            .expect("walk");
        let page = state
            .on_page(
                &mut run,
                &PollConfig::default(),
                200,
                &[],
                &last_page(ORDERS),
            )
            .expect("parsed");
        assert_eq!(page.events.len(), 1);
        assert_eq!(
            page.events[0].event_type.as_deref(),
            Some("shopify.order.created")
        );
        assert_eq!(
            page.events[0].dedup_key.as_deref(),
            Some("shopify:content:shopify.order.created:5862376374489123457")
        );
    }

    #[test]
    fn a_pass_cut_short_resumes_at_the_stream_it_did_not_reach() {
        let config = PollConfig::default();
        let mut state = ShopifyPollState::default();
        assert_eq!(state.pass_order(&config), PollStream::ALL.to_vec());
        state.pass_ended_before(Some(PollStream::InventoryLevels));
        assert_eq!(
            state.pass_order(&config),
            [
                PollStream::InventoryLevels,
                PollStream::Products,
                PollStream::Collections,
                PollStream::Orders
            ]
        );
        // A stream no longer configured: from the start.
        let only_products = PollConfig {
            streams: [PollStream::Products].into_iter().collect(),
            ..PollConfig::default()
        };
        assert_eq!(state.pass_order(&only_products), [PollStream::Products]);
        state.pass_ended_before(None);
        assert_eq!(state.pass_order(&config), PollStream::ALL.to_vec());
    }

    #[test]
    fn collections_take_a_baseline_id_then_report_higher_ones_once() {
        let mut state = ShopifyPollState::default();
        let config = PollConfig::default();
        let mut run = state
            .begin(PollStream::Collections, t("2026-01-01T00:00:00Z"))
            .expect("baseline walk");
        assert!(run.baseline);
        let token = Secret::new("t");
        let body: Value =
            serde_json::from_str(&state.request(&run, "u".into(), &token, &config).body)
                .expect("json");
        assert!(body["query"]
            .as_str()
            .is_some_and(|q| q.contains("reverse: true")));
        let baseline = r#"{"data":{"collections":{"nodes":[{"id":"gid://shopify/Collection/100"}],"pageInfo":{"hasNextPage":true,"endCursor":"c"}}}}"#;
        let page = state
            .on_page(&mut run, &config, 200, &[], baseline)
            .expect("parsed");
        assert!(page.events.is_empty());
        assert_eq!(page.next, PollNext::Done);
        assert_eq!(state.last_collection_id, Some(100));
        let mut run = state
            .begin(PollStream::Collections, t("2026-01-01T00:01:00Z"))
            .expect("walk");
        let body: Value =
            serde_json::from_str(&state.request(&run, "u".into(), &token, &config).body)
                .expect("json");
        assert_eq!(body["variables"]["query"], "id:>100");
        let answer = r#"{"data":{"collections":{"nodes":[{"id":"gid://shopify/Collection/100","title":"Old","updatedAt":"2026-01-01T00:00:30Z"},{"id":"gid://shopify/Collection/101","title":"Summer","handle":"summer","updatedAt":"2026-01-01T00:00:30Z"}],"pageInfo":{"hasNextPage":false,"endCursor":null}}}}"#;
        let page = state
            .on_page(&mut run, &config, 200, &[], answer)
            .expect("parsed");
        assert_eq!(page.events.len(), 1);
        assert_eq!(
            page.events[0].dedup_key.as_deref(),
            Some("shopify:content:shopify.collection.created:101")
        );
        assert_eq!(state.last_collection_id, Some(101));
        // Later pages of a walk keep the filter it began with (their `after` belongs to it).
        run.after = Some("c2".into());
        let body: Value =
            serde_json::from_str(&state.request(&run, "u".into(), &token, &config).body)
                .expect("json");
        assert_eq!(body["variables"]["query"], "id:>100");
        assert_eq!(body["variables"]["after"], "c2");
        let mut again = state
            .begin(PollStream::Collections, t("2026-01-01T00:02:00Z"))
            .expect("walk");
        assert!(state
            .on_page(&mut again, &config, 200, &[], answer)
            .expect("parsed")
            .events
            .is_empty());
    }

    fn inventory_answer(level: i64, updated: &str) -> String {
        last_page(INVENTORY)
            .replace("\"quantity\": 12", &format!("\"quantity\": {level}"))
            .replace(
                "\"updatedAt\": \"2025-11-20T09:15:00Z\"",
                &format!("\"updatedAt\": \"{updated}\""),
            )
    }

    /// Virtual time: a level polled every minute reports `shopify.inventory.low` once when
    /// it falls to the threshold, stays quiet while low, and again after it recovered and
    /// fell again.
    #[test]
    fn simulation_inventory_low_once_per_fall() {
        let config = PollConfig {
            low_stock_threshold: 5,
            ..PollConfig::default()
        };
        let start = t("2025-11-20T09:00:00Z");
        let mut state = state_from(PollStream::InventoryLevels, "2025-11-20T09:00:00Z");
        let levels = [12, 9, 5, 3, 3, 0, 8, 20, 4, 4];
        let mut reported = Vec::new();
        for (minute, level) in levels.into_iter().enumerate() {
            let now = start.plus_millis((minute as i64 + 1) * 60_000);
            let mut run = state.begin(PollStream::InventoryLevels, now).expect("walk");
            let answer = inventory_answer(level, &now.plus_millis(-1000).to_iso8601());
            let page = state
                .on_page(&mut run, &config, 200, &[], &answer)
                .expect("parsed");
            for event in &page.events {
                assert_eq!(event.event_type.as_deref(), Some("shopify.inventory.low"));
                assert_eq!(event.event_data["low_stock_threshold"], 5);
                reported.push((minute, event.event_data["available"].as_i64()));
            }
            // A restart: the state comes back from storage.
            state = serde_json::from_str(&serde_json::to_string(&state).expect("ser")).expect("de");
        }
        // The second level of the fixture (-3, never above) is low from its first sight.
        let first_item: Vec<_> = reported.iter().filter(|(_, l)| *l != Some(-3)).collect();
        assert_eq!(first_item, [&(2, Some(5)), &(8, Some(4))]);
        assert_eq!(reported.iter().filter(|(_, l)| *l == Some(-3)).count(), 1);
        assert!(state.low_levels.len() <= 2);
    }

    #[test]
    fn a_polled_low_level_and_the_webhook_share_a_key() {
        let config = PollConfig {
            low_stock_threshold: 12,
            ..PollConfig::default()
        };
        let mut state = state_from(PollStream::InventoryLevels, "2025-11-20T09:00:00Z");
        let mut run = state
            .begin(PollStream::InventoryLevels, t("2025-11-20T09:20:00Z"))
            .expect("walk");
        let page = state
            .on_page(&mut run, &config, 200, &[], INVENTORY)
            .expect("parsed");
        let hook = classify_shopify(
            "inventory_levels/update",
            None,
            Some("e"),
            None,
            LEVELS_UPDATE.as_bytes(),
            12,
        )
        .expect("classified");
        assert_eq!(hook.event_type.as_deref(), Some("shopify.inventory.low"));
        assert_eq!(page.events[0].content_key, hook.content_key);
        assert_eq!(
            hook.content_key.as_deref(),
            Some("shopify:content:shopify.inventory.low:43729076867345678:64357974123456789@1763630100")
        );
        // Inventory items cannot be sorted: a walk cut short leaves the cursor.
        let short = PollConfig {
            max_pages: 1,
            ..config
        };
        let mut run = state
            .begin(PollStream::InventoryLevels, t("2025-11-20T09:30:00Z"))
            .expect("walk");
        let page = state
            .on_page(&mut run, &short, 200, &[], INVENTORY)
            .expect("parsed");
        assert_eq!(page.next, PollNext::Done);
        assert_eq!(
            state.cursors[&PollStream::InventoryLevels].cursor,
            t("2025-11-20T09:00:00Z")
        );
    }

    #[test]
    fn cut_short_sorted_walks_advance_to_what_they_read_and_errors_pass_through() {
        let mut state = state_from(PollStream::Products, "2025-11-20T09:00:00Z");
        let config = PollConfig {
            max_pages: 1,
            ..PollConfig::default()
        };
        let mut run = state
            .begin(PollStream::Products, t("2025-11-21T00:00:00Z"))
            .expect("walk");
        let page = state
            .on_page(&mut run, &config, 200, &[], PRODUCTS)
            .expect("parsed");
        assert_eq!(page.next, PollNext::Done);
        assert_eq!(
            state.cursors[&PollStream::Products].cursor,
            t("2025-11-20T09:15:00Z")
        );
        let mut run = state
            .begin(PollStream::Products, t("2025-11-21T00:01:00Z"))
            .expect("walk");
        let before = state.clone();
        assert!(matches!(
            state.on_page(&mut run, &config, 200, &[], THROTTLED),
            Err(PageError::RateLimited { .. })
        ));
        assert!(matches!(
            state.on_page(&mut run, &config, 503, &[], ""),
            Err(PageError::Server { status: 503 })
        ));
        assert_eq!(state, before);
    }

    /// The coordinator's rule ([`EventEnvelope::dedup_keys`]): a webhook and a poll of the
    /// same product creation store one event, whichever arrives first.
    #[test]
    fn simulation_webhook_and_poll_store_one_event_in_either_order() {
        let hook = classify_shopify(
            "products/create",
            None,
            Some("evt-9"),
            None,
            PRODUCTS_CREATE.as_bytes(),
            0,
        )
        .expect("classified");
        let hook = EventEnvelope {
            source: hook.source,
            event_type: hook.event_type,
            dedup_key: hook.dedup_key,
            content_key: hook.content_key,
            event_data: hook.event_data,
            occurred_at: hook.occurred_at,
            record_change: hook.record_change,
            user_id: None,
            rate_limit_per_minute: 0,
        };
        let mut state = state_from(PollStream::Products, "2025-06-01T00:00:00Z");
        let mut run = state
            .begin(PollStream::Products, t("2025-11-20T09:20:00Z"))
            .expect("walk");
        let polled = state
            .on_page(&mut run, &PollConfig::default(), 200, &[], PRODUCTS)
            .expect("parsed")
            .events
            .remove(0);
        for order in [[&hook, &polled], [&polled, &hook]] {
            let mut keys: Vec<String> = Vec::new();
            let mut stored = 0;
            for envelope in order.into_iter().chain(order) {
                let candidate = envelope.dedup_keys();
                if candidate.iter().any(|k| keys.iter().any(|s| s == k)) {
                    continue;
                }
                keys.extend(candidate.into_iter().map(str::to_owned));
                stored += 1;
            }
            assert_eq!(stored, 1);
        }
    }
}
