//! The prompt for one event: a per-kind template, the event's data (bounded, secrets and
//! contact details left out), the user's profile and vibe. Sent as the `system` and `user`
//! messages of a Chat Completions request (<https://platform.openai.com/docs/api-reference/chat/create>).

use serde_json::{Map, Value};

use super::content::ContentKind;
use super::preferences::UserPreferences;

/// Longest event data copied into a prompt, in characters of pretty-printed JSON.
pub const MAX_EVENT_DATA_CHARS: usize = 6_000;
/// Longest profile or vibe copied into a prompt, in characters of JSON.
pub const MAX_STYLE_CHARS: usize = 1_500;
/// Longest string value copied from the event.
const MAX_STRING_CHARS: usize = 600;
/// Most items copied from one array.
const MAX_ARRAY_ITEMS: usize = 20;
/// Deepest nesting copied.
const MAX_DEPTH: usize = 8;
/// What stands in for a value that is never copied.
pub const REDACTED: &str = "[redacted]";

/// Key fragments that mark credentials (matched case-insensitively within the key).
const SECRET_KEY_PARTS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "api_key",
    "apikey",
    "authorization",
    "private_key",
    "signature",
    "hmac",
    "cookie",
    "session",
    "credential",
    "card_number",
    "cvv",
    "ssn",
];
/// Keys that are a person's contact details (exact, case-insensitive): not needed to write
/// the content, and not sent to a third-party model.
const CONTACT_KEYS: &[&str] = &[
    "email",
    "email_address",
    "phone",
    "phone_number",
    "mobile",
    "address1",
    "address2",
    "street",
    "zip",
    "postal_code",
    "postcode",
    "ip",
    "browser_ip",
    "client_ip",
    "latitude",
    "longitude",
    "birthday",
    "date_of_birth",
];

/// A Chat Completions prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The `system` message: role, deliverables, format and style.
    pub system: String,
    /// The `user` message: its first line names the event and the ask, then the data.
    pub user: String,
}

impl Prompt {
    /// Both messages as one text, for `agent_runs.prompt`.
    pub fn to_stored(&self) -> String {
        format!("[system]\n{}\n\n[user]\n{}", self.system, self.user)
    }
}

/// Builds the prompt for an event of `event_type` that [`super::decide()`] gave `kind`.
pub fn build_prompt(
    kind: ContentKind,
    event_type: &str,
    event_data: &Value,
    prefs: &UserPreferences,
) -> Prompt {
    let deliverables = join_words(kind.deliverables());
    let mut system = String::from(
        "You are the proactive assistant of Edge Sync. When something happens in the \
         user's business systems you write content they can use at once.\n",
    );
    system.push_str(&format!("Write {deliverables}.\n"));
    system.push_str(instructions(kind));
    system.push_str(
        "\nFormat: Markdown, starting with a level-1 heading that names the subject, then \
         one level-2 section per deliverable. Use only facts from the event data; where a \
         fact is missing, say what to check instead of inventing it. Never include \
         credentials or personal contact details.\n",
    );
    if let Some(profile) = style_json(&prefs.profile) {
        system.push_str(&format!("About the user (profile): {profile}\n"));
    }
    if let Some(vibe) = style_json(&prefs.vibe) {
        system.push_str(&format!("Style to follow (vibe): {vibe}\n"));
    }
    let data = bounded_pretty(&sanitize_event_data(event_data));
    let user = format!(
        "Event {event_type}: write {deliverables}.\n\nEvent data (JSON):\n```json\n{data}\n```\n"
    );
    Prompt { system, user }
}

