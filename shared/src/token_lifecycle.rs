//! The lifecycle of one connection's tokens as a pure state machine over passed-in time.
//!
//! The coordinator's Durable Object is the single owner of a connection's tokens. It loads
//! a [`TokenLifecycle`], asks [`TokenLifecycle::decide`] before using the access token, carries
//! out a refresh when told to, reports the outcome with `on_refresh_*`, saves, and sets its
//! alarm to [`TokenLifecycle::next_alarm`]. Refreshing in exactly one place matters because
//! Keap's refresh tokens are single use and rotate on every refresh
//! (<https://github.com/infusionsoft/infusionsoft-php/issues/99>): the new pair must be
//! persisted before anyone uses it.
//!
//! Invariant: at the instant [`TokenLifecycle::next_alarm`] returns, `decide` answers
//! [`TokenDecision::Refresh`], so an alarm handler that just calls `decide` never idles.
//!
//! The lifecycle holds no token values; the shell stores sealed tokens beside it
//! ([`crate::token_cipher`]).
//!
//! A refresh waits on the token endpoint between reading the record and writing it back,
//! and the Durable Object serves other requests meanwhile: the user may delete the
//! connection or run the OAuth flow again. Every new grant and every deletion moves
//! [`TokenLifecycle::generation`], and [`TokenLifecycle::refresh_write_back`] tells the shell
//! whether the refresh's outcome may still be stored, so a deleted connection stays deleted
//! and a reauthorisation is never overwritten by an older refresh.

use serde::{Deserialize, Serialize};

use crate::oauth::TokenEndpointError;
use crate::Timestamp;

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

/// When to refresh and how to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPolicy {
    /// Refresh when the access token expires within this (default 5 min).
    pub refresh_margin_ms: i64,
    /// Refresh at least this often, so a refresh token never idles out (Keap's live 45 days;
    /// default 3 days).
    pub idle_refresh_interval_ms: i64,
    /// First retry delay after a failed refresh (default 1 s); doubles per failure.
    pub retry_base_ms: i64,
    /// Longest retry delay (default 5 min).
    pub retry_max_ms: i64,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            refresh_margin_ms: 5 * MINUTE_MS,
            idle_refresh_interval_ms: 3 * DAY_MS,
            retry_base_ms: SECOND_MS,
            retry_max_ms: 5 * MINUTE_MS,
        }
    }
}

impl TokenPolicy {
    /// The delay before the retry that follows `failures_so_far` consecutive failures:
    /// `min(retry_base_ms * 2^failures_so_far, retry_max_ms)`.
    pub fn retry_delay_ms(&self, failures_so_far: u32) -> i64 {
        // 2^30 times any sane base already exceeds any sane cap; the clamp avoids overflow.
        let factor = 1_i64 << failures_so_far.min(30);
        self.retry_base_ms
            .max(0)
            .saturating_mul(factor)
            .min(self.retry_max_ms.max(0))
    }
}

/// Whether a connection's tokens are usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    /// Tokens are usable or can be refreshed.
    Active,
    /// The grant is dead (refresh token rejected or absent and expired): the user must run
    /// the OAuth flow again.
    ReauthRequired,
    /// Disconnected on purpose; tokens were deleted.
    Revoked,
}

impl ConnectionStatus {
    /// The name used in JSON and storage (`active`, `reauth_required`, `revoked`).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Active => "active",
            ConnectionStatus::ReauthRequired => "reauth_required",
            ConnectionStatus::Revoked => "revoked",
        }
    }
}

impl std::fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do about the access token now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenDecision {
    /// The stored access token is good: use it.
    UseCurrent,
    /// Refresh now, persist the new pair, then report with `on_refresh_succeeded`/`_failed`.
    Refresh,
    /// The access token has expired and refreshing is backing off after failures: try at `at`.
    RetryLater {
        /// When the next refresh attempt is allowed.
        at: Timestamp,
    },
    /// No usable token and no way to get one: the user must reauthorise.
    ReauthRequired,
    /// The connection was revoked.
    Revoked,
}

/// The token state of one connection (no token values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenLifecycle {
    /// Whether the tokens are usable.
    pub status: ConnectionStatus,
    /// When the access token expires; `None` when it never does (Shopify offline tokens).
    pub access_expires_at: Option<Timestamp>,
    /// When the current tokens were obtained (by the OAuth flow or a refresh).
    pub last_refresh_at: Option<Timestamp>,
    /// Refresh failures since the last success.
    pub consecutive_failures: u32,
    /// While backing off: no refresh attempt before this instant.
    pub next_retry_at: Option<Timestamp>,
    /// Why the last refresh failed (never a token).
    pub last_error: Option<String>,
    /// Whether a refresh token is stored.
    pub has_refresh_token: bool,
    /// Which grant the tokens descend from: moved by every new OAuth flow and by deletion,
    /// never by a refresh (records stored before it existed read as 0).
    #[serde(default)]
    pub generation: u64,
}

/// What a refresh that has just finished may do with its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshWriteBack {
    /// The connection is still the one the refresh started from: store the outcome.
    Store,
    /// A new OAuth flow replaced the tokens meanwhile: drop the outcome and serve the
    /// newer tokens.
    Superseded,
    /// The connection was deleted meanwhile: drop the outcome; it stays deleted.
    Deleted,
}

/// `now + expires_in_secs`, or `None` for 0 or less ("never expires").
fn expiry(expires_in_secs: i64, now: Timestamp) -> Option<Timestamp> {
    (expires_in_secs > 0).then(|| now.plus_millis(expires_in_secs.saturating_mul(SECOND_MS)))
}

impl TokenLifecycle {
    /// The lifecycle of tokens just granted by the OAuth flow at `now`.
    pub fn new_from_grant(expires_in_secs: i64, has_refresh_token: bool, now: Timestamp) -> Self {
        Self {
            status: ConnectionStatus::Active,
            access_expires_at: expiry(expires_in_secs, now),
            last_refresh_at: Some(now),
            consecutive_failures: 0,
            next_retry_at: None,
            last_error: None,
            has_refresh_token,
            generation: 0,
        }
    }

