//! Automatic webhook registration when a connection is created (and removal when it is
//! deleted): Keap REST hooks (v1) for the configured event keys, each URL carrying an
//! unguessable per-connection hook token; Shopify `webhookSubscriptionCreate` for the
//! topics the system consumes. Registration is best effort: a failure is logged and shown
//! on the connection, and the cron sync still keeps the data current.

use std::time::Duration;

use edge_sync_shared::provider_hooks::{
    keap::{self as keap_hooks, KeapHooksApi},
    shopify::{self as shopify_hooks, ShopifyHooksApi, SUBSCRIBED_TOPICS},
    HookApiError,
};
use edge_sync_shared::{bindings::workers::SYNC_COORDINATOR as WORKER, log::Level};
use edge_sync_shared::{connection::Provider, oauth::HttpRequestSpec, Secret};
use edge_sync_worker_kit::log::{self, Emit};
use edge_sync_worker_kit::{outbound, random};
use serde::{Deserialize, Serialize};
use worker::{Env, Method};

use crate::config::{WebhookRegistrationConfig, WEBHOOK_BASE_URL};
use crate::durable_object::{self, SYSTEM_INSTANCE};
use edge_sync_shared::coordinator_api::{ErrorBody, HookToken, IssuedAccessToken};

const TIMEOUT: Duration = Duration::from_secs(20);

/// What was registered for a connection (stored in its Durable Object).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Registered {
    /// Keap: the hook token in the URLs.
    pub keap_hook_token: Option<String>,
    /// Keap hook keys.
    #[serde(default)]
    pub keap_hook_keys: Vec<String>,
    /// Shopify subscription ids (GIDs).
    #[serde(default)]
    pub shopify_subscription_ids: Vec<String>,
    /// Problems met, for status.
    #[serde(default)]
    pub errors: Vec<String>,
}

