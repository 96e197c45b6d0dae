//! The control API under `/__sandbox`: counters and a request log per endpoint, fault
//! injection, runtime settings, token switches and direct access to provider data.
//!
//! It has no authentication on purpose: the sandbox is a local test double bound to
//! 127.0.0.1, and tests must be able to drive it without credentials.

use std::collections::{BTreeMap, HashMap, VecDeque};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use crate::config::RuntimeConfig;
use crate::endpoint::Endpoint;
use crate::keap::{controls, hooks, oauth};
use crate::shopify;
use crate::state::{lock, SharedState};
use crate::time::format_ms;

/// Requests kept in the log per endpoint.
pub const REQUEST_LOG_CAPACITY: usize = 10_000;

/// An error of the control API: `{"error": "..."}` with a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlError {
    status: StatusCode,
    message: String,
}

impl ControlError {
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.message}))).into_response()
    }
}

/// Parses a JSON request body, answering 400 with serde's message (which names the field).
pub fn parse_json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(body)
        .map_err(|e| ControlError::bad_request(format!("invalid body: {e}")))
}

/// A key of the control API: an endpoint, or for `shopify.graphql` one top-level field of
/// the queries (`shopify.graphql.products`). Counters, the request log and faults accept
/// both kinds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// A GraphQL top-level field, for `shopify.graphql.<field>`.
    pub field: Option<String>,
}

impl Key {
    /// The key of a whole endpoint.
    pub fn endpoint(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            field: None,
        }
    }

    /// The key of one GraphQL top-level field of `endpoint`.
    pub fn field(endpoint: Endpoint, field: &str) -> Self {
        Self {
            endpoint,
            field: Some(field.to_owned()),
        }
    }

    /// Parses `keap.contacts.list`, `shopify.graphql` or `shopify.graphql.products` (the
    /// field must be one of the sandbox schema's query fields, so typos are caught).
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(endpoint) = Endpoint::from_key(text) {
            return Some(Self::endpoint(endpoint));
        }
        let graphql = Endpoint::ShopifyGraphql;
        let field = text.strip_prefix(graphql.key())?.strip_prefix('.')?;
        shopify::graphql::QUERY_FIELDS
            .contains(&field)
            .then(|| Self::field(graphql, field))
    }

    fn parse_owned(text: String) -> Option<Self> {
        Self::parse(&text)
    }

    /// Every key [`Key::parse`] accepts, for error messages.
    pub fn known() -> Vec<String> {
        Endpoint::ALL
            .iter()
            .map(|e| e.key().to_owned())
            .chain(
                shopify::graphql::QUERY_FIELDS
                    .iter()
                    .map(|f| format!("{}.{f}", Endpoint::ShopifyGraphql.key())),
            )
            .collect()
    }

    /// The key as text.
    pub fn name(&self) -> String {
        match &self.field {
            None => self.endpoint.key().to_owned(),
            Some(field) => format!("{}.{field}", self.endpoint.key()),
        }
    }
}

/// One request as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    /// Order of arrival across all endpoints.
    pub seq: u64,
    /// Endpoint key.
    pub endpoint: &'static str,
    /// Arrival time, unix ms.
    pub at_ms: i64,
    /// HTTP method.
    pub method: String,
    /// Path and query, with secret query values redacted.
    pub path_and_query: String,
    /// Status answered.
    pub status: u16,
    /// Time taken, ms.
    pub duration_ms: i64,
    /// Whether an injected fault produced or delayed the answer.
    pub fault: bool,
    /// For `shopify.graphql`: the top-level fields the query asked for (`products`, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub graphql_fields: Vec<String>,
}

/// Request counters and the per-endpoint request log.
#[derive(Debug, Default)]
pub struct Recorder {
    seq: u64,
    requests: BTreeMap<Endpoint, u64>,
    statuses: BTreeMap<Endpoint, BTreeMap<u16, u64>>,
    /// Per GraphQL top-level field (`shopify.graphql.products`): requests and statuses.
    field_requests: BTreeMap<String, u64>,
    field_statuses: BTreeMap<String, BTreeMap<u16, u64>>,
    log: HashMap<Endpoint, VecDeque<RequestRecord>>,
    /// Successful refresh-token grants.
    pub refreshes: u64,
    /// Refresh attempts the handler rejected (not counting injected faults).
    pub refresh_failures: u64,
    /// Successful authorization-code exchanges.
    pub code_exchanges: u64,
    /// Code exchanges the handler rejected (not counting injected faults).
    pub code_exchange_failures: u64,
    /// Successful Shopify code exchanges (`POST /admin/oauth/access_token`).
    pub shopify_code_exchanges: u64,
    /// Shopify code exchanges the handler rejected (not counting injected faults).
    pub shopify_code_exchange_failures: u64,
}

