//! Per-endpoint behaviour shared by every provider route: injected faults, the Keap throttle
//! and its headers, counters and the request log. A route opts in with [`tagged`].

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use serde_json::json;

use crate::control::{Fault, Key, Observed};
use crate::endpoint::Endpoint;
use crate::keap;
use crate::keap::quota::QuotaSnapshot;
use crate::shopify;
use crate::state::{lock, SharedState};

/// Query parameters whose values never reach the log.
const SECRET_PARAMS: &[&str] = &[
    "access_token",
    "refresh_token",
    "client_secret",
    "code",
    "api_key",
    "token",
];

/// Largest GraphQL request body the sandbox reads (Shopify's queries are a few KB).
const MAX_GRAPHQL_BODY: usize = 1024 * 1024;

#[derive(Clone)]
struct EndpointContext {
    state: SharedState,
    endpoint: Endpoint,
}

/// Wraps a route so requests to it are counted, logged, faulted and throttled as `endpoint`.
pub fn tagged(
    state: &SharedState,
    endpoint: Endpoint,
    route: MethodRouter<SharedState>,
) -> MethodRouter<SharedState> {
    let context = EndpointContext {
        state: state.clone(),
        endpoint,
    };
    route.layer(from_fn_with_state(context, endpoint_layer))
}

/// Path and query with secret values replaced by `REDACTED`.
pub fn redacted_path(uri: &Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else {
        return path.to_owned();
    };
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if SECRET_PARAMS.contains(&k.as_ref()) {
            out.append_pair(&k, "REDACTED");
        } else {
            out.append_pair(&k, &v);
        }
    }
    format!("{path}?{}", out.finish())
}

async fn endpoint_layer(
    State(ctx): State<EndpointContext>,
    request: Request,
    next: Next,
) -> Response {
    let EndpointContext { state, endpoint } = ctx;
    let started = Instant::now();
    let at_ms = state.clock.now_ms();
    let method = request.method().to_string();
    let path_and_query = redacted_path(request.uri());

    // GraphQL requests are also keyed by their top-level fields, which live in the body.
    let mut graphql_fields = Vec::new();
    let request = if endpoint == Endpoint::ShopifyGraphql {
        let (parts, body) = request.into_parts();
        match axum::body::to_bytes(body, MAX_GRAPHQL_BODY).await {
            Ok(bytes) => {
                graphql_fields = shopify::graphql::root_fields(&bytes);
                Request::from_parts(parts, Body::from(bytes))
            }
            Err(_) => {
                let response = shopify::error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request body too large",
                );
                let observed = Observed {
                    at_ms,
                    method,
                    path_and_query,
                    status: response.status().as_u16(),
                    duration_ms: 0,
                    fault: false,
                    graphql_fields,
                };
                lock(&state.recorder).record(endpoint, observed);
                return response;
            }
        }
    } else {
        request
    };
    let mut keys: Vec<Key> = graphql_fields
        .iter()
        .map(|f| Key::field(endpoint, f))
        .collect();
    keys.push(Key::endpoint(endpoint));

    crate::hold::wait_if_held(&state, &keys).await;
    let fault = lock(&state.faults).next_for(&keys);
    if let Some(fault) = &fault {
        if fault.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(fault.latency_ms)).await;
        }
    }
    let runtime = state.runtime();
    let now = state.clock.now_ms();

    let response = match fault.as_ref().and_then(|f| f.status.map(|s| (f, s))) {
        Some((fault, status)) => {
            let mut response = fault_response(endpoint, fault, status);
            if endpoint.is_keap_rest() {
                let mut snapshot = lock(&state.keap.quota).peek(now, runtime.rate_limit_per_minute);
                if status == StatusCode::TOO_MANY_REQUESTS {
                    snapshot = snapshot.exhausted();
                }
                apply_quota(&state, &mut response, &snapshot);
            }
            response
        }
        None if endpoint.is_keap_rest() => {
            let consumed = lock(&state.keap.quota).try_consume(now, runtime.rate_limit_per_minute);
            match consumed {
                Ok(snapshot) => {
                    let mut response = next.run(request).await;
                    apply_quota(&state, &mut response, &snapshot);
                    response
                }
                Err(throttled) => {
                    let mut response = (
                        StatusCode::TOO_MANY_REQUESTS,
                        axum::Json(keap::throttled_body()),
                    )
                        .into_response();
                    if runtime.send_retry_after {
                        response.headers_mut().insert(
                            header::RETRY_AFTER,
                            HeaderValue::from(throttled.retry_after_secs),
                        );
                    }
                    apply_quota(&state, &mut response, &throttled.snapshot);
                    response
                }
            }
        }
        None => next.run(request).await,
    };

    let observed = Observed {
        at_ms,
        method,
        path_and_query,
        status: response.status().as_u16(),
        duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        fault: fault.is_some(),
        graphql_fields,
    };
    lock(&state.recorder).record(endpoint, observed);
    response
}

