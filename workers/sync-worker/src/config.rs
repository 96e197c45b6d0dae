//! sync-worker configuration, read from Worker vars into a typed struct.

use edge_sync_shared::sync::{RetryPolicy, SourceConfig, DEFAULT_OVERLAP_MS, KEAP_MAX_PAGE_SIZE};
use edge_sync_worker_kit::env_vars::{number, text as var};
use worker::Env;

/// Pages one invocation may fetch before handing the run to a fresh invocation. Each page
/// costs about five subrequests (budget, provider, Postgres, checkpoint), so 8 pages stay
/// within the Free plan's 50 per invocation.
const DEFAULT_MAX_PAGES_PER_INVOCATION: u32 = 8;
/// How long a run's lease lasts; a crashed invocation blocks the resource at most this long.
const DEFAULT_LEASE_TTL_MS: i64 = 120_000;

/// Everything the sync reads from its environment.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Provider endpoints, page size and look-back.
    pub source: SourceConfig,
    /// Pages per invocation.
    pub max_pages_per_invocation: u32,
    /// Lease lifetime.
    pub lease_ttl_ms: i64,
    /// Backoff for 5xx and timeouts.
    pub retry: RetryPolicy,
    /// Longest wait for one provider answer.
    pub request_timeout_ms: u64,
    /// Longest wait done in-line for a rate limit; longer waits pause the run instead.
    pub max_inline_wait_ms: u64,
}

impl SyncConfig {
    /// Reads and validates the configuration; errors name the variable.
    pub fn from_env(env: &Env) -> Result<Self, String> {
        let defaults = SourceConfig::default();
        let page_size: u32 = number(env, "SYNC_PAGE_SIZE", KEAP_MAX_PAGE_SIZE)?;
        if page_size == 0 || page_size > KEAP_MAX_PAGE_SIZE {
            return Err("SYNC_PAGE_SIZE must be between 1 and 1000".into());
        }
        let mut retry = RetryPolicy::default();
        retry.max_attempts = number(env, "SYNC_RETRY_ATTEMPTS", retry.max_attempts)?;
        retry.base_ms = number(env, "SYNC_RETRY_BASE_MS", retry.base_ms)?;
        Ok(Self {
            source: SourceConfig {
                keap_api_base: var(env, "KEAP_API_BASE_URL")
                    .unwrap_or(defaults.keap_api_base)
                    .trim_end_matches('/')
                    .to_owned(),
                shopify_admin_base: var(env, "SHOPIFY_ADMIN_BASE_URL")
                    .unwrap_or(defaults.shopify_admin_base),
                shopify_api_version: var(env, "SHOPIFY_API_VERSION")
                    .unwrap_or(defaults.shopify_api_version),
                page_size,
                overlap_ms: number(env, "SYNC_OVERLAP_MS", DEFAULT_OVERLAP_MS)?,
            },
            max_pages_per_invocation: number(
                env,
                "SYNC_MAX_PAGES_PER_INVOCATION",
                DEFAULT_MAX_PAGES_PER_INVOCATION,
            )?
            .max(1),
            lease_ttl_ms: number(env, "SYNC_LEASE_TTL_MS", DEFAULT_LEASE_TTL_MS)?,
            retry,
            request_timeout_ms: number(env, "SYNC_REQUEST_TIMEOUT_MS", 30_000)?,
            max_inline_wait_ms: number(env, "SYNC_MAX_INLINE_WAIT_MS", 20_000)?,
        })
    }
}
