//! The benchmarks' baseline: reads the request body and answers 200, nothing else.
#![cfg(target_family = "wasm")]

use worker::{event, Context, Env, Request, Response};

#[event(fetch)]
async fn fetch(mut req: Request, _env: Env, _ctx: Context) -> worker::Result<Response> {
    let body = req.bytes().await?;
    Response::ok(format!("{{\"status\":\"ok\",\"bytes\":{}}}", body.len()))
}