    /// The same grant, as the successor of a deleted connection whose last generation was
    /// `deleted_generation` (the shell keeps that number when it deletes the tokens), so a
    /// refresh that started before the deletion can never take the new grant for its own.
    #[must_use]
    pub fn succeeding(mut self, deleted_generation: Option<u64>) -> Self {
        if let Some(previous) = deleted_generation {
            self.generation = previous.saturating_add(1);
        }
        self
    }

    /// Whether a refresh that started when the record had `started_generation` may store its
    /// outcome now that the record reads `current` (`None`: deleted). Decide and store with
    /// no `await` in between.
    pub fn refresh_write_back(
        current: Option<&TokenLifecycle>,
        started_generation: u64,
    ) -> RefreshWriteBack {
        match current {
            None => RefreshWriteBack::Deleted,
            Some(c) if c.status == ConnectionStatus::Revoked => RefreshWriteBack::Deleted,
            Some(c) if c.generation != started_generation => RefreshWriteBack::Superseded,
            Some(_) => RefreshWriteBack::Store,
        }
    }

    /// Whether the access token can still be sent at `now` (ignoring the margin).
    pub fn access_token_valid(&self, now: Timestamp) -> bool {
        self.access_expires_at.is_none_or(|at| now < at)
    }

    /// When a refresh falls due, ignoring backoff: `min(access_expires_at - margin,
    /// last_refresh_at + idle interval)`; `None` when nothing ever falls due.
    fn refresh_due_at(&self, policy: &TokenPolicy) -> Option<Timestamp> {
        let by_expiry = self
            .access_expires_at
            .map(|at| at.plus_millis(-policy.refresh_margin_ms));
        let by_idle = self
            .last_refresh_at
            .map(|at| at.plus_millis(policy.idle_refresh_interval_ms));
        match (by_expiry, by_idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// While backing off at `now`: the instant the next attempt is allowed.
    fn backing_off_until(&self, now: Timestamp) -> Option<Timestamp> {
        self.next_retry_at.filter(|at| now < *at)
    }

    /// What to do about the access token at `now`.
    ///
    /// `UseCurrent` while the token is valid beyond the margin and the idle refresh is not
    /// due; `Refresh` once either is due and a refresh token exists (unless backing off, when
    /// a still-valid token is used and an expired one means `RetryLater`); without a refresh
    /// token an expired access token means `ReauthRequired`.
    pub fn decide(&self, now: Timestamp, policy: &TokenPolicy) -> TokenDecision {
        match self.status {
            ConnectionStatus::Revoked => return TokenDecision::Revoked,
            ConnectionStatus::ReauthRequired => return TokenDecision::ReauthRequired,
            ConnectionStatus::Active => {}
        }
        let valid = self.access_token_valid(now);
        if !self.has_refresh_token {
            return if valid {
                TokenDecision::UseCurrent
            } else {
                TokenDecision::ReauthRequired
            };
        }
        let due = self.refresh_due_at(policy).is_some_and(|at| now >= at);
        if !due {
            return TokenDecision::UseCurrent;
        }
        match self.backing_off_until(now) {
            Some(_) if valid => TokenDecision::UseCurrent,
            Some(at) => TokenDecision::RetryLater { at },
            None => TokenDecision::Refresh,
        }
    }

    /// A refresh at `now` returned new tokens. Pass whether a refresh token is held
    /// afterwards (the rotated one, or the old one if the provider sent none).
    pub fn on_refresh_succeeded(
        &mut self,
        expires_in_secs: i64,
        has_refresh_token: bool,
        now: Timestamp,
    ) {
        if self.status == ConnectionStatus::Revoked {
            // A refresh that raced a disconnect must not bring the connection back.
            return;
        }
        self.restore(expires_in_secs, has_refresh_token, now);
    }

    /// A refresh at `now` failed with `error`.
    ///
    /// `InvalidGrant` ends refreshing (`ReauthRequired`). Anything else keeps the connection
    /// `Active` and backs off `min(base * 2^failures, max)`: `Transient` and `Malformed` may
    /// pass, and `Rejected` (e.g. `invalid_client` while a client secret is being rotated)
    /// may be fixed by configuration without the user. After a `Malformed` 2xx, Keap may
    /// already have rotated the refresh token; the retry then meets `invalid_grant`.
    pub fn on_refresh_failed(
        &mut self,
        error: &TokenEndpointError,
        now: Timestamp,
        policy: &TokenPolicy,
    ) {
        if self.status == ConnectionStatus::Revoked {
            return;
        }
        self.last_error = Some(error.to_string());
        match error {
            TokenEndpointError::InvalidGrant { .. } => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.status = ConnectionStatus::ReauthRequired;
                self.next_retry_at = None;
            }
            TokenEndpointError::Transient { .. }
            | TokenEndpointError::Malformed
            | TokenEndpointError::Rejected { .. } => {
                let delay = policy.retry_delay_ms(self.consecutive_failures);
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.next_retry_at = Some(now.plus_millis(delay));
            }
        }
    }

    /// The API refused the access token at `now` (HTTP 401) although it had not expired, e.g.
    /// revoked at the provider: treat it as expired, so the next decision refreshes or asks
    /// for reauthorisation.
    pub fn on_access_token_rejected(&mut self, now: Timestamp) {
        if self.access_token_valid(now) {
            self.access_expires_at = Some(now);
        }
    }

    /// The user completed a new OAuth flow at `now`: `Active` again with fresh tokens, as a
    /// new generation (a refresh still in flight from the old one must not overwrite them).
    pub fn on_reauthorized(
        &mut self,
        expires_in_secs: i64,
        has_refresh_token: bool,
        now: Timestamp,
    ) {
        self.restore(expires_in_secs, has_refresh_token, now);
        self.generation = self.generation.saturating_add(1);
    }

    /// The user disconnected: no more refreshes; the shell deletes the stored tokens and
    /// keeps only [`TokenLifecycle::generation`] (see [`TokenLifecycle::succeeding`]).
    pub fn revoke(&mut self) {
        self.status = ConnectionStatus::Revoked;
        self.has_refresh_token = false;
        self.next_retry_at = None;
        self.generation = self.generation.saturating_add(1);
    }

    /// When to wake up and refresh proactively: when a refresh falls due (see
    /// [`TokenLifecycle::decide`]), or when backing off ends if that is later; never before
    /// `now`. `None` when not `Active` or there is no refresh token.
    pub fn next_alarm(&self, now: Timestamp, policy: &TokenPolicy) -> Option<Timestamp> {
        if self.status != ConnectionStatus::Active || !self.has_refresh_token {
            return None;
        }
        let due = self.refresh_due_at(policy)?;
        let at = self.next_retry_at.map_or(due, |retry| due.max(retry));
        Some(at.max(now))
    }

    fn restore(&mut self, expires_in_secs: i64, has_refresh_token: bool, now: Timestamp) {
        self.status = ConnectionStatus::Active;
        self.access_expires_at = expiry(expires_in_secs, now);
        self.last_refresh_at = Some(now);
        self.consecutive_failures = 0;
        self.next_retry_at = None;
        self.last_error = None;
        self.has_refresh_token = has_refresh_token;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_767_225_600_000);
    const HOUR_MS: i64 = 60 * MINUTE_MS;
    const KEAP_ACCESS_SECS: i64 = crate::oauth::keap::ACCESS_TOKEN_LIFETIME_SECS;
    const KEAP_REFRESH_MS: i64 = crate::oauth::keap::REFRESH_TOKEN_LIFETIME_SECS * SECOND_MS;

    fn transient() -> TokenEndpointError {
        TokenEndpointError::Transient { status: 503 }
    }

    fn invalid_grant() -> TokenEndpointError {
        TokenEndpointError::InvalidGrant {
            description: "Invalid refresh token".to_owned(),
        }
    }

    #[test]
    fn policy_defaults() {
        let policy = TokenPolicy::default();
        assert_eq!(policy.refresh_margin_ms, 300_000);
        assert_eq!(policy.idle_refresh_interval_ms, 259_200_000);
        assert_eq!(policy.retry_base_ms, 1_000);
        assert_eq!(policy.retry_max_ms, 300_000);
        assert_eq!(policy.retry_delay_ms(0), 1_000);
        assert_eq!(policy.retry_delay_ms(8), 256_000);
        assert_eq!(policy.retry_delay_ms(9), 300_000);
        assert_eq!(policy.retry_delay_ms(u32::MAX), 300_000);
    }

    #[test]
    fn status_serialises_snake_case() {
        for (status, text) in [
            (ConnectionStatus::Active, "active"),
            (ConnectionStatus::ReauthRequired, "reauth_required"),
            (ConnectionStatus::Revoked, "revoked"),
        ] {
            assert_eq!(
                serde_json::to_value(status).expect("serialisable"),
                serde_json::json!(text)
            );
            assert_eq!(status.to_string(), text);
        }
    }

    #[test]
    fn keap_token_is_used_then_refreshed_within_the_margin() {
        let policy = TokenPolicy::default();
        let lifecycle = TokenLifecycle::new_from_grant(KEAP_ACCESS_SECS, true, T0);
        let expires = T0.plus_millis(KEAP_ACCESS_SECS * SECOND_MS);
        assert_eq!(lifecycle.access_expires_at, Some(expires));
        assert_eq!(lifecycle.decide(T0, &policy), TokenDecision::UseCurrent);
        let refresh_at = expires.plus_millis(-policy.refresh_margin_ms);
        assert_eq!(
            lifecycle.decide(refresh_at.plus_millis(-1), &policy),
            TokenDecision::UseCurrent
        );
        assert_eq!(
            lifecycle.decide(refresh_at, &policy),
            TokenDecision::Refresh
        );
        assert_eq!(lifecycle.decide(expires, &policy), TokenDecision::Refresh);
        assert_eq!(lifecycle.next_alarm(T0, &policy), Some(refresh_at));
        // An alarm that fires late is due at once.
        assert_eq!(
            lifecycle.next_alarm(expires.plus_millis(1), &policy),
            Some(expires.plus_millis(1))
        );
    }

    #[test]
    fn shopify_offline_token_never_needs_anything() {
        let policy = TokenPolicy::default();
        let lifecycle = TokenLifecycle::new_from_grant(0, false, T0);
        assert_eq!(lifecycle.access_expires_at, None);
        let much_later = T0.plus_millis(400 * DAY_MS);
        assert_eq!(
            lifecycle.decide(much_later, &policy),
            TokenDecision::UseCurrent
        );
        assert_eq!(lifecycle.next_alarm(T0, &policy), None);
    }

    #[test]
    fn long_lived_access_token_is_still_refreshed_before_idling_out() {
        let policy = TokenPolicy::default();
        let lifecycle = TokenLifecycle::new_from_grant(30 * 24 * 3600, true, T0);
        let idle_due = T0.plus_millis(policy.idle_refresh_interval_ms);
        assert_eq!(lifecycle.next_alarm(T0, &policy), Some(idle_due));
        assert_eq!(
            lifecycle.decide(idle_due.plus_millis(-1), &policy),
            TokenDecision::UseCurrent
        );
        assert_eq!(lifecycle.decide(idle_due, &policy), TokenDecision::Refresh);
    }

    #[test]
    fn expired_without_refresh_token_needs_reauth() {
        let policy = TokenPolicy::default();
        let lifecycle = TokenLifecycle::new_from_grant(3600, false, T0);
        assert_eq!(
            lifecycle.decide(T0.plus_millis(3600 * SECOND_MS - 1), &policy),
            TokenDecision::UseCurrent
        );
        assert_eq!(
            lifecycle.decide(T0.plus_millis(3600 * SECOND_MS), &policy),
            TokenDecision::ReauthRequired
        );
        assert_eq!(lifecycle.next_alarm(T0, &policy), None);
    }

    #[test]
    fn backing_off_uses_a_valid_token_and_waits_with_an_expired_one() {
        let policy = TokenPolicy::default();
        let mut lifecycle = TokenLifecycle::new_from_grant(KEAP_ACCESS_SECS, true, T0);
        let expires = T0.plus_millis(KEAP_ACCESS_SECS * SECOND_MS);
        let attempt = expires.plus_millis(-policy.refresh_margin_ms);
        lifecycle.on_refresh_failed(&transient(), attempt, &policy);
        assert_eq!(lifecycle.status, ConnectionStatus::Active);
        assert_eq!(lifecycle.consecutive_failures, 1);
        assert_eq!(lifecycle.next_retry_at, Some(attempt.plus_millis(1_000)));
        assert_eq!(
            lifecycle.last_error.as_deref(),
            Some("the token endpoint is temporarily unavailable (HTTP 503)")
        );
        assert_eq!(
            lifecycle.decide(attempt, &policy),
            TokenDecision::UseCurrent
        );
        assert_eq!(
            lifecycle.next_alarm(attempt, &policy),
            Some(attempt.plus_millis(1_000))
        );
        assert_eq!(
            lifecycle.decide(attempt.plus_millis(1_000), &policy),
            TokenDecision::Refresh
        );

        // Expired while a long backoff runs: wait.
        let late = expires.plus_millis(-1_000);
        lifecycle.consecutive_failures = 20;
        lifecycle.on_refresh_failed(&transient(), late, &policy);
        let retry = late.plus_millis(policy.retry_max_ms);
        assert_eq!(lifecycle.decide(late, &policy), TokenDecision::UseCurrent);
        assert_eq!(
            lifecycle.decide(expires, &policy),
            TokenDecision::RetryLater { at: retry }
        );
        assert_eq!(lifecycle.decide(retry, &policy), TokenDecision::Refresh);

        lifecycle.on_refresh_succeeded(KEAP_ACCESS_SECS, true, retry);
        assert_eq!(lifecycle.consecutive_failures, 0);
        assert_eq!(lifecycle.next_retry_at, None);
        assert_eq!(lifecycle.last_error, None);
        assert_eq!(lifecycle.decide(retry, &policy), TokenDecision::UseCurrent);
    }

    #[test]
    fn rejected_backs_off_but_stays_active() {
        let policy = TokenPolicy::default();
        let mut lifecycle = TokenLifecycle::new_from_grant(KEAP_ACCESS_SECS, true, T0);
        let error = TokenEndpointError::Rejected {
            status: 401,
            error: "invalid_client".to_owned(),
        };
        lifecycle.on_refresh_failed(&error, T0, &policy);
        assert_eq!(lifecycle.status, ConnectionStatus::Active);
        assert_eq!(lifecycle.next_retry_at, Some(T0.plus_millis(1_000)));
        assert!(lifecycle
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("invalid_client")));
    }

