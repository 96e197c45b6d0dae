//! A local stand-in of the Cloudflare API for offline deploy tests.
//!
//! wrangler honours `CLOUDFLARE_API_BASE_URL`; point it (and `scripts/deploy.sh`, which calls
//! the API with curl for KV and Hyperdrive) at `http://127.0.0.1:<port>/client/v4`. Every
//! answer follows the API's documented envelope
//! (https://developers.cloudflare.com/fundamentals/api/how-to/make-api-calls/):
//! `{"success":true,"errors":[],"messages":[],"result":...}`; failures carry
//! `{"success":false,"errors":[{"code":...,"message":...}]}`. A route this stand-in does not
//! know answers 404 in that error envelope and is logged to stderr ("unknown route"), so a
//! new call wrangler starts making shows up at once.
//!
//! Every call is recorded (method, path, query, parsed metadata; secret values and passwords
//! are never recorded) and served at `GET /__stand-in/calls`; the resulting account state
//! (KV namespaces, Hyperdrive configs, scripts with bindings, schedules, secrets) at
//! `GET /__stand-in/state`.
//!
//!   cloudflare-api --port 8795        (or CF_STANDIN_PORT; port 0 picks one, printed on stdout)

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::{json, Map, Value};

/// The account state a real account would end up with.
#[derive(Debug, Default)]
struct Account {
    calls: Vec<Value>,
    kv_namespaces: Vec<Value>,
    hyperdrive_configs: Vec<Value>,
    /// Script name → {metadata, modules, uploads, schedules, secrets, subdomain}.
    scripts: BTreeMap<String, Map<String, Value>>,
    next_id: u64,
}

type Shared = Arc<Mutex<Account>>;

fn ok(result: Value) -> Response {
    Json(json!({"success": true, "errors": [], "messages": [], "result": result})).into_response()
}

fn ok_list(result: Vec<Value>) -> Response {
    let count = result.len();
    Json(json!({
        "success": true, "errors": [], "messages": [], "result": result,
        "result_info": {"page": 1, "per_page": 100, "count": count, "total_count": count, "total_pages": 1}
    }))
    .into_response()
}

fn fail(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        Json(json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null})),
    )
        .into_response()
}

/// A 32-hex-digit id, like the API's KV namespace and Hyperdrive ids.
fn new_id(account: &mut Account) -> String {
    account.next_id += 1;
    format!("{:016x}{:016x}", rand::random::<u64>(), account.next_id)
}

fn now() -> String {
    // RFC 3339 is all wrangler reads; the exact instant does not matter offline.
    "2026-01-01T00:00:00.000000Z".to_owned()
}

/// Parts of a multipart/form-data body: (name, filename, content type, bytes).
fn multipart_parts(
    headers: &HeaderMap,
    body: &[u8],
) -> Vec<(String, Option<String>, String, Vec<u8>)> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(boundary) = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
    else {
        return Vec::new();
    };
    let boundary = boundary.trim_matches('"');
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut positions = Vec::new();
    let mut i = 0;
    while i + delimiter.len() <= body.len() {
        if body[i..i + delimiter.len()] == delimiter[..] {
            positions.push(i);
            i += delimiter.len();
        } else {
            i += 1;
        }
    }
    for pair in positions.windows(2) {
        let part = &body[pair[0] + delimiter.len()..pair[1]];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        let Some(split) = part.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&part[..split]).to_string();
        let content = part[split + 4..].to_vec();
        let mut name = String::new();
        let mut filename = None;
        let mut ctype = String::new();
        for line in head.lines() {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-disposition") {
                for attr in line.split(';') {
                    let attr = attr.trim();
                    if let Some(v) = attr.strip_prefix("name=") {
                        name = v.trim_matches('"').to_owned();
                    } else if let Some(v) = attr.strip_prefix("filename=") {
                        filename = Some(v.trim_matches('"').to_owned());
                    }
                }
            } else if lower.starts_with("content-type") {
                ctype = line
                    .split_once(':')
                    .map(|x| x.1.trim().to_owned())
                    .unwrap_or_default();
            }
        }
        parts.push((name, filename, ctype, content));
    }
    parts
}

