//! Who may call what: bearer-token authentication (constant time) and the capabilities of
//! each caller. Every Worker that calls another holds its own credential, limited to the
//! routes it needs; only the operator's token manages connections.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{bindings, Secret};

/// Who a request authenticated as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    /// An operator holding `ADMIN_TOKEN`.
    Admin,
    /// webhook-handler holding `WEBHOOK_HANDLER_TOKEN`.
    WebhookHandler,
    /// sync-worker holding `SYNC_WORKER_TOKEN`.
    SyncWorker,
    /// sync-coordinator holding `COORDINATOR_TOKEN`.
    Coordinator,
}

impl Caller {
    /// Every caller, in a fixed order.
    pub const ALL: [Caller; 4] = [
        Caller::Admin,
        Caller::WebhookHandler,
        Caller::SyncWorker,
        Caller::Coordinator,
    ];

    /// The secret that authenticates this caller.
    pub fn secret_name(self) -> &'static str {
        match self {
            Caller::Admin => bindings::ADMIN_TOKEN,
            Caller::WebhookHandler => bindings::WEBHOOK_HANDLER_TOKEN,
            Caller::SyncWorker => bindings::SYNC_WORKER_TOKEN,
            Caller::Coordinator => bindings::COORDINATOR_TOKEN,
        }
    }

    /// The caller a Worker acts as when it calls another Worker (`None` for unknown names).
    pub fn of_worker(worker: &str) -> Option<Caller> {
        match worker {
            bindings::workers::WEBHOOK_HANDLER => Some(Caller::WebhookHandler),
            bindings::workers::SYNC_WORKER => Some(Caller::SyncWorker),
            bindings::workers::SYNC_COORDINATOR => Some(Caller::Coordinator),
            _ => None,
        }
    }

    /// Name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Caller::Admin => "admin",
            Caller::WebhookHandler => "webhook-handler",
            Caller::SyncWorker => "sync-worker",
            Caller::Coordinator => "sync-coordinator",
        }
    }
}

/// What a route lets its caller do. Each route of each Worker names exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Operator management: list, create and delete connections, start OAuth flows, list and
    /// replay stored events, start and watch syncs.
    Operate,
    /// Read one connection's status (never its tokens).
    ReadConnection,
    /// Read a connection's sync state (cursors, leases, last runs).
    ReadSyncState,
    /// Check and repair a connection's provider webhooks.
    RepairWebhooks,
    /// List the connections to sync (ids, providers, accounts and status; never tokens).
    ListSyncTargets,
    /// Take a plaintext access token of a connection.
    TakeAccessToken,
    /// Drive a sync run: leases, cursors, run records, the shared rate budget.
    DriveSync,
    /// Continue a sync run in a fresh invocation, or start the incremental run a Keap hook
    /// asked for (the coordinator's alarms).
    ContinueSync,
    /// Store a verified webhook event.
    StoreEvents,
    /// Find the connection a delivery belongs to (by shop, hook token or provider).
    LookupConnection,
    /// Ping the coordinator (health checks of every Worker).
    Ping,
}

impl Capability {
    /// The callers holding this capability.
    pub fn holders(self) -> &'static [Caller] {
        use Caller::*;
        match self {
            Capability::Operate => &[Admin],
            Capability::ReadConnection => &[Admin, SyncWorker],
            Capability::ReadSyncState => &[Admin, SyncWorker],
            Capability::RepairWebhooks => &[Admin, SyncWorker],
            Capability::ListSyncTargets => &[SyncWorker],
            Capability::TakeAccessToken => &[SyncWorker],
            Capability::DriveSync => &[SyncWorker],
            Capability::ContinueSync => &[Coordinator],
            Capability::StoreEvents => &[WebhookHandler],
            Capability::LookupConnection => &[WebhookHandler],
            Capability::Ping => &[Admin, WebhookHandler, SyncWorker],
        }
    }

    /// Whether `caller` holds this capability.
    pub fn allows(self, caller: Caller) -> bool {
        self.holders().contains(&caller)
    }
}

/// Why a request was not let through (logged; the client sees 401 or 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header (401).
    #[error("missing Authorization header")]
    Missing,
    /// The header is not `Bearer <token>` (401).
    #[error("Authorization header is not a bearer token")]
    Malformed,
    /// The token matches no configured credential (401).
    #[error("bearer token does not match")]
    Mismatch,
    /// A known caller asked for something outside its capabilities (403).
    #[error("{caller:?} may not use this route (needs {needed:?})")]
    Forbidden {
        /// Who asked.
        caller: Caller,
        /// What the route needs.
        needed: Capability,
    },
}