    #[test]
    fn invalid_grant_requires_reauth_until_a_new_flow() {
        let policy = TokenPolicy::default();
        let mut lifecycle = TokenLifecycle::new_from_grant(KEAP_ACCESS_SECS, true, T0);
        lifecycle.on_refresh_failed(&invalid_grant(), T0, &policy);
        assert_eq!(lifecycle.status, ConnectionStatus::ReauthRequired);
        assert_eq!(lifecycle.decide(T0, &policy), TokenDecision::ReauthRequired);
        assert_eq!(lifecycle.next_alarm(T0, &policy), None);

        let later = T0.plus_millis(HOUR_MS);
        lifecycle.on_reauthorized(KEAP_ACCESS_SECS, true, later);
        assert_eq!(lifecycle.status, ConnectionStatus::Active);
        assert_eq!(lifecycle.consecutive_failures, 0);
        assert_eq!(lifecycle.last_error, None);
        assert_eq!(lifecycle.decide(later, &policy), TokenDecision::UseCurrent);
    }

    #[test]
    fn revoked_is_final_until_reauthorized() {
        let policy = TokenPolicy::default();
        let mut lifecycle = TokenLifecycle::new_from_grant(KEAP_ACCESS_SECS, true, T0);
        lifecycle.revoke();
        assert_eq!(lifecycle.decide(T0, &policy), TokenDecision::Revoked);
        assert_eq!(lifecycle.next_alarm(T0, &policy), None);
        lifecycle.on_refresh_succeeded(KEAP_ACCESS_SECS, true, T0);
        lifecycle.on_refresh_failed(&invalid_grant(), T0, &policy);
        assert_eq!(lifecycle.status, ConnectionStatus::Revoked);
        lifecycle.on_reauthorized(KEAP_ACCESS_SECS, true, T0);
        assert_eq!(lifecycle.status, ConnectionStatus::Active);
    }

