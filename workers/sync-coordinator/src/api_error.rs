//! The one place the connection API's request errors become HTTP statuses: a request that
//! names what does not exist (a resource the provider lacks, a malformed connection id) is
//! 404, a body that does not decode is 400; the message says which field and why.

use edge_sync_shared::coordinator_api::RequestError;
use edge_sync_worker_kit::HttpError;
use worker::Response;

/// The status of `error`.
pub fn status(error: &RequestError) -> u16 {
    if error.is_not_found() {
        404
    } else {
        400
    }
}

/// As a route's error answer.
pub fn http_error(error: RequestError) -> HttpError {
    HttpError::new(status(&error), error.to_string())
}

/// As a Durable Object's answer (`{"error": message}`).
pub fn response(error: &RequestError) -> worker::Result<Response> {
    crate::durable_object::json(
        status(error),
        &serde_json::json!({ "error": error.to_string() }),
    )
}
