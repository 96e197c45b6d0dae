//! The suggestions' rows in Postgres: `user_preferences`, `agent_runs` and the processing
//! columns of `background_events`. Every write that links a suggestion to its event happens
//! in one transaction, and `agent_runs.event_id` is unique, so an event has at most one run.

use std::collections::HashMap;

use edge_sync_shared::suggestions::{
    ActionError, ActionOutcome, Artifact, PreferencesError, RunStatus, SuggestionAction,
    SuggestionStatus, UserPreferences, TEMPLATE_MODEL,
};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::{Client, Row};

/// An error as text (the caller logs it and retries later).
fn text(e: tokio_postgres::Error) -> String {
    e.to_string()
}

/// An event of the user that waits to be processed, or whose agent run is due again.
#[derive(Debug)]
pub struct PendingEvent {
    /// `background_events.id`.
    pub id: String,
    /// Its type.
    pub event_type: String,
    /// Its data.
    pub event_data: Value,
    /// The connection it came from, if any.
    pub connection_id: Option<String>,
    /// Its agent run, when one exists (retrying, or cut off while running).
    pub run: Option<(String, i32)>,
}

/// The user's preferences (defaults when the user has none).
/// The user's own app may write the row through Supabase, so it is checked like a `PUT`:
/// `Ok(Err(why))` when it is not acceptable.
pub async fn preferences(
    client: &Client,
    user_id: &str,
) -> Result<Result<UserPreferences, PreferencesError>, String> {
    let row = client
        .query_opt(
            "SELECT auto_suggest, profile, vibe, rules FROM public.user_preferences
             WHERE user_id = $1",
            &[&user_id],
        )
        .await
        .map_err(text)?;
    Ok(match row {
        None => Ok(UserPreferences::default()),
        Some(row) => UserPreferences::from_stored(row.get(0), row.get(1), row.get(2), row.get(3)),
    })
}

/// Replaces the user's preferences.
pub async fn save_preferences(
    client: &Client,
    user_id: &str,
    preferences: &UserPreferences,
) -> Result<(), String> {
    let value = preferences.to_json();
    client
        .execute(
            "INSERT INTO public.user_preferences (user_id, auto_suggest, profile, vibe, rules, updated_at)
             VALUES ($1, ($2::jsonb->>'auto_suggest')::boolean, $2::jsonb->'profile', $2::jsonb->'vibe',
                     $2::jsonb->'rules', now())
             ON CONFLICT (user_id) DO UPDATE SET auto_suggest = excluded.auto_suggest,
                 profile = excluded.profile, vibe = excluded.vibe, rules = excluded.rules,
                 updated_at = now()",
            &[&user_id, &value],
        )
        .await
        .map_err(text)?;
    Ok(())
}

/// Up to `limit` of the user's events to process now, oldest first: events never processed,
/// events whose run was cut off in the middle (taken over), and runs due to retry.
/// Keeps what was added to an event's data before its suggestion was written (a failed
/// build's failing jobs and log tails), so the stored event shows what the prompt saw.
pub async fn update_event_data(
    client: &Client,
    event_id: &str,
    data: &Value,
) -> Result<(), String> {
    client
        .execute(
            "UPDATE public.background_events SET event_data = $2 WHERE id = $1::text::uuid",
            &[&event_id, data],
        )
        .await
        .map_err(text)?;
    Ok(())
}

pub async fn pending_events(
    client: &Client,
    user_id: &str,
    limit: i64,
) -> Result<Vec<PendingEvent>, String> {
    let rows = client
        .query(
            "SELECT e.id::text, e.event_type, e.event_data, r.id::text, r.attempts, e.connection_id
             FROM public.background_events e
             LEFT JOIN public.agent_runs r ON r.event_id = e.id
             WHERE e.user_id = $1 AND e.processed_at IS NULL
               AND (r.id IS NULL
                    OR (r.status = 'running'
                        AND (r.next_attempt_at IS NULL OR r.next_attempt_at <= now())))
             ORDER BY e.received_at, e.id
             LIMIT $2",
            &[&user_id, &limit],
        )
        .await
        .map_err(text)?;
    Ok(rows
        .iter()
        .map(|row| PendingEvent {
            id: row.get(0),
            event_type: row.get(1),
            event_data: row.get(2),
            connection_id: row.get(5),
            run: row
                .get::<_, Option<String>>(3)
                .map(|id| (id, row.get::<_, Option<i32>>(4).unwrap_or(0))),
        })
        .collect())
}

