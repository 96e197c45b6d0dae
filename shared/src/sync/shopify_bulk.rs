//! Shopify full syncs through bulk query operations
//! (<https://shopify.dev/docs/api/usage/bulk-operations/queries>): one
//! `bulkOperationRunQuery` for the whole catalogue, run by Shopify without cost throttling;
//! `currentBulkOperation` polled until it is `COMPLETED`; then its JSONL result, where every
//! node of a nested connection is "extracted into a new object on the next line" with
//! `__parentId`, read line by line and reassembled into the nodes the paginated parser knows
//! ([`super::shopify::record`], [`super::shopify::inventory_records`]), so both paths store
//! the same rows. Incremental syncs keep the paginated queries.

use serde_json::{json, Map, Value};

use super::shopify::{classify, graphql_request, graphql_url, inventory_records, record};
use super::values::at;
use super::{shorten, Page, PageError, PageRequestError, Record, Resource, SourceConfig};
use crate::oauth::HttpRequestSpec;
use crate::Secret;

/// The bulk query of a Shopify resource: the fields the paginated query selects, with no
/// page arguments (a bulk query reads the whole connection).
pub fn bulk_query(resource: Resource) -> Option<&'static str> {
    Some(match resource {
        Resource::ShopifyProducts => {
            "{ products { edges { node { id title handle status vendor productType createdAt \
             updatedAt variants { edges { node { id title sku price inventoryQuantity } } } } } } }"
        }
        Resource::ShopifyOrders => {
            "{ orders { edges { node { id name email createdAt updatedAt displayFinancialStatus \
             displayFulfillmentStatus totalPriceSet { shopMoney { amount currencyCode } } \
             customer { id } } } } }"
        }
        Resource::ShopifyCustomers => {
            "{ customers { edges { node { id email firstName lastName createdAt updatedAt } } } }"
        }
        Resource::ShopifyInventoryLevels => {
            "{ inventoryItems { edges { node { id sku updatedAt inventoryLevels { edges { node { \
             id updatedAt location { id } quantities(names: [\"available\"]) { name quantity } \
             } } } } } } }"
        }
        _ => return None,
    })
}

/// The field a nested connection's nodes go back into, by the type in their GID.
fn child_field(child_gid: &str) -> Option<&'static str> {
    let kind = child_gid
        .strip_prefix("gid://shopify/")?
        .split('/')
        .next()?;
    match kind {
        "ProductVariant" => Some("variants"),
        "InventoryLevel" => Some("inventoryLevels"),
        _ => None,
    }
}

/// `bulkOperationRunQuery` for `resource`, to the shop's GraphQL `url`.
pub fn run_request(
    url: String,
    resource: Resource,
    access_token: &Secret,
) -> Option<HttpRequestSpec> {
    let query = bulk_query(resource)?;
    Some(graphql_request(
        url,
        access_token,
        &json!({
            "query": "mutation EdgeSyncBulk($query: String!) { bulkOperationRunQuery(query: $query) { \
                      bulkOperation { id status } userErrors { field message } } }",
            "variables": { "query": query },
        }),
    ))
}

/// `currentBulkOperation`, to the shop's GraphQL `url`.
pub fn poll_request(url: String, access_token: &Secret) -> HttpRequestSpec {
    graphql_request(
        url,
        access_token,
        &json!({
            "query": "query EdgeSyncBulkStatus { currentBulkOperation(type: QUERY) { id status \
                      errorCode objectCount rootObjectCount fileSize url partialDataUrl } }",
        }),
    )
}

/// `bulkOperation(id:)`: one operation by its GID, whatever the shop ran since (several
/// resources of a shop take turns, one operation at a time), to the shop's GraphQL `url`.
pub fn poll_by_id_request(url: String, access_token: &Secret, id: &str) -> HttpRequestSpec {
    graphql_request(
        url,
        access_token,
        &json!({
            "query": "query EdgeSyncBulkStatus($id: ID!) { bulkOperation(id: $id) { id status \
                      errorCode objectCount rootObjectCount fileSize url partialDataUrl } }",
            "variables": { "id": id },
        }),
    )
}

/// Where a bulk-operation run is, persisted in its checkpoint
/// ([`super::RunCheckpoint::bulk`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum BulkPhase {
    /// Start the bulk query (again, after `Busy` or a lost operation).
    Start,
    /// Ours is running: poll it.
    Running {
        /// The operation's GID.
        id: String,
    },
    /// Completed: read its JSONL result from the checkpoint's line offset.
    Reading {
        /// The operation's GID.
        id: String,
        /// The result's signed URL (fetched without the access token).
        url: String,
    },
}

