//! The sync core: what to ask Keap and Shopify for, how to read the answer, how far a run
//! got, and the SQL that stores a page. Sans-IO like the rest of the crate: time, jitter
//! and responses come in as arguments.
//!
//! One run of one [`Resource`] is a loop the sync Worker drives:
//!
//! 1. [`page_request`] builds the request for the next page from the [`RunCheckpoint`];
//! 2. the Worker sends it and hands status, headers and body to [`parse_page`];
//! 3. the Worker upserts the [`Page`] in one statement ([`upsert_sql`] with
//!    [`records_json`]) and commits;
//! 4. [`advance`] moves the checkpoint, the Worker persists it (and
//!    [`cursor_to_persist`], when that says so), and loops until the checkpoint is `done`;
//! 5. after a successful full run, [`mark_missing_deleted_sql`] soft-deletes what the run
//!    did not see.
//!
//! Failures come back as [`PageError`]; [`RetryPolicy`] says whether and when to retry.
//! [`run_machine`] puts these steps together: the run as a state machine ([`PageRun`])
//! the Worker drives by carrying out its [`RunAction`]s.
//! The provider facts followed here: keap-sdk's OpenAPI file
//! (<https://github.com/infusionsoft/keap-sdk/blob/main/sdks/v2/swagger.yml>), Keap's quotas
//! (<https://developer.infusionsoft.com/api-token-quota-and-usage-measurements>) and Shopify's
//! API rate limits (<https://shopify.dev/docs/api/usage/rate-limits>).

mod hook_sync;
mod keap;
mod plan;
mod raw_document;
mod resource;
mod retry;
pub mod run_machine;
mod shopify;
pub mod shopify_bulk;
mod upsert;
pub(crate) mod values;

#[cfg(test)]
mod tests;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::Timestamp;

pub use hook_sync::{
    HookSyncAnswer, HookSyncIn, HookSyncRequest, HOOK_SYNC_BUSY_RETRY_MS, HOOK_SYNC_DELAY_MS,
    HOOK_SYNC_MAX_BACKOFF_MS,
};
pub(crate) use keap::{classify_error as keap_classify_error, encode as keap_encode};
pub use keap::{keap_get_request, keap_wait_ms, parse_keap_record};
pub use plan::{
    advance, cursor_to_persist, page_request, parse_page, try_page_request, RunCheckpoint,
};
pub use raw_document::RawDocument;
pub use resource::{Resource, SyncMode};
pub use retry::RetryPolicy;
pub use run_machine::{
    Commit, FetchOutcome, Finish, InvocationState, PageRun, Put, RunAction, RunEvent, RunLimits,
    RunRecord, RunState, TokenRefusal, WaitReason,
};
/// The Shopify GraphQL request (also used by webhook registration).
pub(crate) use shopify::graphql_request as shopify_graphql_request;
// The event loop's polling fallback reads answers and paces itself like the sync.
pub(crate) use shopify::{
    classify as shopify_classify, graphql_url as shopify_graphql_url, throttle as shopify_throttle,
    updated_filter as shopify_updated_filter,
};
pub use shopify::{shopify_numeric_id, shopify_page_size, SHOPIFY_MAX_QUERY_COST};
// The webhook classifier maps Shopify payloads through the same node readers as the sync.
pub(crate) use shopify::{
    inventory_records as shopify_inventory_records, record as shopify_record,
};
pub use upsert::{
    mark_missing_deleted_sql, purge_sql, records_json, records_payload, soft_delete_sql,
    upsert_sql, RecordsPayload,
};

/// Default look-back subtracted from a cursor before asking for changes: 5 minutes.
pub const DEFAULT_OVERLAP_MS: i64 = 5 * 60 * 1000;
/// Keap's largest page (`page_size` max 1000 in keap-sdk `sdks/v2/swagger.yml`).
pub const KEAP_MAX_PAGE_SIZE: u32 = 1000;
/// Shopify's largest connection page (`first` max 250).
pub const SHOPIFY_MAX_PAGE_SIZE: u32 = 250;

/// Settings of the source side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// Keap REST base without a trailing slash, e.g. `https://api.keap.com/crm`; list paths
    /// are `/rest/v2/<resource>` below it.
    pub keap_api_base: String,
    /// Shopify Admin base with a literal `{shop}` placeholder, e.g. `https://{shop}` or
    /// `http://127.0.0.1:8790/shopify/{shop}` for the sandbox.
    pub shopify_admin_base: String,
    /// Shopify Admin API version, e.g. `2025-01`.
    pub shopify_api_version: String,
    /// Records per page: Keap takes up to 1000; Shopify is capped at 250 and further by
    /// query cost ([`shopify_page_size`]).
    pub page_size: u32,
    /// Look-back subtracted from the start cursor so clock skew never loses a record
    /// ([`DEFAULT_OVERLAP_MS`]).
    pub overlap_ms: i64,
}

