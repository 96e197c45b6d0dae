//! sync-worker configuration, read from Worker vars into a typed struct.

use edge_sync_shared::sync::{
    RetryPolicy, RunLimits, SourceConfig, DEFAULT_OVERLAP_MS, KEAP_MAX_PAGE_SIZE,
};
use edge_sync_worker_kit::env_vars::{number, text as var};
use worker::Env;

/// The Worker variables the sync reads, each named once.
pub mod vars {
    /// Records per page (1..=1000).
    pub const PAGE_SIZE: &str = "SYNC_PAGE_SIZE";
    /// Attempts in all for provider 5xx and infrastructure failures.
    pub const RETRY_ATTEMPTS: &str = "SYNC_RETRY_ATTEMPTS";
    /// First backoff ceiling.
    pub const RETRY_BASE_MS: &str = "SYNC_RETRY_BASE_MS";
    /// Keap REST base.
    pub const KEAP_API_BASE_URL: &str = "KEAP_API_BASE_URL";
    /// Shopify Admin base with `{shop}`.
    pub const SHOPIFY_ADMIN_BASE_URL: &str = "SHOPIFY_ADMIN_BASE_URL";
    /// Shopify Admin API version.
    pub const SHOPIFY_API_VERSION: &str = "SHOPIFY_API_VERSION";
    /// Cursor look-back.
    pub const OVERLAP_MS: &str = "SYNC_OVERLAP_MS";
    /// Pages per invocation.
    pub const MAX_PAGES_PER_INVOCATION: &str = "SYNC_MAX_PAGES_PER_INVOCATION";
    /// Lease lifetime.
    pub const LEASE_TTL_MS: &str = "SYNC_LEASE_TTL_MS";
    /// Longest wait for one provider answer.
    pub const REQUEST_TIMEOUT_MS: &str = "SYNC_REQUEST_TIMEOUT_MS";
    /// Longest in-line wait.
    pub const MAX_INLINE_WAIT_MS: &str = "SYNC_MAX_INLINE_WAIT_MS";
}

/// Pages one invocation may fetch before handing the run to a fresh invocation. Each page
/// costs about five subrequests (budget, provider, Postgres, checkpoint), so 8 pages stay
/// within the Free plan's 50 per invocation.
const DEFAULT_MAX_PAGES_PER_INVOCATION: u32 = 8;
/// How long a run's lease lasts; a crashed invocation blocks the resource at most this long.
const DEFAULT_LEASE_TTL_MS: i64 = 120_000;
/// Longest wait for one provider answer.
const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Longest wait done in-line.
const DEFAULT_MAX_INLINE_WAIT_MS: u64 = 20_000;

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
        let page_size: u32 = number(env, vars::PAGE_SIZE, KEAP_MAX_PAGE_SIZE)?;
        if page_size == 0 || page_size > KEAP_MAX_PAGE_SIZE {
            return Err(format!(
                "{} must be between 1 and {KEAP_MAX_PAGE_SIZE}",
                vars::PAGE_SIZE
            ));
        }
        let mut retry = RetryPolicy::default();
        retry.max_attempts = number(env, vars::RETRY_ATTEMPTS, retry.max_attempts)?;
        retry.base_ms = number(env, vars::RETRY_BASE_MS, retry.base_ms)?;
        Ok(Self {
            source: SourceConfig {
                keap_api_base: var(env, vars::KEAP_API_BASE_URL)
                    .unwrap_or(defaults.keap_api_base)
                    .trim_end_matches('/')
                    .to_owned(),
                shopify_admin_base: var(env, vars::SHOPIFY_ADMIN_BASE_URL)
                    .unwrap_or(defaults.shopify_admin_base),
                shopify_api_version: var(env, vars::SHOPIFY_API_VERSION)
                    .unwrap_or(defaults.shopify_api_version),
                page_size,
                overlap_ms: number(env, vars::OVERLAP_MS, DEFAULT_OVERLAP_MS)?,
            },
            max_pages_per_invocation: number(
                env,
                vars::MAX_PAGES_PER_INVOCATION,
                DEFAULT_MAX_PAGES_PER_INVOCATION,
            )?
            .max(1),
            lease_ttl_ms: number(env, vars::LEASE_TTL_MS, DEFAULT_LEASE_TTL_MS)?,
            retry,
            request_timeout_ms: number(env, vars::REQUEST_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT_MS)?,
            max_inline_wait_ms: number(env, vars::MAX_INLINE_WAIT_MS, DEFAULT_MAX_INLINE_WAIT_MS)?,
        })
    }

    /// What the run machine decides with.
    pub fn run_limits(&self) -> RunLimits {
        RunLimits {
            retry: self.retry,
            max_pages_per_invocation: self.max_pages_per_invocation,
            max_inline_wait_ms: self.max_inline_wait_ms,
        }
    }
}
