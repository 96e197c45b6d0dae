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

use std::str::FromStr;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

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

    /// Every host, in a stable order.
    pub const ALL: [RepoHost; 3] = [RepoHost::GitHub, RepoHost::GitLab, RepoHost::Bitbucket];

    /// The public API base.
    pub fn default_api_base(self) -> &'static str {
        match self {
            RepoHost::GitHub => "https://api.github.com",
            RepoHost::GitLab => "https://gitlab.com/api/v4",
            RepoHost::Bitbucket => "https://api.bitbucket.org/2.0",
        }
    }
}

/// A name that is not `github`, `gitlab` or `bitbucket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown repository host; expected `github`, `gitlab` or `bitbucket`")]
pub struct UnknownHost;

impl FromStr for RepoHost {
    type Err = UnknownHost;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        RepoHost::ALL
            .into_iter()
            .find(|h| h.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or(UnknownHost)
    }
}

/// The id of `user_id`'s connection of `repository` at the host whose API is `api_base`:
/// `"{host}_" + first 24 hex chars of sha256("{host}\n{api base}\n{repository}\n{user}")`
/// (the repository lowercased: hosts treat names case-insensitively). Derived, so
/// connecting the same repository again replaces its token instead of adding a rival.
pub fn repo_connection_id(
    host: RepoHost,
    api_base: &str,
    repository: &str,
    user_id: &str,
) -> String {
    let digest = Sha256::digest(
        format!(
            "{}\n{}\n{}\n{user_id}",
            host.as_str(),
            api_base.trim_end_matches('/'),
            repository.to_ascii_lowercase()
        )
        .as_bytes(),
    );
    format!("{}_{}", host.as_str(), hex::encode(&digest[..12]))
}

/// The host of a repository connection id (`github_<24 hex>`, ...), so arbitrary names
/// never create Durable Objects.
pub fn repo_connection_host(id: &str) -> Option<RepoHost> {
    let (host, digest) = id.split_once('_')?;
    let host: RepoHost = host.parse().ok()?;
    (host.as_str() == id.split('_').next()?
        && digest.len() == 24
        && digest.bytes().all(|b| b.is_ascii_hexdigit()))
    .then_some(host)
}

/// The secret of the webhook of repository connection `connection_id`:
/// hex(HMAC-SHA256(`key`, "edge-sync repository webhook\n" + id)). Each repository's hook
/// has its own secret, and webhook-handler derives it from the one key
/// (`REPO_WEBHOOK_SIGNING_KEY`) without a lookup; a secret leaked from one repository's
/// settings verifies no other repository's deliveries.
pub fn repo_webhook_secret(key: &Secret, connection_id: &str) -> Secret {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).expect("HMAC takes any key");
    mac.update(b"edge-sync repository webhook\n");
    mac.update(connection_id.as_bytes());
    Secret::new(hex::encode(mac.finalize().into_bytes()))
}

/// The path of a repository connection's webhook at webhook-handler.
pub fn repo_webhook_path(connection_id: &str) -> String {
    format!("/webhooks/code-repo/{connection_id}")
}

/// What is shown of a repository connection (never its token or hook secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConnectionView {
    /// [`repo_connection_id`].
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// `github`, `gitlab` or `bitbucket`.
    pub provider: RepoHost,
    /// `owner/name` (GitLab: the project path).
    pub repository: String,
    /// The host's API base.
    pub api_base: String,
    /// `active`, or `unauthorized` once the host refused the token (connect again).
    pub status: String,
    /// The webhook's id at the host, when it is registered.
    pub webhook_id: Option<String>,
    /// Why the webhook could not be registered (polling covers the repository meanwhile).
    pub webhook_error: Option<String>,
    /// The last poll (ISO 8601), and what it found or why it failed.
    pub last_poll_at: Option<String>,
    /// The last poll's error.
    pub last_error: Option<String>,
    /// Requests left in the host's rate-limit window, as last stated.
    pub rate_remaining: Option<u64>,
    /// When the connection was made (ISO 8601).
    pub created_at: String,
}

/// `PUT /internal/repo` (coordinator Worker → the repository connection's instance): the
/// checked request, its id, API base and the webhook's URL. Travels only inside Cloudflare
/// and is never stored as is (the instance seals the token). No `Debug`: it holds a token.
#[derive(Serialize, Deserialize)]
#[allow(missing_debug_implementations)]
pub struct StoreRepoConnection {
    /// [`repo_connection_id`].
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// The host.
    pub provider: RepoHost,
    /// `owner/name`.
    pub repository: String,
    /// API base.
    pub api_base: String,
    /// The token.
    pub access_token: String,
    /// Where the webhook points (`WEBHOOK_BASE_URL` + [`repo_webhook_path`]); `None`: no
    /// webhook, polling only.
    pub webhook_url: Option<String>,
}

/// A repository connection in the `system` instance's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoIndexEntry {
    /// [`repo_connection_id`].
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// The host.
    pub provider: RepoHost,
    /// `owner/name`.
    pub repository: String,
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
    fn ids_and_secrets_are_per_repository() {
        let a = repo_connection_id(
            RepoHost::GitHub,
            "https://api.github.com/",
            "Acme/Shop",
            "u1",
        );
        assert_eq!(
            a,
            repo_connection_id(
                RepoHost::GitHub,
                "https://api.github.com",
                "acme/shop",
                "u1"
            )
        );
        assert!(a.starts_with("github_") && a.len() == "github_".len() + 24);
        assert_eq!(repo_connection_host(&a), Some(RepoHost::GitHub));
        assert_ne!(
            a,
            repo_connection_id(
                RepoHost::GitHub,
                "https://api.github.com",
                "acme/shop",
                "u2"
            )
        );
        assert_eq!(repo_connection_host("github_xyz"), None);
        assert_eq!(repo_connection_host("keap_0123456789abcdef01234567"), None);
        assert_eq!(
            repo_connection_host("gitlab_0123456789abcdef01234567"),
            Some(RepoHost::GitLab)
        );
        let key = Secret::new("k".to_owned());
        // A known vector: HMAC-SHA256("k", "edge-sync repository webhook\ngithub_1").
        // (computed independently with Python's hmac module).
        assert_eq!(
            repo_webhook_secret(&key, "github_1").expose(),
            "e88570e14b82612ad717e707fab92cd367319457a3b24fef94b146d874335ec5"
        );
        assert_ne!(
            repo_webhook_secret(&key, "github_1").expose(),
            repo_webhook_secret(&key, "github_2").expose()
        );
        assert_eq!("GitLab".parse::<RepoHost>(), Ok(RepoHost::GitLab));
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
