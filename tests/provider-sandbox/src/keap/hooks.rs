//! Keap REST Hooks (v1, <https://developer.infusionsoft.com/rest-hook-documentation>):
//! subscriptions, the verification handshake, and event deliveries driven by the control API.
//!
//! REST (same credentials as the v2 API: bearer token or `X-Keap-API-Key`):
//!
//! | call | answers |
//! | --- | --- |
//! | `POST /crm/rest/v1/hooks {eventKey, hookUrl}` | 200 `{key, eventKey, hookUrl, status: "Unverified"}`, then the handshake runs |
//! | `GET /crm/rest/v1/hooks` | every hook |
//! | `GET /crm/rest/v1/hooks/event_keys` | the event keys (strings) |
//! | `GET /crm/rest/v1/hooks/{key}` | the hook |
//! | `PUT /crm/rest/v1/hooks/{key} {eventKey?, hookUrl?}` | the hook; a change makes it `Unverified` and starts a new handshake |
//! | `DELETE /crm/rest/v1/hooks/{key}` | 204 |
//! | `POST /crm/rest/v1/hooks/{key}/verify` | runs the handshake now and answers the hook |
//! | `POST /crm/rest/v1/hooks/{key}/delayedVerify` (header `X-Hook-Secret`) | `Verified` if the header is the last secret sent |
//!
//! The handshake: the sandbox POSTs `[]` to `hookUrl` with `X-Hook-Secret: <random>`; a 2xx
//! answer that echoes the same `X-Hook-Secret` verifies the hook, anything else leaves it
//! `Unverified` (the latest handshake decides). Events only go to `Verified` hooks.
//!
//! Control (under `/__sandbox`): `GET /keap/hooks` lists hooks with their handshake outcome
//! and delivery counts; `POST /keap/hooks/deliver` sends an event to every verified hook of
//! that event key, batched by 1,000 objects as Keap does, optionally signed with
//! `X-Hook-Signature` (hex HMAC-SHA256 of the body: the seed's scheme; real Keap signs
//! nothing). `DELETE /keap/hooks/{key}` removes a hook as a user in Keap would, and
//! `POST /keap/hooks/{key}/deactivate` makes it `Inactive` as Keap's failed retries do
//! (the retries themselves are not modelled).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::control::{parse_json_body, ControlError};
use crate::keap::{authenticate, KeapError};
use crate::outbound::{self, Answer};
use crate::secret::Secret;
use crate::state::{lock, SharedState};
use crate::time::format_ms;

/// The event keys `GET /crm/rest/v1/hooks/event_keys` lists (Keap's list as documented in
/// its REST v1 reference, <https://developer.infusionsoft.com/docs/rest/>, and the keap-sdk;
/// subscribing to any other key is 400).
#[rustfmt::skip]
pub const EVENT_KEYS: &[&str] = &[
    "appointment.add", "appointment.delete", "appointment.edit",
    "company.add", "company.delete", "company.edit",
    "contact.add", "contact.delete", "contact.edit", "contact.redact",
    "contactGroup.add", "contactGroup.applied", "contactGroup.delete", "contactGroup.edit",
    "contactGroup.removed",
    "invoice.add", "invoice.delete", "invoice.edit",
    "invoice.payment.add", "invoice.payment.delete", "invoice.payment.edit",
    "leadsource.add", "leadsource.delete", "leadsource.edit",
    "note.add", "note.delete", "note.edit",
    "opportunity.add", "opportunity.delete", "opportunity.edit", "opportunity.stage_move",
    "order.add", "order.delete", "order.edit",
    "product.add", "product.delete", "product.edit",
    "subscription.add", "subscription.delete", "subscription.edit",
    "task.add", "task.complete", "task.delete", "task.edit", "task.incomplete",
    "user.activate", "user.add", "user.edit",
];

/// Keap sends at most this many objects in one delivery (see the module docs).
pub const MAX_OBJECTS_PER_DELIVERY: usize = 1000;

