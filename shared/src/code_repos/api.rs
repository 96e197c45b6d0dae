//! What the repository API asks a host on request, and how the answers read: recent pull
//! requests, one pull request's details, the build status of a branch or commit, the last
//! release (or tag) and the pull requests merged since, and one issue (for an RFC or ADR).
//!
//! - GitHub: `GET /repos/{r}/pulls`, `/pulls/{n}`, `/commits/{ref}/check-runs`,
//!   `/releases/latest`, `/issues/{n}` (<https://docs.github.com/en/rest/pulls/pulls>,
//!   <https://docs.github.com/en/rest/checks/runs#list-check-runs-for-a-git-reference>,
//!   <https://docs.github.com/en/rest/releases/releases#get-the-latest-release>);
//! - GitLab: `/projects/:id/merge_requests[/:iid]`, `/pipelines?ref=|sha=`, `/releases`,
//!   `/issues/:iid` (<https://docs.gitlab.com/api/merge_requests/>,
//!   <https://docs.gitlab.com/api/pipelines/>, <https://docs.gitlab.com/api/releases/>);
//! - Bitbucket: `/repositories/{r}/pullrequests[/{id}]`, `/commit/{ref}/statuses`,
//!   `/refs/tags`, `/issues/{id}`
//!   (<https://developer.atlassian.com/cloud/bitbucket/rest/api-group-pullrequests/>,
//!   <https://developer.atlassian.com/cloud/bitbucket/rest/api-group-commit-statuses/>).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::connection::RepoHost;
use super::poll::{text, time};
use super::watch::RepoStream;
use super::{bitbucket, github, gitlab, Issue, PullRequest};
use crate::oauth::HttpRequestSpec;
use crate::sync::PageError;
use crate::{Secret, Timestamp};

/// `POST /internal/repo/query` (coordinator Worker → the repository connection's
/// instance): what the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "query", rename_all = "snake_case")]
pub enum RepoRequest {
    /// `GET .../pulls`: the most recently updated pull requests.
    RecentPulls,
    /// `GET .../pulls/{number}`.
    Pull {
        /// Its number.
        number: u64,
    },
    /// `GET .../builds/{reference}`: the build status of a branch or commit.
    BuildStatus {
        /// Branch, tag or commit SHA.
        reference: String,
    },
    /// `POST .../artifacts/release-notes`: from the pull requests merged since the last
    /// release or tag.
    ReleaseNotes {
        /// The version the notes are for (default `Unreleased`).
        #[serde(default)]
        version: Option<String>,
    },
    /// `POST .../artifacts/changelog`: the entry of one merged pull request.
    Changelog {
        /// The pull request.
        number: u64,
    },
    /// `POST .../artifacts/rfc`: an RFC outline from an issue.
    Rfc {
        /// The issue.
        number: u64,
    },
    /// `POST .../artifacts/adr`: an ADR; title and context from `issue` when given.
    Adr {
        /// The issue the decision comes from.
        #[serde(default)]
        issue: Option<u64>,
        /// The ADR's number (default 1).
        #[serde(default)]
        number: Option<u32>,
        /// Title (required without `issue`).
        #[serde(default)]
        title: Option<String>,
        /// Context (default: the issue's description).
        #[serde(default)]
        context: Option<String>,
        /// The decision.
        #[serde(default)]
        decision: Option<String>,
        /// Its consequences.
        #[serde(default)]
        consequences: Option<String>,
    },
}

