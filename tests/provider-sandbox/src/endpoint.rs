//! Endpoint keys: the names under which the sandbox counts requests, logs them and injects
//! faults. A new provider API adds a variant here and wraps its route in
//! [`crate::middleware::tagged`].

use std::fmt;

/// One provider endpoint the sandbox imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// `GET /app/oauth/authorize` (accounts.infusionsoft.com).
    KeapOAuthAuthorize,
    /// `POST /token` (api.infusionsoft.com).
    KeapOAuthToken,
    /// `GET /crm/rest/v2/contacts` (api.keap.com / api.infusionsoft.com).
    KeapContactsList,
    /// `GET /crm/rest/v2/contacts/{contact_id}`: hooks carry ids only, so a Worker fetches
    /// the records (<https://developer.infusionsoft.com/rest-hook-documentation>).
    KeapContactsGet,
    /// `POST /crm/rest/v2/contacts`: create a contact.
    KeapContactsCreate,
    /// `PATCH /crm/rest/v2/contacts/{contact_id}`: update some of its fields.
    KeapContactsUpdate,
    /// `GET /crm/rest/v1/products`.
    KeapProductsList,
    /// `POST /crm/rest/v1/products`.
    KeapProductsCreate,
    /// `POST /crm/rest/v1/orders`: create an order for a contact.
    KeapOrdersCreate,
    /// `GET /crm/rest/v2/opportunities`.
    KeapOpportunitiesList,
    /// `GET /crm/rest/v2/opportunities/{id}`.
    KeapOpportunitiesGet,
    /// `GET /crm/rest/v2/orders`.
    KeapOrdersList,
    /// `GET /crm/rest/v2/orders/{id}`.
    KeapOrdersGet,
    /// `GET /crm/rest/v2/tasks`.
    KeapTasksList,
    /// `GET /crm/rest/v2/tasks/{id}`.
    KeapTasksGet,
    /// `POST /crm/rest/v1/hooks`: subscribe (REST Hooks, v1).
    KeapHooksCreate,
    /// `GET /crm/rest/v1/hooks`.
    KeapHooksList,
    /// `GET /crm/rest/v1/hooks/{key}`.
    KeapHooksGet,
    /// `PUT /crm/rest/v1/hooks/{key}`.
    KeapHooksUpdate,
    /// `DELETE /crm/rest/v1/hooks/{key}`.
    KeapHooksDelete,
    /// `POST /crm/rest/v1/hooks/{key}/verify`: the handshake, now.
    KeapHooksVerify,
    /// `POST /crm/rest/v1/hooks/{key}/delayedVerify`: the caller sends the secret back.
    KeapHooksDelayedVerify,
    /// `GET /crm/rest/v1/hooks/event_keys`.
    KeapHooksEventKeys,
    /// `GET /admin/oauth/authorize` on the shop's host (`/shopify/{shop}/...` here).
    ShopifyOAuthAuthorize,
    /// `POST /admin/oauth/access_token` on the shop's host (`/shopify/{shop}/...` here).
    ShopifyOAuthAccessToken,
    /// `POST /admin/api/{version}/graphql.json` on the shop's host: the GraphQL Admin API.
    /// Requests are also counted per top-level field (`shopify.graphql.products`, ...).
    ShopifyGraphql,
    /// A bulk query operation carried out (not an HTTP request; faults queued for it fail
    /// the operation: `FAILED`, `INTERNAL_SERVER_ERROR`).
    ShopifyBulkRun,
    /// `GET` of a bulk operation's JSONL result (Shopify serves it from signed storage).
    ShopifyBulkResult,
    /// `GET /repos/{o}/{r}/pulls` (GitHub REST, [`crate::github`]).
    GitHubPullsList,
    /// `GET /repos/{o}/{r}/issues`.
    GitHubIssuesList,
    /// `GET /repos/{o}/{r}/actions/runs`.
    GitHubRunsList,
    /// `GET /repos/{o}/{r}/actions/runs/{id}/jobs`.
    GitHubRunJobs,
    /// `GET /repos/{o}/{r}/actions/jobs/{id}/logs`.
    GitHubJobLogs,
    /// `POST /repos/{o}/{r}/hooks`.
    GitHubHooksCreate,
    /// `GET /repos/{o}/{r}/hooks`.
    GitHubHooksList,
    /// `DELETE /repos/{o}/{r}/hooks/{id}`.
    GitHubHooksDelete,
    /// `GET /repos/{o}/{r}/pulls/{n}`.
    GitHubPullGet,
    /// `GET /repos/{o}/{r}/issues/{n}`.
    GitHubIssueGet,
    /// `GET /repos/{o}/{r}/issues/comments`.
    GitHubCommentsList,
    /// `GET /repos/{o}/{r}/dependabot/alerts`.
    GitHubAlertsList,
    /// `GET /repos/{o}/{r}/commits/{ref}/check-runs`.
    GitHubCheckRuns,
    /// `GET /repos/{o}/{r}/releases/latest`.
    GitHubLatestRelease,
    /// GitLab reads: merge requests, issues, pipelines, jobs, traces, releases
    /// ([`crate::gitlab`]).
    GitLabRead,
    /// GitLab project hooks: list, create, delete.
    GitLabHooks,
    /// Bitbucket reads: pull requests, issues, pipelines, steps, logs, statuses, tags
    /// ([`crate::bitbucket`]).
    BitbucketRead,
    /// Bitbucket repository hooks: create, delete.
    BitbucketHooks,
    /// `POST /openai/v1/chat/completions`: an OpenAI-compatible model ([`crate::openai`]).
    OpenAiChatCompletions,
    /// `GET /openai/v1/models`.
    OpenAiModels,
}