/// What a request did, for [`Recorder::record`].
#[derive(Debug, Clone)]
pub struct Observed {
    /// Arrival time, unix ms.
    pub at_ms: i64,
    /// HTTP method.
    pub method: String,
    /// Redacted path and query.
    pub path_and_query: String,
    /// Status answered.
    pub status: u16,
    /// Time taken, ms.
    pub duration_ms: i64,
    /// Whether a fault fired.
    pub fault: bool,
    /// GraphQL top-level fields asked for (empty for other endpoints).
    pub graphql_fields: Vec<String>,
}

impl Recorder {
    /// Counts and logs one request.
    pub fn record(&mut self, endpoint: Endpoint, seen: Observed) {
        self.seq += 1;
        *self.requests.entry(endpoint).or_default() += 1;
        *self
            .statuses
            .entry(endpoint)
            .or_default()
            .entry(seen.status)
            .or_default() += 1;
        for field in &seen.graphql_fields {
            let name = Key::field(endpoint, field).name();
            *self.field_requests.entry(name.clone()).or_default() += 1;
            *self
                .field_statuses
                .entry(name)
                .or_default()
                .entry(seen.status)
                .or_default() += 1;
        }
        let log = self.log.entry(endpoint).or_default();
        if log.len() == REQUEST_LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(RequestRecord {
            seq: self.seq,
            endpoint: endpoint.key(),
            at_ms: seen.at_ms,
            method: seen.method,
            path_and_query: seen.path_and_query,
            status: seen.status,
            duration_ms: seen.duration_ms,
            fault: seen.fault,
            graphql_fields: seen.graphql_fields,
        });
    }

    /// Requests seen by `endpoint` since the last reset.
    pub fn count(&self, endpoint: Endpoint) -> u64 {
        self.requests.get(&endpoint).copied().unwrap_or(0)
    }

    /// Requests to one key (an endpoint, or a GraphQL field: `shopify.graphql.products`).
    pub fn count_key(&self, key: &Key) -> u64 {
        match key.field {
            None => self.count(key.endpoint),
            Some(_) => self.field_requests.get(&key.name()).copied().unwrap_or(0),
        }
    }

    /// The counters as JSON; every endpoint and every schema query field
    /// (`shopify.graphql.<field>`) is listed, with 0 when unused.
    pub fn counters_json(&self) -> Value {
        let mut requests: BTreeMap<String, u64> = Key::known()
            .into_iter()
            .filter_map(Key::parse_owned)
            .map(|k| (k.name(), self.count_key(&k)))
            .collect();
        for (name, n) in &self.field_requests {
            requests.insert(name.clone(), *n);
        }
        let by_status = |m: &BTreeMap<u16, u64>| -> BTreeMap<String, u64> {
            m.iter().map(|(s, n)| (s.to_string(), *n)).collect()
        };
        let mut statuses: BTreeMap<String, BTreeMap<String, u64>> = self
            .statuses
            .iter()
            .map(|(e, m)| (e.key().to_owned(), by_status(m)))
            .collect();
        for (name, m) in &self.field_statuses {
            statuses.insert(name.clone(), by_status(m));
        }
        json!({
            "requests": requests,
            "statuses": statuses,
            "refreshes": self.refreshes,
            "refresh_failures": self.refresh_failures,
            "code_exchanges": self.code_exchanges,
            "code_exchange_failures": self.code_exchange_failures,
            "shopify_code_exchanges": self.shopify_code_exchanges,
            "shopify_code_exchange_failures": self.shopify_code_exchange_failures,
        })
    }

    /// Logged requests, oldest first, optionally for one key (an endpoint, or a GraphQL
    /// field: requests whose query asked for it) and from `since_ms` on.
    pub fn requests(&self, key: Option<&Key>, since_ms: Option<i64>) -> Vec<RequestRecord> {
        let mut out: Vec<RequestRecord> = self
            .log
            .iter()
            .filter(|(e, _)| key.is_none_or(|want| want.endpoint == **e))
            .flat_map(|(_, log)| log.iter())
            .filter(|r| {
                key.and_then(|k| k.field.as_ref())
                    .is_none_or(|f| r.graphql_fields.contains(f))
            })
            .filter(|r| since_ms.is_none_or(|s| r.at_ms >= s))
            .cloned()
            .collect();
        out.sort_by_key(|r| r.seq);
        out
    }

