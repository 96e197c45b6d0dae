//! A repository connection as the operator asks for it (`POST /coordinator/connections`
//! with `"provider": "github" | "gitlab" | "bitbucket"`), checked, and the calls that
//! register and remove its webhook at the host, pointing at webhook-handler with a secret of
//! its own:
//! - GitHub `POST /repos/{owner}/{repo}/hooks` `{name: "web", active, events, config: {url,
//!   content_type: "json", secret}}`
//!   (<https://docs.github.com/en/rest/repos/webhooks#create-a-repository-webhook>);
//! - GitLab `POST /projects/:id/hooks` `{url, token, merge_requests_events, pipeline_events,
//!   issues_events, note_events, push_events}` (<https://docs.gitlab.com/api/project_webhooks/>);
//! - Bitbucket `POST /repositories/{workspace}/{repo}/hooks` `{description, url, active,
//!   secret, events}` (<https://developer.atlassian.com/cloud/bitbucket/rest/api-group-repositories/#api-repositories-workspace-repo-slug-hooks-post>).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::oauth::HttpRequestSpec;
use crate::Secret;

/// A repository host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoHost {
    /// GitHub (github.com or GitHub Enterprise Server).
    GitHub,
    /// GitLab (gitlab.com or self-managed).
    GitLab,
    /// Bitbucket Cloud.
    Bitbucket,
}

impl RepoHost {
    /// `github`, `gitlab`, `bitbucket`.
    pub fn as_str(self) -> &'static str {
        match self {
            RepoHost::GitHub => "github",
            RepoHost::GitLab => "gitlab",
            RepoHost::Bitbucket => "bitbucket",
        }
    }

    /// The public API base.
    pub fn default_api_base(self) -> &'static str {
        match self {
            RepoHost::GitHub => "https://api.github.com",
            RepoHost::GitLab => "https://gitlab.com/api/v4",
            RepoHost::Bitbucket => "https://api.bitbucket.org/2.0",
        }
    }
}

/// `POST /coordinator/connections` for a repository.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConnectRequest {
    /// The host.
    pub provider: RepoHost,
    /// The owner of the connection.
    pub user_id: String,
    /// `owner/name` (GitLab: the project's full path, groups included).
    pub repository: String,
    /// A personal, fine-grained or installation token (GitHub), an access token (GitLab),
    /// a repository access token (Bitbucket).
    pub access_token: Secret,
    /// The API base of a self-hosted host (`https://gitlab.example.com/api/v4`).
    #[serde(default)]
    pub base_url: Option<String>,
}

/// Why a repository connection request is refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoConnectError {
    /// The repository is not `owner/name` (GitLab: `group/.../project`).
    #[error("repository must be owner/name{0}")]
    Repository(&'static str),
    /// The token is empty.
    #[error("access_token must not be empty")]
    Token,
    /// The base URL is not an https URL (http only for a local host).
    #[error("base_url must be an https URL")]
    BaseUrl,
    /// The user id is empty or too long.
    #[error("user_id must be 1 to 128 characters")]
    User,
}

fn segment_ok(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl RepoConnectRequest {
    /// The request if it can be used; its API base (the given one, else the host's).
    pub fn validated(self) -> Result<(Self, String), RepoConnectError> {
        if self.user_id.trim().is_empty() || self.user_id.len() > 128 {
            return Err(RepoConnectError::User);
        }
        if self.access_token.expose().trim().is_empty() {
            return Err(RepoConnectError::Token);
        }
        let segments: Vec<&str> = self.repository.split('/').collect();
        let shape_ok = match self.provider {
            RepoHost::GitLab => segments.len() >= 2,
            _ => segments.len() == 2,
        };
        if !shape_ok || !segments.iter().all(|s| segment_ok(s)) {
            return Err(RepoConnectError::Repository(match self.provider {
                RepoHost::GitLab => " or group/subgroup/project",
                _ => "",
            }));
        }
        let base = match &self.base_url {
            Some(url) => {
                let local =
                    url.starts_with("http://127.0.0.1") || url.starts_with("http://localhost");
                if !(url.starts_with("https://") || local) || url::Url::parse(url).is_err() {
                    return Err(RepoConnectError::BaseUrl);
                }
                url.trim_end_matches('/').to_owned()
            }
            None => self.provider.default_api_base().to_owned(),
        };
        Ok((self, base))
    }
}

/// The events a repository webhook subscribes to, per host.
pub fn hook_events(host: RepoHost) -> &'static [&'static str] {
    match host {
        RepoHost::GitHub => &[
            "pull_request",
            "workflow_run",
            "check_suite",
            "issues",
            "issue_comment",
            "push",
        ],
        RepoHost::GitLab => &[],
        RepoHost::Bitbucket => &[
            "repo:push",
            "pullrequest:created",
            "pullrequest:fulfilled",
            "repo:commit_status_updated",
            "issue:created",
            "issue:comment_created",
        ],
    }
}

