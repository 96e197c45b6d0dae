//! A tiny local webhook receiver for the hook and webhook tests: an axum server on
//! 127.0.0.1 that records every request and answers with a chosen status, echoing
//! `X-Hook-Secret` (Keap's handshake) when told to.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How the receiver answers.
#[derive(Clone, Copy, Debug)]
pub(super) struct Mode {
    /// Send `X-Hook-Secret` back when a request carries one.
    pub echo: bool,
    /// Status to answer.
    pub status: u16,
}

/// Echoes the handshake secret and answers 200: a well-behaved Keap receiver.
pub(super) const ECHO: Mode = Mode {
    echo: true,
    status: 200,
};
/// Answers 200 without echoing: the handshake fails.
pub(super) const SILENT: Mode = Mode {
    echo: false,
    status: 200,
};

/// One request the receiver got.
#[derive(Clone, Debug)]
pub(super) struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone)]
struct Shared {
    mode: Arc<Mutex<Mode>>,
    seen: Arc<Mutex<Vec<Received>>>,
}

pub(super) struct Receiver {
    /// `http://127.0.0.1:<port>/hook`.
    pub url: String,
    shared: Shared,
    task: JoinHandle<()>,
}

async fn handle(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mode = *shared.mode.lock().unwrap();
    let secret = headers.get("x-hook-secret").cloned();
    shared.seen.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        headers,
        body: body.to_vec(),
    });
    let mut response = StatusCode::from_u16(mode.status).unwrap().into_response();
    if let (true, Some(secret)) = (mode.echo, secret) {
        response.headers_mut().insert("x-hook-secret", secret);
    }
    response
}

impl Receiver {
    pub async fn start(mode: Mode) -> Self {
        let shared = Shared {
            mode: Arc::new(Mutex::new(mode)),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, shared, task }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Waits (real time, up to 10 s) until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..1000 {
            let seen = self.received();
            if seen.len() >= n {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "receiver got {} requests, expected {n}",
            self.received().len()
        );
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
