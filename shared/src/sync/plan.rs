//! Where a run is, and how it moves: the checkpoint the Worker persists between pages, the
//! request for the next page, and when the resource cursor may be saved.
//!
//! The invariant behind [`cursor_to_persist`]: every record at or before a persisted cursor
//! has been committed. Walks that return records oldest first (Keap contacts, orders and
//! tasks; Shopify products, orders and customers) satisfy it after every committed page.
//! Other walks satisfy it only once they are complete, and a walk that is not ordered by
//! update time may miss records changed while it ran, so its cursor never passes the run's
//! start time. Requests always start `overlap_ms` before the cursor (keap-sdk
//! `sdks/v2/swagger.yml`: `start_update_time` is inclusive), so records sharing the cursor's
//! timestamp, and records written late with a skewed clock, are read again, never skipped.

use std::cmp::{max, min};

use serde::{Deserialize, Serialize};

use super::shopify_bulk::BulkPhase;
use super::{
    keap, shopify, Page, PageError, PageRequestError, Resource, SourceConfig, SyncMode,
    DEFAULT_OVERLAP_MS,
};
use crate::oauth::HttpRequestSpec;
use crate::sync_state::Cursor;
use crate::{Provider, Secret, Timestamp};

/// Where a run is; the Worker persists it between pages and invocations (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCheckpoint {
    /// The run's id (also stamped into `seen_in_run` by full runs).
    pub run_id: String,
    /// What the run walks.
    pub resource: Resource,
    /// Full or incremental.
    pub mode: SyncMode,
    /// When the run started (the Worker's clock).
    pub started_at: Timestamp,
    /// The resource cursor when the run started (`None`: from the beginning).
    pub since: Option<Cursor>,
    /// Keap `next_page_token` / Shopify `endCursor` of the next page; `None`: first page.
    pub page_token: Option<String>,
    /// Pages committed so far.
    pub pages: u32,
    /// Records committed so far (duplicates within a page included).
    pub records: u64,
    /// The greatest (updated time, id) committed so far in this run.
    pub high_water: Option<Cursor>,
    /// Whether the walk is complete.
    pub done: bool,
    /// Look-back applied where no server-side filter exists (Keap opportunities: where the
    /// newest-first walk stops). [`RunCheckpoint::new`] sets [`DEFAULT_OVERLAP_MS`]; use
    /// [`RunCheckpoint::with_overlap_ms`] to follow a different `SourceConfig::overlap_ms`.
    #[serde(default = "default_overlap_ms")]
    pub overlap_ms: i64,
    /// A full Shopify run read through a bulk operation: where it is (`None`: paginated).
    /// While reading the result, `page_token` holds the line to resume from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk: Option<BulkPhase>,
}

fn default_overlap_ms() -> i64 {
    DEFAULT_OVERLAP_MS
}

impl RunCheckpoint {
    /// A run of `resource` that has not fetched anything yet.
    pub fn new(
        run_id: &str,
        resource: Resource,
        mode: SyncMode,
        since: Option<Cursor>,
        now: Timestamp,
    ) -> Self {
        Self {
            run_id: run_id.to_owned(),
            resource,
            mode,
            started_at: now,
            since,
            page_token: None,
            pages: 0,
            records: 0,
            high_water: None,
            done: false,
            overlap_ms: DEFAULT_OVERLAP_MS,
            bulk: None,
        }
    }

    /// The same checkpoint read through a Shopify bulk operation when the run is full and
    /// the resource has a bulk query (incremental runs stay paginated).
    pub fn with_bulk_when_full(mut self) -> Self {
        if self.mode == SyncMode::Full && super::shopify_bulk::bulk_query(self.resource).is_some() {
            self.bulk = Some(BulkPhase::Start);
        }
        self
    }

    /// The same checkpoint with another look-back for the opportunities stop rule.
    pub fn with_overlap_ms(mut self, overlap_ms: i64) -> Self {
        self.overlap_ms = overlap_ms;
        self
    }

    /// The point a newest-first walk stops at: `since` moved back by `overlap_ms`
    /// (`None` in full mode or without a cursor).
    pub fn stop_cursor(&self) -> Option<Cursor> {
        if self.mode == SyncMode::Full {
            return None;
        }
        self.since.as_ref().map(|since| {
            Cursor::new(
                since.updated_at.plus_millis(-self.overlap_ms.max(0)),
                &since.id,
            )
        })
    }
}

/// The time changes are asked for from: the start cursor's time minus `overlap_ms`
/// (`None` in full mode or without a cursor).
pub(super) fn lower_bound(checkpoint: &RunCheckpoint, overlap_ms: i64) -> Option<Timestamp> {
    match checkpoint.mode {
        SyncMode::Full => None,
        SyncMode::Incremental => checkpoint
            .since
            .as_ref()
            .map(|since| since.updated_at.plus_millis(-overlap_ms.max(0))),
    }
}

/// Builds the request for the next page, with auth: Keap `Authorization: Bearer <token>`;
/// Shopify `X-Shopify-Access-Token` and a GraphQL POST body. Fails only for a Shopify
/// resource without a valid `shop` when `shopify_admin_base` has a `{shop}` placeholder.
pub fn try_page_request(
    checkpoint: &RunCheckpoint,
    config: &SourceConfig,
    shop: Option<&str>,
    access_token: &Secret,
) -> Result<HttpRequestSpec, PageRequestError> {
    let bound = lower_bound(checkpoint, config.overlap_ms);
    let token = checkpoint.page_token.as_deref();
    match checkpoint.resource.provider() {
        Provider::Keap => Ok(keap::page_request(
            checkpoint.resource,
            checkpoint.mode,
            bound,
            token,
            config,
            access_token,
        )),
        Provider::Shopify => {
            let url = shopify::graphql_url(config, shop).ok_or(PageRequestError::MissingShop)?;
            Ok(shopify::page_request(
                url,
                checkpoint.resource,
                checkpoint.mode,
                bound,
                token,
                config.page_size,
                access_token,
            ))
        }
    }
}

