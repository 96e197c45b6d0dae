//! Sends a request built by `edge-sync-shared` (an `HttpRequestSpec`) with `fetch`, bounded
//! in time. The fetch adapter stays a few lines; parsing happens back in the shared crate.

use std::time::Duration;

use edge_sync_shared::oauth::HttpRequestSpec;
use worker::{Fetch, Headers, Method, Request, RequestInit};

use crate::timeout::with_timeout;

/// Status and body of a provider answer.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body text.
    pub body: String,
    /// `Retry-After` header, when present.
    pub retry_after: Option<String>,
    /// Every response header, names lowercase.
    pub headers: Vec<(String, String)>,
}

/// Why a request got no answer (network failure or timeout); never includes the request.
#[derive(Debug, Clone)]
pub struct NoAnswer(pub String);

/// Sends `spec`, waiting at most `limit` for the whole answer.
pub async fn send(spec: &HttpRequestSpec, limit: Duration) -> Result<Answer, NoAnswer> {
    let headers = Headers::new();
    for (name, value) in &spec.headers {
        headers
            .set(name, value)
            .map_err(|e| NoAnswer(format!("header {name}: {e}")))?;
    }
    let method = Method::from(spec.method.to_owned());
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers);
    if !spec.body.is_empty() {
        init.with_body(Some(spec.body.clone().into()));
    }
    let request =
        Request::new_with_init(&spec.url, &init).map_err(|e| NoAnswer(format!("request: {e}")))?;
    let exchange = async {
        let mut response = Fetch::Request(request).send().await?;
        let status = response.status_code();
        let retry_after = response.headers().get("Retry-After").ok().flatten();
        let headers: Vec<(String, String)> = response
            .headers()
            .entries()
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .collect();
        let body = crate::http::body_text(&mut response).await?;
        Ok::<_, worker::Error>(Answer {
            status,
            body,
            retry_after,
            headers,
        })
    };
    match with_timeout(limit, exchange).await {
        Some(Ok(answer)) => Ok(answer),
        Some(Err(e)) => Err(NoAnswer(format!("fetch failed: {e}"))),
        None => Err(NoAnswer(format!("no answer within {} s", limit.as_secs()))),
    }
}