/// [`run_request`] to the shop's GraphQL endpoint (`config.shopify_admin_base`).
pub fn try_run_request(
    config: &SourceConfig,
    shop: Option<&str>,
    resource: Resource,
    access_token: &Secret,
) -> Result<HttpRequestSpec, PageRequestError> {
    let url = graphql_url(config, shop).ok_or(PageRequestError::MissingShop)?;
    run_request(url, resource, access_token).ok_or(PageRequestError::MissingShop)
}

/// [`poll_by_id_request`] to the shop's GraphQL endpoint.
pub fn try_poll_request(
    config: &SourceConfig,
    shop: Option<&str>,
    access_token: &Secret,
    id: &str,
) -> Result<HttpRequestSpec, PageRequestError> {
    let url = graphql_url(config, shop).ok_or(PageRequestError::MissingShop)?;
    Ok(poll_by_id_request(url, access_token, id))
}

/// A result read from line `from` on, cut into pages of at least `batch` records. A page
/// ends only where a top-level node begins, and names that line as its `next_page_token`:
/// a read resumed there (skipping the lines before it) starts on a whole node.
#[derive(Debug)]
pub struct JsonlPages {
    reader: JsonlRecords,
    line: u64,
    from: u64,
    batch: usize,
    pending: Vec<Record>,
}

impl JsonlPages {
    /// A reader of `resource`'s result from line `from` (0-based).
    pub fn new(resource: Resource, from: u64, batch: usize) -> Self {
        Self {
            reader: JsonlRecords::new(resource),
            line: 0,
            from,
            batch: batch.max(1),
            pending: Vec::new(),
        }
    }

    /// The number of the next line [`JsonlPages::push_line`] expects.
    pub fn next_line(&self) -> u64 {
        self.line
    }

    /// Takes the file's next line; a page when enough records are complete.
    pub fn push_line(&mut self, line: &str) -> Result<Option<Page>, PageError> {
        let number = self.line;
        self.line += 1;
        if number < self.from {
            return Ok(None);
        }
        let starts_node = !line.contains("\"__parentId\"");
        self.pending.extend(self.reader.push_line(line)?);
        if starts_node && number > self.from && self.pending.len() >= self.batch {
            return Ok(Some(Page {
                records: std::mem::take(&mut self.pending),
                next_page_token: Some(number.to_string()),
                ..Page::default()
            }));
        }
        Ok(None)
    }

    /// The last page, at the end of the file.
    pub fn finish(&mut self) -> Page {
        let mut records = std::mem::take(&mut self.pending);
        records.extend(self.reader.finish());
        Page {
            records,
            ..Page::default()
        }
    }
}

/// What starting a bulk query led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkStart {
    /// Started: its GID.
    Started(String),
    /// Another bulk query of this shop is still running (one at a time per shop): wait for
    /// it and try again.
    Busy(String),
}

/// What `currentBulkOperation` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkStatus {
    /// `CREATED` or `RUNNING`: poll again later.
    Running {
        /// The operation's GID.
        id: String,
        /// Lines written so far.
        object_count: u64,
    },
    /// `COMPLETED`: the result is at `url` (`None` when the query matched nothing).
    Completed {
        /// The operation's GID.
        id: String,
        /// The JSONL result (a signed URL: fetched without the access token).
        url: Option<String>,
        /// Lines in the result.
        object_count: u64,
    },
    /// `FAILED`, `CANCELED`, `EXPIRED` (or `CANCELING`): the run fails with this reason.
    Ended {
        /// The operation's GID.
        id: String,
        /// Status and error code.
        reason: String,
    },
    /// The shop has no bulk operation.
    None,
}

