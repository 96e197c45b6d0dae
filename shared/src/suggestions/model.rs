//! The model call: an OpenAI-compatible Chat Completions request builder and response
//! parser (<https://platform.openai.com/docs/api-reference/chat/create>). Workers AI serves
//! the same API under `https://api.cloudflare.com/client/v4/accounts/{account_id}/ai/v1`
//! (<https://developers.cloudflare.com/workers-ai/configuration/open-ai-compatibility/>), so
//! one client covers both; the Worker's fetch adapter sends the [`HttpRequestSpec`].

use serde_json::{json, Value};

use super::prompt::Prompt;
use crate::oauth::HttpRequestSpec;
use crate::Secret;

/// `max_tokens` asked for: a suggestion is a page of Markdown.
pub const DEFAULT_MAX_TOKENS: u32 = 1_024;
/// `temperature` asked for: some variety in copy, little in checklists.
pub const DEFAULT_TEMPERATURE: f64 = 0.4;
/// Longest provider message kept in a [`ModelError`] (they reach logs and `agent_runs`).
const MAX_MESSAGE_CHARS: usize = 300;

/// Where and how to call the model (`MODEL_BASE_URL`, `MODEL_NAME`, secret `MODEL_API_KEY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    /// The API base without `/chat/completions`, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The model name, e.g. `gpt-4o-mini` or `@cf/meta/llama-3.1-8b-instruct`.
    pub model: String,
    /// The bearer key.
    pub api_key: Secret,
}

/// Why a [`ModelConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelConfigError {
    /// The base URL is not an absolute `https` URL (`http` only for localhost), or has a
    /// query or fragment.
    #[error("MODEL_BASE_URL must be an https URL without query (http only for localhost): {0}")]
    InvalidBaseUrl(String),
    /// No model name.
    #[error("MODEL_NAME is empty")]
    MissingModel,
    /// No API key.
    #[error("MODEL_API_KEY is empty")]
    MissingApiKey,
}

impl ModelConfig {
    /// A checked configuration; a trailing `/` on `base_url` is dropped.
    pub fn new(base_url: &str, model: &str, api_key: Secret) -> Result<Self, ModelConfigError> {
        let base = base_url.trim().trim_end_matches('/');
        let parsed =
            url::Url::parse(base).map_err(|_| ModelConfigError::InvalidBaseUrl(base.to_owned()))?;
        let local = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        let scheme_ok = parsed.scheme() == "https" || (parsed.scheme() == "http" && local);
        if !scheme_ok || parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(ModelConfigError::InvalidBaseUrl(base.to_owned()));
        }
        if model.trim().is_empty() {
            return Err(ModelConfigError::MissingModel);
        }
        if api_key.expose().trim().is_empty() {
            return Err(ModelConfigError::MissingApiKey);
        }
        Ok(Self {
            base_url: base.to_owned(),
            model: model.trim().to_owned(),
            api_key,
        })
    }

    /// `{base_url}/chat/completions`.
    pub fn endpoint(&self) -> String {
        format!("{}/chat/completions", self.base_url.trim_end_matches('/'))
    }

    /// The request for `prompt`: `POST {base_url}/chat/completions` with the bearer key and
    /// `{model, messages: [system, user], max_tokens, temperature}`.
    pub fn chat_request(&self, prompt: &Prompt) -> HttpRequestSpec {
        let body = json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.user},
            ],
            "max_tokens": DEFAULT_MAX_TOKENS,
            "temperature": DEFAULT_TEMPERATURE,
        });
        HttpRequestSpec {
            method: "POST",
            url: self.endpoint(),
            headers: vec![
                (
                    "Authorization".to_owned(),
                    format!("Bearer {}", self.api_key.expose()),
                ),
                ("Content-Type".to_owned(), "application/json".to_owned()),
                ("Accept".to_owned(), "application/json".to_owned()),
            ],
            body: body.to_string(),
        }
    }

    /// [`parse_chat_response`], with this configuration's model name when the answer names
    /// none.
    pub fn parse_response(
        &self,
        status: u16,
        retry_after: Option<&str>,
        body: &str,
    ) -> Result<ModelAnswer, ModelError> {
        let mut answer = parse_chat_response(status, retry_after, body)?;
        if answer.model.is_empty() {
            answer.model.clone_from(&self.model);
        }
        Ok(answer)
    }
}