/// Builds the request for the next page, with auth: Keap `Authorization: Bearer <token>`;
/// Shopify `X-Shopify-Access-Token` and a GraphQL POST body. `shop` is required for Shopify
/// resources; without a valid one the URL is empty, so the fetch fails before anything is
/// sent (use [`try_page_request`] to get the error instead).
pub fn page_request(
    checkpoint: &RunCheckpoint,
    config: &SourceConfig,
    shop: Option<&str>,
    access_token: &Secret,
) -> HttpRequestSpec {
    try_page_request(checkpoint, config, shop, access_token).unwrap_or_else(|_| {
        shopify::page_request(
            String::new(),
            checkpoint.resource,
            checkpoint.mode,
            lower_bound(checkpoint, config.overlap_ms),
            checkpoint.page_token.as_deref(),
            config.page_size,
            access_token,
        )
    })
}

/// Parses an answer. `headers` are the response headers (names in any case) so Keap's
/// throttle headers and `Retry-After` can be read. For an incremental walk of Keap
/// opportunities (newest first), records at or before [`RunCheckpoint::stop_cursor`] are
/// dropped and the page reports `reached_cursor`.
pub fn parse_page(
    checkpoint: &RunCheckpoint,
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<Page, PageError> {
    let resource = checkpoint.resource;
    let mut page = match resource.provider() {
        Provider::Keap => keap::parse_page(resource, status, headers, body)?,
        Provider::Shopify => shopify::parse_page(resource, status, headers, body)?,
    };
    if resource == Resource::KeapOpportunities {
        if let Some(stop) = checkpoint.stop_cursor() {
            // Keap's `listOpportunities` (keap-sdk `sdks/v2/swagger.yml`) has no update-time
            // filter, but order_by=update_time works: walk newest first and stop at the
            // cursor. Records without a time cannot be placed and are kept.
            let reached = page.records.iter().position(|r| {
                r.source_updated_at
                    .is_some_and(|t| !stop.is_after(t, &r.provider_id))
            });
            if let Some(index) = reached {
                page.records.truncate(index);
                page.reached_cursor = true;
            }
        }
    }
    if !page.reached_cursor
        && page.next_page_token.is_some()
        && page.next_page_token == checkpoint.page_token
    {
        // Following it would fetch the same page forever.
        return Err(PageError::Malformed(
            "the next page token repeats the current one".to_owned(),
        ));
    }
    Ok(page)
}

/// Applies a committed page to the checkpoint (call only AFTER the page's rows are
/// committed): moves `page_token`, counts, `high_water`; sets `done` when there is no next
/// page or when a newest-first walk reached the start cursor.
pub fn advance(checkpoint: &mut RunCheckpoint, page: &Page) {
    checkpoint.pages = checkpoint.pages.saturating_add(1);
    checkpoint.records = checkpoint
        .records
        .saturating_add(u64::try_from(page.records.len()).unwrap_or(u64::MAX));
    for record in &page.records {
        let Some(updated_at) = record.source_updated_at else {
            continue;
        };
        match &mut checkpoint.high_water {
            Some(high) => high.advance(updated_at, &record.provider_id),
            None => checkpoint.high_water = Some(Cursor::new(updated_at, &record.provider_id)),
        }
    }
    checkpoint.done = page.reached_cursor || page.next_page_token.is_none();
    checkpoint.page_token = if checkpoint.done {
        None
    } else {
        page.next_page_token.clone()
    };
}

/// The cursor to store for the resource, `Some` only when it is safe to persist. It is
/// never past the run's start: a record whose `updated_at` lies in the future (a skewed
/// provider clock, a bad import) would otherwise put the cursor ahead of every later
/// change, and each incremental run would skip them until a full resync. Records changed
/// after the start are simply read again by the next run (upserts are idempotent).
/// - incremental walks returned oldest first: after every committed page, the greater of
///   `since` and `high_water`, capped at the start;
/// - other incremental walks (Keap opportunities, Shopify inventory levels): only when
///   done, the same;
/// - full runs: only when done, `high_water` over all records, capped at the start (a
///   record changed after the walk passed it carries a later time and must be read by the
///   next incremental run).
///
/// `None` when the run has committed no timed record (keep the stored cursor), unless the
/// stored cursor itself is past the run's start (written before this rule): then the start.
pub fn cursor_to_persist(checkpoint: &RunCheckpoint) -> Option<Cursor> {
    let start = Cursor::new(checkpoint.started_at, "");
    let may_persist = match checkpoint.mode {
        SyncMode::Incremental => checkpoint.resource.ascending_incremental() || checkpoint.done,
        SyncMode::Full => checkpoint.done,
    };
    if !may_persist {
        return None;
    }
    let since = match checkpoint.mode {
        SyncMode::Incremental => checkpoint.since.clone(),
        SyncMode::Full => None,
    };
    let reached = match (since, checkpoint.high_water.clone()) {
        (Some(since), Some(high)) => max(since, high),
        (None, Some(high)) => high,
        (Some(since), None) if since > start => since,
        (_, None) => return None,
    };
    Some(min(reached, start))
}