impl Endpoint {
    /// Every endpoint, in the order counters list them.
    pub const ALL: [Endpoint; 48] = [
        Endpoint::KeapOAuthAuthorize,
        Endpoint::KeapOAuthToken,
        Endpoint::KeapContactsList,
        Endpoint::KeapContactsGet,
        Endpoint::KeapContactsCreate,
        Endpoint::KeapContactsUpdate,
        Endpoint::KeapProductsList,
        Endpoint::KeapProductsCreate,
        Endpoint::KeapOrdersCreate,
        Endpoint::KeapOpportunitiesList,
        Endpoint::KeapOpportunitiesGet,
        Endpoint::KeapOrdersList,
        Endpoint::KeapOrdersGet,
        Endpoint::KeapTasksList,
        Endpoint::KeapTasksGet,
        Endpoint::KeapHooksCreate,
        Endpoint::KeapHooksList,
        Endpoint::KeapHooksGet,
        Endpoint::KeapHooksUpdate,
        Endpoint::KeapHooksDelete,
        Endpoint::KeapHooksVerify,
        Endpoint::KeapHooksDelayedVerify,
        Endpoint::KeapHooksEventKeys,
        Endpoint::ShopifyOAuthAuthorize,
        Endpoint::ShopifyOAuthAccessToken,
        Endpoint::ShopifyGraphql,
        Endpoint::ShopifyBulkRun,
        Endpoint::ShopifyBulkResult,
        Endpoint::GitHubPullsList,
        Endpoint::GitHubIssuesList,
        Endpoint::GitHubRunsList,
        Endpoint::GitHubRunJobs,
        Endpoint::GitHubJobLogs,
        Endpoint::GitHubHooksCreate,
        Endpoint::GitHubHooksList,
        Endpoint::GitHubHooksDelete,
        Endpoint::GitHubPullGet,
        Endpoint::GitHubIssueGet,
        Endpoint::GitHubCommentsList,
        Endpoint::GitHubAlertsList,
        Endpoint::GitHubCheckRuns,
        Endpoint::GitHubLatestRelease,
        Endpoint::GitLabRead,
        Endpoint::GitLabHooks,
        Endpoint::BitbucketRead,
        Endpoint::BitbucketHooks,
        Endpoint::OpenAiChatCompletions,
        Endpoint::OpenAiModels,
    ];

