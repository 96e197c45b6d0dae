//! JSON answers and the one place errors become HTTP statuses.

use serde::Serialize;
use worker::Response;

/// An error answer: a status, a message safe for the client, and a reason for the log.
#[derive(Debug, Clone)]
pub struct HttpError {
    /// HTTP status to answer with.
    pub status: u16,
    /// Message shown to the client (never internals or secrets).
    pub message: String,
    /// Detail written to the log line only (never a secret).
    pub reason: String,
    /// Extra headers (e.g. `Retry-After`, `Allow`).
    pub headers: Vec<(&'static str, String)>,
}

/// What route handlers return.
pub type HttpResult = Result<Response, HttpError>;

impl HttpError {
    /// An error whose client message doubles as the log reason.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            status,
            reason: message.clone(),
            message,
            headers: Vec::new(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// 401 Unauthorized, with the detailed reason kept for the log.
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Self::new(401, "unauthorized").with_reason(reason)
    }

    /// 404 Not Found.
    pub fn not_found() -> Self {
        Self::new(404, "not found")
    }

    /// 405 Method Not Allowed, listing the allowed methods.
    pub fn method_not_allowed(allowed: &str) -> Self {
        Self::new(405, "method not allowed").with_header("Allow", allowed)
    }

    /// 500 with a generic message; `reason` goes to the log only.
    pub fn internal(reason: impl Into<String>) -> Self {
        Self::new(500, "internal error").with_reason(reason)
    }

    /// Replaces the log reason.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The JSON response `{"error": message, "request_id": ...}`.
    pub fn to_response(&self, request_id: &str) -> Response {
        let body = serde_json::json!({ "error": self.message, "request_id": request_id });
        let mut response = json_response(self.status, &body).unwrap_or_else(|_| {
            Response::empty()
                .expect("empty response")
                .with_status(self.status)
        });
        for (name, value) in &self.headers {
            let _ = response.headers_mut().set(name, value);
        }
        response
    }
}

impl From<worker::Error> for HttpError {
    fn from(error: worker::Error) -> Self {
        Self::internal(error.to_string())
    }
}

/// A JSON response with the given status.
pub fn json_response(status: u16, body: &impl Serialize) -> worker::Result<Response> {
    Ok(Response::from_json(body)?.with_status(status))
}

/// Reads a fetched response's whole body as text, in one call to the runtime
/// (`Response.arrayBuffer()`). `worker::Response::text` reads a streamed body chunk by
/// chunk, with a promise, a reader lock and a copy for every chunk of a 1 MB provider page.
pub async fn body_text(response: &mut Response) -> worker::Result<String> {
    let raw = worker::web_sys::Response::from(&*response);
    let buffer = worker::wasm_bindgen_futures::JsFuture::from(raw.array_buffer()?).await?;
    let bytes = worker::js_sys::Uint8Array::new(&buffer).to_vec();
    String::from_utf8(bytes).map_err(|e| worker::Error::RustError(format!("body: {e}")))
}