/// A hook's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookStatus {
    /// Not (yet) verified: no events.
    Unverified,
    /// The receiver echoed the secret: events flow.
    Verified,
    /// Keap's state after failed retries (never entered here: retries are not modelled).
    Inactive,
}

/// What started a handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `POST /hooks`.
    Create,
    /// `PUT /hooks/{key}` with a new URL or event key.
    Update,
    /// `POST /hooks/{key}/verify`.
    Verify,
    /// `POST /hooks/{key}/delayedVerify` (no request: the caller sent the secret back).
    DelayedVerify,
}

/// The outcome of one handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handshake {
    /// What started it.
    pub trigger: Trigger,
    /// When it finished (sandbox clock).
    pub at: String,
    /// The receiver's HTTP status (0: unreachable or no answer in time).
    pub status: u16,
    /// Whether the answer carried the same `X-Hook-Secret`.
    pub echoed: bool,
    /// Whether it verified the hook.
    pub verified: bool,
    /// Why the receiver could not be reached, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One hook subscription. `--state-file` keeps its key, event key, URL, status and latest
/// handshake; in-flight handshake state and delivery counters start afresh.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hook {
    /// Key (a number; the API shows it as a string).
    pub key: u64,
    /// Event key (`contact.edit`, ...).
    pub event_key: String,
    /// Where handshakes and events go.
    pub hook_url: String,
    /// State.
    pub status: HookStatus,
    /// Bumped whenever the URL or event key changes, so a handshake started for the old
    /// target cannot verify the new one. (No handshake survives a restart.)
    #[serde(skip)]
    generation: u64,
    /// The last `X-Hook-Secret` sent (for `delayedVerify`); a handshake in flight, so not
    /// kept across restarts.
    #[serde(skip)]
    secret: Option<Secret>,
    /// Handshakes run so far.
    #[serde(default)]
    pub handshakes: u64,
    /// The latest handshake's outcome.
    #[serde(default)]
    pub last_handshake: Option<Handshake>,
    /// Event deliveries sent so far (not kept across restarts).
    #[serde(skip)]
    pub deliveries: u64,
    /// The latest delivery: `{at, status, objects}` (not kept across restarts).
    #[serde(skip)]
    pub last_delivery: Option<Value>,
}

impl Hook {
    /// As the REST API shows it: `{key, eventKey, hookUrl, status}`.
    pub fn to_json(&self) -> Value {
        json!({
            "key": self.key.to_string(),
            "eventKey": self.event_key,
            "hookUrl": self.hook_url,
            "status": self.status,
        })
    }

    /// As the control API shows it: the REST fields plus handshake and delivery records.
    pub fn control_json(&self) -> Value {
        json!({
            "key": self.key.to_string(),
            "eventKey": self.event_key,
            "hookUrl": self.hook_url,
            "status": self.status,
            "handshakes": self.handshakes,
            "handshake": self.last_handshake,
            "deliveries": self.deliveries,
            "last_delivery": self.last_delivery,
        })
    }
}

/// The hook subscriptions (kept in `--state-file`, like real Keap keeps them).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HookStore {
    /// The highest key ever handed out (deleted hooks' keys are not reused).
    #[serde(default)]
    last_key: u64,
    #[serde(default)]
    hooks: BTreeMap<u64, Hook>,
}

impl HookStore {
    /// Adds an `Unverified` hook with a key never used before.
    pub fn create(&mut self, event_key: &str, hook_url: &str) -> Hook {
        // `max`: a hand-edited state file without `last_key` still cannot cause a collision.
        let highest = self.hooks.keys().next_back().copied().unwrap_or(0);
        self.last_key = self.last_key.max(highest) + 1;
        let hook = Hook {
            key: self.last_key,
            event_key: event_key.to_owned(),
            hook_url: hook_url.to_owned(),
            status: HookStatus::Unverified,
            generation: 0,
            secret: None,
            handshakes: 0,
            last_handshake: None,
            deliveries: 0,
            last_delivery: None,
        };
        self.hooks.insert(hook.key, hook.clone());
        hook
    }