/// A copy of `value` with secret material replaced: `text` of secret bindings, passwords.
fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let is_secret = map.get("type").and_then(Value::as_str) == Some("secret_text");
            Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let hidden = (k == "text" && is_secret)
                            || k == "password"
                            || k == "access_client_secret";
                        (
                            k.clone(),
                            if hidden {
                                json!("[redacted]")
                            } else {
                                redact(v)
                            },
                        )
                    })
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

async fn calls(State(state): State<Shared>) -> Response {
    let account = state.lock().expect("state lock");
    Json(Value::Array(account.calls.clone())).into_response()
}

async fn account_state(State(state): State<Shared>) -> Response {
    let account = state.lock().expect("state lock");
    let scripts: Map<String, Value> = account
        .scripts
        .iter()
        .map(|(k, v)| (k.clone(), Value::Object(v.clone())))
        .collect();
    Json(json!({
        "kv_namespaces": account.kv_namespaces,
        "hyperdrive_configs": account.hyperdrive_configs.iter().map(redact).collect::<Vec<_>>(),
        "scripts": scripts,
    }))
    .into_response()
}

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let path = path
        .strip_prefix("/client/v4")
        .unwrap_or(path)
        .trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let is_multipart = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/"));
    let parts = if is_multipart {
        multipart_parts(&headers, &body)
    } else {
        Vec::new()
    };
    let json_body: Option<Value> = if is_multipart {
        parts
            .iter()
            .find(|p| p.0 == "metadata")
            .and_then(|p| serde_json::from_slice(&p.3).ok())
    } else {
        serde_json::from_slice(&body).ok()
    };
    let mut account = state.lock().expect("state lock");
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7);
    account.calls.push(json!({
        "method": method.as_str(),
        "path": path,
        "query": uri.query().unwrap_or_default(),
        "authorized": authorized,
        "metadata": json_body.as_ref().map(redact),
        "parts": parts.iter().map(|p| json!({"name": p.0, "filename": p.1, "content_type": p.2, "size": p.3.len()})).collect::<Vec<_>>(),
    }));
    if !authorized {
        // https://developers.cloudflare.com/fundamentals/api/troubleshooting/ (10000: Authentication error)
        return fail(StatusCode::FORBIDDEN, 10000, "Authentication error");
    }
    let body = json_body.unwrap_or(Value::Null);
    let m = method.clone();
    match (m, segments.as_slice()) {
        // https://developers.cloudflare.com/api/resources/user/methods/get/
        (Method::GET, ["user"]) => ok(json!({"id": "stand-in-user", "email": "deploy@example.com"})),
        // https://developers.cloudflare.com/api/resources/user/subresources/tokens/methods/verify/
        (Method::GET, ["user", "tokens", "verify"]) => ok(json!({"id": "stand-in-token", "status": "active"})),
        // https://developers.cloudflare.com/api/resources/memberships/methods/list/
        (Method::GET, ["memberships"]) => {
            let id = headers_account(&account);
            ok_list(vec![json!({"id": "m1", "status": "accepted", "account": {"id": id, "name": "Stand-in account"}})])
        }
        // https://developers.cloudflare.com/api/resources/accounts/methods/list/
        (Method::GET, ["accounts"]) => {
            let id = headers_account(&account);
            ok_list(vec![json!({"id": id, "name": "Stand-in account"})])
        }
        // https://developers.cloudflare.com/api/resources/kv/subresources/namespaces/methods/list/
        (Method::GET, ["accounts", _, "storage", "kv", "namespaces"]) => ok_list(account.kv_namespaces.clone()),
        // https://developers.cloudflare.com/api/resources/kv/subresources/namespaces/methods/create/
        (Method::POST, ["accounts", _, "storage", "kv", "namespaces"]) => {
            let Some(title) = body.get("title").and_then(Value::as_str).map(str::to_owned) else {
                return fail(StatusCode::BAD_REQUEST, 10019, "title is required");
            };
            if account.kv_namespaces.iter().any(|n| n["title"] == title.as_str()) {
                return fail(StatusCode::BAD_REQUEST, 10014, "a namespace with this account ID and title already exists");
            }
            let id = new_id(&mut account);
            let ns = json!({"id": id, "title": title, "supports_url_encoding": true});
            account.kv_namespaces.push(ns.clone());
            ok(ns)
        }
        // https://developers.cloudflare.com/api/resources/hyperdrive/subresources/configs/methods/list/
        (Method::GET, ["accounts", _, "hyperdrive", "configs"]) => {
            ok_list(account.hyperdrive_configs.iter().map(redact).collect())
        }
        // https://developers.cloudflare.com/api/resources/hyperdrive/subresources/configs/methods/create/
        (Method::POST, ["accounts", _, "hyperdrive", "configs"]) => {
            let Some(name) = body.get("name").and_then(Value::as_str).map(str::to_owned) else {
                return fail(StatusCode::BAD_REQUEST, 2001, "name is required");
            };
            let origin = body.get("origin").cloned().unwrap_or(Value::Null);
            for field in ["host", "database", "user", "password", "scheme"] {
                if origin.get(field).and_then(Value::as_str).unwrap_or_default().is_empty() {
                    return fail(StatusCode::BAD_REQUEST, 2001, &format!("origin.{field} is required"));
                }
            }
            if account.hyperdrive_configs.iter().any(|c| c["name"] == name.as_str()) {
                return fail(StatusCode::CONFLICT, 2017, "a configuration with this name already exists");
            }
            let id = new_id(&mut account);
            let mut config = body.clone();
            config["id"] = json!(id);
            config["created_on"] = json!(now());
            account.hyperdrive_configs.push(config.clone());
            ok(redact(&config))
        }
        // https://developers.cloudflare.com/api/resources/hyperdrive/subresources/configs/methods/get/
        (Method::GET, ["accounts", _, "hyperdrive", "configs", id]) => {
            match account.hyperdrive_configs.iter().find(|c| c["id"] == *id) {
                Some(c) => ok(redact(c)),
                None => fail(StatusCode::NOT_FOUND, 2007, "Hyperdrive config not found"),
            }
        }
        // https://developers.cloudflare.com/api/resources/hyperdrive/subresources/configs/methods/edit/
        (Method::PATCH, ["accounts", _, "hyperdrive", "configs", id]) => {
            let Some(config) = account.hyperdrive_configs.iter_mut().find(|c| c["id"] == *id) else {
                return fail(StatusCode::NOT_FOUND, 2007, "Hyperdrive config not found");
            };
            if let Some(origin) = body.get("origin").and_then(Value::as_object) {
                for (k, v) in origin {
                    config["origin"][k] = v.clone();
                }
            }
            if let Some(name) = body.get("name") {
                config["name"] = name.clone();
            }
            config["modified_on"] = json!(now());
            ok(redact(config))
        }
        // https://developers.cloudflare.com/api/resources/workers/subresources/subdomains/methods/get/
        (Method::GET, ["accounts", _, "workers", "subdomain"]) => ok(json!({"subdomain": "edge-sync-stand-in"})),
        // https://developers.cloudflare.com/api/resources/workers/subresources/scripts/methods/update/
        (Method::PUT, ["accounts", _, "workers", "scripts", name]) => match upload(&mut account, name, &parts, true) {
            Ok(result) => ok(result),
            Err(response) => response,
        },
        // https://developers.cloudflare.com/api/resources/workers/subresources/scripts/subresources/versions/methods/create/
        (Method::POST, ["accounts", _, "workers", "scripts", name, "versions"]) => match upload(&mut account, name, &parts, false) {
            Ok(result) => ok(result),
            Err(response) => response,
        },
        // https://developers.cloudflare.com/api/resources/workers/subresources/scripts/subresources/deployments/methods/create/
        (Method::POST, ["accounts", _, "workers", "scripts", name, "deployments"]) => {
            let Some(version_id) = body.get("versions").and_then(Value::as_array).and_then(|v| v.first()).and_then(|v| v["version_id"].as_str()).map(str::to_owned) else {
                return fail(StatusCode::BAD_REQUEST, 10021, "versions[0].version_id is required");
            };
            let Some(script) = account.scripts.get_mut(*name) else {
                return fail(StatusCode::NOT_FOUND, 10007, "This Worker does not exist on your account.");
            };
            let Some(version) = script.get("versions").and_then(|v| v.get(&version_id)).cloned() else {
                return fail(StatusCode::NOT_FOUND, 10209, "version not found");
            };
            for key in ["metadata", "modules", "migration_tag"] {
                if let Some(v) = version.get(key).filter(|v| !v.is_null()) {
                    script.insert(key.into(), v.clone());
                }
            }
            let uploads = script.get("uploads").and_then(Value::as_u64).unwrap_or(0) + 1;
            script.insert("uploads".into(), json!(uploads));
            script.insert("etag".into(), json!(version_id));
            ok(json!({"id": format!("d-{version_id}"), "created_on": now(), "source": "wrangler", "strategy": "percentage",
                "versions": [{"version_id": version_id, "percentage": 100.0}]}))
        }
        // https://developers.cloudflare.com/api/resources/workers/subresources/scripts/methods/get/
        (Method::GET, ["accounts", _, "workers", "services", name]) => match account.scripts.get(*name) {
            Some(script) => ok(json!({
                "id": name, "created_on": now(), "modified_on": now(),
                "default_environment": {"environment": "production", "created_on": now(), "modified_on": now(),
                    "script": {"id": name, "etag": script.get("etag"), "handlers": ["fetch"], "last_deployed_from": "wrangler"}}
            })),
            None => fail(StatusCode::NOT_FOUND, 10090, "workers.api.error.service_not_found"),
        },
        // https://developers.cloudflare.com/api/resources/workers/subresources/scripts/subresources/subdomain/methods/get/
        (Method::GET, ["accounts", _, "workers", "scripts", name, "subdomain"]) => {
            let enabled = account
                .scripts
                .get(*name)
                .and_then(|s| s.get("subdomain"))
                .and_then(|s| s.get("enabled"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            ok(json!({"enabled": enabled, "previews_enabled": enabled}))
        }
        // https://developers.cloudflare.com/api/resources/workers/subresources/scripts/subresources/subdomain/methods/create/
        (Method::POST, ["accounts", _, "workers", "scripts", name, "subdomain"]) => {
            let Some(script) = account.scripts.get_mut(*name) else {
                return fail(StatusCode::NOT_FOUND, 10007, "This Worker does not exist on your account.");
            };
            let enabled = body.get("enabled").and_then(Value::as_bool).unwrap_or(true);
            let previews = body.get("previews_enabled").and_then(Value::as_bool).unwrap_or(enabled);
            script.insert("subdomain".into(), json!({"enabled": enabled, "previews_enabled": previews}));
            ok(json!({"enabled": enabled, "previews_enabled": previews}))
        }
        // https://developers.cloudflare.com/api/resources/workers/subresources/scripts/subresources/schedules/methods/get/
        (Method::GET, ["accounts", _, "workers", "scripts", name, "schedules"]) => {
            let schedules = account.scripts.get(*name).and_then(|s| s.get("schedules")).cloned().unwrap_or(json!([]));
            ok(json!({"schedules": schedules}))
        }
        // https://developers.cloudflare.com/api/resources/workers/subresources/scripts/subresources/schedules/methods/update/
        (Method::PUT, ["accounts", _, "workers", "scripts", name, "schedules"]) => {
            let Some(script) = account.scripts.get_mut(*name) else {
                return fail(StatusCode::NOT_FOUND, 10007, "This Worker does not exist on your account.");
            };
            let list: Vec<Value> = body
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|s| json!({"cron": s.get("cron"), "created_on": now(), "modified_on": now()}))
                .collect();
            script.insert("schedules".into(), Value::Array(list.clone()));
            ok(json!({"schedules": list}))
        }
        // https://developers.cloudflare.com/api/resources/workers/subresources/scripts/subresources/secrets/methods/update/
        (Method::PUT, ["accounts", _, "workers", "scripts", name, "secrets"]) => {
            let (Some(secret), Some(text)) = (body.get("name").and_then(Value::as_str), body.get("text").and_then(Value::as_str)) else {
                return fail(StatusCode::BAD_REQUEST, 10021, "name and text are required");
            };
            let Some(script) = account.scripts.get_mut(*name) else {
                return fail(StatusCode::NOT_FOUND, 10007, "This Worker does not exist on your account.");
            };
            let entry = script.entry("secrets").or_insert(json!({}));
            entry[secret] = json!({"type": "secret_text", "length": text.len()});
            ok(json!({"name": secret, "type": "secret_text"}))
        }
        // https://developers.cloudflare.com/api/resources/workers/subresources/scripts/subresources/secrets/methods/list/
        (Method::GET, ["accounts", _, "workers", "scripts", name, "secrets"]) => match account.scripts.get(*name) {
            Some(script) => ok(Value::Array(
                script
                    .get("secrets")
                    .and_then(Value::as_object)
                    .map(|m| m.keys().map(|k| json!({"name": k, "type": "secret_text"})).collect())
                    .unwrap_or_default(),
            )),
            None => fail(StatusCode::NOT_FOUND, 10007, "This Worker does not exist on your account."),
        },
        // https://developers.cloudflare.com/api/resources/workers/subresources/scripts/subresources/settings/methods/get/
        (Method::GET, ["accounts", _, "workers", "scripts", name, "settings"]) => match account.scripts.get(*name) {
            Some(script) => ok(settings_of(script)),
            None => fail(StatusCode::NOT_FOUND, 10007, "This Worker does not exist on your account."),
        },
        // https://developers.cloudflare.com/api/resources/workers/subresources/scripts/subresources/settings/methods/edit/
        (Method::PATCH, ["accounts", _, "workers", "scripts", name, "settings"]) => {
            // `wrangler secret bulk` sends the secrets as secret_text bindings and keeps the
            // others with {"type": "inherit"}.
            let settings_part = parts.iter().find(|p| p.0 == "settings" || p.0 == "metadata");
            let settings: Value = settings_part
                .and_then(|p| serde_json::from_slice(&p.3).ok())
                .unwrap_or(body.clone());
            let Some(script) = account.scripts.get_mut(*name) else {
                return fail(StatusCode::NOT_FOUND, 10007, "This Worker does not exist on your account.");
            };
            if let Some(bindings) = settings.get("bindings").and_then(Value::as_array) {
                let entry = script.entry("secrets").or_insert(json!({}));
                for b in bindings {
                    if b.get("type").and_then(Value::as_str) == Some("secret_text") {
                        if let (Some(n), Some(t)) = (b["name"].as_str(), b["text"].as_str()) {
                            entry[n] = json!({"type": "secret_text", "length": t.len()});
                        }
                    }
                }
            }
            ok(settings_of(script))
        }
        // https://developers.cloudflare.com/api/resources/workers/subresources/scripts/subresources/script_and_version_settings/methods/edit/
        // (wrangler sends observability and logpush here after an upload.)
        (Method::PATCH, ["accounts", _, "workers", "scripts", name, "script-settings"]) => {
            let Some(script) = account.scripts.get_mut(*name) else {
                return fail(StatusCode::NOT_FOUND, 10007, "This Worker does not exist on your account.");
            };
            script.insert("script_settings".into(), body.clone());
            ok(body)
        }
        // https://developers.cloudflare.com/api/resources/workers/subresources/scripts/methods/list/
        (Method::GET, ["accounts", _, "workers", "scripts"]) => ok(Value::Array(
            account
                .scripts
                .iter()
                .map(|(name, s)| json!({"id": name, "etag": s.get("etag"), "created_on": now(), "modified_on": now(), "handlers": ["fetch"], "migration_tag": s.get("migration_tag")}))
                .collect(),
        )),
        // https://developers.cloudflare.com/api/resources/workers/subresources/scripts/subresources/deployments/methods/list/
        (Method::GET, ["accounts", _, "workers", "scripts", name, "deployments"]) => {
            let deployments: Vec<Value> = account
                .scripts
                .get(*name)
                .map(|s| {
                    let version = s.get("etag").and_then(Value::as_str).unwrap_or_default();
                    vec![json!({
                        "id": format!("d-{version}"), "created_on": now(), "source": "wrangler",
                        "strategy": "percentage", "author_email": "deploy@example.com",
                        "versions": [{"version_id": version, "percentage": 100.0}],
                        "annotations": {"workers/triggered_by": "upload"}
                    })]
                })
                .unwrap_or_default();
            ok(json!({"deployments": deployments}))
        }
        _ => {
            eprintln!("unknown route: {method} {}", uri);
            fail(StatusCode::NOT_FOUND, 7003, "No route for that URI")
        }
    }
}

