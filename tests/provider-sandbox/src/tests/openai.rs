//! The OpenAI-compatible Chat Completions endpoint: auth, validation, the answer built from
//! the prompt, usage, faults and the request log.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};

use super::{harness, Harness, Reply};
use crate::config::DEFAULT_OPENAI_API_KEY as KEY;
use crate::openai::{answer_content, estimate_tokens, prompt_digest};

const CHAT: &str = "/openai/v1/chat/completions";

impl Harness {
    async fn chat(&self, key: Option<&str>, body: &str) -> Reply {
        let mut request = Request::post(CHAT).header(header::CONTENT_TYPE, "application/json");
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        self.send(request.body(Body::from(body.to_owned())).unwrap())
            .await
    }
}

fn prompt() -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are the proactive assistant of Edge Sync."},
            {"role": "user", "content": "Event shopify.product.created: write a short-video hook and marketing copy.\n\nEvent data: {}"}
        ],
        "max_tokens": 1024,
        "temperature": 0.4
    })
}

fn pairs(messages: &[(&str, &str)]) -> Vec<(String, String)> {
    messages
        .iter()
        .map(|(r, c)| ((*r).to_owned(), (*c).to_owned()))
        .collect()
}

#[tokio::test]
async fn answers_from_the_prompt_with_usage() {
    let h = harness(0);
    let reply = h.chat(Some(KEY), &prompt().to_string()).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["id"], "chatcmpl-sandbox-1");
    assert_eq!(body["choices"][0]["index"], 0);
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    let system = "You are the proactive assistant of Edge Sync.";
    let user = "Event shopify.product.created: write a short-video hook and marketing copy.\n\nEvent data: {}";
    let messages = pairs(&[("system", system), ("user", user)]);
    assert!(content.starts_with(
        "# Suggestion: Event shopify.product.created: write a short-video hook and marketing copy.\n"
    ));
    assert!(content.contains(&format!(
        "prompt-digest: {} (messages: 2)",
        prompt_digest(&messages)
    )));
    assert!(
        content.contains("Instructions followed: You are the proactive assistant of Edge Sync.")
    );
    assert_eq!(content, answer_content(&messages));
    let usage = &body["usage"];
    let prompt_tokens = estimate_tokens(&format!("{system}{user}"));
    assert_eq!(usage["prompt_tokens"], prompt_tokens);
    assert_eq!(usage["completion_tokens"], estimate_tokens(content));
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(prompt_tokens + estimate_tokens(content))
    );
    // Deterministic: the same prompt, the same content.
    let again = h.chat(Some(KEY), &prompt().to_string()).await.json();
    assert_eq!(again["choices"][0]["message"]["content"], content);
    assert_eq!(again["id"], "chatcmpl-sandbox-2");

    // What was sent is kept (never the key) and counted.
    let log = h.get("/__sandbox/openai/requests", None).await.json();
    assert_eq!(log.as_array().unwrap().len(), 2);
    assert_eq!(log[0]["body"], prompt());
    assert_eq!(log[0]["status"], 200);
    assert_eq!(log[0]["prompt_digest"], prompt_digest(&messages));
    assert!(!log.to_string().contains(KEY));
    let counters = h.get("/__sandbox/counters", None).await.json();
    assert_eq!(counters["requests"]["openai.chat.completions"], 2);
    let requests = h
        .get("/__sandbox/requests?endpoint=openai.chat.completions", None)
        .await
        .json();
    assert_eq!(requests.as_array().unwrap().len(), 2);
    let cleared = h
        .send(
            Request::delete("/__sandbox/openai/requests")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(cleared.status, StatusCode::OK);
    assert_eq!(
        h.get("/__sandbox/openai/requests", None).await.json(),
        json!([])
    );
}

#[tokio::test]
async fn content_parts_and_max_tokens() {
    let h = harness(0);
    let body = json!({
        "model": "@cf/meta/llama-3.1-8b-instruct",
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]},
            {"role": "assistant", "content": null},
            {"role": "tool", "content": "42"}
        ],
        "max_completion_tokens": 5
    });
    let reply = h.chat(Some(KEY), &body.to_string()).await;
    assert_eq!(reply.status, StatusCode::OK);
    let json = reply.json();
    assert_eq!(json["choices"][0]["finish_reason"], "length");
    // 5 tokens = 20 characters, cut mid-heading.
    assert_eq!(
        json["choices"][0]["message"]["content"],
        "# Suggestion: Hello "
    );
    assert_eq!(json["usage"]["completion_tokens"], 5);
}

