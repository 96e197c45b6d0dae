//! GitHub, GitLab and Bitbucket Cloud webhooks (the hosts' docs are linked below), mapped onto one
//! set of event types: `repo.push`, `repo.pr.opened`, `repo.pr.merged`,
//! `repo.build.failed`, `repo.build.completed`, `issue.created`, `issue.comment.created`.
//!
//! - GitHub: <https://docs.github.com/en/webhooks/webhook-events-and-payloads>
//! - GitLab: <https://docs.gitlab.com/user/project/integrations/webhook_events/>
//! - Bitbucket Cloud: <https://support.atlassian.com/bitbucket-cloud/docs/event-payloads/>

use chrono::{NaiveDateTime, TimeZone as _, Utc};
use serde_json::Value;

use super::{dedup_key, delivery_id, parse_object, str_at, IncomingEvent, ParseError, Source};
use crate::sync::values::parse_time;
use crate::Timestamp;

/// The delivery headers of the three hosts, as received (absent ones `None`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GitHeaders<'a> {
    /// GitHub `X-GitHub-Event` (e.g. `push`, `pull_request`).
    pub github_event: Option<&'a str>,
    /// GitHub `X-GitHub-Delivery`: one GUID per delivery, kept on redelivery.
    pub github_delivery: Option<&'a str>,
    /// GitLab `X-Gitlab-Event` (e.g. `Push Hook`, `Merge Request Hook`).
    pub gitlab_event: Option<&'a str>,
    /// GitLab `X-Gitlab-Event-UUID`.
    pub gitlab_event_uuid: Option<&'a str>,
    /// GitLab `Idempotency-Key` (GitLab 17.4+): the same on every retry of a delivery, so
    /// it is preferred over `X-Gitlab-Event-UUID` for deduplication.
    pub gitlab_idempotency_key: Option<&'a str>,
    /// Bitbucket `X-Event-Key` (e.g. `repo:push`, `pullrequest:created`).
    pub bitbucket_event_key: Option<&'a str>,
    /// Bitbucket `X-Request-UUID`: one per delivery.
    pub bitbucket_request_uuid: Option<&'a str>,
}

/// A present, non-blank header value, trimmed.
fn value(header: Option<&str>) -> Option<&str> {
    header.map(str::trim).filter(|v| !v.is_empty())
}

impl GitHeaders<'_> {
    /// The host that sent the delivery, by which event header is present (GitHub, then
    /// GitLab, then Bitbucket); `None` when none is.
    pub fn host(&self) -> Option<Source> {
        if value(self.github_event).is_some() {
            Some(Source::GitHub)
        } else if value(self.gitlab_event).is_some() {
            Some(Source::GitLab)
        } else if value(self.bitbucket_event_key).is_some() {
            Some(Source::Bitbucket)
        } else {
            None
        }
    }
}

/// The body as a JSON object. GitHub webhooks configured with the form content type
/// send `payload=<url-encoded JSON>` instead.
fn parse_body(body: &[u8]) -> Result<Value, ParseError> {
    if body.starts_with(b"payload=") {
        let payload = url::form_urlencoded::parse(body)
            .find(|(key, _)| key == "payload")
            .map(|(_, json)| json.into_owned())
            .unwrap_or_default();
        return parse_object(payload.as_bytes());
    }
    parse_object(body)
}

/// Whether the string at `path` equals `expected`, ignoring ASCII case.
fn is(payload: &Value, path: &[&str], expected: &str) -> bool {
    str_at(payload, path).is_some_and(|v| v.eq_ignore_ascii_case(expected))
}

/// A build conclusion as an event type: failed or succeeded; anything else (cancelled,
/// skipped, neutral, still running) is no event.
fn build_outcome(conclusion: Option<&str>) -> Option<&'static str> {
    match conclusion?.to_ascii_lowercase().as_str() {
        "failure" | "failed" | "timed_out" | "startup_failure" => Some("repo.build.failed"),
        "success" | "successful" => Some("repo.build.completed"),
        _ => None,
    }
}

