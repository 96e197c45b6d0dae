//! What a user wants suggested: `auto_suggest`, a free-form profile and "vibe", and rules per
//! event type (`user_preferences` in Postgres; `GET`/`PUT
//! /coordinator/users/{user_id}/preferences`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Largest `PUT` body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest `profile` or `vibe`, in bytes of compact JSON.
pub const MAX_FREE_FORM_BYTES: usize = 8 * 1024;
/// Most rules a user may set.
pub const MAX_RULES: usize = 100;
/// Longest event-type pattern.
pub const MAX_PATTERN_CHARS: usize = 100;
/// Highest `max_per_hour` a rule may set.
pub const MAX_PER_HOUR_LIMIT: u32 = 1_000;
/// `max_per_hour` of the default rule.
pub const DEFAULT_MAX_PER_HOUR: u32 = 10;

/// How prominently a suggestion is shown.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Importance {
    /// Worth a look some time.
    Low,
    /// The usual.
    #[default]
    Normal,
    /// Act soon (low stock, a failed build).
    High,
}

impl Importance {
    /// `low`, `normal` or `high`.
    pub fn as_str(self) -> &'static str {
        match self {
            Importance::Low => "low",
            Importance::Normal => "normal",
            Importance::High => "high",
        }
    }
}

/// What to do with events of one type (or of every type a pattern matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRule {
    /// Whether events of this type get suggestions at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How prominently their suggestions are shown.
    #[serde(default)]
    pub importance: Importance,
    /// At most this many suggestions per hour for one event type (1..=[`MAX_PER_HOUR_LIMIT`]).
    #[serde(default = "default_max_per_hour")]
    pub max_per_hour: u32,
}

fn yes() -> bool {
    true
}

fn default_max_per_hour() -> u32 {
    DEFAULT_MAX_PER_HOUR
}

impl Default for EventRule {
    /// Enabled, normal importance, [`DEFAULT_MAX_PER_HOUR`] per hour.
    fn default() -> Self {
        Self {
            enabled: true,
            importance: Importance::Normal,
            max_per_hour: DEFAULT_MAX_PER_HOUR,
        }
    }
}

impl EventRule {
    /// The rule an event type gets when the user set none that matches: enabled,
    /// [`DEFAULT_MAX_PER_HOUR`] per hour, and high importance for what needs action soon
    /// (`shopify.inventory.low`, `repo.build.failed`), normal otherwise.
    pub fn default_for(event_type: &str) -> Self {
        let importance = match event_type {
            "shopify.inventory.low" | "repo.build.failed" => Importance::High,
            _ => Importance::Normal,
        };
        Self {
            importance,
            ..Self::default()
        }
    }
}

/// One user's preferences. `Serialize` gives the `GET` answer and the `PUT` body shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPreferences {
    /// Whether events may produce suggestions without being asked.
    #[serde(default = "yes")]
    pub auto_suggest: bool,
    /// Who the user is: business, audience, tone (free-form JSON object).
    #[serde(default = "empty_object")]
    pub profile: Value,
    /// The style of the content (free-form JSON object).
    #[serde(default = "empty_object")]
    pub vibe: Value,
    /// Rules by event type: an exact type (`shopify.product.created`), a prefix pattern
    /// (`keap.contact.*`) or `*` for every type. The most specific match wins.
    #[serde(default)]
    pub rules: BTreeMap<String, EventRule>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

impl Default for UserPreferences {
    /// `auto_suggest` on, empty profile and vibe, no rules (every type gets
    /// [`EventRule::default_for`]).
    fn default() -> Self {
        Self {
            auto_suggest: true,
            profile: empty_object(),
            vibe: empty_object(),
            rules: BTreeMap::new(),
        }
    }
}

