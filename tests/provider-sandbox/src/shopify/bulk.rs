//! Shopify bulk query operations, as documented at
//! <https://shopify.dev/docs/api/usage/bulk-operations/queries>:
//!
//! - `bulkOperationRunQuery(query:)` starts one query over a whole connection (nested
//!   connections allowed) that runs server-side with no cost throttling; a shop runs one
//!   bulk query at a time, so a second one while the first is `CREATED` or `RUNNING` is a
//!   user error. A query that is not exactly one top-level connection is a user error too.
//! - `currentBulkOperation` (and `bulkOperation(id:)`) report `status` (`CREATED`,
//!   `RUNNING`, `COMPLETED`, `FAILED`, `CANCELED`...), `objectCount`, `rootObjectCount`,
//!   `fileSize`, `errorCode` and, once completed, `url`: a JSONL file with one object a line,
//!   where every node of a nested connection is a line of its own carrying `__parentId`
//!   (the id of the node it belongs to) and its parent line carries no field for it.
//! - `bulkOperationCancel(id:)` cancels a running operation.
//!
//! The sandbox executes the query against the same schema as the paginated API with every
//! connection unbounded (`first`/`last` are not needed and page-size limits do not apply),
//! flattens the answer into JSONL and serves it at `GET /__sandbox/shopify/bulk/{id}.jsonl`
//! (Shopify serves a signed storage URL: no access token). `POST /__sandbox/faults` with the
//! endpoint `shopify.bulk.run` fails the next operations (`FAILED`, `INTERNAL_SERVER_ERROR`),
//! and `bulk_delay_ms` in the runtime config keeps operations `RUNNING` that long, so
//! clients' polling can be tested.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::parser::parse_query;
use async_graphql::{Context, Enum, Result, SimpleObject, ID};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::control::Key;
use crate::endpoint::Endpoint;
use crate::shopify::cost;
use crate::shopify::graphql::{gid, parse_gid, request_data, time, DateTime, RequestData};
use crate::shopify::webhooks::UserError;
use crate::state::{lock, SharedState};

/// `BulkOperationStatus`.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum BulkOperationStatus {
    /// Accepted, not started.
    Created,
    /// Running.
    Running,
    /// Done; `url` holds the result.
    Completed,
    /// Failed; `errorCode` says why.
    Failed,
    /// Being cancelled.
    Canceling,
    /// Cancelled.
    Canceled,
    /// The result expired (7 days after completion).
    Expired,
}

/// `BulkOperationErrorCode`.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum BulkOperationErrorCode {
    /// The query could not run.
    InternalServerError,
    /// The operation took too long.
    Timeout,
    /// The shop's token lost access.
    AccessDenied,
}

/// `BulkOperationType`.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum BulkOperationType {
    /// A bulk query.
    Query,
    /// A bulk mutation (not supported by the sandbox).
    Mutation,
}

/// `BulkOperation`.
#[derive(SimpleObject, Clone, Debug)]
pub struct BulkOperation {
    /// `gid://shopify/BulkOperation/<n>`.
    pub id: ID,
    /// Where the operation is.
    pub status: BulkOperationStatus,
    /// Why it failed.
    pub error_code: Option<BulkOperationErrorCode>,
    /// When it was created.
    pub created_at: DateTime,
    /// When it finished.
    pub completed_at: Option<DateTime>,
    /// Lines written so far (every node, nested ones included), as a decimal string.
    pub object_count: String,
    /// Nodes of the top-level connection written so far, as a decimal string.
    pub root_object_count: String,
    /// Size of the result in bytes, as a decimal string.
    pub file_size: Option<String>,
    /// The JSONL result, once completed.
    pub url: Option<String>,
    /// What a failed operation wrote before it failed.
    pub partial_data_url: Option<String>,
    /// The query it runs.
    pub query: String,
    /// `QUERY`.
    #[graphql(name = "type")]
    pub kind: BulkOperationType,
}

/// `BulkOperationRunQueryPayload`.
#[derive(SimpleObject, Clone, Debug)]
pub struct BulkOperationRunQueryPayload {
    /// The new operation.
    pub bulk_operation: Option<BulkOperation>,
    /// Why it was not started.
    pub user_errors: Vec<UserError>,
}

/// `BulkOperationCancelPayload`.
#[derive(SimpleObject, Clone, Debug)]
pub struct BulkOperationCancelPayload {
    /// The operation.
    pub bulk_operation: Option<BulkOperation>,
    /// Why it could not be cancelled.
    pub user_errors: Vec<UserError>,
}