/// A Git host time: RFC 3339 (and the sync's near misses), or GitLab's older
/// `2013-12-03 17:23:34 UTC` and `2016-08-12 15:26:29 +0200` forms.
fn git_time(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    parse_time(text)
        .or_else(|| {
            text.strip_suffix(" UTC")
                .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").ok())
                .map(|t| Timestamp::from_millis(Utc.from_utc_datetime(&t).timestamp_millis()))
        })
        .or_else(|| {
            chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S %z")
                .ok()
                .map(|t| Timestamp::from_millis(t.timestamp_millis()))
        })
}

/// The first readable time at any of `paths`.
fn first_time(payload: &Value, paths: &[&[&str]]) -> Option<Timestamp> {
    paths
        .iter()
        .find_map(|path| str_at(payload, path).and_then(git_time))
}

/// GitHub: the event type and the event time.
fn github(event: &str, payload: &Value) -> (Option<&'static str>, Option<Timestamp>) {
    let action = |expected: &str| is(payload, &["action"], expected);
    match event.to_ascii_lowercase().as_str() {
        "push" => (
            Some("repo.push"),
            first_time(payload, &[&["head_commit", "timestamp"]]),
        ),
        "pull_request" => {
            let merged = payload
                .get("pull_request")
                .and_then(|pr| pr.get("merged"))
                .and_then(Value::as_bool)
                == Some(true);
            let kind = if action("opened") {
                Some("repo.pr.opened")
            } else if action("closed") && merged {
                Some("repo.pr.merged")
            } else {
                None
            };
            let time = first_time(
                payload,
                &[
                    &["pull_request", "merged_at"],
                    &["pull_request", "updated_at"],
                    &["pull_request", "created_at"],
                ],
            );
            (kind, time)
        }
        run @ ("workflow_run" | "check_suite") => {
            let kind = if action("completed") {
                build_outcome(str_at(payload, &[run, "conclusion"]))
            } else {
                None
            };
            (kind, first_time(payload, &[&[run, "updated_at"]]))
        }
        "issues" => (
            action("opened").then_some("issue.created"),
            first_time(payload, &[&["issue", "created_at"]]),
        ),
        "issue_comment" => {
            // Comments on pull requests arrive as `issue_comment` too; only issue comments
            // are `issue.comment.created` (as on GitLab and Bitbucket).
            let on_pull_request = payload
                .get("issue")
                .and_then(|issue| issue.get("pull_request"))
                .is_some_and(|pr| !pr.is_null());
            (
                (action("created") && !on_pull_request).then_some("issue.comment.created"),
                first_time(payload, &[&["comment", "created_at"]]),
            )
        }
        _ => (None, None),
    }
}

/// The content key of a GitHub change that polling also finds
/// ([`crate::code_repos::github::content_key`]): the same change seen by its webhook and by
/// a poll is one event.
fn github_content_key(kind: &str, payload: &Value) -> Option<String> {
    let repository = str_at(payload, &["repository", "full_name"])?;
    let number = |path: &[&str]| {
        let mut value = payload;
        for key in path {
            value = value.get(*key)?;
        }
        value.as_u64().map(|n| n.to_string())
    };
    let subject = match kind {
        "repo.pr.opened" | "repo.pr.merged" => number(&["pull_request", "number"])?,
        "issue.created" => number(&["issue", "number"])?,
        "issue.comment.created" => number(&["comment", "id"])?,
        "repo.build.failed" | "repo.build.completed" => number(&["workflow_run", "id"])?,
        _ => return None,
    };
    Some(crate::code_repos::poll::content_key(
        "github", repository, kind, &subject,
    ))
}

/// The content key of a GitLab change that polling also finds
/// ([`crate::code_repos::gitlab`]).
fn gitlab_content_key(kind: &str, payload: &Value) -> Option<String> {
    let project = str_at(payload, &["project", "path_with_namespace"])?;
    let field = match kind {
        "repo.pr.opened" | "repo.pr.merged" | "issue.created" => "iid",
        "repo.build.failed" | "repo.build.completed" => "id",
        _ => return None,
    };
    let subject = payload
        .get("object_attributes")
        .and_then(|a| a.get(field))
        .and_then(Value::as_u64)?;
    Some(crate::code_repos::poll::content_key(
        "gitlab",
        project,
        kind,
        &subject.to_string(),
    ))
}

