//! The webhook core: authenticate a delivery on its raw body ([`verify`]), classify it into
//! an event with a dedup key and a record change ([`event`]), and pace the route
//! ([`WindowCounter`]). Sans-IO like the rest of the crate: the Worker reads the headers and
//! the body, passes them in with the time, and carries out what comes back:
//!
//! 1. verify with the provider's scheme (401 on [`VerifyError`]);
//! 2. classify (400 on [`ParseError`]);
//! 3. insert the event under its `dedup_key` when it has an `event_type` (a conflict means
//!    a redelivery: answer 200 and stop), and apply its `record_change`.
//!
//! Provider facts: the providers' public webhook docs, linked from the module docs of
//! [`verify`].

pub mod event;
pub mod rate_limit;
pub mod shop;
pub mod verify;

use crate::Timestamp;

pub use event::{
    accepted_after_uninstall, classify_git, classify_keap, classify_shopify, classify_standard,
    classify_supabase, dedup_key, event_accepted_after_uninstall, shopify_content_key, GitHeaders,
    IncomingEvent, ParseError, PrivacySubject, RecordChange, Source, APP_UNINSTALLED_EVENT,
};
pub use rate_limit::{admit, rate_limit_key, Admission, WindowCounter};
pub use shop::{delivery_belongs_to, delivery_shop, ShopError};
pub use verify::{
    is_valid_standard_webhook_secret, sign_bitbucket, sign_github, sign_keap, sign_shopify,
    sign_standard_webhook, verify_bitbucket, verify_github, verify_gitlab, verify_keap_signature,
    verify_shared_secret, verify_shopify, verify_standard_webhook, StandardWebhookHeaders,
    VerifyError, STANDARD_WEBHOOKS_TOLERANCE_SECS,
};

/// How long dedup keys are kept: a redelivery later than this is stored again. Longer
/// than any provider's retry schedule (Shopify: 4 hours; Keap: about 36 minutes).
pub const DEDUP_RETENTION_DAYS: i64 = 7;

/// Events received before this instant may be purged from the dedup store.
pub fn dedup_cutoff(now: Timestamp) -> Timestamp {
    now.plus_millis(-DEDUP_RETENTION_DAYS * 24 * 60 * 60 * 1000)
}

#[cfg(test)]
mod tests;