/// Parses the answer to [`run_request`].
pub fn parse_run(
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<BulkStart, PageError> {
    let value = classify(status, headers, body)?;
    let payload = at(&value, &["data", "bulkOperationRunQuery"])
        .ok_or_else(|| PageError::Malformed("no `data.bulkOperationRunQuery`".to_owned()))?;
    if let Some(first) = payload
        .get("userErrors")
        .and_then(Value::as_array)
        .and_then(|errors| errors.first())
    {
        let message = first
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("user error");
        if message.contains("already in progress") {
            return Ok(BulkStart::Busy(shorten(message)));
        }
        return Err(PageError::Rejected {
            status,
            message: shorten(message),
        });
    }
    at(payload, &["bulkOperation", "id"])
        .and_then(Value::as_str)
        .map(|id| BulkStart::Started(id.to_owned()))
        .ok_or_else(|| PageError::Malformed("no `bulkOperation.id`".to_owned()))
}

/// A count Shopify sends as a decimal string (`UnsignedInt64`).
fn count(value: Option<&Value>) -> u64 {
    match value {
        Some(Value::String(text)) => text.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

/// Parses the answer to [`poll_request`] or [`poll_by_id_request`].
pub fn parse_poll(
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<BulkStatus, PageError> {
    let value = classify(status, headers, body)?;
    let Some(operation) = at(&value, &["data", "currentBulkOperation"])
        .or_else(|| at(&value, &["data", "bulkOperation"]))
        .filter(|v| !v.is_null())
    else {
        return Ok(BulkStatus::None);
    };
    let id = operation
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| PageError::Malformed("no `currentBulkOperation.id`".to_owned()))?
        .to_owned();
    let object_count = count(operation.get("objectCount"));
    let state = operation
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("");
    Ok(match state {
        "CREATED" | "RUNNING" => BulkStatus::Running { id, object_count },
        "COMPLETED" => BulkStatus::Completed {
            id,
            url: operation
                .get("url")
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            object_count,
        },
        other => {
            let code = operation
                .get("errorCode")
                .and_then(Value::as_str)
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            BulkStatus::Ended {
                id,
                reason: shorten(&format!("bulk operation {}{code}", other.to_lowercase())),
            }
        }
    })
}

/// Reassembles a bulk JSONL result, line by line, into records: a top-level node is complete
/// when the next top-level line (or the end) arrives, because its children follow it.
#[derive(Debug)]
pub struct JsonlRecords {
    resource: Resource,
    current: Option<Map<String, Value>>,
    /// Lines read.
    pub lines: u64,
}

impl JsonlRecords {
    /// A reader of `resource`'s result.
    pub fn new(resource: Resource) -> Self {
        Self {
            resource,
            current: None,
            lines: 0,
        }
    }

    /// Takes one line; returns the records of the node it completed, if any. A line that is
    /// not a JSON object, or a child with no parent before it, is a malformed result.
    pub fn push_line(&mut self, line: &str) -> Result<Vec<Record>, PageError> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(Vec::new());
        }
        self.lines += 1;
        let Ok(Value::Object(mut node)) = serde_json::from_str::<Value>(line) else {
            return Err(PageError::Malformed(format!(
                "line {} is not a JSON object",
                self.lines
            )));
        };
        let Some(parent) = node.remove("__parentId") else {
            let done = self.current.replace(node);
            return Ok(done.map(|n| self.records(n)).unwrap_or_default());
        };
        let child_field = node
            .get("id")
            .and_then(Value::as_str)
            .and_then(child_field)
            .ok_or_else(|| PageError::Malformed(format!("line {}: unknown child", self.lines)))?;
        let current = self
            .current
            .as_mut()
            .filter(|c| c.get("id") == Some(&parent))
            .ok_or_else(|| {
                PageError::Malformed(format!("line {}: a child before its parent", self.lines))
            })?;
        let connection = current
            .entry(child_field)
            .or_insert_with(|| json!({ "nodes": [] }));
        if let Some(nodes) = connection.get_mut("nodes").and_then(Value::as_array_mut) {
            nodes.push(Value::Object(node));
        }
        Ok(Vec::new())
    }

    /// The records of the last node, at the end of the result.
    pub fn finish(&mut self) -> Vec<Record> {
        self.current
            .take()
            .map(|n| self.records(n))
            .unwrap_or_default()
    }

    fn records(&self, node: Map<String, Value>) -> Vec<Record> {
        let mut node = Value::Object(node);
        if self.resource == Resource::ShopifyProducts {
            // Products with no variant line still have the (empty) connection.
            if let Some(object) = node.as_object_mut() {
                object
                    .entry("variants")
                    .or_insert_with(|| json!({ "nodes": [] }));
            }
        }
        match self.resource {
            Resource::ShopifyInventoryLevels => inventory_records(&node),
            resource => record(resource, node).into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn pages_end_on_a_node_and_a_resumed_read_gives_the_same_records() {
        let mut lines = Vec::new();
        for p in 1..=5 {
            lines.push(format!(
                r#"{{"id":"gid://shopify/Product/{p}","title":"P{p}","updatedAt":"2026-02-01T00:00:00Z"}}"#
            ));
            for v in 0..p % 3 {
                lines.push(format!(
                    r#"{{"id":"gid://shopify/ProductVariant/{p}{v}","sku":"S","__parentId":"gid://shopify/Product/{p}"}}"#
                ));
            }
        }
        let read = |from: u64| {
            let mut pages = JsonlPages::new(Resource::ShopifyProducts, from, 2);
            let mut out = Vec::new();
            for line in &lines {
                if let Some(page) = pages.push_line(line).unwrap() {
                    out.push(page);
                }
            }
            out.push(pages.finish());
            out
        };
        let whole = read(0);
        let ids = |pages: &[Page]| -> Vec<String> {
            pages
                .iter()
                .flat_map(|p| p.records.iter().map(|r| r.provider_id.clone()))
                .collect()
        };
        assert_eq!(ids(&whole), ["1", "2", "3", "4", "5"]);
        assert_eq!(whole.len(), 3);
        assert!(whole.last().unwrap().next_page_token.is_none());
        // Resuming at the first page's token reads exactly the rest.
        let token: u64 = whole[0]
            .next_page_token
            .as_deref()
            .unwrap()
            .parse()
            .unwrap();
        assert!(!lines[usize::try_from(token).unwrap()].contains("__parentId"));
        assert_eq!(ids(&read(token)), ids(&whole[1..]));
        assert_eq!(whole[1].records, read(token)[0].records);
    }
    use crate::sync::shopify::parse_page;

    #[test]
    fn bulk_records_are_the_records_the_paginated_parser_makes() {
        let paginated = json!({ "data": { "products": { "nodes": [
            { "id": "gid://shopify/Product/9007199254740993", "title": "A", "handle": "a",
              "status": "ACTIVE", "vendor": "V", "productType": "T",
              "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-02-01T00:00:00Z",
              "variants": { "nodes": [
                { "id": "gid://shopify/ProductVariant/11", "title": "S", "sku": "A-S",
                  "price": "1.00", "inventoryQuantity": 3 } ] } },
            { "id": "gid://shopify/Product/2", "title": "B", "handle": "b", "status": "DRAFT",
              "vendor": "V", "productType": "T", "createdAt": "2026-01-01T00:00:00Z",
              "updatedAt": "2026-02-01T00:00:00Z", "variants": { "nodes": [] } } ],
            "pageInfo": { "hasNextPage": false, "endCursor": null } } } });
        let page =
            parse_page(Resource::ShopifyProducts, 200, &[], &paginated.to_string()).expect("page");
        let jsonl = [
            r#"{"id":"gid://shopify/Product/9007199254740993","title":"A","handle":"a","status":"ACTIVE","vendor":"V","productType":"T","createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-02-01T00:00:00Z"}"#,
            r#"{"id":"gid://shopify/ProductVariant/11","title":"S","sku":"A-S","price":"1.00","inventoryQuantity":3,"__parentId":"gid://shopify/Product/9007199254740993"}"#,
            r#"{"id":"gid://shopify/Product/2","title":"B","handle":"b","status":"DRAFT","vendor":"V","productType":"T","createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-02-01T00:00:00Z"}"#,
        ];
        let mut reader = JsonlRecords::new(Resource::ShopifyProducts);
        let mut records = Vec::new();
        for line in jsonl {
            records.extend(reader.push_line(line).expect("line"));
        }
        records.extend(reader.finish());
        assert_eq!(records, page.records);
        assert_eq!(
            records[0].provider_id, "9007199254740993",
            "exact beyond 2^53"
        );
        assert_eq!(reader.lines, 3);
    }

    #[test]
    fn inventory_levels_come_back_under_their_item() {
        let jsonl = [
            r#"{"id":"gid://shopify/InventoryItem/7","sku":"A-S","updatedAt":"2026-02-01T00:00:00Z"}"#,
            r#"{"id":"gid://shopify/InventoryLevel/70?inventory_item_id=7","updatedAt":"2026-02-02T00:00:00Z","location":{"id":"gid://shopify/Location/1"},"quantities":[{"name":"available","quantity":5}],"__parentId":"gid://shopify/InventoryItem/7"}"#,
            r#"{"id":"gid://shopify/InventoryLevel/71?inventory_item_id=7","updatedAt":"2026-02-02T00:00:00Z","location":{"id":"gid://shopify/Location/2"},"quantities":[{"name":"available","quantity":0}],"__parentId":"gid://shopify/InventoryItem/7"}"#,
        ];
        let mut reader = JsonlRecords::new(Resource::ShopifyInventoryLevels);
        for line in jsonl {
            assert!(reader.push_line(line).expect("line").is_empty());
        }
        let records = reader.finish();
        let ids: Vec<&str> = records.iter().map(|r| r.provider_id.as_str()).collect();
        assert_eq!(ids, ["7:1", "7:2"]);
        assert_eq!(records[0].columns["available"], json!(5));
    }

    #[test]
    fn a_child_without_its_parent_or_a_broken_line_is_malformed() {
        let mut reader = JsonlRecords::new(Resource::ShopifyProducts);
        assert!(matches!(
            reader.push_line(
                r#"{"id":"gid://shopify/ProductVariant/1","__parentId":"gid://shopify/Product/9"}"#
            ),
            Err(PageError::Malformed(_))
        ));
        assert!(matches!(
            reader.push_line("{not json"),
            Err(PageError::Malformed(_))
        ));
        assert!(reader
            .push_line("  ")
            .expect("blank lines are skipped")
            .is_empty());
    }

    #[test]
    fn run_answers_started_busy_or_refused() {
        let started = json!({ "data": { "bulkOperationRunQuery": {
            "bulkOperation": { "id": "gid://shopify/BulkOperation/1", "status": "CREATED" },
            "userErrors": [] } } });
        assert_eq!(
            parse_run(200, &[], &started.to_string()),
            Ok(BulkStart::Started(
                "gid://shopify/BulkOperation/1".to_owned()
            ))
        );
        let busy = json!({ "data": { "bulkOperationRunQuery": { "bulkOperation": null,
            "userErrors": [{ "field": ["query"], "message":
              "A bulk query operation for this app and shop is already in progress: gid://shopify/BulkOperation/1." }] } } });
        assert!(matches!(
            parse_run(200, &[], &busy.to_string()),
            Ok(BulkStart::Busy(_))
        ));
        let invalid = json!({ "data": { "bulkOperationRunQuery": { "bulkOperation": null,
            "userErrors": [{ "field": ["query"], "message": "Invalid bulk query" }] } } });
        assert!(matches!(
            parse_run(200, &[], &invalid.to_string()),
            Err(PageError::Rejected { .. })
        ));
        assert_eq!(parse_run(401, &[], "{}"), Err(PageError::Unauthorized));
    }

    #[test]
    fn poll_answers_each_status() {
        let poll = |operation: Value| {
            parse_poll(
                200,
                &[],
                &json!({ "data": { "currentBulkOperation": operation } }).to_string(),
            )
        };
        assert_eq!(
            poll(json!({ "id": "g/1", "status": "RUNNING", "objectCount": "12" })),
            Ok(BulkStatus::Running {
                id: "g/1".into(),
                object_count: 12
            })
        );
        assert_eq!(
            poll(
                json!({ "id": "g/1", "status": "COMPLETED", "objectCount": "40", "url": "https://storage/x.jsonl" })
            ),
            Ok(BulkStatus::Completed {
                id: "g/1".into(),
                url: Some("https://storage/x.jsonl".into()),
                object_count: 40
            })
        );
        assert_eq!(
            poll(json!({ "id": "g/1", "status": "COMPLETED", "objectCount": "0", "url": null })),
            Ok(BulkStatus::Completed {
                id: "g/1".into(),
                url: None,
                object_count: 0
            })
        );
        assert_eq!(
            poll(json!({ "id": "g/1", "status": "FAILED", "errorCode": "INTERNAL_SERVER_ERROR" })),
            Ok(BulkStatus::Ended {
                id: "g/1".into(),
                reason: "bulk operation failed (INTERNAL_SERVER_ERROR)".into()
            })
        );
        assert_eq!(poll(Value::Null), Ok(BulkStatus::None));
    }

    #[test]
    fn every_shopify_resource_has_a_bulk_query_and_keap_has_none() {
        for resource in Resource::ALL {
            let is_shopify = resource.provider() == crate::connection::Provider::Shopify;
            assert_eq!(bulk_query(resource).is_some(), is_shopify, "{resource:?}");
        }
    }
}
