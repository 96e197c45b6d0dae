//! Automatic webhook registration when a connection is created (and removal when it is
//! deleted): Keap REST hooks (v1) for the configured event keys, each URL carrying an
//! unguessable per-connection hook token; Shopify `webhookSubscriptionCreate` for the
//! topics the system consumes. Registration is best effort: a failure is logged and shown
//! on the connection, and the cron sync still keeps the data current.

use std::time::Duration;

use edge_sync_shared::{bindings::workers::SYNC_COORDINATOR as WORKER, log::Level};
use edge_sync_shared::{connection::Provider, oauth::HttpRequestSpec, Secret};
use edge_sync_worker_kit::log::{self, Emit};
use edge_sync_worker_kit::{env_vars::text as var, outbound, random};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::{Env, Method};

use crate::durable_object::{self, SYSTEM_INSTANCE};

/// Keap v1 REST base in production (hooks exist only in v1:
/// <https://developer.infusionsoft.com/rest-hook-documentation>).
const KEAP_REST_V1_BASE: &str = "https://api.infusionsoft.com/crm/rest/v1";
const DEFAULT_KEAP_EVENT_KEYS: &str = "contact.add,contact.edit,contact.delete,opportunity.add,opportunity.edit,opportunity.delete,order.add,order.edit,order.delete,task.add,task.edit,task.delete";
/// Shopify topics the seed consumes, and `app/uninstalled` (which revokes the connection).
/// The mandatory privacy topics are not subscribed here: Shopify takes them only from the
/// app's configuration (`compliance_topics`; shopify.dev/docs/apps/build/compliance/
/// privacy-law-compliance).
const SHOPIFY_TOPICS: [&str; 7] = [
    "PRODUCTS_CREATE",
    "PRODUCTS_UPDATE",
    "PRODUCTS_DELETE",
    "COLLECTIONS_CREATE",
    "ORDERS_CREATE",
    "INVENTORY_LEVELS_UPDATE",
    "APP_UNINSTALLED",
];
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
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    body["access_token"]
        .as_str()
        .map(Secret::new)
        .ok_or_else(|| format!("no token ({})", body["error"]))
}

fn spec(
    method: &'static str,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Value>,
) -> HttpRequestSpec {
    let mut headers = headers;
    if body.is_some() {
        headers.push(("Content-Type".into(), "application/json".into()));
    }
    headers.push(("Accept".into(), "application/json".into()));
    HttpRequestSpec {
        method,
        url,
        headers,
        body: body.map(|b| b.to_string()).unwrap_or_default(),
    }
}

fn shopify_graphql_url(env: &Env, shop: &str) -> String {
    let base = var(env, "SHOPIFY_ADMIN_BASE_URL").unwrap_or_else(|| "https://{shop}".into());
    let version = var(env, "SHOPIFY_API_VERSION").unwrap_or_else(|| "2025-01".into());
    format!(
        "{}/admin/api/{version}/graphql.json",
        base.replace("{shop}", shop)
    )
}

