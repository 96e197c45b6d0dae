//! An OpenAI-compatible Chat Completions endpoint, as the public API documents it
//! (<https://platform.openai.com/docs/api-reference/chat/create>), under `/openai/v1` in
//! place of `https://api.openai.com/v1` (or Workers AI's
//! `https://api.cloudflare.com/client/v4/accounts/{id}/ai/v1`,
//! <https://developers.cloudflare.com/workers-ai/configuration/open-ai-compatibility/>):
//!
//! - `POST /openai/v1/chat/completions`: `Authorization: Bearer <key>` checked against
//!   [`crate::SandboxConfig::openai_api_key`] (401 otherwise), the body validated (`model`
//!   required and one of [`MODELS`] (404 `model_not_found`), `messages` a non-empty array
//!   of `{role, content}` with `role` one of system, developer, user, assistant, tool and
//!   `content` a string or an array of content parts, `temperature` a number in 0..=2,
//!   `max_tokens`/`max_completion_tokens` an integer ≥ 1, no `stream`) with OpenAI's
//!   error object `{"error": {"message", "type", "param", "code"}}`;
//! - `GET /openai/v1/models`: the model list.
//!
//! The answer is deterministic and built from the prompt ([`answer_content`]): a Markdown
//! suggestion whose heading quotes the first line of the last user message and which ends
//! with `prompt-digest: <hex>` ([`prompt_digest`]), so tests can check what was sent.
//! Usage counts are characters / 4, rounded up (OpenAI's rule of thumb for English).
//! Every request that reaches the handler is kept (without the key) for
//! `GET /__sandbox/openai/requests`; faults (`openai.chat.completions`, `openai.models`)
//! come from `POST /__sandbox/faults` like every endpoint's: 429 with a `Retry-After`
//! header, 500/503, `latency_ms` alone for a slow answer, and `status: 200` without a body
//! for a malformed (truncated) completion.

use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::endpoint::Endpoint;
use crate::middleware::tagged;
use crate::state::{lock, SharedState};

/// Models the sandbox serves (any other name is `model_not_found`).
pub const MODELS: &[&str] = &[
    "gpt-4o-mini",
    "gpt-4o",
    "@cf/meta/llama-3.1-8b-instruct",
    "sandbox-echo",
];
/// Roles a message may have.
const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool"];
/// Largest request body read.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Requests kept for `GET /__sandbox/openai/requests`.
const LOG_CAPACITY: usize = 1_000;
/// `created` of the model list (a fixed date: the list never changes).
const MODELS_CREATED: i64 = 1_721_172_741;

/// The requests the endpoint received.
#[derive(Debug, Default)]
pub struct OpenAiState {
    log: Mutex<Vec<ChatRecord>>,
    seq: Mutex<u64>,
}

/// One chat request as received (the key is never kept).
#[derive(Debug, Clone, Serialize)]
pub struct ChatRecord {
    /// Order of arrival.
    pub seq: u64,
    /// Arrival time, unix ms (the sandbox clock).
    pub at_ms: i64,
    /// Status answered.
    pub status: u16,
    /// `error.code` (or `error.type`) of a refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The request body, as JSON (or the text when it was not JSON).
    pub body: Value,
    /// [`prompt_digest`] of the messages, when they were valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_digest: Option<String>,
    /// The answer's content, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

impl OpenAiState {
    fn next_seq(&self) -> u64 {
        let mut seq = lock(&self.seq);
        *seq += 1;
        *seq
    }

    fn record(&self, record: ChatRecord) {
        let mut log = lock(&self.log);
        if log.len() == LOG_CAPACITY {
            log.remove(0);
        }
        log.push(record);
    }

    /// Every kept request, oldest first.
    pub fn requests(&self) -> Vec<ChatRecord> {
        lock(&self.log).clone()
    }
}

/// The public routes.
pub fn router(state: &SharedState) -> Router<SharedState> {
    Router::new()
        .route(
            "/openai/v1/chat/completions",
            tagged(
                state,
                Endpoint::OpenAiChatCompletions,
                post(chat_completions),
            ),
        )
        .route(
            "/openai/v1/models",
            tagged(state, Endpoint::OpenAiModels, get(list_models)),
        )
}

/// An OpenAI error (`{"error": {"message", "type", "param", "code"}}`) with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<String>,
    code: Option<&'static str>,
}

