//! The Keap calls a propagation makes, as request builders and answer parsers: contacts
//! matched by email and created or updated (REST v2), products matched by SKU and created
//! when missing, and orders created for a contact (REST v1) — see Keap's REST v2 OpenAPI
//! (<https://github.com/infusionsoft/keap-sdk/blob/main/sdks/v2/swagger.yml>) and v1 reference
//! (<https://developer.infusionsoft.com/docs/rest/>). Failures are the sync's [`PageError`]s
//! (401 refresh, 429 with Keap's throttle headers, 5xx retry), so the same rules apply.

use serde_json::{json, Value};

use super::change::{CustomerSnapshot, LineItem, OrderSnapshot};
use super::shopify_writes::WriteError;
use crate::oauth::HttpRequestSpec;
use crate::sync::{keap_classify_error, keap_encode};
use crate::Secret;

/// Where the calls go, with whose token.
#[derive(Debug, Clone, Copy)]
pub struct KeapWriter<'a> {
    /// REST v2 base, e.g. `https://api.keap.com/crm/rest/v2`.
    pub v2_base: &'a str,
    /// REST v1 base, e.g. `https://api.infusionsoft.com/crm/rest/v1`.
    pub v1_base: &'a str,
    /// The connection's access token.
    pub token: &'a Secret,
}

/// Products listed per page.
pub const PRODUCTS_PAGE: u32 = 1000;

impl KeapWriter<'_> {
    fn request(&self, method: &'static str, url: String, body: Option<Value>) -> HttpRequestSpec {
        let mut headers = vec![
            (
                "Authorization".to_owned(),
                format!("Bearer {}", self.token.expose()),
            ),
            ("Accept".to_owned(), "application/json".to_owned()),
        ];
        if body.is_some() {
            headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
        }
        HttpRequestSpec {
            method,
            url,
            headers,
            body: body.map(|b| b.to_string()).unwrap_or_default(),
        }
    }

    /// `GET /v2/contacts?filter=email==…`: the contact with this email, if any.
    pub fn find_contact(&self, email: &str) -> HttpRequestSpec {
        self.request(
            "GET",
            format!(
                "{}/contacts?filter={}&page_size=1",
                self.v2_base.trim_end_matches('/'),
                keap_encode(&format!("email=={email}"))
            ),
            None,
        )
    }

    /// `POST /v2/contacts`.
    pub fn create_contact(&self, contact: &CustomerSnapshot) -> HttpRequestSpec {
        self.request(
            "POST",
            format!("{}/contacts", self.v2_base.trim_end_matches('/')),
            Some(contact_body(contact)),
        )
    }

    /// `PATCH /v2/contacts/{id}?update_mask=…`: the names and phone (the email matched).
    pub fn update_contact(&self, id: &str, contact: &CustomerSnapshot) -> HttpRequestSpec {
        let mut body = contact_body(contact);
        let mut mask = vec!["given_name", "family_name"];
        if let Some(object) = body.as_object_mut() {
            object.remove("email_addresses");
            if object.contains_key("phone_numbers") {
                mask.push("phone_numbers");
            }
        }
        self.request(
            "PATCH",
            format!(
                "{}/contacts/{}?update_mask={}",
                self.v2_base.trim_end_matches('/'),
                keap_encode(id),
                mask.join(",")
            ),
            Some(body),
        )
    }

    /// `GET /v1/products?limit=…&offset=…`.
    pub fn list_products(&self, offset: u32) -> HttpRequestSpec {
        self.request(
            "GET",
            format!(
                "{}/products?limit={PRODUCTS_PAGE}&offset={offset}",
                self.v1_base.trim_end_matches('/')
            ),
            None,
        )
    }

    /// `POST /v1/products` for a line's SKU.
    pub fn create_product(&self, sku: &str, line: &LineItem) -> HttpRequestSpec {
        let price: f64 = line.price.parse().unwrap_or(0.0);
        let name = if line.title.trim().is_empty() {
            sku
        } else {
            line.title.as_str()
        };
        self.request(
            "POST",
            format!("{}/products", self.v1_base.trim_end_matches('/')),
            Some(json!({
                "product_name": name,
                "product_price": price,
                "sku": sku,
                "active": true,
            })),
        )
    }

    /// `POST /v1/orders`: `order` for `contact_id`, one item per line with the Keap product
    /// of its SKU (`product_ids`, in line order).
    pub fn create_order(
        &self,
        contact_id: u64,
        order: &OrderSnapshot,
        product_ids: &[u64],
        order_date: &str,
    ) -> HttpRequestSpec {
        let items: Vec<Value> = order
            .line_items
            .iter()
            .zip(product_ids)
            .map(|(line, product_id)| {
                json!({
                    "product_id": product_id,
                    "quantity": line.quantity.max(1),
                    "price": line.price.parse::<f64>().unwrap_or(0.0),
                    "description": line.title,
                })
            })
            .collect();
        self.request(
            "POST",
            format!("{}/orders", self.v1_base.trim_end_matches('/')),
            Some(json!({
                "contact_id": contact_id,
                "order_date": order_date,
                "order_title": order_title(order),
                "order_type": "Online",
                "order_items": items,
            })),
        )
    }
}