    /// A hook by key.
    pub fn get(&self, key: u64) -> Option<&Hook> {
        self.hooks.get(&key)
    }

    /// Every hook, by key.
    pub fn all(&self) -> impl Iterator<Item = &Hook> {
        self.hooks.values()
    }

    /// Changes a hook's event key and/or URL: `Some((hook, changed))`, where a change makes
    /// it `Unverified` (it needs a new handshake).
    pub fn update(
        &mut self,
        key: u64,
        event_key: Option<&str>,
        hook_url: Option<&str>,
    ) -> Option<(Hook, bool)> {
        let hook = self.hooks.get_mut(&key)?;
        let mut changed = false;
        if let Some(event_key) = event_key.filter(|e| *e != hook.event_key) {
            hook.event_key = event_key.to_owned();
            changed = true;
        }
        if let Some(url) = hook_url.filter(|u| *u != hook.hook_url) {
            hook.hook_url = url.to_owned();
            changed = true;
        }
        if changed {
            hook.generation += 1;
            hook.status = HookStatus::Unverified;
            hook.secret = None;
        }
        Some((hook.clone(), changed))
    }

    /// Removes a hook; whether it existed.
    pub fn delete(&mut self, key: u64) -> bool {
        self.hooks.remove(&key).is_some()
    }

    /// Marks a hook `Inactive` (no deliveries until a new handshake); its REST JSON.
    pub fn deactivate(&mut self, key: u64) -> Option<Value> {
        let hook = self.hooks.get_mut(&key)?;
        hook.status = HookStatus::Inactive;
        Some(hook.to_json())
    }

    /// Starts a handshake: a fresh secret, remembered for `delayedVerify`. Returns
    /// `(generation, url, secret)`.
    fn begin_handshake(&mut self, key: u64) -> Option<(u64, String, String)> {
        let hook = self.hooks.get_mut(&key)?;
        let secret = outbound::random_hex(32);
        hook.secret = Some(Secret::new(secret.clone()));
        Some((hook.generation, hook.hook_url.clone(), secret))
    }

    /// Records a handshake's outcome; ignored if the hook is gone or changed meanwhile.
    fn finish_handshake(&mut self, key: u64, generation: u64, outcome: Handshake) -> Option<Hook> {
        let hook = self.hooks.get_mut(&key)?;
        if hook.generation != generation {
            return None;
        }
        hook.status = if outcome.verified {
            HookStatus::Verified
        } else {
            HookStatus::Unverified
        };
        hook.handshakes += 1;
        hook.last_handshake = Some(outcome);
        Some(hook.clone())
    }

    /// `delayedVerify`: verifies the hook if `secret` is the last one sent.
    fn delayed_verify(&mut self, key: u64, secret: &str, at: String) -> Option<Hook> {
        let hook = self.hooks.get_mut(&key)?;
        let matches = hook.secret.as_ref().is_some_and(|s| s.matches(secret));
        if matches {
            hook.status = HookStatus::Verified;
        }
        hook.last_handshake = Some(Handshake {
            trigger: Trigger::DelayedVerify,
            at,
            status: 0,
            echoed: matches,
            verified: matches,
            error: (!matches).then(|| "X-Hook-Secret does not match the last secret sent".into()),
        });
        Some(hook.clone())
    }

    /// `(key, url)` of every verified hook for `event_key`.
    fn verified_for(&self, event_key: &str) -> Vec<(u64, String)> {
        self.hooks
            .values()
            .filter(|h| h.status == HookStatus::Verified && h.event_key == event_key)
            .map(|h| (h.key, h.hook_url.clone()))
            .collect()
    }

    fn record_delivery(&mut self, key: u64, record: Value) {
        if let Some(hook) = self.hooks.get_mut(&key) {
            hook.deliveries += 1;
            hook.last_delivery = Some(record);
        }
    }
}

