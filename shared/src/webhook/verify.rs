//! Webhook authentication: pure verifiers over the RAW request body, with every comparison
//! in constant time, and the matching signers (for tests and the dev-only "generate"
//! route). The schemes followed are the providers' own:
//! - Shopify: <https://shopify.dev/docs/apps/build/webhooks>
//! - Keap REST Hooks (no signature documented):
//!   <https://developer.infusionsoft.com/rest-hook-documentation>
//! - Supabase Database Webhooks (unsigned): <https://supabase.com/docs/guides/database/webhooks>
//! - GitHub: <https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries>
//! - GitLab: <https://docs.gitlab.com/user/project/integrations/webhooks/>
//! - Bitbucket Cloud: <https://support.atlassian.com/bitbucket-cloud/docs/event-payloads/>
//! - Standard Webhooks:
//!   <https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>
//!
//! A configured secret that is empty never matches, so an unset secret locks the route
//! rather than opening it (the same rule as [`crate::auth`]).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use crate::auth::secrets_match;
use crate::{Secret, Timestamp};

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag in bytes.
const TAG_LEN: usize = 32;

/// Standard Webhooks: how far `webhook-timestamp` may be from `now`, either way (the
/// reference libraries use 5 minutes).
pub const STANDARD_WEBHOOKS_TOLERANCE_SECS: i64 = 300;

/// Prefix of Standard Webhooks secrets (`whsec_<base64 key>`).
const STANDARD_SECRET_PREFIX: &str = "whsec_";

/// Why a delivery was not authenticated. Logged; the client only sees 401. The messages
/// never carry the secret or the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signature (or token) header is absent or blank.
    #[error("webhook signature header is missing")]
    Missing,
    /// The header is present but not in the provider's format (bad prefix, hex or base64).
    #[error("webhook signature header is malformed")]
    Malformed,
    /// Well formed, but no configured secret produces it (or no usable secret is set).
    #[error("webhook signature does not match")]
    Mismatch,
    /// Standard Webhooks: the signed timestamp is further from now than the tolerance.
    #[error("webhook timestamp is outside the tolerance")]
    Expired,
}

/// HMAC-SHA256 of the concatenated `parts` under `key`.
fn mac_of(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC accepts keys of any length (long keys are hashed), so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// The tag bytes of [`mac_of`].
fn tag_of(key: &[u8], parts: &[&[u8]]) -> [u8; TAG_LEN] {
    mac_of(key, parts).finalize().into_bytes().into()
}

/// The header's value, trimmed; blank counts as absent.
fn present(header: Option<&str>) -> Result<&str, VerifyError> {
    match header.map(str::trim) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(VerifyError::Missing),
    }
}

/// Decodes a 32-byte tag written in hex.
fn decode_hex_tag(text: &str) -> Result<[u8; TAG_LEN], VerifyError> {
    let mut tag = [0_u8; TAG_LEN];
    hex::decode_to_slice(text, &mut tag).map_err(|_| VerifyError::Malformed)?;
    Ok(tag)
}

/// Decodes a 32-byte tag written in standard base64 (with padding).
fn decode_base64_tag(text: &str) -> Result<[u8; TAG_LEN], VerifyError> {
    let bytes = STANDARD.decode(text).map_err(|_| VerifyError::Malformed)?;
    bytes.try_into().map_err(|_| VerifyError::Malformed)
}

/// Whether `presented` is the HMAC of `body` under `secret`, in constant time. An empty
/// secret never matches.
fn hmac_matches(secret: &Secret, parts: &[&[u8]], presented: &[u8; TAG_LEN]) -> Choice {
    if secret.is_empty() {
        return Choice::from(0);
    }
    let expected = tag_of(secret.expose().as_bytes(), parts);
    expected.ct_eq(presented)
}

/// Strips a `sha256=` prefix (ASCII case-insensitive).
fn strip_sha256_prefix(value: &str) -> Option<&str> {
    let prefix = value.get(..7)?;
    prefix
        .eq_ignore_ascii_case("sha256=")
        .then(|| value[7..].trim())
}

