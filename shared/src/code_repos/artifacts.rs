//! The written artifacts of a repository, each as Markdown and as plain text
//! ([`Artifact`]): release notes from the pull requests merged since the last tag or
//! release, a changelog entry per merged pull request, an RFC outline from an issue, and an
//! ADR (context, decision, consequences). Deterministic: the same input always writes the
//! same text (the suggestion pipeline's model may write richer ones from the same facts).

use super::{Issue, PullRequest};
use crate::suggestions::Artifact;
use crate::Timestamp;

/// The section a pull request belongs in, by its labels, else by its title's conventional
/// prefix (`feat:`, `fix:`, ...).
fn section(pr: &PullRequest) -> &'static str {
    let labels: Vec<String> = pr.labels.iter().map(|l| l.to_ascii_lowercase()).collect();
    let has = |names: &[&str]| labels.iter().any(|l| names.iter().any(|n| l.contains(n)));
    let title = pr.title.to_ascii_lowercase();
    let prefixed = |prefixes: &[&str]| {
        prefixes
            .iter()
            .any(|p| title.starts_with(&format!("{p}:")) || title.starts_with(&format!("{p}(")))
    };
    if has(&["breaking"]) || title.contains("!:") {
        "Breaking changes"
    } else if has(&["feature", "enhancement"]) || prefixed(&["feat"]) {
        "Features"
    } else if has(&["bug", "fix"]) || prefixed(&["fix"]) {
        "Fixes"
    } else if has(&["doc"]) || prefixed(&["docs"]) {
        "Documentation"
    } else {
        "Other changes"
    }
}

const SECTIONS: [&str; 5] = [
    "Breaking changes",
    "Features",
    "Fixes",
    "Documentation",
    "Other changes",
];

/// A Markdown line naming a pull request: `- Title (#12, @author)` linked to it.
fn line(pr: &PullRequest) -> String {
    format!(
        "- {} ([#{}]({}), @{})",
        one_line(&pr.title),
        pr.number,
        pr.url,
        pr.author
    )
}

/// Text on one line, Markdown's link and emphasis markers neutralised.
fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(['[', ']'], "")
}

/// Release notes for `version` of `repository` from the pull requests merged after
/// `since` (the last tag or release; `None`: all given), oldest first, grouped by kind.
pub fn release_notes(
    repository: &str,
    version: &str,
    since: Option<Timestamp>,
    pulls: &[PullRequest],
) -> Artifact {
    let mut merged: Vec<&PullRequest> = pulls
        .iter()
        .filter(|pr| {
            pr.merged_at
                .is_some_and(|at| since.is_none_or(|since| at > since))
        })
        .collect();
    merged.sort_by_key(|pr| (pr.merged_at, pr.number));
    let mut markdown = format!("# {repository} {version}\n");
    if merged.is_empty() {
        markdown.push_str("\nNo pull requests were merged since the last release.\n");
        return Artifact::from_markdown(markdown);
    }
    let authors: std::collections::BTreeSet<&str> =
        merged.iter().map(|pr| pr.author.as_str()).collect();
    markdown.push_str(&format!(
        "\n{} pull request{} merged by {} contributor{}.\n",
        merged.len(),
        if merged.len() == 1 { "" } else { "s" },
        authors.len(),
        if authors.len() == 1 { "" } else { "s" },
    ));
    for name in SECTIONS {
        let lines: Vec<String> = merged
            .iter()
            .filter(|pr| section(pr) == name)
            .map(|pr| line(pr))
            .collect();
        if !lines.is_empty() {
            markdown.push_str(&format!("\n## {name}\n\n{}\n", lines.join("\n")));
        }
    }
    Artifact::from_markdown(markdown)
}

/// The changelog entry of one merged pull request (Keep a Changelog's categories:
/// <https://keepachangelog.com/en/1.1.0/>).
pub fn changelog_entry(pr: &PullRequest) -> Artifact {
    let category = match section(pr) {
        "Features" => "Added",
        "Fixes" => "Fixed",
        "Breaking changes" => "Changed (breaking)",
        _ => "Changed",
    };
    let date = pr
        .merged_at
        .map(|t| t.to_iso8601().chars().take(10).collect::<String>())
        .unwrap_or_default();
    Artifact::from_markdown(format!(
        "### {category}\n\n{}{}\n",
        line(pr),
        if date.is_empty() {
            String::new()
        } else {
            format!(" — merged {date}")
        }
    ))
}

/// An RFC outline from an issue: summary, motivation (the issue's own words), the design
/// to write, drawbacks, alternatives and open questions.
pub fn rfc_outline(issue: &Issue) -> Artifact {
    let quoted: String = issue
        .body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(20)
        .map(|l| format!("> {}\n", l.trim()))
        .collect();
    let motivation = if quoted.is_empty() {
        format!(
            "_Issue [#{}]({}) gives no description yet._\n",
            issue.number, issue.url
        )
    } else {
        format!(
            "From [#{}]({}) by @{}:\n\n{quoted}",
            issue.number, issue.url, issue.author
        )
    };
    Artifact::from_markdown(format!(
        "# RFC: {}\n\n## Summary\n\nOne paragraph: what changes, for whom.\n\n\
         ## Motivation\n\n{motivation}\n## Detailed design\n\n- Interfaces and data that change\n\
         - Migration and rollout\n- How it is tested\n\n## Drawbacks\n\n- Cost, complexity, \
         what gets harder\n\n## Alternatives\n\n- Doing nothing\n- Other designs considered\n\n\
         ## Unresolved questions\n\n- What must be decided before work starts\n",
        one_line(&issue.title)
    ))
}