/// Runs the verification handshake against the hook's URL and records the outcome; the
/// hook afterwards (`None` if it was deleted, or changed while the handshake ran).
pub async fn handshake(state: &SharedState, key: u64, trigger: Trigger) -> Option<Hook> {
    let (generation, url, secret) = lock(&state.keap.hooks).begin_handshake(key)?;
    let answer = outbound::post(
        &state.http,
        &url,
        &[
            ("content-type", "application/json".to_owned()),
            ("x-hook-secret", secret.clone()),
        ],
        b"[]".to_vec(),
        outbound::KEAP_TIMEOUT,
    )
    .await;
    let echoed = answer
        .header("x-hook-secret")
        .is_some_and(|v| crate::secret::constant_time_eq(v.as_bytes(), secret.as_bytes()));
    let outcome = Handshake {
        trigger,
        at: format_ms(state.clock.now_ms()),
        status: answer.status,
        echoed,
        verified: answer.is_success() && echoed,
        error: answer.error,
    };
    let hook = lock(&state.keap.hooks).finish_handshake(key, generation, outcome);
    if hook.is_some() {
        state.persist();
    }
    hook
}

fn spawn_handshake(state: &SharedState, key: u64, trigger: Trigger) {
    let state = state.clone();
    tokio::spawn(async move {
        handshake(&state, key, trigger).await;
    });
}

// ----- REST -----

/// Body of `POST /hooks` and `PUT /hooks/{key}` (Keap's `RestHookRequest`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HookRequest {
    #[serde(default)]
    event_key: Option<String>,
    #[serde(default)]
    hook_url: Option<String>,
}

fn parse_request(body: &[u8]) -> Result<HookRequest, KeapError> {
    serde_json::from_slice(body)
        .map_err(|e| KeapError::bad_request(format!("Invalid request body: {e}")))
}

fn check_event_key(event_key: &str) -> Result<(), KeapError> {
    if EVENT_KEYS.contains(&event_key) {
        Ok(())
    } else {
        Err(KeapError::bad_request(format!(
            "Invalid eventKey '{event_key}': see GET /hooks/event_keys"
        )))
    }
}

fn check_url(hook_url: &str) -> Result<(), KeapError> {
    let valid = url::Url::parse(hook_url)
        .ok()
        .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if valid {
        Ok(())
    } else {
        Err(KeapError::bad_request(format!(
            "Invalid hookUrl '{hook_url}': an absolute http(s) URL is required"
        )))
    }
}

fn parse_key(text: &str) -> Result<u64, KeapError> {
    text.trim()
        .parse()
        .map_err(|_| KeapError::not_found(format!("Hook {text} not found")))
}

fn not_found(key: u64) -> KeapError {
    KeapError::not_found(format!("Hook {key} not found"))
}

fn auth(state: &SharedState, headers: &HeaderMap) -> Result<(), KeapError> {
    authenticate(state, headers, state.clock.now_ms()).map(|_| ())
}