/// The content key of a Bitbucket change that polling also finds
/// ([`crate::code_repos::bitbucket`]): pull requests and issues by id; a Bitbucket
/// Pipelines build status by the build number its `url` ends with
/// (`.../pipelines/results/{build number}`; other CI tools' statuses have none).
fn bitbucket_content_key(kind: &str, payload: &Value) -> Option<String> {
    let repository = str_at(payload, &["repository", "full_name"])?;
    let id = match kind {
        "repo.pr.opened" | "repo.pr.merged" => payload.get("pullrequest")?.get("id")?.as_u64()?,
        "issue.created" => payload.get("issue")?.get("id")?.as_u64()?,
        "repo.build.failed" | "repo.build.completed" => str_at(payload, &["commit_status", "url"])?
            .split_once("/pipelines/results/")?
            .1
            .trim_end_matches('/')
            .parse()
            .ok()?,
        _ => return None,
    };
    Some(crate::code_repos::poll::content_key(
        "bitbucket",
        repository,
        kind,
        &id.to_string(),
    ))
}

/// GitLab: the event type and the event time.
fn gitlab(event: &str, payload: &Value) -> (Option<&'static str>, Option<Timestamp>) {
    let attribute =
        |name: &str, expected: &str| is(payload, &["object_attributes", name], expected);
    let updated = || {
        first_time(
            payload,
            &[
                &["object_attributes", "updated_at"],
                &["object_attributes", "created_at"],
            ],
        )
    };
    match event.to_ascii_lowercase().as_str() {
        "push hook" | "tag push hook" => {
            // The newest commit is the last one listed.
            let time = payload
                .get("commits")
                .and_then(Value::as_array)
                .and_then(|commits| commits.last())
                .and_then(|commit| first_time(commit, &[&["timestamp"]]));
            (Some("repo.push"), time)
        }
        "merge request hook" => {
            let kind = if attribute("action", "open") {
                Some("repo.pr.opened")
            } else if attribute("action", "merge") {
                Some("repo.pr.merged")
            } else {
                None
            };
            (kind, updated())
        }
        "pipeline hook" => {
            let status = str_at(payload, &["object_attributes", "status"]);
            let kind = match status.map(str::to_ascii_lowercase).as_deref() {
                Some("failed") => Some("repo.build.failed"),
                Some("success") => Some("repo.build.completed"),
                _ => None,
            };
            let time = first_time(
                payload,
                &[
                    &["object_attributes", "finished_at"],
                    &["object_attributes", "created_at"],
                ],
            );
            (kind, time)
        }
        "issue hook" | "confidential issue hook" => (
            attribute("action", "open").then_some("issue.created"),
            updated(),
        ),
        "note hook" | "confidential note hook" => {
            // Older GitLab sends no `action` on notes: they only fired on creation.
            let created = str_at(payload, &["object_attributes", "action"])
                .is_none_or(|a| a.eq_ignore_ascii_case("create"));
            let on_issue = attribute("noteable_type", "Issue");
            (
                (created && on_issue).then_some("issue.comment.created"),
                first_time(payload, &[&["object_attributes", "created_at"]]),
            )
        }
        _ => (None, None),
    }
}