/// One shop's operation and its result.
#[derive(Debug)]
struct Operation {
    shop: String,
    view: BulkOperation,
    /// The result file, once completed.
    jsonl: Option<Arc<String>>,
}

/// Every shop's bulk operations.
#[derive(Debug, Default)]
pub struct BulkStore {
    next_id: u64,
    operations: HashMap<u64, Operation>,
    /// The latest operation of each shop.
    current: HashMap<String, u64>,
}

impl BulkStore {
    fn view(&self, shop: &str, id: u64) -> Option<BulkOperation> {
        self.operations
            .get(&id)
            .filter(|op| op.shop == shop)
            .map(|op| op.view.clone())
    }

    fn update(&mut self, id: u64, f: impl FnOnce(&mut Operation)) {
        if let Some(op) = self.operations.get_mut(&id) {
            f(op);
        }
    }
}

fn user_error(field: &str, message: impl Into<String>) -> UserError {
    UserError {
        field: Some(vec![field.to_owned()]),
        message: message.into(),
    }
}

/// The one top-level field of a bulk query, if the query is a single query operation with
/// exactly one top-level field.
fn top_level_field(query: &str) -> Result<String, String> {
    let doc = parse_query(query).map_err(|e| format!("Invalid bulk query: {e}"))?;
    let op = cost::operation(&doc, None).ok_or("Invalid bulk query: no single operation")?;
    if op.ty != async_graphql::parser::types::OperationType::Query {
        return Err("Invalid bulk query: bulkOperationRunQuery accepts queries only".into());
    }
    match cost::top_level_fields(&doc, op).as_slice() {
        [field] => Ok(field.clone()),
        _ => Err("Bulk queries must contain exactly one top-level connection field".into()),
    }
}

/// `bulkOperationRunQuery(query:)`.
pub fn run_query(ctx: &Context<'_>, query: String) -> Result<BulkOperationRunQueryPayload> {
    let rd = request_data(ctx)?;
    let refuse = |error: UserError| BulkOperationRunQueryPayload {
        bulk_operation: None,
        user_errors: vec![error],
    };
    let root = match top_level_field(&query) {
        Ok(root) => root,
        Err(message) => return Ok(refuse(user_error("query", message))),
    };
    if !CONNECTION_ROOTS.contains(&root.as_str()) {
        return Ok(refuse(user_error(
            "query",
            format!("Bulk queries must start with a connection field; `{root}` is not one"),
        )));
    }
    let now = rd.state.clock.now_ms();
    let (id, view) = {
        let mut store = lock(&rd.state.shopify.bulk);
        if let Some(current) = store.current.get(&rd.shop).copied() {
            if let Some(op) = store.operations.get(&current) {
                if matches!(
                    op.view.status,
                    BulkOperationStatus::Created | BulkOperationStatus::Running
                ) {
                    return Ok(refuse(user_error(
                        "query",
                        format!(
                            "A bulk query operation for this app and shop is already in progress: {}.",
                            op.view.id.as_str()
                        ),
                    )));
                }
            }
        }
        store.next_id += 1;
        let id = store.next_id;
        let view = BulkOperation {
            id: gid("BulkOperation", id),
            status: BulkOperationStatus::Created,
            error_code: None,
            created_at: time(now),
            completed_at: None,
            object_count: "0".into(),
            root_object_count: "0".into(),
            file_size: None,
            url: None,
            partial_data_url: None,
            query: query.clone(),
            kind: BulkOperationType::Query,
        };
        store.operations.insert(
            id,
            Operation {
                shop: rd.shop.clone(),
                view: view.clone(),
                jsonl: None,
            },
        );
        store.current.insert(rd.shop.clone(), id);
        (id, view)
    };
    let job = Job {
        state: rd.state.clone(),
        shop: rd.shop.clone(),
        origin: rd.origin.clone(),
        id,
        query,
        root,
    };
    tokio::spawn(job.run());
    Ok(BulkOperationRunQueryPayload {
        bulk_operation: Some(view),
        user_errors: Vec::new(),
    })
}

/// `currentBulkOperation(type:)`: the shop's latest operation.
pub fn current(
    ctx: &Context<'_>,
    kind: Option<BulkOperationType>,
) -> Result<Option<BulkOperation>> {
    let rd = request_data(ctx)?;
    if kind == Some(BulkOperationType::Mutation) {
        return Ok(None);
    }
    let store = lock(&rd.state.shopify.bulk);
    Ok(store
        .current
        .get(&rd.shop)
        .and_then(|id| store.view(&rd.shop, *id)))
}

