//! Shopify OAuth (authorization code grant, offline tokens): shop validation, install
//! redirect, callback HMAC, code exchange and its parser.
//!
//! Follows shopify.dev "Implement authorization code grant manually": validate the shop,
//! verify the callback `hmac`, then POST the code to `https://{shop}/admin/oauth/access_token`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{
    expires_in_secs, non_empty, parse_raw, with_query, HttpRequestSpec, TokenEndpointError,
    TokenGrant,
};
use crate::Secret;

/// Placeholder for the shop domain in [`ShopifyOAuthConfig::admin_base_url`].
pub const SHOP_PLACEHOLDER: &str = "{shop}";
/// Suffix every shop domain has.
const SHOP_SUFFIX: &str = ".myshopify.com";
/// DNS limit on one label; a longer shop name cannot be a real host.
const MAX_LABEL_LEN: usize = 63;

/// Whether `shop` is a shop domain (`^[a-zA-Z0-9][a-zA-Z0-9-]*\.myshopify\.com$`). Shopify
/// requires this check before redirecting or exchanging a code, because the shop becomes the
/// host of both URLs and an unchecked one sends the client secret anywhere.
pub fn is_valid_shop_domain(shop: &str) -> bool {
    let Some(name) = shop.strip_suffix(SHOP_SUFFIX) else {
        return false;
    };
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    first_ok && name.len() <= MAX_LABEL_LEN && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Canonical form of what a user typed as their shop (`Acme`, `acme.myshopify.com`,
/// `https://acme.myshopify.com/`): the lowercase shop domain, or `None` if it is not one.
pub fn normalize_shop_domain(input: &str) -> Option<String> {
    let mut shop = input.trim().to_ascii_lowercase();
    for scheme in ["https://", "http://"] {
        if let Some(rest) = shop.strip_prefix(scheme) {
            shop = rest.to_owned();
        }
    }
    let shop = shop.trim_end_matches('/');
    let shop = if shop.contains('.') {
        shop.to_owned()
    } else {
        format!("{shop}{SHOP_SUFFIX}")
    };
    is_valid_shop_domain(&shop).then_some(shop)
}

/// The Shopify app of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopifyOAuthConfig {
    /// The app's client id (API key).
    pub client_id: String,
    /// The app's client secret (API secret key); also signs callbacks and webhooks.
    pub client_secret: Secret,
    /// Comma-separated access scopes, e.g. `read_products,read_orders`.
    pub scopes: String,
    /// Where Shopify sends the browser back; must be listed in the app's allowed redirects.
    pub redirect_uri: String,
    /// Replaces `https://{shop}` as the base of shop URLs when set (the local sandbox, e.g.
    /// `http://127.0.0.1:8790/shopify/{shop}`); `{shop}` is replaced by the shop domain.
    pub admin_base_url: Option<String>,
}

impl ShopifyOAuthConfig {
    /// The base of the shop's URLs, without a trailing slash: `https://{shop}`, or the
    /// configured `admin_base_url` with `{shop}` substituted. `shop` must be valid
    /// ([`is_valid_shop_domain`]).
    pub fn admin_base(&self, shop: &str) -> String {
        match &self.admin_base_url {
            Some(template) => template
                .replace(SHOP_PLACEHOLDER, shop)
                .trim_end_matches('/')
                .to_owned(),
            None => format!("https://{shop}"),
        }
    }

    /// The URL to send the browser to: the shop's grant screen for this app, carrying
    /// `state`. No `grant_options[]`, so Shopify issues an offline token. The caller has
    /// checked `shop` with [`is_valid_shop_domain`].
    pub fn install_redirect(&self, shop: &str, state: &str) -> String {
        with_query(
            &format!("{}/admin/oauth/authorize", self.admin_base(shop)),
            &[
                ("client_id", &self.client_id),
                ("scope", &self.scopes),
                ("redirect_uri", &self.redirect_uri),
                ("state", state),
            ],
        )
    }

    /// The request exchanging the callback's `code` for an access token. The caller has
    /// checked `shop` with [`is_valid_shop_domain`] and the callback with
    /// [`verify_callback_hmac`].
    pub fn code_exchange_request(&self, shop: &str, code: &str) -> HttpRequestSpec {
        let body = serde_json::json!({
            "client_id": self.client_id,
            "client_secret": self.client_secret.expose(),
            "code": code,
        });
        HttpRequestSpec {
            method: "POST",
            url: format!("{}/admin/oauth/access_token", self.admin_base(shop)),
            headers: vec![
                ("Content-Type".to_owned(), "application/json".to_owned()),
                ("Accept".to_owned(), "application/json".to_owned()),
            ],
            body: body.to_string(),
        }
    }
}

/// Parses the access token answer. An offline token is `{access_token, scope}` with no
/// expiry (`expires_in_secs = 0`, meaning never) and no refresh token; `expires_in` and
/// `refresh_token` are honoured if Shopify sends them (expiring offline tokens).
pub fn parse_access_token_response(
    status: u16,
    body: &str,
) -> Result<TokenGrant, TokenEndpointError> {
    let raw = parse_raw(status, body)?;
    let access_token = non_empty(raw.access_token).ok_or(TokenEndpointError::Malformed)?;
    let expires_in_secs = expires_in_secs(raw.expires_in.as_ref())
        .filter(|secs| *secs > 0)
        .unwrap_or(0);
    Ok(TokenGrant {
        access_token,
        refresh_token: non_empty(raw.refresh_token),
        expires_in_secs,
        scope: raw.scope,
    })
}

/// Verifies the `hmac` parameter Shopify adds to the OAuth callback (and to app URLs).
///
/// shopify.dev "Verify a request": drop `hmac` (and the legacy `signature`), sort the rest
/// by key, join them as `key=value` with `&`, HMAC-SHA256 with the client secret, compare
/// the hex digest in constant time. Pairs are re-encoded as `application/x-www-form-urlencoded`,
/// as Shopify's own library does (`URLSearchParams`), so plain values sign byte for byte.
/// `query_pairs` are decoded pairs (see [`super::parse_query`]). An empty secret, a missing,
/// repeated or non-hex `hmac` all fail.
pub fn verify_callback_hmac(query_pairs: &[(String, String)], client_secret: &Secret) -> bool {
    if client_secret.is_empty() {
        return false;
    }
    let mut hmacs = query_pairs.iter().filter(|(key, _)| key == "hmac");
    let (Some((_, presented)), None) = (hmacs.next(), hmacs.next()) else {
        return false;
    };
    let Ok(presented) = hex::decode(presented.trim()) else {
        return false;
    };
    let mut signed: Vec<(&str, &str)> = query_pairs
        .iter()
        .filter(|(key, _)| key != "hmac" && key != "signature")
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    // Stable sort: repeated keys keep their order, as in the query.
    signed.sort_by(|a, b| a.0.cmp(b.0));
    let message = super::form_encode(&signed);
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(client_secret.expose().as_bytes()) else {
        return false;
    };
    mac.update(message.as_bytes());
    mac.verify_slice(&presented).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::parse_query;

    fn config() -> ShopifyOAuthConfig {
        ShopifyOAuthConfig {
            client_id: "app-key".to_owned(),
            client_secret: Secret::new("hush"),
            scopes: "read_products,read_orders".to_owned(),
            redirect_uri: "https://sync.example.com/oauth/shopify/callback".to_owned(),
            admin_base_url: None,
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn sign(pairs: &[(String, String)], secret: &str) -> String {
        let mut sorted: Vec<_> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let message = crate::oauth::form_encode(&sorted);
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(message.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn accepts_only_myshopify_domains() {
        for good in [
            "acme.myshopify.com",
            "Acme-2.myshopify.com",
            "0shop.myshopify.com",
        ] {
            assert!(is_valid_shop_domain(good), "{good}");
        }
        for bad in [
            "",
            ".myshopify.com",
            "-acme.myshopify.com",
            "acme.myshopify.com.evil.com",
            "evil.com/acme.myshopify.com",
            "evil.com#.myshopify.com",
            "acme.evil.myshopify.com",
            "acme_shop.myshopify.com",
            "acme.myshopify.com:8080",
            "https://acme.myshopify.com",
            "acme.MYSHOPIFY.com",
            "acme.shopify.com",
            "acmé.myshopify.com",
            &format!("{}.myshopify.com", "a".repeat(64)),
        ] {
            assert!(!is_valid_shop_domain(bad), "{bad}");
        }
    }

    #[test]
    fn normalizes_what_users_type() {
        for input in [
            "acme",
            "ACME",
            " acme.myshopify.com ",
            "https://Acme.myshopify.com/",
        ] {
            assert_eq!(
                normalize_shop_domain(input).as_deref(),
                Some("acme.myshopify.com"),
                "{input}"
            );
        }
        for input in [
            "",
            "evil.com",
            "ac me",
            "https://evil.com/acme.myshopify.com",
        ] {
            assert_eq!(normalize_shop_domain(input), None, "{input}");
        }
    }

    #[test]
    fn install_redirect_targets_the_shop() {
        let url = config().install_redirect("acme.myshopify.com", "st4te");
        let (base, query) = url.split_once('?').expect("query");
        assert_eq!(base, "https://acme.myshopify.com/admin/oauth/authorize");
        assert_eq!(
            parse_query(query),
            pairs(&[
                ("client_id", "app-key"),
                ("scope", "read_products,read_orders"),
                (
                    "redirect_uri",
                    "https://sync.example.com/oauth/shopify/callback"
                ),
                ("state", "st4te"),
            ])
        );
    }

    #[test]
    fn sandbox_base_replaces_the_shop_host() {
        let config = ShopifyOAuthConfig {
            admin_base_url: Some("http://127.0.0.1:8790/shopify/{shop}/".to_owned()),
            ..config()
        };
        assert_eq!(
            config.admin_base("acme.myshopify.com"),
            "http://127.0.0.1:8790/shopify/acme.myshopify.com"
        );
        assert!(config
            .install_redirect("acme.myshopify.com", "s")
            .starts_with(
                "http://127.0.0.1:8790/shopify/acme.myshopify.com/admin/oauth/authorize?"
            ));
        assert_eq!(
            config.code_exchange_request("acme.myshopify.com", "c").url,
            "http://127.0.0.1:8790/shopify/acme.myshopify.com/admin/oauth/access_token"
        );
    }

    #[test]
    fn code_exchange_posts_json() {
        let spec = config().code_exchange_request("acme.myshopify.com", "0907a61c");
        assert_eq!(spec.method, "POST");
        assert_eq!(
            spec.url,
            "https://acme.myshopify.com/admin/oauth/access_token"
        );
        assert_eq!(spec.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&spec.body).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"client_id": "app-key", "client_secret": "hush", "code": "0907a61c"})
        );
        assert!(!format!("{spec:?}").contains("hush"));
    }

    #[test]
    fn parses_an_offline_token() {
        // shopify.dev, "Get an access token": offline access token response.
        let body = r#"{"access_token":"f85632530bf277ec9ac6f649fc327f17","scope":"write_orders,read_customers"}"#;
        let grant = parse_access_token_response(200, body).expect("grant");
        assert_eq!(
            grant.access_token.expose(),
            "f85632530bf277ec9ac6f649fc327f17"
        );
        assert_eq!(grant.expires_in_secs, 0);
        assert_eq!(grant.refresh_token, None);
        assert_eq!(grant.scope.as_deref(), Some("write_orders,read_customers"));
    }

    #[test]
    fn parses_an_expiring_token_and_errors() {
        let body =
            r#"{"access_token":"a","expires_in":3600,"refresh_token":"r","scope":"read_products"}"#;
        let grant = parse_access_token_response(200, body).expect("grant");
        assert_eq!(grant.expires_in_secs, 3600);
        assert!(grant.refresh_token.is_some());
        assert_eq!(
            parse_access_token_response(200, r#"{"scope":"x"}"#),
            Err(TokenEndpointError::Malformed)
        );
        assert!(matches!(
            parse_access_token_response(
                400,
                r#"{"error":"invalid_request","error_description":"The authorization code was not found or was already used"}"#
            ),
            Err(TokenEndpointError::Rejected { status: 400, .. })
        ));
        assert_eq!(
            parse_access_token_response(503, ""),
            Err(TokenEndpointError::Transient { status: 503 })
        );
    }

    #[test]
    fn verifies_shopifys_documented_example() {
        // shopify.dev's OAuth verification example (secret "hush"), reproduced in Shopify's
        // client libraries' tests; it carries the legacy `signature` parameter too.
        let query = "code=0907a61c0c8d55e99db179b68161bc00\
            &hmac=4712bf92ffc2917d15a2f5a273e39f0116667419aa4b6ac0b3baaf26fa3c4d20\
            &shop=some-shop.myshopify.com&signature=11813d1e7bbf4629edcda0628a3f7a20\
            &timestamp=1337178173";
        let pairs = parse_query(query);
        assert!(verify_callback_hmac(&pairs, &Secret::new("hush")));
        assert!(!verify_callback_hmac(&pairs, &Secret::new("hush2")));
        assert!(!verify_callback_hmac(&pairs, &Secret::new("")));

        let mut upper = pairs.clone();
        for (key, value) in &mut upper {
            if key == "hmac" {
                *value = value.to_ascii_uppercase();
            }
        }
        assert!(verify_callback_hmac(&upper, &Secret::new("hush")));
    }

    #[test]
    fn rejects_tampered_missing_and_repeated_hmacs() {
        let secret = Secret::new("shpss_test_secret");
        let unsigned = pairs(&[
            ("shop", "acme.myshopify.com"),
            ("code", "abc123"),
            ("state", "Zm9v_YmFy-state"),
            ("timestamp", "1767225600"),
            ("host", "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvYWNtZQ=="),
        ]);
        let hmac = sign(&unsigned, secret.expose());
        let mut signed = unsigned.clone();
        signed.push(("hmac".to_owned(), hmac.clone()));
        assert!(verify_callback_hmac(&signed, &secret));

        // Order of the received pairs does not matter.
        let mut reversed = signed.clone();
        reversed.reverse();
        assert!(verify_callback_hmac(&reversed, &secret));

        let mut tampered = signed.clone();
        tampered[0].1 = "evil.myshopify.com".to_owned();
        assert!(!verify_callback_hmac(&tampered, &secret));

        let mut added = signed.clone();
        added.push(("extra".to_owned(), "1".to_owned()));
        assert!(!verify_callback_hmac(&added, &secret));

        assert!(!verify_callback_hmac(&unsigned, &secret));

        let mut repeated = signed.clone();
        repeated.push(("hmac".to_owned(), hmac.clone()));
        assert!(!verify_callback_hmac(&repeated, &secret));

        let mut not_hex = unsigned.clone();
        not_hex.push(("hmac".to_owned(), "zz".repeat(32)));
        assert!(!verify_callback_hmac(&not_hex, &secret));

        let mut truncated = unsigned;
        truncated.push(("hmac".to_owned(), hmac[..62].to_owned()));
        assert!(!verify_callback_hmac(&truncated, &secret));
    }
}