impl ApiError {
    fn invalid(
        message: impl Into<String>,
        param: Option<&str>,
        code: Option<&'static str>,
    ) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_owned),
            code,
        }
    }

    fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// The body an injected fault answers with when it brings none: OpenAI's error object for
/// the status, or for a 2xx a completion cut off mid-way (a malformed answer).
pub fn default_fault_body(status: StatusCode) -> String {
    let (message, kind, code): (&str, &str, Option<&str>) = match status.as_u16() {
        200..=299 => {
            return r##"{"id":"chatcmpl-sandbox-truncated","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"# Trunc"##.to_owned();
        }
        401 => (
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        429 => (
            "Rate limit reached for requests. Please try again later.",
            "requests",
            Some("rate_limit_exceeded"),
        ),
        503 => (
            "The engine is currently overloaded, please try again later.",
            "server_error",
            None,
        ),
        500..=599 => (
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
        _ => (
            status.canonical_reason().unwrap_or("Error"),
            "invalid_request_error",
            None,
        ),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}}).to_string()
}

/// The key as OpenAI shows it in errors: the first 3 and last 4 characters.
fn masked(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "***".to_owned();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}***{tail}")
}

fn check_key(state: &SharedState, headers: &HeaderMap) -> Result<(), ApiError> {
    let unauthorized = |message: String, code| ApiError {
        status: StatusCode::UNAUTHORIZED,
        message,
        kind: "invalid_request_error",
        param: None,
        code,
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(key) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
    else {
        return Err(unauthorized(
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).".to_owned(),
            None,
        ));
    };
    if state.config.openai_api_key.matches(key) {
        return Ok(());
    }
    Err(unauthorized(
        format!(
            "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
            masked(key)
        ),
        Some("invalid_api_key"),
    ))
}

/// `GET /openai/v1/models`.
async fn list_models(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if let Err(e) = check_key(&state, &headers) {
        return e.into_response();
    }
    let data: Vec<Value> = MODELS
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": MODELS_CREATED, "owned_by": "sandbox"}))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// A valid request's parts.
struct Chat {
    model: String,
    messages: Vec<(String, String)>,
    max_tokens: Option<u64>,
}

/// JSON type names as OpenAI's messages use them.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a decimal",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The text of a message's content: a string, or content parts (`{"type":"text","text"}`).
fn content_text(content: &Value, param: &str) -> Result<String, ApiError> {
    match content {
        Value::String(text) => Ok(text.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let part_param = format!("{param}[{j}]");
                let kind = part.get("type").and_then(Value::as_str);
                match (kind, part.get("text")) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    (Some("text"), _) => {
                        return Err(ApiError::invalid(
                            format!("Missing required parameter: '{part_param}.text'."),
                            Some(&format!("{part_param}.text")),
                            Some("missing_required_parameter"),
                        ))
                    }
                    (Some(_), _) => {} // images, audio: accepted, not read
                    (None, _) => {
                        return Err(ApiError::invalid(
                            format!("Missing required parameter: '{part_param}.type'."),
                            Some(&format!("{part_param}.type")),
                            Some("missing_required_parameter"),
                        ))
                    }
                }
            }
            Ok(text)
        }
        other => Err(ApiError::invalid(
            format!(
                "Invalid type for '{param}': expected one of a string or array of objects, but got {} instead.",
                type_name(other)
            ),
            Some(param),
            Some("invalid_type"),
        )),
    }
}

