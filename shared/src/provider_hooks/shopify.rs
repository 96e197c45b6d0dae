//! Shopify webhook subscriptions through the GraphQL Admin API: create
//! (<https://shopify.dev/docs/api/admin-graphql/latest/mutations/webhookSubscriptionCreate>),
//! list (<https://shopify.dev/docs/api/admin-graphql/latest/queries/webhookSubscriptions>)
//! and delete
//! (<https://shopify.dev/docs/api/admin-graphql/latest/mutations/webhookSubscriptionDelete>).
//!
//! GraphQL answers 200 even when a mutation is refused (`userErrors`) or the call is
//! throttled (top-level `errors` with `extensions.code = "THROTTLED"`,
//! <https://shopify.dev/docs/api/usage/rate-limits>); the parsers tell these apart.

use serde::Deserialize;
use serde_json::json;

use super::{classify_status, shorten, HookApiError, UserError};
use crate::oauth::HttpRequestSpec;
use crate::Secret;

/// The topics subscribed for every shop: what the sync consumes, and `APP_UNINSTALLED`
/// (which revokes the connection). The mandatory privacy topics are not here: Shopify takes
/// them only from the app's configuration (`compliance_topics`,
/// <https://shopify.dev/docs/apps/build/compliance/privacy-law-compliance>).
///
/// `CUSTOMERS_CREATE` and `CUSTOMERS_UPDATE` keep the customer mirror live and carry the
/// customers real-time propagation writes to Keap; Shopify delivers them only to apps
/// approved for protected customer data
/// (<https://shopify.dev/docs/apps/launch/protected-customer-data>).
pub const SUBSCRIBED_TOPICS: [&str; 9] = [
    "PRODUCTS_CREATE",
    "PRODUCTS_UPDATE",
    "PRODUCTS_DELETE",
    "COLLECTIONS_CREATE",
    "ORDERS_CREATE",
    "CUSTOMERS_CREATE",
    "CUSTOMERS_UPDATE",
    "INVENTORY_LEVELS_UPDATE",
    "APP_UNINSTALLED",
];

const CREATE_MUTATION: &str = "mutation Create($topic: WebhookSubscriptionTopic!, $url: URL!) { webhookSubscriptionCreate(topic: $topic, webhookSubscription: {callbackUrl: $url, format: JSON}) { webhookSubscription { id } userErrors { field message } } }";
const DELETE_MUTATION: &str = "mutation Delete($id: ID!) { webhookSubscriptionDelete(id: $id) { deletedWebhookSubscriptionId userErrors { field message } } }";
/// Lists without paging: it filters on our callback URL, which carries at most one
/// subscription per topic of [`SUBSCRIBED_TOPICS`], so the first 100 always hold them all.
const LIST_QUERY: &str = "query Ours($url: URL!) { webhookSubscriptions(first: 100, callbackUrl: $url) { nodes { id topic } } }";

/// The shop's GraphQL Admin endpoint: `admin_base` with `{shop}` replaced (e.g.
/// `https://{shop}`, or the sandbox's `http://127.0.0.1:8790/shopify/{shop}`), then
/// `/admin/api/{api_version}/graphql.json`.
pub fn graphql_url(admin_base: &str, api_version: &str, shop: &str) -> String {
    format!(
        "{}/admin/api/{api_version}/graphql.json",
        admin_base.replace("{shop}", shop)
    )
}

/// The callback Shopify delivers a connection's webhooks to: webhook-handler's
/// `POST /webhook/shopify/{connection_id}` under `webhook_base` (no trailing slash).
pub fn callback_url(webhook_base: &str, connection_id: &str) -> String {
    format!("{webhook_base}/webhook/shopify/{connection_id}")
}

/// One subscription as listed: its GID and topic (`PRODUCTS_UPDATE`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Subscription {
    /// `gid://shopify/WebhookSubscription/<n>`.
    pub id: String,
    /// The topic's enum name.
    pub topic: String,
}

/// Shopify's webhook subscription API for one shop: its GraphQL URL and access token.
#[derive(Debug, Clone)]
pub struct ShopifyHooksApi<'a> {
    graphql_url: &'a str,
    token: &'a Secret,
}