fn encoded(path: &str) -> String {
    url::form_urlencoded::byte_serialize(path.as_bytes()).collect()
}

/// The request that registers the repository's webhook at `callback`, signed with `secret`.
pub fn create_hook(
    host: RepoHost,
    api_base: &str,
    repository: &str,
    token: &Secret,
    callback: &str,
    secret: &Secret,
) -> HttpRequestSpec {
    let base = api_base.trim_end_matches('/');
    let (url, body) = match host {
        RepoHost::GitHub => (
            format!("{base}/repos/{repository}/hooks"),
            json!({"name": "web", "active": true, "events": hook_events(host),
                   "config": {"url": callback, "content_type": "json", "insecure_ssl": "0",
                              "secret": secret.expose()}}),
        ),
        RepoHost::GitLab => (
            format!("{base}/projects/{}/hooks", encoded(repository)),
            json!({"url": callback, "token": secret.expose(), "push_events": true,
                   "merge_requests_events": true, "pipeline_events": true, "issues_events": true,
                   "note_events": true, "enable_ssl_verification": true}),
        ),
        RepoHost::Bitbucket => (
            format!("{base}/repositories/{repository}/hooks"),
            json!({"description": "Edge Sync", "url": callback, "active": true,
                   "secret": secret.expose(), "events": hook_events(host)}),
        ),
    };
    authorized(host, "POST", url, token, Some(body))
}

/// The request that removes the webhook with `hook_id`.
pub fn delete_hook(
    host: RepoHost,
    api_base: &str,
    repository: &str,
    token: &Secret,
    hook_id: &str,
) -> HttpRequestSpec {
    let base = api_base.trim_end_matches('/');
    let url = match host {
        RepoHost::GitHub => format!("{base}/repos/{repository}/hooks/{hook_id}"),
        RepoHost::GitLab => format!("{base}/projects/{}/hooks/{hook_id}", encoded(repository)),
        RepoHost::Bitbucket => {
            format!(
                "{base}/repositories/{repository}/hooks/{}",
                encoded(hook_id)
            )
        }
    };
    authorized(host, "DELETE", url, token, None)
}

