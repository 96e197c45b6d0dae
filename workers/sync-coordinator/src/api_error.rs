//! The one place refusals become HTTP answers: the connection API's request errors for the
//! Worker's routes, and every Durable Object route's [`CoordinatorError`] (status, JSON body,
//! `Retry-After`). A request that names what does not exist (a resource the provider lacks,
//! a malformed connection id) is 404, a body that does not decode is 400; the message says
//! which field and why.

use edge_sync_shared::coordinator_api::{CoordinatorError, RequestError};
use edge_sync_worker_kit::HttpError;
use serde::Serialize;
use worker::Response;

/// The status of `error`.
pub fn status(error: &RequestError) -> u16 {
    CoordinatorError::Request(error.clone()).status()
}

/// As a route's error answer.
pub fn http_error(error: RequestError) -> HttpError {
    HttpError::new(status(&error), error.to_string())
}

/// Why a Durable Object route did not answer: it refused (a typed error the caller reads),
/// or its storage failed (the runtime's 500, as before).
#[derive(Debug)]
pub enum Failure {
    /// The route refused the request.
    Refused(CoordinatorError),
    /// SQLite or the runtime failed.
    Storage(worker::Error),
}

impl From<CoordinatorError> for Failure {
    fn from(error: CoordinatorError) -> Self {
        Failure::Refused(error)
    }
}

impl From<RequestError> for Failure {
    fn from(error: RequestError) -> Self {
        Failure::Refused(CoordinatorError::Request(error))
    }
}

impl From<worker::Error> for Failure {
    fn from(error: worker::Error) -> Self {
        Failure::Storage(error)
    }
}

/// What a Durable Object route handler returns.
pub type Handled<T> = Result<T, Failure>;

/// A route's typed answer, written as JSON with its success status.
pub fn ok<T: Serialize>(status: u16, body: &T) -> Handled<Response> {
    Ok(Response::from_json(body)?.with_status(status))
}

/// Writes what a route came to: its answer, or its refusal (status, JSON body and, when it
/// says when, `Retry-After`); a storage failure stays the runtime's error, as before.
pub fn respond(result: Handled<Response>) -> worker::Result<Response> {
    match result {
        Ok(response) => Ok(response),
        Err(Failure::Refused(error)) => {
            let mut response = Response::from_json(&error.body())?.with_status(error.status());
            if let Some(secs) = error.retry_after_secs() {
                response
                    .headers_mut()
                    .set("Retry-After", &secs.to_string())?;
            }
            Ok(response)
        }
        Err(Failure::Storage(error)) => Err(error),
    }
}
