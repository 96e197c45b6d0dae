//! `/oauth/*`: the Keap authorization-code flow and the Shopify install flow.
//!
//! Starting a flow is an admin action (bearer token); the callbacks are public and protected
//! by a random, single-use, 10-minute `state` bound to the user (and shop). A bad state gets
//! 400 and nothing is stored.

use std::time::Duration;

use edge_sync_shared::auth::Capability;
use edge_sync_shared::{
    connection::{connection_id, ConnectionView, Provider},
    coordinator_api::{AuthorizeUrl, ConsumeState, IndexEntry, PendingState},
    oauth::{
        check_state, keap, parse_query, shopify, OAuthState, StateError, TokenEndpointError,
        TokenGrant,
    },
    Timestamp,
};
use edge_sync_worker_kit::{auth::require, clock, outbound, HttpError, HttpResult};
use worker::{Env, Method, Request, Response, Url};

use crate::{
    config::CoordinatorConfig,
    durable_object::{self, ConnectRequest, SYSTEM_INSTANCE},
};

/// Longest accepted user id (they are uuids or short app ids).
const MAX_USER_ID_LEN: usize = 128;
const TOKEN_ENDPOINT_TIMEOUT: Duration = Duration::from_secs(15);

fn query(req: &Request) -> Result<Vec<(String, String)>, HttpError> {
    let url = req
        .url()
        .map_err(|e| HttpError::bad_request(format!("bad URL: {e}")))?;
    Ok(parse_query(url.query().unwrap_or("")))
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn user_id(pairs: &[(String, String)]) -> Result<String, HttpError> {
    let user =
        param(pairs, "user_id").ok_or_else(|| HttpError::bad_request("user_id is required"))?;
    if user.len() > MAX_USER_ID_LEN
        || !user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        return Err(HttpError::bad_request(
            "user_id must be at most 128 of [A-Za-z0-9-_.@]",
        ));
    }
    Ok(user.to_owned())
}

fn config_error(e: impl std::fmt::Display) -> HttpError {
    HttpError::new(503, "OAuth is not configured on this deployment").with_reason(e.to_string())
}

fn random_state_bytes() -> Result<[u8; 32], HttpError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| HttpError::internal(format!("random state: {e}")))?;
    Ok(bytes)
}

/// Stores a new state in the `system` instance and returns it.
async fn new_state(
    env: &Env,
    config: &CoordinatorConfig,
    user: &str,
    provider: Provider,
    account: Option<String>,
) -> Result<OAuthState, HttpError> {
    let now = clock::now();
    let state = OAuthState::new(random_state_bytes()?, user, provider, account, now);
    let ttl = config.oauth_state_ttl_ms().map_err(config_error)?;
    let pending = PendingState {
        state: state.clone(),
        expires_at: now.plus_millis(ttl),
    };
    let response = durable_object::send(
        env,
        SYSTEM_INSTANCE,
        Method::Post,
        "/internal/oauth-states",
        &pending,
    )
    .await?;
    if response.status_code() != 201 {
        return Err(HttpError::internal(format!(
            "state store answered {}",
            response.status_code()
        )));
    }
    Ok(state)
}

/// Consumes a state (single use) and checks it belongs to `provider`.
async fn consume_state(
    env: &Env,
    value: &str,
    provider: Provider,
    now: Timestamp,
) -> Result<OAuthState, HttpError> {
    let refused = |e: StateError| HttpError::bad_request(format!("invalid OAuth state: {e}"));
    if !edge_sync_shared::oauth::state::is_well_formed_state(value) {
        return Err(refused(StateError::Unknown));
    }
    let mut response = durable_object::send(
        env,
        SYSTEM_INSTANCE,
        Method::Post,
        "/internal/oauth-states/consume",
        &ConsumeState {
            value: value.to_owned(),
        },
    )
    .await?;
    match response.status_code() {
        200 => {}
        410 => return Err(refused(StateError::Expired)),
        _ => return Err(refused(StateError::Unknown)),
    }
    let state: OAuthState = durable_object::read(&mut response).await?;
    check_state(Some(&state), now).map_err(refused)?;
    if state.provider != provider {
        return Err(refused(StateError::Unknown));
    }
    Ok(state)
}