fn authorized(
    host: RepoHost,
    method: &'static str,
    url: String,
    token: &Secret,
    body: Option<Value>,
) -> HttpRequestSpec {
    let mut headers = vec![match host {
        RepoHost::GitLab => ("PRIVATE-TOKEN".to_owned(), token.expose().to_owned()),
        _ => (
            "Authorization".to_owned(),
            format!("Bearer {}", token.expose()),
        ),
    }];
    headers.push(("Accept".to_owned(), "application/json".to_owned()));
    if host == RepoHost::GitHub {
        headers.push(("X-GitHub-Api-Version".to_owned(), "2022-11-28".to_owned()));
        headers.push(("User-Agent".to_owned(), "edge-sync".to_owned()));
    }
    if body.is_some() {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    HttpRequestSpec {
        method,
        url,
        headers,
        body: body.map(|b| b.to_string()).unwrap_or_default(),
    }
}

/// The id of the webhook a create answered with (GitHub and GitLab: a number; Bitbucket:
/// a `{uuid}`), or why there is none.
pub fn created_hook_id(status: u16, body: &str) -> Result<String, String> {
    let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        let message = value
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| value.pointer("/error/message").and_then(Value::as_str))
            .unwrap_or("no message");
        return Err(format!("HTTP {status}: {message}"));
    }
    match value.get("id").or_else(|| value.get("uuid")) {
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err("the answer names no hook id".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        provider: &str,
        repository: &str,
        base: Option<&str>,
    ) -> Result<(RepoConnectRequest, String), String> {
        let mut body = json!({"provider": provider, "user_id": "u1", "repository": repository,
                              "access_token": "tok"});
        if let Some(base) = base {
            body["base_url"] = json!(base);
        }
        let request: RepoConnectRequest =
            serde_json::from_value(body).map_err(|e| e.to_string())?;
        request.validated().map_err(|e| e.to_string())
    }

    #[test]
    fn requests_are_checked() {
        let (ok, base) = request("github", "acme/shop", None).expect("ok");
        assert_eq!(
            (ok.provider, base.as_str()),
            (RepoHost::GitHub, "https://api.github.com")
        );
        assert!(request(
            "gitlab",
            "acme/web/shop",
            Some("https://gitlab.example.com/api/v4/")
        )
        .is_ok());
        assert_eq!(
            request(
                "gitlab",
                "acme/web/shop",
                Some("https://gitlab.example.com/api/v4/")
            )
            .expect("ok")
            .1,
            "https://gitlab.example.com/api/v4"
        );
        assert!(
            request("github", "acme/web/shop", None).is_err(),
            "GitHub has no groups"
        );
        assert!(request("bitbucket", "acme/../x", None).is_err());
        assert!(
            request("github", "acme/shop", Some("http://evil.example.com")).is_err(),
            "https only"
        );
        assert!(
            request("github", "acme/shop", Some("http://127.0.0.1:8790/github")).is_ok(),
            "a local sandbox"
        );
        assert!(request("svn", "acme/shop", None).is_err());
        let secret_shown = format!("{:?}", request("github", "acme/shop", None).expect("ok").0);
        assert!(
            !secret_shown.contains("tok\""),
            "the token never prints: {secret_shown}"
        );
    }

    #[test]
    fn hooks_are_registered_with_a_secret_of_their_own() {
        let token = Secret::new("tok".to_owned());
        let secret = Secret::new("whs".to_owned());
        let github = create_hook(
            RepoHost::GitHub,
            "https://api.github.com",
            "acme/shop",
            &token,
            "https://hooks.example/webhooks/code-repo/repo_1",
            &secret,
        );
        assert_eq!(github.url, "https://api.github.com/repos/acme/shop/hooks");
        let body: Value = serde_json::from_str(&github.body).expect("json");
        assert_eq!(body["config"]["secret"], "whs");
        assert!(body["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e == "workflow_run"));
        let gitlab = create_hook(
            RepoHost::GitLab,
            "https://gitlab.com/api/v4",
            "acme/web/shop",
            &token,
            "https://h/x",
            &secret,
        );
        assert_eq!(
            gitlab.url,
            "https://gitlab.com/api/v4/projects/acme%2Fweb%2Fshop/hooks"
        );
        assert_eq!(gitlab.header("PRIVATE-TOKEN"), Some("tok"));
        let body: Value = serde_json::from_str(&gitlab.body).expect("json");
        assert_eq!(body["token"], "whs");
        let bitbucket = delete_hook(
            RepoHost::Bitbucket,
            "https://api.bitbucket.org/2.0",
            "acme/shop",
            &token,
            "{1-2}",
        );
        assert_eq!(
            bitbucket.url,
            "https://api.bitbucket.org/2.0/repositories/acme/shop/hooks/%7B1-2%7D"
        );
        assert_eq!(created_hook_id(201, r#"{"id": 12}"#), Ok("12".into()));
        assert_eq!(
            created_hook_id(201, r#"{"uuid": "{1-2}"}"#),
            Ok("{1-2}".into())
        );
        assert_eq!(
            created_hook_id(422, r#"{"message": "Validation Failed"}"#),
            Err("HTTP 422: Validation Failed".into())
        );
    }
}