/// When the user's next retrying run is due, if any.
pub async fn next_retry_at(client: &Client, user_id: &str) -> Result<Option<i64>, String> {
    let row = client
        .query_one(
            "SELECT (extract(epoch FROM min(r.next_attempt_at)) * 1000)::bigint
             FROM public.agent_runs r JOIN public.background_events e ON e.id = r.event_id
             WHERE r.user_id = $1 AND r.status = 'running' AND r.next_attempt_at IS NOT NULL
               AND e.processed_at IS NULL",
            &[&user_id],
        )
        .await
        .map_err(text)?;
    Ok(row.get(0))
}

/// Suggestions made for the user in the last hour, by event type.
pub async fn suggestions_last_hour(
    client: &Client,
    user_id: &str,
) -> Result<HashMap<String, u32>, String> {
    let rows = client
        .query(
            "SELECT event_type, count(*) FROM public.agent_runs
             WHERE user_id = $1 AND status = 'succeeded' AND created_at > now() - interval '1 hour'
             GROUP BY event_type",
            &[&user_id],
        )
        .await
        .map_err(text)?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                u32::try_from(r.get::<_, i64>(1)).unwrap_or(u32::MAX),
            )
        })
        .collect())
}

/// Marks events processed without a suggestion, recording why (one statement).
pub async fn skip_events(client: &Client, skips: &[(&str, String)]) -> Result<(), String> {
    if skips.is_empty() {
        return Ok(());
    }
    let rows: Vec<Value> = skips
        .iter()
        .map(|(id, reason)| serde_json::json!({ "id": id, "note": reason }))
        .collect();
    client
        .execute(
            "UPDATE public.background_events e SET processed_at = now(), processing_note = r.note
             FROM jsonb_to_recordset($1::jsonb) AS r(id uuid, note text)
             WHERE e.id = r.id AND e.processed_at IS NULL",
            &[&Value::Array(rows)],
        )
        .await
        .map_err(text)?;
    Ok(())
}

/// A suggestion the templates wrote (no model call: created already succeeded).
#[derive(Debug)]
pub struct TemplateRun {
    /// Its id.
    pub run_id: String,
    /// The event.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// `ContentKind::as_str`.
    pub content_kind: &'static str,
    /// `Importance::as_str`.
    pub importance: &'static str,
    /// The prompt a model would have been sent (kept for comparison).
    pub prompt: String,
    /// What the templates wrote.
    pub artifact: Artifact,
}

/// Records template suggestions and links each to its event, in one statement (one
/// transaction); an event that already has a run is left out. Returns the runs written.
pub async fn template_runs(
    client: &Client,
    user_id: &str,
    runs: &[TemplateRun],
) -> Result<Vec<String>, String> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Value> = runs
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.run_id, "event_id": r.event_id, "event_type": r.event_type,
                "content_kind": r.content_kind, "importance": r.importance,
                "prompt": r.prompt, "output": r.artifact.to_json(),
            })
        })
        .collect();
    let written = client
        .query(
            "WITH run AS (
                 INSERT INTO public.agent_runs (id, user_id, event_id, event_type, content_kind,
                     importance, prompt, model, status, attempts, output, latency_ms)
                 SELECT r.id, $2, r.event_id, r.event_type, r.content_kind, r.importance, r.prompt,
                        $3, 'succeeded', 1, r.output, 0
                 FROM jsonb_to_recordset($1::jsonb) AS r(id uuid, event_id uuid, event_type text,
                      content_kind text, importance text, prompt text, output jsonb)
                 ON CONFLICT (event_id) DO NOTHING
                 RETURNING id, event_id)
             UPDATE public.background_events e SET suggestion_generated = true,
                 suggestion_id = run.id, processed_at = now(), processing_note = NULL
             FROM run WHERE e.id = run.event_id
             RETURNING run.id::text",
            &[&Value::Array(rows), &user_id, &TEMPLATE_MODEL],
        )
        .await
        .map_err(text)?;
    Ok(written.iter().map(|r| r.get(0)).collect())
}

