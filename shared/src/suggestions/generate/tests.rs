#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;
use crate::suggestions::content::content_for;

fn artifact(event_type: &str, data: Value) -> Artifact {
    let kind = content_for(event_type).unwrap();
    template_artifact(kind, event_type, &data, &UserPreferences::default())
}

fn assert_contains(artifact: &Artifact, needles: &[&str]) {
    for needle in needles {
        assert!(
            artifact.markdown.contains(needle),
            "{needle:?} missing from:\n{}",
            artifact.markdown
        );
    }
}

#[test]
fn product_launch_uses_the_product() {
    // Shape of Shopify's `products/create` payload.
    let data = json!({
        "id": 788032119674292922_i64,
        "title": "Copper Kettle",
        "body_html": "<p>Hand-hammered copper that boils in <strong>four minutes</strong>. Lifetime warranty.</p>",
        "vendor": "Kettle & Co",
        "product_type": "Kitchen",
        "handle": "copper-kettle",
        "tags": "gift, tea, copper",
        "variants": [
            {"title": "1 L", "price": "49.00"},
            {"title": "2 L", "price": "69.00"}
        ]
    });
    let prefs = UserPreferences {
        profile: json!({"audience": "tea lovers", "tone": "warm"}),
        ..UserPreferences::default()
    };
    let a = template_artifact(
        ContentKind::ProductLaunch,
        "shopify.product.created",
        &data,
        &prefs,
    );
    assert_eq!(a.title, "Launch kit: Copper Kettle");
    assert_contains(
        &a,
        &[
            "## Short-video hook",
            "meet Copper Kettle by Kettle & Co. Hand-hammered copper that boils in four minutes.",
            "49.00–69.00",
            "1 L, 2 L",
            "## Marketing copy",
            "#gift #tea #copper",
            "/products/copper-kettle",
            "Keep the tone warm.",
            "tea lovers",
        ],
    );
    assert!(!a.markdown.contains("<p>"));
    // Deterministic.
    assert_eq!(
        a,
        template_artifact(
            ContentKind::ProductLaunch,
            "shopify.product.created",
            &data,
            &prefs
        )
    );
    let refreshed = artifact("shopify.product.updated", data);
    assert_eq!(refreshed.title, "Refreshed copy: Copper Kettle");
    assert_contains(
        &refreshed,
        &[
            "## Refreshed copy",
            "Available from 49.00–69.00 in 2 options",
        ],
    );
}

#[test]
fn sparse_products_still_make_sense() {
    let a = artifact(
        "shopify.product.created",
        json!({"title": "Mug", "variants": [{"title": "Default Title", "price": "12"}]}),
    );
    assert_contains(&a, &["meet Mug.", "12.00", "Add the product's type"]);
    assert!(!a.markdown.contains("Default Title"));
}

#[test]
fn restocking_states_level_and_threshold() {
    let a = artifact(
        "shopify.inventory.low",
        json!({
            "inventory_item_id": 271878346596884015_i64, "location_id": 24826418,
            "available": 2, "low_stock_threshold": 5
        }),
    );
    assert_eq!(a.title, "Restock inventory item 271878346596884015");
    assert_contains(
        &a,
        &[
            "Available now: **2** units at location 24826418",
            "threshold: **5** units",
            "Critical",
            "(at least the threshold, 5)",
        ],
    );
    let out = artifact(
        "shopify.inventory.low",
        json!({"inventory_item_id": 1, "available": 0}),
    );
    assert_contains(
        &out,
        &[
            "Out of stock",
            "reached (the alert fired at or below it)",
            "back-in-stock",
        ],
    );
}

#[test]
fn order_follow_up_names_what_was_bought() {
    let a = artifact(
        "shopify.order.created",
        json!({
            "name": "#1001", "total_price": "118.00", "currency": "GBP",
            "email": "ada@example.com",
            "customer": {"first_name": "Ada", "email": "ada@example.com"},
            "line_items": [{"title": "Copper Kettle", "quantity": 1}, {"title": "Tea sampler", "quantity": 2}]
        }),
    );
    assert_eq!(a.title, "Follow up order #1001");
    assert_contains(
        &a,
        &[
            "Total: 118.00 GBP",
            "1 × Copper Kettle",
            "2 × Tea sampler",
            "Hi Ada",
            "Day 7",
            "Day 30",
        ],
    );
    assert!(!a.markdown.contains("ada@example.com"));
}