impl Default for SourceConfig {
    /// Production endpoints, 250 records per page, 5 minutes of overlap.
    fn default() -> Self {
        Self {
            keap_api_base: "https://api.keap.com/crm".to_owned(),
            shopify_admin_base: "https://{shop}".to_owned(),
            shopify_api_version: "2025-01".to_owned(),
            page_size: 250,
            overlap_ms: DEFAULT_OVERLAP_MS,
        }
    }
}

/// A parsed page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// The records to store, in the order the provider sent them (for Keap opportunities,
    /// only those newer than the start cursor).
    pub records: Vec<Record>,
    /// Keap `next_page_token` / Shopify `endCursor` of the next page; `None` on the last.
    pub next_page_token: Option<String>,
    /// A newest-first walk (Keap opportunities) reached the start cursor: the run is done.
    pub reached_cursor: bool,
    /// Shopify's cost report for this query, to pace the next one.
    pub throttle: Option<ShopifyThrottle>,
}

/// One provider record, ready for [`records_json`].
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Record {
    /// The provider's id as text (Shopify: the numeric part of the GID).
    pub provider_id: String,
    /// The provider's own update time, when the record has one.
    pub source_updated_at: Option<Timestamp>,
    /// The typed columns of the resource's table, named as in the migration.
    pub columns: Map<String, Value>,
    /// The record as received.
    pub raw: RawDocument,
}

/// Shopify's `extensions.cost` (<https://shopify.dev/docs/api/usage/rate-limits>).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShopifyThrottle {
    /// Size of the bucket (`throttleStatus.maximumAvailable`).
    pub maximum_available: f64,
    /// Points left after this query (`throttleStatus.currentlyAvailable`).
    pub currently_available: f64,
    /// Points restored per second (`throttleStatus.restoreRate`).
    pub restore_rate: f64,
    /// What the query was estimated to cost (`requestedQueryCost`).
    pub requested_cost: f64,
    /// What it did cost (`actualQueryCost`); `None` when it did not run.
    pub actual_cost: Option<f64>,
}

impl ShopifyThrottle {
    /// Milliseconds until the bucket holds `cost` points again (0 when it already does).
    pub fn wait_ms_for(&self, cost: f64) -> u64 {
        let deficit = cost - self.currently_available;
        if !deficit.is_finite() || deficit <= 0.0 {
            return 0;
        }
        if !self.restore_rate.is_finite() || self.restore_rate <= 0.0 {
            return u64::MAX;
        }
        // Float to int casts saturate in Rust, so a huge deficit cannot wrap.
        (deficit / self.restore_rate * 1000.0).ceil() as u64
    }

    /// Milliseconds to wait before sending the same query again.
    pub fn wait_before_next_ms(&self) -> u64 {
        self.wait_ms_for(self.requested_cost)
    }
}

/// Why a page could not be used; drives retry decisions in the Worker ([`RetryPolicy`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PageError {
    /// 401: refresh the access token once and retry.
    #[error("the provider rejected the access token")]
    Unauthorized,
    /// 429, or Shopify `THROTTLED`: wait `retry_after_ms` when known, else back off.
    #[error("the provider is rate limiting")]
    RateLimited {
        /// How long the provider asks us to wait, when it says (`Retry-After`, Keap's
        /// throttle headers, or Shopify's cost and restore rate).
        retry_after_ms: Option<u64>,
    },
    /// 5xx or 408 (or a Shopify internal error): back off and retry.
    #[error("the provider failed temporarily (HTTP {status})")]
    Server {
        /// HTTP status received.
        status: u16,
    },
    /// Any other refusal (other 4xx, GraphQL errors): the run fails.
    #[error("the provider refused the request (HTTP {status}): {message}")]
    Rejected {
        /// HTTP status received.
        status: u16,
        /// The provider's message, shortened and without control characters.
        message: String,
    },
    /// A 2xx answer that is not the expected page.
    #[error("the provider's answer is not a usable page: {0}")]
    Malformed(String),
}

/// Why [`try_page_request`] cannot build a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageRequestError {
    /// A Shopify resource needs the shop domain, and none (or an invalid one) was given.
    #[error("a Shopify request needs a valid shop domain")]
    MissingShop,
}

/// The value of the first header named `name` (ASCII case-insensitive), trimmed.
pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim())
}

/// Longest provider message kept in a [`PageError`] (they end up in logs and `sync_runs`).
const MAX_MESSAGE_CHARS: usize = 200;

/// Cuts a provider message to a loggable length, dropping control characters.
pub(crate) fn shorten(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect()
}

/// `Retry-After` as milliseconds, when it is a number of seconds (an HTTP date would need
/// a clock; none of these providers is documented to send one).
pub(crate) fn retry_after_ms(headers: &[(String, String)]) -> Option<u64> {
    let seconds: f64 = header(headers, "retry-after")?.parse().ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some((seconds * 1000.0).ceil() as u64)
}