    /// The stable key used by the control API (`keap.contacts.list`,
    /// `shopify.oauth.access_token`, ...).
    pub fn key(self) -> &'static str {
        match self {
            Endpoint::KeapOAuthAuthorize => "keap.oauth.authorize",
            Endpoint::KeapOAuthToken => "keap.oauth.token",
            Endpoint::KeapContactsList => "keap.contacts.list",
            Endpoint::KeapContactsGet => "keap.contacts.get",
            Endpoint::KeapContactsCreate => "keap.contacts.create",
            Endpoint::KeapContactsUpdate => "keap.contacts.update",
            Endpoint::KeapProductsList => "keap.products.list",
            Endpoint::KeapProductsCreate => "keap.products.create",
            Endpoint::KeapOrdersCreate => "keap.orders.create",
            Endpoint::KeapOpportunitiesList => "keap.opportunities.list",
            Endpoint::KeapOpportunitiesGet => "keap.opportunities.get",
            Endpoint::KeapOrdersList => "keap.orders.list",
            Endpoint::KeapOrdersGet => "keap.orders.get",
            Endpoint::KeapTasksList => "keap.tasks.list",
            Endpoint::KeapTasksGet => "keap.tasks.get",
            Endpoint::KeapHooksCreate => "keap.hooks.create",
            Endpoint::KeapHooksList => "keap.hooks.list",
            Endpoint::KeapHooksGet => "keap.hooks.get",
            Endpoint::KeapHooksUpdate => "keap.hooks.update",
            Endpoint::KeapHooksDelete => "keap.hooks.delete",
            Endpoint::KeapHooksVerify => "keap.hooks.verify",
            Endpoint::KeapHooksDelayedVerify => "keap.hooks.delayed_verify",
            Endpoint::KeapHooksEventKeys => "keap.hooks.event_keys",
            Endpoint::ShopifyOAuthAuthorize => "shopify.oauth.authorize",
            Endpoint::ShopifyOAuthAccessToken => "shopify.oauth.access_token",
            Endpoint::ShopifyGraphql => "shopify.graphql",
            Endpoint::ShopifyBulkRun => "shopify.bulk.run",
            Endpoint::ShopifyBulkResult => "shopify.bulk.result",
            Endpoint::GitHubPullsList => "github.pulls.list",
            Endpoint::GitHubIssuesList => "github.issues.list",
            Endpoint::GitHubRunsList => "github.actions.runs",
            Endpoint::GitHubRunJobs => "github.actions.jobs",
            Endpoint::GitHubJobLogs => "github.actions.logs",
            Endpoint::GitHubHooksCreate => "github.hooks.create",
            Endpoint::GitHubHooksList => "github.hooks.list",
            Endpoint::GitHubHooksDelete => "github.hooks.delete",
            Endpoint::GitHubPullGet => "github.pulls.get",
            Endpoint::GitHubIssueGet => "github.issues.get",
            Endpoint::GitHubCommentsList => "github.comments.list",
            Endpoint::GitHubAlertsList => "github.dependabot.alerts",
            Endpoint::GitHubCheckRuns => "github.checks.runs",
            Endpoint::GitHubLatestRelease => "github.releases.latest",
            Endpoint::GitLabRead => "gitlab.read",
            Endpoint::GitLabHooks => "gitlab.hooks",
            Endpoint::BitbucketRead => "bitbucket.read",
            Endpoint::BitbucketHooks => "bitbucket.hooks",
            Endpoint::OpenAiChatCompletions => "openai.chat.completions",
            Endpoint::OpenAiModels => "openai.models",
        }
    }

    /// Looks an endpoint up by its key.
    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.key() == key)
    }

    /// Whether this is a Keap REST endpoint: those carry the `x-keap-*` quota headers and are
    /// subject to the per-minute throttle (the OAuth hosts are not metered that way).
    pub fn is_keap_rest(self) -> bool {
        matches!(
            self,
            Endpoint::KeapContactsList
                | Endpoint::KeapContactsGet
                | Endpoint::KeapContactsCreate
                | Endpoint::KeapContactsUpdate
                | Endpoint::KeapProductsList
                | Endpoint::KeapProductsCreate
                | Endpoint::KeapOrdersCreate
                | Endpoint::KeapOpportunitiesList
                | Endpoint::KeapOpportunitiesGet
                | Endpoint::KeapOrdersList
                | Endpoint::KeapOrdersGet
                | Endpoint::KeapTasksList
                | Endpoint::KeapTasksGet
                | Endpoint::KeapHooksCreate
                | Endpoint::KeapHooksList
                | Endpoint::KeapHooksGet
                | Endpoint::KeapHooksUpdate
                | Endpoint::KeapHooksDelete
                | Endpoint::KeapHooksVerify
                | Endpoint::KeapHooksDelayedVerify
                | Endpoint::KeapHooksEventKeys
        )
    }

    /// Whether this is one of Keap's OAuth endpoints (their errors use the OAuth body shape).
    pub fn is_keap_oauth(self) -> bool {
        matches!(
            self,
            Endpoint::KeapOAuthAuthorize | Endpoint::KeapOAuthToken
        )
    }

    /// Whether this is a browser-facing authorize page (its errors are HTML pages).
    pub fn is_authorize_page(self) -> bool {
        matches!(
            self,
            Endpoint::KeapOAuthAuthorize | Endpoint::ShopifyOAuthAuthorize
        )
    }

    /// Whether this is one of Shopify's endpoints (their errors use Shopify's body shapes).
    pub fn is_shopify(self) -> bool {
        matches!(
            self,
            Endpoint::ShopifyOAuthAuthorize
                | Endpoint::ShopifyOAuthAccessToken
                | Endpoint::ShopifyGraphql
        )
    }
}

impl Endpoint {
    /// Whether this is GitHub's REST API (its errors are `{message, documentation_url}`).
    pub fn is_github(self) -> bool {
        self.key().starts_with("github.")
    }

    /// Whether this is the OpenAI-compatible API (its errors use OpenAI's error object).
    pub fn is_openai(self) -> bool {
        matches!(
            self,
            Endpoint::OpenAiChatCompletions | Endpoint::OpenAiModels
        )
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::from_key(e.key()), Some(e));
        }
        assert_eq!(Endpoint::from_key("keap.nope"), None);
        assert_eq!(
            Endpoint::from_key("shopify.oauth.access_token"),
            Some(Endpoint::ShopifyOAuthAccessToken)
        );
    }
}
