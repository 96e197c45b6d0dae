//! Keap (formerly Infusionsoft): OAuth 2 and REST v2. Paths mirror the real hosts
//! (`accounts.infusionsoft.com/app/oauth/authorize`, `api.infusionsoft.com/token`,
//! `api.keap.com/crm/rest/v2/...`), so a Worker only swaps base URLs.

pub mod contacts;
pub mod controls;
pub mod hooks;
pub mod model;
pub mod oauth;
pub mod pagination;
pub mod quota;
pub mod records;
pub mod records_seed;
pub mod writes;

use std::sync::{Mutex, RwLock};

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::config::SandboxConfig;
use crate::endpoint::Endpoint;
use crate::middleware::tagged;
use crate::state::{lock, SharedState};

use self::contacts::ContactStore;
use self::hooks::HookStore;
use self::oauth::OAuthStore;
use self::quota::Quota;
use self::records::{RecordStore, Resource};

/// Keap's stores.
#[derive(Debug)]
pub struct KeapState {
    /// Authorization codes, access and refresh tokens.
    pub oauth: Mutex<OAuthStore>,
    /// Contacts, with their sort indexes.
    pub contacts: RwLock<ContactStore>,
    /// Opportunities, orders and tasks, in [`Resource::ALL`] order.
    records: [RwLock<RecordStore>; 3],
    /// Per-minute and per-day usage windows behind the `x-keap-*` headers.
    pub quota: Mutex<Quota>,
    /// REST Hook subscriptions (v1).
    pub hooks: Mutex<HookStore>,
    /// Products (v1), which order items name.
    pub products: Mutex<writes::ProductStore>,
}

impl KeapState {
    /// Generates the configured numbers of contacts, opportunities, orders and tasks from
    /// the seed; no tokens yet.
    pub fn new(config: &SandboxConfig) -> Self {
        let (seed, contacts) = (config.seed, config.keap_contacts);
        let store = |resource: Resource, count: usize| {
            RwLock::new(RecordStore::generate(resource, seed, count, contacts))
        };
        Self {
            oauth: Mutex::new(OAuthStore::default()),
            contacts: RwLock::new(ContactStore::generate(seed, contacts)),
            records: [
                store(Resource::Opportunities, config.keap_opportunities),
                store(Resource::Orders, config.keap_orders),
                store(Resource::Tasks, config.keap_tasks),
            ],
            quota: Mutex::new(Quota::default()),
            hooks: Mutex::new(HookStore::default()),
            products: Mutex::new(writes::ProductStore::default()),
        }
    }

    /// The store of one resource.
    pub fn records(&self, resource: Resource) -> &RwLock<RecordStore> {
        match resource {
            Resource::Opportunities => &self.records[0],
            Resource::Orders => &self.records[1],
            Resource::Tasks => &self.records[2],
        }
    }
}

/// Keap's public routes.
pub fn router(state: &SharedState) -> Router<SharedState> {
    Router::new()
        .route(
            "/app/oauth/authorize",
            tagged(state, Endpoint::KeapOAuthAuthorize, get(oauth::authorize)),
        )
        .route(
            "/token",
            tagged(state, Endpoint::KeapOAuthToken, post(oauth::token)),
        )
        .route(
            "/crm/rest/v2/contacts",
            tagged(state, Endpoint::KeapContactsList, get(contacts::list)).merge(tagged(
                state,
                Endpoint::KeapContactsCreate,
                post(writes::create_contact),
            )),
        )
        .route(
            "/crm/rest/v2/contacts/{contact_id}",
            tagged(state, Endpoint::KeapContactsGet, get(contacts::get_one)).merge(tagged(
                state,
                Endpoint::KeapContactsUpdate,
                patch(writes::update_contact),
            )),
        )
        .route(
            "/crm/rest/v1/products",
            tagged(
                state,
                Endpoint::KeapProductsList,
                get(writes::list_products),
            )
            .merge(tagged(
                state,
                Endpoint::KeapProductsCreate,
                post(writes::create_product),
            )),
        )
        .route(
            "/crm/rest/v1/orders",
            tagged(
                state,
                Endpoint::KeapOrdersCreate,
                post(writes::create_order),
            ),
        )
        .merge(record_routes(state))
        .merge(hook_routes(state))
}

