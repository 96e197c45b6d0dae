//! A user's instance processes the user's events: each event stored in `background_events`
//! is decided on (preferences, per-type rule and hourly budget), and when it warrants a
//! suggestion an agent run writes one (the model behind `MODEL_BASE_URL`, or templates),
//! recorded in `agent_runs` and linked to the event in one transaction, then pushed to the
//! user's live clients. Postgres is the queue: an event is pending until `processed_at` is
//! set, so a crash anywhere leaves it to the next alarm, and `agent_runs.event_id` is unique,
//! so it never gets two suggestions. The instance is woken by the instances that deliver
//! events ([`super::live::queue_notice`]) and by API retries.

use std::{collections::HashMap, time::Duration};

use edge_sync_shared::{
    bindings::workers::SYNC_COORDINATOR as WORKER,
    code_repos::connection::repo_connection_host,
    coordinator_api::LiveMessage,
    log::Level,
    suggestions::{
        build_prompt, content_for, decide, next_attempt, template_artifact, Artifact, ContentKind,
        Decision, Importance, ModelError, Next, PreferencesError, UserPreferences, TEMPLATE_MODEL,
    },
    Timestamp,
};
use edge_sync_worker_kit::{
    clock,
    log::{self, Emit},
    outbound, postgres, random,
};

use serde_json::Value;
use worker::Method;

use super::SyncCoordinator;
use crate::{
    config::AgentConfig,
    suggestions::store::{self, NewRun, PendingEvent, RunOutput, TemplateRun},
};

/// Events taken per pass (the alarm comes straight back while more wait).
const BATCH: i64 = 100;
/// Model calls per pass at most: the live clients hear of each pass's suggestions, and a
/// slow model does not hold a whole batch.
const MODEL_CALLS_PER_PASS: usize = 10;

/// What the instance remembers between alarms.
#[derive(serde::Serialize, serde::Deserialize)]
struct Processing {
    user_id: String,
    /// When to look at the user's pending events (again).
    due_at: Option<Timestamp>,
    /// Consecutive passes that could not reach Postgres.
    failures: u32,
    /// Counts the requests for a pass: a request that arrives while a pass runs (the pass
    /// awaits Postgres, and the instance takes other requests meanwhile) may concern an
    /// event the pass did not see, so the pass ends by scheduling another.
    #[serde(default)]
    requests: u64,
}

const KEY: &str = "processing";

/// When the next pass is due.
pub(super) fn next_due(
    store: &crate::store::Store,
    now: Timestamp,
) -> worker::Result<Option<Timestamp>> {
    Ok(store.get::<Processing>(KEY, now)?.and_then(|p| p.due_at))
}

/// How one event went.
enum Outcome {
    /// Nothing more to do for it.
    Settled(Option<LiveMessage>),
    /// Its run retries at this time.
    RetryAt(Timestamp),
}

/// Whether `event` gets a suggestion: its kind, importance and the preferences to write it
/// with, or why not. `counts` (suggestions per type in the last hour) grows with each
/// suggestion planned, so a batch respects the hourly budget too.
fn plan<'p>(
    event: &PendingEvent,
    preferences: &'p Result<UserPreferences, PreferencesError>,
    counts: &mut HashMap<String, u32>,
) -> Result<(ContentKind, Importance, &'p UserPreferences), String> {
    let preferences = preferences
        .as_ref()
        .map_err(|e| format!("invalid_preferences: {e}"))?;
    if event.run.is_some() {
        // A run exists (due to retry, or cut off): it was decided on before.
        let kind = content_for(&event.event_type).ok_or("no_content")?;
        return Ok((
            kind,
            preferences.rule_for(&event.event_type).importance,
            preferences,
        ));
    }
    let made = counts.entry(event.event_type.clone()).or_default();
    match decide(&event.event_type, preferences, *made) {
        Decision::Skip(reason) => Err(reason.as_str().to_owned()),
        Decision::Suggest { kind, importance } => {
            *made += 1;
            Ok((kind, importance, preferences))
        }
    }
}

