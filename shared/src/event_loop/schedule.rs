//! One user's loop: when it ticks, which watchers each tick runs, how a failing watcher
//! backs off, and the status view of `GET /coordinator/event-loop/{user_id}`.
//!
//! The coordinator keeps a [`LoopState`] in the user's Durable Object instance and drives
//! it from the instance's alarm. Alarms persist across restarts and redeploys, so a loop
//! resumes at its interval from its saved state; an alarm that fires early (the instance's
//! alarm is shared with event delivery) plans nothing and names the tick to wait for.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::EventLoopError;
use crate::sync::RetryPolicy;
use crate::Timestamp;

/// Default tick interval: one minute.
pub const DEFAULT_INTERVAL_SECS: u64 = 60;
/// The smallest interval the API accepts unless [`MIN_INTERVAL_SETTING`] lowers it.
pub const MIN_INTERVAL_SECS: u64 = 5;
/// The Worker setting (environment variable) that lowers the floor for tests, e.g. `1`.
/// It can only lower it: values above [`MIN_INTERVAL_SECS`] are refused.
pub const MIN_INTERVAL_SETTING: &str = "EVENT_LOOP_MIN_INTERVAL_SECS";
/// Longest wait a failing watcher backs off to (or the interval, when that is longer).
pub const MAX_BACKOFF_MS: u64 = 15 * 60 * 1000;

/// What a loop watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Watcher {
    /// Shopify polling fallback ([`super::shopify_poll`]) for connections without working
    /// subscriptions.
    ShopifyPoll,
    /// Supabase schema snapshot and diff ([`super::schema_watch`]).
    SchemaWatch,
    /// Pending migrations ([`super::migrations`]).
    Migrations,
    /// The user's code repositories: changes by polling where webhooks are not configured
    /// (deduplicated against them), work gone stale ([`crate::code_repos::watch`]).
    Repositories,
}

impl Watcher {
    /// Every watcher, in the order a tick runs them.
    pub const ALL: [Watcher; 4] = [
        Watcher::ShopifyPoll,
        Watcher::SchemaWatch,
        Watcher::Migrations,
        Watcher::Repositories,
    ];
}

/// The floor under `interval_secs`, from [`MIN_INTERVAL_SETTING`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalFloor(u64);

impl Default for IntervalFloor {
    /// [`MIN_INTERVAL_SECS`].
    fn default() -> Self {
        Self(MIN_INTERVAL_SECS)
    }
}

impl IntervalFloor {
    /// The floor from the setting's value: absent or blank → [`MIN_INTERVAL_SECS`]; else a
    /// whole number of seconds from 1 to [`MIN_INTERVAL_SECS`].
    pub fn from_setting(value: Option<&str>) -> Result<Self, EventLoopError> {
        let Some(text) = value.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(Self::default());
        };
        match text.parse::<u64>() {
            Ok(secs) if (1..=MIN_INTERVAL_SECS).contains(&secs) => Ok(Self(secs)),
            _ => Err(EventLoopError::InvalidFloor {
                setting: MIN_INTERVAL_SETTING,
                max: MIN_INTERVAL_SECS,
                given: text.to_owned(),
            }),
        }
    }

    /// Seconds.
    pub fn secs(self) -> u64 {
        self.0
    }
}

/// How a loop runs: `POST /coordinator/event-loop/{user_id}/start` with optional
/// `{"interval_secs": N, "watchers": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopConfig {
    /// Seconds between ticks ([`DEFAULT_INTERVAL_SECS`]; at least the floor).
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// The watchers that run (default: all).
    #[serde(default = "all_watchers")]
    pub watchers: BTreeSet<Watcher>,
    /// Shopify polling: a level at or below this is `shopify.inventory.low` (default: the
    /// deployment's `INVENTORY_LOW_THRESHOLD`, which the webhook path also judges by).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_stock_threshold: Option<i64>,
    /// Repositories: days without activity after which an open pull request or issue is
    /// stale (1 to 365; default [`DEFAULT_STALE_AFTER_DAYS`]).
    #[serde(default = "default_stale_after_days")]
    pub stale_after_days: u32,
}

/// Days of silence after which open work is stale, unless a loop says otherwise.
pub const DEFAULT_STALE_AFTER_DAYS: u32 = 7;