async fn access_token(env: &Env, connection_id: &str) -> Result<Secret, String> {
    let mut response = durable_object::call(
        env,
        connection_id,
        Method::Post,
        "/internal/connection/token",
        None,
    )
    .await
    .map_err(|e| e.to_string())?;
    if response.status_code() != 200 {
        let refusal: ErrorBody = durable_object::read(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        return Err(format!("no token ({})", refusal.error));
    }
    let issued: IssuedAccessToken = durable_object::read(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Secret::new(issued.access_token))
}

/// Records a Keap hook token in the `system` instance: the connection it delivers for and
/// the hook keys registered with it (so a delivery to `/webhook/keap/{token}` resolves).
async fn put_hook_token(
    env: &Env,
    hook_token: &str,
    connection_id: &str,
    hook_keys: &[String],
) -> worker::Result<()> {
    let entry = HookToken {
        connection_id: connection_id.to_owned(),
        hook_keys: hook_keys.to_vec(),
        verified: false,
    };
    let path = format!("/internal/hooks/{hook_token}");
    durable_object::send(env, SYSTEM_INSTANCE, Method::Put, &path, &entry)
        .await
        .map(|_| ())
}

/// What is registered for a connection, as its Durable Object keeps it.
async fn registered_of(env: &Env, connection_id: &str) -> worker::Result<Registered> {
    let mut response =
        durable_object::call(env, connection_id, Method::Get, "/internal/webhooks", None).await?;
    durable_object::read(&mut response).await
}

/// Keeps what is registered in the connection's Durable Object.
async fn save_registered(env: &Env, connection_id: &str, registered: &Registered) {
    let _ = durable_object::send(
        env,
        connection_id,
        Method::Put,
        "/internal/webhooks",
        registered,
    )
    .await;
}

/// Why a provider call failed: no answer, or an answer the shared parser refused.
enum CallError {
    NoAnswer(String),
    Refused(HookApiError),
}

/// The text kept in `errors` (connection status) and logged.
fn described(e: CallError) -> String {
    match e {
        CallError::NoAnswer(why) => why,
        CallError::Refused(e) => e.to_string(),
    }
}

/// Sends `request` and parses the answer with the shared `parse`.
async fn call<T>(
    request: &HttpRequestSpec,
    parse: impl FnOnce(u16, &str) -> Result<T, HookApiError>,
) -> Result<T, CallError> {
    let answer = outbound::send(request, TIMEOUT)
        .await
        .map_err(|e| CallError::NoAnswer(e.0))?;
    parse(answer.status, &answer.body).map_err(CallError::Refused)
}

fn settings(env: &Env) -> WebhookRegistrationConfig {
    crate::config::webhook_registration(env)
}

fn shopify_graphql_url(settings: &WebhookRegistrationConfig, shop: &str) -> String {
    shopify_hooks::graphql_url(
        &settings.shopify_admin_base,
        &settings.shopify_api_version,
        shop,
    )
}

/// Registers the provider's webhooks for a new connection, unless already registered.
pub async fn register(env: &Env, connection_id: &str, provider: Provider, account: &str) {
    let settings = settings(env);
    let Some(base) = settings.webhook_base_url.as_deref() else {
        log::event(WORKER, Level::Warn, "webhook_registration_skipped")
            .with_connection_id(connection_id)
            .with_reason(format!("{WEBHOOK_BASE_URL} is not configured"))
            .emit();
        return;
    };
    if let Ok(current) = registered_of(env, connection_id).await {
        if current.keap_hook_token.is_some() || !current.shopify_subscription_ids.is_empty() {
            return;
        }
    }
    let token = match access_token(env, connection_id).await {
        Ok(token) => token,
        Err(e) => {
            log::event(WORKER, Level::Error, "webhook_registration_failed")
                .with_connection_id(connection_id)
                .with_reason(e)
                .emit();
            return;
        }
    };
    let registered = match provider {
        Provider::Keap => register_keap(env, &settings, connection_id, base, &token).await,
        Provider::Shopify => {
            let url = shopify_graphql_url(&settings, account);
            register_shopify(&ShopifyHooksApi::new(&url, &token), connection_id, base).await
        }
    };
    log::event(
        WORKER,
        if registered.errors.is_empty() {
            Level::Info
        } else {
            Level::Warn
        },
        "webhooks_registered",
    )
    .with_connection_id(connection_id)
    .with("keap_hooks", registered.keap_hook_keys.len())
    .with(
        "shopify_subscriptions",
        registered.shopify_subscription_ids.len(),
    )
    .with("errors", &registered.errors)
    .emit();
    save_registered(env, connection_id, &registered).await;
}

async fn register_keap(
    env: &Env,
    settings: &WebhookRegistrationConfig,
    connection_id: &str,
    base: &str,
    token: &Secret,
) -> Registered {
    let mut registered = Registered::default();
    let hook_token = match random::secret_hex::<32>() {
        Ok(token) => token,
        Err(e) => {
            registered.errors.push(format!("hook token: {e}"));
            return registered;
        }
    };
    registered.keap_hook_token = Some(hook_token.clone());
    // The token must resolve before Keap's verification handshake arrives.
    if let Err(e) = put_hook_token(env, &hook_token, connection_id, &[]).await {
        registered.errors.push(format!("hook token: {e}"));
        return registered;
    }
    let api = KeapHooksApi::new(&settings.keap_rest_v1_base, token);
    let hook_url = keap_hooks::hook_url(base, &hook_token);
    for event_key in &settings.keap_event_keys {
        match create_keap_hook(&api, event_key, &hook_url).await {
            Ok(Some(key)) => registered.keap_hook_keys.push(key),
            Ok(None) => {}
            Err(e) => registered.errors.push(e),
        }
    }
    let _ = put_hook_token(env, &hook_token, connection_id, &registered.keap_hook_keys).await;
    registered
}

async fn register_shopify(
    api: &ShopifyHooksApi<'_>,
    connection_id: &str,
    base: &str,
) -> Registered {
    let mut registered = Registered::default();
    let callback = shopify_hooks::callback_url(base, connection_id);
    for topic in SUBSCRIBED_TOPICS {
        match create_shopify_subscription(api, topic, &callback).await {
            Ok(id) => registered.shopify_subscription_ids.push(id),
            Err(e) => registered.errors.push(e),
        }
    }
    registered
}

/// Removes what [`register`] registered (call before the tokens are revoked).
pub async fn unregister(env: &Env, connection_id: &str, provider: Provider, account: &str) {
    let Ok(registered) = registered_of(env, connection_id).await else {
        return;
    };
    if registered.keap_hook_token.is_none() && registered.shopify_subscription_ids.is_empty() {
        return;
    }
    let token = match access_token(env, connection_id).await {
        Ok(token) => token,
        Err(e) => {
            log::event(WORKER, Level::Warn, "webhook_removal_failed")
                .with_connection_id(connection_id)
                .with_reason(e)
                .emit();
            return;
        }
    };
    let settings = settings(env);
    let mut removed = 0;
    match provider {
        Provider::Keap => {
            let api = KeapHooksApi::new(&settings.keap_rest_v1_base, &token);
            for key in &registered.keap_hook_keys {
                if call(&api.delete_hook(key), keap_hooks::parse_delete_hook)
                    .await
                    .is_ok()
                {
                    removed += 1;
                }
            }
            if let Some(hook_token) = &registered.keap_hook_token {
                let _ = durable_object::call(
                    env,
                    SYSTEM_INSTANCE,
                    Method::Delete,
                    &format!("/internal/hooks/{hook_token}"),
                    None,
                )
                .await;
            }
        }
        Provider::Shopify => {
            let url = shopify_graphql_url(&settings, account);
            let api = ShopifyHooksApi::new(&url, &token);
            for id in &registered.shopify_subscription_ids {
                let deleted = call(
                    &api.delete_subscription(id),
                    shopify_hooks::parse_delete_subscription,
                )
                .await;
                if deleted.is_ok() {
                    removed += 1;
                }
            }
        }
    }
    log::event(WORKER, Level::Info, "webhooks_removed")
        .with_connection_id(connection_id)
        .with("removed", removed)
        .emit();
}

/// What [`ensure`] found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ensured {
    /// Hooks or subscriptions that were gone at the provider and were created again.
    pub recreated: Vec<String>,
    /// Keap hooks found but not `Verified`, asked to verify again.
    pub reverified: Vec<String>,
    /// Problems met.
    pub errors: Vec<String>,
}