    /// Zeroes every counter and empties the log.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// A fault as posted to `POST /__sandbox/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Endpoint key (`keap.contacts.list`, ...) or GraphQL field key
    /// (`shopify.graphql.products`).
    pub endpoint: String,
    /// Status to answer; `None` only delays the real answer.
    #[serde(default)]
    pub status: Option<u16>,
    /// How many requests it affects.
    #[serde(default = "one")]
    pub times: u32,
    /// Headers to add.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body: a string is sent as is, any other JSON value serialised.
    #[serde(default, deserialize_with = "any_value")]
    pub body: Option<Value>,
    /// Delay before answering.
    #[serde(default)]
    pub latency_ms: u64,
    /// Matching requests to let through before the fault starts.
    #[serde(default)]
    pub after: u32,
}

fn one() -> u32 {
    1
}

/// Keeps an explicit `"body": null` apart from no body: both mean "default body".
fn any_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    let value = Value::deserialize(d)?;
    Ok((!value.is_null()).then_some(value))
}

/// A queued fault.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Status to answer, or `None` for latency only.
    pub status: Option<StatusCode>,
    /// Headers to add.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body, or `None` for the provider's default error body.
    pub body: Option<String>,
    /// Delay before answering, ms.
    pub latency_ms: u64,
    skip: u32,
    remaining: u32,
}

impl Fault {
    /// Validates a posted spec.
    pub fn from_spec(spec: FaultSpec) -> Result<(Key, Self), ControlError> {
        let key = Key::parse(&spec.endpoint).ok_or_else(|| {
            ControlError::bad_request(format!(
                "unknown endpoint '{}'; known: {}",
                spec.endpoint,
                Key::known().join(", ")
            ))
        })?;
        if spec.times == 0 {
            return Err(ControlError::bad_request("times must be at least 1"));
        }
        let status = spec
            .status
            .map(|s| {
                StatusCode::from_u16(s)
                    .ok()
                    .filter(|s| !s.is_informational())
                    .ok_or_else(|| ControlError::bad_request(format!("invalid status {s}")))
            })
            .transpose()?;
        let headers = spec
            .headers
            .iter()
            .map(|(name, value)| {
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    ControlError::bad_request(format!("invalid header name '{name}'"))
                })?;
                let value = HeaderValue::from_str(value).map_err(|_| {
                    ControlError::bad_request(format!("invalid value for header '{name}'"))
                })?;
                Ok((name, value))
            })
            .collect::<Result<Vec<_>, ControlError>>()?;
        let body = spec.body.map(|b| match b {
            Value::String(s) => s,
            other => other.to_string(),
        });
        Ok((
            key,
            Self {
                status,
                headers,
                body,
                latency_ms: spec.latency_ms,
                skip: spec.after,
                remaining: spec.times,
            },
        ))
    }

    fn view(&self, key: &Key) -> Value {
        json!({
            "endpoint": key.name(),
            "status": self.status.map(|s| s.as_u16()),
            "remaining": self.remaining,
            "after": self.skip,
            "latency_ms": self.latency_ms,
        })
    }
}

/// Faults queued per key; only the head of each queue is live.
#[derive(Debug, Default)]
pub struct FaultBook {
    queues: BTreeMap<Key, VecDeque<Fault>>,
}

impl FaultBook {
    /// Queues a fault behind any already queued for that key.
    pub fn push(&mut self, key: Key, fault: Fault) -> usize {
        let queue = self.queues.entry(key).or_default();
        queue.push_back(fault);
        queue.len()
    }

    /// Accounts for one request that matches every key in `keys` (most specific first:
    /// `shopify.graphql.products` before `shopify.graphql`), and returns the fault that
    /// answers it, if any. Each queue counts its own matching requests: a head still
    /// skipping (`after`) counts this one down; the first head that is due fires and is
    /// consumed, and due heads of less specific keys wait for the next request.
    pub fn next_for(&mut self, keys: &[Key]) -> Option<Fault> {
        let mut fired = None;
        for key in keys {
            let Some(queue) = self.queues.get_mut(key) else {
                continue;
            };
            let Some(head) = queue.front_mut() else {
                continue;
            };
            if head.skip > 0 {
                head.skip -= 1;
                continue;
            }
            if fired.is_some() {
                continue;
            }
            head.remaining -= 1;
            fired = Some(head.clone());
            if head.remaining == 0 {
                queue.pop_front();
            }
        }
        fired
    }