/// A successful completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelAnswer {
    /// `choices[0].message.content`, non-empty.
    pub content: String,
    /// `usage.prompt_tokens` (0 when the provider reports no usage).
    pub tokens_in: u32,
    /// `usage.completion_tokens` (0 when the provider reports no usage).
    pub tokens_out: u32,
    /// The model that answered, as the provider names it (empty when it names none).
    pub model: String,
}

/// Why a model call gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// 429 (not for an exhausted quota): wait `retry_after_secs` when given, then retry.
    #[error("the model is rate limited{}", .retry_after_secs.map(|s| format!(" (retry after {s} s)")).unwrap_or_default())]
    RateLimited {
        /// `Retry-After` in whole seconds (rounded up), when sent as a number.
        retry_after_secs: Option<u64>,
    },
    /// 5xx or 408: the provider is down or overloaded; retry with backoff.
    #[error("the model is unavailable (HTTP {status})")]
    Unavailable {
        /// The status received.
        status: u16,
    },
    /// No answer in time (the Worker's deadline); retry with backoff.
    #[error("the model did not answer in time")]
    Timeout,
    /// The request never got an answer (connection refused, DNS, TLS); retry with backoff.
    #[error("the model could not be reached: {0}")]
    Network(String),
    /// A 2xx whose body is not a completion with content; retry (models do recover).
    #[error("the model's answer is malformed: {0}")]
    Malformed(String),
    /// Any other 4xx (bad key, unknown model, invalid request, exhausted quota): retrying
    /// the same request cannot help.
    #[error("the model rejected the request (HTTP {status}): {message}")]
    Rejected {
        /// The status received.
        status: u16,
        /// The provider's `error.message`, shortened.
        message: String,
    },
}

impl ModelError {
    /// Whether the same request may succeed later: everything but [`ModelError::Rejected`].
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ModelError::Rejected { .. })
    }

    /// A stable name for logs and metrics: `rate_limited`, `unavailable`, `timeout`,
    /// `network`, `malformed`, `rejected`.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelError::RateLimited { .. } => "rate_limited",
            ModelError::Unavailable { .. } => "unavailable",
            ModelError::Timeout => "timeout",
            ModelError::Network(_) => "network",
            ModelError::Malformed(_) => "malformed",
            ModelError::Rejected { .. } => "rejected",
        }
    }
}

/// Parses a Chat Completions answer from its status, `Retry-After` header and body.
///
/// 2xx: `choices[0].message.content` (a string, or content parts whose `text` is joined)
/// must be non-empty, else [`ModelError::Malformed`]; `usage` is optional. 429 is
/// [`ModelError::RateLimited`], except OpenAI's `insufficient_quota`, which no wait fixes
/// ([`ModelError::Rejected`]); 408 and 5xx are [`ModelError::Unavailable`]; other statuses
/// are [`ModelError::Rejected`] with the provider's `error.message` (OpenAI's
/// `{"error": {"message", "type", "param", "code"}}`; Workers AI's v4 `errors[0].message`).
pub fn parse_chat_response(
    status: u16,
    retry_after: Option<&str>,
    body: &str,
) -> Result<ModelAnswer, ModelError> {
    if !(200..300).contains(&status) {
        let value: Option<Value> = serde_json::from_str(body).ok();
        let code = value
            .as_ref()
            .and_then(|v| v.pointer("/error/code"))
            .and_then(Value::as_str);
        return Err(match status {
            429 if code != Some("insufficient_quota") => ModelError::RateLimited {
                retry_after_secs: retry_after.and_then(retry_after_secs),
            },
            408 | 500..=599 => ModelError::Unavailable { status },
            _ => ModelError::Rejected {
                status,
                message: error_message(value.as_ref(), status),
            },
        });
    }
    let value: Value = serde_json::from_str(body)
        .map_err(|_| ModelError::Malformed("the body is not JSON".to_owned()))?;
    let message = value
        .pointer("/choices/0/message")
        .ok_or_else(|| ModelError::Malformed("no choices[0].message".to_owned()))?;
    let content = match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    };
    if content.trim().is_empty() {
        let why = match message.get("refusal").and_then(Value::as_str) {
            Some(refusal) => format!("no content (refusal: {})", shorten(refusal)),
            None => "choices[0].message.content is empty".to_owned(),
        };
        return Err(ModelError::Malformed(why));
    }
    let tokens = |name: &str| {
        value
            .pointer(&format!("/usage/{name}"))
            .and_then(Value::as_u64)
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
    };
    Ok(ModelAnswer {
        content,
        tokens_in: tokens("prompt_tokens"),
        tokens_out: tokens("completion_tokens"),
        model: value
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    })
}