/// Why a preferences body (or stored row) is not acceptable. Messages are meant for the
/// client that sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreferencesError {
    /// The body is larger than [`MAX_BODY_BYTES`].
    #[error("the body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    /// Not JSON, a wrong type, or an unknown field (serde's message names it).
    #[error("invalid preferences: {0}")]
    Invalid(String),
    /// `profile` or `vibe` is not a JSON object.
    #[error("`{0}` must be a JSON object")]
    NotAnObject(&'static str),
    /// `profile` or `vibe` is larger than [`MAX_FREE_FORM_BYTES`].
    #[error("`{0}` is larger than {MAX_FREE_FORM_BYTES} bytes")]
    FieldTooLarge(&'static str),
    /// More than [`MAX_RULES`] rules.
    #[error("at most {MAX_RULES} rules are allowed")]
    TooManyRules,
    /// A rule's key is not an event type, a prefix pattern (`keap.contact.*`) or `*`.
    #[error("rule `{pattern}`: {why}")]
    InvalidPattern {
        /// The key as sent (shortened).
        pattern: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A rule's `max_per_hour` is outside 1..=[`MAX_PER_HOUR_LIMIT`].
    #[error("rule `{pattern}`: max_per_hour must be between 1 and {MAX_PER_HOUR_LIMIT} (use \"enabled\": false to turn a type off), got {value}")]
    MaxPerHourOutOfRange {
        /// The rule's key.
        pattern: String,
        /// The value sent.
        value: u32,
    },
}

impl UserPreferences {
    /// Parses and validates the body of `PUT .../preferences`: the whole document (fields
    /// left out take their defaults), unknown fields rejected, sizes bounded.
    pub fn from_put_body(body: &[u8]) -> Result<Self, PreferencesError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(PreferencesError::TooLarge);
        }
        let mut prefs: Self = serde_json::from_slice(body)
            .map_err(|e| PreferencesError::Invalid(shorten(&e.to_string())))?;
        prefs.normalise();
        prefs.validate()?;
        Ok(prefs)
    }

    /// Rebuilds preferences from a `user_preferences` row (the user's own app may have
    /// written it through Supabase, so it is validated like a `PUT`). `null` columns take
    /// their defaults.
    pub fn from_stored(
        auto_suggest: Option<bool>,
        profile: Value,
        vibe: Value,
        rules: Value,
    ) -> Result<Self, PreferencesError> {
        let rules = match rules {
            Value::Null => BTreeMap::new(),
            other => serde_json::from_value(other)
                .map_err(|e| PreferencesError::Invalid(shorten(&format!("rules: {e}"))))?,
        };
        let mut prefs = Self {
            auto_suggest: auto_suggest.unwrap_or(true),
            profile,
            vibe,
            rules,
        };
        prefs.normalise();
        prefs.validate()?;
        Ok(prefs)
    }

    /// `null` profile or vibe read as `{}`.
    fn normalise(&mut self) {
        for field in [&mut self.profile, &mut self.vibe] {
            if field.is_null() {
                *field = empty_object();
            }
        }
    }

    /// Checks the bounds a `PUT` must respect.
    pub fn validate(&self) -> Result<(), PreferencesError> {
        for (name, field) in [("profile", &self.profile), ("vibe", &self.vibe)] {
            if !field.is_object() {
                return Err(PreferencesError::NotAnObject(name));
            }
            if field.to_string().len() > MAX_FREE_FORM_BYTES {
                return Err(PreferencesError::FieldTooLarge(name));
            }
        }
        if self.rules.len() > MAX_RULES {
            return Err(PreferencesError::TooManyRules);
        }
        for (pattern, rule) in &self.rules {
            check_pattern(pattern)?;
            if !(1..=MAX_PER_HOUR_LIMIT).contains(&rule.max_per_hour) {
                return Err(PreferencesError::MaxPerHourOutOfRange {
                    pattern: shorten(pattern),
                    value: rule.max_per_hour,
                });
            }
        }
        Ok(())
    }

    /// The rule that applies to `event_type`: the exact key, else the longest prefix
    /// pattern that matches (`keap.contact.*` before `keap.*`), else `*`, else
    /// [`EventRule::default_for`].
    pub fn rule_for(&self, event_type: &str) -> EventRule {
        if let Some(rule) = self.rules.get(event_type) {
            return *rule;
        }
        self.rules
            .iter()
            .filter_map(|(pattern, rule)| {
                let prefix = pattern.strip_suffix('*')?;
                event_type
                    .starts_with(prefix)
                    .then_some((prefix.len(), rule))
            })
            .max_by_key(|(len, _)| *len)
            .map_or_else(|| EventRule::default_for(event_type), |(_, rule)| *rule)
    }

    /// The preferences as JSON (the `GET` answer).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A rule key: `*`, or dot-separated segments of `[a-z0-9_-]` (ASCII, any case), the last
/// of which may be `*` (`keap.contact.*`).
fn check_pattern(pattern: &str) -> Result<(), PreferencesError> {
    let fail = |why| {
        Err(PreferencesError::InvalidPattern {
            pattern: shorten(pattern),
            why,
        })
    };
    if pattern == "*" {
        return Ok(());
    }
    if pattern.is_empty() {
        return fail("the event type is empty");
    }
    if pattern.chars().count() > MAX_PATTERN_CHARS {
        return fail("the event type is too long");
    }
    let segments: Vec<&str> = pattern.split('.').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        if *segment == "*" && i == last {
            continue;
        }
        if segment.is_empty() {
            return fail("empty segment between dots");
        }
        if segment.contains('*') {
            return fail("`*` may only stand alone as the last segment (`keap.contact.*`)");
        }
        if !segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return fail("use letters, digits, `_`, `-` and dots only");
        }
    }
    Ok(())
}