    #[test]
    fn access_token_rejection_forces_a_refresh_or_reauth() {
        let policy = TokenPolicy::default();
        let mut keap = TokenLifecycle::new_from_grant(KEAP_ACCESS_SECS, true, T0);
        keap.on_access_token_rejected(T0.plus_millis(HOUR_MS));
        assert_eq!(
            keap.decide(T0.plus_millis(HOUR_MS), &policy),
            TokenDecision::Refresh
        );
        let mut shopify = TokenLifecycle::new_from_grant(0, false, T0);
        shopify.on_access_token_rejected(T0.plus_millis(HOUR_MS));
        assert_eq!(
            shopify.decide(T0.plus_millis(HOUR_MS), &policy),
            TokenDecision::ReauthRequired
        );
    }

    #[test]
    fn serde_round_trip() {
        let mut lifecycle = TokenLifecycle::new_from_grant(KEAP_ACCESS_SECS, true, T0);
        lifecycle.on_refresh_failed(&transient(), T0, &TokenPolicy::default());
        let json = serde_json::to_value(&lifecycle).expect("serialisable");
        assert_eq!(json["status"], "active");
        assert_eq!(json["next_retry_at"], T0.as_millis() + 1_000);
        let back: TokenLifecycle = serde_json::from_value(json).expect("parses");
        assert_eq!(back, lifecycle);
    }

