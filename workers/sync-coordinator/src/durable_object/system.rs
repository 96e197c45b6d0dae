//! The `system` instance: single-use OAuth states and the index of connections.

use edge_sync_shared::{
    coordinator_api::{
        ConsumeState, CoordinatorError, Deleted, DeletedId, HookToken, IndexEntry, PendingState,
        Pong, Stored,
    },
    oauth::OAuthState,
    Timestamp,
};

use crate::api_error::Handled;
use crate::store::Store;

/// Counts a ping in durable storage and returns the count.
pub fn ping(store: &Store, now: Timestamp) -> Handled<Pong> {
    let count: i64 = store.get("ping_count", now)?.unwrap_or(0) + 1;
    store.put("ping_count", &count, None)?;
    Ok(Pong {
        pong: true,
        ping_count: count,
    })
}

/// Stores a new OAuth state until it expires.
pub fn put_state(store: &Store, pending: PendingState, now: Timestamp) -> Handled<Stored> {
    store.purge_expired(now)?;
    store.put(
        &format!("oauth_state:{}", pending.state.value),
        &pending,
        Some(pending.expires_at),
    )?;
    Ok(Stored { stored: true })
}

/// Returns and deletes a state: a second use finds nothing. An expired state is reported
/// as expired (and deleted) so the user learns to start over.
pub fn consume_state(store: &Store, request: ConsumeState, now: Timestamp) -> Handled<OAuthState> {
    let key = format!("oauth_state:{}", request.value);
    let pending: Option<PendingState> = store.take_even_if_expired(&key)?;
    match pending {
        None => Err(CoordinatorError::NotFound("unknown").into()),
        Some(p) if p.expires_at <= now => Err(CoordinatorError::Expired.into()),
        Some(p) => Ok(p.state),
    }
}

/// Adds or replaces a connection in the index.
pub fn index_put(store: &Store, entry: IndexEntry) -> Handled<IndexEntry> {
    store.put(&format!("index:{}", entry.id), &entry, None)?;
    Ok(entry)
}

/// Removes a connection from the index.
pub fn index_delete(store: &Store, id: &str) -> Handled<DeletedId> {
    store.delete(&format!("index:{id}"))?;
    Ok(DeletedId {
        deleted: id.to_owned(),
    })
}

/// Every indexed connection.
pub fn index_list(store: &Store, now: Timestamp) -> Handled<Vec<IndexEntry>> {
    Ok(store
        .list("index:", now)?
        .into_iter()
        .map(|(_, e)| e)
        .collect())
}

fn hook_key(token: &str) -> String {
    format!("hook:{token}")
}

/// Registers a hook token.
pub fn hook_put(store: &Store, token: &str, hook: HookToken) -> Handled<HookToken> {
    store.put(&hook_key(token), &hook, None)?;
    Ok(hook)
}

/// Resolves a hook token (404 when unknown).
pub fn hook_get(store: &Store, token: &str, now: Timestamp) -> Handled<HookToken> {
    store
        .get::<HookToken>(&hook_key(token), now)?
        .ok_or_else(|| CoordinatorError::NotFound("unknown hook token").into())
}

/// Marks a hook verified (Keap's handshake reached us and was answered).
pub fn hook_verified(store: &Store, token: &str, now: Timestamp) -> Handled<HookToken> {
    let mut hook = hook_get(store, token, now)?;
    hook.verified = true;
    store.put(&hook_key(token), &hook, None)?;
    Ok(hook)
}

/// Forgets a hook token.
pub fn hook_delete(store: &Store, token: &str) -> Handled<Deleted> {
    store.delete(&hook_key(token))?;
    Ok(Deleted { deleted: true })
}