/// An architecture decision record (Michael Nygard's form:
/// <https://cognitect.com/blog/2011/11/15/documenting-architecture-decisions>).
pub fn adr(
    number: u32,
    title: &str,
    date: Timestamp,
    context: &str,
    decision: &str,
    consequences: &str,
) -> Artifact {
    let day: String = date.to_iso8601().chars().take(10).collect();
    Artifact::from_markdown(format!(
        "# ADR {number:04}: {}\n\nDate: {day}\n\nStatus: Proposed\n\n## Context\n\n{}\n\n\
         ## Decision\n\n{}\n\n## Consequences\n\n{}\n",
        one_line(title),
        context.trim(),
        decision.trim(),
        consequences.trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pr(number: u64, title: &str, labels: &[&str], merged_secs: Option<i64>) -> PullRequest {
        PullRequest {
            number,
            title: title.into(),
            author: format!("dev{}", number % 2),
            url: format!("https://github.com/acme/shop/pull/{number}"),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            body: String::new(),
            updated_at: Timestamp::from_millis(0),
            merged_at: merged_secs.map(|s| Timestamp::from_millis(1_764_000_000_000 + s * 1000)),
        }
    }

    #[test]
    fn release_notes_list_exactly_the_pulls_merged_since_the_tag() {
        let tag = Some(Timestamp::from_millis(1_764_000_000_000 + 100_000));
        let pulls = [
            pr(1, "feat: old feature", &[], Some(50)),
            pr(2, "fix: crash on empty cart", &[], Some(200)),
            pr(3, "Add dark mode", &["enhancement"], Some(150)),
            pr(4, "Still open", &[], None),
            pr(5, "Drop v1 API", &["breaking-change"], Some(300)),
            pr(6, "Bump deps", &[], Some(250)),
        ];
        let notes = release_notes("acme/shop", "v1.2.0", tag, &pulls);
        assert_eq!(notes.title, "acme/shop v1.2.0");
        for listed in [2, 3, 5, 6] {
            assert!(
                notes.markdown.contains(&format!("[#{listed}]")),
                "#{listed} is listed: {}",
                notes.markdown
            );
        }
        for left_out in [1, 4] {
            assert!(
                !notes.markdown.contains(&format!("[#{left_out}]")),
                "{}",
                notes.markdown
            );
        }
        assert!(notes
            .markdown
            .contains("4 pull requests merged by 2 contributors"));
        let order: Vec<usize> = ["## Breaking changes", "## Features", "## Fixes", "## Other"]
            .iter()
            .map(|h| notes.markdown.find(h).expect(h))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{}", notes.markdown);
        assert!(
            notes
                .text
                .contains("Add dark mode (#3 (https://github.com/acme/shop/pull/3), @dev1)"),
            "{}",
            notes.text
        );
        assert!(!notes.text.contains("##"));
        let empty = release_notes(
            "acme/shop",
            "v1.2.1",
            Some(Timestamp::from_millis(i64::MAX / 2)),
            &pulls,
        );
        assert!(empty.markdown.contains("No pull requests were merged"));
    }

    #[test]
    fn changelog_rfc_and_adr_read_as_their_forms() {
        let entry = changelog_entry(&pr(7, "fix: [urgent] rounding", &[], Some(0)));
        assert!(
            entry.markdown.starts_with("### Fixed"),
            "{}",
            entry.markdown
        );
        assert!(
            entry.markdown.contains("urgent rounding"),
            "link markers neutralised"
        );
        assert!(
            entry.markdown.contains("merged 2025-11-24"),
            "{}",
            entry.markdown
        );

        let issue = Issue {
            number: 42,
            title: "Support gift cards".into(),
            author: "ann".into(),
            url: "https://github.com/acme/shop/issues/42".into(),
            labels: vec![],
            body: "Customers ask for gift cards.\n\nThey want them by email.".into(),
            updated_at: Timestamp::from_millis(0),
        };
        let rfc = rfc_outline(&issue);
        assert_eq!(rfc.title, "RFC: Support gift cards");
        for heading in [
            "## Summary",
            "## Motivation",
            "## Detailed design",
            "## Drawbacks",
            "## Alternatives",
            "## Unresolved questions",
        ] {
            assert!(rfc.markdown.contains(heading), "{heading}");
        }
        assert!(rfc.markdown.contains("> Customers ask for gift cards."));

        let record = adr(
            3,
            "Use Durable Objects for queues",
            Timestamp::from_millis(1_764_000_000_000),
            "Writes must be ordered.",
            "One queue per target.",
            "Per-target ordering; one hub per user.",
        );
        assert_eq!(record.title, "ADR 0003: Use Durable Objects for queues");
        let (c, d, q) = (
            record.markdown.find("## Context").expect("context"),
            record.markdown.find("## Decision").expect("decision"),
            record
                .markdown
                .find("## Consequences")
                .expect("consequences"),
        );
        assert!(c < d && d < q);
        assert!(record.text.contains("One queue per target."));
    }
}