    /// Simulation of the coordinator shell against a fake Keap token endpoint over virtual
    /// time, in the style of quinn-proto's tests: no clock, no I/O, exact instants.
    mod simulation {
        use super::*;

        /// A deterministic pseudo-random sequence (xorshift64*), for fault injection.
        struct Rng(u64);

        impl Rng {
            fn next(&mut self) -> u64 {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
            }

            /// True with probability `percent`/100.
            fn chance(&mut self, percent: u64) -> bool {
                self.next() % 100 < percent
            }
        }

        /// Fake Keap token endpoint: rotating single-use refresh tokens that die after 45
        /// days, access tokens of `access_secs`, and injectable faults.
        struct FakeKeap {
            access_secs: i64,
            /// Serial of the one live refresh token, and when it was issued.
            live_refresh: Option<(u64, Timestamp)>,
            /// Serial and expiry of every access token issued.
            access_tokens: Vec<(u64, Timestamp)>,
            serial: u64,
            rng: Rng,
            /// Percentage of calls answered 503.
            transient_percent: u64,
            /// From this instant, every call is 503.
            down_from: Option<Timestamp>,
            /// From this instant, the refresh token is revoked (user disconnected the app).
            revoked_from: Option<Timestamp>,
            calls: Vec<Timestamp>,
        }

        impl FakeKeap {
            fn new(access_secs: i64, seed: u64) -> Self {
                Self {
                    access_secs,
                    live_refresh: None,
                    access_tokens: Vec::new(),
                    serial: 0,
                    rng: Rng(seed),
                    transient_percent: 0,
                    down_from: None,
                    revoked_from: None,
                    calls: Vec::new(),
                }
            }

            fn issue(&mut self, now: Timestamp) -> (u64, u64, i64) {
                self.serial += 1;
                let access = self.serial;
                self.access_tokens
                    .push((access, now.plus_millis(self.access_secs * SECOND_MS)));
                self.serial += 1;
                let refresh = self.serial;
                self.live_refresh = Some((refresh, now));
                (access, refresh, self.access_secs)
            }

            /// The OAuth code exchange.
            fn grant(&mut self, now: Timestamp) -> (u64, u64, i64) {
                self.issue(now)
            }

            /// `grant_type=refresh_token`: (access, refresh, expires_in) or the error.
            fn refresh(
                &mut self,
                presented: u64,
                now: Timestamp,
            ) -> Result<(u64, u64, i64), TokenEndpointError> {
                self.calls.push(now);
                if self.down_from.is_some_and(|t| now >= t)
                    || self.rng.chance(self.transient_percent)
                {
                    return Err(TokenEndpointError::Transient { status: 503 });
                }
                let live = self.live_refresh.filter(|(serial, issued)| {
                    *serial == presented
                        && now.millis_since(*issued) < KEAP_REFRESH_MS
                        && self.revoked_from.is_none_or(|t| now < t)
                });
                if live.is_none() {
                    return Err(invalid_grant());
                }
                // Single use: the presented token dies with this answer.
                self.live_refresh = None;
                Ok(self.issue(now))
            }

            fn access_valid(&self, serial: u64, now: Timestamp) -> bool {
                self.access_tokens
                    .iter()
                    .any(|(s, expiry)| *s == serial && now < *expiry)
            }
        }

        /// The coordinator shell: the lifecycle plus the token serials it stores.
        struct Shell {
            lifecycle: TokenLifecycle,
            access: u64,
            refresh: u64,
            alarm: Option<Timestamp>,
            policy: TokenPolicy,
            /// (instant, whether the held access token was still valid) of every refresh.
            refreshes: Vec<(Timestamp, bool)>,
            /// Delays between a failed attempt and the next one allowed.
            retry_delays: Vec<i64>,
        }

        impl Shell {
            fn connect(endpoint: &mut FakeKeap, now: Timestamp) -> Self {
                let (access, refresh, expires_in) = endpoint.grant(now);
                let lifecycle = TokenLifecycle::new_from_grant(expires_in, true, now);
                let policy = TokenPolicy::default();
                let alarm = lifecycle.next_alarm(now, &policy);
                Self {
                    lifecycle,
                    access,
                    refresh,
                    alarm,
                    policy,
                    refreshes: Vec::new(),
                    retry_delays: Vec::new(),
                }
            }

            /// What the Durable Object does whenever it runs (alarm or request).
            fn run(&mut self, endpoint: &mut FakeKeap, now: Timestamp) -> TokenDecision {
                let decision = self.lifecycle.decide(now, &self.policy);
                if decision == TokenDecision::Refresh {
                    let was_valid = endpoint.access_valid(self.access, now);
                    match endpoint.refresh(self.refresh, now) {
                        Ok((access, refresh, expires_in)) => {
                            // Persist the rotated pair before anything else uses it.
                            self.access = access;
                            self.refresh = refresh;
                            self.lifecycle.on_refresh_succeeded(expires_in, true, now);
                            self.refreshes.push((now, was_valid));
                        }
                        Err(error) => {
                            self.lifecycle.on_refresh_failed(&error, now, &self.policy);
                            if let Some(at) = self.lifecycle.next_retry_at {
                                self.retry_delays.push(at.millis_since(now));
                            }
                        }
                    }
                }
                self.alarm = self.lifecycle.next_alarm(now, &self.policy);
                self.lifecycle.decide(now, &self.policy)
            }
        }

