//! The suggestion itself: an [`Artifact`] (title, Markdown, plain text), written either by
//! the model ([`Artifact::from_model`]) or, with no model configured or the model down, by
//! the deterministic template generator [`template_artifact`] from the event's data.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::content::ContentKind;
use super::preferences::UserPreferences;
use super::prompt::{cut, is_secret_key, join_words};

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 120;
/// Longest Markdown kept from a model answer, in characters.
pub const MAX_MARKDOWN_CHARS: usize = 20_000;

/// A suggestion's content (`agent_runs.output`: `{title, markdown, text}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// One line naming the subject.
    pub title: String,
    /// The content in Markdown.
    pub markdown: String,
    /// The same content as plain text.
    pub text: String,
}

impl Artifact {
    /// From a model's Markdown answer: the title is the first heading, else the first
    /// non-empty line (Markdown stripped, cut to [`MAX_TITLE_CHARS`]); the Markdown is cut
    /// to [`MAX_MARKDOWN_CHARS`].
    pub fn from_model(content: &str) -> Self {
        Self::from_markdown(cut(content.trim(), MAX_MARKDOWN_CHARS))
    }

    /// From Markdown written here: the title is its first heading (else its first line), the
    /// text is [`markdown_to_text`] of it.
    pub fn from_markdown(markdown: String) -> Self {
        let lines = || {
            markdown
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("```"))
        };
        let heading = lines().find(|l| l.starts_with('#'));
        let title = heading
            .or_else(|| lines().next())
            .map(|line| cut(&inline_text(strip_block_marker(line)), MAX_TITLE_CHARS))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "Suggestion".to_owned());
        let text = markdown_to_text(&markdown);
        Self {
            title,
            markdown,
            text,
        }
    }

    /// `{"title", "markdown", "text"}`, for `agent_runs.output`.
    pub fn to_json(&self) -> Value {
        json!({"title": self.title, "markdown": self.markdown, "text": self.text})
    }
}

/// Markdown as plain text: heading and quote markers, emphasis, inline code, fences and
/// rules dropped, links written `text (url)`, list items as `- `.
pub fn markdown_to_text(markdown: &str) -> String {
    let mut out = Vec::new();
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            continue;
        }
        if matches!(trimmed, "---" | "***" | "___") {
            out.push(String::new());
            continue;
        }
        // A whole line in emphasis (`_note_`) loses its markers.
        let trimmed = trimmed
            .strip_prefix('_')
            .and_then(|t| t.strip_suffix('_'))
            .filter(|t| !t.is_empty())
            .unwrap_or(trimmed);
        let indent = &line[..line.len() - line.trim_start().len()];
        let body = strip_block_marker(trimmed);
        let bullet = if trimmed.starts_with("- ") || trimmed.starts_with("* ") {
            "- "
        } else {
            ""
        };
        out.push(format!("{indent}{bullet}{}", inline_text(body)));
    }
    let text = out.join("\n");
    text.trim().to_owned()
}

/// A line without its heading (`#`), quote (`>`) or bullet (`-`, `*`) marker.
fn strip_block_marker(line: &str) -> &str {
    let line = line.trim_start();
    let line = line.trim_start_matches('#').trim_start();
    let line = line.strip_prefix('>').map_or(line, str::trim_start);
    line.strip_prefix("- ")
        .or_else(|| line.strip_prefix("* "))
        .unwrap_or(line)
}

/// Inline Markdown as text: `**`, `__`, `` ` `` dropped, `[a](b)` → `a (b)`.
fn inline_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let link = after.find("](").and_then(|close| {
            let url_part = &after[close + 2..];
            url_part
                .find(')')
                .map(|end| (&after[..close], &url_part[..end], &url_part[end + 1..]))
        });
        match link {
            Some((label, url, tail)) => {
                out.push_str(label);
                if !url.is_empty() && url != label {
                    let _ = write!(out, " ({url})");
                }
                rest = tail;
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.replace("**", "").replace("__", "").replace('`', "")
}

/// Writes the suggestion for an event from templates and the event's data alone: the
/// same deliverables the model is asked for ([`ContentKind::deliverables`]), using the
/// user's profile (`business`, `audience`, `tone`) where it helps. Deterministic: the same
/// input always gives the same artifact. `shopify.inventory.low` reads the threshold from
/// `event_data.low_stock_threshold` when the event carries it.
pub fn template_artifact(
    kind: ContentKind,
    event_type: &str,
    event_data: &Value,
    prefs: &UserPreferences,
) -> Artifact {
    let ctx = Ctx {
        data: event_data,
        profile: Profile::from(prefs),
    };
    let markdown = match kind {
        ContentKind::ProductLaunch => product(&ctx, true),
        ContentKind::ProductRefresh => product(&ctx, false),
        ContentKind::CollectionMarketing => collection(&ctx),
        ContentKind::RestockingStrategy => restocking(&ctx),
        ContentKind::OrderFollowUp => order_follow_up(&ctx),
        ContentKind::CrmFollowUp => crm_follow_up(&ctx, event_type),
        ContentKind::SchemaChangeDoc => schema_change(&ctx, event_type),
        ContentKind::PrReview => pr_review(&ctx),
        ContentKind::ReleaseNotes => release_notes(&ctx),
        ContentKind::BuildFailure => build_failure(&ctx),
        ContentKind::BreakingChangeCheck => breaking_change_check(&ctx),
        ContentKind::IssuePlan => issue_plan(&ctx),
        ContentKind::IssueNextSteps => issue_next_steps(&ctx),
        ContentKind::StaleWorkNudge => stale_work(&ctx, event_type),
        ContentKind::DependencyUpgrade => dependency_upgrade(&ctx),
        ContentKind::RegressionTriage => regression_triage(&ctx),
        ContentKind::IncidentResponse => incident_response(&ctx),
    };
    let mut markdown = markdown;
    let _ = write!(
        markdown,
        "\n---\n_Written from the event's data by Edge Sync's template generator ({})._\n",
        join_words(kind.deliverables())
    );
    Artifact::from_markdown(markdown)
}

/// What the templates use of the user's profile.
struct Profile {
    business: Option<String>,
    audience: Option<String>,
    tone: Option<String>,
}

impl From<&UserPreferences> for Profile {
    fn from(prefs: &UserPreferences) -> Self {
        let field = |name: &str| {
            let value = prefs.profile.get(name)?;
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Object(map) => map.get("name")?.as_str()?.to_owned(),
                _ => return None,
            };
            let text = text.trim();
            (!text.is_empty()).then(|| cut(text, 80))
        };
        Self {
            business: field("business"),
            audience: field("audience"),
            tone: field("tone"),
        }
    }
}

struct Ctx<'a> {
    data: &'a Value,
    profile: Profile,
}