#[tokio::test]
async fn the_key_is_checked() {
    let h = harness(0);
    let missing = h.chat(None, &prompt().to_string()).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    let error = &missing.json()["error"];
    assert!(error["message"]
        .as_str()
        .unwrap()
        .starts_with("You didn't provide an API key."));
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["param"], Value::Null);
    let wrong = h
        .chat(Some("sk-wrong-key-1234"), &prompt().to_string())
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let error = &wrong.json()["error"];
    assert_eq!(error["code"], "invalid_api_key");
    assert!(error["message"].as_str().unwrap().contains("sk-***1234"));
    assert!(!wrong.json().to_string().contains("sk-wrong-key-1234"));
    let models = h.get("/openai/v1/models", Some(KEY)).await;
    assert_eq!(models.status, StatusCode::OK);
    let list = models.json();
    assert_eq!(list["object"], "list");
    assert!(list["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "gpt-4o-mini" && m["object"] == "model"));
    assert_eq!(
        h.get("/openai/v1/models", Some("nope")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_configured_key_replaces_the_default() {
    let h = super::harness_with(crate::SandboxConfig {
        openai_api_key: crate::Secret::new("sk-configured"),
        log_requests: false,
        keap_contacts: 0,
        ..crate::SandboxConfig::default()
    });
    assert_eq!(
        h.chat(Some(KEY), &prompt().to_string()).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.chat(Some("sk-configured"), &prompt().to_string())
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn requests_are_validated_like_openai() {
    let h = harness(0);
    let message = |role: Value, content: Value| json!({"role": role, "content": content});
    // (body, status, error.param, error.code, part of error.message)
    type Case = (
        Value,
        StatusCode,
        Option<&'static str>,
        Option<&'static str>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            json!({"messages": [message(json!("user"), json!("hi"))]}),
            StatusCode::BAD_REQUEST,
            None,
            None,
            "you must provide a model parameter",
        ),
        (
            json!({"model": 4, "messages": []}),
            StatusCode::BAD_REQUEST,
            Some("model"),
            Some("invalid_type"),
            "expected a string, but got an integer",
        ),
        (
            json!({"model": "gpt-4o-mini"}),
            StatusCode::BAD_REQUEST,
            Some("messages"),
            Some("missing_required_parameter"),
            "Missing required parameter: 'messages'.",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": []}),
            StatusCode::BAD_REQUEST,
            Some("messages"),
            Some("empty_array"),
            "empty array",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": "hi"}),
            StatusCode::BAD_REQUEST,
            Some("messages"),
            Some("invalid_type"),
            "expected an array of objects, but got a string",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [message(json!("bot"), json!("hi"))]}),
            StatusCode::BAD_REQUEST,
            Some("messages[0].role"),
            Some("invalid_value"),
            "Invalid value: 'bot'.",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [{"content": "hi"}]}),
            StatusCode::BAD_REQUEST,
            Some("messages[0].role"),
            Some("missing_required_parameter"),
            "'messages[0].role'",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [message(json!("user"), json!("a")), {"role": "user"}]}),
            StatusCode::BAD_REQUEST,
            Some("messages[1].content"),
            Some("missing_required_parameter"),
            "'messages[1].content'",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [message(json!("user"), json!(5))]}),
            StatusCode::BAD_REQUEST,
            Some("messages[0].content"),
            Some("invalid_type"),
            "expected one of a string or array of objects, but got an integer",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [message(json!("user"), json!([{"type": "text"}]))]}),
            StatusCode::BAD_REQUEST,
            Some("messages[0].content[0].text"),
            Some("missing_required_parameter"),
            "content[0].text",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [message(json!("user"), json!("hi"))], "temperature": "hot"}),
            StatusCode::BAD_REQUEST,
            Some("temperature"),
            Some("invalid_type"),
            "expected a decimal, but got a string",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [message(json!("user"), json!("hi"))], "temperature": 3}),
            StatusCode::BAD_REQUEST,
            Some("temperature"),
            Some("decimal_above_max_value"),
            "Expected a value <= 2, but got 3",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [message(json!("user"), json!("hi"))], "max_tokens": "10"}),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
            Some("invalid_type"),
            "expected an integer, but got a string",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [message(json!("user"), json!("hi"))], "max_tokens": 0}),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
            Some("integer_below_min_value"),
            "Expected a value >= 1, but got 0",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [message(json!("user"), json!("hi"))], "max_tokens": 1.5}),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
            Some("invalid_type"),
            "but got a decimal",
        ),
        (
            json!({"model": "gpt-9", "messages": [message(json!("user"), json!("hi"))]}),
            StatusCode::NOT_FOUND,
            None,
            Some("model_not_found"),
            "The model `gpt-9` does not exist or you do not have access to it.",
        ),
    ];
    for (body, status, param, code, message) in cases {
        let reply = h.chat(Some(KEY), &body.to_string()).await;
        assert_eq!(reply.status, status, "{body}");
        let json = reply.json();
        let error = &json["error"];
        assert_eq!(error["type"], "invalid_request_error", "{body}");
        assert_eq!(error["param"].as_str(), param, "{body}");
        assert_eq!(error["code"].as_str(), code, "{body}");
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{body}: {error}"
        );
    }
    let not_json = h.chat(Some(KEY), "{\"model\": ").await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert!(not_json.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("We could not parse the JSON body"));
    let log = h.get("/__sandbox/openai/requests", None).await.json();
    assert_eq!(log[15]["error"], "model_not_found");
    assert_eq!(log[15]["status"], 404);
}