        /// What one simulated run observed.
        struct Outcome {
            shell: Shell,
            endpoint: FakeKeap,
            /// API uses that found no valid access token although the endpoint was healthy.
            stale_uses: usize,
            api_uses: usize,
        }

        /// Runs `days` of virtual time: alarms fire at `next_alarm`, and the sync worker asks
        /// for a token every `use_every_ms` (if set).
        fn simulate(mut endpoint: FakeKeap, days: i64, use_every_ms: Option<i64>) -> Outcome {
            let end = T0.plus_millis(days * DAY_MS);
            let mut shell = Shell::connect(&mut endpoint, T0);
            let mut next_use = use_every_ms.map(|every| T0.plus_millis(every));
            let (mut stale_uses, mut api_uses) = (0, 0);
            loop {
                let now = match (shell.alarm, next_use) {
                    (Some(a), Some(u)) => a.min(u),
                    (a, u) => match a.or(u) {
                        Some(t) => t,
                        None => break,
                    },
                };
                if now > end {
                    break;
                }
                if shell.alarm == Some(now) {
                    shell.alarm = None;
                    let decision = shell.run(&mut endpoint, now);
                    // The invariant: an alarm never fires into "nothing to do" while the
                    // refresh is due; it either refreshed, failed, or waits on a retry.
                    assert_ne!(decision, TokenDecision::Refresh, "at {now:?}");
                }
                if next_use == Some(now) {
                    if let (Some(every), TokenDecision::UseCurrent) =
                        (use_every_ms, shell.run(&mut endpoint, now))
                    {
                        api_uses += 1;
                        if !endpoint.access_valid(shell.access, now) {
                            stale_uses += 1;
                        }
                        next_use = Some(now.plus_millis(every));
                    } else {
                        next_use = use_every_ms.map(|every| now.plus_millis(every));
                    }
                }
            }
            Outcome {
                shell,
                endpoint,
                stale_uses,
                api_uses,
            }
        }

        fn max_gap_between_refreshes(outcome: &Outcome) -> i64 {
            let mut instants = vec![T0];
            instants.extend(outcome.shell.refreshes.iter().map(|(t, _)| *t));
            instants
                .windows(2)
                .map(|w| w[1].millis_since(w[0]))
                .max()
                .unwrap_or(0)
        }

        #[test]
        fn healthy_endpoint_refreshes_before_every_expiry_for_60_days() {
            let outcome = simulate(FakeKeap::new(KEAP_ACCESS_SECS, 1), 61, Some(17 * MINUTE_MS));
            let refreshes = &outcome.shell.refreshes;
            // One refresh per access token lifetime less the margin.
            assert!(refreshes.len() >= 60, "{}", refreshes.len());
            assert!(refreshes.iter().all(|(_, was_valid)| *was_valid));
            assert_eq!(outcome.stale_uses, 0);
            assert!(outcome.api_uses > 5_000);
            assert_eq!(outcome.shell.lifecycle.status, ConnectionStatus::Active);
            assert_eq!(outcome.endpoint.calls.len(), refreshes.len());
            assert!(max_gap_between_refreshes(&outcome) <= KEAP_ACCESS_SECS * SECOND_MS);
        }

        #[test]
        fn an_unused_connection_never_lets_its_refresh_token_idle_out() {
            // No API use at all, and access tokens that outlive the refresh token: only the
            // idle refresh keeps the connection alive.
            let outcome = simulate(FakeKeap::new(60 * 24 * 3600, 2), 120, None);
            let policy = TokenPolicy::default();
            let gap = max_gap_between_refreshes(&outcome);
            assert!(gap <= policy.idle_refresh_interval_ms, "{gap}");
            assert!(gap < KEAP_REFRESH_MS);
            assert!(outcome.shell.refreshes.len() >= 120 / 3);
            assert_eq!(outcome.shell.lifecycle.status, ConnectionStatus::Active);
        }

        #[test]
        fn flaky_endpoint_recovers_without_losing_the_connection() {
            let mut endpoint = FakeKeap::new(KEAP_ACCESS_SECS, 0x5eed);
            endpoint.transient_percent = 40;
            let outcome = simulate(endpoint, 75, Some(23 * MINUTE_MS));
            let shell = &outcome.shell;
            assert_eq!(shell.lifecycle.status, ConnectionStatus::Active);
            assert!(!shell.retry_delays.is_empty());
            // Some refreshes needed several attempts in a row.
            assert!(shell.retry_delays.iter().any(|d| *d >= 4_000));
            // Every failure was retried long before the 5-minute margin ran out.
            assert_eq!(outcome.stale_uses, 0);
            assert!(shell.refreshes.iter().all(|(_, was_valid)| *was_valid));
            assert!(max_gap_between_refreshes(&outcome) < KEAP_REFRESH_MS);
            assert!(outcome.endpoint.calls.len() > shell.refreshes.len());
        }

        #[test]
        fn invalid_grant_stops_all_refresh_attempts() {
            let mut endpoint = FakeKeap::new(KEAP_ACCESS_SECS, 3);
            let revoked_at = T0.plus_millis(10 * DAY_MS + 7 * HOUR_MS);
            endpoint.revoked_from = Some(revoked_at);
            let outcome = simulate(endpoint, 60, Some(31 * MINUTE_MS));
            let calls = &outcome.endpoint.calls;
            let after: Vec<_> = calls.iter().filter(|t| **t >= revoked_at).collect();
            assert_eq!(after.len(), 1, "exactly one attempt meets invalid_grant");
            let lifecycle = &outcome.shell.lifecycle;
            assert_eq!(lifecycle.status, ConnectionStatus::ReauthRequired);
            assert_eq!(outcome.shell.alarm, None);
            assert_eq!(
                lifecycle.last_error.as_deref(),
                Some("the provider rejected the grant: Invalid refresh token")
            );
            let end = T0.plus_millis(60 * DAY_MS);
            assert_eq!(
                lifecycle.decide(end, &TokenPolicy::default()),
                TokenDecision::ReauthRequired
            );
        }