#[test]
fn collection_and_crm() {
    let a = artifact(
        "shopify.collection.created",
        json!({"title": "Winter Teas", "handle": "winter-teas", "body_html": "<p>Warming blends.</p>"}),
    );
    assert_contains(
        &a,
        &[
            "# Collection marketing: Winter Teas",
            "Warming blends.",
            "/collections/winter-teas",
            "New: Winter Teas is here",
        ],
    );
    let keap = artifact(
        "keap.contact.add",
        json!({"event_key": "contact.add", "object_keys": [{"id": 12, "apiUrl": ""}, {"id": 14}]}),
    );
    assert_eq!(keap.title, "Keap follow-up: 2 contacts added");
    assert_contains(&keap, &["(12, 14)", "personal welcome", "Message template"]);
    let opp = artifact(
        "keap.opportunity.edit",
        json!({"object_keys": [{"id": "7"}]}),
    );
    assert_eq!(opp.title, "Keap follow-up: 1 opportunity updated");
    assert_contains(&opp, &["(7)", "dated next action"]);
}

#[test]
fn schema_changes_are_documented() {
    let a = artifact(
        "supabase.column.added",
        json!({"type": "ADD_COLUMN", "schema": "public", "table": "invoices", "column": "due_at"}),
    );
    assert_eq!(a.title, "Document new column public.invoices.due_at");
    assert_contains(
        &a,
        &[
            "Column `due_at` was added to `public.invoices`.",
            "backfill",
            "row level security",
        ],
    );
    let t = artifact(
        "supabase.table.created",
        json!({"type": "CREATE_TABLE", "schema": "billing", "table": "plans"}),
    );
    assert_contains(
        &t,
        &[
            "Table `billing.plans` was created.",
            "primary key",
            "Data API",
        ],
    );
}

#[test]
fn pull_requests_from_each_host() {
    let github = json!({"action": "opened", "number": 42, "pull_request": {
        "number": 42, "title": "Fix token refresh race", "body": "Two refreshes lose the grant.",
        "user": {"login": "octocat"}, "head": {"ref": "fix-race"}, "base": {"ref": "main"},
        "additions": 420, "deletions": 30, "changed_files": 6, "html_url": "https://github.com/o/r/pull/42"
    }});
    let a = artifact("repo.pr.opened", github.clone());
    assert_eq!(a.title, "Review checklist: #42 Fix token refresh race");
    assert_contains(
        &a,
        &[
            "by octocat",
            "`fix-race` → `main`",
            "+420 / −30 lines",
            "450 changed lines",
            "fails without the fix",
            "Security",
            "## Test coverage ideas",
            "regression test",
        ],
    );
    let merged = artifact("repo.pr.merged", github);
    assert_contains(
        &merged,
        &[
            "### Fixed",
            "- Fix token refresh race (#42)",
            "Merged into `main` (by octocat)",
        ],
    );
    let gitlab = json!({"object_kind": "merge_request", "user": {"username": "dev"}, "object_attributes": {
        "iid": 7, "title": "Add CSV export endpoint", "source_branch": "csv", "target_branch": "main", "url": "https://gitlab.com/x/-/merge_requests/7"}});
    let merged = artifact("repo.pr.merged", gitlab.clone());
    assert_contains(
        &merged,
        &[
            "### Added",
            "- Add CSV export endpoint (#7)",
            "API reference",
        ],
    );
    let opened = artifact("repo.pr.opened", gitlab);
    assert_contains(&opened, &["`csv` → `main`", "compatible"]);
}

#[test]
fn builds_pushes_and_issues() {
    let build = artifact(
        "repo.build.failed",
        json!({"action": "completed", "workflow_run": {
        "name": "CI", "head_branch": "main", "head_sha": "9f1c2e3d4b5a", "conclusion": "failure",
        "html_url": "https://github.com/o/r/actions/runs/1", "head_commit": {"message": "Bump serde"}}}),
    );
    assert_eq!(build.title, "Build failed: CI on main");
    assert_contains(
        &build,
        &[
            "Commit: `9f1c2e3` — Bump serde",
            "Result: failure",
            "https://github.com/o/r/actions/runs/1",
            "git checkout 9f1c2e3d4b5a",
        ],
    );

    let push = artifact(
        "repo.push",
        json!({"ref": "refs/heads/main", "forced": true, "pusher": {"name": "ana"}, "commits": [
            {"message": "feat!: drop v1 API", "added": [], "removed": ["src/v1.rs"], "modified": ["Cargo.toml"]},
            {"message": "docs", "added": ["README.md"], "removed": [], "modified": []}
        ]}),
    );
    assert_eq!(push.title, "Breaking-change check: push to main");
    assert_contains(
        &push,
        &[
            "2 commits by ana, force-pushed.",
            "Marked breaking: \"feat!: drop v1 API\"",
            "`src/v1.rs`",
            "`Cargo.toml`",
            "needs a closer look (4 findings)",
        ],
    );
    let quiet = artifact(
        "repo.push",
        json!({"ref": "refs/heads/dev", "commits": [{"message": "typo", "modified": ["README.md"]}]}),
    );
    assert_contains(&quiet, &["likely safe (0 findings)", "1 commit."]);

    let issue = artifact(
        "issue.created",
        json!({"action": "opened", "issue": {"number": 9, "title": "Export crashes on empty shop", "body": "Stack trace attached.", "labels": [{"name": "bug"}]}}),
    );
    assert_eq!(issue.title, "Plan for #9 Export crashes on empty shop");
    assert_contains(
        &issue,
        &[
            "Labels: bug",
            "failing test",
            "## Task breakdown",
            "## RFC outline",
            "Export crashes on empty shop — Stack trace attached.",
        ],
    );
    let comment = artifact(
        "issue.comment.created",
        json!({"issue": {"number": 9, "title": "Export crashes"}, "comment": {"body": "Which version are you on?", "user": {"login": "maint"}}}),
    );
    assert_eq!(comment.title, "Next steps on #9 Export crashes");
    assert_contains(
        &comment,
        &[
            "Which version are you on? — maint",
            "Answer the question",
            "@maint",
        ],
    );
}