fn default_stale_after_days() -> u32 {
    DEFAULT_STALE_AFTER_DAYS
}

fn default_interval() -> u64 {
    DEFAULT_INTERVAL_SECS
}

fn all_watchers() -> BTreeSet<Watcher> {
    Watcher::ALL.into_iter().collect()
}

impl Default for LoopConfig {
    /// One minute, every watcher.
    fn default() -> Self {
        Self {
            interval_secs: DEFAULT_INTERVAL_SECS,
            watchers: all_watchers(),
            low_stock_threshold: None,
            stale_after_days: DEFAULT_STALE_AFTER_DAYS,
        }
    }
}

impl LoopConfig {
    /// This config if its interval is at least `floor`, else why not.
    pub fn validated(self, floor: IntervalFloor) -> Result<Self, EventLoopError> {
        if self.interval_secs < floor.secs() {
            return Err(EventLoopError::IntervalTooShort {
                given: self.interval_secs,
                min: floor.secs(),
            });
        }
        if !(1..=365).contains(&self.stale_after_days) {
            return Err(EventLoopError::StaleDays(self.stale_after_days));
        }
        Ok(self)
    }

    fn interval_ms(&self) -> i64 {
        i64::try_from(self.interval_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

/// One watcher's record in a loop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherState {
    /// When it last reported a result.
    pub last_run_at: Option<Timestamp>,
    /// When it last succeeded.
    pub last_ok_at: Option<Timestamp>,
    /// Its last error (cleared by a success).
    pub last_error: Option<String>,
    /// Failures since its last success.
    pub consecutive_failures: u32,
    /// Events its last successful run found.
    pub last_found: u64,
    /// Events found since the loop was started.
    pub total_found: u64,
    /// It does not run before this (set by a failure's backoff); `None` = every tick.
    pub not_before: Option<Timestamp>,
}

/// A user's loop, persisted in the user's Durable Object instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopState {
    /// Whether ticks plan anything.
    pub running: bool,
    /// The config in force (kept after `stop` for the status view).
    pub config: LoopConfig,
    /// When the loop was last started.
    pub started_at: Option<Timestamp>,
    /// When the last tick ran.
    pub last_tick_at: Option<Timestamp>,
    /// Ticks run since the loop was last started (missed ticks are not counted).
    #[serde(default)]
    pub ticks: u64,
    /// When the next tick is due; `None` when stopped.
    pub next_tick_at: Option<Timestamp>,
    /// Per enabled watcher.
    pub watchers: BTreeMap<Watcher, WatcherState>,
}

/// What one tick runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickPlan {
    /// The watchers to run now, in [`Watcher::ALL`] order; report each with
    /// [`LoopState::on_watcher_result`].
    pub run: Vec<Watcher>,
    /// Set the alarm to this (`None`: the loop is stopped, set none for it).
    pub next_alarm: Option<Timestamp>,
}

impl LoopState {
    /// Starts (or restarts with a new config) the loop: the first tick is due at `now`.
    /// Watcher records are kept across restarts of the loop, except for watchers the new
    /// config disables; backoffs are cleared so an operator's start runs everything.
    pub fn start(&mut self, now: Timestamp, config: LoopConfig) {
        self.watchers.retain(|w, _| config.watchers.contains(w));
        for watcher in &config.watchers {
            let state = self.watchers.entry(*watcher).or_default();
            state.not_before = None;
            state.total_found = 0;
        }
        self.config = config;
        self.running = true;
        self.ticks = 0;
        self.started_at = Some(now);
        self.next_tick_at = Some(now);
    }

    /// Stops the loop: no tick plans anything until the next [`LoopState::start`], and late
    /// watcher results are ignored. The Worker may delete the alarm (if nothing else uses it).
    pub fn stop(&mut self) {
        self.running = false;
        self.next_tick_at = None;
    }

    /// When the alarm should fire for this loop; `None` when stopped.
    pub fn next_alarm(&self) -> Option<Timestamp> {
        self.running.then_some(self.next_tick_at).flatten()
    }