fn validate(body: &Value) -> Result<Chat, ApiError> {
    let Some(object) = body.as_object() else {
        return Err(ApiError::invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            None,
            None,
        ));
    };
    let model = match object.get("model") {
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "you must provide a model parameter",
                None,
                None,
            ))
        }
        Some(Value::String(m)) => m.clone(),
        Some(other) => {
            return Err(ApiError::invalid(
                format!(
                    "Invalid type for 'model': expected a string, but got {} instead.",
                    type_name(other)
                ),
                Some("model"),
                Some("invalid_type"),
            ))
        }
    };
    let messages = match object.get("messages") {
        None => {
            return Err(ApiError::invalid(
                "Missing required parameter: 'messages'.",
                Some("messages"),
                Some("missing_required_parameter"),
            ))
        }
        Some(Value::Array(list)) if list.is_empty() => {
            return Err(ApiError::invalid(
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                Some("messages"),
                Some("empty_array"),
            ))
        }
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(ApiError::invalid(
                format!("Invalid type for 'messages': expected an array of objects, but got {} instead.", type_name(other)),
                Some("messages"),
                Some("invalid_type"),
            ))
        }
    };
    let mut parsed = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        if !message.is_object() {
            return Err(ApiError::invalid(
                format!(
                    "Invalid type for '{param}': expected an object, but got {} instead.",
                    type_name(message)
                ),
                Some(&param),
                Some("invalid_type"),
            ));
        }
        let role = match message.get("role") {
            None => {
                return Err(ApiError::invalid(
                    format!("Missing required parameter: '{param}.role'."),
                    Some(&format!("{param}.role")),
                    Some("missing_required_parameter"),
                ))
            }
            Some(Value::String(r)) if ROLES.contains(&r.as_str()) => r.clone(),
            Some(other) => {
                let shown = other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_owned);
                return Err(ApiError::invalid(
                    format!("Invalid value: '{shown}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."),
                    Some(&format!("{param}.role")),
                    Some("invalid_value"),
                ));
            }
        };
        let content_param = format!("{param}.content");
        let content = match message.get("content") {
            // An assistant message may carry tool calls instead of content.
            None | Some(Value::Null) if role == "assistant" => String::new(),
            None | Some(Value::Null) => {
                return Err(ApiError::invalid(
                    format!("Missing required parameter: '{content_param}'."),
                    Some(&content_param),
                    Some("missing_required_parameter"),
                ))
            }
            Some(content) => content_text(content, &content_param)?,
        };
        parsed.push((role, content));
    }
    match object.get("temperature") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => {
            let t = n.as_f64().unwrap_or(f64::NAN);
            if t > 2.0 {
                return Err(ApiError::invalid(
                    format!("Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got {n} instead."),
                    Some("temperature"),
                    Some("decimal_above_max_value"),
                ));
            }
            if t < 0.0 || t.is_nan() {
                return Err(ApiError::invalid(
                    format!("Invalid 'temperature': decimal below minimum value. Expected a value >= 0, but got {n} instead."),
                    Some("temperature"),
                    Some("decimal_below_min_value"),
                ));
            }
        }
        Some(other) => {
            return Err(ApiError::invalid(
                format!(
                    "Invalid type for 'temperature': expected a decimal, but got {} instead.",
                    type_name(other)
                ),
                Some("temperature"),
                Some("invalid_type"),
            ))
        }
    }
    let mut max_tokens = None;
    for name in ["max_tokens", "max_completion_tokens"] {
        match object.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => {
                let value = n.as_i64().unwrap_or(i64::MAX);
                if value < 1 {
                    return Err(ApiError::invalid(
                        format!("Invalid '{name}': integer below minimum value. Expected a value >= 1, but got {value} instead."),
                        Some(name),
                        Some("integer_below_min_value"),
                    ));
                }
                max_tokens = Some(u64::try_from(value).unwrap_or(u64::MAX));
            }
            Some(other) => {
                return Err(ApiError::invalid(
                    format!(
                        "Invalid type for '{name}': expected an integer, but got {} instead.",
                        type_name(other)
                    ),
                    Some(name),
                    Some("invalid_type"),
                ))
            }
        }
    }
    if object.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(ApiError::invalid(
            "The sandbox does not stream: send \"stream\": false or leave it out.",
            Some("stream"),
            Some("unsupported_value"),
        ));
    }
    if !MODELS.contains(&model.as_str()) {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("The model `{model}` does not exist or you do not have access to it."),
            kind: "invalid_request_error",
            param: None,
            code: Some("model_not_found"),
        });
    }
    Ok(Chat {
        model,
        messages: parsed,
        max_tokens,
    })
}