impl<'a> ShopifyHooksApi<'a> {
    /// The API at `graphql_url` (see [`graphql_url`]) with the shop's access `token`.
    pub fn new(graphql_url: &'a str, token: &'a Secret) -> Self {
        Self { graphql_url, token }
    }

    fn request(&self, query: &str, variables: serde_json::Value) -> HttpRequestSpec {
        let body = json!({ "query": query, "variables": variables });
        crate::sync::shopify_graphql_request(self.graphql_url.to_owned(), self.token, &body)
    }

    /// `webhookSubscriptionCreate`: a JSON subscription of `topic` (enum name) to `callback`.
    pub fn create_subscription(&self, topic: &str, callback: &str) -> HttpRequestSpec {
        self.request(CREATE_MUTATION, json!({ "topic": topic, "url": callback }))
    }

    /// `webhookSubscriptions(callbackUrl:)`: the subscriptions delivering to `callback`.
    pub fn list_subscriptions(&self, callback: &str) -> HttpRequestSpec {
        self.request(LIST_QUERY, json!({ "url": callback }))
    }

    /// `webhookSubscriptionDelete(id:)`.
    pub fn delete_subscription(&self, id: &str) -> HttpRequestSpec {
        self.request(DELETE_MUTATION, json!({ "id": id }))
    }
}