/// Answers 302 to `location`, or JSON `{authorize_url}` when the caller asked for JSON.
fn redirect_or_json(req: &Request, location: &str) -> HttpResult {
    let wants_json = req
        .headers()
        .get("Accept")
        .ok()
        .flatten()
        .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        return Ok(Response::from_json(&AuthorizeUrl {
            authorize_url: location.to_owned(),
        })?);
    }
    let url =
        Url::parse(location).map_err(|_| HttpError::internal("authorize URL does not parse"))?;
    Ok(Response::redirect(url)?)
}

/// `GET /oauth/initiate?user_id=` (admin): redirects to Keap's authorize page.
pub async fn keap_initiate(req: &Request, env: &Env, config: &CoordinatorConfig) -> HttpResult {
    require(req, env, Capability::Operate)?;
    let pairs = query(req)?;
    let user = user_id(&pairs)?;
    let keap = config.keap_oauth().map_err(config_error)?;
    let state = new_state(env, config, &user, Provider::Keap, None).await?;
    redirect_or_json(req, &keap.authorize_redirect(&state.value))
}

fn provider_error(pairs: &[(String, String)]) -> Option<HttpError> {
    param(pairs, "error").map(|error| {
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        HttpError::bad_request(format!("authorization was not granted ({error})"))
    })
}

fn token_error(e: TokenEndpointError) -> HttpError {
    match e {
        TokenEndpointError::Transient { .. } => HttpError::new(
            502,
            "the provider's token endpoint is unavailable; try again",
        ),
        _ => HttpError::bad_request(
            "the provider refused the authorization code; start the flow again",
        ),
    }
    .with_reason(e.to_string())
}

/// Hands the granted tokens to the connection's Durable Object and indexes it.
async fn store_connection(
    env: &Env,
    user: &str,
    provider: Provider,
    account: &str,
    grant: TokenGrant,
) -> Result<ConnectionView, HttpError> {
    let id = connection_id(provider, account, user);
    let request = ConnectRequest {
        id: id.clone(),
        user_id: user.to_owned(),
        provider,
        account: account.to_owned(),
        scopes: grant.scope.clone(),
        access_token: grant.access_token.expose().to_owned(),
        refresh_token: grant.refresh_token.as_ref().map(|t| t.expose().to_owned()),
        expires_in_secs: grant.expires_in_secs,
    };
    let mut response =
        durable_object::send(env, &id, Method::Put, "/internal/connection", &request).await?;
    if response.status_code() != 200 {
        return Err(HttpError::internal(format!(
            "connection store answered {}",
            response.status_code()
        )));
    }
    let view: ConnectionView = durable_object::read(&mut response).await?;
    let entry = IndexEntry {
        id: id.clone(),
        user_id: user.to_owned(),
        provider,
        account: account.to_owned(),
    };
    durable_object::send(env, SYSTEM_INSTANCE, Method::Put, "/internal/index", &entry).await?;
    crate::webhook_registration::register(env, &id, provider, account).await;
    Ok(view)
}