/// Checks `sha256=<hex HMAC-SHA256(secret, body)>` (GitHub, Bitbucket).
fn verify_prefixed_hex(
    body: &[u8],
    header: Option<&str>,
    secret: &Secret,
) -> Result<(), VerifyError> {
    let value = present(header)?;
    let hex_tag = strip_sha256_prefix(value).ok_or(VerifyError::Malformed)?;
    let presented = decode_hex_tag(hex_tag)?;
    if hmac_matches(secret, &[body], &presented).into() {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Shopify: `X-Shopify-Hmac-Sha256` is base64(HMAC-SHA256(client secret, raw body)). Any
/// of `secrets` may match, so a key rotation can run with the old and new secret
/// configured side by side; every secret is tried, whichever matches, so timing does not
/// tell which one did.
pub fn verify_shopify(
    body: &[u8],
    header_hmac_base64: Option<&str>,
    secrets: &[Secret],
) -> Result<(), VerifyError> {
    let presented = decode_base64_tag(present(header_hmac_base64)?)?;
    let matched = secrets.iter().fold(Choice::from(0), |acc, secret| {
        acc | hmac_matches(secret, &[body], &presented)
    });
    if matched.into() {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`.
pub fn verify_github(
    body: &[u8],
    header: Option<&str>,
    secret: &Secret,
) -> Result<(), VerifyError> {
    verify_prefixed_hex(body, header, secret)
}

/// Bitbucket Cloud: `X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`.
pub fn verify_bitbucket(
    body: &[u8],
    header: Option<&str>,
    secret: &Secret,
) -> Result<(), VerifyError> {
    verify_prefixed_hex(body, header, secret)
}

/// GitLab: `X-Gitlab-Token` carries the secret itself; compared in constant time.
pub fn verify_gitlab(header_token: Option<&str>, secret: &Secret) -> Result<(), VerifyError> {
    let token = present(header_token)?;
    if secrets_match(token.as_bytes(), secret.expose().as_bytes()) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// A shared secret in a header (Supabase Database Webhooks, which are not signed): either
/// `Authorization: Bearer <secret>` or the raw secret in a custom header. Both readings of
/// the value are compared, always, so timing does not tell which form was used.
pub fn verify_shared_secret(
    header_value: Option<&str>,
    secret: &Secret,
) -> Result<(), VerifyError> {
    let value = present(header_value)?;
    if value.eq_ignore_ascii_case("bearer") {
        // `Bearer ` with nothing after it (the trailing space was trimmed).
        return Err(VerifyError::Malformed);
    }
    let bearer = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let expected = secret.expose().as_bytes();
    let whole = secrets_match(value.as_bytes(), expected);
    let token = secrets_match(bearer.unwrap_or(value).as_bytes(), expected);
    if whole | token {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Keap, as the seed README describes it (real Keap signs nothing; Keap docs, "REST
/// Hooks"): `X-Hook-Signature` is HMAC-SHA256(`KEAP_WEBHOOK_SECRET`, raw body) in hex.
/// Also accepted: a `sha256=` prefix, and the tag in base64 instead of hex.
pub fn verify_keap_signature(
    body: &[u8],
    header: Option<&str>,
    secret: &Secret,
) -> Result<(), VerifyError> {
    let value = present(header)?;
    let encoded = strip_sha256_prefix(value).unwrap_or(value);
    // 32 bytes are 64 hex digits or 44 base64 characters: the length tells them apart.
    let presented = if encoded.len() == 2 * TAG_LEN {
        decode_hex_tag(encoded)?
    } else {
        decode_base64_tag(encoded)?
    };
    if hmac_matches(secret, &[body], &presented).into() {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// The three Standard Webhooks headers, as received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StandardWebhookHeaders<'a> {
    /// `webhook-id`: the message id, the same on every retry.
    pub id: Option<&'a str>,
    /// `webhook-timestamp`: unix seconds when the message was signed.
    pub timestamp: Option<&'a str>,
    /// `webhook-signature`: space-separated `v1,<base64>` entries.
    pub signature: Option<&'a str>,
}

/// The HMAC key of a `whsec_<base64>` secret (the prefix is optional); `None` when it is
/// empty or not base64.
fn standard_key(secret: &Secret) -> Option<Vec<u8>> {
    let text = secret.expose().trim();
    let encoded = text.strip_prefix(STANDARD_SECRET_PREFIX).unwrap_or(text);
    let key = STANDARD.decode(encoded).ok()?;
    (!key.is_empty()).then_some(key)
}

/// Whether `secret` is a usable Standard Webhooks secret (`whsec_` + base64 of a non-empty
/// key), for config validation at startup: an unusable one makes every delivery fail with
/// [`VerifyError::Mismatch`].
pub fn is_valid_standard_webhook_secret(secret: &Secret) -> bool {
    standard_key(secret).is_some()
}

/// The Standard Webhooks tag of `"{id}.{timestamp}.{body}"`.
fn standard_tag(key: &[u8], id: &str, timestamp_secs: i64, body: &[u8]) -> [u8; TAG_LEN] {
    let prefix = format!("{id}.{timestamp_secs}.");
    tag_of(key, &[prefix.as_bytes(), body])
}

/// Standard Webhooks (spec v1, Svix): the signed content is `"{id}.{timestamp}.{body}"`,
/// the key is the base64-decoded secret without `whsec_`, and `webhook-signature` holds
/// space-separated `v1,<base64>` entries of which any may match (key rotation). A
/// timestamp more than [`STANDARD_WEBHOOKS_TOLERANCE_SECS`] away from `now` is rejected
/// (checked first, like the reference libraries). Entries of other versions (`v1a`,
/// asymmetric) are ignored. An unusable secret matches nothing.
pub fn verify_standard_webhook(
    body: &[u8],
    headers: &StandardWebhookHeaders<'_>,
    secret: &Secret,
    now: Timestamp,
) -> Result<(), VerifyError> {
    let id = present(headers.id)?;
    let timestamp = present(headers.timestamp)?;
    let signature = present(headers.signature)?;
    let timestamp_secs: i64 = timestamp.parse().map_err(|_| VerifyError::Malformed)?;
    let signed_at = Timestamp::from_millis(timestamp_secs.saturating_mul(1000));
    if now.millis_since(signed_at).unsigned_abs()
        > STANDARD_WEBHOOKS_TOLERANCE_SECS.unsigned_abs() * 1000
    {
        return Err(VerifyError::Expired);
    }
    let entries: Vec<(&str, &str)> = signature
        .split_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .collect();
    if entries.is_empty() {
        return Err(VerifyError::Malformed);
    }
    let Some(key) = standard_key(secret) else {
        return Err(VerifyError::Mismatch);
    };
    let expected = standard_tag(&key, id, timestamp_secs, body);
    // Every entry is compared, whichever matches.
    let matched = entries
        .iter()
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, encoded)| decode_base64_tag(encoded).ok())
        .fold(Choice::from(0), |acc, presented| {
            acc | expected.ct_eq(&presented)
        });
    if matched.into() {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// The `webhook-signature` value (`v1,<base64>`) for a message; `None` when the secret is
/// not a usable Standard Webhooks secret ([`is_valid_standard_webhook_secret`]).
pub fn sign_standard_webhook(
    id: &str,
    timestamp_secs: i64,
    body: &[u8],
    secret: &Secret,
) -> Option<String> {
    let key = standard_key(secret)?;
    Some(format!(
        "v1,{}",
        STANDARD.encode(standard_tag(&key, id, timestamp_secs, body))
    ))
}

/// The `X-Shopify-Hmac-Sha256` value for `body`: base64(HMAC-SHA256(secret, body)).
pub fn sign_shopify(body: &[u8], secret: &Secret) -> String {
    STANDARD.encode(tag_of(secret.expose().as_bytes(), &[body]))
}

/// The `X-Hub-Signature-256` value for `body`: `sha256=<hex>`.
pub fn sign_github(body: &[u8], secret: &Secret) -> String {
    format!(
        "sha256={}",
        hex::encode(tag_of(secret.expose().as_bytes(), &[body]))
    )
}

/// The Bitbucket `X-Hub-Signature` value for `body`: `sha256=<hex>`.
pub fn sign_bitbucket(body: &[u8], secret: &Secret) -> String {
    sign_github(body, secret)
}

/// The seed's `X-Hook-Signature` value for `body`: plain hex HMAC-SHA256.
pub fn sign_keap(body: &[u8], secret: &Secret) -> String {
    hex::encode(tag_of(secret.expose().as_bytes(), &[body]))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Standard Webhooks: the test vector of the reference libraries
    // (https://github.com/standard-webhooks/standard-webhooks/tree/main/libraries).
    const SW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const SW_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const SW_TIMESTAMP: &str = "1649367553";
    const SW_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SW_SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
    const SW_SIGNED_AT: Timestamp = Timestamp(1_649_367_553_000);

    fn sw_headers(signature: &str) -> StandardWebhookHeaders<'_> {
        StandardWebhookHeaders {
            id: Some(SW_ID),
            timestamp: Some(SW_TIMESTAMP),
            signature: Some(signature),
        }
    }

    fn sw_secret() -> Secret {
        Secret::new(SW_SECRET)
    }

    #[test]
    fn standard_webhooks_vector_verifies_inside_the_tolerance() {
        let secret = sw_secret();
        for offset_secs in [0, 1, -1, 299, -299, 300, -300] {
            let now = SW_SIGNED_AT.plus_millis(offset_secs * 1000);
            assert_eq!(
                verify_standard_webhook(SW_BODY, &sw_headers(SW_SIGNATURE), &secret, now),
                Ok(()),
                "offset {offset_secs} s"
            );
        }
        assert_eq!(
            sign_standard_webhook(SW_ID, 1_649_367_553, SW_BODY, &secret).as_deref(),
            Some(SW_SIGNATURE)
        );
        // The prefix is optional on the secret.
        let bare = Secret::new(SW_SECRET.trim_start_matches("whsec_"));
        assert_eq!(
            verify_standard_webhook(SW_BODY, &sw_headers(SW_SIGNATURE), &bare, SW_SIGNED_AT),
            Ok(())
        );
    }

    #[test]
    fn standard_webhooks_vector_fails_outside_the_tolerance() {
        let secret = sw_secret();
        for offset_ms in [300_001, -300_001, 3_600_000, -86_400_000] {
            let now = SW_SIGNED_AT.plus_millis(offset_ms);
            assert_eq!(
                verify_standard_webhook(SW_BODY, &sw_headers(SW_SIGNATURE), &secret, now),
                Err(VerifyError::Expired),
                "offset {offset_ms} ms"
            );
        }
        // Far-off timestamps saturate instead of overflowing.
        let headers = StandardWebhookHeaders {
            timestamp: Some("9223372036854775807"),
            ..sw_headers(SW_SIGNATURE)
        };
        assert_eq!(
            verify_standard_webhook(SW_BODY, &headers, &secret, SW_SIGNED_AT),
            Err(VerifyError::Expired)
        );
    }

    #[test]
    fn standard_webhooks_accepts_any_of_several_signatures() {
        let secret = sw_secret();
        let other = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
        let rotated = [
            format!("{other} {SW_SIGNATURE}"),
            format!("{SW_SIGNATURE} {other}"),
            format!("v1a,c2lnbmF0dXJl  {other}\t{SW_SIGNATURE}"),
            format!("v2,{} {SW_SIGNATURE}", &SW_SIGNATURE[3..]),
        ];
        for header in &rotated {
            assert_eq!(
                verify_standard_webhook(SW_BODY, &sw_headers(header), &secret, SW_SIGNED_AT),
                Ok(()),
                "{header}"
            );
        }
        // The right tag under another version is not a v1 signature.
        let wrong_version = format!("v2,{}", &SW_SIGNATURE[3..]);
        let only_others = [other.to_owned(), format!("{other} {other}"), wrong_version];
        for header in &only_others {
            assert_eq!(
                verify_standard_webhook(SW_BODY, &sw_headers(header), &secret, SW_SIGNED_AT),
                Err(VerifyError::Mismatch),
                "{header}"
            );
        }
    }

    #[test]
    fn standard_webhooks_rejects_tampering_and_bad_headers() {
        let secret = sw_secret();
        let now = SW_SIGNED_AT;
        let tampered = br#"{"email":"test@example.com","username":"test_user2"}"#;
        assert_eq!(
            verify_standard_webhook(tampered, &sw_headers(SW_SIGNATURE), &secret, now),
            Err(VerifyError::Mismatch)
        );
        let other_id = StandardWebhookHeaders {
            id: Some("msg_other"),
            ..sw_headers(SW_SIGNATURE)
        };
        assert_eq!(
            verify_standard_webhook(SW_BODY, &other_id, &secret, now),
            Err(VerifyError::Mismatch)
        );
        // A signed timestamp cannot be swapped for another one inside the tolerance.
        let other_time = StandardWebhookHeaders {
            timestamp: Some("1649367554"),
            ..sw_headers(SW_SIGNATURE)
        };
        assert_eq!(
            verify_standard_webhook(SW_BODY, &other_time, &secret, now),
            Err(VerifyError::Mismatch)
        );
        let wrong_secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(
            verify_standard_webhook(SW_BODY, &sw_headers(SW_SIGNATURE), &wrong_secret, now),
            Err(VerifyError::Mismatch)
        );
        for unusable in ["", "whsec_", "whsec_!!not base64!!"] {
            let secret = Secret::new(unusable);
            assert!(!is_valid_standard_webhook_secret(&secret));
            assert_eq!(
                verify_standard_webhook(SW_BODY, &sw_headers(SW_SIGNATURE), &secret, now),
                Err(VerifyError::Mismatch)
            );
            assert_eq!(sign_standard_webhook(SW_ID, 1, SW_BODY, &secret), None);
        }
        assert!(is_valid_standard_webhook_secret(&secret));

        for missing in [
            StandardWebhookHeaders {
                id: None,
                ..sw_headers(SW_SIGNATURE)
            },
            StandardWebhookHeaders {
                timestamp: Some(" "),
                ..sw_headers(SW_SIGNATURE)
            },
            StandardWebhookHeaders {
                signature: None,
                ..sw_headers(SW_SIGNATURE)
            },
        ] {
            assert_eq!(
                verify_standard_webhook(SW_BODY, &missing, &secret, now),
                Err(VerifyError::Missing)
            );
        }
        let bad_time = StandardWebhookHeaders {
            timestamp: Some("2022-04-07T21:39:13Z"),
            ..sw_headers(SW_SIGNATURE)
        };
        assert_eq!(
            verify_standard_webhook(SW_BODY, &bad_time, &secret, now),
            Err(VerifyError::Malformed)
        );
        for header in ["tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=", "v1"] {
            assert_eq!(
                verify_standard_webhook(SW_BODY, &sw_headers(header), &secret, now),
                Err(VerifyError::Malformed),
                "{header}"
            );
        }
        // Well formed entries whose base64 is broken or of the wrong length match nothing.
        for header in ["v1,not-base64!", "v1,c2hvcnQ="] {
            assert_eq!(
                verify_standard_webhook(SW_BODY, &sw_headers(header), &secret, now),
                Err(VerifyError::Mismatch),
                "{header}"
            );
        }
    }

    // GitHub's documented example ("Validating webhook deliveries").
    const GITHUB_SECRET: &str = "It's a Secret to Everybody";
    const GITHUB_BODY: &[u8] = b"Hello, World!";
    const GITHUB_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_documented_example() {
        let secret = Secret::new(GITHUB_SECRET);
        assert_eq!(sign_github(GITHUB_BODY, &secret), GITHUB_SIGNATURE);
        assert_eq!(
            verify_github(GITHUB_BODY, Some(GITHUB_SIGNATURE), &secret),
            Ok(())
        );
        let upper = GITHUB_SIGNATURE
            .replace("sha256=", "SHA256=")
            .to_uppercase();
        assert_eq!(verify_github(GITHUB_BODY, Some(&upper), &secret), Ok(()));
        assert_eq!(
            verify_github(b"Hello, World?", Some(GITHUB_SIGNATURE), &secret),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_github(
                GITHUB_BODY,
                Some(GITHUB_SIGNATURE),
                &Secret::new("It's a Secret to Nobody")
            ),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_github(GITHUB_BODY, None, &secret),
            Err(VerifyError::Missing)
        );
        for malformed in [
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha256=757107ea",
            "sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha256=",
        ] {
            assert_eq!(
                verify_github(GITHUB_BODY, Some(malformed), &secret),
                Err(VerifyError::Malformed),
                "{malformed}"
            );
        }
        assert_eq!(
            verify_github(GITHUB_BODY, Some(GITHUB_SIGNATURE), &Secret::new("")),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn bitbucket_uses_the_same_scheme() {
        let secret = Secret::new(GITHUB_SECRET);
        assert_eq!(sign_bitbucket(GITHUB_BODY, &secret), GITHUB_SIGNATURE);
        assert_eq!(
            verify_bitbucket(GITHUB_BODY, Some(GITHUB_SIGNATURE), &secret),
            Ok(())
        );
        assert_eq!(
            verify_bitbucket(b"{}", Some(GITHUB_SIGNATURE), &secret),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_bitbucket(GITHUB_BODY, Some("  "), &secret),
            Err(VerifyError::Missing)
        );
    }

    const SHOPIFY_BODY: &[u8] = br#"{"id":788032119674292922,"title":"Example T-Shirt"}"#;

    #[test]
    fn shopify_known_value() {
        // Computed independently:
        // printf '%s' "$BODY" | openssl dgst -sha256 -hmac hush -binary | base64
        let secret = Secret::new("hush");
        let expected = "PChQV/s9qVvLuYZx4s3CvtPkNn5M2k1OrvTkc0qHHSM=";
        assert_eq!(sign_shopify(SHOPIFY_BODY, &secret), expected);
        assert_eq!(
            verify_shopify(SHOPIFY_BODY, Some(expected), &[secret]),
            Ok(())
        );
    }

    #[test]
    fn shopify_rejects_tampering_wrong_secret_and_missing_header() {
        let secret = Secret::new("shpss_current");
        let signature = sign_shopify(SHOPIFY_BODY, &secret);
        let tampered = br#"{"id":788032119674292923,"title":"Example T-Shirt"}"#;
        assert_eq!(
            verify_shopify(tampered, Some(&signature), std::slice::from_ref(&secret)),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_shopify(
                SHOPIFY_BODY,
                Some(&signature),
                &[Secret::new("shpss_other")]
            ),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_shopify(SHOPIFY_BODY, None, std::slice::from_ref(&secret)),
            Err(VerifyError::Missing)
        );
        assert_eq!(
            verify_shopify(SHOPIFY_BODY, Some(""), std::slice::from_ref(&secret)),
            Err(VerifyError::Missing)
        );
        for malformed in ["not base64 at all", "c2hvcnQ=", &hex::encode([0_u8; 32])] {
            assert_eq!(
                verify_shopify(SHOPIFY_BODY, Some(malformed), std::slice::from_ref(&secret)),
                Err(VerifyError::Malformed),
                "{malformed}"
            );
        }
        // No secrets, or only empty ones: locked.
        assert_eq!(
            verify_shopify(SHOPIFY_BODY, Some(&signature), &[]),
            Err(VerifyError::Mismatch)
        );
        let empty_signature = sign_shopify(SHOPIFY_BODY, &Secret::new(""));
        assert_eq!(
            verify_shopify(SHOPIFY_BODY, Some(&empty_signature), &[Secret::new("")]),
            Err(VerifyError::Mismatch)
        );
        // Surrounding whitespace in the header is tolerated.
        assert_eq!(
            verify_shopify(SHOPIFY_BODY, Some(&format!(" {signature} ")), &[secret]),
            Ok(())
        );
    }

    #[test]
    fn shopify_accepts_either_secret_during_rotation() {
        let old = Secret::new("shpss_old");
        let new = Secret::new("shpss_new");
        let both = [old.clone(), new.clone()];
        for signer in [&old, &new] {
            let signature = sign_shopify(SHOPIFY_BODY, signer);
            assert_eq!(
                verify_shopify(SHOPIFY_BODY, Some(&signature), &both),
                Ok(())
            );
        }
        let retired = sign_shopify(SHOPIFY_BODY, &Secret::new("shpss_retired"));
        assert_eq!(
            verify_shopify(SHOPIFY_BODY, Some(&retired), &both),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn gitlab_token_and_shared_secrets() {
        let secret = Secret::new("gl-hook-token");
        assert_eq!(verify_gitlab(Some("gl-hook-token"), &secret), Ok(()));
        assert_eq!(verify_gitlab(Some(" gl-hook-token "), &secret), Ok(()));
        assert_eq!(
            verify_gitlab(Some("gl-hook-token2"), &secret),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(verify_gitlab(None, &secret), Err(VerifyError::Missing));
        assert_eq!(
            verify_gitlab(Some("anything"), &Secret::new("")),
            Err(VerifyError::Mismatch)
        );

        let secret = Secret::new("sb-webhook-secret");
        for accepted in [
            "Bearer sb-webhook-secret",
            "bearer   sb-webhook-secret ",
            "sb-webhook-secret",
        ] {
            assert_eq!(
                verify_shared_secret(Some(accepted), &secret),
                Ok(()),
                "{accepted}"
            );
        }
        assert_eq!(
            verify_shared_secret(Some("Bearer nope"), &secret),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_shared_secret(Some("Basic sb-webhook-secret"), &secret),
            Err(VerifyError::Mismatch)
        );
        for empty_bearer in ["Bearer ", "bearer  ", "Bearer"] {
            assert_eq!(
                verify_shared_secret(Some(empty_bearer), &secret),
                Err(VerifyError::Malformed),
                "{empty_bearer}"
            );
        }
        assert_eq!(
            verify_shared_secret(None, &secret),
            Err(VerifyError::Missing)
        );
        // A secret that itself contains a space still works in the raw form.
        let spaced = Secret::new("Bearer of news");
        assert_eq!(
            verify_shared_secret(Some("Bearer of news"), &spaced),
            Ok(())
        );
        assert_eq!(
            verify_shared_secret(Some("Bearer x"), &Secret::new("")),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn keap_signature_in_hex_prefixed_or_base64() {
        let secret = Secret::new("keap-webhook-secret");
        let body =
            br#"{"event_key":"contact.add","object_type":"contact","object_keys":[{"id":1}]}"#;
        let hex_tag = sign_keap(body, &secret);
        assert_eq!(hex_tag.len(), 64);
        let tag = hex::decode(&hex_tag).expect("hex");
        for accepted in [
            hex_tag.clone(),
            hex_tag.to_uppercase(),
            format!("sha256={hex_tag}"),
            STANDARD.encode(&tag),
            format!("sha256={}", STANDARD.encode(&tag)),
        ] {
            assert_eq!(
                verify_keap_signature(body, Some(&accepted), &secret),
                Ok(()),
                "{accepted}"
            );
        }
        assert_eq!(
            verify_keap_signature(b"{}", Some(&hex_tag), &secret),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_keap_signature(body, Some(&hex_tag), &Secret::new("other")),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_keap_signature(body, None, &secret),
            Err(VerifyError::Missing)
        );
        for malformed in ["xyz", &hex_tag[..63], "sha256=", &format!("{hex_tag}00")] {
            assert_eq!(
                verify_keap_signature(body, Some(malformed), &secret),
                Err(VerifyError::Malformed),
                "{malformed}"
            );
        }
    }

    #[test]
    fn errors_never_print_secrets_or_signatures() {
        let secret = Secret::new("shpss_do_not_print");
        let signature = sign_shopify(b"x", &secret);
        let errors = [
            verify_shopify(b"y", Some(&signature), std::slice::from_ref(&secret)),
            verify_shopify(b"y", Some("???"), std::slice::from_ref(&secret)),
            verify_gitlab(Some("shpss_do_not_print!"), &secret),
        ];
        for error in errors {
            let error = error.expect_err("rejected");
            let shown = format!("{error} {error:?}");
            assert!(!shown.contains("shpss"), "{shown}");
            assert!(!shown.contains(&signature), "{shown}");
            assert!(!shown.contains("???"), "{shown}");
        }
    }

    /// The constant-time paths: a signature that differs from the right one in its first
    /// byte and one that differs in its last byte take the same route and give the same
    /// answer (no early exit on the first differing byte, which `ct_eq` guarantees; this
    /// checks the routing around it).
    #[test]
    fn near_misses_are_rejected_the_same_way() {
        let secret = Secret::new(GITHUB_SECRET);
        let right = hex::decode(&GITHUB_SIGNATURE[7..]).expect("hex");
        for position in [0, 15, 31] {
            let mut wrong = right.clone();
            wrong[position] ^= 0x01;
            let github = format!("sha256={}", hex::encode(&wrong));
            assert_eq!(
                verify_github(GITHUB_BODY, Some(&github), &secret),
                Err(VerifyError::Mismatch)
            );
            let shopify = STANDARD.encode(&wrong);
            assert_eq!(
                verify_shopify(GITHUB_BODY, Some(&shopify), std::slice::from_ref(&secret)),
                Err(VerifyError::Mismatch)
            );
        }
        // A token that is a prefix of the secret, or the secret plus more, also mismatches
        // (lengths are hashed away before the comparison).
        let token = Secret::new("gl-hook-token");
        for near in ["gl-hook-toke", "gl-hook-token-", "Gl-hook-token"] {
            assert_eq!(
                verify_gitlab(Some(near), &token),
                Err(VerifyError::Mismatch)
            );
        }
    }
}
