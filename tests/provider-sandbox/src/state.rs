//! The sandbox's shared state: configuration, clock, one store per provider resource, the
//! request recorder and the fault book. Everything sits behind `std` locks that are never
//! held across an `.await`.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::{RuntimeConfig, SandboxConfig};
use crate::control::{FaultBook, Recorder};
use crate::hold::HoldBook;
use crate::keap::hooks::HookStore;
use crate::keap::oauth::OAuthStore;
use crate::keap::KeapState;
use crate::shopify::oauth::ShopifyOAuthStore;
use crate::shopify::webhooks::WebhookStore;
use crate::shopify::{normalize_shop, ShopifyState};

/// The state every handler shares.
pub type SharedState = Arc<AppState>;

/// Everything the sandbox knows.
#[derive(Debug)]
pub struct AppState {
    /// Settings fixed at start.
    pub config: SandboxConfig,
    /// Source of "now".
    pub clock: Clock,
    /// Settings changeable at run time.
    runtime: Mutex<RuntimeConfig>,
    /// Keap's stores (OAuth grants, contacts, quota windows).
    pub keap: KeapState,
    /// Shopify's stores (OAuth codes and access tokens).
    pub shopify: ShopifyState,
    /// GitHub's repositories, tokens and rate windows.
    pub github: crate::github::GitHubState,
    /// GitLab's projects, tokens and rate windows.
    pub gitlab: crate::gitlab::GitLabState,
    /// Bitbucket's repositories and tokens.
    pub bitbucket: crate::bitbucket::BitbucketState,
    /// The OpenAI-compatible endpoint's received requests.
    pub openai: crate::openai::OpenAiState,
    /// Counters and the request log.
    pub recorder: Mutex<Recorder>,
    /// Faults queued per endpoint.
    pub faults: Mutex<FaultBook>,
    /// Requests to hold open until released.
    pub holds: Mutex<HoldBook>,
    /// The HTTP client that delivers hooks and webhooks.
    pub http: reqwest::Client,
    /// Serialises state-file writes so an older snapshot never overwrites a newer one.
    persist_lock: Mutex<()>,
}

/// What `--state-file` keeps across restarts: OAuth grants (so a local Worker stays
/// connected), runtime settings, Keap REST hooks and Shopify webhook subscriptions (real
/// Keap and Shopify keep them, so a Worker's registrations must survive a restart). Records
/// are regenerated from the seed instead.
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    runtime: RuntimeConfig,
    keap_oauth: OAuthStore,
    /// Added after version 1 shipped; files without it restore with no Shopify tokens.
    #[serde(default)]
    shopify_oauth: ShopifyOAuthStore,
    /// Keap REST hooks (keys, event keys, URLs, status, latest handshake). Added later:
    /// files without it restore with no hooks.
    #[serde(default)]
    keap_hooks: HookStore,
    /// Shopify webhook subscriptions (ids, shops, topics, targets, times). Added later:
    /// files without it restore with no subscriptions.
    #[serde(default)]
    shopify_webhooks: WebhookStore,
}

const STATE_FILE_VERSION: u32 = 1;

/// Locks a mutex, ignoring poisoning: a panicked handler must not wedge the sandbox.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks an `RwLock`, ignoring poisoning.
pub fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks an `RwLock`, ignoring poisoning.
pub fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl AppState {
    /// Builds the state, generating the seed data.
    pub fn new(config: SandboxConfig, clock: Clock) -> Self {
        let keap = KeapState::new(&config);
        let shopify = ShopifyState::new(&config);
        let github = crate::github::GitHubState::seeded(clock.now_ms());
        let gitlab = crate::gitlab::GitLabState::seeded(clock.now_ms());
        let bitbucket = crate::bitbucket::BitbucketState::seeded(clock.now_ms());
        Self {
            runtime: Mutex::new(config.runtime.clone()),
            config,
            clock,
            keap,
            shopify,
            github,
            gitlab,
            bitbucket,
            openai: crate::openai::OpenAiState::default(),
            recorder: Mutex::new(Recorder::default()),
            faults: Mutex::new(FaultBook::default()),
            holds: Mutex::new(HoldBook::default()),
            http: crate::outbound::client(),
            persist_lock: Mutex::new(()),
        }
    }

    /// A copy of the current runtime settings.
    pub fn runtime(&self) -> RuntimeConfig {
        lock(&self.runtime).clone()
    }

    /// Changes the runtime settings and persists them; returns the new settings.
    pub fn update_runtime(&self, change: impl FnOnce(&mut RuntimeConfig)) -> RuntimeConfig {
        let updated = {
            let mut runtime = lock(&self.runtime);
            change(&mut runtime);
            runtime.clone()
        };
        self.persist();
        updated
    }

    /// Whether `token` is a live Shopify access token issued for `shop` (for the Admin API's
    /// `X-Shopify-Access-Token`). `shop` is compared in canonical (lowercase) form; an
    /// invalid shop domain never matches.
    pub fn shopify_token_valid(&self, shop: &str, token: &str) -> bool {
        normalize_shop(shop).is_some_and(|shop| lock(&self.shopify.oauth).token_valid(&shop, token))
    }

    /// Loads `--state-file` if it exists. A missing file is a fresh start; an unreadable or
    /// corrupt one is an error, so a typo never silently drops a developer's connection.
    pub fn restore(&self) -> io::Result<bool> {
        let Some(path) = &self.config.state_file else {
            return Ok(false);
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let file: StateFile = serde_json::from_str(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("state file {}: {e}", path.display()),
            )
        })?;
        if file.version != STATE_FILE_VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "state file {}: version {} (expected {STATE_FILE_VERSION})",
                    path.display(),
                    file.version
                ),
            ));
        }
        *lock(&self.runtime) = file.runtime;
        *lock(&self.keap.oauth) = file.keap_oauth;
        *lock(&self.shopify.oauth) = file.shopify_oauth;
        *lock(&self.keap.hooks) = file.keap_hooks;
        *lock(&self.shopify.webhooks) = file.shopify_webhooks;
        Ok(true)
    }

    /// Writes the state file (if configured). Failures are logged, not fatal: the sandbox
    /// keeps serving from memory. Call it after every change to a kept store, holding none
    /// of the store locks (it takes them).
    pub fn persist(&self) {
        let Some(path) = &self.config.state_file else {
            return;
        };
        let _guard = lock(&self.persist_lock);
        let file = StateFile {
            version: STATE_FILE_VERSION,
            runtime: self.runtime(),
            keap_oauth: lock(&self.keap.oauth).clone(),
            shopify_oauth: lock(&self.shopify.oauth).clone(),
            keap_hooks: lock(&self.keap.hooks).clone(),
            shopify_webhooks: lock(&self.shopify.webhooks).clone(),
        };
        if let Err(e) = write_atomically(path, &file) {
            eprintln!(
                "provider-sandbox: cannot write state file {}: {e}",
                path.display()
            );
        }
    }
}

/// Write to a sibling temp file and rename, so a crash never leaves half a file.
fn write_atomically(path: &Path, file: &StateFile) -> io::Result<()> {
    let text = serde_json::to_string_pretty(file).map_err(io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