/// The Keap title of a Shopify order: its name, so the CRM shows which order it is.
pub fn order_title(order: &OrderSnapshot) -> String {
    format!("Shopify order {}", order.name.trim())
}

/// The SKU a line is matched to a Keap product by: its own, else one made from its title.
pub fn line_sku(line: &LineItem) -> String {
    line.sku
        .clone()
        .unwrap_or_else(|| format!("shopify:{}", line.title.trim().to_lowercase()))
}

fn contact_body(contact: &CustomerSnapshot) -> Value {
    let mut body = json!({
        "given_name": contact.first_name,
        "family_name": contact.last_name,
        "email_addresses": contact.email.iter()
            .map(|email| json!({"email": email, "field": "EMAIL1"}))
            .collect::<Vec<_>>(),
    });
    if let (Some(phone), Some(object)) = (&contact.phone, body.as_object_mut()) {
        object.insert(
            "phone_numbers".to_owned(),
            json!([{ "number": phone, "field": "PHONE1" }]),
        );
    }
    body
}

fn ok_json(status: u16, headers: &[(String, String)], body: &str) -> Result<Value, WriteError> {
    if !(200..300).contains(&status) {
        return Err(WriteError::Transport(keap_classify_error(
            status, headers, body,
        )));
    }
    serde_json::from_str(body).map_err(|e| WriteError::Malformed(format!("not JSON: {e}")))
}

