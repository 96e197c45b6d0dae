//! Outgoing HTTP: how the sandbox calls receivers, for Keap's REST Hook handshakes and
//! events ([`crate::keap::hooks`]) and Shopify's webhooks ([`crate::shopify::webhooks`]).
//!
//! One `reqwest` client (plain http, no TLS: receivers are local), with the providers'
//! deadlines per request: Keap counts no answer within 30 s as a failure
//! (<https://developer.infusionsoft.com/rest-hook-documentation>), Shopify 5 s
//! (<https://shopify.dev/docs/apps/build/webhooks>). A receiver that cannot be reached, or does
//! not answer in time, is reported with status 0.

use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::Rng;
use reqwest::header::HeaderMap;
use sha2::{Digest, Sha256};

/// Keap: a delivery not answered within 30 s failed (see the module docs).
pub const KEAP_TIMEOUT: Duration = Duration::from_secs(30);
/// Shopify: the receiver must answer within 5 s (see the module docs).
pub const SHOPIFY_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed to connect (Shopify allows 1 s; local receivers need far less).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The client every delivery goes through (connections are pooled).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        // Receivers are local; a proxy from the environment would only get in the way.
        .no_proxy()
        .build()
        .unwrap_or_default()
}

/// What a receiver answered.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// HTTP status, or 0 when the receiver could not be reached or did not answer in time.
    pub status: u16,
    /// Response headers (empty when unreachable).
    pub headers: HeaderMap,
    /// Why there is no status, when there is none.
    pub error: Option<String>,
}

impl Answer {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// POSTs `body` to `url` with `headers`, waiting at most `timeout` for the answer (its body
/// is read and dropped, so the connection can be reused).
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Answer {
    let mut request = client.post(url).timeout(timeout).body(body);
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            // The body does not matter; reading it frees the connection for the next one.
            let _ = response.bytes().await;
            Answer {
                status,
                headers,
                error: None,
            }
        }
        Err(e) => Answer {
            status: 0,
            headers: HeaderMap::new(),
            error: Some(describe(&e)),
        },
    }
}

fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else if error.is_builder() {
        "invalid request"
    } else {
        "request failed"
    };
    let mut text = format!("{kind}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text
}

/// HMAC-SHA256 of `message` keyed with `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this never fails.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut rng = rand::thread_rng();
    let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
    hex::encode(bytes)
}

/// A random (version 4) UUID, lowercase: `xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`.
pub fn uuid_v4() -> String {
    let mut bytes: [u8; 16] = rand::thread_rng().gen();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4() {
        let a = uuid_v4();
        let b = uuid_v4();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(parts[3].starts_with(['8', '9', 'a', 'b']));
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