/// What is asked of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoQuery {
    /// The most recently updated pull requests (open, merged and closed).
    RecentPulls,
    /// The merged pull requests, most recently updated first (for release notes).
    MergedPulls,
    /// One pull request.
    Pull(u64),
    /// The build status of a branch or commit.
    BuildStatus(String),
    /// The last release (GitLab), or the newest tag (Bitbucket); GitHub's latest release.
    LatestRelease,
    /// One issue.
    Issue(u64),
    /// The jobs of a CI run (GitHub workflow run id, GitLab pipeline id, Bitbucket pipeline
    /// uuid).
    RunJobs(String),
    /// One job's log (a Bitbucket step as `<pipeline uuid>/<step uuid>`).
    JobLog(String),
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Whether `reference` is a full commit SHA (else a branch or tag name).
fn is_sha(reference: &str) -> bool {
    reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The request for `query` (one page of up to 50).
pub fn request(
    host: RepoHost,
    api_base: &str,
    repository: &str,
    query: &RepoQuery,
    token: &Secret,
) -> HttpRequestSpec {
    let base = api_base.trim_end_matches('/');
    let url = match host {
        RepoHost::GitHub => {
            let repo = format!("{base}/repos/{repository}");
            match query {
                RepoQuery::RecentPulls => {
                    format!("{repo}/pulls?state=all&sort=updated&direction=desc&per_page=50")
                }
                RepoQuery::MergedPulls => {
                    format!("{repo}/pulls?state=closed&sort=updated&direction=desc&per_page=100")
                }
                RepoQuery::Pull(n) => format!("{repo}/pulls/{n}"),
                RepoQuery::BuildStatus(r) => {
                    format!("{repo}/commits/{}/check-runs?per_page=100", encode(r))
                }
                RepoQuery::LatestRelease => format!("{repo}/releases/latest"),
                RepoQuery::Issue(n) => format!("{repo}/issues/{n}"),
                RepoQuery::RunJobs(id) => format!("{repo}/actions/runs/{id}/jobs?per_page=100"),
                RepoQuery::JobLog(id) => format!("{repo}/actions/jobs/{id}/logs"),
            }
        }
        RepoHost::GitLab => {
            let project = format!("{base}/projects/{}", encode(repository));
            match query {
                RepoQuery::RecentPulls => format!(
                    "{project}/merge_requests?state=all&order_by=updated_at&sort=desc&per_page=50"
                ),
                RepoQuery::MergedPulls => format!(
                    "{project}/merge_requests?state=merged&order_by=updated_at&sort=desc&per_page=100"
                ),
                RepoQuery::Pull(n) => format!("{project}/merge_requests/{n}"),
                RepoQuery::BuildStatus(r) if is_sha(r) => {
                    format!("{project}/pipelines?sha={r}&per_page=1")
                }
                RepoQuery::BuildStatus(r) => {
                    format!("{project}/pipelines?ref={}&per_page=1", encode(r))
                }
                RepoQuery::LatestRelease => format!("{project}/releases?per_page=1"),
                RepoQuery::Issue(n) => format!("{project}/issues/{n}"),
                RepoQuery::RunJobs(id) => format!("{project}/pipelines/{id}/jobs?per_page=100"),
                RepoQuery::JobLog(id) => format!("{project}/jobs/{id}/trace"),
            }
        }
        RepoHost::Bitbucket => {
            let repo = format!("{base}/repositories/{repository}");
            match query {
                RepoQuery::RecentPulls => format!(
                    "{repo}/pullrequests?state=OPEN&state=MERGED&state=DECLINED&sort=-updated_on&pagelen=50"
                ),
                RepoQuery::MergedPulls => {
                    format!("{repo}/pullrequests?state=MERGED&sort=-updated_on&pagelen=50")
                }
                RepoQuery::Pull(n) => format!("{repo}/pullrequests/{n}"),
                RepoQuery::BuildStatus(r) => format!("{repo}/commit/{}/statuses", encode(r)),
                RepoQuery::LatestRelease => {
                    format!("{repo}/refs/tags?sort=-target.date&pagelen=1")
                }
                RepoQuery::Issue(n) => format!("{repo}/issues/{n}"),
                RepoQuery::RunJobs(uuid) => {
                    format!("{repo}/pipelines/{}/steps/?pagelen=100", encode(uuid))
                }
                RepoQuery::JobLog(step) => {
                    let (pipeline, step) = step.split_once('/').unwrap_or((step, ""));
                    format!(
                        "{repo}/pipelines/{}/steps/{}/log",
                        encode(pipeline),
                        encode(step)
                    )
                }
            }
        }
    };
    // The hosts' authentication and media headers, as the watcher sends them.
    let stream = RepoStream::all(host)[0];
    stream.request(api_base, repository, &Default::default(), token, Some(&url))
}

/// A pull request with what the API shows beyond the common shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullDetail {
    /// The common shape.
    #[serde(flatten)]
    pub pull: PullRequest,
    /// `open`, `merged` or `closed`.
    pub state: String,
    /// The branch it comes from.
    pub source_branch: String,
    /// The branch it goes to.
    pub target_branch: String,
}

