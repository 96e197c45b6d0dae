//! Shopify's GraphQL cost-based rate limit (shopify.dev, "Shopify API rate limits"):
//! every query has a requested cost computed from the query before it runs, the shop's
//! leaky bucket must hold that many points, and after it runs the difference to the actual
//! cost (from what came back) is refunded.
//!
//! The sandbox's approximation of Shopify's calculation:
//!
//! - a scalar or enum field costs 0;
//! - an object field costs 1 plus its selection (a list of objects that is not a
//!   connection, such as `quantities`, also counts 1);
//! - a connection (any field with a `first` or `last` argument) costs
//!   `2 + n × (1 + cost of the node's selection)`, where `n` is `first`/`last` for the
//!   requested cost and the number of nodes returned for the actual cost; the node's
//!   selection is read under `nodes` and `edges { node }` (the larger one counts), and
//!   `pageInfo`/`cursor` are free.
//!
//! So `products(first: 10) { nodes { id title } }` costs 12 (as Shopify documents), and
//! `products(first: 50) { nodes { id variants(first: 3) { nodes { id inventoryItem { id } } } } }`
//! costs `2 + 50 × (1 + 2 + 3 × (1 + 1))` = 452. A query whose requested cost is over
//! [`MAX_QUERY_COST`] is refused with `MAX_COST_EXCEEDED` without touching the bucket.
//!
//! A mutation costs [`MUTATION_COST`] (10) per top-level field, whatever it selects, as
//! Shopify's standard mutation cost; its actual cost is the same.

use std::collections::HashMap;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Field, OperationDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::Value as GqlValue;
use serde_json::{Map, Value};

/// Shopify refuses any single query whose requested cost exceeds 1,000 points.
pub const MAX_QUERY_COST: u64 = 1000;
/// What one mutation field costs.
pub const MUTATION_COST: u64 = 10;

/// The operation a request runs: the named one, or the only one.
pub fn operation<'a>(
    doc: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<&'a OperationDefinition> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, op)| &op.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| &op.node)
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// Walks selections with fragments expanded.
struct Walker<'a> {
    doc: &'a ExecutableDocument,
    variables: HashMap<String, Value>,
}

impl<'a> Walker<'a> {
    fn new(
        doc: &'a ExecutableDocument,
        op: &OperationDefinition,
        variables: &Map<String, Value>,
    ) -> Self {
        let mut values: HashMap<String, Value> = HashMap::new();
        for definition in &op.variable_definitions {
            let name = definition.node.name.node.to_string();
            if let Some(default) = &definition.node.default_value {
                if let Ok(v) = default.node.clone().into_json() {
                    values.insert(name.clone(), v);
                }
            }
        }
        for (k, v) in variables {
            values.insert(k.clone(), v.clone());
        }
        Self {
            doc,
            variables: values,
        }
    }

