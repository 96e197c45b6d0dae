//! A signed-in user's own credential: the access token Supabase Auth issues
//! (<https://supabase.com/docs/guides/auth/jwts>), a JWT whose `sub` is the user's id.
//! Projects on the legacy JWT secret sign it with HS256
//! (<https://supabase.com/docs/guides/auth/signing-keys>); with that secret
//! (`SUPABASE_JWT_SECRET`) the coordinator lets a user open their own live stream without
//! the operator's token. Only HS256 is accepted (never `none`, never another algorithm
//! chosen by the token), the signature is compared in constant time, and the token must be
//! an unexpired `authenticated` session.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

use crate::{Secret, Timestamp};

/// Why a token does not authenticate (logged; the client gets 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserTokenError {
    /// Not three base64url parts of JSON.
    #[error("not a JWT")]
    Malformed,
    /// `alg` is not HS256.
    #[error("unsupported algorithm {0}")]
    Algorithm(String),
    /// The signature does not match the secret.
    #[error("bad signature")]
    Signature,
    /// `exp` is missing or past.
    #[error("expired or without exp")]
    Expired,
    /// Not a signed-in user's session (`role`/`aud` not `authenticated`, or no `sub`).
    #[error("not an authenticated user's token")]
    NotAUser,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    aud: Value,
}

/// The user id (`sub`) of a valid HS256 Supabase access token signed with `secret`, at `now`.
pub fn verify_supabase_token(
    token: &str,
    secret: &Secret,
    now: Timestamp,
) -> Result<String, UserTokenError> {
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(UserTokenError::Malformed);
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| UserTokenError::Malformed)
    };
    let header: Header =
        serde_json::from_slice(&decode(header)?).map_err(|_| UserTokenError::Malformed)?;
    if header.alg != "HS256" {
        return Err(UserTokenError::Algorithm(header.alg));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .map_err(|_| UserTokenError::Signature)?;
    let (signing_input, _) = token.rsplit_once('.').ok_or(UserTokenError::Malformed)?;
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&decode(signature)?)
        .map_err(|_| UserTokenError::Signature)?;
    let claims: Claims =
        serde_json::from_slice(&decode(payload)?).map_err(|_| UserTokenError::Malformed)?;
    if claims
        .exp
        .is_none_or(|exp| exp.saturating_mul(1000) <= now.as_millis())
    {
        return Err(UserTokenError::Expired);
    }
    let audience_ok = match &claims.aud {
        Value::String(aud) => aud == "authenticated",
        Value::Array(list) => list.iter().any(|a| a == "authenticated"),
        _ => false,
    };
    if claims.role.as_deref() != Some("authenticated") || !audience_ok || claims.sub.is_empty() {
        return Err(UserTokenError::NotAUser);
    }
    Ok(claims.sub)
}

/// Signs `claims` as an HS256 JWT with `secret`, as Supabase Auth does with the legacy JWT
/// secret (for tests and local tools).
pub fn sign_supabase_token(claims: &Value, secret: &Secret) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("any key length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// jwt.io's example token, signed with `your-256-bit-secret` (RFC 7519 shape): the
    /// signature verifies; it has no `exp`, so it is refused as expired.
    const JWT_IO: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

    fn now() -> Timestamp {
        Timestamp::from_millis(1_800_000_000_000)
    }

    fn secret() -> Secret {
        Secret::new("super-secret-jwt-token-with-at-least-32-characters-long")
    }

    fn session(sub: &str, exp: i64) -> Value {
        json!({ "sub": sub, "exp": exp, "role": "authenticated", "aud": "authenticated",
                "iss": "https://project.supabase.co/auth/v1" })
    }

    #[test]
    fn a_known_vector_verifies_and_a_changed_byte_does_not() {
        let known = Secret::new("your-256-bit-secret");
        assert_eq!(
            verify_supabase_token(JWT_IO, &known, now()),
            Err(UserTokenError::Expired)
        );
        let tampered = JWT_IO.replace("eyJzdWIiOiIxMjM0NTY3ODkw", "eyJzdWIiOiIxMjM0NTY3ODkx");
        assert_eq!(
            verify_supabase_token(&tampered, &known, now()),
            Err(UserTokenError::Signature)
        );
        assert_eq!(
            verify_supabase_token(JWT_IO, &Secret::new("another"), now()),
            Err(UserTokenError::Signature)
        );
    }

    #[test]
    fn a_live_session_gives_its_user() {
        let token = sign_supabase_token(&session("user-1", 1_800_000_060), &secret());
        assert_eq!(
            verify_supabase_token(&token, &secret(), now()),
            Ok("user-1".to_owned())
        );
        let listed = sign_supabase_token(
            &json!({ "sub": "u2", "exp": 1_800_000_060, "role": "authenticated", "aud": ["authenticated"] }),
            &secret(),
        );
        assert_eq!(
            verify_supabase_token(&listed, &secret(), now()),
            Ok("u2".to_owned())
        );
    }

    #[test]
    fn expired_anonymous_and_service_tokens_are_refused() {
        let expired = sign_supabase_token(&session("user-1", 1_800_000_000), &secret());
        assert_eq!(
            verify_supabase_token(&expired, &secret(), now()),
            Err(UserTokenError::Expired)
        );
        let service = sign_supabase_token(
            &json!({ "role": "service_role", "exp": 1_900_000_000, "aud": "authenticated", "sub": "x" }),
            &secret(),
        );
        assert_eq!(
            verify_supabase_token(&service, &secret(), now()),
            Err(UserTokenError::NotAUser)
        );
        let anon = sign_supabase_token(&json!({ "role": "anon", "exp": 1_900_000_000 }), &secret());
        assert_eq!(
            verify_supabase_token(&anon, &secret(), now()),
            Err(UserTokenError::NotAUser)
        );
    }

    #[test]
    fn the_token_cannot_choose_its_algorithm() {
        let payload = URL_SAFE_NO_PAD.encode(session("user-1", 1_900_000_000).to_string());
        for alg in ["none", "HS512", "RS256"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            let token = format!("{header}.{payload}.");
            assert_eq!(
                verify_supabase_token(&token, &secret(), now()),
                Err(UserTokenError::Algorithm(alg.to_owned()))
            );
        }
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert_eq!(
                verify_supabase_token(bad, &secret(), now()),
                Err(UserTokenError::Malformed),
                "{bad}"
            );
        }
    }
}
