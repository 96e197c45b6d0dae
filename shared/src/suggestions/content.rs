//! Which event types have content to offer, and what (issue 12, "Generate").

use serde::{Deserialize, Serialize};

/// The kind of content a suggestion carries. One per event type family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentKind {
    /// `shopify.product.created`: a short-video hook and marketing copy.
    ProductLaunch,
    /// `shopify.product.updated`: refreshed copy.
    ProductRefresh,
    /// `shopify.collection.created`: marketing for the collection.
    CollectionMarketing,
    /// `shopify.inventory.low`: a restocking strategy, with the level and threshold.
    RestockingStrategy,
    /// `shopify.order.created`: follow-up marketing.
    OrderFollowUp,
    /// `keap.contact.*`, `keap.opportunity.*`, `keap.order.*`, `keap.task.*`: CRM follow-ups.
    CrmFollowUp,
    /// `supabase.*` schema events (not `supabase.record.*`): documentation of the change.
    SchemaChangeDoc,
    /// `repo.pr.opened`: a review checklist and test coverage ideas.
    PrReview,
    /// `repo.pr.merged`: a changelog entry and documentation updates.
    ReleaseNotes,
    /// `repo.build.failed`: a failure summary and fixes to try.
    BuildFailure,
    /// `repo.push`: a breaking-change check.
    BreakingChangeCheck,
    /// `issue.created`: a solution approach, a task breakdown and an RFC outline.
    IssuePlan,
    /// `issue.comment.created`: next steps.
    IssueNextSteps,
    /// `repo.pr.stale`, `issue.stale`: a nudge and the ways to move it on.
    StaleWorkNudge,
    /// `repo.dependency.outdated`: an upgrade plan.
    DependencyUpgrade,
    /// `metric.regression` (monitoring, Standard Webhooks): a triage plan.
    RegressionTriage,
    /// `incident.opened` (monitoring, Standard Webhooks): a first response.
    IncidentResponse,
}

impl ContentKind {
    /// Every kind.
    pub const ALL: [ContentKind; 17] = [
        ContentKind::ProductLaunch,
        ContentKind::ProductRefresh,
        ContentKind::CollectionMarketing,
        ContentKind::RestockingStrategy,
        ContentKind::OrderFollowUp,
        ContentKind::CrmFollowUp,
        ContentKind::SchemaChangeDoc,
        ContentKind::PrReview,
        ContentKind::ReleaseNotes,
        ContentKind::BuildFailure,
        ContentKind::BreakingChangeCheck,
        ContentKind::IssuePlan,
        ContentKind::IssueNextSteps,
        ContentKind::StaleWorkNudge,
        ContentKind::DependencyUpgrade,
        ContentKind::RegressionTriage,
        ContentKind::IncidentResponse,
    ];

    /// Stable snake_case name (`product_launch`, ...), as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentKind::ProductLaunch => "product_launch",
            ContentKind::ProductRefresh => "product_refresh",
            ContentKind::CollectionMarketing => "collection_marketing",
            ContentKind::RestockingStrategy => "restocking_strategy",
            ContentKind::OrderFollowUp => "order_follow_up",
            ContentKind::CrmFollowUp => "crm_follow_up",
            ContentKind::SchemaChangeDoc => "schema_change_doc",
            ContentKind::PrReview => "pr_review",
            ContentKind::ReleaseNotes => "release_notes",
            ContentKind::BuildFailure => "build_failure",
            ContentKind::BreakingChangeCheck => "breaking_change_check",
            ContentKind::IssuePlan => "issue_plan",
            ContentKind::IssueNextSteps => "issue_next_steps",
            ContentKind::StaleWorkNudge => "stale_work_nudge",
            ContentKind::DependencyUpgrade => "dependency_upgrade",
            ContentKind::RegressionTriage => "regression_triage",
            ContentKind::IncidentResponse => "incident_response",
        }
    }

    /// What the suggestion delivers, in words (prompts and the template generator use it).
    pub fn deliverables(self) -> &'static [&'static str] {
        match self {
            ContentKind::ProductLaunch => &["a short-video hook", "marketing copy"],
            ContentKind::ProductRefresh => &["refreshed marketing copy"],
            ContentKind::CollectionMarketing => &["marketing for the collection"],
            ContentKind::RestockingStrategy => &["a restocking strategy"],
            ContentKind::OrderFollowUp => &["follow-up marketing for the customer"],
            ContentKind::CrmFollowUp => &["CRM follow-up actions"],
            ContentKind::SchemaChangeDoc => &["documentation of the schema change"],
            ContentKind::PrReview => &["a review checklist", "test coverage ideas"],
            ContentKind::ReleaseNotes => &["a changelog entry", "documentation updates"],
            ContentKind::BuildFailure => &["a failure summary", "fixes to try"],
            ContentKind::BreakingChangeCheck => &["a breaking-change check"],
            ContentKind::IssuePlan => {
                &["a solution approach", "a task breakdown", "an RFC outline"]
            }
            ContentKind::IssueNextSteps => &["next steps"],
            ContentKind::StaleWorkNudge => &["a nudge to the author", "ways to move it on"],
            ContentKind::DependencyUpgrade => &["an upgrade plan"],
            ContentKind::RegressionTriage => &["a triage plan", "a rollback decision"],
            ContentKind::IncidentResponse => &["a first-response checklist", "a status update"],
        }
    }
}