    /// The fields of a selection set, fragments expanded (depth-limited against cycles,
    /// which validation rejects anyway).
    fn fields(&self, set: &'a SelectionSet, depth: u32) -> Vec<&'a Field> {
        let mut out = Vec::new();
        if depth > 32 {
            return out;
        }
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => out.push(&field.node),
                Selection::InlineFragment(fragment) => {
                    out.extend(self.fields(&fragment.node.selection_set.node, depth + 1));
                }
                Selection::FragmentSpread(spread) => {
                    if let Some(def) = self.doc.fragments.get(&spread.node.fragment_name.node) {
                        out.extend(self.fields(&def.node.selection_set.node, depth + 1));
                    }
                }
            }
        }
        out
    }

    /// `first` or `last` of a connection field, or `None` if it is not a connection.
    fn page_size(&self, field: &Field) -> Option<u64> {
        let mut found = None;
        for (name, value) in &field.arguments {
            if name.node != "first" && name.node != "last" {
                continue;
            }
            let resolved = value.node.clone().into_const_with(|var| {
                self.variables
                    .get(var.as_str())
                    .and_then(|v| GqlValue::from_json(v.clone()).ok())
                    .ok_or(())
            });
            let n = match resolved {
                Ok(GqlValue::Number(n)) => n.as_u64(),
                _ => None,
            };
            found = Some(found.unwrap_or(0).max(n.unwrap_or(0)));
        }
        found
    }

    fn is_connection(field: &Field) -> bool {
        field
            .arguments
            .iter()
            .any(|(name, _)| name.node == "first" || name.node == "last")
    }

    /// Requested cost of a selection set.
    fn requested(&self, set: &'a SelectionSet, depth: u32) -> u64 {
        self.fields(set, depth)
            .into_iter()
            .map(|field| self.requested_field(field, depth))
            .fold(0u64, u64::saturating_add)
    }

    fn requested_field(&self, field: &'a Field, depth: u32) -> u64 {
        if field.name.node.starts_with("__") {
            return 0;
        }
        let children = &field.selection_set.node;
        if Self::is_connection(field) {
            let n = self.page_size(field).unwrap_or(0);
            let node = self.node_requested(children, depth + 1);
            return 2u64.saturating_add(n.saturating_mul(1u64.saturating_add(node)));
        }
        if children.items.is_empty() {
            0
        } else {
            1u64.saturating_add(self.requested(children, depth + 1))
        }
    }

    /// The larger of the costs selected under `nodes` and under `edges { node }`.
    fn node_requested(&self, connection: &'a SelectionSet, depth: u32) -> u64 {
        let mut best = 0;
        for field in self.fields(connection, depth) {
            let cost = match field.name.node.as_str() {
                "nodes" => self.requested(&field.selection_set.node, depth + 1),
                "edges" => self
                    .fields(&field.selection_set.node, depth + 1)
                    .into_iter()
                    .filter(|f| f.name.node == "node")
                    .map(|f| self.requested(&f.selection_set.node, depth + 2))
                    .max()
                    .unwrap_or(0),
                _ => 0,
            };
            best = best.max(cost);
        }
        best
    }

    /// Actual cost of a selection set given the data that came back for it.
    fn actual(&self, set: &'a SelectionSet, data: &Value, depth: u32) -> u64 {
        self.fields(set, depth)
            .into_iter()
            .map(|field| {
                let key = field
                    .alias
                    .as_ref()
                    .map_or(field.name.node.as_str(), |a| a.node.as_str());
                self.actual_field(field, data.get(key).unwrap_or(&Value::Null), depth)
            })
            .fold(0u64, u64::saturating_add)
    }

    fn actual_field(&self, field: &'a Field, value: &Value, depth: u32) -> u64 {
        if field.name.node.starts_with("__") || value.is_null() {
            return 0;
        }
        let children = &field.selection_set.node;
        if Self::is_connection(field) {
            return 2u64.saturating_add(self.connection_actual(children, value, depth + 1));
        }
        if children.items.is_empty() {
            return 0;
        }
        match value {
            Value::Array(items) if items.is_empty() => 0,
            Value::Array(_) => 1,
            other => 1u64.saturating_add(self.actual(children, other, depth + 1)),
        }
    }

    /// Sum over the returned nodes of (1 + the node's actual cost).
    fn connection_actual(&self, connection: &'a SelectionSet, value: &Value, depth: u32) -> u64 {
        let mut best = 0;
        for field in self.fields(connection, depth) {
            let key = field
                .alias
                .as_ref()
                .map_or(field.name.node.as_str(), |a| a.node.as_str());
            let Some(Value::Array(list)) = value.get(key) else {
                continue;
            };
            let cost = match field.name.node.as_str() {
                "nodes" => list
                    .iter()
                    .map(|node| {
                        1u64.saturating_add(self.actual(&field.selection_set.node, node, depth + 1))
                    })
                    .fold(0u64, u64::saturating_add),
                "edges" => {
                    let node_fields: Vec<&Field> = self
                        .fields(&field.selection_set.node, depth + 1)
                        .into_iter()
                        .filter(|f| f.name.node == "node")
                        .collect();
                    list.iter()
                        .map(|edge| {
                            let inner = node_fields
                                .iter()
                                .map(|f| {
                                    let key = f
                                        .alias
                                        .as_ref()
                                        .map_or(f.name.node.as_str(), |a| a.node.as_str());
                                    self.actual(
                                        &f.selection_set.node,
                                        edge.get(key).unwrap_or(&Value::Null),
                                        depth + 2,
                                    )
                                })
                                .max()
                                .unwrap_or(0);
                            1u64.saturating_add(inner)
                        })
                        .fold(0u64, u64::saturating_add)
                }
                _ => 0,
            };
            best = best.max(cost);
        }
        best
    }
}