/// What an agent run is created with.
#[derive(Debug)]
pub struct NewRun<'a> {
    /// A fresh id (used unless the event already has a run).
    pub run_id: &'a str,
    /// `ContentKind::as_str`.
    pub content_kind: &'a str,
    /// `Importance::as_str`.
    pub importance: &'a str,
    /// The stored prompt.
    pub prompt: &'a str,
    /// `template` or the model's name.
    pub model: &'a str,
}

/// Claims the event's agent run: creates it, or takes over one cut off in the middle or due
/// to retry (`next_attempt_at` cleared while it runs). `None` when the event already has a
/// finished run (nothing to do but mark the event).
pub async fn claim_run(
    client: &Client,
    user_id: &str,
    event: &PendingEvent,
    run: &NewRun<'_>,
) -> Result<Option<(String, i32)>, String> {
    let row = client
        .query_opt(
            "INSERT INTO public.agent_runs
                 (id, user_id, event_id, event_type, content_kind, importance, prompt, model, status, attempts)
             VALUES ($1::text::uuid, $2, $3::text::uuid, $4, $5, $6, $7, $8, 'running', 0)
             ON CONFLICT (event_id) DO UPDATE SET prompt = excluded.prompt,
                 model = excluded.model, next_attempt_at = NULL, updated_at = now()
             WHERE agent_runs.status = 'running'
             RETURNING id::text, attempts",
            &[
                &run.run_id,
                &user_id,
                &event.id,
                &event.event_type,
                &run.content_kind,
                &run.importance,
                &run.prompt,
                &run.model,
            ],
        )
        .await
        .map_err(text)?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Marks an event whose run had already finished as processed (linking a succeeded run).
pub async fn settle_event(client: &Client, event_id: &str) -> Result<(), String> {
    client
        .execute(
            "UPDATE public.background_events e SET processed_at = now(),
                 suggestion_generated = (r.status = 'succeeded'),
                 suggestion_id = CASE WHEN r.status = 'succeeded' THEN r.id END
             FROM public.agent_runs r
             WHERE e.id = $1::text::uuid AND r.event_id = e.id AND e.processed_at IS NULL",
            &[&event_id],
        )
        .await
        .map_err(text)?;
    Ok(())
}

/// What a successful run produced.
#[derive(Debug)]
pub struct RunOutput<'a> {
    /// `template` or the model's name.
    pub model: &'a str,
    /// `{title, markdown, text}`.
    pub output: Value,
    /// Prompt tokens (0 for templates).
    pub tokens_in: i32,
    /// Completion tokens.
    pub tokens_out: i32,
    /// Time spent generating, ms.
    pub latency_ms: i32,
    /// What went wrong on the way (the model failed and templates wrote it).
    pub error: Option<&'a str>,
}

/// Records a successful run and links it to its event, in one transaction.
pub async fn run_succeeded(
    client: &Client,
    run_id: &str,
    event_id: &str,
    attempts: i32,
    result: &RunOutput<'_>,
) -> Result<(), String> {
    crate::durable_object::in_transaction(client, async {
        client
            .execute(
                "UPDATE public.agent_runs SET status = 'succeeded', attempts = $2, model = $3,
                     output = $4, tokens_in = $5, tokens_out = $6, latency_ms = $7, error = $8,
                     next_attempt_at = NULL, updated_at = now()
                 WHERE id = $1::text::uuid",
                &[
                    &run_id,
                    &attempts,
                    &result.model,
                    &result.output,
                    &result.tokens_in,
                    &result.tokens_out,
                    &result.latency_ms,
                    &result.error,
                ],
            )
            .await
            .map_err(text)?;
        client
            .execute(
                "UPDATE public.background_events SET suggestion_generated = true,
                     suggestion_id = $2::text::uuid, processed_at = now(), processing_note = NULL
                 WHERE id = $1::text::uuid",
                &[&event_id, &run_id],
            )
            .await
            .map_err(text)?;
        Ok(())
    })
    .await
}

/// Records a failed attempt that will be retried at `at_ms` (epoch ms).
pub async fn run_retrying(
    client: &Client,
    run_id: &str,
    attempts: i32,
    error: &str,
    at_ms: i64,
) -> Result<(), String> {
    client
        .execute(
            "UPDATE public.agent_runs SET attempts = $2, error = $3,
                 next_attempt_at = to_timestamp($4::bigint / 1000.0), updated_at = now()
             WHERE id = $1::text::uuid",
            &[&run_id, &attempts, &error, &at_ms],
        )
        .await
        .map_err(text)?;
    Ok(())
}

