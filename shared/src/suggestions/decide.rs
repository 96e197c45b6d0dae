//! Whether an event gets a suggestion: [`decide`].

use super::content::{content_for, ContentKind};
use super::preferences::{Importance, UserPreferences};

/// What to do with a stored event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Generate a suggestion of this kind, shown with this importance.
    Suggest {
        /// The content to write.
        kind: ContentKind,
        /// From the rule that applies.
        importance: Importance,
    },
    /// Mark the event processed without a suggestion, recording why.
    Skip(SkipReason),
}

/// Why an event got no suggestion (`background_events.processing_note`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum SkipReason {
    /// The event type has no content to offer.
    #[error("this event type has no content to offer")]
    NoContent,
    /// The user turned `auto_suggest` off.
    #[error("auto_suggest is off")]
    AutoSuggestOff,
    /// The rule that applies to the type is disabled.
    #[error("the rule for this event type is disabled")]
    RuleDisabled,
    /// The type's `max_per_hour` suggestions were already made in the last hour.
    #[error("the hourly budget for this event type is spent")]
    HourlyBudgetSpent,
}

impl SkipReason {
    /// Stable name for storage and logs: `no_content`, `auto_suggest_off`,
    /// `rule_disabled`, `hourly_budget_spent`.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoContent => "no_content",
            SkipReason::AutoSuggestOff => "auto_suggest_off",
            SkipReason::RuleDisabled => "rule_disabled",
            SkipReason::HourlyBudgetSpent => "hourly_budget_spent",
        }
    }
}

/// Decides for one event: a suggestion when its type has content to offer, the user's
/// `auto_suggest` is on, the rule that applies ([`UserPreferences::rule_for`]) is enabled,
/// and fewer than its `max_per_hour` suggestions of this exact event type were made for
/// this user in the hour before the event (`suggestions_of_this_type_in_last_hour`, counted
/// by the caller). Checks run in that order, so the reason is the first that applies.
pub fn decide(
    event_type: &str,
    prefs: &UserPreferences,
    suggestions_of_this_type_in_last_hour: u32,
) -> Decision {
    let Some(kind) = content_for(event_type) else {
        return Decision::Skip(SkipReason::NoContent);
    };
    if !prefs.auto_suggest {
        return Decision::Skip(SkipReason::AutoSuggestOff);
    }
    let rule = prefs.rule_for(event_type);
    if !rule.enabled {
        return Decision::Skip(SkipReason::RuleDisabled);
    }
    if suggestions_of_this_type_in_last_hour >= rule.max_per_hour {
        return Decision::Skip(SkipReason::HourlyBudgetSpent);
    }
    Decision::Suggest {
        kind,
        importance: rule.importance,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn prefs(body: serde_json::Value) -> UserPreferences {
        UserPreferences::from_put_body(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn suggests_within_the_rules() {
        let defaults = UserPreferences::default();
        assert_eq!(
            decide("shopify.product.created", &defaults, 0),
            Decision::Suggest {
                kind: ContentKind::ProductLaunch,
                importance: Importance::Normal
            }
        );
        assert_eq!(
            decide("shopify.inventory.low", &defaults, 9),
            Decision::Suggest {
                kind: ContentKind::RestockingStrategy,
                importance: Importance::High
            }
        );
        assert_eq!(
            decide("shopify.inventory.low", &defaults, 10),
            Decision::Skip(SkipReason::HourlyBudgetSpent)
        );
    }

    #[test]
    fn each_reason_in_order() {
        let off = prefs(json!({"auto_suggest": false, "rules": {"repo.*": {"enabled": false}}}));
        // No content beats everything else.
        assert_eq!(
            decide("shopify.product.deleted", &off, 100),
            Decision::Skip(SkipReason::NoContent)
        );
        assert_eq!(
            decide("repo.push", &off, 0),
            Decision::Skip(SkipReason::AutoSuggestOff)
        );
        let on = prefs(
            json!({"rules": {"repo.*": {"enabled": false}, "issue.created": {"max_per_hour": 2, "importance": "low"}}}),
        );
        assert_eq!(
            decide("repo.push", &on, 0),
            Decision::Skip(SkipReason::RuleDisabled)
        );
        assert_eq!(
            decide("issue.created", &on, 1),
            Decision::Suggest {
                kind: ContentKind::IssuePlan,
                importance: Importance::Low
            }
        );
        assert_eq!(
            decide("issue.created", &on, 2),
            Decision::Skip(SkipReason::HourlyBudgetSpent)
        );
        let names: Vec<&str> = [
            SkipReason::NoContent,
            SkipReason::AutoSuggestOff,
            SkipReason::RuleDisabled,
            SkipReason::HourlyBudgetSpent,
        ]
        .iter()
        .map(|r| r.as_str())
        .collect();
        assert_eq!(
            names,
            [
                "no_content",
                "auto_suggest_off",
                "rule_disabled",
                "hourly_budget_spent"
            ]
        );
    }
}