/// What each kind must cover, beyond its deliverables.
fn instructions(kind: ContentKind) -> &'static str {
    match kind {
        ContentKind::ProductLaunch => {
            "The hook is one or two spoken sentences for the first three seconds of a \
             vertical video, plus a shot list of 3 to 5 shots. The copy has a headline, two \
             short paragraphs and three bullet points built from the product's real \
             attributes (title, type, vendor, variants, price, tags)."
        }
        ContentKind::ProductRefresh => {
            "Say what changed if the data shows it, then give a refreshed headline, a short \
             description and a call to action."
        }
        ContentKind::CollectionMarketing => {
            "Give a collection headline, a two-sentence description, an email subject line \
             and two social posts."
        }
        ContentKind::RestockingStrategy => {
            "State the current level and the low-stock threshold, estimate urgency, and give \
             a reorder plan: quantity reasoning, supplier actions, and what to tell \
             customers meanwhile."
        }
        ContentKind::OrderFollowUp => {
            "Give a thank-you message, a cross-sell idea based on the items ordered, and a \
             timed follow-up sequence (day 0, day 7, day 30)."
        }
        ContentKind::CrmFollowUp => {
            "Keap hooks carry record ids only: name the records, then give concrete \
             follow-up actions with timing, and a short message template."
        }
        ContentKind::SchemaChangeDoc => {
            "Document the schema change: what changed, migration notes, effect on \
             queries, APIs and row level security, and a snippet for the schema docs."
        }
        ContentKind::PrReview => {
            "The checklist is specific to this change. Test ideas name cases, edge cases \
             and failure modes."
        }
        ContentKind::ReleaseNotes => {
            "The changelog entry follows Keep a Changelog categories. List the documents \
             that likely need updating and why."
        }
        ContentKind::BuildFailure => {
            "Summarise what failed where (workflow, branch, commit), list likely causes and \
             concrete fixes to try in order, and how to reproduce locally."
        }
        ContentKind::BreakingChangeCheck => {
            "Review the pushed commits for breaking changes (public APIs, schemas, \
             configuration, removed files), and give a checklist and a verdict."
        }
        ContentKind::IssuePlan => {
            "Give a solution approach, a task breakdown with rough sizes, and an RFC \
             outline (context, goals, non-goals, design, alternatives, risks)."
        }
        ContentKind::IssueNextSteps => {
            "Read the comment in the context of its issue and give the next steps, who \
             should act, and a suggested reply."
        }
        ContentKind::StaleWorkNudge => {
            "Say how long it has been idle, write a short friendly nudge to its author, and \
             give the options: finish (what is left), hand over, split, or close with a note."
        }
        ContentKind::DependencyUpgrade => {
            "Name the package, the vulnerable and fixed versions if known, the risk, and an \
             upgrade plan: the change, what to test, and how to roll back."
        }
        ContentKind::RegressionTriage => {
            "State the metric, before and after, and since when; list the likely causes \
             (recent deploys first), the checks to run in order, and when to roll back."
        }
        ContentKind::IncidentResponse => {
            "Give a first-response checklist (acknowledge, assess impact, mitigate, \
             communicate), who should be involved, and a short status update for customers."
        }
    }
}

/// `a`, `a and b`, `a, b and c`.
pub(crate) fn join_words(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// A non-empty profile or vibe as compact JSON, sanitised and bounded.
fn style_json(value: &Value) -> Option<String> {
    let empty = match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        _ => false,
    };
    if empty {
        return None;
    }
    Some(cut(
        &sanitize_event_data(value).to_string(),
        MAX_STYLE_CHARS,
    ))
}

/// A copy of event data fit for a prompt: values under credential-like keys (`token`,
/// `secret`, `password`, `signature`, ...) and contact details (`email`, `phone`,
/// `address1`, ...) replaced by [`REDACTED`], strings cut to 600 characters, arrays to 20
/// items, nesting to 8 levels.
pub fn sanitize_event_data(data: &Value) -> Value {
    sanitize(data, 0)
}

fn sanitize(value: &Value, depth: usize) -> Value {
    match value {
        Value::Object(map) if depth >= MAX_DEPTH => {
            Value::String(format!("{{… {} keys}}", map.len()))
        }
        Value::Array(items) if depth >= MAX_DEPTH => {
            Value::String(format!("[… {} items]", items.len()))
        }
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                let copied = if is_secret_key(key) && !value.is_null() {
                    Value::String(REDACTED.to_owned())
                } else {
                    sanitize(value, depth + 1)
                };
                out.insert(key.clone(), copied);
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let mut out: Vec<Value> = items
                .iter()
                .take(MAX_ARRAY_ITEMS)
                .map(|v| sanitize(v, depth + 1))
                .collect();
            if items.len() > MAX_ARRAY_ITEMS {
                out.push(Value::String(format!(
                    "… {} more items",
                    items.len() - MAX_ARRAY_ITEMS
                )));
            }
            Value::Array(out)
        }
        Value::String(text) => Value::String(cut(text, MAX_STRING_CHARS)),
        other => other.clone(),
    }
}

