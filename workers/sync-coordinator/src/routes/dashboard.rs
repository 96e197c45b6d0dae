//! `/dashboard`: the operator dashboard, served by the coordinator itself (its page, script
//! and styles are compiled into the Worker: no CDN, works offline). Signing in exchanges the
//! operator's token for a session (`edge_sync_shared::dashboard`): the session id travels
//! only in an `HttpOnly`, `Secure`, `SameSite=Strict` cookie scoped to `/dashboard`, and the
//! page calls the operator API through `/dashboard/api/...`, where the session stands in for
//! the token (which never reaches the page) and every state-changing call must carry the
//! session's CSRF token from the page's own origin. `/dashboard/api/sync/*` goes to the
//! sync-worker over its service binding (starting a run, its status).

use edge_sync_shared::{
    auth::{authorize, Caller, Capability},
    dashboard::{self, Session, CSRF_HEADER, SESSION_TTL_MS},
    Timestamp,
};
use edge_sync_worker_kit::{auth::own_credential, random, HttpError, HttpResult, RequestContext};
use worker::{Env, Headers, Method, Request, RequestInit, Response};

use crate::durable_object::{self, SYSTEM_INSTANCE};

const PAGE: &str = include_str!("../../dashboard/index.html");
const SCRIPT: &str = include_str!("../../dashboard/app.js");
const STYLES: &str = include_str!("../../dashboard/app.css");

/// The page's own policy: nothing but this origin's script, styles, calls and sockets.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn asset(body: &str, content_type: &str) -> HttpResult {
    let headers = Headers::new();
    headers.set("Content-Type", content_type)?;
    headers.set("Content-Security-Policy", CSP)?;
    headers.set("X-Content-Type-Options", "nosniff")?;
    headers.set("Referrer-Policy", "no-referrer")?;
    headers.set("Cache-Control", "no-cache")?;
    Ok(Response::ok(body)?.with_headers(headers))
}

/// `GET /dashboard`, `/dashboard/app.js`, `/dashboard/app.css`.
pub fn static_asset(name: &str) -> HttpResult {
    match name {
        "" | "index.html" => asset(PAGE, "text/html; charset=utf-8"),
        "app.js" => asset(SCRIPT, "text/javascript; charset=utf-8"),
        "app.css" => asset(STYLES, "text/css; charset=utf-8"),
        _ => Err(HttpError::not_found()),
    }
}

fn session_path(id: &str) -> String {
    format!("/internal/sessions/{id}")
}

/// The caller's live session and its id, or 401.
async fn session(req: &Request, env: &Env) -> Result<(String, Session), HttpError> {
    let cookies = req.headers().get("Cookie").ok().flatten();
    let id = dashboard::session_id(cookies.as_deref())
        .ok_or_else(|| HttpError::unauthorized("no dashboard session"))?
        .to_owned();
    let mut response =
        durable_object::call(env, SYSTEM_INSTANCE, Method::Get, &session_path(&id), None).await?;
    if response.status_code() != 200 {
        return Err(HttpError::unauthorized(
            "dashboard session ended or unknown",
        ));
    }
    let session: Session = durable_object::read(&mut response).await?;
    Ok((id, session))
}

fn own_origin(req: &Request) -> Result<String, HttpError> {
    let url = req.url()?;
    Ok(url.origin().ascii_serialization())
}

/// Refuses a state-changing call without the session's CSRF token or from another origin.
fn check_change(req: &Request, session: &Session) -> Result<(), HttpError> {
    let origin = req.headers().get("Origin").ok().flatten();
    let csrf = req.headers().get(CSRF_HEADER).ok().flatten();
    if dashboard::may_change(
        session,
        origin.as_deref(),
        &own_origin(req)?,
        csrf.as_deref(),
    ) {
        Ok(())
    } else {
        Err(HttpError::new(403, "missing or wrong CSRF token").with_reason("dashboard CSRF check"))
    }
}

fn with_cookie(response: Response, cookie: &str) -> HttpResult {
    let headers = response.headers().clone();
    headers.set("Set-Cookie", cookie)?;
    headers.set("Cache-Control", "no-store")?;
    Ok(response.with_headers(headers))
}