    /// Drops every queued fault.
    pub fn clear(&mut self) {
        self.queues.clear();
    }

    /// Pending faults, as JSON.
    pub fn pending(&self) -> Vec<Value> {
        self.queues
            .iter()
            .flat_map(|(k, q)| q.iter().map(move |f| f.view(k)))
            .collect()
    }
}

/// The control routes (nested under `/__sandbox`).
pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/health", get(health))
        .route("/counters", get(counters))
        .route("/counters/reset", post(reset_counters))
        .route("/requests", get(requests))
        .route(
            "/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route(
            "/holds",
            get(crate::hold::list)
                .post(crate::hold::add)
                .delete(crate::hold::clear),
        )
        .route("/holds/release", post(crate::hold::release))
        .route("/config", get(get_config).post(set_config))
        .route("/tokens", get(token_stats))
        .route("/tokens/expire-all", post(oauth::control_expire_all))
        .route("/tokens/revoke-all", post(revoke_all))
        .route("/keap/tokens", post(oauth::control_issue))
        .route("/keap/tokens/issued", get(oauth::control_issued))
        .route("/shopify/tokens", post(shopify::oauth::control_issue))
        .route("/github/tokens", post(crate::github::control_token))
        .route(
            "/github/repos/{owner}/{repo}/{*change}",
            post(crate::github::control_change),
        )
        .route("/gitlab/tokens", post(crate::gitlab::control_token))
        .route(
            "/gitlab/projects/{namespace}/{project}/{*change}",
            post(crate::gitlab::control_change),
        )
        .route("/bitbucket/tokens", post(crate::bitbucket::control_token))
        .route(
            "/bitbucket/repositories/{workspace}/{repo}/{*change}",
            post(crate::bitbucket::control_change),
        )
        .route(
            "/openai/requests",
            get(crate::openai::control_requests).delete(crate::openai::control_clear),
        )
        .route("/clock", get(clock_now))
        .route("/clock/advance", post(clock_advance))
        .route("/keap/products", get(crate::keap::writes::control_products))
        .route(
            "/keap/{resource}",
            get(controls::list_ids).post(controls::create),
        )
        .route("/keap/{resource}/touch", post(controls::touch))
        .route("/keap/{resource}/update", post(controls::update))
        .route(
            "/keap/{resource}/{id}",
            get(controls::get_one)
                .patch(controls::patch)
                .delete(controls::delete),
        )
        .route("/keap/hooks", get(hooks::control_list))
        .route("/keap/hooks/deliver", post(hooks::control_deliver))
        .route("/keap/hooks/{key}", delete(hooks::control_delete))
        .route(
            "/keap/hooks/{key}/deactivate",
            post(hooks::control_deactivate),
        )
        .route("/shopify/webhooks", get(shopify::webhooks::control_list))
        .route(
            "/shopify/webhooks/deliver",
            post(shopify::webhooks::control_deliver),
        )
        .route("/shopify/bucket", post(shopify::admin::control_bucket))
        .route(
            "/shopify/{resource}",
            get(shopify::admin::control_list).post(shopify::admin::control_create),
        )
        .route(
            "/shopify/{resource}/{id}/set",
            post(shopify::admin::control_set_level),
        )
        .route(
            "/shopify/{resource}/update",
            post(shopify::admin::control_update),
        )
        .route(
            "/shopify/{resource}/{id}",
            get(shopify::admin::control_get).delete(shopify::admin::control_delete),
        )
}

/// The sandbox's now.
fn clock_json(state: &SharedState) -> Value {
    let now = state.clock.now_ms();
    json!({"now_ms": now, "now": format_ms(now)})
}

/// `GET /clock`: `{"now_ms", "now"}`.
async fn clock_now(State(state): State<SharedState>) -> Json<Value> {
    Json(clock_json(&state))
}

/// Body of `POST /clock/advance`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    ms: i64,
}

/// `POST /clock/advance {"ms": N}`: moves the sandbox's now forward (update times, token
/// expiry, quota windows and Shopify's cost buckets all follow it).
async fn clock_advance(
    State(state): State<SharedState>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let advance: Advance = parse_json_body(&body)?;
    if advance.ms < 0 {
        return Err(ControlError::bad_request("ms must not be negative"));
    }
    state.clock.advance_ms(advance.ms);
    Ok(Json(clock_json(&state)))
}