/// Checks that the provider still has every hook or subscription this connection needs and
/// repairs what is missing: Keap drops a hook's verification (and eventually the hook) after
/// failed deliveries, users delete them by hand, Shopify removes subscriptions that keep
/// failing. Run by the sync-worker's cron for every active connection; registers from
/// scratch when nothing was ever registered.
pub async fn ensure(env: &Env, connection_id: &str, provider: Provider, account: &str) -> Ensured {
    let settings = settings(env);
    let Some(base) = settings.webhook_base_url.as_deref() else {
        return Ensured::default();
    };
    let current = match registered_of(env, connection_id).await {
        Ok(current) => current,
        Err(e) => {
            return Ensured {
                errors: vec![format!("stored registration: {e}")],
                ..Ensured::default()
            }
        }
    };
    if current.keap_hook_token.is_none() && current.shopify_subscription_ids.is_empty() {
        register(env, connection_id, provider, account).await;
        return Ensured {
            recreated: vec!["all".into()],
            ..Ensured::default()
        };
    }
    let token = match access_token(env, connection_id).await {
        Ok(token) => token,
        Err(e) => {
            return Ensured {
                errors: vec![e],
                ..Ensured::default()
            }
        }
    };
    let mut registered = current;
    let ensured = match provider {
        Provider::Keap => ensure_keap(&settings, base, &token, &mut registered).await,
        Provider::Shopify => {
            let url = shopify_graphql_url(&settings, account);
            let api = ShopifyHooksApi::new(&url, &token);
            ensure_shopify(
                &api,
                &shopify_hooks::callback_url(base, connection_id),
                &mut registered,
            )
            .await
        }
    };
    if !ensured.recreated.is_empty() {
        save_registered(env, connection_id, &registered).await;
        if let Some(hook_token) = &registered.keap_hook_token {
            let _ =
                put_hook_token(env, hook_token, connection_id, &registered.keap_hook_keys).await;
        }
    }
    if !ensured.recreated.is_empty() || !ensured.reverified.is_empty() || !ensured.errors.is_empty()
    {
        log::event(
            WORKER,
            if ensured.errors.is_empty() {
                Level::Info
            } else {
                Level::Warn
            },
            "webhooks_repaired",
        )
        .with_connection_id(connection_id)
        .with("recreated", &ensured.recreated)
        .with("reverified", &ensured.reverified)
        .with("errors", &ensured.errors)
        .emit();
    }
    ensured
}

