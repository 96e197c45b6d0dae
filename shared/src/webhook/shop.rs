//! Which shop a Shopify delivery belongs to. All shops of one app share the app secret
//! that signs deliveries, and the HMAC covers the body only (shopify.dev/docs/apps/build/
//! webhooks/subscribe/https, "Verify the webhook"), so a genuine delivery of one shop can be
//! replayed at another shop's route. A delivery is therefore attributed by its
//! `X-Shopify-Shop-Domain` header, which is required, must name a shop, must agree with any
//! shop the body itself names (`shop_domain` in the privacy topics, `myshopify_domain` in
//! `app/uninstalled`), and must be the shop of the connection whose route it was posted to.

use serde_json::Value;

use crate::oauth::shopify::normalize_shop_domain;

/// Why a Shopify delivery cannot be attributed to the connection it claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShopError {
    /// `X-Shopify-Shop-Domain` is absent or blank.
    #[error("X-Shopify-Shop-Domain is missing")]
    Missing,
    /// The header does not name a `*.myshopify.com` shop.
    #[error("X-Shopify-Shop-Domain is not a shop domain")]
    Malformed,
    /// The body names another shop than the header.
    #[error("the payload belongs to another shop than X-Shopify-Shop-Domain")]
    BodyMismatch,
}

/// The shop a (verified) delivery belongs to: the lowercase shop domain of
/// `X-Shopify-Shop-Domain`, checked against the shop the body names, if any.
pub fn delivery_shop(header: Option<&str>, body: &[u8]) -> Result<String, ShopError> {
    let header = header.map(str::trim).filter(|h| !h.is_empty());
    let header = header.ok_or(ShopError::Missing)?;
    let shop = normalize_shop_domain(header)
        .filter(|s| s.eq_ignore_ascii_case(header))
        .ok_or(ShopError::Malformed)?;
    let payload: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    for field in ["shop_domain", "myshopify_domain"] {
        if let Some(named) = payload.get(field).and_then(Value::as_str) {
            if !named.trim().eq_ignore_ascii_case(&shop) {
                return Err(ShopError::BodyMismatch);
            }
        }
    }
    Ok(shop)
}

/// Whether a delivery of `shop`, posted to the route of `route_connection` (or to the
/// shop-addressed route when `None`), belongs to the connection `connection_id` of shop
/// `connection_shop`: the shops must be equal, and on a connection's route, so must the ids.
pub fn delivery_belongs_to(
    shop: &str,
    route_connection: Option<&str>,
    connection_id: &str,
    connection_shop: &str,
) -> bool {
    connection_shop.eq_ignore_ascii_case(shop)
        && route_connection.is_none_or(|id| id == connection_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_required_and_must_name_a_shop() {
        assert_eq!(delivery_shop(None, b"{}"), Err(ShopError::Missing));
        assert_eq!(delivery_shop(Some("  "), b"{}"), Err(ShopError::Missing));
        for bad in [
            "evil.example.com",
            "acme",
            "https://acme.myshopify.com/",
            "a b.myshopify.com",
        ] {
            assert_eq!(
                delivery_shop(Some(bad), b"{}"),
                Err(ShopError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            delivery_shop(Some("Acme.MyShopify.com"), br#"{"id":1}"#),
            Ok("acme.myshopify.com".to_owned())
        );
    }

    #[test]
    fn a_body_that_names_its_shop_must_agree_with_the_header() {
        let redact = br#"{"shop_id":1,"shop_domain":"a.myshopify.com","customer":{"id":2}}"#;
        assert_eq!(
            delivery_shop(Some("a.myshopify.com"), redact),
            Ok("a.myshopify.com".into())
        );
        assert_eq!(
            delivery_shop(Some("b.myshopify.com"), redact),
            Err(ShopError::BodyMismatch)
        );
        let uninstalled = br#"{"id":1,"myshopify_domain":"a.myshopify.com"}"#;
        assert_eq!(
            delivery_shop(Some("b.myshopify.com"), uninstalled),
            Err(ShopError::BodyMismatch)
        );
    }

    #[test]
    fn a_delivery_belongs_only_to_its_own_shops_connection() {
        assert!(delivery_belongs_to(
            "a.myshopify.com",
            Some("shopify_a"),
            "shopify_a",
            "a.myshopify.com"
        ));
        assert!(delivery_belongs_to(
            "a.myshopify.com",
            None,
            "shopify_a",
            "a.myshopify.com"
        ));
        // A's delivery on B's route, whatever the header says.
        assert!(!delivery_belongs_to(
            "a.myshopify.com",
            Some("shopify_b"),
            "shopify_b",
            "b.myshopify.com"
        ));
        assert!(!delivery_belongs_to(
            "a.myshopify.com",
            Some("shopify_b"),
            "shopify_a",
            "a.myshopify.com"
        ));
        assert!(!delivery_belongs_to(
            "a.myshopify.com",
            None,
            "shopify_b",
            "b.myshopify.com"
        ));
    }
}