/// `GET /tokens`: live token counts per provider.
async fn token_stats(State(state): State<SharedState>) -> Json<Value> {
    let now = state.clock.now_ms();
    let keap = lock(&state.keap.oauth).stats(now);
    let shopify = lock(&state.shopify.oauth).stats(now);
    Json(json!({"keap": keap, "shopify": shopify}))
}

/// `POST /tokens/revoke-all`: forgets every token and code of every provider, as when the
/// user disconnects (Keap) or uninstalls the app (Shopify).
async fn revoke_all(State(state): State<SharedState>) -> Json<Value> {
    let keap = lock(&state.keap.oauth).revoke_all();
    let shopify = lock(&state.shopify.oauth).revoke_all();
    state.persist();
    Json(json!({"revoked_refresh_tokens": keap, "revoked_shopify_tokens": shopify}))
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn counters(State(state): State<SharedState>) -> Json<Value> {
    Json(lock(&state.recorder).counters_json())
}

async fn reset_counters(State(state): State<SharedState>) -> Json<Value> {
    lock(&state.recorder).reset();
    Json(json!({"status": "ok"}))
}

async fn requests(
    State(state): State<SharedState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<RequestRecord>>, ControlError> {
    let query = oauth::parse_pairs(raw.as_deref().unwrap_or(""));
    let key = query
        .get("endpoint")
        .map(|key| {
            Key::parse(key)
                .ok_or_else(|| ControlError::bad_request(format!("unknown endpoint '{key}'")))
        })
        .transpose()?;
    let since_ms = query
        .get("since_ms")
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| ControlError::bad_request("since_ms must be an integer"))
        })
        .transpose()?;
    Ok(Json(lock(&state.recorder).requests(key.as_ref(), since_ms)))
}

async fn list_faults(State(state): State<SharedState>) -> Json<Vec<Value>> {
    Json(lock(&state.faults).pending())
}

async fn add_fault(
    State(state): State<SharedState>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let spec: FaultSpec = parse_json_body(&body)?;
    let (key, fault) = Fault::from_spec(spec)?;
    let name = key.name();
    let queued = lock(&state.faults).push(key, fault);
    Ok(Json(json!({"endpoint": name, "queued": queued})))
}

async fn clear_faults(State(state): State<SharedState>) -> Json<Value> {
    lock(&state.faults).clear();
    Json(json!({"status": "ok"}))
}

async fn get_config(State(state): State<SharedState>) -> Json<RuntimeConfig> {
    Json(state.runtime())
}

/// Body of `POST /__sandbox/config`: any subset; `rate_limit_per_minute: null` turns the
/// limit off, leaving it out keeps it; likewise `shopify_restore_rate: null` stops Shopify
/// throttling.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigChange {
    #[serde(default)]
    access_token_ttl_secs: Option<u64>,
    #[serde(default)]
    refresh_token_ttl_secs: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    rate_limit_per_minute: Option<Option<u32>>,
    #[serde(default)]
    send_retry_after: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    shopify_restore_rate: Option<Option<f64>>,
    #[serde(default)]
    shopify_bucket_size: Option<f64>,
    #[serde(default)]
    shopify_bulk_delay_ms: Option<u64>,
}

/// Tells "present, maybe null" (`Some(..)`) from "absent" (`None`, via `default`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