async fn ensure_keap(
    settings: &WebhookRegistrationConfig,
    base: &str,
    token: &Secret,
    registered: &mut Registered,
) -> Ensured {
    let mut ensured = Ensured::default();
    let Some(hook_token) = registered.keap_hook_token.clone() else {
        return ensured;
    };
    let api = KeapHooksApi::new(&settings.keap_rest_v1_base, token);
    let hook_url = keap_hooks::hook_url(base, &hook_token);
    let listed = match call(&api.list_hooks(), keap_hooks::parse_list_hooks).await {
        Ok(listed) => listed,
        Err(e) => {
            ensured.errors.push(format!("list hooks: {}", described(e)));
            return ensured;
        }
    };
    let mut present = Vec::new();
    for event_key in &settings.keap_event_keys {
        match listed.iter().find(|h| h.is_for(event_key, &hook_url)) {
            Some(hook) => {
                if hook.status != keap_hooks::HookStatus::Verified {
                    match call(&api.verify_hook(&hook.key), keap_hooks::parse_verify_hook).await {
                        Ok(_) => ensured.reverified.push(event_key.clone()),
                        Err(e) => ensured
                            .errors
                            .push(format!("{event_key}: verify {}", described(e))),
                    }
                }
                present.push(hook.key.clone());
            }
            None => match create_keap_hook(&api, event_key, &hook_url).await {
                Ok(key) => {
                    present.extend(key);
                    ensured.recreated.push(event_key.clone());
                }
                Err(e) => ensured.errors.push(e),
            },
        }
    }
    if !ensured.recreated.is_empty() {
        registered.keap_hook_keys = present;
    }
    ensured
}

async fn ensure_shopify(
    api: &ShopifyHooksApi<'_>,
    callback: &str,
    registered: &mut Registered,
) -> Ensured {
    let mut ensured = Ensured::default();
    let listed = match call(
        &api.list_subscriptions(callback),
        shopify_hooks::parse_list_subscriptions,
    )
    .await
    {
        Ok(listed) => listed,
        Err(e) => {
            ensured
                .errors
                .push(format!("list subscriptions: {}", described(e)));
            return ensured;
        }
    };
    let mut ids: Vec<String> = Vec::new();
    for topic in SUBSCRIBED_TOPICS {
        if let Some(subscription) = listed.iter().find(|s| s.topic == topic) {
            ids.push(subscription.id.clone());
            continue;
        }
        match create_shopify_subscription(api, topic, callback).await {
            Ok(id) => {
                ids.push(id);
                ensured.recreated.push(topic.to_owned());
            }
            Err(e) => ensured.errors.push(e),
        }
    }
    if !ensured.recreated.is_empty() {
        registered.shopify_subscription_ids = ids;
    }
    ensured
}

/// Creates one Keap REST hook; its key (when Keap names it), or why not.
async fn create_keap_hook(
    api: &KeapHooksApi<'_>,
    event_key: &str,
    hook_url: &str,
) -> Result<Option<String>, String> {
    call(
        &api.create_hook(event_key, hook_url),
        keap_hooks::parse_create_hook,
    )
    .await
    .map(|hook| hook.map(|h| h.key))
    .map_err(|e| format!("{event_key}: {}", described(e)))
}

/// Creates one Shopify webhook subscription; its id (GID), or why not.
async fn create_shopify_subscription(
    api: &ShopifyHooksApi<'_>,
    topic: &str,
    callback: &str,
) -> Result<String, String> {
    call(
        &api.create_subscription(topic, callback),
        shopify_hooks::parse_create_subscription,
    )
    .await
    .map_err(|e| format!("{topic}: {}", described(e)))
}
