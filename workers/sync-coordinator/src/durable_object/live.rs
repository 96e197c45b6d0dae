//! A user's instance (named [`user_instance`]) keeps the user's live clients: WebSockets
//! accepted with the hibernation API (<https://developers.cloudflare.com/durable-objects/best-practices/websockets/>),
//! so an idle user's instance is evicted from memory while its sockets stay open, and
//! Server-Sent Events streams for clients that cannot open a WebSocket (these keep the
//! instance in memory while open). Browsers open either with a one-time ticket issued here
//! to an authenticated caller.

use std::{cell::RefCell, rc::Rc};

use edge_sync_shared::{
    bindings::workers::SYNC_COORDINATOR as WORKER,
    coordinator_api::{
        live_ticket_key, CoordinatorError, LiveMessage, LiveTicket, UserNotice, LIVE_TICKET_TTL_MS,
    },
    log::Level,
    sync::RetryPolicy,
    Timestamp,
};
use edge_sync_worker_kit::{
    log::{self, Emit},
    random,
};
use futures::{channel::mpsc, StreamExt};
use worker::{Request, Response, WebSocketPair};

use super::{clock_now, SyncCoordinator};
use crate::{api_error::Handled, store::Store};

/// Backoff of a notice its user's instance did not take.
const NOTICE_RETRY: RetryPolicy = RetryPolicy {
    base_ms: 1_000,
    max_ms: 60_000,
    max_attempts: u32::MAX,
};

