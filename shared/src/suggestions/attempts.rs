//! The agent run's retries over virtual time: after a failed model call, when to try again
//! or that the run has failed (it then stays visible and can be retried by API). Delays
//! come from the project's one backoff policy ([`RetryPolicy`]).

use super::model::ModelError;
use crate::sync::RetryPolicy;
use crate::Timestamp;

/// The policy of agent runs: 1 s doubling up to 30 s, 4 attempts in all. A run thus
/// gives up within about a minute, so a model outage turns into visible failed runs
/// rather than a queue of waiting ones.
pub const AGENT_RETRY_POLICY: RetryPolicy = RetryPolicy {
    base_ms: 1_000,
    max_ms: 30_000,
    max_attempts: 4,
};

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Call the model again at this time.
    RetryAt(Timestamp),
    /// Give up: record the run as failed.
    Fail(FailReason),
}

/// Why a run gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FailReason {
    /// The error cannot go away by retrying ([`ModelError::is_retryable`] is false).
    #[error("the model rejected the request")]
    NotRetryable,
    /// The policy's `max_attempts` were used.
    #[error("no attempts left")]
    AttemptsExhausted,
    /// The provider asked to wait longer (`Retry-After`) than the policy's `max_ms`.
    #[error("the model asked to wait longer than the retry budget")]
    RetryAfterBeyondBudget,
}

impl FailReason {
    /// Stable name: `not_retryable`, `attempts_exhausted`, `retry_after_beyond_budget`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::NotRetryable => "not_retryable",
            FailReason::AttemptsExhausted => "attempts_exhausted",
            FailReason::RetryAfterBeyondBudget => "retry_after_beyond_budget",
        }
    }
}