#[tokio::test]
async fn faults_on_demand() {
    let h = harness(0);
    for spec in [
        json!({"endpoint": "openai.chat.completions", "status": 429, "headers": {"Retry-After": "2"}}),
        json!({"endpoint": "openai.chat.completions", "status": 503}),
        json!({"endpoint": "openai.chat.completions", "status": 500}),
        // A 2xx fault without a body: a completion cut off mid-way.
        json!({"endpoint": "openai.chat.completions", "status": 200}),
    ] {
        let queued = h.post_json("/__sandbox/faults", spec).await;
        assert_eq!(queued.status, StatusCode::OK);
    }
    let body = prompt().to_string();

    let limited = h.chat(Some(KEY), &body).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.header("retry-after"), Some("2"));
    assert_eq!(limited.json()["error"]["code"], "rate_limit_exceeded");
    let overloaded = h.chat(Some(KEY), &body).await;
    assert_eq!(overloaded.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(overloaded.json()["error"]["type"], "server_error");
    let failed = h.chat(Some(KEY), &body).await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(failed.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("error while processing"));
    let malformed = h.chat(Some(KEY), &body).await;
    assert_eq!(malformed.status, StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&malformed.body).is_err());
    let fine = h.chat(Some(KEY), &body).await;
    assert_eq!(fine.status, StatusCode::OK);

    // Counted with their statuses; only the last reached the model.
    let counters = h.get("/__sandbox/counters", None).await.json();
    assert_eq!(counters["requests"]["openai.chat.completions"], 5);
    assert_eq!(counters["statuses"]["openai.chat.completions"]["429"], 1);
    assert_eq!(counters["statuses"]["openai.chat.completions"]["200"], 2);
    let log = h
        .get("/__sandbox/requests?endpoint=openai.chat.completions", None)
        .await
        .json();
    let faulted: Vec<bool> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["fault"].as_bool().unwrap())
        .collect();
    assert_eq!(faulted, [true, true, true, true, false]);
    assert_eq!(
        h.get("/__sandbox/openai/requests", None)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn slow_answers_on_demand() {
    let h = harness(0);
    h.post_json(
        "/__sandbox/faults",
        json!({"endpoint": "openai.chat.completions", "latency_ms": 300}),
    )
    .await;
    let started = std::time::Instant::now();
    let reply = h.chat(Some(KEY), &prompt().to_string()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert!(reply.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("# Suggestion:"));
}

/// The contract with the Workers: the shared crate's request builder is accepted as sent,
/// and its parser reads the sandbox's answers and faults as it reads OpenAI's.
mod contract {
    use edge_sync_shared::oauth::HttpRequestSpec;
    use edge_sync_shared::suggestions::{
        build_prompt, next_attempt, Artifact, ContentKind, ModelConfig, ModelError, Next,
        UserPreferences, AGENT_RETRY_POLICY,
    };
    use edge_sync_shared::{Secret, Timestamp};

    /// Where a local stack's `MODEL_BASE_URL` points (the port is irrelevant here).
    const BASE: &str = "http://127.0.0.1:8790";

    use super::*;

    /// Sends what the Worker's fetch adapter would: the spec's method, headers and body,
    /// to the sandbox standing in for the configured base URL.
    async fn send(h: &Harness, spec: &HttpRequestSpec) -> Reply {
        let path = spec.url.strip_prefix(BASE).unwrap();
        let mut request = Request::builder().method(spec.method).uri(path);
        for (name, value) in &spec.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        h.send(request.body(Body::from(spec.body.clone())).unwrap())
            .await
    }

    fn parse(
        config: &ModelConfig,
        reply: &Reply,
    ) -> Result<edge_sync_shared::suggestions::ModelAnswer, ModelError> {
        config.parse_response(
            reply.status.as_u16(),
            reply.header("retry-after"),
            std::str::from_utf8(&reply.body).unwrap(),
        )
    }

    #[tokio::test]
    async fn the_workers_client_round_trips() {
        let h = harness(0);
        let config = ModelConfig::new(
            &format!("{BASE}/openai/v1"),
            "gpt-4o-mini",
            Secret::new(KEY),
        )
        .unwrap();
        let data = json!({"title": "Copper Kettle", "vendor": "Kettle & Co", "access_token": "shpat_never"});
        let prompt = build_prompt(
            ContentKind::ProductLaunch,
            "shopify.product.created",
            &data,
            &UserPreferences::default(),
        );
        let spec = config.chat_request(&prompt);

        let answer = parse(&config, &send(&h, &spec).await).unwrap();
        let messages = vec![
            ("system".to_owned(), prompt.system.clone()),
            ("user".to_owned(), prompt.user.clone()),
        ];
        assert_eq!(answer.content, answer_content(&messages));
        assert_eq!(answer.model, "gpt-4o-mini");
        assert_eq!(
            u64::from(answer.tokens_in),
            estimate_tokens(&format!("{}{}", prompt.system, prompt.user))
        );
        let artifact = Artifact::from_model(&answer.content);
        assert_eq!(
            artifact.title,
            "Suggestion: Event shopify.product.created: write a short-video hook and marketing copy."
        );
        // What the sandbox received is what the crate built, without the secret.
        let log = h.get("/__sandbox/openai/requests", None).await.json();
        assert_eq!(
            log[0]["body"].to_string(),
            serde_json::from_str::<Value>(&spec.body)
                .unwrap()
                .to_string()
        );
        assert!(log[0]["body"]["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("Copper Kettle"));
        assert!(!log.to_string().contains("shpat_never"));

        // 429 with Retry-After, then success: one retry at the provider's time.
        h.post_json("/__sandbox/faults", json!({"endpoint": "openai.chat.completions", "status": 429, "headers": {"Retry-After": "2"}})).await;
        let error = parse(&config, &send(&h, &spec).await).unwrap_err();
        assert_eq!(
            error,
            ModelError::RateLimited {
                retry_after_secs: Some(2)
            }
        );
        let t0 = Timestamp::from_millis(1_767_225_600_000);
        assert_eq!(
            next_attempt(&AGENT_RETRY_POLICY, 1, &error, t0, 0.5),
            Next::RetryAt(t0.plus_millis(2_000))
        );
        assert!(parse(&config, &send(&h, &spec).await).is_ok());

        // 503, malformed, wrong key, unknown model.
        for (fault, expected_kind) in [
            (
                json!({"endpoint": "openai.chat.completions", "status": 503}),
                "unavailable",
            ),
            (
                json!({"endpoint": "openai.chat.completions", "status": 200}),
                "malformed",
            ),
        ] {
            h.post_json("/__sandbox/faults", fault).await;
            let error = parse(&config, &send(&h, &spec).await).unwrap_err();
            assert_eq!(error.kind(), expected_kind);
            assert!(error.is_retryable());
        }
        let wrong_key = ModelConfig::new(
            &format!("{BASE}/openai/v1"),
            "gpt-4o-mini",
            Secret::new("sk-wrong-0000"),
        )
        .unwrap();
        let error = parse(
            &wrong_key,
            &send(&h, &wrong_key.chat_request(&prompt)).await,
        )
        .unwrap_err();
        assert!(
            matches!(&error, ModelError::Rejected { status: 401, message } if message.starts_with("Incorrect API key provided"))
        );
        assert!(!error.is_retryable());
        let unknown =
            ModelConfig::new(&format!("{BASE}/openai/v1"), "gpt-9", Secret::new(KEY)).unwrap();
        let error = parse(&unknown, &send(&h, &unknown.chat_request(&prompt)).await).unwrap_err();
        assert!(matches!(error, ModelError::Rejected { status: 404, .. }));
    }
}