/// `Retry-After` as whole seconds, rounded up, when it is a number (an HTTP date would
/// need a clock; then the backoff policy decides).
pub fn retry_after_secs(header: &str) -> Option<u64> {
    let seconds: f64 = header.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| seconds.ceil() as u64)
}

/// The provider's error message, shortened, or `HTTP <status>`.
fn error_message(value: Option<&Value>, status: u16) -> String {
    let message = value.and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.pointer("/errors/0/message"))
            .or_else(|| v.get("error").filter(|e| e.is_string()))
            .and_then(Value::as_str)
    });
    message.map_or_else(|| format!("HTTP {status}"), shorten)
}

fn shorten(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// OpenAI's documented chat completion object
    /// (<https://platform.openai.com/docs/api-reference/chat/object>).
    const OPENAI_OK: &str = r#"{
      "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
      "object": "chat.completion",
      "created": 1741570283,
      "model": "gpt-4o-2024-08-06",
      "choices": [
        {
          "index": 0,
          "message": {
            "role": "assistant",
            "content": "The image shows a wooden boardwalk path running through a lush green field or meadow.",
            "refusal": null,
            "annotations": []
          },
          "logprobs": null,
          "finish_reason": "stop"
        }
      ],
      "usage": {
        "prompt_tokens": 1117,
        "completion_tokens": 46,
        "total_tokens": 1163,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
      },
      "service_tier": "default",
      "system_fingerprint": "fp_fc9f1d7035"
    }"#;

    /// Workers AI's OpenAI-compatible endpoint answers in the same shape.
    const WORKERS_AI_OK: &str = r##"{"id":"id-1741570283","object":"chat.completion","created":1741570283,"model":"@cf/meta/llama-3.1-8b-instruct","choices":[{"index":0,"message":{"role":"assistant","content":"# Hello\n\nHi there."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":25,"completion_tokens":12,"total_tokens":37}}"##;

    /// OpenAI's error object (<https://platform.openai.com/docs/guides/error-codes>).
    const INVALID_KEY: &str = r#"{"error":{"message":"Incorrect API key provided: sk-abc***xyz. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
    const RATE_LIMITED: &str = r#"{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-x on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    const NO_QUOTA: &str = r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
    const UNKNOWN_MODEL: &str = r#"{"error":{"message":"The model `gpt-9` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#;

    fn config() -> ModelConfig {
        ModelConfig::new(
            "https://api.openai.com/v1/",
            "gpt-4o-mini",
            Secret::new("sk-test"),
        )
        .unwrap()
    }

    #[test]
    fn builds_the_documented_request() {
        let prompt = Prompt {
            system: "sys".to_owned(),
            user: "Event x: write y.".to_owned(),
        };
        let request = config().chat_request(&prompt);
        assert_eq!(request.method, "POST");
        assert_eq!(request.url, "https://api.openai.com/v1/chat/completions");
        assert_eq!(request.header("authorization"), Some("Bearer sk-test"));
        assert_eq!(request.header("content-type"), Some("application/json"));
        let body: Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "sys"},
                    {"role": "user", "content": "Event x: write y."}
                ],
                "max_tokens": DEFAULT_MAX_TOKENS,
                "temperature": DEFAULT_TEMPERATURE
            })
        );
        assert!(!format!("{request:?}").contains("sk-test"));
        let workers_ai = ModelConfig::new(
            "https://api.cloudflare.com/client/v4/accounts/abc123/ai/v1",
            "@cf/meta/llama-3.1-8b-instruct",
            Secret::new("cf"),
        )
        .unwrap();
        assert_eq!(
            workers_ai.endpoint(),
            "https://api.cloudflare.com/client/v4/accounts/abc123/ai/v1/chat/completions"
        );
    }

    #[test]
    fn config_is_checked() {
        let key = || Secret::new("k");
        assert!(ModelConfig::new("http://127.0.0.1:8790/openai/v1", "m", key()).is_ok());
        for bad in [
            "",
            "api.openai.com/v1",
            "http://api.openai.com/v1",
            "https://x/v1?a=b",
            "ftp://x",
        ] {
            assert!(
                matches!(
                    ModelConfig::new(bad, "m", key()),
                    Err(ModelConfigError::InvalidBaseUrl(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            ModelConfig::new("https://x/v1", " ", key()),
            Err(ModelConfigError::MissingModel)
        );
        assert_eq!(
            ModelConfig::new("https://x/v1", "m", Secret::new("")),
            Err(ModelConfigError::MissingApiKey)
        );
    }

    #[test]
    fn parses_documented_answers() {
        let answer = parse_chat_response(200, None, OPENAI_OK).unwrap();
        assert!(answer.content.starts_with("The image shows"));
        assert_eq!((answer.tokens_in, answer.tokens_out), (1117, 46));
        assert_eq!(answer.model, "gpt-4o-2024-08-06");
        let answer = parse_chat_response(200, None, WORKERS_AI_OK).unwrap();
        assert_eq!(answer.content, "# Hello\n\nHi there.");
        assert_eq!((answer.tokens_in, answer.tokens_out), (25, 12));
        // No usage, no model: zeros, and the configured model.
        let bare = r#"{"choices":[{"message":{"role":"assistant","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#;
        let answer = config().parse_response(200, None, bare).unwrap();
        assert_eq!(answer.content, "ab");
        assert_eq!((answer.tokens_in, answer.tokens_out), (0, 0));
        assert_eq!(answer.model, "gpt-4o-mini");
    }

    #[test]
    fn classifies_failures() {
        let cases: Vec<(u16, Option<&str>, &str, ModelError)> = vec![
            (
                429,
                Some("20"),
                RATE_LIMITED,
                ModelError::RateLimited {
                    retry_after_secs: Some(20),
                },
            ),
            (
                429,
                Some("1.2"),
                RATE_LIMITED,
                ModelError::RateLimited {
                    retry_after_secs: Some(2),
                },
            ),
            (
                429,
                Some("Wed, 21 Oct 2015 07:28:00 GMT"),
                "",
                ModelError::RateLimited {
                    retry_after_secs: None,
                },
            ),
            (
                429,
                None,
                RATE_LIMITED,
                ModelError::RateLimited {
                    retry_after_secs: None,
                },
            ),
            (500, None, "oops", ModelError::Unavailable { status: 500 }),
            (503, Some("5"), "", ModelError::Unavailable { status: 503 }),
            (408, None, "", ModelError::Unavailable { status: 408 }),
            (
                200,
                None,
                "{\"id\": \"chatcmpl-1\", \"choi",
                ModelError::Malformed("the body is not JSON".to_owned()),
            ),
            (
                200,
                None,
                "{\"object\":\"chat.completion\",\"choices\":[]}",
                ModelError::Malformed("no choices[0].message".to_owned()),
            ),
            (
                200,
                None,
                r#"{"choices":[{"message":{"role":"assistant","content":"  "}}]}"#,
                ModelError::Malformed("choices[0].message.content is empty".to_owned()),
            ),
            (
                200,
                None,
                r#"{"choices":[{"message":{"role":"assistant","content":null,"refusal":"I can't help with that."}}]}"#,
                ModelError::Malformed("no content (refusal: I can't help with that.)".to_owned()),
            ),
        ];
        for (status, retry_after, body, expected) in cases {
            let error = parse_chat_response(status, retry_after, body).unwrap_err();
            assert_eq!(error, expected, "{status} {body}");
            assert!(error.is_retryable());
        }
        let rejected = parse_chat_response(401, None, INVALID_KEY).unwrap_err();
        assert!(
            matches!(&rejected, ModelError::Rejected { status: 401, message } if message.starts_with("Incorrect API key provided"))
        );
        assert!(!rejected.is_retryable());
        assert_eq!(rejected.kind(), "rejected");
        let quota = parse_chat_response(429, Some("1"), NO_QUOTA).unwrap_err();
        assert!(matches!(quota, ModelError::Rejected { status: 429, .. }));
        let model = parse_chat_response(404, None, UNKNOWN_MODEL).unwrap_err();
        assert_eq!(model.to_string(), "the model rejected the request (HTTP 404): The model `gpt-9` does not exist or you do not have access to it.");
        let v4 = r#"{"success":false,"errors":[{"code":7003,"message":"No route for that URI"}],"messages":[],"result":null}"#;
        assert_eq!(
            parse_chat_response(400, None, v4).unwrap_err(),
            ModelError::Rejected {
                status: 400,
                message: "No route for that URI".to_owned()
            }
        );
        assert_eq!(
            parse_chat_response(403, None, "<html>").unwrap_err(),
            ModelError::Rejected {
                status: 403,
                message: "HTTP 403".to_owned()
            }
        );
        assert!(ModelError::Timeout.is_retryable());
        assert!(ModelError::Network("refused".into()).is_retryable());
        assert_eq!(
            ModelError::RateLimited {
                retry_after_secs: Some(3)
            }
            .to_string(),
            "the model is rate limited (retry after 3 s)"
        );
    }
}