/// Bitbucket Cloud: the event type and the event time.
fn bitbucket(event: &str, payload: &Value) -> (Option<&'static str>, Option<Timestamp>) {
    match event.to_ascii_lowercase().as_str() {
        "repo:push" => {
            let time = payload
                .get("push")
                .and_then(|push| push.get("changes"))
                .and_then(Value::as_array)
                .and_then(|changes| changes.first())
                .and_then(|change| first_time(change, &[&["new", "target", "date"]]));
            (Some("repo.push"), time)
        }
        "pullrequest:created" => (
            Some("repo.pr.opened"),
            first_time(payload, &[&["pullrequest", "created_on"]]),
        ),
        "pullrequest:fulfilled" => (
            Some("repo.pr.merged"),
            first_time(payload, &[&["pullrequest", "updated_on"]]),
        ),
        "repo:commit_status_updated" | "repo:commit_status_created" => (
            build_outcome(str_at(payload, &["commit_status", "state"])),
            first_time(payload, &[&["commit_status", "updated_on"]]),
        ),
        "issue:created" => (
            Some("issue.created"),
            first_time(payload, &[&["issue", "created_on"]]),
        ),
        "issue:comment_created" => (
            Some("issue.comment.created"),
            first_time(payload, &[&["comment", "created_on"]]),
        ),
        _ => (None, None),
    }
}

/// Classifies a GitHub, GitLab or Bitbucket delivery; the host is told by
/// [`GitHeaders::host`].
///
/// | event type | GitHub | GitLab | Bitbucket |
/// |---|---|---|---|
/// | `repo.push` | `push` | `Push Hook`, `Tag Push Hook` | `repo:push` |
/// | `repo.pr.opened` | `pull_request` opened | `Merge Request Hook` open | `pullrequest:created` |
/// | `repo.pr.merged` | `pull_request` closed and merged | `Merge Request Hook` merge | `pullrequest:fulfilled` |
/// | `repo.build.failed` | `workflow_run`/`check_suite` completed, conclusion `failure` (also `timed_out`, `startup_failure`) | `Pipeline Hook` status `failed` | `repo:commit_status_*` state `FAILED` |
/// | `repo.build.completed` | same, conclusion `success` | `Pipeline Hook` status `success` | state `SUCCESSFUL` |
/// | `issue.created` | `issues` opened | `Issue Hook` open | `issue:created` |
/// | `issue.comment.created` | `issue_comment` created on an issue | `Note Hook` on an `Issue` | `issue:comment_created` |
///
/// Anything else is `event_type: None`. Dedup: GitHub `X-GitHub-Delivery`; GitLab
/// `Idempotency-Key`, else `X-Gitlab-Event-UUID`; Bitbucket `X-Request-UUID`; else the
/// body digest. Fails when no event header is present or the body is not a JSON object
/// (GitHub's `payload=` form encoding is accepted).
pub fn classify_git(
    headers: &GitHeaders<'_>,
    body: &[u8],
) -> Result<(Source, IncomingEvent), ParseError> {
    let source = headers.host().ok_or_else(|| {
        ParseError::Malformed("no X-GitHub-Event, X-Gitlab-Event or X-Event-Key header".to_owned())
    })?;
    let payload = parse_body(body)?;
    let (event_type, occurred_at, delivery) = match source {
        Source::GitHub => {
            let (kind, time) = github(value(headers.github_event).unwrap_or_default(), &payload);
            (kind, time, delivery_id(headers.github_delivery))
        }
        Source::GitLab => {
            let (kind, time) = gitlab(value(headers.gitlab_event).unwrap_or_default(), &payload);
            let id = delivery_id(headers.gitlab_idempotency_key)
                .or_else(|| delivery_id(headers.gitlab_event_uuid));
            (kind, time, id)
        }
        // `host` names only the three Git hosts; what is left is Bitbucket.
        _ => {
            let event = value(headers.bitbucket_event_key).unwrap_or_default();
            let (kind, time) = bitbucket(event, &payload);
            (kind, time, delivery_id(headers.bitbucket_request_uuid))
        }
    };
    let content_key = match (&source, event_type) {
        (Source::GitHub, Some(kind)) => github_content_key(kind, &payload),
        (Source::GitLab, Some(kind)) => gitlab_content_key(kind, &payload),
        (Source::Bitbucket, Some(kind)) => bitbucket_content_key(kind, &payload),
        _ => None,
    };
    let event = IncomingEvent {
        source: source.as_str().to_owned(),
        event_type: event_type.map(str::to_owned),
        dedup_key: Some(dedup_key(source.as_str(), delivery, body)),
        content_key,
        event_data: payload,
        occurred_at,
        record_change: None,
    };
    Ok((source, event))
}
