//! Reading a delivery's raw body with a size limit: a declared `Content-Length` over the
//! limit is refused before reading anything, one within it is read whole; a body without a
//! declared length (chunked) is streamed and stops at the limit.

use edge_sync_worker_kit::HttpError;
use futures::StreamExt;
use worker::Request;

/// The raw body, or 413 when it exceeds `limit` bytes.
pub async fn read_limited(req: &mut Request, limit: usize) -> Result<Vec<u8>, HttpError> {
    let too_large = || {
        HttpError::new(413, format!("body larger than {limit} bytes"))
            .with_reason("body over the size limit")
    };
    if let Some(length) = req.headers().get("Content-Length").ok().flatten() {
        if length.trim().parse::<usize>().map_or(true, |n| n > limit) {
            return Err(too_large());
        }
        // A declared length within the limit: HTTP framing guarantees the body is no
        // longer, so it is read in one go (streaming it chunk by chunk costs far more).
        return req
            .bytes()
            .await
            .map_err(|_| HttpError::bad_request("unreadable body"));
    }
    let mut stream = req
        .stream()
        .map_err(|_| HttpError::bad_request("unreadable body"))?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| HttpError::bad_request("unreadable body"))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