/// Registers the provider's webhooks for a new connection, unless already registered.
pub async fn register(env: &Env, connection_id: &str, provider: Provider, account: &str) {
    let Some(base) = var(env, "WEBHOOK_BASE_URL") else {
        log::event(WORKER, Level::Warn, "webhook_registration_skipped")
            .with_connection_id(connection_id)
            .with_reason("WEBHOOK_BASE_URL is not configured")
            .emit();
        return;
    };
    let base = base.trim_end_matches('/').to_owned();
    let existing =
        durable_object::call(env, connection_id, Method::Get, "/internal/webhooks", None).await;
    if let Ok(mut response) = existing {
        if let Ok(current) = response.json::<Registered>().await {
            if current.keap_hook_token.is_some() || !current.shopify_subscription_ids.is_empty() {
                return;
            }
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
        Provider::Keap => register_keap(env, connection_id, &base, &token).await,
        Provider::Shopify => register_shopify(env, connection_id, account, &base, &token).await,
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
    let body = serde_json::to_value(&registered).unwrap_or_default();
    let _ = durable_object::call(
        env,
        connection_id,
        Method::Put,
        "/internal/webhooks",
        Some(&body),
    )
    .await;
}

async fn register_keap(env: &Env, connection_id: &str, base: &str, token: &Secret) -> Registered {
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
    let entry = json!({ "connection_id": connection_id, "hook_keys": [] });
    if let Err(e) = durable_object::call(
        env,
        SYSTEM_INSTANCE,
        Method::Put,
        &format!("/internal/hooks/{hook_token}"),
        Some(&entry),
    )
    .await
    {
        registered.errors.push(format!("hook token: {e}"));
        return registered;
    }
    let v1 = var(env, "KEAP_REST_V1_BASE_URL").unwrap_or_else(|| KEAP_REST_V1_BASE.into());
    let keys = var(env, "KEAP_HOOK_EVENT_KEYS").unwrap_or_else(|| DEFAULT_KEAP_EVENT_KEYS.into());
    let auth = vec![(
        "Authorization".to_owned(),
        format!("Bearer {}", token.expose()),
    )];
    let hook_url = format!("{base}/webhook/keap/{hook_token}");
    for event_key in keys.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        match create_keap_hook(&v1, &auth, event_key, &hook_url).await {
            Ok(Some(key)) => registered.keap_hook_keys.push(key),
            Ok(None) => {}
            Err(e) => registered.errors.push(e),
        }
    }
    let entry = json!({ "connection_id": connection_id, "hook_keys": registered.keap_hook_keys });
    let _ = durable_object::call(
        env,
        SYSTEM_INSTANCE,
        Method::Put,
        &format!("/internal/hooks/{hook_token}"),
        Some(&entry),
    )
    .await;
    registered
}

async fn register_shopify(
    env: &Env,
    connection_id: &str,
    shop: &str,
    base: &str,
    token: &Secret,
) -> Registered {
    let mut registered = Registered::default();
    let url = shopify_graphql_url(env, shop);
    let auth = vec![(
        "X-Shopify-Access-Token".to_owned(),
        token.expose().to_owned(),
    )];
    let callback = format!("{base}/webhook/shopify/{connection_id}");
    for topic in SHOPIFY_TOPICS {
        match create_shopify_subscription(&url, &auth, topic, &callback).await {
            Ok(id) => registered.shopify_subscription_ids.push(id),
            Err(e) => registered.errors.push(e),
        }
    }
    registered
}

/// Removes what [`register`] registered (call before the tokens are revoked).
pub async fn unregister(env: &Env, connection_id: &str, provider: Provider, account: &str) {
    let Ok(mut response) =
        durable_object::call(env, connection_id, Method::Get, "/internal/webhooks", None).await
    else {
        return;
    };
    let Ok(registered) = response.json::<Registered>().await else {
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
    let mut removed = 0;
    match provider {
        Provider::Keap => {
            let v1 = var(env, "KEAP_REST_V1_BASE_URL").unwrap_or_else(|| KEAP_REST_V1_BASE.into());
            let auth = vec![(
                "Authorization".to_owned(),
                format!("Bearer {}", token.expose()),
            )];
            for key in &registered.keap_hook_keys {
                let request = spec(
                    "DELETE",
                    format!("{}/hooks/{key}", v1.trim_end_matches('/')),
                    auth.clone(),
                    None,
                );
                if matches!(outbound::send(&request, TIMEOUT).await, Ok(a) if (200..300).contains(&a.status) || a.status == 404)
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
            let url = shopify_graphql_url(env, account);
            let auth = vec![(
                "X-Shopify-Access-Token".to_owned(),
                token.expose().to_owned(),
            )];
            let mutation = "mutation Delete($id: ID!) { webhookSubscriptionDelete(id: $id) { deletedWebhookSubscriptionId userErrors { field message } } }";
            for id in &registered.shopify_subscription_ids {
                let body = json!({ "query": mutation, "variables": { "id": id } });
                if matches!(outbound::send(&spec("POST", url.clone(), auth.clone(), Some(body)), TIMEOUT).await, Ok(a) if a.status == 200)
                {
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
    let Some(base) = var(env, "WEBHOOK_BASE_URL") else {
        return Ensured::default();
    };
    let base = base.trim_end_matches('/').to_owned();
    let current =
        match durable_object::call(env, connection_id, Method::Get, "/internal/webhooks", None)
            .await
        {
            Ok(mut response) => response.json::<Registered>().await.unwrap_or_default(),
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
        Provider::Keap => ensure_keap(env, &base, &token, &mut registered).await,
        Provider::Shopify => {
            ensure_shopify(env, connection_id, account, &base, &token, &mut registered).await
        }
    };
    if !ensured.recreated.is_empty() {
        let body = serde_json::to_value(&registered).unwrap_or_default();
        let _ = durable_object::call(
            env,
            connection_id,
            Method::Put,
            "/internal/webhooks",
            Some(&body),
        )
        .await;
        if let Some(hook_token) = &registered.keap_hook_token {
            let entry =
                json!({ "connection_id": connection_id, "hook_keys": registered.keap_hook_keys });
            let _ = durable_object::call(
                env,
                SYSTEM_INSTANCE,
                Method::Put,
                &format!("/internal/hooks/{hook_token}"),
                Some(&entry),
            )
            .await;
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
    env: &Env,
    base: &str,
    token: &Secret,
    registered: &mut Registered,
) -> Ensured {
    let mut ensured = Ensured::default();
    let Some(hook_token) = registered.keap_hook_token.clone() else {
        return ensured;
    };
    let v1 = var(env, "KEAP_REST_V1_BASE_URL").unwrap_or_else(|| KEAP_REST_V1_BASE.into());
    let v1 = v1.trim_end_matches('/');
    let auth = vec![(
        "Authorization".to_owned(),
        format!("Bearer {}", token.expose()),
    )];
    let hook_url = format!("{base}/webhook/keap/{hook_token}");
    let listed = match outbound::send(
        &spec("GET", format!("{v1}/hooks"), auth.clone(), None),
        TIMEOUT,
    )
    .await
    {
        Ok(answer) if answer.status == 200 => {
            serde_json::from_str::<Vec<Value>>(&answer.body).unwrap_or_default()
        }
        Ok(answer) => {
            ensured
                .errors
                .push(format!("list hooks: HTTP {}", answer.status));
            return ensured;
        }
        Err(e) => {
            ensured.errors.push(format!("list hooks: {}", e.0));
            return ensured;
        }
    };
    let keys = var(env, "KEAP_HOOK_EVENT_KEYS").unwrap_or_else(|| DEFAULT_KEAP_EVENT_KEYS.into());
    let mut present = Vec::new();
    for event_key in keys.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        let ours = listed
            .iter()
            .find(|h| h["eventKey"] == event_key && h["hookUrl"] == hook_url.as_str());
        match ours {
            Some(hook) => {
                let Some(key) = keap_hook_key(hook) else {
                    continue;
                };
                if hook["status"] != "Verified" {
                    let request = spec(
                        "POST",
                        format!("{v1}/hooks/{key}/verify"),
                        auth.clone(),
                        None,
                    );
                    match outbound::send(&request, TIMEOUT).await {
                        Ok(answer) if (200..300).contains(&answer.status) => {
                            ensured.reverified.push(event_key.to_owned());
                        }
                        Ok(answer) => ensured
                            .errors
                            .push(format!("{event_key}: verify HTTP {}", answer.status)),
                        Err(e) => ensured.errors.push(format!("{event_key}: verify {}", e.0)),
                    }
                }
                present.push(key);
            }
            None => match create_keap_hook(v1, &auth, event_key, &hook_url).await {
                Ok(key) => {
                    present.extend(key);
                    ensured.recreated.push(event_key.to_owned());
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
    env: &Env,
    connection_id: &str,
    shop: &str,
    base: &str,
    token: &Secret,
    registered: &mut Registered,
) -> Ensured {
    let mut ensured = Ensured::default();
    let url = shopify_graphql_url(env, shop);
    let auth = vec![(
        "X-Shopify-Access-Token".to_owned(),
        token.expose().to_owned(),
    )];
    let callback = format!("{base}/webhook/shopify/{connection_id}");
    let query = "query Ours($url: URL!) { webhookSubscriptions(first: 100, callbackUrl: $url) { nodes { id topic } } }";
    let body = json!({ "query": query, "variables": { "url": callback } });
    let nodes = match outbound::send(
        &spec("POST", url.clone(), auth.clone(), Some(body)),
        TIMEOUT,
    )
    .await
    {
        Ok(answer) if answer.status == 200 => {
            let value: Value = serde_json::from_str(&answer.body).unwrap_or_default();
            match value["data"]["webhookSubscriptions"]["nodes"].as_array() {
                Some(nodes) => nodes.clone(),
                None => {
                    ensured
                        .errors
                        .push("list subscriptions: unexpected answer".into());
                    return ensured;
                }
            }
        }
        Ok(answer) => {
            ensured
                .errors
                .push(format!("list subscriptions: HTTP {}", answer.status));
            return ensured;
        }
        Err(e) => {
            ensured.errors.push(format!("list subscriptions: {}", e.0));
            return ensured;
        }
    };
    let mut ids: Vec<String> = Vec::new();
    for topic in SHOPIFY_TOPICS {
        if let Some(node) = nodes.iter().find(|n| n["topic"] == topic) {
            if let Some(id) = node["id"].as_str() {
                ids.push(id.to_owned());
            }
            continue;
        }
        match create_shopify_subscription(&url, &auth, topic, &callback).await {
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

/// A Keap hook's key (Keap answers it as a number; the sandbox too, but be lenient).
fn keap_hook_key(hook: &Value) -> Option<String> {
    hook["key"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| hook["key"].as_i64().map(|k| k.to_string()))
}

/// Creates one Keap REST hook; its key (when Keap names it), or why not.
async fn create_keap_hook(
    v1: &str,
    auth: &[(String, String)],
    event_key: &str,
    hook_url: &str,
) -> Result<Option<String>, String> {
    let body = json!({ "eventKey": event_key, "hookUrl": hook_url });
    let request = spec(
        "POST",
        format!("{}/hooks", v1.trim_end_matches('/')),
        auth.to_vec(),
        Some(body),
    );
    match outbound::send(&request, TIMEOUT).await {
        Ok(answer) if (200..300).contains(&answer.status) => {
            let hook: Value = serde_json::from_str(&answer.body).unwrap_or_default();
            Ok(keap_hook_key(&hook))
        }
        Ok(answer) => Err(format!("{event_key}: HTTP {}", answer.status)),
        Err(e) => Err(format!("{event_key}: {}", e.0)),
    }
}

/// Creates one Shopify webhook subscription; its id (GID), or why not.
async fn create_shopify_subscription(
    graphql_url: &str,
    auth: &[(String, String)],
    topic: &str,
    callback: &str,
) -> Result<String, String> {
    let mutation = "mutation Create($topic: WebhookSubscriptionTopic!, $url: URL!) { webhookSubscriptionCreate(topic: $topic, webhookSubscription: {callbackUrl: $url, format: JSON}) { webhookSubscription { id } userErrors { field message } } }";
    let body = json!({ "query": mutation, "variables": { "topic": topic, "url": callback } });
    let request = spec("POST", graphql_url.to_owned(), auth.to_vec(), Some(body));
    match outbound::send(&request, TIMEOUT).await {
        Ok(answer) if answer.status == 200 => {
            let value: Value = serde_json::from_str(&answer.body).unwrap_or_default();
            let created = &value["data"]["webhookSubscriptionCreate"];
            created["webhookSubscription"]["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| {
                    format!(
                        "{topic}: {}",
                        created["userErrors"]
                            .to_string()
                            .chars()
                            .take(200)
                            .collect::<String>()
                    )
                })
        }
        Ok(answer) => Err(format!("{topic}: HTTP {}", answer.status)),
        Err(e) => Err(format!("{topic}: {}", e.0)),
    }
}