        #[test]
        fn backoff_doubles_from_one_second_and_caps_at_five_minutes() {
            let mut endpoint = FakeKeap::new(KEAP_ACCESS_SECS, 4);
            let outage = T0.plus_millis(5 * DAY_MS);
            endpoint.down_from = Some(outage);
            let outcome = simulate(endpoint, 7, Some(10 * MINUTE_MS));
            let delays = &outcome.shell.retry_delays;
            assert_eq!(&delays[..4], &[1_000, 2_000, 4_000, 8_000]);
            assert!(delays.windows(2).all(|w| w[0] <= w[1]));
            assert_eq!(delays.iter().max(), Some(&300_000));
            assert!(delays.iter().filter(|d| **d == 300_000).count() > 100);
            // While the endpoint is down the connection stays Active (it may recover), and
            // once the access token has expired the sync worker is told to wait.
            let lifecycle = &outcome.shell.lifecycle;
            assert_eq!(lifecycle.status, ConnectionStatus::Active);
            let end = T0.plus_millis(7 * DAY_MS);
            assert!(matches!(
                lifecycle.decide(end, &TokenPolicy::default()),
                TokenDecision::RetryLater { .. } | TokenDecision::Refresh
            ));
            // Attempts during the outage are spaced by the backoff, not by API use.
            let during: Vec<_> = outcome
                .endpoint
                .calls
                .iter()
                .filter(|t| **t >= outage)
                .collect();
            let capped_spacing = during
                .windows(2)
                .filter(|w| w[1].millis_since(*w[0]) < 300_000)
                .count();
            assert!(capped_spacing <= 9, "{capped_spacing}");
        }

        /// The Durable Object's storage when refreshes may overlap other requests: the
        /// connection record (lifecycle plus token serials), `None` once deleted, and the
        /// generation kept after a deletion.
        struct RacingObject {
            record: Option<(TokenLifecycle, u64, u64)>,
            deleted_generation: Option<u64>,
            /// Skip the write-back check (the behaviour before it existed), to show what
            /// the check prevents.
            unchecked: bool,
        }

        /// A refresh between reading the record and writing it back.
        struct InFlight {
            generation: u64,
            lifecycle: TokenLifecycle,
            answer: Result<(u64, u64, i64), TokenEndpointError>,
        }

        impl RacingObject {
            fn new(unchecked: bool) -> Self {
                Self {
                    record: None,
                    deleted_generation: None,
                    unchecked,
                }
            }

            /// The OAuth callback: a new connection, or new tokens for the existing one.
            fn authorize(&mut self, endpoint: &mut FakeKeap, now: Timestamp) {
                let (access, refresh, expires_in) = endpoint.grant(now);
                let lifecycle = match self.record.take() {
                    Some((mut lifecycle, _, _)) => {
                        lifecycle.on_reauthorized(expires_in, true, now);
                        lifecycle
                    }
                    None => TokenLifecycle::new_from_grant(expires_in, true, now)
                        .succeeding(self.deleted_generation),
                };
                self.record = Some((lifecycle, access, refresh));
            }

            fn delete(&mut self) {
                if let Some((mut lifecycle, _, _)) = self.record.take() {
                    lifecycle.revoke();
                    self.deleted_generation = Some(lifecycle.generation);
                }
            }

            /// Reads the record and sends the refresh; Keap spends the refresh token on
            /// arrival, whenever its answer gets back.
            fn start_refresh(&self, endpoint: &mut FakeKeap, now: Timestamp) -> Option<InFlight> {
                let (lifecycle, _, refresh) = self.record.as_ref()?;
                Some(InFlight {
                    generation: lifecycle.generation,
                    lifecycle: lifecycle.clone(),
                    answer: endpoint.refresh(*refresh, now),
                })
            }

            /// The answer arrives at `now`: write back, unless the connection moved on.
            fn finish_refresh(&mut self, inflight: InFlight, now: Timestamp) -> RefreshWriteBack {
                let verdict = if self.unchecked {
                    RefreshWriteBack::Store
                } else {
                    TokenLifecycle::refresh_write_back(
                        self.record.as_ref().map(|(l, _, _)| l),
                        inflight.generation,
                    )
                };
                if verdict != RefreshWriteBack::Store {
                    return verdict;
                }
                let (mut lifecycle, mut access, mut refresh) =
                    self.record
                        .clone()
                        .unwrap_or((inflight.lifecycle.clone(), 0, 0));
                if self.unchecked {
                    // The old shell wrote back the copy it read before the wait.
                    lifecycle = inflight.lifecycle;
                }
                match inflight.answer {
                    Ok((a, r, expires_in)) => {
                        lifecycle.on_refresh_succeeded(expires_in, true, now);
                        access = a;
                        refresh = r;
                    }
                    Err(error) => {
                        lifecycle.on_refresh_failed(&error, now, &TokenPolicy::default());
                    }
                }
                self.record = Some((lifecycle, access, refresh));
                verdict
            }

            /// A token request at `now`: refresh when due (answered at once) and report the
            /// decision afterwards.
            fn use_token(&mut self, endpoint: &mut FakeKeap, now: Timestamp) -> TokenDecision {
                let policy = TokenPolicy::default();
                let Some((lifecycle, _, _)) = &self.record else {
                    return TokenDecision::Revoked;
                };
                if lifecycle.decide(now, &policy) == TokenDecision::Refresh {
                    if let Some(inflight) = self.start_refresh(endpoint, now) {
                        self.finish_refresh(inflight, now);
                    }
                }
                self.record
                    .as_ref()
                    .map_or(TokenDecision::Revoked, |(l, _, _)| l.decide(now, &policy))
            }
        }