/// The cost of a mutation: [`MUTATION_COST`] per top-level field (aliases count apart).
fn mutation_cost(doc: &ExecutableDocument, op: &OperationDefinition) -> u64 {
    let walker = Walker::new(doc, op, &Map::new());
    let fields = walker
        .fields(&op.selection_set.node, 0)
        .into_iter()
        .filter(|f| !f.name.node.starts_with("__"))
        .count();
    u64::try_from(fields)
        .unwrap_or(u64::MAX)
        .saturating_mul(MUTATION_COST)
}

/// The requested cost of the operation.
pub fn requested_cost(
    doc: &ExecutableDocument,
    op: &OperationDefinition,
    variables: &Map<String, Value>,
) -> u64 {
    if op.ty == OperationType::Mutation {
        return mutation_cost(doc, op);
    }
    Walker::new(doc, op, variables).requested(&op.selection_set.node, 0)
}

/// The actual cost of the operation, given the `data` it returned.
pub fn actual_cost(
    doc: &ExecutableDocument,
    op: &OperationDefinition,
    variables: &Map<String, Value>,
    data: &Value,
) -> u64 {
    if op.ty == OperationType::Mutation {
        return mutation_cost(doc, op);
    }
    Walker::new(doc, op, variables).actual(&op.selection_set.node, data, 0)
}

/// The top-level field names of the operation (fragments expanded, `__typename` and other
/// introspection fields left out), in order, without repeats.
pub fn top_level_fields(doc: &ExecutableDocument, op: &OperationDefinition) -> Vec<String> {
    let walker = Walker::new(doc, op, &Map::new());
    let mut out: Vec<String> = Vec::new();
    for field in walker.fields(&op.selection_set.node, 0) {
        let name = field.name.node.as_str();
        if !name.starts_with("__") && !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    }
    out
}

/// One shop's bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    available: f64,
    at_ms: i64,
}

/// The bucket's state as `throttleStatus` reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThrottleStatus {
    /// `maximumAvailable`.
    pub maximum: f64,
    /// `currentlyAvailable`.
    pub available: f64,
    /// `restoreRate` (points per second).
    pub restore_rate: f64,
}

impl ThrottleStatus {
    /// As JSON: `{maximumAvailable, currentlyAvailable, restoreRate}` (the current level
    /// whole, as Shopify reports it).
    pub fn to_json(self) -> Value {
        serde_json::json!({
            "maximumAvailable": self.maximum,
            "currentlyAvailable": self.available.max(0.0).floor() as u64,
            "restoreRate": self.restore_rate,
        })
    }
}

/// Bucket settings: size and restore rate (`None` = unlimited).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BucketConfig {
    /// `maximumAvailable`.
    pub size: f64,
    /// Points restored per second; `None` never throttles.
    pub restore_rate: Option<f64>,
}

/// Per-shop leaky buckets. New shops start full.
#[derive(Debug, Default)]
pub struct Buckets {
    shops: HashMap<String, Bucket>,
}

impl Buckets {
    fn refill(&mut self, shop: &str, now_ms: i64, config: BucketConfig) -> &mut Bucket {
        let bucket = self.shops.entry(shop.to_owned()).or_insert(Bucket {
            available: config.size,
            at_ms: now_ms,
        });
        match config.restore_rate {
            None => bucket.available = config.size,
            Some(rate) => {
                let elapsed = (now_ms - bucket.at_ms).max(0) as f64 / 1000.0;
                bucket.available = (bucket.available + elapsed * rate).min(config.size);
            }
        }
        bucket.at_ms = bucket.at_ms.max(now_ms);
        bucket
    }

    fn status(available: f64, config: BucketConfig) -> ThrottleStatus {
        ThrottleStatus {
            maximum: config.size,
            available,
            // "Unlimited" reports a bucket that refills completely every second.
            restore_rate: config.restore_rate.unwrap_or(config.size),
        }
    }

    /// The shop's current status without taking anything.
    pub fn peek(&mut self, shop: &str, now_ms: i64, config: BucketConfig) -> ThrottleStatus {
        let available = self.refill(shop, now_ms, config).available;
        Self::status(available, config)
    }

    /// Takes `cost` points: `Ok` with the level after, or `Err` with the level as it is
    /// when the bucket holds fewer than `cost` (nothing taken).
    pub fn take(
        &mut self,
        shop: &str,
        cost: u64,
        now_ms: i64,
        config: BucketConfig,
    ) -> Result<ThrottleStatus, ThrottleStatus> {
        let bucket = self.refill(shop, now_ms, config);
        let cost = cost as f64;
        if config.restore_rate.is_some() && bucket.available < cost {
            return Err(Self::status(bucket.available, config));
        }
        if config.restore_rate.is_some() {
            bucket.available -= cost;
        }
        Ok(Self::status(bucket.available, config))
    }

