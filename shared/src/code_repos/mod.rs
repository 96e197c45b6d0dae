//! Code repositories (issue 15), the pure half: pull requests and issues as the hosts
//! describe them, in one shape for GitHub, GitLab and Bitbucket; work gone stale
//! ([`stale`]); and the written artifacts teams use — release notes, changelog entries, RFC
//! outlines and ADRs ([`artifacts`]).

pub mod api;
pub mod artifacts;
pub mod bitbucket;
pub mod connection;
pub mod github;
pub mod gitlab;
pub mod poll;
pub mod stale;
pub mod watch;

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// A pull request (GitHub, Bitbucket) or merge request (GitLab).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// Its number in the repository (GitHub `number`, GitLab `iid`, Bitbucket `id`).
    pub number: u64,
    /// Title.
    pub title: String,
    /// Author's login.
    pub author: String,
    /// Web URL.
    pub url: String,
    /// Labels (GitHub, GitLab); empty on Bitbucket.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Description.
    #[serde(default)]
    pub body: String,
    /// Last activity.
    pub updated_at: Timestamp,
    /// When it was merged, if it was.
    #[serde(default)]
    pub merged_at: Option<Timestamp>,
}

/// An issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    /// Its number in the repository.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Author's login.
    pub author: String,
    /// Web URL.
    pub url: String,
    /// Labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Description.
    #[serde(default)]
    pub body: String,
    /// Last activity.
    pub updated_at: Timestamp,
}