/// Records a run that failed for good (visible, retryable by API) and marks its event
/// processed, in one transaction.
pub async fn run_failed(
    client: &Client,
    run_id: &str,
    event_id: &str,
    attempts: i32,
    error: &str,
) -> Result<(), String> {
    crate::durable_object::in_transaction(client, async {
        client
            .execute(
                "UPDATE public.agent_runs SET status = 'failed', attempts = $2, error = $3,
                     next_attempt_at = NULL, updated_at = now()
                 WHERE id = $1::text::uuid",
                &[&run_id, &attempts, &error],
            )
            .await
            .map_err(text)?;
        client
            .execute(
                "UPDATE public.background_events SET processed_at = now(),
                     processing_note = 'agent run failed'
                 WHERE id = $1::text::uuid",
                &[&event_id],
            )
            .await
            .map_err(text)?;
        Ok(())
    })
    .await
}

/// A suggestion (a succeeded agent run) as the API shows it.
#[derive(Debug, Serialize)]
pub struct SuggestionView {
    id: String,
    user_id: String,
    event_id: String,
    event_type: String,
    content_kind: String,
    importance: String,
    /// `new`, `accepted` or `dismissed`.
    status: String,
    model: String,
    title: Option<String>,
    markdown: Option<String>,
    text: Option<String>,
    created_at: String,
    actioned_at: Option<String>,
}

/// An agent run as the API shows it.
#[derive(Debug, Serialize)]
pub struct AgentRunView {
    id: String,
    user_id: String,
    event_id: String,
    event_type: String,
    content_kind: String,
    importance: String,
    status: String,
    /// When a running run's next attempt is due.
    next_attempt_at: Option<String>,
    model: String,
    attempts: i32,
    tokens_in: i32,
    tokens_out: i32,
    latency_ms: Option<i32>,
    error: Option<String>,
    prompt: String,
    output: Option<Value>,
    created_at: String,
    updated_at: String,
}

/// A timestamp column as ISO 8601 UTC text.
fn iso(column: &str) -> String {
    format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
}

/// The columns [`suggestion`] reads, in order.
fn suggestion_columns() -> String {
    format!(
        "id::text, user_id, event_id::text, event_type, content_kind, importance,
         suggestion_status, model, output->>'title', output->>'markdown', output->>'text', {}, {}",
        iso("created_at"),
        iso("actioned_at")
    )
}

fn suggestion(row: &Row) -> SuggestionView {
    SuggestionView {
        id: row.get(0),
        user_id: row.get(1),
        event_id: row.get(2),
        event_type: row.get(3),
        content_kind: row.get(4),
        importance: row.get(5),
        status: row.get(6),
        model: row.get(7),
        title: row.get(8),
        markdown: row.get(9),
        text: row.get(10),
        created_at: row.get(11),
        actioned_at: row.get(12),
    }
}

/// The user's suggestions (newest first), optionally of one status.
pub async fn suggestions(
    client: &Client,
    user_id: &str,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<SuggestionView>, String> {
    let rows = client
        .query(
            &format!(
                "SELECT {} FROM public.agent_runs
                 WHERE user_id = $1 AND status = 'succeeded'
                   AND ($2::text IS NULL OR suggestion_status = $2)
                 ORDER BY created_at DESC, id LIMIT $3",
                suggestion_columns()
            ),
            &[&user_id, &status, &limit],
        )
        .await
        .map_err(text)?;
    Ok(rows.iter().map(suggestion).collect())
}

/// One suggestion.
pub async fn suggestion_by_id(client: &Client, id: &str) -> Result<Option<SuggestionView>, String> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {} FROM public.agent_runs
                 WHERE id = $1::text::uuid AND status = 'succeeded'",
                suggestion_columns()
            ),
            &[&id],
        )
        .await
        .map_err(text)?;
    Ok(row.as_ref().map(suggestion))
}

/// How acting on a suggestion went.
#[derive(Debug)]
pub enum Actioned {
    /// Applied (or the same action again: nothing changed).
    Done {
        /// The user to notify.
        user_id: String,
        /// Whether anything changed.
        changed: bool,
    },
    /// No suggestion has that id.
    NotFound,
    /// It cannot be applied (the run has no suggestion yet, or the other action was taken).
    Refused(ActionError),
}