/// Validates an upload (script update or version upload) and, when `deploy`, makes it the
/// script's live version. Ok: the API's result object.
#[allow(clippy::too_many_lines, clippy::result_large_err)]
fn upload(
    account: &mut Account,
    name: &str,
    parts: &[(String, Option<String>, String, Vec<u8>)],
    deploy: bool,
) -> Result<Value, Response> {
    let name = (*name).to_owned();
    let Some(metadata) = parts.iter().find(|p| p.0 == "metadata") else {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            10021,
            "metadata part is required",
        ));
    };
    let metadata: Value = serde_json::from_slice(&metadata.3).unwrap_or(Value::Null);
    let Some(main) = metadata.get("main_module").and_then(Value::as_str) else {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            10021,
            "main_module is required (ES module Workers)",
        ));
    };
    if !parts
        .iter()
        .any(|p| p.0 == main || p.1.as_deref() == Some(main))
    {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            10021,
            &format!("no such module: {main}"),
        ));
    }
    // Bindings must name resources that exist (what a real account checks).
    if let Some(bindings) = metadata.get("bindings").and_then(Value::as_array) {
        for b in bindings {
            match b.get("type").and_then(Value::as_str) {
                Some("kv_namespace") => {
                    let id = b["namespace_id"].as_str().unwrap_or_default();
                    if !account.kv_namespaces.iter().any(|n| n["id"] == id) {
                        return Err(fail(
                            StatusCode::BAD_REQUEST,
                            10041,
                            &format!("KV namespace '{id}' is not valid. [code: 10041]"),
                        ));
                    }
                }
                Some("hyperdrive") => {
                    let id = b["id"].as_str().unwrap_or_default();
                    if !account.hyperdrive_configs.iter().any(|c| c["id"] == id) {
                        return Err(fail(
                            StatusCode::BAD_REQUEST,
                            10021,
                            &format!("Hyperdrive config '{id}' not found"),
                        ));
                    }
                }
                Some("service") => {
                    let service = b["service"].as_str().unwrap_or_default();
                    if service != name && !account.scripts.contains_key(service) {
                        return Err(fail(StatusCode::BAD_REQUEST, 10143, &format!("Could not resolve service binding '{}'. Target script '{service}' not found.", b["name"].as_str().unwrap_or_default())));
                    }
                }
                _ => {}
            }
        }
    }
    // Durable Object migrations apply on top of the script's current tag.
    if let Some(migrations) = metadata.get("migrations") {
        let current = account
            .scripts
            .get(&name)
            .and_then(|s| s.get("migration_tag"))
            .cloned();
        let old = migrations.get("old_tag").cloned();
        if current.is_some() && current != old {
            return Err(fail(StatusCode::BAD_REQUEST, 10079, "migration tag precondition failed: old_tag does not match the script's current migration tag"));
        }
    }
    let etag = format!("{:032x}", rand::random::<u128>());
    let modules: Vec<Value> = parts
        .iter()
        .filter(|p| p.0 != "metadata")
        .map(|p| json!({"name": p.0, "content_type": p.2, "size": p.3.len()}))
        .collect();
    let migration_tag = metadata
        .get("migrations")
        .and_then(|m| m.get("new_tag"))
        .cloned();
    let script = account.scripts.entry(name.clone()).or_default();
    // Secrets persist across uploads (inherited), like on a real account.
    script.entry("secrets").or_insert(json!({}));
    if deploy {
        let uploads = script.get("uploads").and_then(Value::as_u64).unwrap_or(0) + 1;
        script.insert("metadata".into(), redact(&metadata));
        script.insert("modules".into(), Value::Array(modules));
        script.insert("uploads".into(), json!(uploads));
        script.insert("etag".into(), json!(etag));
        if let Some(tag) = migration_tag {
            script.insert("migration_tag".into(), tag);
        }
    } else {
        let versions = script.entry("versions").or_insert(json!({}));
        versions[&etag] = json!({"metadata": redact(&metadata), "modules": modules, "migration_tag": migration_tag});
    }
    Ok(json!({
        "id": if deploy { name.clone() } else { etag.clone() }, "etag": etag, "number": 1,
        "handlers": ["fetch", "scheduled"],
        "created_on": now(), "modified_on": now(), "usage_model": "standard",
        "compatibility_date": metadata.get("compatibility_date"),
        "has_assets": false, "has_modules": true, "startup_time_ms": 1,
        "metadata": {"author_email": "deploy@example.com", "source": "wrangler", "created_on": now()},
        "resources": {"bindings": metadata.get("bindings").map(redact), "script": {"etag": etag, "handlers": ["fetch"]}},
        "deployment_id": format!("{:032x}", rand::random::<u128>()),
    }))
}