/// Whether a key names a credential or a person's contact details.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    CONTACT_KEYS.contains(&key.as_str())
        || key.ends_with("_email")
        || key.ends_with("_phone")
        || SECRET_KEY_PARTS.iter().any(|part| key.contains(part))
}

/// Pretty JSON, cut to [`MAX_EVENT_DATA_CHARS`].
fn bounded_pretty(value: &Value) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    cut(&text, MAX_EVENT_DATA_CHARS)
}

/// At most `max` characters; a cut text ends with `…`.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn assembles_template_data_profile_and_vibe() {
        let prefs = UserPreferences {
            profile: json!({"business": "Kettle & Co", "tone": "warm"}),
            vibe: json!({"emoji": false}),
            ..UserPreferences::default()
        };
        let data = json!({"title": "Copper Kettle", "vendor": "Kettle & Co"});
        let prompt = build_prompt(
            ContentKind::ProductLaunch,
            "shopify.product.created",
            &data,
            &prefs,
        );
        assert_eq!(
            prompt.user.lines().next(),
            Some("Event shopify.product.created: write a short-video hook and marketing copy.")
        );
        assert!(prompt.user.contains("\"title\": \"Copper Kettle\""));
        assert!(prompt
            .system
            .contains("Write a short-video hook and marketing copy."));
        assert!(prompt.system.contains("vertical video"));
        assert!(prompt
            .system
            .contains(r#"About the user (profile): {"business":"Kettle & Co","tone":"warm"}"#));
        assert!(prompt
            .system
            .contains(r#"Style to follow (vibe): {"emoji":false}"#));
        assert!(prompt.to_stored().starts_with("[system]\nYou are"));

        let plain = build_prompt(
            ContentKind::IssuePlan,
            "issue.created",
            &json!({}),
            &UserPreferences::default(),
        );
        assert!(!plain.system.contains("profile"));
        assert!(!plain.system.contains("vibe"));
        assert!(plain
            .system
            .contains("Write a solution approach, a task breakdown and an RFC outline."));
    }

    #[test]
    fn secrets_and_contact_details_are_never_copied() {
        let data = json!({
            "title": "T",
            "access_token": "shpat_123",
            "nested": {"Client_Secret": "s3", "webhookSignature": "abc", "x_api_key": "k"},
            "customer": {"first_name": "Ada", "email": "ada@example.com", "phone": "+1 555", "default_address": {"address1": "1 Main St", "city": "Leeds"}},
            "contact_email": "x@y.z",
            "token_count": null,
        });
        let prompt = build_prompt(
            ContentKind::OrderFollowUp,
            "shopify.order.created",
            &data,
            &UserPreferences::default(),
        );
        for secret in [
            "shpat_123",
            "s3",
            "abc",
            "\"k\"",
            "ada@example.com",
            "+1 555",
            "1 Main St",
            "x@y.z",
        ] {
            assert!(!prompt.user.contains(secret), "{secret} leaked");
        }
        assert!(prompt.user.contains("Ada"));
        assert!(prompt.user.contains("Leeds"));
        assert!(prompt.user.contains(REDACTED));
    }

    #[test]
    fn event_data_is_bounded() {
        let data = json!({
            "body": "x".repeat(10_000),
            "items": (0..100).collect::<Vec<_>>(),
            "deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}},
        });
        let clean = sanitize_event_data(&data);
        assert_eq!(
            clean["body"].as_str().unwrap().chars().count(),
            MAX_STRING_CHARS
        );
        assert_eq!(
            clean["items"].as_array().unwrap().len(),
            MAX_ARRAY_ITEMS + 1
        );
        assert_eq!(clean["items"][MAX_ARRAY_ITEMS], "… 80 more items");
        assert_eq!(
            clean["deep"]["a"]["b"]["c"]["d"]["e"]["f"]["g"],
            "{… 1 keys}"
        );
        let many: Map<String, Value> = (0..2_000).map(|i| (format!("k{i}"), json!(i))).collect();
        let prompt = build_prompt(
            ContentKind::IssuePlan,
            "issue.created",
            &Value::Object(many),
            &UserPreferences::default(),
        );
        assert!(prompt.user.chars().count() < MAX_EVENT_DATA_CHARS + 200);
        assert!(prompt.user.contains('…'));
    }
}