fn success_page(view: &ConnectionView) -> HttpResult {
    let provider = view.provider.as_str();
    let account = html_escape(&view.account);
    let id = html_escape(&view.id);
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Connected</title></head>\
         <body><h1>Connected to {provider}</h1><p>Account <b>{account}</b> is connected \
         (connection <code>{id}</code>). You can close this window.</p></body></html>"
    );
    let mut response = Response::from_html(html)?;
    response.headers_mut().set("Cache-Control", "no-store")?;
    Ok(response)
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /oauth/callback?code&state`: checks the state, exchanges the code, stores tokens.
pub async fn keap_callback(req: &Request, env: &Env, config: &CoordinatorConfig) -> HttpResult {
    let pairs = query(req)?;
    if let Some(error) = provider_error(&pairs) {
        return Err(error);
    }
    let state_value =
        param(&pairs, "state").ok_or_else(|| HttpError::bad_request("state is required"))?;
    let code = param(&pairs, "code").ok_or_else(|| HttpError::bad_request("code is required"))?;
    let state = consume_state(env, state_value, Provider::Keap, clock::now()).await?;
    let keap = config.keap_oauth().map_err(config_error)?;
    let answer = outbound::send(&keap.code_exchange_request(code), TOKEN_ENDPOINT_TIMEOUT)
        .await
        .map_err(|e| {
            HttpError::new(502, "the provider's token endpoint did not answer").with_reason(e.0)
        })?;
    let grant = keap::parse_token_response(answer.status, &answer.body).map_err(token_error)?;
    let account = grant
        .scope
        .as_deref()
        .and_then(keap::account_from_scope)
        .ok_or_else(|| {
            HttpError::new(502, "the provider did not say which account was connected")
        })?;
    let view = store_connection(env, &state.user_id, Provider::Keap, &account, grant).await?;
    success_page(&view)
}

/// `GET /oauth/shopify/install?shop=&user_id=` (admin): redirects to the shop's grant page.
pub async fn shopify_install(req: &Request, env: &Env, config: &CoordinatorConfig) -> HttpResult {
    require(req, env, Capability::Operate)?;
    let pairs = query(req)?;
    let user = user_id(&pairs)?;
    let shop = param(&pairs, "shop")
        .and_then(shopify::normalize_shop_domain)
        .ok_or_else(|| HttpError::bad_request("shop must be a <name>.myshopify.com domain"))?;
    let app = config.shopify_oauth().map_err(config_error)?;
    let state = new_state(env, config, &user, Provider::Shopify, Some(shop.clone())).await?;
    redirect_or_json(req, &app.install_redirect(&shop, &state.value))
}

/// `GET /oauth/shopify/callback?code&hmac&shop&state&timestamp`: verifies Shopify's HMAC and
/// the shop, checks the state, exchanges the code for an offline token.
pub async fn shopify_callback(req: &Request, env: &Env, config: &CoordinatorConfig) -> HttpResult {
    let pairs = query(req)?;
    let app = config.shopify_oauth().map_err(config_error)?;
    if !shopify::verify_callback_hmac(&pairs, &app.client_secret) {
        return Err(
            HttpError::bad_request("the request is not signed by Shopify")
                .with_reason("callback hmac mismatch"),
        );
    }
    let shop = param(&pairs, "shop")
        .filter(|s| shopify::is_valid_shop_domain(s))
        .ok_or_else(|| HttpError::bad_request("shop is not a myshopify.com domain"))?
        .to_ascii_lowercase();
    let state_value =
        param(&pairs, "state").ok_or_else(|| HttpError::bad_request("state is required"))?;
    let code = param(&pairs, "code").ok_or_else(|| HttpError::bad_request("code is required"))?;
    let state = consume_state(env, state_value, Provider::Shopify, clock::now()).await?;
    if state.account.as_deref() != Some(shop.as_str()) {
        return Err(HttpError::bad_request(
            "invalid OAuth state: issued for another shop",
        ));
    }
    let answer = outbound::send(
        &app.code_exchange_request(&shop, code),
        TOKEN_ENDPOINT_TIMEOUT,
    )
    .await
    .map_err(|e| HttpError::new(502, "Shopify did not answer").with_reason(e.0))?;
    let grant =
        shopify::parse_access_token_response(answer.status, &answer.body).map_err(token_error)?;
    let view = store_connection(env, &state.user_id, Provider::Shopify, &shop, grant).await?;
    success_page(&view)
}

/// `POST /coordinator/connections` (admin) with `{"provider":"shopify","user_id","shop",
/// "access_token"}`: registers a custom app's Admin API token directly.
pub async fn register_token(body: &str, env: &Env) -> HttpResult {
    #[derive(serde::Deserialize)]
    struct Register {
        provider: Provider,
        user_id: String,
        shop: String,
        access_token: String,
    }
    let body: Register = serde_json::from_str(body).map_err(|_| {
        HttpError::bad_request("body must be JSON {provider, user_id, shop, access_token}")
    })?;
    if body.provider != Provider::Shopify {
        return Err(HttpError::bad_request(
            "only Shopify custom-app tokens can be registered directly; Keap uses /oauth/initiate",
        ));
    }
    let user = user_id(&[("user_id".to_owned(), body.user_id)])?;
    let shop = shopify::normalize_shop_domain(&body.shop)
        .ok_or_else(|| HttpError::bad_request("shop must be a <name>.myshopify.com domain"))?;
    let token = body.access_token.trim();
    if token.len() < 16 || token.len() > 512 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HttpError::bad_request(
            "access_token does not look like an Admin API token",
        ));
    }
    let grant = TokenGrant {
        access_token: edge_sync_shared::Secret::new(token),
        refresh_token: None,
        expires_in_secs: 0,
        scope: None,
    };
    let view = store_connection(env, &user, Provider::Shopify, &shop, grant).await?;
    Ok(Response::from_json(&view)?.with_status(201))
}