    /// An alarm at `now`: the due watchers (enabled and not backing off), and the next
    /// alarm. Early alarms plan nothing. Ticks missed while the instance was down are not
    /// replayed: the next tick stays on the loop's cadence (a whole number of intervals
    /// after the missed one), the first one after `now`.
    pub fn on_tick(&mut self, now: Timestamp) -> TickPlan {
        let Some(due) = self.next_alarm() else {
            return TickPlan {
                run: Vec::new(),
                next_alarm: None,
            };
        };
        if now < due {
            return TickPlan {
                run: Vec::new(),
                next_alarm: Some(due),
            };
        }
        let interval = self.config.interval_ms().max(1);
        let missed = now.millis_since(due) / interval;
        let next = due.plus_millis(interval.saturating_mul(missed.saturating_add(1)));
        self.last_tick_at = Some(now);
        self.ticks = self.ticks.saturating_add(1);
        self.next_tick_at = Some(next);
        let run = Watcher::ALL
            .into_iter()
            .filter(|w| self.config.watchers.contains(w))
            .filter(|w| {
                self.watchers
                    .get(w)
                    .and_then(|s| s.not_before)
                    .is_none_or(|t| t <= now)
            })
            .collect();
        TickPlan {
            run,
            next_alarm: Some(next),
        }
    }

    /// A watcher's outcome: `Ok(events found)` or `Err(error text, for the status view)`.
    /// A failure backs the watcher off ([`LoopState::backoff`]); the loop keeps ticking.
    /// Ignored when the loop is stopped or the watcher is disabled.
    pub fn on_watcher_result(
        &mut self,
        now: Timestamp,
        watcher: Watcher,
        result: Result<u64, String>,
    ) {
        if !self.running || !self.config.watchers.contains(&watcher) {
            return;
        }
        let policy = self.backoff();
        let state = self.watchers.entry(watcher).or_default();
        state.last_run_at = Some(now);
        match result {
            Ok(found) => {
                state.last_ok_at = Some(now);
                state.last_error = None;
                state.consecutive_failures = 0;
                state.last_found = found;
                state.total_found = state.total_found.saturating_add(found);
                state.not_before = None;
            }
            Err(error) => {
                state.last_error = Some(crate::sync::shorten(&error));
                state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                let delay = policy.delay_ms(state.consecutive_failures, RetryPolicy::NO_JITTER);
                state.not_before = Some(now.plus_millis(i64::try_from(delay).unwrap_or(i64::MAX)));
            }
        }
    }

    /// The crate's backoff policy for a failing watcher: the first retry one interval
    /// later, doubling up to [`MAX_BACKOFF_MS`] (or the interval, when longer), never
    /// giving up (the loop only stops on `stop`). No jitter: one alarm per instance.
    pub fn backoff(&self) -> RetryPolicy {
        let interval = self.config.interval_secs.saturating_mul(1000);
        RetryPolicy {
            base_ms: interval,
            max_ms: MAX_BACKOFF_MS.max(interval),
            max_attempts: u32::MAX,
        }
    }

    /// The status view for `GET /coordinator/event-loop/{user_id}`.
    pub fn status(&self, user_id: &str) -> LoopStatus {
        let iso = |t: Option<Timestamp>| t.map(Timestamp::to_iso8601);
        LoopStatus {
            user_id: user_id.to_owned(),
            running: self.running,
            interval_secs: self.config.interval_secs,
            started_at: iso(self.started_at),
            last_tick_at: iso(self.last_tick_at),
            ticks: self.ticks,
            next_tick_at: iso(self.next_alarm()),
            watchers: self
                .watchers
                .iter()
                .map(|(w, s)| {
                    let status = WatcherStatus {
                        last_run_at: iso(s.last_run_at),
                        last_ok_at: iso(s.last_ok_at),
                        last_found: s.last_found,
                        total_found: s.total_found,
                        last_error: s.last_error.clone(),
                        consecutive_failures: s.consecutive_failures,
                        backing_off_until: iso(s.not_before),
                    };
                    (*w, status)
                })
                .collect(),
        }
    }
}