        /// A refresh held at the token endpoint for 10 s while the user deletes the
        /// connection: its answer is dropped and the connection stays deleted; a new flow
        /// afterwards starts a newer generation that an even older refresh cannot claim.
        #[test]
        fn a_refresh_that_outlives_a_delete_leaves_it_deleted() {
            for unchecked in [false, true] {
                let mut endpoint = FakeKeap::new(KEAP_ACCESS_SECS, 7);
                let mut object = RacingObject::new(unchecked);
                object.authorize(&mut endpoint, T0);
                let due = T0.plus_millis(KEAP_ACCESS_SECS * SECOND_MS - 5 * MINUTE_MS);
                let inflight = object.start_refresh(&mut endpoint, due).expect("record");
                object.delete();
                let verdict = object.finish_refresh(inflight, due.plus_millis(10_000));
                if unchecked {
                    // Without the check the refresh brings the connection back.
                    assert!(object.record.is_some());
                    continue;
                }
                assert_eq!(verdict, RefreshWriteBack::Deleted);
                assert!(object.record.is_none(), "a deleted connection came back");
                assert_eq!(
                    object.use_token(&mut endpoint, due.plus_millis(20_000)),
                    TokenDecision::Revoked
                );

                // Deleted, reconnected, and only then the old refresh answers.
                let inflight = {
                    object.authorize(&mut endpoint, due.plus_millis(30_000));
                    let later = due.plus_millis(HOUR_MS);
                    let inflight = object.start_refresh(&mut endpoint, later).expect("record");
                    object.delete();
                    object.authorize(&mut endpoint, later.plus_millis(1_000));
                    inflight
                };
                let (_, access, refresh) = object.record.clone().expect("reconnected");
                let verdict = object.finish_refresh(inflight, due.plus_millis(HOUR_MS + 5_000));
                assert_eq!(verdict, RefreshWriteBack::Superseded);
                let (lifecycle, a, r) = object.record.clone().expect("still connected");
                assert_eq!(
                    (a, r),
                    (access, refresh),
                    "the old refresh took the new grant"
                );
                assert_eq!(lifecycle.status, ConnectionStatus::Active);
            }
        }

        /// A refresh held at the token endpoint while the user runs the OAuth flow again: the
        /// reauthorisation's tokens stay, and they keep working for weeks of refreshes.
        /// Without the check the older refresh overwrites them and, once Keap has rotated
        /// past its token, the connection is lost.
        #[test]
        fn a_reauthorization_is_never_overwritten_by_an_older_refresh() {
            for unchecked in [false, true] {
                let mut endpoint = FakeKeap::new(KEAP_ACCESS_SECS, 11);
                let mut object = RacingObject::new(unchecked);
                object.authorize(&mut endpoint, T0);
                let due = T0.plus_millis(KEAP_ACCESS_SECS * SECOND_MS - 5 * MINUTE_MS);
                let inflight = object.start_refresh(&mut endpoint, due).expect("record");
                object.authorize(&mut endpoint, due.plus_millis(2_000));
                let (reauthorized, _, _) = object.record.clone().expect("record");
                let verdict = object.finish_refresh(inflight, due.plus_millis(10_000));
                let mut now = due.plus_millis(10_000);
                let mut last = TokenDecision::UseCurrent;
                for _ in 0..(30 * 24 * 4) {
                    now = now.plus_millis(15 * MINUTE_MS);
                    last = object.use_token(&mut endpoint, now);
                    if last != TokenDecision::UseCurrent {
                        break;
                    }
                }
                if unchecked {
                    assert_eq!(verdict, RefreshWriteBack::Store);
                    assert_eq!(last, TokenDecision::ReauthRequired, "the race went unseen");
                    continue;
                }
                assert_eq!(verdict, RefreshWriteBack::Superseded);
                assert_eq!(last, TokenDecision::UseCurrent, "lost at {now:?}");
                let (lifecycle, _, _) = object.record.clone().expect("record");
                assert_eq!(lifecycle.generation, reauthorized.generation);
                assert_eq!(lifecycle.status, ConnectionStatus::Active);
                assert!(endpoint.access_valid(object.record.as_ref().map_or(0, |r| r.1), now));
            }
        }

        /// Random deletes and reauthorisations land while refreshes wait on a slow endpoint,
        /// over 90 virtual days: a deleted connection never holds tokens, and whenever one
        /// exists its refresh token is the live one at Keap.
        #[test]
        fn random_races_never_resurrect_or_strand_a_connection() {
            let mut endpoint = FakeKeap::new(KEAP_ACCESS_SECS, 0xdead_beef);
            let mut rng = Rng(42);
            let mut object = RacingObject::new(false);
            object.authorize(&mut endpoint, T0);
            let mut now = T0;
            let end = T0.plus_millis(90 * DAY_MS);
            let mut races = 0;
            // A refresh every 7 minutes (far more often than due) maximises the overlaps.
            while now < end {
                now = now.plus_millis(7 * MINUTE_MS);
                let Some(inflight) = object.start_refresh(&mut endpoint, now) else {
                    if rng.chance(5) {
                        object.authorize(&mut endpoint, now);
                    }
                    continue;
                };
                let racing = rng.next() % 10;
                match racing {
                    0 => object.delete(),
                    1 => object.authorize(&mut endpoint, now.plus_millis(1_000)),
                    _ => {}
                }
                if racing < 2 {
                    races += 1;
                }
                object.finish_refresh(inflight, now.plus_millis(5_000));
                if let Some((lifecycle, access, refresh)) = &object.record {
                    assert_eq!(lifecycle.status, ConnectionStatus::Active, "at {now:?}");
                    assert_eq!(
                        endpoint.live_refresh.map(|(serial, _)| serial),
                        Some(*refresh),
                        "the stored refresh token is not Keap's live one at {now:?}"
                    );
                    assert!(endpoint.access_valid(*access, now.plus_millis(5_000)));
                }
            }
            assert!(races > 100, "{races}");
        }
    }
}