impl Ctx<'_> {
    /// The first of `paths` that holds a non-empty string or a number, as text (one line,
    /// at most 200 characters). Values under credential-like keys are never read.
    fn text(&self, paths: &[&str]) -> Option<String> {
        paths.iter().find_map(|path| text_at(self.data, path))
    }

    fn number(&self, paths: &[&str]) -> Option<f64> {
        paths.iter().find_map(|path| {
            let value = lookup(self.data, path)?;
            value
                .as_f64()
                .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
        })
    }

    fn array(&self, paths: &[&str]) -> Vec<&Value> {
        paths
            .iter()
            .find_map(|path| lookup(self.data, path).and_then(Value::as_array))
            .map(|items| items.iter().collect())
            .unwrap_or_default()
    }

    fn audience(&self) -> String {
        self.profile
            .audience
            .clone()
            .unwrap_or_else(|| "your customers".to_owned())
    }

    fn tone_note(&self) -> String {
        match &self.profile.tone {
            Some(tone) => format!("Keep the tone {tone}."),
            None => "Keep the tone consistent with your store's voice.".to_owned(),
        }
    }
}

/// The value at a dotted path (`pull_request.user.login`; numeric segments index arrays).
fn lookup<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(data, |value, segment| {
        if is_secret_key(segment) {
            return None;
        }
        match value {
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
            _ => value.get(segment),
        }
    })
}

fn text_at(data: &Value, path: &str) -> Option<String> {
    let text = match lookup(data, path)? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!one_line.is_empty()).then(|| cut(&one_line, 200))
}