async fn set_config(
    State(state): State<SharedState>,
    body: Bytes,
) -> Result<Json<RuntimeConfig>, ControlError> {
    let change: ConfigChange = parse_json_body(&body)?;
    if let Some(Some(rate)) = change.shopify_restore_rate {
        if !rate.is_finite() || rate < 0.0 {
            return Err(ControlError::bad_request(
                "shopify_restore_rate must be a non-negative number or null",
            ));
        }
    }
    if let Some(size) = change.shopify_bucket_size {
        if !size.is_finite() || size <= 0.0 {
            return Err(ControlError::bad_request(
                "shopify_bucket_size must be a positive number",
            ));
        }
    }
    Ok(Json(state.update_runtime(|rt| {
        if let Some(ttl) = change.access_token_ttl_secs {
            rt.access_token_ttl_secs = ttl;
        }
        if let Some(ttl) = change.refresh_token_ttl_secs {
            rt.refresh_token_ttl_secs = ttl;
        }
        if let Some(limit) = change.rate_limit_per_minute {
            rt.rate_limit_per_minute = limit;
        }
        if let Some(send) = change.send_retry_after {
            rt.send_retry_after = send;
        }
        if let Some(rate) = change.shopify_restore_rate {
            rt.shopify_restore_rate = rate;
        }
        if let Some(size) = change.shopify_bucket_size {
            rt.shopify_bucket_size = size;
        }
        if let Some(delay) = change.shopify_bulk_delay_ms {
            rt.shopify_bulk_delay_ms = delay;
        }
    })))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(json: Value) -> (Key, Fault) {
        Fault::from_spec(serde_json::from_value(json).unwrap()).unwrap()
    }

    #[test]
    fn faults_fire_times_after_skipping() {
        let mut book = FaultBook::default();
        let (e, f) =
            spec(json!({"endpoint": "keap.contacts.list", "status": 500, "times": 2, "after": 1}));
        book.push(e, f);
        let (e, f) = spec(json!({"endpoint": "keap.contacts.list", "status": 429}));
        book.push(e, f);
        let fired: Vec<Option<u16>> = (0..6)
            .map(|_| {
                book.next_for(&[Key::endpoint(Endpoint::KeapContactsList)])
                    .and_then(|f| f.status.map(|s| s.as_u16()))
            })
            .collect();
        assert_eq!(fired, [None, Some(500), Some(500), Some(429), None, None]);
        assert!(book
            .next_for(&[Key::endpoint(Endpoint::KeapOAuthToken)])
            .is_none());
    }

    #[test]
    fn field_faults_count_their_own_requests() {
        let mut book = FaultBook::default();
        // The third products page fails; any other query is unaffected.
        let (k, f) =
            spec(json!({"endpoint": "shopify.graphql.products", "status": 502, "after": 2}));
        assert_eq!(k.name(), "shopify.graphql.products");
        book.push(k, f);
        let products = [
            Key::field(Endpoint::ShopifyGraphql, "products"),
            Key::endpoint(Endpoint::ShopifyGraphql),
        ];
        let orders = [
            Key::field(Endpoint::ShopifyGraphql, "orders"),
            Key::endpoint(Endpoint::ShopifyGraphql),
        ];
        let mut fired = Vec::new();
        for keys in [&products, &orders, &products, &orders, &products, &products] {
            fired.push(
                book.next_for(keys)
                    .and_then(|f| f.status)
                    .map(|s| s.as_u16()),
            );
        }
        assert_eq!(fired, [None, None, None, None, Some(502), None]);
        assert!(Key::parse("shopify.graphql.prodcts").is_none());
        assert!(Key::parse("shopify.graphql.inventoryItems").is_some());
        assert!(Key::parse("keap.orders.list").is_some());
    }

    #[test]
    fn bad_specs_are_rejected() {
        for bad in [
            json!({"endpoint": "keap.nope", "status": 500}),
            json!({"endpoint": "keap.contacts.list", "status": 99}),
            json!({"endpoint": "keap.contacts.list", "times": 0}),
            json!({"endpoint": "keap.contacts.list", "headers": {"bad header": "x"}}),
        ] {
            let spec: FaultSpec = serde_json::from_value(bad).unwrap();
            assert!(Fault::from_spec(spec).is_err());
        }
        assert!(
            serde_json::from_value::<FaultSpec>(json!({"endpoint": "x", "stauts": 1})).is_err()
        );
    }

    #[test]
    fn log_is_capped_per_endpoint() {
        let mut r = Recorder::default();
        for i in 0..(REQUEST_LOG_CAPACITY + 5) {
            r.record(
                Endpoint::KeapContactsList,
                Observed {
                    at_ms: i64::try_from(i).unwrap(),
                    method: "GET".into(),
                    path_and_query: "/".into(),
                    status: 200,
                    duration_ms: 0,
                    fault: false,
                    graphql_fields: Vec::new(),
                },
            );
        }
        let all = r.requests(Some(&Key::endpoint(Endpoint::KeapContactsList)), None);
        assert_eq!(all.len(), REQUEST_LOG_CAPACITY);
        assert_eq!(all[0].at_ms, 5);
        assert_eq!(r.count(Endpoint::KeapContactsList), 10_005);
        assert_eq!(r.requests(None, Some(10_003)).len(), 2);
    }
}