/// `POST /dashboard/session` `{"token"}`: signs in with the operator's token (401 for any
/// other); answers `{csrf}` and sets the session cookie.
pub async fn sign_in(mut req: Request, env: &Env, now: Timestamp) -> HttpResult {
    #[derive(serde::Deserialize)]
    struct SignIn {
        token: String,
    }
    let body: SignIn = req
        .json()
        .await
        .map_err(|_| HttpError::bad_request("body must be JSON {\"token\": \"...\"}"))?;
    let origin = req.headers().get("Origin").ok().flatten();
    let own = own_origin(&req)?;
    if origin.is_some_and(|o| o != own) {
        return Err(HttpError::new(403, "sign in from the dashboard's own page"));
    }
    let admin = [(Caller::Admin, own_credential(env, Caller::Admin))];
    authorize(
        Some(&format!("Bearer {}", body.token.trim())),
        &admin,
        Capability::Operate,
    )
    .map_err(|_| HttpError::unauthorized("not the operator's token"))?;
    let id = random::secret_hex::<32>()?;
    let session = Session::open(random::secret_hex::<32>()?, now);
    durable_object::send(
        env,
        SYSTEM_INSTANCE,
        Method::Put,
        &session_path(&id),
        &session,
    )
    .await?;
    with_cookie(
        Response::from_json(&serde_json::json!({ "csrf": session.csrf }))?,
        &dashboard::session_cookie(&id, SESSION_TTL_MS / 1000),
    )
}

/// `GET /dashboard/session`: `{csrf}` of the caller's session (the page reloads with it), or
/// 401.
pub async fn current(req: &Request, env: &Env) -> HttpResult {
    let (_, session) = session(req, env).await?;
    let response = Response::from_json(&serde_json::json!({ "csrf": session.csrf }))?;
    let headers = response.headers().clone();
    headers.set("Cache-Control", "no-store")?;
    Ok(response.with_headers(headers))
}

/// `POST /dashboard/logout` (CSRF): ends the session; its cookie no longer opens anything.
pub async fn sign_out(req: &Request, env: &Env) -> HttpResult {
    let (id, session) = session(req, env).await?;
    check_change(req, &session)?;
    durable_object::call(
        env,
        SYSTEM_INSTANCE,
        Method::Delete,
        &session_path(&id),
        None,
    )
    .await?;
    with_cookie(
        Response::from_json(&serde_json::json!({ "signed_out": true }))?,
        &dashboard::cleared_cookie(),
    )
}

/// `/dashboard/api/<operator route>`: the operator API for the signed-in page. The session
/// stands in for the operator's token, which is added here and never leaves the Worker.
pub async fn api(mut req: Request, env: Env, ctx: RequestContext, rest: &[&str]) -> HttpResult {
    let (_, session) = session(&req, &env).await?;
    let method = req.method();
    if method != Method::Get {
        check_change(&req, &session)?;
    }
    let url = req.url()?;
    let mut target = url.clone();
    target.set_path(&format!("/{}", rest.join("/")));
    let headers = Headers::new();
    headers.set(
        "Authorization",
        &format!("Bearer {}", own_credential(&env, Caller::Admin).expose()),
    )?;
    headers.set("Content-Type", "application/json")?;
    let mut init = RequestInit::new();
    init.with_method(method.clone()).with_headers(headers);
    if method != Method::Get {
        let body = req.text().await.unwrap_or_default();
        if !body.is_empty() {
            init.with_body(Some(body.into()));
        }
    }
    if rest.first() == Some(&"sync") {
        // `/sync/*` is the sync-worker's (start a run, its status), over the service binding.
        target.set_host(Some("sync-worker")).ok();
        target.set_scheme("https").ok();
        target.set_port(None).ok();
        let inner = Request::new_with_init(target.as_str(), &init)?;
        return Ok(env
            .service(edge_sync_shared::bindings::SYNC_WORKER_SERVICE)?
            .fetch_request(inner)
            .await?);
    }
    let inner = Request::new_with_init(target.as_str(), &init)?;
    Box::pin(super::dispatch(inner, env, ctx)).await
}
