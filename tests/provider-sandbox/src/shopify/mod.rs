//! Shopify: the OAuth install flow (authorization code grant, offline tokens), the GraphQL
//! Admin API ([`admin`], [`graphql`]) and webhooks ([`webhooks`]).
//!
//! Shopify serves every app-facing URL from the shop's own host (`https://{shop}/admin/...`).
//! The sandbox stands in for all shops at once under a path prefix: a Worker replaces
//! `https://{shop}` with `http://127.0.0.1:<port>/shopify/{shop}`, so
//! `https://acme.myshopify.com/admin/oauth/authorize` becomes
//! `<base>/shopify/acme.myshopify.com/admin/oauth/authorize`.

pub mod admin;
pub mod bulk;
pub mod cost;
pub mod data;
pub mod graphql;
pub mod oauth;
pub mod search;
pub mod webhooks;
pub mod writes;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, RwLock};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::config::SandboxConfig;
use crate::endpoint::Endpoint;
use crate::middleware::tagged;
use crate::state::{read, write, SharedState};

use self::bulk::BulkStore;
use self::cost::Buckets;
use self::data::ShopData;
use self::graphql::{build_schema, ShopifySchema};
use self::oauth::ShopifyOAuthStore;
use self::webhooks::WebhookStore;

/// Suffix of every shop domain.
pub const SHOP_SUFFIX: &str = ".myshopify.com";
/// DNS limit on one label: a longer shop name cannot be a real host.
const MAX_LABEL_LEN: usize = 63;

/// Shopify's stores.
pub struct ShopifyState {
    /// Authorization codes and issued access tokens.
    pub oauth: Mutex<ShopifyOAuthStore>,
    /// The seeded catalogue: every shop's data until something is written to that shop
    /// alone ([`ShopifyState::write_shop`]); the controls without a `shop` edit it.
    pub data: RwLock<ShopData>,
    /// Shops with their own data (copied from `data` at their first write of their own).
    pub shops: RwLock<HashMap<String, ShopData>>,
    /// Per-shop GraphQL cost buckets.
    pub buckets: Mutex<Buckets>,
    /// The GraphQL Admin API schema.
    pub schema: ShopifySchema,
    /// Webhook subscriptions of every shop.
    pub webhooks: Mutex<WebhookStore>,
    /// Bulk operations of every shop.
    pub bulk: Mutex<BulkStore>,
}

impl ShopifyState {
    /// Generates the configured products, orders and customers; no tokens yet.
    pub fn new(config: &SandboxConfig) -> Self {
        Self {
            oauth: Mutex::new(ShopifyOAuthStore::default()),
            data: RwLock::new(ShopData::generate(
                config.seed,
                config.shopify_products,
                config.shopify_orders,
                config.shopify_customers,
            )),
            buckets: Mutex::new(Buckets::default()),
            shops: RwLock::new(HashMap::new()),
            schema: build_schema(),
            webhooks: Mutex::new(WebhookStore::default()),
            bulk: Mutex::new(BulkStore::default()),
        }
    }
}

impl ShopifyState {
    /// Reads `shop`'s data: its own once it has some, else the seeded catalogue (also for
    /// `None`).
    pub fn read_shop<T>(&self, shop: Option<&str>, f: impl FnOnce(&ShopData) -> T) -> T {
        if let Some(shop) = shop {
            let shops = read(&self.shops);
            if let Some(data) = shops.get(shop) {
                return f(data);
            }
        }
        f(&read(&self.data))
    }

    /// Changes `shop`'s data (copying the catalogue for it first, so other shops do not
    /// see the change); `None` changes the catalogue every shop without its own data sees.
    pub fn write_shop<T>(&self, shop: Option<&str>, f: impl FnOnce(&mut ShopData) -> T) -> T {
        match shop {
            None => f(&mut write(&self.data)),
            Some(shop) => {
                let mut shops = write(&self.shops);
                let data = shops
                    .entry(shop.to_owned())
                    .or_insert_with(|| read(&self.data).clone());
                f(data)
            }
        }
    }
}

impl fmt::Debug for ShopifyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShopifyState")
            .field("oauth", &self.oauth)
            .field("buckets", &self.buckets)
            .field("webhooks", &self.webhooks)
            .finish_non_exhaustive()
    }
}

/// Shopify's public routes, under `/shopify/{shop}` (the stand-in for `https://{shop}`).
pub fn router(state: &SharedState) -> Router<SharedState> {
    Router::new()
        .route(
            "/shopify/{shop}/admin/oauth/authorize",
            tagged(
                state,
                Endpoint::ShopifyOAuthAuthorize,
                get(oauth::authorize),
            ),
        )
        .route(
            "/shopify/{shop}/admin/oauth/access_token",
            tagged(
                state,
                Endpoint::ShopifyOAuthAccessToken,
                post(oauth::access_token),
            ),
        )
        .route(
            "/shopify/{shop}/admin/api/{version}/graphql.json",
            tagged(state, Endpoint::ShopifyGraphql, post(admin::graphql)),
        )
        .route(
            "/__sandbox/shopify/bulk/{file}",
            tagged(state, Endpoint::ShopifyBulkResult, get(bulk::download)),
        )
}

/// The canonical (lowercase) shop domain if `shop` is `<name>.myshopify.com` with
/// `name` matching `[a-zA-Z0-9][a-zA-Z0-9-]*` (at most 63 characters), as Shopify requires
/// apps to check before using a shop as a host; otherwise `None`.
pub fn normalize_shop(shop: &str) -> Option<String> {
    let shop = shop.to_ascii_lowercase();
    let name = shop.strip_suffix(SHOP_SUFFIX)?;
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let valid = first_ok
        && name.len() <= MAX_LABEL_LEN
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-');
    valid.then_some(shop)
}

/// The `{"errors": "..."}` body Shopify's Admin API answers errors with; a 429 carries
/// Shopify's REST throttle message.
pub fn error_body(status: StatusCode, message: &str) -> Value {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return json!({
            "errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."
        });
    }
    json!({ "errors": message })
}

/// A Shopify-shaped error response (`{"errors": "..."}`).
pub fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(error_body(status, message))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shop_domains() {
        for (input, want) in [
            ("acme.myshopify.com", "acme.myshopify.com"),
            ("Acme-2.myshopify.com", "acme-2.myshopify.com"),
            ("0shop.MYSHOPIFY.com", "0shop.myshopify.com"),
        ] {
            assert_eq!(normalize_shop(input).as_deref(), Some(want), "{input}");
        }
        let long = format!("{}.myshopify.com", "a".repeat(64));
        for bad in [
            "",
            ".myshopify.com",
            "-acme.myshopify.com",
            "acme.myshopify.com.evil.com",
            "acme.evil.myshopify.com",
            "acme_shop.myshopify.com",
            "acme.myshopify.com:8080",
            "acme.shopify.com",
            "evil.com",
            "acmé.myshopify.com",
            long.as_str(),
        ] {
            assert_eq!(normalize_shop(bad), None, "{bad}");
        }
    }
}
