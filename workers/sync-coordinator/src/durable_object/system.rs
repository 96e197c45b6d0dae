//! The `system` instance: single-use OAuth states and the index of connections.

use edge_sync_shared::{
    code_repos::connection::RepoIndexEntry,
    coordinator_api::{
        ConsumeState, CoordinatorError, Deleted, DeletedId, HookToken, IndexEntry, PendingState,
        Pong, Stored,
    },
    dashboard::Session,
    oauth::OAuthState,
    Provider, Timestamp,
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

/// The key of a connection in the index by provider account (`account:<provider>:<account,
/// lowercase>:<id>`), so a delivery finds its connection with one key-range read however
/// many connections there are.
fn account_key(entry: &IndexEntry) -> String {
    format!(
        "{}{}",
        account_prefix(entry.provider, &entry.account),
        entry.id
    )
}

fn account_prefix(provider: Provider, account: &str) -> String {
    format!("account:{provider}:{}:", account.to_ascii_lowercase())
}

/// The key of a connection in the index by owner (`owner:<length of user id>:<user
/// id>:<id>`; the length keeps user ids with `:` in them apart), so a user's loop finds
/// the user's connections with one key-range read.
fn owner_key(entry: &IndexEntry) -> String {
    format!("{}{}", owner_prefix(&entry.user_id), entry.id)
}

fn owner_prefix(user_id: &str) -> String {
    format!("owner:{}:{user_id}:", user_id.len())
}

/// Marks that every indexed connection also has its [`account_key`] and [`owner_key`].
const LOOKUP_KEYS_BUILT: &str = "lookup_keys_built_v2";

/// Adds or replaces a connection in the index.
pub fn index_put(store: &Store, entry: IndexEntry) -> Handled<IndexEntry> {
    let key = format!("index:{}", entry.id);
    // A replaced entry's lookup keys go with it (the owner or account may have changed).
    if let Some(old) = store.get::<IndexEntry>(&key, Timestamp::from_millis(0))? {
        store.delete(&account_key(&old))?;
        store.delete(&owner_key(&old))?;
    }
    store.put(&key, &entry, None)?;
    store.put(&account_key(&entry), &entry, None)?;
    store.put(&owner_key(&entry), &entry, None)?;
    Ok(entry)
}

/// Removes a connection from the index.
pub fn index_delete(store: &Store, id: &str, now: Timestamp) -> Handled<DeletedId> {
    let key = format!("index:{id}");
    if let Some(entry) = store.get::<IndexEntry>(&key, now)? {
        store.delete(&account_key(&entry))?;
        store.delete(&owner_key(&entry))?;
    }
    store.delete(&key)?;
    Ok(DeletedId {
        deleted: id.to_owned(),
    })
}

/// Connections indexed before the lookup keys existed get theirs, once.
fn ensure_lookup_keys(store: &Store, now: Timestamp) -> Handled<()> {
    if store.get::<bool>(LOOKUP_KEYS_BUILT, now)?.is_none() {
        for (_, entry) in store.list::<IndexEntry>("index:", now)? {
            store.put(&account_key(&entry), &entry, None)?;
            store.put(&owner_key(&entry), &entry, None)?;
        }
        store.put(LOOKUP_KEYS_BUILT, &true, None)?;
    }
    Ok(())
}

/// The indexed connections of one provider account (a Shopify shop domain, a Keap app
/// host), read by key range.
pub fn index_by_account(
    store: &Store,
    provider: Provider,
    account: &str,
    now: Timestamp,
) -> Handled<Vec<IndexEntry>> {
    ensure_lookup_keys(store, now)?;
    Ok(store
        .list(&account_prefix(provider, account), now)?
        .into_iter()
        .map(|(_, e)| e)
        .collect())
}

/// The indexed connections of one user, read by key range.
pub fn index_by_owner(store: &Store, user_id: &str, now: Timestamp) -> Handled<Vec<IndexEntry>> {
    ensure_lookup_keys(store, now)?;
    Ok(store
        .list(&owner_prefix(user_id), now)?
        .into_iter()
        .map(|(_, e)| e)
        .collect())
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

/// The key of a repository connection in the index by owner (`repo_owner:<length>:<user
/// id>:<id>`, as [`owner_key`]); every repository connection is also under `repo:<id>`.
fn repo_owner_prefix(user_id: &str) -> String {
    format!("repo_owner:{}:{user_id}:", user_id.len())
}

/// Adds or replaces a repository connection in the index.
pub fn repo_index_put(store: &Store, entry: RepoIndexEntry) -> Handled<RepoIndexEntry> {
    store.put(&format!("repo:{}", entry.id), &entry, None)?;
    store.put(
        &format!("{}{}", repo_owner_prefix(&entry.user_id), entry.id),
        &entry,
        None,
    )?;
    Ok(entry)
}

/// Removes a repository connection from the index.
pub fn repo_index_delete(store: &Store, id: &str, now: Timestamp) -> Handled<DeletedId> {
    let key = format!("repo:{id}");
    if let Some(entry) = store.get::<RepoIndexEntry>(&key, now)? {
        store.delete(&format!(
            "{}{}",
            repo_owner_prefix(&entry.user_id),
            entry.id
        ))?;
    }
    store.delete(&key)?;
    Ok(DeletedId {
        deleted: id.to_owned(),
    })
}

/// Every repository connection, or one user's (read by key range).
pub fn repo_index_list(
    store: &Store,
    user_id: Option<&str>,
    now: Timestamp,
) -> Handled<Vec<RepoIndexEntry>> {
    let prefix = user_id.map_or_else(|| "repo:".to_owned(), repo_owner_prefix);
    Ok(store
        .list(&prefix, now)?
        .into_iter()
        .map(|(_, e)| e)
        .collect())
}

fn session_key(id: &str) -> String {
    format!("dashboard_session:{id}")
}

/// Keeps a dashboard session until it expires.
pub fn session_put(store: &Store, id: &str, session: Session) -> Handled<Session> {
    store.put(&session_key(id), &session, Some(session.expires_at))?;
    Ok(session)
}

/// A live dashboard session, or 404.
pub fn session_get(store: &Store, id: &str, now: Timestamp) -> Handled<Session> {
    store
        .get(&session_key(id), now)?
        .ok_or_else(|| CoordinatorError::NotFound("no such session").into())
}

/// Ends a dashboard session.
pub fn session_delete(store: &Store, id: &str) -> Handled<Deleted> {
    store.delete(&session_key(id))?;
    Ok(Deleted { deleted: true })
}