/// A GraphQL answer: `data` (named by the caller) and top-level `errors`.
#[derive(Deserialize)]
struct RawAnswer<T> {
    data: Option<T>,
    #[serde(default)]
    errors: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawGraphQlError {
    message: Option<String>,
    extensions: Option<RawExtensions>,
}

#[derive(Deserialize)]
struct RawExtensions {
    code: Option<String>,
}

/// Shopify's REST-style error body `{"errors": "..."}` (401, 429, ...).
#[derive(Deserialize)]
struct RawRestError {
    errors: Option<serde_json::Value>,
}

fn http_error(status: u16, body: &str) -> HookApiError {
    let message = serde_json::from_str::<RawRestError>(body)
        .ok()
        .and_then(|e| e.errors)
        .map(|e| match e {
            serde_json::Value::String(text) => text,
            other => other.to_string(),
        });
    classify_status(status, message)
}

/// Top-level GraphQL `errors`: throttling, or any other error (first message).
fn graphql_errors(errors: serde_json::Value) -> HookApiError {
    let list: Vec<RawGraphQlError> = match errors {
        serde_json::Value::Array(_) => serde_json::from_value(errors).unwrap_or_default(),
        serde_json::Value::String(text) => {
            return HookApiError::GraphQl(shorten(&text));
        }
        _ => Vec::new(),
    };
    let throttled = list.iter().any(|e| {
        e.extensions
            .as_ref()
            .and_then(|x| x.code.as_deref())
            .is_some_and(|code| code == "THROTTLED")
    });
    if throttled {
        return HookApiError::RateLimited { status: 200 };
    }
    let message = list.into_iter().find_map(|e| e.message).unwrap_or_default();
    HookApiError::GraphQl(shorten(&message))
}

/// The `data` of a 200 GraphQL answer, or why there is none.
fn data<T: serde::de::DeserializeOwned>(status: u16, body: &str) -> Result<T, HookApiError> {
    if status != 200 {
        return Err(http_error(status, body));
    }
    let answer: RawAnswer<T> = serde_json::from_str(body).map_err(|_| HookApiError::Malformed)?;
    match (answer.data, answer.errors) {
        (_, Some(errors)) if !errors.is_null() => Err(graphql_errors(errors)),
        (Some(data), _) => Ok(data),
        (None, _) => Err(HookApiError::Malformed),
    }
}

fn refused(user_errors: Vec<UserError>) -> Result<(), HookApiError> {
    if user_errors.is_empty() {
        Ok(())
    } else {
        Err(HookApiError::UserErrors(user_errors))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateData {
    webhook_subscription_create: Option<CreatePayload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatePayload {
    webhook_subscription: Option<CreatedNode>,
    #[serde(default)]
    user_errors: Vec<UserError>,
}

#[derive(Deserialize)]
struct CreatedNode {
    id: String,
}

/// Parses the answer to [`ShopifyHooksApi::create_subscription`]: the new subscription's
/// GID.
pub fn parse_create_subscription(status: u16, body: &str) -> Result<String, HookApiError> {
    let payload = data::<CreateData>(status, body)?
        .webhook_subscription_create
        .ok_or(HookApiError::Malformed)?;
    refused(payload.user_errors)?;
    payload
        .webhook_subscription
        .map(|node| node.id)
        .ok_or(HookApiError::Malformed)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListData {
    webhook_subscriptions: Option<ListConnection>,
}

#[derive(Deserialize)]
struct ListConnection {
    nodes: Option<Vec<Subscription>>,
}

/// Parses the answer to [`ShopifyHooksApi::list_subscriptions`].
pub fn parse_list_subscriptions(
    status: u16,
    body: &str,
) -> Result<Vec<Subscription>, HookApiError> {
    data::<ListData>(status, body)?
        .webhook_subscriptions
        .and_then(|c| c.nodes)
        .ok_or(HookApiError::Malformed)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteData {
    webhook_subscription_delete: Option<DeletePayload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeletePayload {
    deleted_webhook_subscription_id: Option<String>,
    #[serde(default)]
    user_errors: Vec<UserError>,
}

/// What a delete achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// Shopify deleted the subscription with this GID.
    Deleted(String),
    /// Shopify had no such subscription (a `userError` on `id`): it is gone already.
    AlreadyGone,
}

/// Parses the answer to [`ShopifyHooksApi::delete_subscription`]. A refusal naming the `id`
/// field means there is no such subscription, which is what a delete wants.
pub fn parse_delete_subscription(status: u16, body: &str) -> Result<Deleted, HookApiError> {
    let payload = data::<DeleteData>(status, body)?
        .webhook_subscription_delete
        .ok_or(HookApiError::Malformed)?;
    if let Some(id) = payload.deleted_webhook_subscription_id {
        return Ok(Deleted::Deleted(id));
    }
    let about_id = !payload.user_errors.is_empty()
        && payload
            .user_errors
            .iter()
            .all(|e| e.field.as_deref() == Some(&["id".to_owned()][..]));
    if about_id {
        return Ok(Deleted::AlreadyGone);
    }
    refused(payload.user_errors)?;
    Err(HookApiError::Malformed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CREATED: &str = include_str!("fixtures/shopify_create_subscription.json");
    const TAKEN: &str = include_str!("fixtures/shopify_create_subscription_taken.json");
    const LISTED: &str = include_str!("fixtures/shopify_list_subscriptions.json");
    const DELETED: &str = include_str!("fixtures/shopify_delete_subscription.json");
    const DELETE_UNKNOWN: &str = include_str!("fixtures/shopify_delete_subscription_unknown.json");
    const THROTTLED: &str = include_str!("fixtures/shopify_throttled.json");
    const UNAUTHORIZED: &str = include_str!("fixtures/shopify_error_401.json");
    const SCOPE_MISSING: &str = include_str!("fixtures/shopify_access_denied.json");

    const URL: &str =
        "http://127.0.0.1:8790/shopify/acme.myshopify.com/admin/api/2025-01/graphql.json";

    fn body(request: &HttpRequestSpec) -> serde_json::Value {
        serde_json::from_str(&request.body).unwrap()
    }

    #[test]
    fn callbacks_name_the_connection() {
        assert_eq!(
            callback_url("https://hooks.example", "c1"),
            "https://hooks.example/webhook/shopify/c1"
        );
    }

    #[test]
    fn builds_the_graphql_url() {
        assert_eq!(
            graphql_url("https://{shop}", "2025-01", "acme.myshopify.com"),
            "https://acme.myshopify.com/admin/api/2025-01/graphql.json"
        );
        assert_eq!(
            graphql_url(
                "http://127.0.0.1:8790/shopify/{shop}",
                "2025-01",
                "acme.myshopify.com"
            ),
            URL
        );
    }

    #[test]
    fn requests_post_graphql_with_the_access_token() {
        let token = Secret::new("shpat_1");
        let api = ShopifyHooksApi::new(URL, &token);
        let create =
            api.create_subscription("PRODUCTS_UPDATE", "https://h.example/webhook/shopify/c1");
        assert_eq!((create.method, create.url.as_str()), ("POST", URL));
        assert_eq!(create.header("x-shopify-access-token"), Some("shpat_1"));
        assert_eq!(create.header("content-type"), Some("application/json"));
        assert_eq!(
            body(&create)["variables"],
            json!({"topic": "PRODUCTS_UPDATE", "url": "https://h.example/webhook/shopify/c1"})
        );
        assert!(body(&create)["query"]
            .as_str()
            .unwrap()
            .contains("webhookSubscriptionCreate"));
        let list = api.list_subscriptions("https://h.example/webhook/shopify/c1");
        assert_eq!(
            body(&list)["variables"],
            json!({"url": "https://h.example/webhook/shopify/c1"})
        );
        assert!(body(&list)["query"]
            .as_str()
            .unwrap()
            .contains("webhookSubscriptions(first: 100"));
        let delete = api.delete_subscription("gid://shopify/WebhookSubscription/7");
        assert_eq!(
            body(&delete)["variables"],
            json!({"id": "gid://shopify/WebhookSubscription/7"})
        );
        assert!(!format!("{delete:?}").contains("shpat_1"));
    }

    #[test]
    fn parses_a_created_subscription_and_user_errors() {
        assert_eq!(
            parse_create_subscription(200, CREATED).unwrap(),
            "gid://shopify/WebhookSubscription/780000000000000001"
        );
        let taken = parse_create_subscription(200, TAKEN).unwrap_err();
        assert_eq!(
            taken,
            HookApiError::UserErrors(vec![UserError {
                field: Some(vec!["webhookSubscription".into(), "callbackUrl".into()]),
                message: "Address for this topic has already been taken".into(),
            }])
        );
        assert!(!taken.is_retryable());
        assert_eq!(
            parse_create_subscription(
                200,
                r#"{"data": {"webhookSubscriptionCreate": {"webhookSubscription": null, "userErrors": []}}}"#
            ),
            Err(HookApiError::Malformed)
        );
    }

    #[test]
    fn parses_listed_subscriptions() {
        let listed = parse_list_subscriptions(200, LISTED).unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(
            listed[1],
            Subscription {
                id: "gid://shopify/WebhookSubscription/780000000000000002".into(),
                topic: "PRODUCTS_UPDATE".into(),
            }
        );
        assert_eq!(
            parse_list_subscriptions(200, r#"{"data": {}}"#),
            Err(HookApiError::Malformed)
        );
        assert_eq!(
            parse_list_subscriptions(200, "not json"),
            Err(HookApiError::Malformed)
        );
    }

    #[test]
    fn parses_deletes() {
        assert_eq!(
            parse_delete_subscription(200, DELETED).unwrap(),
            Deleted::Deleted("gid://shopify/WebhookSubscription/780000000000000001".into())
        );
        assert_eq!(
            parse_delete_subscription(200, DELETE_UNKNOWN).unwrap(),
            Deleted::AlreadyGone
        );
    }

    #[test]
    fn classifies_throttling_and_http_errors() {
        let throttled = parse_create_subscription(200, THROTTLED).unwrap_err();
        assert_eq!(throttled, HookApiError::RateLimited { status: 200 });
        assert!(throttled.is_retryable());
        assert_eq!(
            parse_list_subscriptions(401, UNAUTHORIZED),
            Err(HookApiError::Unauthorized)
        );
        assert_eq!(
            parse_delete_subscription(
                429,
                r#"{"errors": "Exceeded 2 calls per second for api client."}"#
            ),
            Err(HookApiError::RateLimited { status: 429 })
        );
        assert_eq!(
            parse_create_subscription(502, "<html>Bad gateway</html>"),
            Err(HookApiError::Unavailable { status: 502 })
        );
        assert_eq!(
            parse_list_subscriptions(404, "{}"),
            Err(HookApiError::NotFound)
        );
        assert_eq!(
            parse_list_subscriptions(200, SCOPE_MISSING),
            Err(HookApiError::GraphQl(
                "Access denied for webhookSubscriptions field.".into()
            ))
        );
    }
}