/// Applies `action` to suggestion `id` ([`SuggestionAction::apply`] decides) and marks its
/// event actioned, in one transaction.
pub async fn action(
    client: &Client,
    id: &str,
    action: SuggestionAction,
) -> Result<Actioned, String> {
    crate::durable_object::in_transaction(client, async {
        let row = client
            .query_opt(
                "SELECT user_id, status, suggestion_status, event_id::text FROM public.agent_runs
                 WHERE id = $1::text::uuid FOR UPDATE",
                &[&id],
            )
            .await
            .map_err(text)?;
        let Some(row) = row else {
            return Ok(Actioned::NotFound);
        };
        let user_id: String = row.get(0);
        let run = RunStatus::parse(row.get(1)).ok_or("unknown agent run status")?;
        let current =
            SuggestionStatus::parse(row.get(2)).ok_or("unknown suggestion status")?;
        let status = match action.apply(run, current) {
            Err(refused) => return Ok(Actioned::Refused(refused)),
            Ok(ActionOutcome::Unchanged(_)) => {
                return Ok(Actioned::Done {
                    user_id,
                    changed: false,
                })
            }
            Ok(ActionOutcome::Changed(status)) => status,
        };
        client
            .execute(
                "UPDATE public.agent_runs SET suggestion_status = $2, actioned_at = now(),
                     updated_at = now()
                 WHERE id = $1::text::uuid",
                &[&id, &status.as_str()],
            )
            .await
            .map_err(text)?;
        client
            .execute(
                "UPDATE public.background_events SET user_actioned = true WHERE id = $1::text::uuid",
                &[&row.get::<_, String>(3)],
            )
            .await
            .map_err(text)?;
        Ok(Actioned::Done {
            user_id,
            changed: true,
        })
    })
    .await
}

/// The agent runs (newest first), of one user and status when given.
pub async fn runs(
    client: &Client,
    user_id: Option<&str>,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<AgentRunView>, String> {
    let rows = client
        .query(
            &format!(
                "SELECT id::text, user_id, event_id::text, event_type, content_kind, importance,
                        status, {next}, model, attempts, tokens_in, tokens_out, latency_ms, error,
                        prompt, output, {created}, {updated}
                 FROM public.agent_runs
                 WHERE ($1::text IS NULL OR user_id = $1) AND ($2::text IS NULL OR status = $2)
                 ORDER BY created_at DESC, id LIMIT $3",
                next = iso("next_attempt_at"),
                created = iso("created_at"),
                updated = iso("updated_at"),
            ),
            &[&user_id, &status, &limit],
        )
        .await
        .map_err(text)?;
    Ok(rows
        .iter()
        .map(|row| AgentRunView {
            id: row.get(0),
            user_id: row.get(1),
            event_id: row.get(2),
            event_type: row.get(3),
            content_kind: row.get(4),
            importance: row.get(5),
            status: row.get(6),
            next_attempt_at: row.get(7),
            model: row.get(8),
            attempts: row.get(9),
            tokens_in: row.get(10),
            tokens_out: row.get(11),
            latency_ms: row.get(12),
            error: row.get(13),
            prompt: row.get(14),
            output: row.get(15),
            created_at: row.get(16),
            updated_at: row.get(17),
        })
        .collect())
}

/// Puts a failed run back in line (fresh attempts) and its event back to processing.
/// `None` when no failed run has that id.
pub async fn retry_failed(client: &Client, id: &str) -> Result<Option<String>, String> {
    crate::durable_object::in_transaction(client, async {
        let row = client
            .query_opt(
                "UPDATE public.agent_runs SET status = 'running', attempts = 0, error = NULL,
                     next_attempt_at = now(), updated_at = now()
                 WHERE id = $1::text::uuid AND status = 'failed'
                 RETURNING user_id, event_id::text",
                &[&id],
            )
            .await
            .map_err(text)?;
        let Some(row) = row else {
            return Ok(None);
        };
        client
            .execute(
                "UPDATE public.background_events SET processed_at = NULL, processing_note = NULL
                 WHERE id = $1::text::uuid",
                &[&row.get::<_, String>(1)],
            )
            .await
            .map_err(text)?;
        Ok(Some(row.get(0)))
    })
    .await
}