impl AuthError {
    /// The HTTP status of the error: 403 for a known caller, 401 otherwise.
    pub fn status(self) -> u16 {
        match self {
            AuthError::Forbidden { .. } => 403,
            _ => 401,
        }
    }
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

/// Checks an `Authorization` header against the credentials this Worker knows, then that the
/// caller holds `needed`. An unset (empty) credential never matches, so a missing secret locks
/// its routes rather than opening them.
pub fn authorize(
    header: Option<&str>,
    credentials: &[(Caller, Secret)],
    needed: Capability,
) -> Result<Caller, AuthError> {
    let token = bearer_token(header)?.as_bytes();
    // Compare against every credential so timing does not reveal which one matched.
    let mut matched = None;
    for (caller, secret) in credentials {
        if secrets_match(token, secret.expose().as_bytes()) && matched.is_none() {
            matched = Some(*caller);
        }
    }
    let caller = matched.ok_or(AuthError::Mismatch)?;
    if needed.allows(caller) {
        Ok(caller)
    } else {
        Err(AuthError::Forbidden { caller, needed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Vec<(Caller, Secret)> {
        vec![
            (Caller::Admin, Secret::new("admin-token")),
            (Caller::WebhookHandler, Secret::new("handler-token")),
            (Caller::SyncWorker, Secret::new("sync-token")),
        ]
    }

    #[test]
    fn each_credential_authenticates_as_its_caller() {
        let creds = credentials();
        assert_eq!(
            authorize(Some("Bearer admin-token"), &creds, Capability::Operate),
            Ok(Caller::Admin)
        );
        assert_eq!(
            authorize(
                Some("bearer handler-token"),
                &creds,
                Capability::StoreEvents
            ),
            Ok(Caller::WebhookHandler)
        );
        assert_eq!(
            authorize(Some("Bearer sync-token"), &creds, Capability::DriveSync),
            Ok(Caller::SyncWorker)
        );
    }

    #[test]
    fn a_known_caller_outside_its_capabilities_is_forbidden() {
        let creds = credentials();
        let forbidden = authorize(
            Some("Bearer handler-token"),
            &creds,
            Capability::TakeAccessToken,
        );
        assert_eq!(
            forbidden,
            Err(AuthError::Forbidden {
                caller: Caller::WebhookHandler,
                needed: Capability::TakeAccessToken
            })
        );
        assert_eq!(forbidden.map_err(AuthError::status), Err(403));
        // Only the operator manages connections; no Worker credential does.
        for caller in [
            Caller::WebhookHandler,
            Caller::SyncWorker,
            Caller::Coordinator,
        ] {
            assert!(!Capability::Operate.allows(caller));
        }
        // The internet-facing handler can store events and look up its connection, nothing else.
        let handler: Vec<Capability> = ALL_CAPABILITIES
            .into_iter()
            .filter(|c| c.allows(Caller::WebhookHandler))
            .collect();
        assert_eq!(
            handler,
            [
                Capability::StoreEvents,
                Capability::LookupConnection,
                Capability::Ping
            ]
        );
    }

    const ALL_CAPABILITIES: [Capability; 11] = [
        Capability::Operate,
        Capability::ReadConnection,
        Capability::ReadSyncState,
        Capability::RepairWebhooks,
        Capability::ListSyncTargets,
        Capability::TakeAccessToken,
        Capability::DriveSync,
        Capability::ContinueSync,
        Capability::StoreEvents,
        Capability::LookupConnection,
        Capability::Ping,
    ];

    #[test]
    fn rejects_missing_malformed_and_wrong_tokens() {
        let creds = credentials();
        let op = Capability::Operate;
        assert_eq!(authorize(None, &creds, op), Err(AuthError::Missing));
        assert_eq!(
            authorize(Some("Basic YWxhZGRpbjpvcGVu"), &creds, op),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            authorize(Some("Bearer "), &creds, op),
            Err(AuthError::Malformed)
        );
        let wrong = authorize(Some("Bearer admin-token2"), &creds, op);
        assert_eq!(wrong, Err(AuthError::Mismatch));
        assert_eq!(wrong.map_err(AuthError::status), Err(401));
    }

    #[test]
    fn unset_credentials_never_match() {
        let creds = vec![(Caller::Admin, Secret::new(""))];
        assert_eq!(
            authorize(Some("Bearer x"), &creds, Capability::Operate),
            Err(AuthError::Mismatch)
        );
        assert!(!secrets_match(b"", b""));
    }
}
