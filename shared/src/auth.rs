//! Bearer-token authentication of internal and admin endpoints, compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Secret;

/// Who a request authenticated as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// An operator holding `ADMIN_TOKEN`.
    Admin,
    /// Another Edge Sync Worker holding `INTERNAL_API_TOKEN` (service binding calls).
    Internal,
}

/// Why a request was not authenticated (logged; the client only sees 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("missing Authorization header")]
    Missing,
    /// The header is not `Bearer <token>`.
    #[error("Authorization header is not a bearer token")]
    Malformed,
    /// The token matches no configured token.
    #[error("bearer token does not match")]
    Mismatch,
}

/// Extracts the token from an `Authorization: Bearer <token>` header value.
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// Compares two secrets in constant time. Both sides are hashed first so neither the
/// content nor the length of the expected value leaks through timing.
pub fn secrets_match(presented: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    let a = Sha256::digest(presented);
    let b = Sha256::digest(expected);
    a.ct_eq(&b).into()
}

/// Checks an `Authorization` header against the admin and internal tokens. An unset (empty)
/// token never matches, so a missing secret locks the endpoint rather than opening it.
pub fn authenticate(
    header: Option<&str>,
    admin_token: &Secret,
    internal_token: &Secret,
) -> Result<Caller, AuthError> {
    let token = bearer_token(header)?.as_bytes();
    // Evaluate both comparisons so timing does not reveal which token matched.
    let is_admin = secrets_match(token, admin_token.expose().as_bytes());
    let is_internal = secrets_match(token, internal_token.expose().as_bytes());
    match (is_admin, is_internal) {
        (true, _) => Ok(Caller::Admin),
        (false, true) => Ok(Caller::Internal),
        (false, false) => Err(AuthError::Mismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> (Secret, Secret) {
        (Secret::new("admin-token"), Secret::new("internal-token"))
    }

    #[test]
    fn accepts_each_configured_token() {
        let (admin, internal) = tokens();
        assert_eq!(
            authenticate(Some("Bearer admin-token"), &admin, &internal),
            Ok(Caller::Admin)
        );
        assert_eq!(
            authenticate(Some("bearer internal-token"), &admin, &internal),
            Ok(Caller::Internal)
        );
    }

    #[test]
    fn rejects_missing_malformed_and_wrong_tokens() {
        let (admin, internal) = tokens();
        assert_eq!(
            authenticate(None, &admin, &internal),
            Err(AuthError::Missing)
        );
        assert_eq!(
            authenticate(Some("Basic YWxhZGRpbjpvcGVu"), &admin, &internal),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            authenticate(Some("Bearer "), &admin, &internal),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            authenticate(Some("Bearer admin-token2"), &admin, &internal),
            Err(AuthError::Mismatch)
        );
    }

    #[test]
    fn unset_tokens_never_match() {
        let empty = Secret::new("");
        assert_eq!(
            authenticate(Some("Bearer x"), &empty, &empty),
            Err(AuthError::Mismatch)
        );
        assert!(!secrets_match(b"", b""));
    }
}
