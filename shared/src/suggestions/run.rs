//! The states of an agent run and of the suggestion it carries (`agent_runs.status`,
//! `agent_runs.suggestion_status`), and what the user's accept or dismiss does to them.

use serde::{Deserialize, Serialize};

/// `agent_runs.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Generating, or waiting for its next attempt.
    Running,
    /// The output is stored: the suggestion exists.
    Succeeded,
    /// Gave up; visible, and can be retried by API.
    Failed,
}

/// `agent_runs.suggestion_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionStatus {
    /// Not acted on yet.
    New,
    /// The user accepted it.
    Accepted,
    /// The user dismissed it.
    Dismissed,
}

/// What the user does to a suggestion (`POST /coordinator/suggestions/{id}/accept|dismiss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionAction {
    /// Accept.
    Accept,
    /// Dismiss.
    Dismiss,
}

/// Why an action cannot be applied (the Worker answers 409).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The run has not produced a suggestion (running or failed).
    #[error("the suggestion is not ready (run {})", .0.as_str())]
    NotReady(RunStatus),
    /// The user already took the other action.
    #[error("the suggestion was already {}", .0.as_str())]
    AlreadyActioned(SuggestionStatus),
}

/// The outcome of an action that can be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionOutcome {
    /// Store the new status, set `actioned_at` and `background_events.user_actioned`.
    Changed(SuggestionStatus),
    /// The same action again (a retried request): answer as before, change nothing.
    Unchanged(SuggestionStatus),
}

impl RunStatus {
    /// `running`, `succeeded` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }

    /// Parses [`RunStatus::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        [RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// Whether a retry by API may start it again: only a failed run.
    pub fn can_retry(self) -> bool {
        self == RunStatus::Failed
    }
}

impl SuggestionStatus {
    /// `new`, `accepted` or `dismissed`.
    pub fn as_str(self) -> &'static str {
        match self {
            SuggestionStatus::New => "new",
            SuggestionStatus::Accepted => "accepted",
            SuggestionStatus::Dismissed => "dismissed",
        }
    }

    /// Parses [`SuggestionStatus::as_str`] (the `status` filter of the listing).
    pub fn parse(text: &str) -> Option<Self> {
        [
            SuggestionStatus::New,
            SuggestionStatus::Accepted,
            SuggestionStatus::Dismissed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

impl SuggestionAction {
    /// The status the action leads to.
    pub fn target(self) -> SuggestionStatus {
        match self {
            SuggestionAction::Accept => SuggestionStatus::Accepted,
            SuggestionAction::Dismiss => SuggestionStatus::Dismissed,
        }
    }

    /// Applies the action to a suggestion of a run in `run` state, now `current`: only a
    /// succeeded run's new suggestion changes; repeating the action it already took is a
    /// no-op (retried requests are safe); the opposite action after one was taken is
    /// refused.
    pub fn apply(
        self,
        run: RunStatus,
        current: SuggestionStatus,
    ) -> Result<ActionOutcome, ActionError> {
        if run != RunStatus::Succeeded {
            return Err(ActionError::NotReady(run));
        }
        let target = self.target();
        match current {
            SuggestionStatus::New => Ok(ActionOutcome::Changed(target)),
            done if done == target => Ok(ActionOutcome::Unchanged(done)),
            other => Err(ActionError::AlreadyActioned(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_and_dismiss() {
        use SuggestionAction::{Accept, Dismiss};
        use SuggestionStatus::{Accepted, Dismissed, New};
        let ok = RunStatus::Succeeded;
        assert_eq!(Accept.apply(ok, New), Ok(ActionOutcome::Changed(Accepted)));
        assert_eq!(
            Dismiss.apply(ok, New),
            Ok(ActionOutcome::Changed(Dismissed))
        );
        assert_eq!(
            Accept.apply(ok, Accepted),
            Ok(ActionOutcome::Unchanged(Accepted))
        );
        assert_eq!(
            Dismiss.apply(ok, Accepted),
            Err(ActionError::AlreadyActioned(Accepted))
        );
        assert_eq!(
            Accept.apply(ok, Dismissed),
            Err(ActionError::AlreadyActioned(Dismissed))
        );
        assert_eq!(
            Accept.apply(RunStatus::Failed, New),
            Err(ActionError::NotReady(RunStatus::Failed))
        );
        assert_eq!(
            Dismiss
                .apply(RunStatus::Running, New)
                .map_err(|e| e.to_string()),
            Err("the suggestion is not ready (run running)".to_owned())
        );
    }

    #[test]
    fn names_round_trip_and_match_the_schema() {
        for s in [RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed] {
            assert_eq!(RunStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).ok(), Some(s.as_str().into()));
        }
        for s in [
            SuggestionStatus::New,
            SuggestionStatus::Accepted,
            SuggestionStatus::Dismissed,
        ] {
            assert_eq!(SuggestionStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).ok(), Some(s.as_str().into()));
        }
        assert_eq!(SuggestionStatus::parse("NEW"), None);
        assert!(RunStatus::Failed.can_retry());
        assert!(!RunStatus::Succeeded.can_retry());
    }
}