/// REST Hooks (v1): `/crm/rest/v1/hooks...`, one endpoint key per operation.
fn hook_routes(state: &SharedState) -> Router<SharedState> {
    Router::new()
        .route(
            "/crm/rest/v1/hooks",
            tagged(state, Endpoint::KeapHooksList, get(hooks::list)).merge(tagged(
                state,
                Endpoint::KeapHooksCreate,
                post(hooks::create),
            )),
        )
        .route(
            "/crm/rest/v1/hooks/event_keys",
            tagged(state, Endpoint::KeapHooksEventKeys, get(hooks::event_keys)),
        )
        .route(
            "/crm/rest/v1/hooks/{key}",
            tagged(state, Endpoint::KeapHooksGet, get(hooks::get_one))
                .merge(tagged(state, Endpoint::KeapHooksUpdate, put(hooks::update)))
                .merge(tagged(
                    state,
                    Endpoint::KeapHooksDelete,
                    delete(hooks::delete),
                )),
        )
        .route(
            "/crm/rest/v1/hooks/{key}/verify",
            tagged(state, Endpoint::KeapHooksVerify, post(hooks::verify)),
        )
        .route(
            "/crm/rest/v1/hooks/{key}/delayedVerify",
            tagged(
                state,
                Endpoint::KeapHooksDelayedVerify,
                post(hooks::delayed_verify),
            ),
        )
}

/// `GET /crm/rest/v2/{opportunities|orders|tasks}` and `.../{id}`.
fn record_routes(state: &SharedState) -> Router<SharedState> {
    let mut router = Router::new();
    for resource in Resource::ALL {
        let list = move |State(state): State<SharedState>,
                         headers: HeaderMap,
                         RawQuery(raw): RawQuery| async move {
            records::list(resource, state, headers, raw).await
        };
        let get_one = move |State(state): State<SharedState>,
                            headers: HeaderMap,
                            Path(id): Path<String>| async move {
            records::get_one(resource, state, headers, id).await
        };
        router = router
            .route(
                &format!("/crm/rest/v2/{}", resource.plural()),
                tagged(state, resource.list_endpoint(), get(list)),
            )
            .route(
                &format!("/crm/rest/v2/{}/{{id}}", resource.plural()),
                tagged(state, resource.get_endpoint(), get(get_one)),
            );
    }
    router
}

/// A Keap REST error, answered as `{code, message, status, details[]}` (keap-sdk
/// `sdks/v2/swagger.yml`), with gRPC-style `status` names as Keap v2 uses (`UNAUTHENTICATED`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeapError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
}

impl KeapError {
    /// 400 with a message naming the bad parameter.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 401 for a missing, unknown or expired credential.
    pub fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: "Unauthorized".to_owned(),
        }
    }

    /// 404 for an unknown resource.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl IntoResponse for KeapError {
    fn into_response(self) -> Response {
        (self.status, Json(error_body(self.status, &self.message))).into_response()
    }
}

/// The body of a Keap REST error with this status.
pub fn error_body(status: StatusCode, message: &str) -> Value {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return throttled_body();
    }
    json!({
        "code": status.as_str(),
        "message": message,
        "status": grpc_status(status),
        "details": [],
    })
}

/// Keap's 429 body, as developers report it
/// (<https://integration.keap.com/t/api-error-quota-exceeded-request-throttled/89944>).
pub fn throttled_body() -> Value {
    json!({"code": "429", "message": "Quota Exceeded", "status": "Request Throttled"})
}

fn grpc_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        501 => "UNIMPLEMENTED",
        502..=504 => "UNAVAILABLE",
        500..=599 => "INTERNAL",
        _ => "UNKNOWN",
    }
}

/// Who made a REST call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// An OAuth access token (`Authorization: Bearer`).
    OAuth,
    /// A Personal Access Token / Service Account Key (`X-Keap-API-Key`,
    /// <https://developer.infusionsoft.com/pat-and-sak>).
    ApiKey,
}

/// Checks the REST credential: a valid, unexpired bearer token or the configured API key.
pub fn authenticate(
    state: &SharedState,
    headers: &HeaderMap,
    now_ms: i64,
) -> Result<Caller, KeapError> {
    if let Some(token) = bearer_token(headers) {
        if lock(&state.keap.oauth).access_token_valid(token, now_ms) {
            return Ok(Caller::OAuth);
        }
        return Err(KeapError::unauthorized());
    }
    let key = headers.get("x-keap-api-key").and_then(|v| v.to_str().ok());
    match (key, &state.config.keap_api_key) {
        (Some(key), Some(expected)) if expected.matches(key) => Ok(Caller::ApiKey),
        _ => Err(KeapError::unauthorized()),
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