/// Decides after attempt number `attempts` (1 = the first call) failed with `error` at
/// `now`. A rate limit with `Retry-After` waits exactly that long when it is within
/// `policy.max_ms` (and fails the run when it is longer); every other retryable error
/// waits [`RetryPolicy::delay_ms`] with the caller's `jitter` (0.0..=1.0).
pub fn next_attempt(
    policy: &RetryPolicy,
    attempts: u32,
    error: &ModelError,
    now: Timestamp,
    jitter: f64,
) -> Next {
    if !error.is_retryable() {
        return Next::Fail(FailReason::NotRetryable);
    }
    if !policy.should_retry(attempts) {
        return Next::Fail(FailReason::AttemptsExhausted);
    }
    let delay_ms = match error {
        ModelError::RateLimited {
            retry_after_secs: Some(secs),
        } => {
            let wait = secs.saturating_mul(1_000);
            if wait > policy.max_ms {
                return Next::Fail(FailReason::RetryAfterBeyondBudget);
            }
            wait
        }
        _ => policy.delay_ms(attempts, jitter),
    };
    Next::RetryAt(now.plus_millis(i64::try_from(delay_ms).unwrap_or(i64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suggestions::model::parse_chat_response;

    const T0: Timestamp = Timestamp(1_767_225_600_000);

    fn unavailable() -> ModelError {
        ModelError::Unavailable { status: 503 }
    }

    #[test]
    fn backs_off_then_gives_up() {
        let policy = AGENT_RETRY_POLICY;
        let mut now = T0;
        let mut waits = Vec::new();
        let mut attempts = 1;
        loop {
            match next_attempt(&policy, attempts, &unavailable(), now, 1.0) {
                Next::RetryAt(at) => {
                    waits.push(at.millis_since(now));
                    now = at;
                    attempts += 1;
                }
                Next::Fail(reason) => {
                    assert_eq!(reason, FailReason::AttemptsExhausted);
                    break;
                }
            }
        }
        assert_eq!(waits, [1_000, 2_000, 4_000]);
        assert_eq!(attempts, policy.max_attempts);
        assert_eq!(now, T0.plus_millis(7_000));
        // Jitter spreads within [ceiling / 2, ceiling].
        assert_eq!(
            next_attempt(&policy, 2, &ModelError::Timeout, T0, 0.0),
            Next::RetryAt(T0.plus_millis(1_000))
        );
    }

    #[test]
    fn retry_after_is_honoured_within_the_budget() {
        let policy = AGENT_RETRY_POLICY;
        let limited = |secs| ModelError::RateLimited {
            retry_after_secs: Some(secs),
        };
        assert_eq!(
            next_attempt(&policy, 1, &limited(7), T0, 0.0),
            Next::RetryAt(T0.plus_millis(7_000))
        );
        assert_eq!(
            next_attempt(&policy, 1, &limited(30), T0, 0.0),
            Next::RetryAt(T0.plus_millis(30_000))
        );
        assert_eq!(
            next_attempt(&policy, 1, &limited(31), T0, 0.0),
            Next::Fail(FailReason::RetryAfterBeyondBudget)
        );
        assert_eq!(
            next_attempt(&policy, 1, &limited(u64::MAX), T0, 0.0),
            Next::Fail(FailReason::RetryAfterBeyondBudget)
        );
        // Without a number, the policy's own delay.
        assert_eq!(
            next_attempt(
                &policy,
                1,
                &ModelError::RateLimited {
                    retry_after_secs: None
                },
                T0,
                1.0
            ),
            Next::RetryAt(T0.plus_millis(1_000))
        );
        // Attempts run out even when the provider says when.
        assert_eq!(
            next_attempt(&policy, 4, &limited(1), T0, 0.0),
            Next::Fail(FailReason::AttemptsExhausted)
        );
    }

    /// One run over virtual time against scripted answers (status, Retry-After, body), the
    /// way the Worker drives it: parse, then retry at the time given or stop.
    fn simulate(
        script: &[(u16, Option<&str>, &str)],
    ) -> (Result<String, FailReason>, u32, Timestamp) {
        let mut now = T0;
        for (i, (status, retry_after, body)) in script.iter().enumerate() {
            let attempts = u32::try_from(i + 1).unwrap_or(u32::MAX);
            match parse_chat_response(*status, *retry_after, body) {
                Ok(answer) => return (Ok(answer.content), attempts, now),
                Err(error) => match next_attempt(&AGENT_RETRY_POLICY, attempts, &error, now, 1.0) {
                    Next::RetryAt(at) => now = at,
                    Next::Fail(reason) => return (Err(reason), attempts, now),
                },
            }
        }
        (Err(FailReason::AttemptsExhausted), 0, now)
    }

    const OK: &str = r#"{"object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Done"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
    const LIMITED: &str = r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;

    #[test]
    fn a_run_over_virtual_time() {
        // 429 with Retry-After 2, then 503, then an answer: done at 2 s + 2 s.
        let (outcome, attempts, at) =
            simulate(&[(429, Some("2"), LIMITED), (503, None, ""), (200, None, OK)]);
        assert_eq!(outcome, Ok("Done".to_owned()));
        assert_eq!(attempts, 3);
        assert_eq!(at, T0.plus_millis(4_000));
        // The model stays down: four attempts, then a failed run after 1 + 2 + 4 s.
        let down = [(503, None, ""); 5];
        assert_eq!(
            simulate(&down),
            (Err(FailReason::AttemptsExhausted), 4, T0.plus_millis(7_000))
        );
        // A malformed answer is retried; a bad key is not.
        let (outcome, attempts, _) = simulate(&[(200, None, "{\"choices\": ["), (200, None, OK)]);
        assert_eq!((outcome, attempts), (Ok("Done".to_owned()), 2));
        let bad_key = r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        assert_eq!(
            simulate(&[(401, None, bad_key), (200, None, OK)]),
            (Err(FailReason::NotRetryable), 1, T0)
        );
    }

    #[test]
    fn rejections_fail_at_once() {
        let rejected = ModelError::Rejected {
            status: 401,
            message: "Incorrect API key provided".to_owned(),
        };
        assert_eq!(
            next_attempt(&AGENT_RETRY_POLICY, 1, &rejected, T0, 0.5),
            Next::Fail(FailReason::NotRetryable)
        );
        assert_eq!(FailReason::NotRetryable.as_str(), "not_retryable");
        for error in [
            ModelError::Malformed("x".into()),
            ModelError::Network("refused".into()),
            unavailable(),
        ] {
            assert!(matches!(
                next_attempt(&AGENT_RETRY_POLICY, 1, &error, T0, 0.5),
                Next::RetryAt(_)
            ));
        }
    }
}