    /// Gives back `points` (requested minus actual cost).
    pub fn refund(
        &mut self,
        shop: &str,
        points: u64,
        now_ms: i64,
        config: BucketConfig,
    ) -> ThrottleStatus {
        let bucket = self.refill(shop, now_ms, config);
        bucket.available = (bucket.available + points as f64).min(config.size);
        Self::status(bucket.available, config)
    }

    /// Sets a shop's level (control API), clamped to the bucket.
    pub fn set(
        &mut self,
        shop: &str,
        available: f64,
        now_ms: i64,
        config: BucketConfig,
    ) -> ThrottleStatus {
        let bucket = self.refill(shop, now_ms, config);
        bucket.available = available.clamp(0.0, config.size);
        Self::status(bucket.available, config)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use async_graphql::parser::parse_query;
    use serde_json::json;

    fn cost(query: &str, variables: Value) -> u64 {
        let doc = parse_query(query).unwrap();
        let op = operation(&doc, None).unwrap();
        requested_cost(&doc, op, variables.as_object().unwrap())
    }

    #[test]
    fn requested_costs() {
        assert_eq!(
            cost("{ products(first: 10) { nodes { id title } } }", json!({})),
            12
        );
        assert_eq!(
            cost(
                "{ products(first: 10) { edges { cursor node { id } } pageInfo { hasNextPage } } }",
                json!({})
            ),
            12
        );
        assert_eq!(
            cost(
                "query($n: Int!) { products(first: $n) { nodes { id variants(first: 3) { nodes { id inventoryItem { id } } } } } }",
                json!({"n": 50})
            ),
            452
        );
        assert_eq!(
            cost(
                "query Q($n: Int = 5) { orders(first: $n) { nodes { ...O } } } fragment O on Order { id customer { id } totalPriceSet { shopMoney { amount } } }",
                json!({})
            ),
            2 + 5 * (1 + 1 + 2)
        );
        assert_eq!(cost("{ shop { name } }", json!({})), 1);
        assert_eq!(
            cost(
                "mutation { a: webhookSubscriptionDelete(id: \"x\") { deletedWebhookSubscriptionId } \
                 b: webhookSubscriptionDelete(id: \"y\") { userErrors { message } } }",
                json!({})
            ),
            20
        );
        assert_eq!(
            cost(
                "{ products(first: 250) { nodes { variants(first: 3) { nodes { id } } } } }",
                json!({})
            ),
            2 + 250 * (1 + 5)
        );
    }

    #[test]
    fn actual_cost_counts_returned_nodes() {
        let query =
            "{ p: products(first: 10) { nodes { id variants(first: 3) { nodes { id } } } } }";
        let doc = parse_query(query).unwrap();
        let op = operation(&doc, None).unwrap();
        let data = json!({"p": {"nodes": [
            {"id": "1", "variants": {"nodes": [{"id": "a"}]}},
            {"id": "2", "variants": {"nodes": [{"id": "b"}, {"id": "c"}]}},
        ]}});
        // 2 + (1 + 2 + 1) + (1 + 2 + 2)
        assert_eq!(actual_cost(&doc, op, &Map::new(), &data), 11);
        assert_eq!(top_level_fields(&doc, op), ["products"]);
        assert_eq!(actual_cost(&doc, op, &Map::new(), &Value::Null), 0);
    }

    #[test]
    fn buckets_leak_and_refill() {
        let config = BucketConfig {
            size: 100.0,
            restore_rate: Some(10.0),
        };
        let mut b = Buckets::default();
        assert_eq!(b.take("a", 60, 0, config).unwrap().available, 40.0);
        assert_eq!(b.take("a", 60, 0, config).unwrap_err().available, 40.0);
        // Another shop has its own bucket.
        assert!(b.take("b", 60, 0, config).is_ok());
        assert_eq!(b.take("a", 60, 2_000, config).unwrap().available, 0.0);
        assert_eq!(b.refund("a", 30, 2_000, config).available, 30.0);
        assert_eq!(b.peek("a", 100_000, config).available, 100.0);
        let unlimited = BucketConfig {
            size: 100.0,
            restore_rate: None,
        };
        for _ in 0..10 {
            assert!(b.take("a", 100, 0, unlimited).is_ok());
        }
    }
}
