//! sync-worker configuration: read once per request or cron tick from the Worker's vars
//! into [`SyncConfig`]. Variable names live in [`vars`]; each setting has one default.

use edge_sync_shared::sync::{
    RetryPolicy, RunLimits, SourceConfig, DEFAULT_OVERLAP_MS, KEAP_MAX_PAGE_SIZE,
};
use edge_sync_worker_kit::env_vars::{number, text};
use worker::Env;

/// The names of the variables sync-worker reads (Worker vars; unset means the default).
pub mod vars {
    /// Keap REST base URL.
    pub const KEAP_API_BASE_URL: &str = "KEAP_API_BASE_URL";
    /// Shopify Admin base URL with a `{shop}` placeholder.
    pub const SHOPIFY_ADMIN_BASE_URL: &str = "SHOPIFY_ADMIN_BASE_URL";
    /// Shopify Admin API version.
    pub const SHOPIFY_API_VERSION: &str = "SHOPIFY_API_VERSION";
    /// Records per page.
    pub const SYNC_PAGE_SIZE: &str = "SYNC_PAGE_SIZE";
    /// Attempts in all for a provider or infrastructure failure.
    pub const SYNC_RETRY_ATTEMPTS: &str = "SYNC_RETRY_ATTEMPTS";
    /// First backoff delay.
    pub const SYNC_RETRY_BASE_MS: &str = "SYNC_RETRY_BASE_MS";
    /// Look-back before the cursor.
    pub const SYNC_OVERLAP_MS: &str = "SYNC_OVERLAP_MS";
    /// Pages per invocation.
    pub const SYNC_MAX_PAGES_PER_INVOCATION: &str = "SYNC_MAX_PAGES_PER_INVOCATION";
    /// Lease lifetime.
    pub const SYNC_LEASE_TTL_MS: &str = "SYNC_LEASE_TTL_MS";
    /// Longest wait for one provider answer.
    pub const SYNC_REQUEST_TIMEOUT_MS: &str = "SYNC_REQUEST_TIMEOUT_MS";
    /// Longest in-line wait.
    pub const SYNC_MAX_INLINE_WAIT_MS: &str = "SYNC_MAX_INLINE_WAIT_MS";
}

/// Pages one invocation may fetch before handing the run to a fresh invocation. Each page
/// costs about five subrequests (budget, provider, Postgres, checkpoint), so 8 pages stay
/// within the Free plan's 50 per invocation.
const DEFAULT_MAX_PAGES_PER_INVOCATION: u32 = 8;
/// How long a run's lease lasts; a crashed invocation blocks the resource at most this long.
const DEFAULT_LEASE_TTL_MS: i64 = 120_000;
/// Longest wait for one provider answer.
const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Longest wait done in-line (a rate limit, a throttle, an empty budget).
const DEFAULT_MAX_INLINE_WAIT_MS: u64 = 20_000;

/// Why the configuration cannot be used; names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A variable is set but malformed or out of range.
    #[error("{variable} is invalid: {problem}")]
    Invalid {
        /// The variable's name.
        variable: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// Everything the sync reads from its environment.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Provider endpoints, page size and look-back.
    pub source: SourceConfig,
    /// Pages per invocation.
    pub max_pages_per_invocation: u32,
    /// Lease lifetime.
    pub lease_ttl_ms: i64,
    /// Backoff for 5xx, timeouts and infrastructure failures.
    pub retry: RetryPolicy,
    /// Longest wait for one provider answer.
    pub request_timeout_ms: u64,
    /// Longest wait done in-line for a rate limit; longer waits pause the run instead.
    pub max_inline_wait_ms: u64,
}

/// A numeric variable, `default` when unset.
fn numeric<T: std::str::FromStr>(
    env: &Env,
    variable: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    number(env, variable, default).map_err(|_| ConfigError::Invalid {
        variable,
        problem: "not a number".into(),
    })
}

impl SyncConfig {
    /// Reads and validates the configuration; errors name the variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = SourceConfig::default();
        let page_size: u32 = numeric(env, vars::SYNC_PAGE_SIZE, KEAP_MAX_PAGE_SIZE)?;
        if page_size == 0 || page_size > KEAP_MAX_PAGE_SIZE {
            return Err(ConfigError::Invalid {
                variable: vars::SYNC_PAGE_SIZE,
                problem: format!("must be between 1 and {KEAP_MAX_PAGE_SIZE}"),
            });
        }
        let default_retry = RetryPolicy::default();
        let retry = RetryPolicy {
            max_attempts: numeric(env, vars::SYNC_RETRY_ATTEMPTS, default_retry.max_attempts)?,
            base_ms: numeric(env, vars::SYNC_RETRY_BASE_MS, default_retry.base_ms)?,
            ..default_retry
        };
        Ok(Self {
            source: SourceConfig {
                keap_api_base: text(env, vars::KEAP_API_BASE_URL)
                    .unwrap_or(defaults.keap_api_base)
                    .trim_end_matches('/')
                    .to_owned(),
                shopify_admin_base: text(env, vars::SHOPIFY_ADMIN_BASE_URL)
                    .unwrap_or(defaults.shopify_admin_base),
                shopify_api_version: text(env, vars::SHOPIFY_API_VERSION)
                    .unwrap_or(defaults.shopify_api_version),
                page_size,
                overlap_ms: numeric(env, vars::SYNC_OVERLAP_MS, DEFAULT_OVERLAP_MS)?,
            },
            max_pages_per_invocation: numeric(
                env,
                vars::SYNC_MAX_PAGES_PER_INVOCATION,
                DEFAULT_MAX_PAGES_PER_INVOCATION,
            )?
            .max(1),
            lease_ttl_ms: numeric(env, vars::SYNC_LEASE_TTL_MS, DEFAULT_LEASE_TTL_MS)?,
            retry,
            request_timeout_ms: numeric(
                env,
                vars::SYNC_REQUEST_TIMEOUT_MS,
                DEFAULT_REQUEST_TIMEOUT_MS,
            )?,
            max_inline_wait_ms: numeric(
                env,
                vars::SYNC_MAX_INLINE_WAIT_MS,
                DEFAULT_MAX_INLINE_WAIT_MS,
            )?,
        })
    }

    /// The limits the run machine works within.
    pub fn run_limits(&self) -> RunLimits {
        RunLimits {
            retry: self.retry,
            max_pages_per_invocation: self.max_pages_per_invocation,
            max_inline_wait_ms: self.max_inline_wait_ms,
            lease_ttl_ms: self.lease_ttl_ms,
        }
    }
}