/// One check (GitHub check run, GitLab pipeline, Bitbucket commit status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Its name.
    pub name: String,
    /// `success`, `failure` or `pending`.
    pub state: String,
    /// Web URL.
    pub url: String,
}

/// The build status of a branch or commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildStatus {
    /// The branch or commit asked about.
    pub reference: String,
    /// `failure` when any check failed, else `pending` when any runs, else `success`;
    /// `none` without checks.
    pub state: String,
    /// The checks.
    pub checks: Vec<Check>,
}

/// A release or tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The tag.
    pub tag: String,
    /// When it was published (the tagged commit's time for a Bitbucket tag).
    pub at: Option<Timestamp>,
}

fn json(status: u16, body: &str) -> Result<Value, PageError> {
    if status == 401 {
        return Err(PageError::Unauthorized);
    }
    if status == 429 {
        return Err(PageError::RateLimited {
            retry_after_ms: None,
        });
    }
    if !(200..300).contains(&status) {
        let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let message = value
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| value.pointer("/error/message").and_then(Value::as_str))
            .unwrap_or("refused");
        return Err(if status >= 500 {
            PageError::Server { status }
        } else {
            PageError::Rejected {
                status,
                message: message.to_owned(),
            }
        });
    }
    serde_json::from_str(body).map_err(|e| PageError::Malformed(format!("not JSON: {e}")))
}

fn list(value: &Value) -> Vec<Value> {
    value
        .as_array()
        .or_else(|| value.get("values").and_then(Value::as_array))
        .cloned()
        .unwrap_or_default()
}