/// `bulkOperation(id:)`.
pub fn by_id(ctx: &Context<'_>, id: &ID) -> Result<Option<BulkOperation>> {
    let rd = request_data(ctx)?;
    let Some(id) = parse_gid("BulkOperation", id) else {
        return Ok(None);
    };
    Ok(lock(&rd.state.shopify.bulk).view(&rd.shop, id))
}

/// `bulkOperationCancel(id:)`.
pub fn cancel(ctx: &Context<'_>, id: &ID) -> Result<BulkOperationCancelPayload> {
    let rd = request_data(ctx)?;
    let mut store = lock(&rd.state.shopify.bulk);
    let Some(number) = parse_gid("BulkOperation", id) else {
        return Ok(BulkOperationCancelPayload {
            bulk_operation: None,
            user_errors: vec![user_error("id", "Bulk operation does not exist")],
        });
    };
    let Some(view) = store.view(&rd.shop, number) else {
        return Ok(BulkOperationCancelPayload {
            bulk_operation: None,
            user_errors: vec![user_error("id", "Bulk operation does not exist")],
        });
    };
    if !matches!(
        view.status,
        BulkOperationStatus::Created | BulkOperationStatus::Running
    ) {
        return Ok(BulkOperationCancelPayload {
            bulk_operation: Some(view.clone()),
            user_errors: vec![user_error(
                "id",
                format!(
                    "A bulk operation cannot be canceled when it is {}",
                    format!("{:?}", view.status).to_lowercase()
                ),
            )],
        });
    }
    let now = rd.state.clock.now_ms();
    store.update(number, |op| {
        op.view.status = BulkOperationStatus::Canceled;
        op.view.completed_at = Some(time(now));
    });
    Ok(BulkOperationCancelPayload {
        bulk_operation: store.view(&rd.shop, number),
        user_errors: Vec::new(),
    })
}

/// The connections a bulk query may start from.
const CONNECTION_ROOTS: &[&str] = &[
    "products",
    "orders",
    "customers",
    "inventoryItems",
    "locations",
];

/// One operation being carried out.
struct Job {
    state: SharedState,
    shop: String,
    origin: String,
    id: u64,
    query: String,
    root: String,
}

impl Job {
    async fn run(self) {
        let delay_ms = self.state.runtime().shopify_bulk_delay_ms;
        let store = &self.state.shopify.bulk;
        lock(store).update(self.id, |op| op.view.status = BulkOperationStatus::Running);
        if delay_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        }
        if lock(store)
            .operations
            .get(&self.id)
            .is_some_and(|op| op.view.status != BulkOperationStatus::Running)
        {
            return; // cancelled meanwhile
        }
        let injected = lock(&self.state.faults)
            .next_for(&[Key::endpoint(Endpoint::ShopifyBulkRun)])
            .is_some();
        let outcome = if injected {
            Err("injected fault".to_owned())
        } else {
            self.execute().await
        };
        let now = self.state.clock.now_ms();
        lock(store).update(self.id, |op| {
            if op.view.status != BulkOperationStatus::Running {
                return;
            }
            op.view.completed_at = Some(time(now));
            match outcome {
                Ok(result) => {
                    op.view.status = BulkOperationStatus::Completed;
                    op.view.object_count = result.objects.to_string();
                    op.view.root_object_count = result.roots.to_string();
                    op.view.file_size = Some(result.jsonl.len().to_string());
                    op.view.url = (!result.jsonl.is_empty()).then(|| {
                        format!("{}/__sandbox/shopify/bulk/{}.jsonl", self.origin, self.id)
                    });
                    op.jsonl = Some(Arc::new(result.jsonl));
                }
                Err(_) => {
                    op.view.status = BulkOperationStatus::Failed;
                    op.view.error_code = Some(BulkOperationErrorCode::InternalServerError);
                }
            }
        });
    }

    /// Runs the query with unbounded connections and flattens the answer.
    async fn execute(&self) -> Result<Flattened, String> {
        let data = RequestData {
            state: self.state.clone(),
            shop: self.shop.clone(),
            search: Arc::new(Mutex::new(Vec::new())),
            bulk: true,
            origin: self.origin.clone(),
            scopes: None,
        };
        let request = async_graphql::Request::new(self.query.clone()).data(data);
        let response = self.state.shopify.schema.execute(request).await;
        if !response.errors.is_empty() {
            return Err(response
                .errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; "));
        }
        let data = response.data.into_json().map_err(|e| e.to_string())?;
        Ok(flatten(&data[&self.root]))
    }
}