/// An id written as a number (v1) or a numeric string (v2).
fn id_of(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// The id of the contact found by [`KeapWriter::find_contact`], if any.
pub fn found_contact(
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<Option<u64>, WriteError> {
    let value = ok_json(status, headers, body)?;
    let contacts = value
        .get("contacts")
        .and_then(Value::as_array)
        .ok_or_else(|| WriteError::Malformed("no contacts list".into()))?;
    Ok(contacts.first().and_then(|c| c.get("id")).and_then(id_of))
}

/// The id of a created (or updated) contact, product or order.
pub fn written_id(
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<u64, WriteError> {
    let value = ok_json(status, headers, body)?;
    value
        .get("id")
        .and_then(id_of)
        .ok_or_else(|| WriteError::Malformed("no id in the answer".into()))
}

/// One page of products: `(sku, id)` pairs, and whether another page follows.
pub fn product_page(
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<(Vec<(String, u64)>, bool), WriteError> {
    let value = ok_json(status, headers, body)?;
    let products = value
        .get("products")
        .and_then(Value::as_array)
        .ok_or_else(|| WriteError::Malformed("no products list".into()))?;
    let pairs = products
        .iter()
        .filter_map(|p| {
            Some((
                p.get("sku").and_then(Value::as_str)?.to_owned(),
                p.get("id").and_then(id_of)?,
            ))
        })
        .collect();
    let full = u32::try_from(products.len()).unwrap_or(u32::MAX) >= PRODUCTS_PAGE;
    Ok((pairs, full))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::PageError;

    fn writer(token: &Secret) -> KeapWriter<'_> {
        KeapWriter {
            v2_base: "https://api.keap.com/crm/rest/v2/",
            v1_base: "https://api.infusionsoft.com/crm/rest/v1",
            token,
        }
    }

    fn ann() -> CustomerSnapshot {
        CustomerSnapshot {
            id: 5,
            email: Some("ann+shop@example.com".into()),
            first_name: "Ann".into(),
            last_name: "Lee".into(),
            phone: Some("+1 555 0100".into()),
        }
    }

    #[test]
    fn contacts_are_found_by_email_and_written_as_v2_documents() {
        let token = Secret::new("tok".to_owned());
        let find = writer(&token).find_contact("ann+shop@example.com");
        assert_eq!(
            find.url,
            "https://api.keap.com/crm/rest/v2/contacts?filter=email%3D%3Dann%2Bshop%40example.com&page_size=1"
        );
        assert_eq!(find.header("Authorization"), Some("Bearer tok"));
        let create = writer(&token).create_contact(&ann());
        let body: Value = serde_json::from_str(&create.body).expect("json");
        assert_eq!(body["email_addresses"][0]["field"], "EMAIL1");
        assert_eq!(body["phone_numbers"][0]["number"], "+1 555 0100");
        let update = writer(&token).update_contact("42", &ann());
        assert_eq!(update.method, "PATCH");
        assert!(update
            .url
            .ends_with("/contacts/42?update_mask=given_name,family_name,phone_numbers"));
        let body: Value = serde_json::from_str(&update.body).expect("json");
        assert!(
            body.get("email_addresses").is_none(),
            "the matched email stays"
        );
        assert_eq!(
            found_contact(
                200,
                &[],
                r#"{"contacts":[{"id":"42"}],"next_page_token":""}"#
            ),
            Ok(Some(42))
        );
        assert_eq!(found_contact(200, &[], r#"{"contacts":[]}"#), Ok(None));
        assert_eq!(
            written_id(401, &[], "{}"),
            Err(WriteError::Transport(PageError::Unauthorized))
        );
        assert!(matches!(
            written_id(400, &[], r#"{"message":"Invalid email"}"#),
            Err(WriteError::Transport(PageError::Rejected {
                status: 400,
                ..
            }))
        ));
    }

    #[test]
    fn orders_carry_one_item_per_line_with_its_product() {
        let token = Secret::new("tok".to_owned());
        let order = OrderSnapshot {
            id: 1001,
            name: "#1001".into(),
            email: Some("ann@example.com".into()),
            created_at: Some("2026-11-20T10:00:00-05:00".into()),
            currency: "USD".into(),
            total_price: "39.98".into(),
            customer: None,
            line_items: vec![
                LineItem {
                    sku: Some("LAMP-1".into()),
                    title: "Lamp".into(),
                    quantity: 2,
                    price: "19.99".into(),
                },
                LineItem {
                    sku: None,
                    title: "Gift Wrap".into(),
                    quantity: 1,
                    price: "0".into(),
                },
            ],
        };
        assert_eq!(line_sku(&order.line_items[1]), "shopify:gift wrap");
        let spec = writer(&token).create_order(7, &order, &[70, 71], "2026-11-20T15:00:00Z");
        assert_eq!(spec.url, "https://api.infusionsoft.com/crm/rest/v1/orders");
        let body: Value = serde_json::from_str(&spec.body).expect("json");
        assert_eq!(body["contact_id"], 7);
        assert_eq!(body["order_title"], "Shopify order #1001");
        assert_eq!(body["order_items"][0]["product_id"], 70);
        assert_eq!(body["order_items"][0]["quantity"], 2);
        assert_eq!(body["order_items"][1]["product_id"], 71);
        let (page, more) = product_page(
            200,
            &[],
            r#"{"products":[{"id":70,"sku":"LAMP-1"},{"id":3,"product_name":"no sku"}],"count":2}"#,
        )
        .expect("page");
        assert_eq!(page, vec![("LAMP-1".to_owned(), 70)]);
        assert!(!more);
        assert_eq!(written_id(201, &[], r#"{"id": 88}"#), Ok(88));
    }
}