/// `GET /coordinator/event-loop/{user_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopStatus {
    /// Whose loop.
    pub user_id: String,
    /// Whether it ticks.
    pub running: bool,
    /// Seconds between ticks.
    pub interval_secs: u64,
    /// When it was last started (RFC 3339).
    pub started_at: Option<String>,
    /// When it last ticked.
    pub last_tick_at: Option<String>,
    /// Ticks run since it was last started (ticks missed while behind or down are not).
    #[serde(default)]
    pub ticks: u64,
    /// When it ticks next; null when stopped.
    pub next_tick_at: Option<String>,
    /// Each enabled watcher's record.
    pub watchers: BTreeMap<Watcher, WatcherStatus>,
}

/// One watcher in [`LoopStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherStatus {
    /// Last result reported.
    pub last_run_at: Option<String>,
    /// Last success.
    pub last_ok_at: Option<String>,
    /// Events the last successful run found.
    pub last_found: u64,
    /// Events found since the loop was started.
    pub total_found: u64,
    /// The last error, until a success clears it.
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// A failing watcher skips ticks until then.
    pub backing_off_until: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_796_000_000_000);

    fn at(secs: i64) -> Timestamp {
        T0.plus_millis(secs * 1000)
    }

    fn started(interval_secs: u64) -> LoopState {
        let mut state = LoopState::default();
        let config = LoopConfig {
            interval_secs,
            ..LoopConfig::default()
        };
        state.start(T0, config);
        state
    }

    #[test]
    fn the_floor_can_only_be_lowered_through_its_setting() {
        assert_eq!(IntervalFloor::from_setting(None), Ok(IntervalFloor(5)));
        assert_eq!(IntervalFloor::from_setting(Some(" ")), Ok(IntervalFloor(5)));
        assert_eq!(IntervalFloor::from_setting(Some("1")), Ok(IntervalFloor(1)));
        for bad in ["0", "6", "1.5", "-1", "x"] {
            assert!(IntervalFloor::from_setting(Some(bad)).is_err(), "{bad}");
        }
        let short = LoopConfig {
            interval_secs: 2,
            ..LoopConfig::default()
        };
        assert_eq!(
            short.clone().validated(IntervalFloor::default()),
            Err(EventLoopError::IntervalTooShort { given: 2, min: 5 })
        );
        assert!(short.validated(IntervalFloor(1)).is_ok());
        let parsed: LoopConfig = serde_json::from_str("{}").expect("defaults");
        assert_eq!(parsed, LoopConfig::default());
        assert_eq!(parsed.interval_secs, 60);
    }

    #[test]
    fn ticks_follow_the_interval_and_early_alarms_plan_nothing() {
        let mut state = started(60);
        assert_eq!(state.next_alarm(), Some(T0));
        let plan = state.on_tick(T0);
        assert_eq!(plan.run, Watcher::ALL.to_vec());
        assert_eq!(plan.next_alarm, Some(at(60)));
        // The alarm also serves event delivery: an early one plans nothing.
        let early = state.on_tick(at(10));
        assert!(early.run.is_empty());
        assert_eq!(early.next_alarm, Some(at(60)));
        // A late alarm keeps the cadence and skips what it missed.
        let late = state.on_tick(at(200));
        assert_eq!(late.run, Watcher::ALL.to_vec());
        assert_eq!(late.next_alarm, Some(at(240)));
        assert_eq!(state.last_tick_at, Some(at(200)));
        // Two ticks ran (T0 and 200 s); the early alarm and the missed ones do not count.
        assert_eq!(state.ticks, 2);
    }

    #[test]
    fn after_stop_nothing_is_planned_and_late_results_are_ignored() {
        let mut state = started(5);
        state.on_tick(T0);
        state.stop();
        assert_eq!(state.next_alarm(), None);
        for secs in 0..100 {
            let plan = state.on_tick(at(secs));
            assert!(plan.run.is_empty());
            assert_eq!(plan.next_alarm, None);
        }
        let before = state.clone();
        state.on_watcher_result(at(1), Watcher::SchemaWatch, Ok(3));
        assert_eq!(state, before);
        assert!(!state.status("u1").running);
        assert_eq!(state.status("u1").next_tick_at, None);
    }

    /// Virtual time: a watcher whose provider keeps failing backs off (1, 2, 4, ...
    /// intervals, capped) while the others run every tick; the loop never stops; a success
    /// clears the error. State survives a round trip through JSON mid-way (a restart).
    #[test]
    fn simulation_failing_watcher_backs_off_and_restart_resumes() {
        let interval = 10;
        let mut state = started(interval);
        let mut now = T0;
        let mut shopify_runs = Vec::new();
        let mut schema_runs = 0;
        for tick in 0..300 {
            if tick == 150 {
                // Restart: the instance is evicted and comes back from storage.
                let saved = serde_json::to_string(&state).expect("serialises");
                state = serde_json::from_str(&saved).expect("deserialises");
            }
            let alarm = state.next_alarm().expect("running");
            assert!(alarm >= now);
            now = alarm;
            let plan = state.on_tick(now);
            assert_eq!(
                plan.next_alarm,
                Some(now.plus_millis(interval as i64 * 1000))
            );
            for watcher in plan.run {
                let result = match watcher {
                    Watcher::ShopifyPoll if tick < 150 => {
                        shopify_runs.push(tick);
                        Err("HTTP 503".to_owned())
                    }
                    Watcher::ShopifyPoll => {
                        shopify_runs.push(tick);
                        Ok(1)
                    }
                    Watcher::SchemaWatch => {
                        schema_runs += 1;
                        Ok(0)
                    }
                    Watcher::Migrations | Watcher::Repositories => Ok(0),
                };
                state.on_watcher_result(now, watcher, result);
            }
        }
        assert_eq!(schema_runs, 300);
        // Delays 1, 2, 4, 8, 16, 32, 64 ticks, then capped at 90 (15 min / 10 s); the
        // first success (tick 217) ends the backoff: every tick after runs it.
        assert_eq!(&shopify_runs[..9], &[0, 1, 3, 7, 15, 31, 63, 127, 217]);
        assert_eq!(shopify_runs[9..], (218..300).collect::<Vec<_>>());
        let status = state.status("u1");
        let shopify = &status.watchers[&Watcher::ShopifyPoll];
        assert_eq!(shopify.last_error, None);
        assert_eq!(shopify.consecutive_failures, 0);
        assert!(shopify.total_found >= 1);
        assert!(status.running);
        assert_eq!(status.interval_secs, interval);
    }

    #[test]
    fn failures_show_in_the_status_view() {
        let mut state = started(60);
        state.on_tick(T0);
        state.on_watcher_result(T0, Watcher::SchemaWatch, Err("connection refused".into()));
        state.on_watcher_result(T0, Watcher::Migrations, Ok(2));
        let json = serde_json::to_value(state.status("u1")).expect("serialises");
        assert_eq!(json["running"], true);
        assert_eq!(json["interval_secs"], 60);
        assert_eq!(
            json["watchers"]["schema_watch"]["last_error"],
            "connection refused"
        );
        assert_eq!(json["watchers"]["schema_watch"]["consecutive_failures"], 1);
        assert_eq!(
            json["watchers"]["schema_watch"]["backing_off_until"],
            at(60).to_iso8601()
        );
        assert_eq!(json["watchers"]["migrations"]["last_found"], 2);
        assert_eq!(json["last_tick_at"], T0.to_iso8601());
    }

    /// 1,000 users' loops over an hour of virtual time: each ticks on its own cadence, and
    /// an idle tick plans only the enabled watchers (no extra work).
    #[test]
    fn simulation_many_independent_loops() {
        let mut loops: Vec<LoopState> = (0..1000)
            .map(|i| {
                let mut state = LoopState::default();
                let config = LoopConfig {
                    interval_secs: 60,
                    watchers: [Watcher::SchemaWatch].into_iter().collect(),
                    low_stock_threshold: None,
                    stale_after_days: DEFAULT_STALE_AFTER_DAYS,
                };
                state.start(at(i % 60), config);
                state
            })
            .collect();
        let mut ticks = 0;
        for state in &mut loops {
            while let Some(alarm) = state.next_alarm().filter(|t| *t < at(3600)) {
                let plan = state.on_tick(alarm);
                assert_eq!(plan.run, vec![Watcher::SchemaWatch]);
                state.on_watcher_result(alarm, Watcher::SchemaWatch, Ok(0));
                ticks += 1;
            }
        }
        assert_eq!(ticks, 60_000);
    }
}