/// At most 200 characters, no control characters (messages go back to clients and logs).
fn shorten(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn put(body: Value) -> Result<UserPreferences, PreferencesError> {
        UserPreferences::from_put_body(body.to_string().as_bytes())
    }

    #[test]
    fn defaults_suggest_everything_within_a_budget() {
        let prefs = put(json!({})).unwrap();
        assert_eq!(prefs, UserPreferences::default());
        assert!(prefs.auto_suggest);
        assert_eq!(prefs.profile, json!({}));
        let rule = prefs.rule_for("shopify.product.created");
        assert_eq!(rule, EventRule::default());
        assert_eq!(rule.max_per_hour, DEFAULT_MAX_PER_HOUR);
        assert_eq!(
            prefs.rule_for("shopify.inventory.low").importance,
            Importance::High
        );
        assert_eq!(
            prefs.rule_for("repo.build.failed").importance,
            Importance::High
        );
    }

    #[test]
    fn a_full_body_round_trips() {
        let body = json!({
            "auto_suggest": false,
            "profile": {"business": "Tea shop", "audience": "commuters", "tone": "warm"},
            "vibe": {"emoji": false, "length": "short"},
            "rules": {
                "keap.contact.*": {"enabled": false},
                "shopify.product.created": {"importance": "high", "max_per_hour": 3}
            }
        });
        let prefs = put(body.clone()).unwrap();
        assert!(!prefs.auto_suggest);
        assert_eq!(prefs.profile["business"], "Tea shop");
        let rule = prefs.rules["shopify.product.created"];
        assert_eq!(
            (rule.enabled, rule.importance, rule.max_per_hour),
            (true, Importance::High, 3)
        );
        assert!(!prefs.rules["keap.contact.*"].enabled);
        assert_eq!(
            prefs.rules["keap.contact.*"].max_per_hour,
            DEFAULT_MAX_PER_HOUR
        );
        let again = put(prefs.to_json()).unwrap();
        assert_eq!(again, prefs);
    }

    #[test]
    fn most_specific_rule_wins() {
        let prefs = put(json!({"rules": {
            "*": {"max_per_hour": 1},
            "keap.*": {"importance": "low"},
            "keap.contact.*": {"importance": "high"},
            "keap.contact.add": {"enabled": false}
        }}))
        .unwrap();
        assert!(!prefs.rule_for("keap.contact.add").enabled);
        assert_eq!(
            prefs.rule_for("keap.contact.edit").importance,
            Importance::High
        );
        assert_eq!(prefs.rule_for("keap.order.add").importance, Importance::Low);
        assert_eq!(prefs.rule_for("repo.push").max_per_hour, 1);
        // A prefix pattern matches whole segments only by construction of its dot.
        assert_eq!(
            prefs.rule_for("keap.contacts.x").importance,
            Importance::Low
        );
    }

    #[test]
    fn bad_bodies_get_clear_errors() {
        let cases: Vec<(Value, &str)> = vec![
            (json!({"auto_sugest": true}), "unknown field `auto_sugest`"),
            (
                json!({"rules": {"x": {"enabled": true, "limit": 3}}}),
                "unknown field `limit`",
            ),
            (json!({"auto_suggest": "yes"}), "invalid type"),
            (json!({"profile": "tea"}), "`profile` must be a JSON object"),
            (json!({"vibe": [1]}), "`vibe` must be a JSON object"),
            (
                json!({"rules": {"x": {"importance": "urgent"}}}),
                "unknown variant `urgent`",
            ),
            (
                json!({"rules": {"x": {"max_per_hour": 0}}}),
                "max_per_hour must be between 1 and 1000",
            ),
            (json!({"rules": {"x": {"max_per_hour": 1001}}}), "got 1001"),
            (
                json!({"rules": {"x": {"max_per_hour": -1}}}),
                "invalid value",
            ),
            (json!({"rules": {"": {}}}), "the event type is empty"),
            (
                json!({"rules": {"keap.*.add": {}}}),
                "`*` may only stand alone",
            ),
            (json!({"rules": {"keap..add": {}}}), "empty segment"),
            (json!({"rules": {"keap contact": {}}}), "letters, digits"),
            (
                json!({"profile": {"about": "x".repeat(MAX_FREE_FORM_BYTES)}}),
                "larger than",
            ),
        ];
        for (body, expected) in cases {
            let error = put(body.clone()).unwrap_err().to_string();
            assert!(error.contains(expected), "{body}: {error}");
        }
        let many: Map<String, Value> = (0..=MAX_RULES)
            .map(|i| (format!("type.{i}"), json!({})))
            .collect();
        assert_eq!(
            put(json!({"rules": many})).unwrap_err(),
            PreferencesError::TooManyRules
        );
        let huge = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            UserPreferences::from_put_body(&huge).unwrap_err(),
            PreferencesError::TooLarge
        );
        assert!(UserPreferences::from_put_body(b"not json").is_err());
    }

    #[test]
    fn stored_rows_are_read_with_defaults_and_validated() {
        let prefs =
            UserPreferences::from_stored(None, Value::Null, Value::Null, Value::Null).unwrap();
        assert_eq!(prefs, UserPreferences::default());
        let prefs = UserPreferences::from_stored(
            Some(false),
            json!({"tone": "dry"}),
            json!({}),
            json!({"repo.*": {"max_per_hour": 2}}),
        )
        .unwrap();
        assert!(!prefs.auto_suggest);
        assert_eq!(prefs.rule_for("repo.push").max_per_hour, 2);
        assert!(UserPreferences::from_stored(
            Some(true),
            json!({}),
            json!({}),
            json!({"repo.*": {"max_per_hour": 0}})
        )
        .is_err());
        assert!(
            UserPreferences::from_stored(Some(true), json!(3), json!({}), Value::Null).is_err()
        );
    }
}