/// A bulk result: JSONL and its counts.
#[derive(Debug, Default, PartialEq)]
pub struct Flattened {
    /// One object a line.
    pub jsonl: String,
    /// Lines.
    pub objects: u64,
    /// Lines of top-level nodes.
    pub roots: u64,
}

/// The nodes of a connection value (`{nodes: [...]}` or `{edges: [{node}]}`).
fn connection_nodes(value: &Value) -> Option<Vec<&Value>> {
    let object = value.as_object()?;
    if let Some(Value::Array(nodes)) = object.get("nodes") {
        return Some(nodes.iter().collect());
    }
    if let Some(Value::Array(edges)) = object.get("edges") {
        return Some(edges.iter().filter_map(|e| e.get("node")).collect());
    }
    None
}

/// Flattens a top-level connection into Shopify's JSONL: each node a line, nested
/// connections' nodes on lines of their own after their parent, with `__parentId`.
pub fn flatten(connection: &Value) -> Flattened {
    let mut out = Flattened::default();
    for node in connection_nodes(connection).unwrap_or_default() {
        out.roots += 1;
        write_node(node, None, &mut out);
    }
    out
}

fn write_node(node: &Value, parent: Option<&str>, out: &mut Flattened) {
    let Some(fields) = node.as_object() else {
        return;
    };
    let mut line = Map::new();
    let mut children = Vec::new();
    for (name, value) in fields {
        match connection_nodes(value) {
            Some(nodes) => children.extend(nodes),
            None => {
                line.insert(name.clone(), value.clone());
            }
        }
    }
    if let Some(parent) = parent {
        line.insert("__parentId".into(), Value::String(parent.to_owned()));
    }
    out.jsonl.push_str(&Value::Object(line).to_string());
    out.jsonl.push('\n');
    out.objects += 1;
    let id = fields.get("id").and_then(Value::as_str);
    for child in children {
        write_node(child, id.or(parent), out);
    }
}

/// `GET /__sandbox/shopify/bulk/{id}.jsonl`: a completed operation's result.
pub async fn download(State(state): State<SharedState>, Path(file): Path<String>) -> Response {
    let jsonl = file
        .strip_suffix(".jsonl")
        .and_then(|id| id.parse::<u64>().ok())
        .and_then(|id| {
            lock(&state.shopify.bulk)
                .operations
                .get(&id)
                .and_then(|op| op.jsonl.clone())
        });
    match jsonl {
        Some(jsonl) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/jsonl")],
            jsonl.as_str().to_owned(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "NoSuchKey").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_connections_become_lines_with_their_parent_id() {
        let connection = json!({ "edges": [
            { "node": { "id": "gid://shopify/Product/1", "title": "A",
                "variants": { "nodes": [
                    { "id": "gid://shopify/ProductVariant/11", "sku": "A-1" },
                    { "id": "gid://shopify/ProductVariant/12", "sku": "A-2" } ] } } },
            { "node": { "id": "gid://shopify/Product/2", "title": "B",
                "variants": { "edges": [] } } },
        ] });
        let flat = flatten(&connection);
        let lines: Vec<Value> = flat
            .jsonl
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(
            lines,
            vec![
                json!({ "id": "gid://shopify/Product/1", "title": "A" }),
                json!({ "id": "gid://shopify/ProductVariant/11", "sku": "A-1", "__parentId": "gid://shopify/Product/1" }),
                json!({ "id": "gid://shopify/ProductVariant/12", "sku": "A-2", "__parentId": "gid://shopify/Product/1" }),
                json!({ "id": "gid://shopify/Product/2", "title": "B" }),
            ]
        );
        assert_eq!((flat.objects, flat.roots), (4, 2));
    }

    #[test]
    fn a_bulk_query_is_one_top_level_query_field() {
        assert_eq!(
            top_level_field("{ products { edges { node { id } } } }").as_deref(),
            Ok("products")
        );
        assert!(top_level_field("{ products { nodes { id } } orders { nodes { id } } }").is_err());
        assert!(top_level_field(
            "mutation { productDelete(id: \"1\") { userErrors { message } } }"
        )
        .is_err());
        assert!(top_level_field("{ products {").is_err());
    }
}
