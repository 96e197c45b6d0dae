//! Holds: keep requests to an endpoint open until the test releases them, so a test can
//! make something happen while, say, a token refresh is waiting on the provider (a fixed
//! fault latency only guesses how long that must be). The held requests are counted, so the
//! test knows they arrived; after release they are answered as usual (faults included).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::control::{parse_json_body, ControlError, Key};
use crate::state::{lock, SharedState};

/// A forgotten hold lets go after this long, so it never wedges a run.
pub const MAX_HOLD: Duration = Duration::from_secs(60);
/// How often a held request looks for its release.
const POLL: Duration = Duration::from_millis(10);

/// Holds per key: how many more requests to catch, how many wait now, how many were held.
#[derive(Debug, Default)]
pub struct HoldBook {
    armed: BTreeMap<Key, u32>,
    waiting: BTreeMap<Key, u32>,
    held: BTreeMap<Key, u64>,
    /// Moves on every release; a request waits until it differs from when it was caught.
    epoch: u64,
}

impl HoldBook {
    /// Catches the next `times` requests to `key`.
    pub fn arm(&mut self, key: Key, times: u32) {
        *self.armed.entry(key).or_default() += times;
    }

    /// Whether a request matching `keys` is to be held: the key that caught it and the
    /// epoch it waits out.
    pub fn catch(&mut self, keys: &[Key]) -> Option<(Key, u64)> {
        for key in keys {
            if let Some(left) = self.armed.get_mut(key) {
                *left -= 1;
                if *left == 0 {
                    self.armed.remove(key);
                }
                *self.waiting.entry(key.clone()).or_default() += 1;
                *self.held.entry(key.clone()).or_default() += 1;
                return Some((key.clone(), self.epoch));
            }
        }
        None
    }

    /// Lets every waiting request go; answers how many.
    pub fn release(&mut self) -> u32 {
        self.epoch += 1;
        self.waiting.values().sum()
    }

    /// Disarms everything and lets every waiting request go.
    pub fn clear(&mut self) -> u32 {
        self.armed.clear();
        self.release()
    }

    fn done(&mut self, key: &Key) {
        if let Some(n) = self.waiting.get_mut(key) {
            *n = n.saturating_sub(1);
        }
    }

    /// `{"holds": [{"endpoint", "armed", "waiting", "held"}]}`.
    pub fn view(&self) -> Value {
        let mut keys: Vec<&Key> = self.armed.keys().chain(self.held.keys()).collect();
        keys.sort();
        keys.dedup();
        let holds: Vec<Value> = keys
            .into_iter()
            .map(|k| {
                json!({
                    "endpoint": k.name(),
                    "armed": self.armed.get(k).copied().unwrap_or(0),
                    "waiting": self.waiting.get(k).copied().unwrap_or(0),
                    "held": self.held.get(k).copied().unwrap_or(0),
                })
            })
            .collect();
        json!({ "holds": holds })
    }
}

/// Holds the request if a hold catches it, until released (or [`MAX_HOLD`]).
pub async fn wait_if_held(state: &SharedState, keys: &[Key]) {
    let Some((key, epoch)) = lock(&state.holds).catch(keys) else {
        return;
    };
    let deadline = Instant::now() + MAX_HOLD;
    while lock(&state.holds).epoch == epoch && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    lock(&state.holds).done(&key);
}

/// Body of `POST /__sandbox/holds`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldSpec {
    endpoint: String,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

/// `POST /__sandbox/holds {"endpoint", "times"=1}`: hold the next `times` requests.
pub async fn add(
    State(state): State<SharedState>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let spec: HoldSpec = parse_json_body(&body)?;
    let key = Key::parse(&spec.endpoint).ok_or_else(|| {
        ControlError::bad_request(format!("unknown endpoint '{}'", spec.endpoint))
    })?;
    if spec.times == 0 {
        return Err(ControlError::bad_request("times must be at least 1"));
    }
    let mut holds = lock(&state.holds);
    holds.arm(key, spec.times);
    Ok(Json(holds.view()))
}

/// `GET /__sandbox/holds`.
pub async fn list(State(state): State<SharedState>) -> Json<Value> {
    Json(lock(&state.holds).view())
}

/// `POST /__sandbox/holds/release`: answer every held request now.
pub async fn release(State(state): State<SharedState>) -> Json<Value> {
    Json(json!({ "released": lock(&state.holds).release() }))
}

/// `DELETE /__sandbox/holds`: disarm and release everything.
pub async fn clear(State(state): State<SharedState>) -> Json<Value> {
    Json(json!({ "released": lock(&state.holds).clear() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Endpoint;

    #[test]
    fn catches_as_many_as_armed_and_counts_them() {
        let token = Key::endpoint(Endpoint::KeapOAuthToken);
        let mut book = HoldBook::default();
        assert!(book.catch(std::slice::from_ref(&token)).is_none());
        book.arm(token.clone(), 1);
        let (key, epoch) = book.catch(std::slice::from_ref(&token)).expect("held");
        assert_eq!((key.clone(), epoch), (token.clone(), 0));
        assert!(
            book.catch(std::slice::from_ref(&token)).is_none(),
            "only one armed"
        );
        assert_eq!(book.view()["holds"][0]["waiting"], 1);
        assert_eq!(book.release(), 1);
        book.done(&key);
        assert_eq!(book.view()["holds"][0]["waiting"], 0);
        assert_eq!(book.view()["holds"][0]["held"], 1);
    }
}