/// The settings view of a script: its bindings (secrets as secret_text without their text).
fn settings_of(script: &Map<String, Value>) -> Value {
    let metadata = script.get("metadata").cloned().unwrap_or(json!({}));
    let mut bindings: Vec<Value> = metadata
        .get("bindings")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    bindings.retain(|b| b["type"] != "secret_text");
    if let Some(secrets) = script.get("secrets").and_then(Value::as_object) {
        for k in secrets.keys() {
            bindings.push(json!({"type": "secret_text", "name": k}));
        }
    }
    json!({
        "bindings": bindings,
        "compatibility_date": metadata.get("compatibility_date"),
        "compatibility_flags": metadata.get("compatibility_flags").cloned().unwrap_or(json!([])),
        "usage_model": "standard",
        "logpush": false,
        "tags": [],
        "observability": metadata.get("observability"),
    })
}

/// The account id the stand-in answers lookups with (CF_STANDIN_ACCOUNT_ID).
fn headers_account(_account: &Account) -> String {
    std::env::var("CF_STANDIN_ACCOUNT_ID")
        .unwrap_or_else(|_| "0123456789abcdef0123456789abcdef".into())
}

#[tokio::main]
async fn main() {
    let mut port: u16 = std::env::var("CF_STANDIN_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8795);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(port),
            "--help" | "-h" => {
                println!("cloudflare-api [--port N]   local stand-in of the Cloudflare API (see the crate docs)");
                return;
            }
            other => {
                eprintln!("error: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let state: Shared = Arc::new(Mutex::new(Account::default()));
    let app = Router::new()
        .route("/__stand-in/calls", get(calls))
        .route("/__stand-in/state", get(account_state))
        .fallback(handle)
        // Script uploads are multipart bodies of several MB (Cloudflare limits a Worker by its
        // compressed size, 3 MB Free / 10 MB Paid); axum's 2 MB default would cut them off.
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(state);
    let listener =
        match tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on 127.0.0.1:{port}: {e}");
                std::process::exit(1);
            }
        };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!("cloudflare-api listening on http://{addr}/client/v4");
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