#[test]
fn every_kind_writes_something_useful_from_empty_data() {
    for kind in ContentKind::ALL {
        let a = template_artifact(kind, "x.y.z", &json!({}), &UserPreferences::default());
        assert!(!a.title.is_empty() && a.title != "Suggestion", "{kind:?}");
        assert!(a.markdown.matches("\n## ").count() >= 1, "{kind:?}");
        assert!(!a.text.contains("## "), "{kind:?}");
    }
}

#[test]
fn model_answers_become_artifacts() {
    let a = Artifact::from_model(
        "Intro line\n\n## **Launch** kit\n\n- one [docs](https://x.test)\n```sh\nrun\n```\n",
    );
    assert_eq!(a.title, "Launch kit");
    assert_eq!(
        a.text,
        "Intro line\n\nLaunch kit\n\n- one docs (https://x.test)\nrun"
    );
    let b = Artifact::from_model("  Just a line of *advice*.  ");
    assert_eq!(b.title, "Just a line of *advice*.");
    assert_eq!(b.markdown, "Just a line of *advice*.");
    assert_eq!(
        markdown_to_text("a\n\n---\n_note_\n  - b"),
        "a\n\n\nnote\n  - b"
    );
    let c = Artifact::from_model("");
    assert_eq!(c.title, "Suggestion");
    let long = Artifact::from_model(&format!("# {}", "x".repeat(500)));
    assert_eq!(long.title.chars().count(), MAX_TITLE_CHARS);
    assert_eq!(a.to_json()["title"], "Launch kit");
}

#[test]
fn repository_and_monitoring_kinds_have_templates_built_from_their_data() {
    use crate::suggestions::{content_for, ContentKind};
    let prefs = UserPreferences::default();
    let cases = [
        (
            "repo.pr.stale",
            json!({"number": 2, "title": "fix: rounding", "user": {"login": "dev"}, "idle_days": 30}),
            "@dev",
        ),
        (
            "issue.stale",
            json!({"number": 4, "title": "Old export bug", "idle_days": 40}),
            "40 days",
        ),
        (
            "repo.dependency.outdated",
            json!({"dependency": {"package": {"name": "lodash"}}, "security_vulnerability": {"first_patched_version": {"identifier": "4.17.21"}}}),
            "4.17.21",
        ),
        (
            "metric.regression",
            json!({"type": "metric.regression", "data": {"metric": "p95_latency_ms", "before": 120, "after": 480}}),
            "+300%",
        ),
        (
            "incident.opened",
            json!({"type": "incident.opened", "data": {"title": "Checkout down", "service": "checkout"}}),
            "affecting checkout",
        ),
    ];
    for (event_type, data, expected) in cases {
        let kind = content_for(event_type).expect("content");
        let artifact = template_artifact(kind, event_type, &data, &prefs);
        assert!(
            artifact.markdown.contains(expected),
            "{event_type}: {}",
            artifact.markdown
        );
    }
    assert_eq!(
        content_for("repo.pr.stale"),
        Some(ContentKind::StaleWorkNudge)
    );

    let run = json!({"workflow_run": {"name": "CI", "head_branch": "main", "conclusion": "failure"},
                     "failing_jobs": [{"name": "test", "log_tail": "error: test checkout::totals failed"}]});
    let artifact = template_artifact(ContentKind::BuildFailure, "repo.build.failed", &run, &prefs);
    assert!(
        artifact.markdown.contains("checkout::totals failed"),
        "{}",
        artifact.markdown
    );
}