/// The instance that holds user `user_id`'s live clients and processes their events.
pub fn user_instance(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// Open Server-Sent Events streams of this instance (in memory: they end with it).
pub(super) type SseClients = Rc<RefCell<Vec<mpsc::UnboundedSender<String>>>>;

/// What a ticket was issued for.
#[derive(serde::Serialize, serde::Deserialize)]
struct TicketFor {
    user_id: String,
}

impl SyncCoordinator {
    /// Issues a one-time ticket for `user_id`'s live stream.
    pub(super) fn issue_ticket(&self, user_id: &str, now: Timestamp) -> Handled<LiveTicket> {
        let ticket = random::secret_hex::<32>()?;
        let expires_at = now.plus_millis(LIVE_TICKET_TTL_MS);
        self.store.purge_expired(now)?;
        self.store.put(
            &live_ticket_key(&ticket),
            &TicketFor {
                user_id: user_id.to_owned(),
            },
            Some(expires_at),
        )?;
        Ok(LiveTicket {
            ticket,
            expires_at,
            path: format!("/coordinator/users/{user_id}/live"),
        })
    }

    /// Opens `user_id`'s live stream with the request's `?ticket=` (spent here): a
    /// hibernatable WebSocket when the request asks to upgrade, otherwise Server-Sent Events.
    pub(super) fn open_stream(
        &self,
        req: &Request,
        user_id: &str,
        now: Timestamp,
    ) -> Handled<Response> {
        let ticket = super::query(req, "ticket")?
            .ok_or(CoordinatorError::Unauthorized("a live ticket is required"))?;
        let key = live_ticket_key(&ticket);
        let issued: Option<TicketFor> = self.store.get(&key, now)?;
        self.store.delete(&key)?;
        if issued.is_none_or(|t| t.user_id != user_id) {
            return Err(
                CoordinatorError::Unauthorized("unknown, spent or expired live ticket").into(),
            );
        }
        let websocket = req
            .headers()
            .get("Upgrade")?
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        log::event(WORKER, Level::Info, "live_stream_opened")
            .with("user_id", user_id)
            .with("kind", if websocket { "websocket" } else { "sse" })
            .emit();
        if websocket {
            let pair = WebSocketPair::new()?;
            self.state.accept_web_socket(&pair.server);
            return Ok(Response::from_websocket(pair.client)?);
        }
        let (sender, receiver) = mpsc::unbounded::<String>();
        // The first frame tells the client the stream is live (and flushes the headers).
        let _ = sender.unbounded_send(": connected\n\n".to_owned());
        self.sse.borrow_mut().push(sender);
        let body = receiver.map(|frame| Ok::<Vec<u8>, worker::Error>(frame.into_bytes()));
        let mut response = Response::from_stream(body)?;
        let headers = response.headers_mut();
        headers.set("Content-Type", "text/event-stream")?;
        headers.set("Cache-Control", "no-store")?;
        Ok(response)
    }

    /// Sends `messages` to every live client of this instance; clients that went away are
    /// dropped.
    pub(super) fn push(&self, messages: &[LiveMessage]) {
        if messages.is_empty() {
            return;
        }
        let frames: Vec<String> = messages
            .iter()
            .filter_map(|m| serde_json::to_string(m).ok())
            .collect();
        for socket in self.state.get_websockets() {
            for frame in &frames {
                if socket.send_with_str(frame).is_err() {
                    break;
                }
            }
        }
        self.sse.borrow_mut().retain(|client| {
            frames
                .iter()
                .all(|frame| client.unbounded_send(format!("data: {frame}\n\n")).is_ok())
        });
    }
}

/// Messages kept for a user's instance until it has taken them: a notice survives a failed
/// send (and a restart) and is sent again by the alarm, so every stored event reaches its
/// user's processing.
#[derive(serde::Serialize, serde::Deserialize)]
struct PendingNotice {
    messages: Vec<LiveMessage>,
    process: bool,
    /// When to send (again).
    due_at: Timestamp,
    attempts: u32,
    /// Bumped by every queueing: a send that raced one leaves the newer part behind.
    seq: u64,
}

/// Live messages kept per pending notice at most (older ones are dropped: they are
/// notifications, and the events themselves are in Postgres).
const MAX_PENDING_MESSAGES: usize = 200;

const NOTICE_PREFIX: &str = "user_notice:";

/// Queues `messages` for `user_id`'s instance (merged into a notice not yet sent).
pub(super) fn queue_notice(
    store: &Store,
    user_id: &str,
    messages: Vec<LiveMessage>,
    process: bool,
    now: Timestamp,
) -> worker::Result<()> {
    let key = format!("{NOTICE_PREFIX}{user_id}");
    let mut notice: PendingNotice = store.get(&key, now)?.unwrap_or(PendingNotice {
        messages: Vec::new(),
        process: false,
        due_at: now,
        attempts: 0,
        seq: 0,
    });
    notice.messages.extend(messages);
    let excess = notice.messages.len().saturating_sub(MAX_PENDING_MESSAGES);
    notice.messages.drain(..excess);
    notice.process |= process;
    notice.due_at = now;
    notice.seq += 1;
    store.put(&key, &notice, None)
}

/// When the earliest pending notice is due.
pub(super) fn next_notice(store: &Store, now: Timestamp) -> worker::Result<Option<Timestamp>> {
    Ok(store
        .list::<PendingNotice>(NOTICE_PREFIX, now)?
        .into_iter()
        .map(|(_, n)| n.due_at)
        .min())
}

/// Sends the notices that are due; one that fails is retried with backoff.
pub(super) async fn send_notices(
    store: &Store,
    env: &worker::Env,
    now: Timestamp,
) -> worker::Result<()> {
    for (key, mut notice) in store.list::<PendingNotice>(NOTICE_PREFIX, now)? {
        if notice.due_at > now {
            continue;
        }
        let user_id = key.trim_start_matches(NOTICE_PREFIX).to_owned();
        let body = UserNotice {
            user_id: user_id.clone(),
            messages: std::mem::take(&mut notice.messages),
            process: notice.process,
        };
        let sent = super::send(
            env,
            &user_instance(&user_id),
            worker::Method::Post,
            "/internal/user/notify",
            &body,
        )
        .await;
        match sent {
            Ok(response) if response.status_code() == 200 => {
                // Messages queued meanwhile stay for the next send.
                let current: Option<PendingNotice> = store.get(&key, clock_now())?;
                match current {
                    Some(mut later) if later.seq != notice.seq => {
                        let sent = body.messages.len().min(later.messages.len());
                        later.messages.drain(..sent);
                        store.put(&key, &later, None)?;
                    }
                    _ => store.delete(&key)?,
                }
            }
            failed => {
                let why = match failed {
                    Ok(r) => format!("user instance answered {}", r.status_code()),
                    Err(e) => e.to_string(),
                };
                // The stored notice still holds everything (and whatever was queued
                // meanwhile): only its schedule changes.
                let mut notice: PendingNotice = store.get(&key, clock_now())?.unwrap_or(notice);
                notice.attempts += 1;
                let delay = NOTICE_RETRY.delay_ms(notice.attempts, RetryPolicy::NO_JITTER);
                notice.due_at = now.plus_millis(i64::try_from(delay).unwrap_or(i64::MAX));
                log::event(WORKER, Level::Warn, "user_notice_failed")
                    .with("user_id", &user_id)
                    .with("attempts", notice.attempts)
                    .with_reason(why)
                    .emit();
                store.put(&key, &notice, None)?;
            }
        }
    }
    Ok(())
}