impl SyncCoordinator {
    /// Asks for a pass over `user_id`'s pending events now.
    pub(super) async fn request_processing(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> worker::Result<()> {
        let mut state: Processing = self.store.get(KEY, now)?.unwrap_or(Processing {
            user_id: user_id.to_owned(),
            due_at: None,
            failures: 0,
            requests: 0,
        });
        state.due_at = Some(now);
        state.requests += 1;
        self.store.put(KEY, &state, None)?;
        self.alarm_no_later_than(now).await
    }

    /// Processes the user's pending events when a pass is due.
    pub(super) async fn process_due(&self, now: Timestamp) -> worker::Result<()> {
        let Some(mut state) = self.store.get::<Processing>(KEY, now)? else {
            return Ok(());
        };
        if state.due_at.is_none_or(|at| at > now) {
            return Ok(());
        }
        let agent = match self.config.agent() {
            Ok(agent) => agent,
            Err(e) => {
                // Nothing can be generated until the settings are fixed; events stay pending.
                log::event(WORKER, Level::Error, "agent_misconfigured")
                    .with("user_id", &state.user_id)
                    .with_reason(e.to_string())
                    .emit();
                state.due_at = Some(now.plus_millis(60_000));
                return self.store.put(KEY, &state, None);
            }
        };
        let next = match self.process_batch(&state.user_id, &agent).await {
            Ok(next) => {
                state.failures = 0;
                next
            }
            Err(reason) => {
                state.failures += 1;
                let delay = agent
                    .retry
                    .delay_ms(state.failures, random::unit_interval());
                log::event(WORKER, Level::Warn, "event_processing_failed")
                    .with("user_id", &state.user_id)
                    .with("failures", state.failures)
                    .with_reason(reason)
                    .emit();
                Some(clock::now().plus_millis(i64::try_from(delay).unwrap_or(i64::MAX)))
            }
        };
        // A request that came in while the pass ran wins over the pass's view of what is
        // left: another pass, now.
        let current = self.store.get::<Processing>(KEY, clock::now())?;
        match current.filter(|c| c.requests != state.requests) {
            Some(current) => {
                state.requests = current.requests;
                state.due_at = Some(clock::now());
            }
            None => state.due_at = next,
        }
        self.store.put(KEY, &state, None)
    }

    /// One pass: up to [`BATCH`] events; returns when to come back.
    async fn process_batch(
        &self,
        user_id: &str,
        agent: &AgentConfig,
    ) -> Result<Option<Timestamp>, String> {
        let client = postgres::connect(&self.env)
            .await
            .map_err(|e| e.to_string())?;
        let mut pending = store::pending_events(&client, user_id, BATCH).await?;
        if pending.is_empty() {
            return Ok(None);
        }
        // A failed build delivered by webhook names no failing job: its repository
        // connection's instance reads them (and their log tails) for the prompt.
        for event in pending.iter_mut().filter(|e| {
            e.event_type == "repo.build.failed" && e.event_data.get("failing_jobs").is_none()
        }) {
            let Some(connection) = event
                .connection_id
                .as_deref()
                .filter(|id| repo_connection_host(id).is_some())
            else {
                continue;
            };
            if let Some(context) = self.failing_jobs_of(connection, &event.event_data).await {
                event.event_data["failing_jobs"] = context;
                store::update_event_data(&client, &event.id, &event.event_data).await?;
            }
        }
        // Preferences the user's app wrote that are not acceptable suggest nothing (the
        // user may have meant to turn suggestions off); each event records why.
        let preferences = store::preferences(&client, user_id)
            .await?
            .inspect_err(|e| {
                log::event(WORKER, Level::Warn, "user_preferences_invalid")
                    .with("user_id", user_id)
                    .with_reason(e.to_string())
                    .emit();
            });
        let mut counts = match &preferences {
            Ok(_) => store::suggestions_last_hour(&client, user_id).await?,
            Err(_) => HashMap::new(),
        };
        let mut messages = Vec::new();
        let mut retry_at: Option<Timestamp> = None;
        let mut skips: Vec<(&str, String)> = Vec::new();
        let mut templated: Vec<TemplateRun> = Vec::new();
        let mut model_calls = 0;
        let mut more = i64::try_from(pending.len()).unwrap_or(i64::MAX) >= BATCH;
        for event in &pending {
            if model_calls == MODEL_CALLS_PER_PASS {
                more = true;
                break;
            }
            let (kind, importance, preferences) = match plan(event, &preferences, &mut counts) {
                Err(reason) => {
                    skips.push((&event.id, reason));
                    continue;
                }
                Ok(planned) => planned,
            };
            if agent.model.is_none() && event.run.is_none() {
                // Templates take no time: written together below, in one statement.
                let artifact =
                    template_artifact(kind, &event.event_type, &event.event_data, preferences);
                templated.push(TemplateRun {
                    run_id: random::uuid_v4().map_err(|e| e.to_string())?,
                    event_id: event.id.clone(),
                    event_type: event.event_type.clone(),
                    content_kind: kind.as_str(),
                    importance: importance.as_str(),
                    prompt: build_prompt(kind, &event.event_type, &event.event_data, preferences)
                        .to_stored(),
                    artifact,
                });
                continue;
            }
            model_calls += 1;
            match self
                .generate_one(
                    &client,
                    user_id,
                    preferences,
                    agent,
                    event,
                    kind,
                    importance,
                )
                .await?
            {
                Outcome::Settled(message) => messages.extend(message),
                Outcome::RetryAt(at) => {
                    retry_at = Some(retry_at.map_or(at, |t| t.min(at)));
                }
            }
        }
        store::skip_events(&client, &skips).await?;
        for (event_id, reason) in &skips {
            log::event(WORKER, Level::Info, "event_processed")
                .with("event_id", event_id)
                .with("suggestion", false)
                .with_reason(reason)
                .emit();
        }
        let written = store::template_runs(&client, user_id, &templated).await?;
        for run in &templated {
            if !written.contains(&run.run_id) {
                // The event already had a run (another pass made it): just settle it.
                store::settle_event(&client, &run.event_id).await?;
                continue;
            }
            messages.push(LiveMessage::Suggestion {
                id: run.run_id.clone(),
                event_id: run.event_id.clone(),
                event_type: run.event_type.clone(),
                title: run.artifact.title.clone(),
                model: TEMPLATE_MODEL.to_owned(),
            });
        }
        if !written.is_empty() {
            log::event(WORKER, Level::Info, "suggestions_generated")
                .with("user_id", user_id)
                .with("model", TEMPLATE_MODEL)
                .with("count", written.len())
                .emit();
        }
        self.push(&messages);
        if more {
            return Ok(Some(clock::now()));
        }
        // Runs retrying later (also ones of earlier passes).
        let later = store::next_retry_at(&client, user_id)
            .await?
            .map(Timestamp::from_millis);
        Ok(match (retry_at, later) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// The failing jobs of a failed build, from its repository connection's instance
    /// (`None` when the instance or the host cannot say: the suggestion goes on without).
    async fn failing_jobs_of(&self, connection_id: &str, event_data: &Value) -> Option<Value> {
        let mut response = super::send(
            &self.env,
            connection_id,
            Method::Post,
            "/internal/repo/build-context",
            event_data,
        )
        .await
        .ok()?;
        if response.status_code() != 200 {
            return None;
        }
        super::read::<Value>(&mut response)
            .await
            .ok()
            .filter(|jobs| jobs.as_array().is_some_and(|a| !a.is_empty()))
    }

    /// Makes the suggestion of one event through its agent run: claimed (created, or taken
    /// over when it was cut off or is due to retry), generated, recorded.
    #[allow(clippy::too_many_arguments)] // The run's inputs, each used once.
    async fn generate_one(
        &self,
        client: &tokio_postgres::Client,
        user_id: &str,
        preferences: &UserPreferences,
        agent: &AgentConfig,
        event: &PendingEvent,
        kind: ContentKind,
        importance: Importance,
    ) -> Result<Outcome, String> {
        let prompt = build_prompt(kind, &event.event_type, &event.event_data, preferences);
        let stored_prompt = prompt.to_stored();
        let model_name = agent
            .model
            .as_ref()
            .map_or_else(|| TEMPLATE_MODEL.to_owned(), |m| m.model.clone());
        let run_id = random::uuid_v4().map_err(|e| e.to_string())?;
        let claim = NewRun {
            run_id: &run_id,
            content_kind: kind.as_str(),
            importance: importance.as_str(),
            prompt: &stored_prompt,
            model: &model_name,
        };
        let Some((run_id, attempts_before)) =
            store::claim_run(client, user_id, event, &claim).await?
        else {
            store::settle_event(client, &event.id).await?;
            return Ok(Outcome::Settled(None));
        };
        let attempt = attempts_before + 1;
        let started = clock::now();
        let generated = match &agent.model {
            None => Ok((
                template_artifact(kind, &event.event_type, &event.event_data, preferences),
                0,
                0,
            )),
            Some(config) => {
                let request = config.chat_request(&prompt);
                let timeout = Duration::from_millis(agent.timeout_ms);
                match outbound::send(&request, timeout).await {
                    Ok(answer) => config
                        .parse_response(answer.status, answer.retry_after.as_deref(), &answer.body)
                        .map(|a| (Artifact::from_model(&a.content), a.tokens_in, a.tokens_out)),
                    Err(e) if e.0.starts_with("no answer within") => Err(ModelError::Timeout),
                    Err(e) => Err(ModelError::Network(e.0)),
                }
            }
        };
        let latency_ms = i32::try_from(clock::now().millis_since(started)).unwrap_or(i32::MAX);
        match generated {
            Ok((artifact, tokens_in, tokens_out)) => {
                let output = RunOutput {
                    model: &model_name,
                    output: artifact.to_json(),
                    tokens_in: i32::try_from(tokens_in).unwrap_or(i32::MAX),
                    tokens_out: i32::try_from(tokens_out).unwrap_or(i32::MAX),
                    latency_ms,
                    error: None,
                };
                self.succeeded(client, &run_id, event, attempt, &artifact, &output)
                    .await
            }
            Err(error) => {
                let reason = error.to_string();
                let now = clock::now();
                let attempts = u32::try_from(attempt).unwrap_or(u32::MAX);
                match next_attempt(&agent.retry, attempts, &error, now, random::unit_interval()) {
                    Next::RetryAt(at) => {
                        store::run_retrying(client, &run_id, attempt, &reason, at.as_millis())
                            .await?;
                        log::event(WORKER, Level::Warn, "agent_run_retrying")
                            .with("event_id", &event.id)
                            .with("run_id", &run_id)
                            .with("attempts", attempt)
                            .with("retry_in_ms", at.millis_since(now))
                            .with_reason(&reason)
                            .emit();
                        Ok(Outcome::RetryAt(at))
                    }
                    Next::Fail(why) if agent.fallback_to_templates => {
                        // The model is down: the templates write it, and the run says why.
                        let why = format!("model failed ({why}: {reason}); written from templates");
                        let artifact = template_artifact(
                            kind,
                            &event.event_type,
                            &event.event_data,
                            preferences,
                        );
                        let output = RunOutput {
                            model: TEMPLATE_MODEL,
                            output: artifact.to_json(),
                            tokens_in: 0,
                            tokens_out: 0,
                            latency_ms,
                            error: Some(&why),
                        };
                        self.succeeded(client, &run_id, event, attempt, &artifact, &output)
                            .await
                    }
                    Next::Fail(why) => {
                        let why = format!("{why}: {reason}");
                        store::run_failed(client, &run_id, &event.id, attempt, &why).await?;
                        log::event(WORKER, Level::Error, "agent_run_failed")
                            .with("event_id", &event.id)
                            .with("run_id", &run_id)
                            .with("attempts", attempt)
                            .with_reason(&why)
                            .emit();
                        Ok(Outcome::Settled(Some(LiveMessage::AgentRunFailed {
                            id: run_id,
                            event_id: event.id.clone(),
                            error: why,
                        })))
                    }
                }
            }
        }
    }

    /// Records a suggestion and links it to its event; the message for the live clients.
    async fn succeeded(
        &self,
        client: &tokio_postgres::Client,
        run_id: &str,
        event: &PendingEvent,
        attempt: i32,
        artifact: &Artifact,
        output: &RunOutput<'_>,
    ) -> Result<Outcome, String> {
        store::run_succeeded(client, run_id, &event.id, attempt, output).await?;
        log::event(WORKER, Level::Info, "suggestion_generated")
            .with("event_id", &event.id)
            .with("run_id", run_id)
            .with("event_type", &event.event_type)
            .with("model", output.model)
            .with("attempts", attempt)
            .with("latency_ms", output.latency_ms)
            .emit();
        Ok(Outcome::Settled(Some(LiveMessage::Suggestion {
            id: run_id.to_owned(),
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            title: artifact.title.clone(),
            model: output.model.to_owned(),
        })))
    }
}