/// `POST /crm/rest/v1/hooks`: creates an `Unverified` hook and starts its handshake.
pub async fn create(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, KeapError> {
    auth(&state, &headers)?;
    let request = parse_request(&body)?;
    let event_key = request
        .event_key
        .ok_or_else(|| KeapError::bad_request("eventKey is required"))?;
    let hook_url = request
        .hook_url
        .ok_or_else(|| KeapError::bad_request("hookUrl is required"))?;
    check_event_key(&event_key)?;
    check_url(&hook_url)?;
    let hook = lock(&state.keap.hooks).create(&event_key, &hook_url);
    state.persist();
    spawn_handshake(&state, hook.key, Trigger::Create);
    Ok(Json(hook.to_json()))
}

/// `GET /crm/rest/v1/hooks`.
pub async fn list(
    State(state): State<SharedState>,
    headers: HeaderMap,
) -> Result<Json<Value>, KeapError> {
    auth(&state, &headers)?;
    let hooks: Vec<Value> = lock(&state.keap.hooks).all().map(Hook::to_json).collect();
    Ok(Json(Value::Array(hooks)))
}

/// `GET /crm/rest/v1/hooks/event_keys`.
pub async fn event_keys(
    State(state): State<SharedState>,
    headers: HeaderMap,
) -> Result<Json<Value>, KeapError> {
    auth(&state, &headers)?;
    Ok(Json(json!(EVENT_KEYS)))
}

/// `GET /crm/rest/v1/hooks/{key}`.
pub async fn get_one(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Json<Value>, KeapError> {
    auth(&state, &headers)?;
    let key = parse_key(&key)?;
    let hooks = lock(&state.keap.hooks);
    let hook = hooks.get(key).ok_or_else(|| not_found(key))?;
    Ok(Json(hook.to_json()))
}

/// `PUT /crm/rest/v1/hooks/{key}`: a new URL or event key makes the hook `Unverified` and
/// starts a new handshake.
pub async fn update(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, KeapError> {
    auth(&state, &headers)?;
    let key = parse_key(&key)?;
    let request = parse_request(&body)?;
    if let Some(event_key) = &request.event_key {
        check_event_key(event_key)?;
    }
    if let Some(url) = &request.hook_url {
        check_url(url)?;
    }
    let (hook, changed) = lock(&state.keap.hooks)
        .update(
            key,
            request.event_key.as_deref(),
            request.hook_url.as_deref(),
        )
        .ok_or_else(|| not_found(key))?;
    if changed {
        state.persist();
        spawn_handshake(&state, key, Trigger::Update);
    }
    Ok(Json(hook.to_json()))
}

/// `DELETE /crm/rest/v1/hooks/{key}`: 204.
pub async fn delete(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<StatusCode, KeapError> {
    auth(&state, &headers)?;
    let key = parse_key(&key)?;
    let deleted = lock(&state.keap.hooks).delete(key);
    if deleted {
        state.persist();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(key))
    }
}

/// `POST /crm/rest/v1/hooks/{key}/verify`: runs the handshake now and answers the hook as
/// it left it.
pub async fn verify(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Json<Value>, KeapError> {
    auth(&state, &headers)?;
    let key = parse_key(&key)?;
    if lock(&state.keap.hooks).get(key).is_none() {
        return Err(not_found(key));
    }
    handshake(&state, key, Trigger::Verify).await;
    let hooks = lock(&state.keap.hooks);
    let hook = hooks.get(key).ok_or_else(|| not_found(key))?;
    Ok(Json(hook.to_json()))
}

/// `POST /crm/rest/v1/hooks/{key}/delayedVerify` with header `X-Hook-Secret`: Keap's
/// delayed confirmation. The hook becomes `Verified` if the header is the last secret the
/// sandbox sent it; otherwise it is answered unchanged.
pub async fn delayed_verify(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Json<Value>, KeapError> {
    auth(&state, &headers)?;
    let key = parse_key(&key)?;
    let secret = headers
        .get("x-hook-secret")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| KeapError::bad_request("X-Hook-Secret header is required"))?;
    let at = format_ms(state.clock.now_ms());
    let hook = lock(&state.keap.hooks)
        .delayed_verify(key, secret, at)
        .ok_or_else(|| not_found(key))?;
    state.persist();
    Ok(Json(hook.to_json()))
}

// ----- control -----

/// `GET /__sandbox/keap/hooks`: `{"hooks": [...]}` with status, the latest handshake
/// (`{trigger, at, status, echoed, verified, error?}`) and delivery counts.
pub async fn control_list(State(state): State<SharedState>) -> Json<Value> {
    let hooks: Vec<Value> = lock(&state.keap.hooks)
        .all()
        .map(Hook::control_json)
        .collect();
    Json(json!({ "hooks": hooks }))
}

/// `DELETE /__sandbox/keap/hooks/{key}`: the hook disappears as if someone removed it in
/// Keap. 204, or 404 for an unknown key.
pub async fn control_delete(
    State(state): State<SharedState>,
    Path(key): Path<String>,
) -> Result<StatusCode, ControlError> {
    let key = key
        .trim()
        .parse::<u64>()
        .map_err(|_| ControlError::bad_request(format!("hook key must be a number: {key}")))?;
    if !lock(&state.keap.hooks).delete(key) {
        return Err(ControlError::not_found(format!("no hook {key}")));
    }
    state.persist();
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /__sandbox/keap/hooks/{key}/deactivate`: the hook becomes `Inactive`, as Keap
/// leaves a hook whose deliveries kept failing; it gets no events until verified again.
pub async fn control_deactivate(
    State(state): State<SharedState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ControlError> {
    let key = key
        .trim()
        .parse::<u64>()
        .map_err(|_| ControlError::bad_request(format!("hook key must be a number: {key}")))?;
    let hook = lock(&state.keap.hooks).deactivate(key);
    match hook {
        Some(hook) => {
            state.persist();
            Ok(Json(hook))
        }
        None => Err(ControlError::not_found(format!("no hook {key}"))),
    }
}

/// Body of `POST /__sandbox/keap/hooks/deliver`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliverRequest {
    event_key: String,
    ids: Vec<Value>,
    #[serde(default)]
    signature_secret: Option<String>,
}

/// An object id as Keap v1 sends it: a number when numeric, else the string as given.
fn object_id(value: &Value) -> Result<Value, ControlError> {
    match value {
        Value::Number(n) if n.is_u64() || n.is_i64() => Ok(value.clone()),
        Value::String(s) => Ok(s
            .trim()
            .parse::<u64>()
            .map_or_else(|_| value.clone(), Value::from)),
        other => Err(ControlError::bad_request(format!(
            "ids must be numbers or strings, got {other}"
        ))),
    }
}

/// `contact` -> `contacts`, `opportunity` -> `opportunities`.
fn plural(noun: &str) -> String {
    match noun.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{noun}s"),
    }
}

/// The sandbox's own base URL as the caller reached it (for `apiUrl`).
fn base_url(state: &SharedState, headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map_or_else(
            || format!("http://{}:{}", state.config.host, state.config.port),
            |host| format!("http://{host}"),
        )
}

/// `POST /__sandbox/keap/hooks/deliver {"event_key","ids":[..],"signature_secret"?}`: one
/// delivery per verified hook of that event key (and per 1,000 ids), body
/// `{"event_key","object_type","object_keys":[{"id","apiUrl","timestamp"}]}`, signed with
/// `X-Hook-Signature` when a secret is given here or configured (`--keap-webhook-secret`).
/// Answers `{"deliveries":[{"hook_key","url","status","body_sha256","objects"}]}` (status
/// 0: unreachable).
pub async fn control_deliver(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let request: DeliverRequest = parse_json_body(&body)?;
    if !EVENT_KEYS.contains(&request.event_key.as_str()) {
        return Err(ControlError::bad_request(format!(
            "unknown event_key '{}'",
            request.event_key
        )));
    }
    if request.ids.is_empty() {
        return Err(ControlError::bad_request("ids must not be empty"));
    }
    let ids = request
        .ids
        .iter()
        .map(object_id)
        .collect::<Result<Vec<_>, _>>()?;
    let secret = request
        .signature_secret
        .map(Secret::new)
        .or_else(|| state.config.keap_webhook_secret.clone());
    let base = base_url(&state, &headers);
    let deliveries = send_event(&state, &base, &request.event_key, &ids, secret.as_ref()).await;
    Ok(Json(json!({ "deliveries": deliveries })))
}

/// Sends `event_key` for the objects `ids` to every verified hook of that key (one delivery
/// per 1,000 ids) as Keap does: `{"event_key","object_type","object_keys":[{"id","apiUrl",
/// "timestamp"}]}`, signed with `X-Hook-Signature` when `secret` is given. `base` is the
/// sandbox's URL for `apiUrl`. The delivery records (status 0: unreachable).
pub(crate) async fn send_event(
    state: &SharedState,
    base: &str,
    event_key: &str,
    ids: &[Value],
    secret: Option<&Secret>,
) -> Vec<Value> {
    let object_type = event_key.split('.').next().unwrap_or_default().to_owned();
    let collection = plural(&object_type);
    let timestamp = format_ms(state.clock.now_ms());
    let bodies: Vec<(usize, Vec<u8>)> = ids
        .chunks(MAX_OBJECTS_PER_DELIVERY)
        .map(|chunk| {
            let object_keys: Vec<Value> = chunk
                .iter()
                .map(|id| {
                    let shown = match id {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    json!({
                        "id": id,
                        "apiUrl": format!("{base}/crm/rest/v1/{collection}/{shown}"),
                        "timestamp": timestamp,
                    })
                })
                .collect();
            let body = json!({
                "event_key": event_key,
                "object_type": object_type,
                "object_keys": object_keys,
            });
            (chunk.len(), body.to_string().into_bytes())
        })
        .collect();

    let targets = lock(&state.keap.hooks).verified_for(event_key);
    let mut deliveries = Vec::new();
    for (key, url) in targets {
        for (objects, body) in &bodies {
            let mut headers = vec![("content-type", "application/json".to_owned())];
            if let Some(secret) = secret {
                headers.push((
                    "x-hook-signature",
                    hex::encode(outbound::hmac_sha256(secret.expose().as_bytes(), body)),
                ));
            }
            let answer: Answer = outbound::post(
                &state.http,
                &url,
                &headers,
                body.clone(),
                outbound::KEAP_TIMEOUT,
            )
            .await;
            let at = format_ms(state.clock.now_ms());
            lock(&state.keap.hooks).record_delivery(
                key,
                json!({"at": at, "status": answer.status, "objects": objects}),
            );
            let mut record = json!({
                "hook_key": key.to_string(),
                "url": url,
                "status": answer.status,
                "body_sha256": outbound::sha256_hex(body),
                "objects": objects,
            });
            if let (Some(error), Some(map)) = (answer.error, record.as_object_mut()) {
                map.insert("error".to_owned(), Value::String(error));
            }
            deliveries.push(record);
        }
    }
    deliveries
}

/// Sends `event_key` for object `id` in the background, as Keap does for a change made
/// through its API (<https://developer.infusionsoft.com/rest-hook-documentation>): nothing
/// is sent when no verified hook listens for it.
pub(crate) fn notify_change(state: &SharedState, headers: &HeaderMap, event_key: &str, id: u64) {
    if lock(&state.keap.hooks).verified_for(event_key).is_empty() {
        return;
    }
    let (state, base, event_key) = (
        state.clone(),
        base_url(state, headers),
        event_key.to_owned(),
    );
    tokio::spawn(async move {
        let secret = state.config.keap_webhook_secret.clone();
        send_event(
            &state,
            &base,
            &event_key,
            &[Value::from(id)],
            secret.as_ref(),
        )
        .await;
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn store_lifecycle() {
        let mut store = HookStore::default();
        let a = store.create("contact.edit", "http://127.0.0.1:1/a");
        let b = store.create("contact.edit", "http://127.0.0.1:1/b");
        assert_eq!((a.key, b.key), (1, 2));
        assert_eq!(a.to_json()["key"], "1");
        assert_eq!(a.to_json()["status"], "Unverified");

        // A handshake for the old URL cannot verify the new one.
        let (generation, _, secret) = store.begin_handshake(1).unwrap();
        let (_, changed) = store.update(1, None, Some("http://127.0.0.1:1/c")).unwrap();
        assert!(changed);
        let outcome = Handshake {
            trigger: Trigger::Create,
            at: String::new(),
            status: 200,
            echoed: true,
            verified: true,
            error: None,
        };
        assert!(store
            .finish_handshake(1, generation, outcome.clone())
            .is_none());
        assert_eq!(store.get(1).unwrap().status, HookStatus::Unverified);
        // The secret of the abandoned handshake is forgotten too.
        let hook = store.delayed_verify(1, &secret, String::new()).unwrap();
        assert_eq!(hook.status, HookStatus::Unverified);

        let (generation, _, secret) = store.begin_handshake(1).unwrap();
        store.finish_handshake(1, generation, outcome).unwrap();
        assert_eq!(
            store.verified_for("contact.edit"),
            [(1, "http://127.0.0.1:1/c".into())]
        );
        assert!(store.verified_for("contact.add").is_empty());
        // Unchanged values keep the status.
        let (hook, changed) = store.update(1, Some("contact.edit"), None).unwrap();
        assert!(!changed);
        assert_eq!(hook.status, HookStatus::Verified);
        assert!(store.delayed_verify(2, &secret, String::new()).is_some());
        assert_eq!(store.get(2).unwrap().status, HookStatus::Unverified);
        assert!(store.delete(1));
        assert!(!store.delete(1));
        assert!(store.verified_for("contact.edit").is_empty());
    }

    #[test]
    fn store_round_trips_through_json() {
        let mut store = HookStore::default();
        store.create("contact.edit", "http://127.0.0.1:1/a");
        store.create("contact.add", "http://127.0.0.1:1/b");
        store.create("task.add", "http://127.0.0.1:1/c");
        let (generation, _, secret) = store.begin_handshake(1).unwrap();
        let outcome = Handshake {
            trigger: Trigger::Create,
            at: "2025-01-01T00:00:00.000Z".into(),
            status: 200,
            echoed: true,
            verified: true,
            error: None,
        };
        store
            .finish_handshake(1, generation, outcome.clone())
            .unwrap();
        assert!(store.delete(3));
        let text = serde_json::to_string(&store).unwrap();
        assert!(!text.contains(&secret), "{text}");

        let mut restored: HookStore = serde_json::from_str(&text).unwrap();
        let shown: Vec<Value> = restored.all().map(Hook::to_json).collect();
        let before: Vec<Value> = store.all().map(Hook::to_json).collect();
        assert_eq!(shown, before);
        assert_eq!(restored.get(1).unwrap().status, HookStatus::Verified);
        assert_eq!(restored.get(1).unwrap().last_handshake, Some(outcome));
        assert_eq!(restored.verified_for("contact.edit").len(), 1);
        assert_eq!(restored.create("note.add", "http://127.0.0.1:1/d").key, 4);

        // Without `last_key` (a hand-edited file), keys still never collide.
        let mut value: Value = serde_json::from_str(&text).unwrap();
        value.as_object_mut().unwrap().remove("last_key");
        let mut edited: HookStore = serde_json::from_value(value).unwrap();
        assert_eq!(edited.create("note.add", "http://127.0.0.1:1/d").key, 3);
        assert!(serde_json::from_str::<HookStore>("{}")
            .unwrap()
            .all()
            .next()
            .is_none());
    }

    #[test]
    fn ids_and_plurals() {
        assert_eq!(object_id(&json!("12")).unwrap(), json!(12));
        assert_eq!(object_id(&json!(7)).unwrap(), json!(7));
        assert_eq!(object_id(&json!("abc")).unwrap(), json!("abc"));
        assert!(object_id(&json!(null)).is_err());
        assert_eq!(plural("contact"), "contacts");
        assert_eq!(plural("opportunity"), "opportunities");
        for key in [
            "contact.add",
            "contact.edit",
            "contact.delete",
            "opportunity.stage_move",
        ] {
            assert!(EVENT_KEYS.contains(&key));
        }
        for key in [
            "order.add",
            "order.edit",
            "order.delete",
            "task.complete",
            "task.incomplete",
        ] {
            assert!(EVENT_KEYS.contains(&key));
        }
    }
}