/// Hex SHA-256 (first 16 characters) of the messages, each written `role\ncontent\n` in
/// order: what `prompt-digest:` in the answer carries.
pub fn prompt_digest(messages: &[(String, String)]) -> String {
    let mut hasher = Sha256::new();
    for (role, content) in messages {
        hasher.update(role.as_bytes());
        hasher.update(b"\n");
        hasher.update(content.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())[..16].to_owned()
}

/// Tokens as OpenAI's rule of thumb counts them: characters / 4, rounded up (at least 1).
pub fn estimate_tokens(text: &str) -> u64 {
    u64::try_from(text.chars().count().div_ceil(4))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The answer to `messages`: a Markdown suggestion quoting the first line of the last user
/// message, naming the system instructions' first line, and ending with
/// `prompt-digest: <prompt_digest>` and the message count.
pub fn answer_content(messages: &[(String, String)]) -> String {
    let first_line = |text: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
            .chars()
            .take(200)
            .collect::<String>()
    };
    let user = messages
        .iter()
        .rev()
        .find(|(role, _)| role == "user")
        .map(|(_, c)| first_line(c))
        .unwrap_or_default();
    let system = messages
        .iter()
        .find(|(role, _)| role == "system" || role == "developer")
        .map(|(_, c)| first_line(c));
    let subject = if user.is_empty() {
        "your request".to_owned()
    } else {
        user.clone()
    };
    let mut out = format!("# Suggestion: {subject}\n\n");
    out.push_str(&format!("> {user}\n\n"));
    out.push_str("## What to do\n\n");
    out.push_str("1. Review the event above and decide who acts on it.\n");
    out.push_str("2. Use the draft below as a starting point.\n");
    out.push_str("3. Follow up within a day.\n\n");
    out.push_str("## Draft\n\n");
    out.push_str(&format!("A short, specific response to \"{subject}\".\n\n"));
    if let Some(system) = system {
        out.push_str(&format!("Instructions followed: {system}\n\n"));
    }
    out.push_str(&format!(
        "prompt-digest: {} (messages: {})\n",
        prompt_digest(messages),
        messages.len()
    ));
    out
}

/// `POST /openai/v1/chat/completions`.
async fn chat_completions(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seq = state.openai.next_seq();
    let at_ms = state.clock.now_ms();
    let body_json = serde_json::from_slice::<Value>(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let mut record = ChatRecord {
        seq,
        at_ms,
        status: 200,
        error: None,
        body: body_json.clone(),
        prompt_digest: None,
        answer: None,
    };
    let result = check_key(&state, &headers).and_then(|()| {
        if body.len() > MAX_BODY_BYTES {
            return Err(ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: "Request body too large.".to_owned(),
                kind: "invalid_request_error",
                param: None,
                code: None,
            });
        }
        validate(&body_json)
    });
    let response = match result {
        Err(error) => {
            record.status = error.status.as_u16();
            record.error = Some(error.code.unwrap_or(error.kind).to_owned());
            error.into_response()
        }
        Ok(chat) => {
            let digest = prompt_digest(&chat.messages);
            let mut content = answer_content(&chat.messages);
            let prompt_text: String = chat.messages.iter().map(|(_, c)| c.as_str()).collect();
            let prompt_tokens = estimate_tokens(&prompt_text);
            let mut finish_reason = "stop";
            if let Some(limit) = chat.max_tokens {
                let max_chars = usize::try_from(limit.saturating_mul(4)).unwrap_or(usize::MAX);
                if content.chars().count() > max_chars {
                    content = content.chars().take(max_chars).collect();
                    finish_reason = "length";
                }
            }
            let completion_tokens = estimate_tokens(&content);
            record.prompt_digest = Some(digest);
            record.answer = Some(content.clone());
            Json(json!({
                "id": format!("chatcmpl-sandbox-{seq}"),
                "object": "chat.completion",
                "created": at_ms.div_euclid(1000),
                "model": chat.model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": null},
                    "logprobs": null,
                    "finish_reason": finish_reason,
                }],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
                "system_fingerprint": "fp_sandbox",
            }))
            .into_response()
        }
    };
    state.openai.record(record);
    response
}

/// `GET /__sandbox/openai/requests`: the chat requests received, oldest first.
pub async fn control_requests(State(state): State<SharedState>) -> Json<Vec<ChatRecord>> {
    Json(state.openai.requests())
}

/// `DELETE /__sandbox/openai/requests`: forgets them.
pub async fn control_clear(State(state): State<SharedState>) -> Json<Value> {
    lock(&state.openai.log).clear();
    Json(json!({"status": "ok"}))
}