/// Plain text of an HTML fragment (Shopify's `body_html`).
fn html_text(html: &str) -> String {
    const BLOCKS: &[&str] = &[
        "p", "br", "li", "div", "ul", "ol", "h1", "h2", "h3", "h4", "tr", "td",
    ];
    let mut out = String::new();
    let mut tag: Option<String> = None;
    for c in html.chars() {
        match (&mut tag, c) {
            (None, '<') => tag = Some(String::new()),
            (Some(name), '>') => {
                let name = name
                    .trim_start_matches('/')
                    .split([' ', '/'])
                    .next()
                    .unwrap_or("");
                if BLOCKS.contains(&name.to_ascii_lowercase().as_str()) {
                    out.push(' ');
                }
                tag = None;
            }
            (Some(name), c) => name.push(c),
            (None, c) => out.push(c),
        }
    }
    let decoded = out
        .replace("&amp;", "&")
        .replace("&nbsp;", " ")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first sentence of a text, at most 160 characters.
fn first_sentence(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let end = text
        .char_indices()
        .find(|(i, c)| matches!(c, '.' | '!' | '?') && text[i + 1..].starts_with(' '))
        .map_or(text.len(), |(i, _)| i + 1);
    Some(cut(&text[..end], 160))
}

/// `tags` as Shopify sends them (`"a, b"`) or as a list.
fn tags(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s
            .split(',')
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|t| t.as_str().or_else(|| t.get("name").and_then(Value::as_str)))
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// A price range like `19.00` or `19.00–29.00`.
fn price_range(prices: &[f64]) -> Option<String> {
    let min = prices.iter().copied().fold(f64::INFINITY, f64::min);
    let max = prices.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !min.is_finite() {
        return None;
    }
    Some(if (max - min).abs() < 0.005 {
        format!("{min:.2}")
    } else {
        format!("{min:.2}–{max:.2}")
    })
}

fn product(ctx: &Ctx, launch: bool) -> String {
    let title = ctx
        .text(&["title"])
        .unwrap_or_else(|| "your new product".to_owned());
    let vendor = ctx.text(&["vendor"]);
    let product_type = ctx.text(&["product_type"]);
    let description = ctx
        .text(&["body_html"])
        .map(|html| html_text(&html))
        .and_then(|t| first_sentence(&t));
    let variants = ctx.array(&["variants"]);
    let prices: Vec<f64> = variants
        .iter()
        .filter_map(|v| {
            v.get("price")
                .and_then(|p| p.as_f64().or_else(|| p.as_str()?.parse().ok()))
        })
        .collect();
    let price = price_range(&prices);
    let options: Vec<String> = variants
        .iter()
        .filter_map(|v| v.get("title").and_then(Value::as_str))
        .filter(|t| *t != "Default Title")
        .map(str::to_owned)
        .collect();
    let tag_list = tags(ctx.data.get("tags"));
    let audience = ctx.audience();
    let by_vendor = vendor
        .as_ref()
        .map(|v| format!(" by {v}"))
        .unwrap_or_default();
    let kind_words = product_type.clone().unwrap_or_else(|| "product".to_owned());

    let mut md = String::new();
    if launch {
        let _ = writeln!(md, "# Launch kit: {title}\n");
        let _ = writeln!(md, "## Short-video hook\n");
        let promise = description.clone().unwrap_or_else(|| {
            format!(
                "The {} {audience} have been waiting for.",
                kind_words.to_lowercase()
            )
        });
        let _ = writeln!(
            md,
            "> \"Stop scrolling — meet {title}{by_vendor}. {promise}\"\n"
        );
        let _ = writeln!(md, "Shot list (vertical, 15–20 s):");
        let _ = writeln!(
            md,
            "1. 0–3 s: close-up reveal of {title}, the hook line as on-screen text."
        );
        let _ = writeln!(
            md,
            "2. 3–8 s: {title} in use, from the point of view of {audience}."
        );
        if options.is_empty() {
            let _ = writeln!(md, "3. 8–12 s: the details that set it apart, one per cut.");
        } else {
            let _ = writeln!(
                md,
                "3. 8–12 s: quick cuts through the options: {}.",
                options.join(", ")
            );
        }
        match &price {
            Some(p) => {
                let _ = writeln!(
                    md,
                    "4. 12–15 s: price card \"{p}\" and \"Shop now — link in bio\".\n"
                );
            }
            None => {
                let _ = writeln!(md, "4. 12–15 s: \"Shop now — link in bio\".\n");
            }
        }
        let _ = writeln!(md, "## Marketing copy\n");
    } else {
        let _ = writeln!(md, "# Refreshed copy: {title}\n");
        let updated = ctx.text(&["updated_at"]);
        let _ = writeln!(
            md,
            "The product was updated{}. Check that its page, ads and emails still match what it is now.\n",
            updated.map(|u| format!(" ({u})")).unwrap_or_default()
        );
        let _ = writeln!(md, "## Refreshed copy\n");
    }
    let _ = writeln!(md, "**{title}{by_vendor}**\n");
    let opening = description.unwrap_or_else(|| {
        format!(
            "{title} is a {} made for {audience}.",
            kind_words.to_lowercase()
        )
    });
    let _ = writeln!(md, "{opening}\n");
    let mut second = String::new();
    if let Some(p) = &price {
        let _ = write!(second, "Available from {p}");
        if options.len() > 1 {
            let _ = write!(second, " in {} options", options.len());
        }
        second.push_str(". ");
    }
    let _ = write!(second, "Order today and see the difference for yourself.");
    let _ = writeln!(md, "{second}\n");
    let mut bullets = Vec::new();
    if let Some(t) = &product_type {
        bullets.push(format!("Category: {t}"));
    }
    if !options.is_empty() {
        bullets.push(format!("Options: {}", options.join(", ")));
    }
    if !tag_list.is_empty() {
        bullets.push(format!("Great for: {}", tag_list.join(", ")));
    }
    if let Some(v) = &vendor {
        bullets.push(format!("Made by {v}"));
    }
    if bullets.is_empty() {
        bullets.push(
            "Add the product's type, options and tags in Shopify to sharpen this copy".to_owned(),
        );
    }
    for b in bullets {
        let _ = writeln!(md, "- {b}");
    }
    let _ = writeln!(md, "\n**Call to action:** Shop {title} now.\n");
    let _ = writeln!(md, "## Before you publish\n");
    let _ = writeln!(md, "- {}", ctx.tone_note());
    if !tag_list.is_empty() {
        let hashtags: Vec<String> = tag_list
            .iter()
            .map(|t| format!("#{}", t.split_whitespace().collect::<String>()))
            .collect();
        let _ = writeln!(md, "- Hashtags: {}", hashtags.join(" "));
    }
    if let Some(handle) = ctx.text(&["handle"]) {
        let _ = writeln!(md, "- Link to the product page `/products/{handle}`.");
    }
    md
}

fn collection(ctx: &Ctx) -> String {
    let title = ctx
        .text(&["title"])
        .unwrap_or_else(|| "the new collection".to_owned());
    let description = ctx
        .text(&["body_html"])
        .map(|h| html_text(&h))
        .and_then(|t| first_sentence(&t));
    let audience = ctx.audience();
    let business = ctx
        .profile
        .business
        .clone()
        .unwrap_or_else(|| "our store".to_owned());
    let mut md = format!("# Collection marketing: {title}\n\n");
    let _ = writeln!(md, "## Headline\n\n**{title}: picked for {audience}**\n");
    let _ = writeln!(md, "## Description\n");
    let _ = writeln!(
        md,
        "{} Every piece in {title} was chosen by {business} to work together, so finding the right one takes minutes, not hours.\n",
        description.unwrap_or_else(|| format!("Introducing {title}, new at {business}."))
    );
    let _ = writeln!(md, "## Email\n\n- Subject: \"New: {title} is here\"\n- Preview text: \"A first look for {audience}.\"\n");
    let _ = writeln!(md, "## Social posts\n");
    let _ = writeln!(
        md,
        "1. \"Just dropped: {title}. Which one is your favourite? 👇\""
    );
    let _ = writeln!(
        md,
        "2. \"{title}, curated for {audience}. Tap to shop the full collection.\"\n"
    );
    if let Some(handle) = ctx.text(&["handle"]) {
        let _ = writeln!(
            md,
            "Link everything to `/collections/{handle}`. {}",
            ctx.tone_note()
        );
    } else {
        let _ = writeln!(md, "{}", ctx.tone_note());
    }
    md
}

fn restocking(ctx: &Ctx) -> String {
    let item = ctx.text(&["inventory_item_id", "admin_graphql_api_id"]);
    let location = ctx.text(&["location_id"]);
    let level = ctx.number(&["available"]);
    let threshold = ctx.number(&["low_stock_threshold", "threshold"]);
    let subject = item
        .as_ref()
        .map(|i| format!("inventory item {i}"))
        .unwrap_or_else(|| "an inventory item".to_owned());
    let mut md = format!("# Restock {subject}\n\n## Where it stands\n\n");
    let level_text = level.map_or_else(|| "unknown".to_owned(), |l| format!("{l:.0}"));
    let _ = writeln!(
        md,
        "- Available now: **{level_text}** units{}",
        location
            .map(|l| format!(" at location {l}"))
            .unwrap_or_default()
    );
    match threshold {
        Some(t) => {
            let _ = writeln!(md, "- Low-stock threshold: **{t:.0}** units");
        }
        None => {
            let _ = writeln!(
                md,
                "- Low-stock threshold: reached (the alert fired at or below it)"
            );
        }
    }
    let urgency = match (level, threshold) {
        (Some(l), _) if l <= 0.0 => "Out of stock: every visit now is a lost sale. Act today.",
        (Some(l), Some(t)) if l <= t / 2.0 => {
            "Critical: under half the threshold. Order this week."
        }
        _ => "Low: order soon to avoid a stock-out.",
    };
    let _ = writeln!(md, "- Urgency: {urgency}\n");
    let _ = writeln!(md, "## Reorder plan\n");
    let _ = writeln!(
        md,
        "1. Check the last 30 days of sales for this item to get the daily rate."
    );
    let _ = writeln!(md, "2. Order quantity = daily rate × supplier lead time (days) + safety stock{}, minus the {level_text} on hand.",
        threshold.map(|t| format!(" (at least the threshold, {t:.0})")).unwrap_or_default());
    let _ = writeln!(md, "3. Confirm the lead time with the supplier and ask for a partial early shipment if it exceeds your remaining days of stock.");
    let _ = writeln!(md, "4. If the item sells faster than expected, raise the threshold so the next alert comes earlier.\n");
    let _ = writeln!(md, "## Meanwhile\n");
    if level.is_some_and(|l| l <= 0.0) {
        let _ = writeln!(md, "- Turn on \"continue selling when out of stock\" only if the restock date is firm; otherwise show a back-in-stock signup.");
    } else {
        let _ = writeln!(
            md,
            "- Pause ads that point to this item so the remaining stock goes to organic demand."
        );
    }
    let _ = writeln!(md, "- Offer a close alternative on the product page.");
    let _ = writeln!(md, "- Tell waiting customers the expected restock date.");
    md
}

fn order_follow_up(ctx: &Ctx) -> String {
    let name = ctx
        .text(&["name", "order_number", "id"])
        .unwrap_or_else(|| "the new order".to_owned());
    let first_name = ctx.text(&["customer.first_name", "billing_address.first_name"]);
    let total = ctx.text(&["total_price", "current_total_price"]);
    let currency = ctx.text(&["currency", "presentment_currency"]);
    let items: Vec<(String, String)> = ctx
        .array(&["line_items"])
        .iter()
        .filter_map(|item| {
            let title = text_at(item, "title").or_else(|| text_at(item, "name"))?;
            let qty = text_at(item, "quantity").unwrap_or_else(|| "1".to_owned());
            Some((title, qty))
        })
        .collect();
    let greeting = first_name.map_or_else(|| "Hi there".to_owned(), |n| format!("Hi {n}"));
    let business = ctx
        .profile
        .business
        .clone()
        .unwrap_or_else(|| "us".to_owned());
    let mut md = format!("# Follow up order {name}\n\n## The order\n\n");
    if let Some(t) = &total {
        let _ = writeln!(
            md,
            "- Total: {t}{}",
            currency.map(|c| format!(" {c}")).unwrap_or_default()
        );
    }
    for (title, qty) in &items {
        let _ = writeln!(md, "- {qty} × {title}");
    }
    let first_item = items
        .first()
        .map_or_else(|| "your order".to_owned(), |(t, _)| t.clone());
    let _ = writeln!(md, "\n## Thank-you message (day 0)\n");
    let _ = writeln!(md, "> {greeting}, thank you for ordering from {business}! Your {first_item} is being prepared, and we'll send tracking as soon as it ships.\n");
    let _ = writeln!(md, "## Cross-sell idea\n");
    let _ = writeln!(md, "Suggest an accessory or refill that pairs with {first_item}; a small bundle discount for a second purchase within 30 days works best for first-time buyers.\n");
    let _ = writeln!(md, "## Follow-up sequence\n");
    let _ = writeln!(md, "- Day 0: the thank-you message above.");
    let _ = writeln!(
        md,
        "- Day 7: \"How are you finding your {first_item}?\" with care tips and a review link."
    );
    let _ = writeln!(
        md,
        "- Day 30: the cross-sell offer, personalised to {}.",
        if items.len() > 1 {
            "what they bought"
        } else {
            "this purchase"
        }
    );
    let _ = writeln!(md, "\n{}", ctx.tone_note());
    md
}

fn crm_follow_up(ctx: &Ctx, event_type: &str) -> String {
    let mut parts = event_type.splitn(3, '.').skip(1);
    let object = parts.next().unwrap_or("record");
    let action = parts.next().unwrap_or("change");
    let ids: Vec<String> = ctx
        .array(&["object_keys"])
        .iter()
        .filter_map(|k| text_at(k, "id"))
        .collect();
    let noun = if ids.len() == 1 {
        object.to_owned()
    } else {
        format!("{object}s")
    };
    let list = if ids.is_empty() {
        String::new()
    } else {
        let shown: Vec<&str> = ids.iter().take(10).map(String::as_str).collect();
        let more = ids.len().saturating_sub(shown.len());
        format!(
            " ({}{})",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )
    };
    let count = if ids.is_empty() {
        "A".to_owned()
    } else {
        ids.len().to_string()
    };
    let verb = match action {
        "add" => "added",
        "edit" => "updated",
        "delete" => "deleted",
        other => other,
    };
    let mut md = format!("# Keap follow-up: {count} {noun} {verb}\n\n");
    let _ = writeln!(md, "## What happened\n\n{count} Keap {noun} {verb}{list}. Open {} in Keap before acting: the hook carries ids only.\n", if ids.len() == 1 { "it" } else { "them" });
    let _ = writeln!(md, "## Follow-up actions\n");
    let steps: &[&str] = match (object, action) {
        ("contact", "add") => &[
            "Within 24 hours: send a personal welcome and ask one qualifying question.",
            "Tag the contact by source and interest so campaigns can target it.",
            "Add the contact to your nurture sequence; schedule a call task for day 3 if there is no reply.",
        ],
        ("contact", "delete") => &[
            "Check the deletion was intended; note the reason if the contact asked to be forgotten.",
            "Remove the contact from any open tasks and scheduled campaigns.",
        ],
        ("contact", _) => &[
            "Review what changed (stage, tags, contact details) and whether a sequence should start or stop.",
            "If the lifecycle stage moved forward, assign an owner and a next-step task with a due date.",
        ],
        ("opportunity", _) => &[
            "Confirm the stage and the next step with the owner; every open opportunity needs a dated next action.",
            "If it moved forward: send the proposal or recap within one business day.",
            "If it stalled or was lost: log the reason and set a check-in task in 30 days.",
        ],
        ("order", _) => &[
            "Send a thank-you and confirm delivery details.",
            "Create a follow-up task for 7 days to ask about satisfaction and a referral.",
            "Consider an upsell sequence based on the products ordered.",
        ],
        ("task", _) => &[
            "Make sure the task has an owner and a due date, and that it is linked to its contact.",
            "If it is overdue or completed, schedule the next touchpoint so the contact is not dropped.",
        ],
        _ => &["Review the records and schedule the next touchpoint."],
    };
    for (i, step) in steps.iter().enumerate() {
        let _ = writeln!(md, "{}. {step}", i + 1);
    }
    let _ = writeln!(md, "\n## Message template\n");
    let business = ctx
        .profile
        .business
        .clone()
        .unwrap_or_else(|| "our team".to_owned());
    let _ = writeln!(md, "> Hi [first name], this is [your name] from {business}. I wanted to follow up personally: is there anything I can help you with this week?");
    md
}

fn schema_change(ctx: &Ctx, event_type: &str) -> String {
    let schema = ctx.text(&["schema"]).unwrap_or_else(|| "public".to_owned());
    let table = ctx
        .text(&["table"])
        .unwrap_or_else(|| "(unnamed table)".to_owned());
    let column = ctx.text(&["column", "column_name", "record.column_name"]);
    let qualified = format!("{schema}.{table}");
    let what = match (event_type, &column) {
        ("supabase.table.created", _) => format!("Table `{qualified}` was created."),
        ("supabase.column.added", Some(c)) => format!("Column `{c}` was added to `{qualified}`."),
        _ => format!("The schema of `{qualified}` changed ({event_type})."),
    };
    let title = match (event_type, &column) {
        ("supabase.table.created", _) => format!("Document new table {qualified}"),
        ("supabase.column.added", Some(c)) => format!("Document new column {qualified}.{c}"),
        _ => format!("Document schema change on {qualified}"),
    };
    let mut md = format!("# {title}\n\n## What changed\n\n{what}\n\n");
    let _ = writeln!(md, "## Migration notes\n");
    let _ = writeln!(md, "- Make sure the change is in a migration file under version control, not only applied in the dashboard.");
    if column.is_some() {
        let _ = writeln!(md, "- A new column on existing rows is `NULL` unless it has a default: backfill it, or give readers a fallback.");
        let _ = writeln!(
            md,
            "- Check views, functions and `SELECT *` consumers that may now see an extra column."
        );
    } else {
        let _ = writeln!(md, "- Add a primary key, indexes for the expected queries, and `created_at`/`updated_at` columns if they are missing.");
    }
    let _ = writeln!(md, "\n## Security\n");
    if schema == "public" {
        let _ = writeln!(md, "- `{schema}` is served by the Data API: enable row level security on `{table}` and add policies before anyone stores data in it (https://supabase.com/docs/guides/database/postgres/row-level-security).");
    } else {
        let _ = writeln!(md, "- Check which roles can read `{qualified}` and whether it should be exposed through the Data API.");
    }
    let _ = writeln!(md, "\n## Docs snippet\n");
    let _ = writeln!(md, "```markdown\n### {qualified}\n{what}\n- Purpose: (one sentence)\n- Owner: (team)\n- Access: (RLS policies)\n```");
    md
}

/// The pull request, whichever host sent it.
struct PullRequest {
    number: Option<String>,
    title: String,
    body: Option<String>,
    author: Option<String>,
    source: Option<String>,
    target: Option<String>,
    url: Option<String>,
    additions: Option<f64>,
    deletions: Option<f64>,
    changed_files: Option<f64>,
}

fn pull_request(ctx: &Ctx) -> PullRequest {
    PullRequest {
        number: ctx.text(&[
            "pull_request.number",
            "number",
            "object_attributes.iid",
            "pullrequest.id",
        ]),
        title: ctx
            .text(&[
                "pull_request.title",
                "object_attributes.title",
                "pullrequest.title",
            ])
            .unwrap_or_else(|| "the pull request".to_owned()),
        body: ctx.text(&[
            "pull_request.body",
            "object_attributes.description",
            "pullrequest.description",
        ]),
        author: ctx.text(&[
            "pull_request.user.login",
            "user.username",
            "pullrequest.author.display_name",
        ]),
        source: ctx.text(&[
            "pull_request.head.ref",
            "object_attributes.source_branch",
            "pullrequest.source.branch.name",
        ]),
        target: ctx.text(&[
            "pull_request.base.ref",
            "object_attributes.target_branch",
            "pullrequest.destination.branch.name",
        ]),
        url: ctx.text(&[
            "pull_request.html_url",
            "object_attributes.url",
            "pullrequest.links.html.href",
        ]),
        additions: ctx.number(&["pull_request.additions"]),
        deletions: ctx.number(&["pull_request.deletions"]),
        changed_files: ctx.number(&["pull_request.changed_files"]),
    }
}

impl PullRequest {
    fn label(&self) -> String {
        match &self.number {
            Some(n) => format!("#{n} {}", self.title),
            None => self.title.clone(),
        }
    }

    fn words(&self) -> String {
        format!("{} {}", self.title, self.body.clone().unwrap_or_default()).to_lowercase()
    }
}

/// Whether `text` mentions any of `words`.
fn mentions(text: &str, words: &[&str]) -> bool {
    words.iter().any(|w| text.contains(w))
}

fn pr_review(ctx: &Ctx) -> String {
    let pr = pull_request(ctx);
    let words = pr.words();
    let mut md = format!("# Review checklist: {}\n\n", pr.label());
    let mut facts = Vec::new();
    if let Some(a) = &pr.author {
        facts.push(format!("by {a}"));
    }
    if let (Some(s), Some(t)) = (&pr.source, &pr.target) {
        facts.push(format!("`{s}` → `{t}`"));
    }
    if let (Some(a), Some(d)) = (pr.additions, pr.deletions) {
        facts.push(format!("+{a:.0} / −{d:.0} lines"));
    }
    if let Some(f) = pr.changed_files {
        facts.push(format!("{f:.0} files"));
    }
    if !facts.is_empty() {
        let _ = writeln!(md, "{}\n", facts.join(", "));
    }
    if let Some(url) = &pr.url {
        let _ = writeln!(md, "{url}\n");
    }
    let _ = writeln!(md, "## Review checklist\n");
    let size = pr.additions.unwrap_or(0.0) + pr.deletions.unwrap_or(0.0);
    if size > 400.0 {
        let _ = writeln!(md, "- [ ] {size:.0} changed lines: ask whether it can be split, and review commit by commit.");
    }
    let _ = writeln!(
        md,
        "- [ ] The description says why, and links the issue it resolves."
    );
    let _ = writeln!(
        md,
        "- [ ] The change does what the title says and nothing else."
    );
    if mentions(&words, &["fix", "bug", "regression", "crash"]) {
        let _ = writeln!(
            md,
            "- [ ] A test reproduces the bug and fails without the fix."
        );
    }
    if mentions(&words, &["migration", "schema", "database", "sql", "table"]) {
        let _ = writeln!(md, "- [ ] The migration is idempotent, safe on a live table (locks, backfill), and has a rollback plan.");
    }
    if mentions(
        &words,
        &["api", "endpoint", "route", "breaking", "rename", "remove"],
    ) {
        let _ = writeln!(
            md,
            "- [ ] Public interfaces stay compatible, or the break is versioned and announced."
        );
    }
    if mentions(
        &words,
        &[
            "auth",
            "token",
            "secret",
            "permission",
            "password",
            "security",
        ],
    ) {
        let _ = writeln!(md, "- [ ] Security: no secret in code or logs, permissions checked server-side, inputs validated.");
    }
    if mentions(
        &words,
        &["deps", "dependency", "dependencies", "bump", "upgrade"],
    ) {
        let _ = writeln!(
            md,
            "- [ ] Dependency changes: changelogs read, lockfile updated, licences acceptable."
        );
    }
    let _ = writeln!(
        md,
        "- [ ] Errors are handled and logged with enough context; no panics on bad input."
    );
    let _ = writeln!(
        md,
        "- [ ] Docs and changelog updated where behaviour changed."
    );
    let _ = writeln!(md, "\n## Test coverage ideas\n");
    let _ = writeln!(md, "- The main path of \"{}\" end to end.", pr.title);
    let _ = writeln!(
        md,
        "- Edge cases: empty and maximum-size inputs, duplicates, unicode, concurrent calls."
    );
    let _ = writeln!(
        md,
        "- Failure modes: the dependency times out, returns an error, or returns malformed data."
    );
    if mentions(&words, &["fix", "bug", "regression"]) {
        let _ = writeln!(md, "- A regression test named after the bug.");
    }
    md
}

fn release_notes(ctx: &Ctx) -> String {
    let pr = pull_request(ctx);
    let words = pr.title.to_lowercase();
    let category = if mentions(&words, &["fix", "bug", "patch"]) {
        "Fixed"
    } else if mentions(&words, &["remove", "drop", "delete"]) {
        "Removed"
    } else if mentions(&words, &["deprecat"]) {
        "Deprecated"
    } else if mentions(&words, &["security", "cve", "vulnerab"]) {
        "Security"
    } else if mentions(&words, &["add", "feat", "new", "introduce", "support"]) {
        "Added"
    } else {
        "Changed"
    };
    let merged_into = pr
        .target
        .clone()
        .unwrap_or_else(|| "the main branch".to_owned());
    let mut md = format!("# Changelog: {}\n\n", pr.label());
    let _ = writeln!(
        md,
        "Merged into `{merged_into}`{}.\n",
        pr.author
            .as_ref()
            .map(|a| format!(" (by {a})"))
            .unwrap_or_default()
    );
    let _ = writeln!(md, "## Changelog entry\n");
    let reference = pr
        .number
        .as_ref()
        .map(|n| format!(" (#{n})"))
        .unwrap_or_default();
    let _ = writeln!(
        md,
        "```markdown\n## [Unreleased]\n### {category}\n- {}{reference}\n```\n",
        pr.title
    );
    let _ = writeln!(md, "## Documentation updates\n");
    let _ = writeln!(
        md,
        "- README or user guide: describe the new behaviour of \"{}\" where users meet it.",
        pr.title
    );
    if mentions(&words, &["api", "endpoint", "route"]) {
        let _ = writeln!(
            md,
            "- API reference: request and response changes, with an example."
        );
    }
    if mentions(&words, &["config", "env", "setting", "option", "flag"]) {
        let _ = writeln!(
            md,
            "- Configuration docs: the new or changed setting, its default and an example."
        );
    }
    if category == "Removed" || category == "Deprecated" {
        let _ = writeln!(md, "- Migration guide: what to use instead, and by when.");
    }
    let _ = writeln!(
        md,
        "- Close or update the issues this pull request resolves."
    );
    md
}

fn build_failure(ctx: &Ctx) -> String {
    let name = ctx
        .text(&[
            "workflow_run.name",
            "check_suite.app.name",
            "object_attributes.name",
            "commit_status.name",
            "build.name",
        ])
        .unwrap_or_else(|| "the build".to_owned());
    let branch = ctx.text(&[
        "workflow_run.head_branch",
        "check_suite.head_branch",
        "object_attributes.ref",
        "commit_status.refname",
    ]);
    let sha = ctx.text(&[
        "workflow_run.head_sha",
        "check_suite.head_sha",
        "object_attributes.sha",
        "commit_status.commit.hash",
    ]);
    let conclusion = ctx.text(&[
        "workflow_run.conclusion",
        "check_suite.conclusion",
        "object_attributes.status",
        "commit_status.state",
    ]);
    let url = ctx.text(&[
        "workflow_run.html_url",
        "object_attributes.url",
        "commit_status.url",
    ]);
    let commit_message = ctx
        .text(&["workflow_run.head_commit.message", "commit.message"])
        .map(|m| cut(&m, 120));
    let failed_jobs: Vec<String> = ctx
        .array(&["builds"])
        .iter()
        .filter(|b| b.get("status").and_then(Value::as_str) == Some("failed"))
        .filter_map(|b| {
            text_at(b, "name").map(|n| {
                format!(
                    "{n}{}",
                    text_at(b, "stage")
                        .map(|s| format!(" (stage {s})"))
                        .unwrap_or_default()
                )
            })
        })
        .collect();
    let short_sha = sha.as_ref().map(|s| s.chars().take(7).collect::<String>());
    let mut md = format!(
        "# Build failed: {name}{}\n\n",
        branch
            .as_ref()
            .map(|b| format!(" on {b}"))
            .unwrap_or_default()
    );
    let _ = writeln!(md, "## Failure summary\n");
    let _ = writeln!(md, "- Pipeline: {name}");
    if let Some(b) = &branch {
        let _ = writeln!(md, "- Branch: `{b}`");
    }
    if let Some(s) = &short_sha {
        let _ = writeln!(
            md,
            "- Commit: `{s}`{}",
            commit_message
                .map(|m| format!(" — {m}"))
                .unwrap_or_default()
        );
    }
    if let Some(c) = &conclusion {
        let _ = writeln!(md, "- Result: {c}");
    }
    if !failed_jobs.is_empty() {
        let _ = writeln!(md, "- Failed jobs: {}", failed_jobs.join(", "));
    }
    if let Some(u) = &url {
        let _ = writeln!(md, "- Logs: {u}");
    }
    // The failing jobs' log tails, when the event carries them (polled GitHub runs).
    for job in ctx.array(&["failing_jobs"]) {
        if let (Some(name), Some(tail)) = (text_at(job, "name"), text_at(job, "log_tail")) {
            let _ = writeln!(
                md,
                "\n### Job `{name}`: end of its log\n\n```text\n{}\n```",
                cut(&tail, 2_000)
            );
        }
    }
    let _ = writeln!(md, "\n## Fixes to try, in order\n");
    if conclusion
        .as_deref()
        .is_some_and(|c| c.contains("timed_out") || c.contains("timeout"))
    {
        let _ = writeln!(md, "1. The run timed out: look for a hung test or a slow network step; add timeouts and cache dependencies.");
    } else {
        let _ = writeln!(md, "1. Open the first failing step's log: the first error, not the last, is usually the cause.");
    }
    let _ = writeln!(md, "2. Compare with the last green run on `{}`: what changed in the code, the lockfile or the runner image?", branch.clone().unwrap_or_else(|| "this branch".to_owned()));
    let _ = writeln!(md, "3. Re-run once only if the failure looks flaky (network, timing); if it passes, file a flaky-test issue instead of ignoring it.");
    let _ = writeln!(md, "4. If a dependency update caused it, pin the previous version and open an issue to upgrade properly.");
    let _ = writeln!(md, "\n## Reproduce locally\n");
    let _ = writeln!(md, "```sh\ngit fetch origin && git checkout {}\n# then run the failing job's command from the log\n```", sha.unwrap_or_else(|| branch.unwrap_or_else(|| "<commit>".to_owned())));
    md
}

fn breaking_change_check(ctx: &Ctx) -> String {
    let reference = ctx
        .text(&["ref", "push.changes.0.new.name"])
        .map(|r| {
            r.trim_start_matches("refs/heads/")
                .trim_start_matches("refs/tags/")
                .to_owned()
        })
        .unwrap_or_else(|| "the branch".to_owned());
    let pusher = ctx.text(&[
        "pusher.name",
        "user_username",
        "user_name",
        "actor.display_name",
    ]);
    let forced = ctx
        .data
        .get("forced")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let commits: Vec<&Value> = {
        let direct = ctx.array(&["commits"]);
        if direct.is_empty() {
            ctx.array(&["push.changes.0.commits"])
        } else {
            direct
        }
    };
    let mut removed = Vec::new();
    let mut touched = Vec::new();
    let mut flagged = Vec::new();
    for commit in &commits {
        let message = text_at(commit, "message").unwrap_or_default();
        let first_line = message.lines().next().unwrap_or_default().to_owned();
        if message.contains("BREAKING")
            || first_line
                .split(':')
                .next()
                .is_some_and(|p| p.ends_with('!'))
        {
            flagged.push(cut(&first_line, 100));
        }
        let files = |list: &str| -> Vec<String> {
            commit
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        };
        removed.extend(files("removed"));
        touched.extend(files("modified"));
        touched.extend(files("added"));
    }
    let sensitive: Vec<&String> = touched
        .iter()
        .filter(|f| {
            let f = f.to_lowercase();
            mentions(
                &f,
                &[
                    "migration",
                    "schema",
                    ".sql",
                    "openapi",
                    "proto",
                    "api/",
                    "config",
                    ".env",
                    "cargo.toml",
                    "package.json",
                    "go.mod",
                    "requirements",
                ],
            )
        })
        .collect();
    let mut md = format!("# Breaking-change check: push to {reference}\n\n");
    let _ = writeln!(
        md,
        "{} commit{}{}{}.\n",
        commits.len(),
        if commits.len() == 1 { "" } else { "s" },
        pusher.map(|p| format!(" by {p}")).unwrap_or_default(),
        if forced { ", force-pushed" } else { "" }
    );
    let _ = writeln!(md, "## Findings\n");
    let mut risks = 0;
    if forced {
        risks += 1;
        let _ = writeln!(
            md,
            "- ⚠ Force push: history was rewritten; anyone who pulled `{reference}` must reset."
        );
    }
    for line in &flagged {
        risks += 1;
        let _ = writeln!(md, "- ⚠ Marked breaking: \"{line}\"");
    }
    if !removed.is_empty() {
        risks += 1;
        let _ = writeln!(
            md,
            "- ⚠ Removed files: {}",
            removed
                .iter()
                .take(10)
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !sensitive.is_empty() {
        risks += 1;
        let _ = writeln!(
            md,
            "- ⚠ Interface, schema or dependency files changed: {}",
            sensitive
                .iter()
                .take(10)
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if risks == 0 {
        let _ = writeln!(
            md,
            "- No breaking-change markers, removed files or interface files in this push."
        );
    }
    let _ = writeln!(md, "\n## Checklist\n");
    let _ = writeln!(md, "- [ ] Public APIs and exported functions keep their signatures, or a major version is planned.");
    let _ = writeln!(
        md,
        "- [ ] Database migrations are backwards compatible with the running version."
    );
    let _ = writeln!(
        md,
        "- [ ] Configuration keys and environment variables are unchanged or have defaults."
    );
    let _ = writeln!(
        md,
        "- [ ] Clients and dependants build against this commit."
    );
    let verdict = if risks == 0 {
        "likely safe"
    } else {
        "needs a closer look"
    };
    let _ = writeln!(
        md,
        "\n**Verdict:** {verdict} ({risks} finding{}).",
        if risks == 1 { "" } else { "s" }
    );
    md
}

/// The issue, whichever host sent it.
fn issue_fields(ctx: &Ctx) -> (String, Option<String>, Option<String>, Vec<String>) {
    let number = ctx.text(&[
        "issue.number",
        "object_attributes.iid",
        "issue.iid",
        "issue.id",
    ]);
    let title = ctx
        .text(&["issue.title", "object_attributes.title"])
        .unwrap_or_else(|| "the issue".to_owned());
    let body = ctx.text(&[
        "issue.body",
        "object_attributes.description",
        "issue.content.raw",
        "issue.description",
    ]);
    let labels = tags(
        ctx.data
            .pointer("/issue/labels")
            .or_else(|| ctx.data.get("labels")),
    );
    let label = number.map_or(title.clone(), |n| format!("#{n} {title}"));
    (label, Some(title), body, labels)
}

fn issue_plan(ctx: &Ctx) -> String {
    let (label, title, body, labels) = issue_fields(ctx);
    let title = title.unwrap_or_default();
    let words = format!("{title} {}", body.clone().unwrap_or_default()).to_lowercase();
    let bug = mentions(&words, &["bug", "error", "crash", "fail", "broken"])
        || labels.iter().any(|l| l.to_lowercase().contains("bug"));
    let mut md = format!("# Plan for {label}\n\n");
    if let Some(b) = &body {
        let _ = writeln!(md, "> {}\n", cut(b, 200));
    }
    if !labels.is_empty() {
        let _ = writeln!(md, "Labels: {}\n", labels.join(", "));
    }
    let _ = writeln!(md, "## Solution approach\n");
    if bug {
        let _ = writeln!(md, "1. Reproduce \"{title}\" with a failing test.\n2. Find the root cause (bisect if it is a regression).\n3. Fix it at the cause, keep the test, and check for the same pattern elsewhere.\n");
    } else {
        let _ = writeln!(md, "1. Agree on the problem and the success criteria for \"{title}\".\n2. Choose the smallest design that meets them; note what is out of scope.\n3. Build behind a flag or in small pull requests, with tests at each step.\n");
    }
    let _ = writeln!(md, "## Task breakdown\n");
    let tasks: &[(&str, &str)] = if bug {
        &[
            ("Reproduce with a failing test", "S"),
            ("Root-cause analysis", "M"),
            ("Fix and regression test", "M"),
            ("Release note", "S"),
        ]
    } else {
        &[
            ("Write the RFC below and get agreement", "S"),
            ("Core implementation", "L"),
            ("Tests: unit and end to end", "M"),
            ("Docs and changelog", "S"),
            ("Rollout and follow-up", "S"),
        ]
    };
    for (task, size) in tasks {
        let _ = writeln!(md, "- [ ] {task} ({size})");
    }
    let _ = writeln!(md, "\n## RFC outline\n");
    let _ = writeln!(
        md,
        "1. **Context**: {title}{}",
        body.as_ref()
            .map(|b| format!(" — {}", cut(b, 120)))
            .unwrap_or_default()
    );
    let _ = writeln!(md, "2. **Goals** and how we will measure them");
    let _ = writeln!(md, "3. **Non-goals**");
    let _ = writeln!(
        md,
        "4. **Design**: components touched, data and API changes"
    );
    let _ = writeln!(md, "5. **Alternatives considered**");
    let _ = writeln!(
        md,
        "6. **Risks and rollout**: migration, compatibility, monitoring"
    );
    md
}

fn stale_work(ctx: &Ctx, event_type: &str) -> String {
    let what = if event_type == "repo.pr.stale" {
        "Pull request"
    } else {
        "Issue"
    };
    let number = ctx
        .text(&["number"])
        .map(|n| format!(" #{n}"))
        .unwrap_or_default();
    let title = ctx
        .text(&["title"])
        .unwrap_or_else(|| "untitled".to_owned());
    let author = ctx.text(&["user.login", "author"]);
    let idle = ctx.number(&["idle_days"]).map(|d| format!("{d:.0} days"));
    let mut md = format!("# Stale: {what}{number} {title}\n\n");
    let _ = writeln!(
        md,
        "No activity for {}.\n",
        idle.unwrap_or_else(|| "longer than the threshold".to_owned())
    );
    let _ = writeln!(md, "## Nudge\n");
    let _ = writeln!(
        md,
        "> Hi{} — is \"{title}\" still going ahead? If you are blocked, say on what and we will help; if not, we can close it for now.\n",
        author.map(|a| format!(" @{a}")).unwrap_or_default()
    );
    let _ = writeln!(md, "## Ways to move it on\n");
    let _ = writeln!(md, "- Finish: list what is left and set a date.\n- Hand over: find an owner with time.\n- Split: merge the ready part, open an issue for the rest.\n- Close: with a note of why and what was learnt.");
    md
}

fn dependency_upgrade(ctx: &Ctx) -> String {
    let package = ctx
        .text(&[
            "dependency.package.name",
            "security_vulnerability.package.name",
            "package",
        ])
        .unwrap_or_else(|| "a dependency".to_owned());
    let severity = ctx.text(&[
        "security_advisory.severity",
        "security_vulnerability.severity",
        "severity",
    ]);
    let fixed = ctx.text(&[
        "security_vulnerability.first_patched_version.identifier",
        "fixed_version",
    ]);
    let mut md = format!("# Upgrade {package}\n\n");
    if let Some(s) = &severity {
        let _ = writeln!(md, "Severity: {s}.\n");
    }
    let _ = writeln!(md, "## Upgrade plan\n");
    let _ = writeln!(
        md,
        "1. Upgrade `{package}`{} in a branch of its own.\n2. Read the changelog between the two versions for breaking changes.\n3. Run the full test suite and the end-to-end tests that touch it.\n4. Release behind the usual checks; roll back by reverting the lockfile change.",
        fixed.map(|f| format!(" to {f} or later")).unwrap_or_default()
    );
    md
}

fn regression_triage(ctx: &Ctx) -> String {
    let metric = ctx
        .text(&["data.metric", "metric", "data.name"])
        .unwrap_or_else(|| "the metric".to_owned());
    let before = ctx.number(&["data.before", "before", "data.baseline"]);
    let after = ctx.number(&["data.after", "after", "data.value"]);
    let since = ctx.text(&["data.since", "timestamp"]);
    let mut md = format!("# Regression: {metric}\n\n");
    if let (Some(b), Some(a)) = (before, after) {
        let change = if b.abs() > f64::EPSILON {
            format!(" ({:+.0}%)", (a - b) / b * 100.0)
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "{metric} went from {b} to {a}{change}{}.\n",
            since.map(|s| format!(" since {s}")).unwrap_or_default()
        );
    }
    let _ = writeln!(md, "## Triage\n");
    let _ = writeln!(md, "1. List the deploys, config changes and migrations just before it started.\n2. Compare the metric by route, region and version to find where it lives.\n3. Check dependencies (database, queues, third-party APIs) for the same window.\n4. Reproduce with the suspected change reverted in a staging copy.\n");
    let _ = writeln!(md, "## Rollback decision\n");
    let _ = writeln!(md, "Roll back the most recent deploy if users are affected and step 1 names one; otherwise keep watching with an alert at the current level.");
    md
}

fn incident_response(ctx: &Ctx) -> String {
    let title = ctx
        .text(&["data.title", "title", "data.summary"])
        .unwrap_or_else(|| "Incident".to_owned());
    let service = ctx.text(&["data.service", "service"]);
    let severity = ctx.text(&["data.severity", "severity", "data.urgency"]);
    let mut md = format!("# Incident: {title}\n\n");
    if let Some(s) = &service {
        let _ = writeln!(md, "Service: {s}.");
    }
    if let Some(s) = &severity {
        let _ = writeln!(md, "Severity: {s}.");
    }
    let _ = writeln!(md, "\n## First response\n");
    let _ = writeln!(md, "1. Acknowledge and name an incident lead.\n2. Assess impact: who is affected, since when, how badly.\n3. Mitigate first (roll back, fail over, switch off the feature), then diagnose.\n4. Communicate on a fixed rhythm until resolved; write the review afterwards.\n");
    let _ = writeln!(md, "## Status update\n");
    let _ = writeln!(
        md,
        "> We are investigating an issue{}. We will post an update within 30 minutes.",
        service
            .map(|s| format!(" affecting {s}"))
            .unwrap_or_default()
    );
    md
}

fn issue_next_steps(ctx: &Ctx) -> String {
    let (label, _, _, _) = issue_fields(ctx);
    let comment = ctx.text(&[
        "comment.body",
        "object_attributes.note",
        "comment.content.raw",
    ]);
    let author = ctx.text(&[
        "comment.user.login",
        "user.username",
        "actor.display_name",
        "comment.user.display_name",
    ]);
    let lower = comment.clone().unwrap_or_default().to_lowercase();
    let mut md = format!("# Next steps on {label}\n\n");
    let _ = writeln!(md, "## The comment\n");
    let _ = writeln!(
        md,
        "> {}{}\n",
        comment
            .clone()
            .map_or_else(|| "(no text)".to_owned(), |c| cut(&c, 300)),
        author
            .as_ref()
            .map(|a| format!(" — {a}"))
            .unwrap_or_default()
    );
    let _ = writeln!(md, "## Next steps\n");
    if lower.contains('?') {
        let _ = writeln!(md, "1. Answer the question in the comment; if the answer changes the plan, update the issue description.");
    } else if mentions(&lower, &["repro", "steps", "log", "stack trace", "version"]) {
        let _ = writeln!(md, "1. Use the details in the comment to reproduce the problem and record the result on the issue.");
    } else if mentions(
        &lower,
        &["lgtm", "approve", "works", "fixed", "done", "thanks"],
    ) {
        let _ = writeln!(
            md,
            "1. Confirm the resolution and close the issue, linking the change that fixed it."
        );
    } else {
        let _ = writeln!(
            md,
            "1. Acknowledge the comment and decide whether it changes scope or priority."
        );
    }
    let _ = writeln!(
        md,
        "2. Assign an owner and a target date if the issue has none."
    );
    let _ = writeln!(
        md,
        "3. Update labels (status, priority) to match where the issue stands.\n"
    );
    let _ = writeln!(md, "## Suggested reply\n");
    let _ = writeln!(
        md,
        "> Thanks{}! {}",
        author.map(|a| format!(" @{a}")).unwrap_or_default(),
        if lower.contains('?') {
            "Good question — here's where we are: …"
        } else {
            "Noted — next step: …"
        }
    );
    md
}

#[cfg(test)]
mod tests;
