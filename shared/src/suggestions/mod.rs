//! Proactive suggestions (issue 12): the pure half of the event loop. For a stored event
//! the Worker calls, in order:
//!
//! 1. [`decide()`] with the user's [`UserPreferences`] and how many suggestions of that
//!    type were made in the last hour → [`Decision::Suggest`] or [`Decision::Skip`] (its
//!    [`SkipReason::as_str`] goes to `background_events.processing_note`);
//! 2. [`build_prompt`] → [`Prompt`] (stored in `agent_runs.prompt`);
//! 3. with a model configured, [`ModelConfig::chat_request`] → send →
//!    [`ModelConfig::parse_response`] → [`Artifact::from_model`]; on a [`ModelError`],
//!    [`next_attempt`] says when to retry or that the run failed; without a model (or to
//!    fall back), [`template_artifact`];
//! 4. store the [`Artifact`] (`agent_runs.output`), the run [`RunStatus::Succeeded`];
//! 5. on the user's accept or dismiss, [`SuggestionAction::apply`].
//!
//! Like the rest of the crate it does no I/O and reads no clock: time comes in as a
//! [`crate::Timestamp`], randomness (jitter) as a number.

pub mod attempts;
pub mod content;
pub mod decide;
pub mod generate;
pub mod model;
pub mod preferences;
pub mod prompt;
pub mod run;

pub use attempts::{next_attempt, FailReason, Next, AGENT_RETRY_POLICY};
pub use content::{content_for, ContentKind};
pub use decide::{decide, Decision, SkipReason};
pub use generate::{markdown_to_text, template_artifact, Artifact};
pub use model::{parse_chat_response, ModelAnswer, ModelConfig, ModelConfigError, ModelError};
pub use preferences::{EventRule, Importance, PreferencesError, UserPreferences};
pub use prompt::{build_prompt, sanitize_event_data, Prompt};
pub use run::{ActionError, ActionOutcome, RunStatus, SuggestionAction, SuggestionStatus};

/// The `agent_runs.model` value of runs written by [`template_artifact`].
pub const TEMPLATE_MODEL: &str = "template";