/// The content an event type has to offer, or `None` when it has none (a deleted product,
/// a row change, a successful build, ...).
pub fn content_for(event_type: &str) -> Option<ContentKind> {
    let kind = match event_type {
        "shopify.product.created" => ContentKind::ProductLaunch,
        "shopify.product.updated" => ContentKind::ProductRefresh,
        "shopify.collection.created" => ContentKind::CollectionMarketing,
        "shopify.inventory.low" => ContentKind::RestockingStrategy,
        "shopify.order.created" => ContentKind::OrderFollowUp,
        "repo.pr.opened" => ContentKind::PrReview,
        "repo.pr.merged" => ContentKind::ReleaseNotes,
        "repo.build.failed" => ContentKind::BuildFailure,
        "repo.push" => ContentKind::BreakingChangeCheck,
        "issue.created" => ContentKind::IssuePlan,
        "issue.comment.created" => ContentKind::IssueNextSteps,
        "repo.pr.stale" | "issue.stale" => ContentKind::StaleWorkNudge,
        "repo.dependency.outdated" => ContentKind::DependencyUpgrade,
        "metric.regression" => ContentKind::RegressionTriage,
        "incident.opened" => ContentKind::IncidentResponse,
        other => {
            let crm = [
                "keap.contact.",
                "keap.opportunity.",
                "keap.order.",
                "keap.task.",
            ];
            if crm.iter().any(|p| has_action_after(other, p)) {
                ContentKind::CrmFollowUp
            } else if has_action_after(other, "supabase.") && !other.starts_with("supabase.record.")
            {
                ContentKind::SchemaChangeDoc
            } else {
                return None;
            }
        }
    };
    Some(kind)
}

/// `event_type` is `prefix` followed by a non-empty rest.
fn has_action_after(event_type: &str, prefix: &str) -> bool {
    event_type
        .strip_prefix(prefix)
        .is_some_and(|rest| !rest.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_list_maps_to_kinds() {
        let cases = [
            ("shopify.product.created", Some(ContentKind::ProductLaunch)),
            ("shopify.product.updated", Some(ContentKind::ProductRefresh)),
            (
                "shopify.collection.created",
                Some(ContentKind::CollectionMarketing),
            ),
            (
                "shopify.inventory.low",
                Some(ContentKind::RestockingStrategy),
            ),
            ("shopify.order.created", Some(ContentKind::OrderFollowUp)),
            ("keap.contact.add", Some(ContentKind::CrmFollowUp)),
            ("keap.contact.edit", Some(ContentKind::CrmFollowUp)),
            (
                "keap.opportunity.stage_move",
                Some(ContentKind::CrmFollowUp),
            ),
            ("keap.order.add", Some(ContentKind::CrmFollowUp)),
            ("keap.task.add", Some(ContentKind::CrmFollowUp)),
            ("supabase.table.created", Some(ContentKind::SchemaChangeDoc)),
            ("supabase.column.added", Some(ContentKind::SchemaChangeDoc)),
            ("repo.pr.opened", Some(ContentKind::PrReview)),
            ("repo.pr.merged", Some(ContentKind::ReleaseNotes)),
            ("repo.build.failed", Some(ContentKind::BuildFailure)),
            ("repo.push", Some(ContentKind::BreakingChangeCheck)),
            ("issue.created", Some(ContentKind::IssuePlan)),
            ("issue.comment.created", Some(ContentKind::IssueNextSteps)),
            // Nothing to offer.
            ("shopify.product.deleted", None),
            ("shopify.inventory.updated", None),
            ("shopify.customers.redact", None),
            ("keap.invoice.add", None),
            ("keap.contact.", None),
            ("keap.contacts", None),
            ("supabase.record.inserted", None),
            ("repo.build.completed", None),
            ("", None),
        ];
        for (event_type, expected) in cases {
            assert_eq!(content_for(event_type), expected, "{event_type}");
        }
    }

    #[test]
    fn names_are_stable_and_serde_agrees() {
        for kind in ContentKind::ALL {
            let json = serde_json::to_value(kind).ok();
            assert_eq!(json.as_ref().and_then(|v| v.as_str()), Some(kind.as_str()));
            assert!(!kind.deliverables().is_empty());
        }
    }
}
