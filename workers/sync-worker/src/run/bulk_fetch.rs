//! The bulk-operation adapter of a full Shopify run: start and poll requests built and
//! parsed by the shared crate, and the JSONL result streamed line by line into pages
//! (<https://shopify.dev/docs/api/usage/bulk-operations/queries>). The open stream is kept
//! between the pages of one invocation, so a result is read once; a later invocation opens
//! it again and skips to the checkpoint's line.

use std::cell::RefCell;
use std::time::Duration;

use edge_sync_shared::sync::shopify_bulk::{
    parse_poll, parse_run, try_poll_request, try_run_request, BulkPhase, BulkStart, BulkStatus,
    JsonlPages,
};
use edge_sync_shared::sync::{FetchOutcome, Page, PageError, RunCheckpoint};
use edge_sync_shared::Secret;
use edge_sync_worker_kit::outbound;
use futures::StreamExt;
use worker::{ByteStream, Fetch as WorkerFetch, Url};

use super::page_fetch::Fetch;

/// Records per page read from a result (one upsert each).
const BULK_PAGE_RECORDS: usize = 1_000;

/// An open result being read.
pub(super) struct OpenResult {
    url: String,
    /// The line the last page handed out resumes at.
    resume_at: u64,
    pages: JsonlPages,
    stream: ByteStream,
    buffer: Vec<u8>,
}

impl Fetch<'_> {
    /// `bulkOperationRunQuery` for the run's resource.
    pub async fn start_bulk(
        &self,
        at: &RunCheckpoint,
        access: Option<&Secret>,
    ) -> Result<BulkStart, PageError> {
        let access = access.ok_or(PageError::Unauthorized)?;
        let request = try_run_request(&self.config.source, self.shop, at.resource, access)
            .map_err(|e| PageError::Malformed(e.to_string()))?;
        let answer = self.send(&request).await?;
        parse_run(answer.status, &answer.headers, &answer.body)
    }

    /// `bulkOperation(id:)` of the run's operation.
    pub async fn poll_bulk(
        &self,
        at: &RunCheckpoint,
        access: Option<&Secret>,
    ) -> Result<BulkStatus, PageError> {
        let access = access.ok_or(PageError::Unauthorized)?;
        let Some(BulkPhase::Running { id }) = &at.bulk else {
            return Err(PageError::Malformed("no bulk operation to poll".into()));
        };
        let request = try_poll_request(&self.config.source, self.shop, access, id)
            .map_err(|e| PageError::Malformed(e.to_string()))?;
        let answer = self.send(&request).await?;
        parse_poll(answer.status, &answer.headers, &answer.body)
    }

    async fn send(
        &self,
        request: &edge_sync_shared::oauth::HttpRequestSpec,
    ) -> Result<outbound::Answer, PageError> {
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        outbound::send(request, timeout)
            .await
            .map_err(|_| PageError::Server { status: 0 })
    }

    /// The next page of the result, from the checkpoint's line.
    pub async fn read_bulk(
        &self,
        at: &RunCheckpoint,
        open: &RefCell<Option<OpenResult>>,
    ) -> FetchOutcome {
        let Some(BulkPhase::Reading { url, .. }) = &at.bulk else {
            return FetchOutcome::NotBuilt("no bulk result to read".into());
        };
        let from: u64 = at
            .page_token
            .as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let cached = open.borrow_mut().take();
        let mut result = match cached {
            Some(result) if result.url == *url && result.resume_at == from => result,
            _ => match open_result(url, at, from).await {
                Ok(result) => result,
                Err(e) => return FetchOutcome::Page(Err(e)),
            },
        };
        let page = next_page(&mut result).await;
        if let Ok(Page {
            next_page_token: Some(token),
            ..
        }) = &page
        {
            result.resume_at = token.parse().unwrap_or(0);
            *open.borrow_mut() = Some(result);
        }
        FetchOutcome::Page(page)
    }
}

async fn open_result(url: &str, at: &RunCheckpoint, from: u64) -> Result<OpenResult, PageError> {
    let parsed = Url::parse(url).map_err(|e| PageError::Malformed(format!("result url: {e}")))?;
    // A signed URL: fetched without the access token.
    let mut response = WorkerFetch::Url(parsed)
        .send()
        .await
        .map_err(|_| PageError::Server { status: 0 })?;
    let status = response.status_code();
    if status >= 500 {
        return Err(PageError::Server { status });
    }
    if status >= 400 {
        return Err(PageError::Rejected {
            status,
            message: "the bulk result could not be read".into(),
        });
    }
    let stream = response
        .stream()
        .map_err(|e| PageError::Malformed(format!("result body: {e}")))?;
    Ok(OpenResult {
        url: url.to_owned(),
        resume_at: from,
        pages: JsonlPages::new(at.resource, from, BULK_PAGE_RECORDS),
        stream,
        buffer: Vec::new(),
    })
}

/// Reads lines until a page is complete or the result ends.
async fn next_page(result: &mut OpenResult) -> Result<Page, PageError> {
    loop {
        while let Some(end) = result.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = result.buffer.drain(..=end).collect();
            if let Some(page) = result.pages.push_line(&String::from_utf8_lossy(&line))? {
                return Ok(page);
            }
        }
        match result.stream.next().await {
            Some(Ok(chunk)) => result.buffer.extend_from_slice(&chunk),
            Some(Err(_)) => return Err(PageError::Server { status: 0 }),
            None => {
                if !result.buffer.is_empty() {
                    let line = std::mem::take(&mut result.buffer);
                    if let Some(page) = result.pages.push_line(&String::from_utf8_lossy(&line))? {
                        // The last node is still open: it ends the next page.
                        return Ok(page);
                    }
                }
                return Ok(result.pages.finish());
            }
        }
    }
}