fn apply_quota(state: &SharedState, response: &mut Response, snapshot: &QuotaSnapshot) {
    snapshot.apply(response.headers_mut(), &state.config.keap_tenant_id);
}

/// The answer an injected fault gives: its body or the provider's usual error body for that
/// status, and its headers on top.
fn fault_response(endpoint: Endpoint, fault: &Fault, status: StatusCode) -> Response {
    let body = fault
        .body
        .clone()
        .unwrap_or_else(|| default_fault_body(endpoint, status));
    let content_type = if serde_json::from_str::<serde_json::Value>(&body).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in &fault.headers {
        headers.insert(name.clone(), value.clone());
    }
    response
}

fn default_fault_body(endpoint: Endpoint, status: StatusCode) -> String {
    let reason = status.canonical_reason().unwrap_or("Error");
    if endpoint == Endpoint::KeapOAuthToken {
        // OAuth errors use RFC 6749's shape; a 400 is the "reject a refresh" case.
        let body = match status.as_u16() {
            400 => json!({"error": "invalid_grant", "error_description": "Invalid refresh token"}),
            401 => json!({"error": "invalid_client"}),
            429 => keap::throttled_body(),
            _ => json!({"error": "server_error", "error_description": reason}),
        };
        return body.to_string();
    }
    if endpoint.is_openai() {
        return crate::openai::default_fault_body(status);
    }
    if endpoint.is_github() {
        return crate::github::error_body(reason).to_string();
    }
    if endpoint.is_authorize_page() {
        return format!("<!doctype html><title>{reason}</title><h1>{reason}</h1>");
    }
    if endpoint == Endpoint::ShopifyOAuthAccessToken {
        return shopify::oauth::default_fault_body(status).to_string();
    }
    if endpoint == Endpoint::ShopifyGraphql && status == StatusCode::UNAUTHORIZED {
        return shopify::admin::unauthorized_body().to_string();
    }
    if endpoint.is_shopify() {
        return shopify::error_body(status, reason).to_string();
    }
    keap::error_body(status, reason).to_string()
}

/// Logs one line per request to stderr: method, redacted path, status, duration.
pub async fn log_request(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    if !state.config.log_requests {
        return next.run(request).await;
    }
    let started = Instant::now();
    let method = request.method().clone();
    let path = redacted_path(request.uri());
    let response = next.run(request).await;
    eprintln!(
        "{method} {path} {} {}ms",
        response.status().as_u16(),
        started.elapsed().as_millis()
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let uri: Uri = "/token?code=abc&state=xyz&client_secret=s"
            .parse()
            .unwrap_or_default();
        assert_eq!(
            redacted_path(&uri),
            "/token?code=REDACTED&state=xyz&client_secret=REDACTED"
        );
        let uri: Uri = "/crm/rest/v2/contacts".parse().unwrap_or_default();
        assert_eq!(redacted_path(&uri), "/crm/rest/v2/contacts");
    }
}