/// A pull request of `host` with its state and branches.
pub fn pull_detail_of(host: RepoHost, item: &Value, now: Timestamp) -> PullDetail {
    match host {
        RepoHost::GitHub => {
            let pull = github::pull_request_of(item, now);
            PullDetail {
                state: if pull.merged_at.is_some() {
                    "merged".to_owned()
                } else {
                    text(item, "state")
                },
                source_branch: item
                    .pointer("/head/ref")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                target_branch: item
                    .pointer("/base/ref")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                pull,
            }
        }
        RepoHost::GitLab => PullDetail {
            pull: gitlab::pull_request_of(item, now),
            state: match text(item, "state").as_str() {
                "opened" => "open".to_owned(),
                other => other.to_owned(),
            },
            source_branch: text(item, "source_branch"),
            target_branch: text(item, "target_branch"),
        },
        RepoHost::Bitbucket => PullDetail {
            pull: bitbucket::pull_request_of(item, now),
            state: match text(item, "state").as_str() {
                "OPEN" => "open".to_owned(),
                "MERGED" => "merged".to_owned(),
                _ => "closed".to_owned(),
            },
            source_branch: item
                .pointer("/source/branch/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            target_branch: item
                .pointer("/destination/branch/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        },
    }
}

/// Reads an answer listing pull requests.
pub fn read_pulls(
    host: RepoHost,
    status: u16,
    body: &str,
    now: Timestamp,
) -> Result<Vec<PullDetail>, PageError> {
    Ok(list(&json(status, body)?)
        .iter()
        .map(|item| pull_detail_of(host, item, now))
        .collect())
}

/// Reads an answer with one pull request.
pub fn read_pull(
    host: RepoHost,
    status: u16,
    body: &str,
    now: Timestamp,
) -> Result<PullDetail, PageError> {
    Ok(pull_detail_of(host, &json(status, body)?, now))
}

/// Reads an answer with one issue.
pub fn read_issue(
    host: RepoHost,
    status: u16,
    body: &str,
    now: Timestamp,
) -> Result<Issue, PageError> {
    let item = json(status, body)?;
    Ok(match host {
        RepoHost::GitHub => github::issue_of(&item, now),
        RepoHost::GitLab => gitlab::issue_of(&item, now),
        RepoHost::Bitbucket => bitbucket::issue_of(&item, now),
    })
}

/// Reads an answer to [`RepoQuery::BuildStatus`] for `reference`.
pub fn read_build_status(
    host: RepoHost,
    reference: &str,
    status: u16,
    body: &str,
) -> Result<BuildStatus, PageError> {
    let value = json(status, body)?;
    let items = match host {
        RepoHost::GitHub => value
            .get("check_runs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        _ => list(&value),
    };
    let checks: Vec<Check> = items
        .iter()
        .map(|item| {
            let (name, state, url) = match host {
                RepoHost::GitHub => (
                    text(item, "name"),
                    match (
                        item.get("status").and_then(Value::as_str),
                        item.get("conclusion").and_then(Value::as_str),
                    ) {
                        (Some("completed"), Some("success" | "neutral" | "skipped")) => "success",
                        (Some("completed"), _) => "failure",
                        _ => "pending",
                    },
                    text(item, "html_url"),
                ),
                RepoHost::GitLab => (
                    format!(
                        "pipeline {}",
                        item.get("id").and_then(Value::as_u64).unwrap_or_default()
                    ),
                    match item.get("status").and_then(Value::as_str) {
                        Some("success" | "skipped" | "manual") => "success",
                        Some("failed" | "canceled") => "failure",
                        _ => "pending",
                    },
                    text(item, "web_url"),
                ),
                RepoHost::Bitbucket => (
                    text(item, "name"),
                    match item.get("state").and_then(Value::as_str) {
                        Some("SUCCESSFUL") => "success",
                        Some("FAILED" | "STOPPED") => "failure",
                        _ => "pending",
                    },
                    text(item, "url"),
                ),
            };
            Check {
                name,
                state: state.to_owned(),
                url,
            }
        })
        .collect();
    let any = |s: &str| checks.iter().any(|c| c.state == s);
    let state = if checks.is_empty() {
        "none"
    } else if any("failure") {
        "failure"
    } else if any("pending") {
        "pending"
    } else {
        "success"
    };
    Ok(BuildStatus {
        reference: reference.to_owned(),
        state: state.to_owned(),
        checks,
    })
}

/// Reads an answer to [`RepoQuery::LatestRelease`]: `None` when the repository has none
/// (GitHub answers 404).
pub fn read_latest_release(
    host: RepoHost,
    status: u16,
    body: &str,
) -> Result<Option<Release>, PageError> {
    if status == 404 && host == RepoHost::GitHub {
        return Ok(None);
    }
    let value = json(status, body)?;
    let item = match host {
        RepoHost::GitHub => Some(value),
        _ => list(&value).into_iter().next(),
    };
    Ok(item.map(|item| match host {
        RepoHost::GitHub => Release {
            tag: text(&item, "tag_name"),
            at: time(&item, "published_at").or_else(|| time(&item, "created_at")),
        },
        RepoHost::GitLab => Release {
            tag: text(&item, "tag_name"),
            at: time(&item, "released_at").or_else(|| time(&item, "created_at")),
        },
        RepoHost::Bitbucket => Release {
            tag: text(&item, "name"),
            at: item
                .pointer("/target/date")
                .and_then(Value::as_str)
                .and_then(crate::sync::values::parse_time),
        },
    }))
}

/// The run a `repo.build.failed` event names, as [`RepoQuery::RunJobs`] takes it.
pub fn failed_run_id(host: RepoHost, event_data: &Value) -> Option<String> {
    let run = event_data
        .get("workflow_run")
        .or_else(|| event_data.get("object_attributes"))
        .or_else(|| event_data.get("pipeline"))
        .unwrap_or(event_data);
    match host {
        RepoHost::Bitbucket => run.get("uuid").and_then(Value::as_str).map(str::to_owned),
        _ => run
            .get("id")
            .and_then(Value::as_u64)
            .map(|id| id.to_string()),
    }
}

/// The failed jobs of a run's job list: `(id for` [`RepoQuery::JobLog`]`, name)`.
pub fn read_failed_jobs(
    host: RepoHost,
    run_id: &str,
    status: u16,
    body: &str,
) -> Result<Vec<(String, String)>, PageError> {
    let value = json(status, body)?;
    let jobs = match host {
        RepoHost::GitHub => value
            .get("jobs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        _ => list(&value),
    };
    Ok(jobs
        .iter()
        .filter_map(|job| {
            match host {
                RepoHost::GitHub => (job.get("conclusion").and_then(Value::as_str)
                    == Some("failure"))
                .then(|| {
                    job.get("id")
                        .and_then(Value::as_u64)
                        .map(|id| id.to_string())
                })
                .flatten(),
                RepoHost::GitLab => (job.get("status").and_then(Value::as_str) == Some("failed"))
                    .then(|| {
                        job.get("id")
                            .and_then(Value::as_u64)
                            .map(|id| id.to_string())
                    })
                    .flatten(),
                RepoHost::Bitbucket => (job.pointer("/state/result/name").and_then(Value::as_str)
                    == Some("FAILED"))
                .then(|| {
                    job.get("uuid")
                        .and_then(Value::as_str)
                        .map(|step| format!("{run_id}/{step}"))
                })
                .flatten(),
            }
            .map(|id| (id, text(job, "name")))
        })
        .collect())
}

/// The last `lines` lines of a log.
pub fn log_tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(hours: i64) -> Timestamp {
        Timestamp::from_millis(1_764_000_000_000 + hours * 3_600_000)
    }

    #[test]
    fn requests_per_host() {
        let token = Secret::new("t".to_owned());
        let github = request(
            RepoHost::GitHub,
            "https://api.github.com",
            "acme/shop",
            &RepoQuery::BuildStatus("main".into()),
            &token,
        );
        assert_eq!(
            github.url,
            "https://api.github.com/repos/acme/shop/commits/main/check-runs?per_page=100"
        );
        assert_eq!(github.header("Authorization"), Some("Bearer t"));
        let sha = "a".repeat(40);
        let gitlab = request(
            RepoHost::GitLab,
            "https://gitlab.com/api/v4",
            "acme/web/shop",
            &RepoQuery::BuildStatus(sha.clone()),
            &token,
        );
        assert_eq!(
            gitlab.url,
            format!("https://gitlab.com/api/v4/projects/acme%2Fweb%2Fshop/pipelines?sha={sha}&per_page=1")
        );
        assert_eq!(gitlab.header("PRIVATE-TOKEN"), Some("t"));
        let bitbucket = request(
            RepoHost::Bitbucket,
            "https://api.bitbucket.org/2.0",
            "acme/shop",
            &RepoQuery::Pull(3),
            &token,
        );
        assert_eq!(
            bitbucket.url,
            "https://api.bitbucket.org/2.0/repositories/acme/shop/pullrequests/3"
        );
    }

    #[test]
    fn failed_jobs_per_host() {
        let github = json!({"jobs": [{"id": 1, "name": "test", "conclusion": "failure"},
                                     {"id": 2, "name": "lint", "conclusion": "success"}]});
        assert_eq!(
            read_failed_jobs(RepoHost::GitHub, "9", 200, &github.to_string()),
            Ok(vec![("1".into(), "test".into())])
        );
        let bitbucket = json!({"values": [{"uuid": "{s1}", "name": "Build", "state": {"result": {"name": "FAILED"}}}]});
        assert_eq!(
            read_failed_jobs(RepoHost::Bitbucket, "{p1}", 200, &bitbucket.to_string()),
            Ok(vec![("{p1}/{s1}".into(), "Build".into())])
        );
        let log = request(
            RepoHost::Bitbucket,
            "https://api.bitbucket.org/2.0",
            "acme/shop",
            &RepoQuery::JobLog("{p1}/{s1}".into()),
            &Secret::new("t".to_owned()),
        );
        assert_eq!(
            log.url,
            "https://api.bitbucket.org/2.0/repositories/acme/shop/pipelines/%7Bp1%7D/steps/%7Bs1%7D/log"
        );
        assert_eq!(
            failed_run_id(RepoHost::GitHub, &json!({"workflow_run": {"id": 77}})),
            Some("77".into())
        );
        assert_eq!(
            failed_run_id(RepoHost::GitHub, &json!({"id": 78})),
            Some("78".into())
        );
        assert_eq!(log_tail("a\nb\nc", 2), "b\nc");
    }

    #[test]
    fn answers_read_in_one_shape() {
        let pr = json!({"number": 4, "title": "feat: x", "state": "closed", "user": {"login": "a"},
            "html_url": "h", "updated_at": at(1).to_iso8601(), "merged_at": at(1).to_iso8601(),
            "head": {"ref": "feature"}, "base": {"ref": "main"}});
        let detail = read_pull(RepoHost::GitHub, 200, &pr.to_string(), at(2)).expect("pull");
        assert_eq!(
            (
                detail.state.as_str(),
                detail.source_branch.as_str(),
                detail.target_branch.as_str()
            ),
            ("merged", "feature", "main")
        );
        let mr = json!([{"iid": 9, "title": "t", "state": "opened", "author": {"username": "b"},
            "web_url": "w", "updated_at": at(1).to_iso8601(), "source_branch": "s", "target_branch": "main"}]);
        let list = read_pulls(RepoHost::GitLab, 200, &mr.to_string(), at(2)).expect("list");
        assert_eq!((list[0].pull.number, list[0].state.as_str()), (9, "open"));
        let checks = json!({"total_count": 2, "check_runs": [
            {"name": "test", "status": "completed", "conclusion": "failure", "html_url": "u"},
            {"name": "lint", "status": "in_progress", "conclusion": null, "html_url": "v"}]});
        let status =
            read_build_status(RepoHost::GitHub, "main", 200, &checks.to_string()).expect("status");
        assert_eq!(status.state, "failure");
        assert_eq!(status.checks[1].state, "pending");
        let none =
            read_build_status(RepoHost::Bitbucket, "abc", 200, r#"{"values": []}"#).expect("none");
        assert_eq!(none.state, "none");
        assert_eq!(
            read_latest_release(RepoHost::GitHub, 404, r#"{"message": "Not Found"}"#),
            Ok(None)
        );
        let tags = json!({"values": [{"name": "v1.2.0", "target": {"date": at(0).to_iso8601()}}]});
        assert_eq!(
            read_latest_release(RepoHost::Bitbucket, 200, &tags.to_string()),
            Ok(Some(Release {
                tag: "v1.2.0".into(),
                at: Some(at(0))
            }))
        );
        assert_eq!(
            read_pull(RepoHost::GitHub, 401, "{}", at(0)),
            Err(PageError::Unauthorized)
        );
        assert!(matches!(
            read_pull(RepoHost::GitHub, 404, r#"{"message": "Not Found"}"#, at(0)),
            Err(PageError::Rejected { status: 404, .. })
        ));
    }
}
