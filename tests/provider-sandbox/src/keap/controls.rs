//! Control API for Keap data, generic over `contacts|opportunities|orders|tasks`
//! (nested under `/__sandbox/keap/{resource}`):
//!
//! | call | does |
//! | --- | --- |
//! | `GET /keap/{resource}` | `{"count": n, "ids": [...]}`: every current id, ascending |
//! | `POST /keap/{resource}` | add a record with the next id (body: fields to overlay) |
//! | `GET /keap/{resource}/{id}` | the current copy, as the REST API would send it |
//! | `PATCH /keap/{resource}/{id}` | merge top-level fields, bump the update time |
//! | `DELETE /keap/{resource}/{id}` | delete (gone from lists, REST GET answers 404) |
//! | `POST /keap/{resource}/update` | `{"ids":[..]}` or `{"count":N}` (the first N by id): rewrite a field, update time = now |
//! | `POST /keap/{resource}/touch` | `{"ids":[..],"update_time"?}`: set the update time (default now) |
//!
//! The field `update` rewrites: contacts `notes`, opportunities `next_action_notes`, orders
//! `notes`, tasks `description`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::control::{parse_json_body, ControlError};
use crate::keap::contacts;
use crate::keap::records::{edit_text, Resource};
use crate::state::{read, write, SharedState};
use crate::time::{format_ms, parse_ms};

/// A Keap resource the control API can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Contacts ([`crate::keap::contacts`]).
    Contacts,
    /// Opportunities, orders or tasks ([`crate::keap::records`]).
    Records(Resource),
}

impl Target {
    /// Parses the `{resource}` path segment.
    pub fn parse(text: &str) -> Result<Self, ControlError> {
        if text == "contacts" {
            return Ok(Self::Contacts);
        }
        Resource::from_plural(text)
            .map(Self::Records)
            .ok_or_else(|| {
                ControlError::not_found(format!(
                    "unknown Keap resource '{text}': use contacts, opportunities, orders or tasks"
                ))
            })
    }

    fn noun(self) -> &'static str {
        match self {
            Target::Contacts => "contact",
            Target::Records(Resource::Opportunities) => "opportunity",
            Target::Records(Resource::Orders) => "order",
            Target::Records(Resource::Tasks) => "task",
        }
    }
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// An id given as `"12"` or `12`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum IdInput {
    /// A JSON number.
    Number(u64),
    /// A numeric string.
    Text(String),
}

impl IdInput {
    /// The numeric id.
    pub fn id(&self) -> Result<u64, ControlError> {
        match self {
            IdInput::Number(n) => Ok(*n),
            IdInput::Text(t) => parse_id(t),
        }
    }
}

fn parse_id(text: &str) -> Result<u64, ControlError> {
    text.trim()
        .parse()
        .map_err(|_| ControlError::bad_request(format!("id '{text}' must be numeric")))
}

fn ids_of(inputs: &[IdInput]) -> Result<Vec<u64>, ControlError> {
    inputs.iter().map(IdInput::id).collect()
}

fn all_ids(state: &SharedState, target: Target) -> Vec<u64> {
    match target {
        Target::Contacts => read(&state.keap.contacts)
            .records()
            .iter()
            .map(|r| r.id)
            .collect(),
        Target::Records(resource) => read(state.keap.records(resource))
            .records()
            .iter()
            .map(|r| r.id)
            .collect(),
    }
}

/// `GET /__sandbox/keap/{resource}`.
pub async fn list_ids(
    State(state): State<SharedState>,
    Path(resource): Path<String>,
) -> Result<Json<Value>, ControlError> {
    let ids = all_ids(&state, Target::parse(&resource)?);
    Ok(Json(json!({"count": ids.len(), "ids": ids})))
}

/// `POST /__sandbox/keap/{resource}`.
pub async fn create(
    State(state): State<SharedState>,
    Path(resource): Path<String>,
    body: Bytes,
) -> Result<Response, ControlError> {
    let target = Target::parse(&resource)?;
    let Target::Records(resource) = target else {
        return contacts::control_create(State(state), body).await;
    };
    let fields: Map<String, Value> = if body.is_empty() {
        Map::new()
    } else {
        parse_json_body(&body)?
    };
    let now = state.clock.now_ms();
    let mut store = write(state.keap.records(resource));
    let record = store
        .create(&fields, now)
        .map_err(ControlError::bad_request)?;
    let mut response = json_response(record.json().to_owned());
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}

/// `GET /__sandbox/keap/{resource}/{id}`: the current copy, whatever the credentials.
pub async fn get_one(
    State(state): State<SharedState>,
    Path((resource, id)): Path<(String, String)>,
) -> Result<Response, ControlError> {
    let target = Target::parse(&resource)?;
    let Target::Records(resource) = target else {
        return contacts::control_get(State(state), Path(id)).await;
    };
    let id = parse_id(&id)?;
    let store = read(state.keap.records(resource));
    let record = store
        .get(id)
        .ok_or_else(|| ControlError::not_found(format!("no {} {id}", target.noun())))?;
    Ok(json_response(record.json().to_owned()))
}

/// `PATCH /__sandbox/keap/{resource}/{id}`.
pub async fn patch(
    State(state): State<SharedState>,
    Path((resource, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ControlError> {
    let target = Target::parse(&resource)?;
    let Target::Records(resource) = target else {
        return contacts::control_patch(State(state), Path(id), body).await;
    };
    let id = parse_id(&id)?;
    let fields: Map<String, Value> = parse_json_body(&body)?;
    let now = state.clock.now_ms();
    let mut store = write(state.keap.records(resource));
    if store.get(id).is_none() {
        return Err(ControlError::not_found(format!(
            "no {} {id}",
            target.noun()
        )));
    }
    let record = store
        .patch(id, &fields, now)
        .map_err(ControlError::bad_request)?;
    Ok(json_response(record.json().to_owned()))
}

/// `DELETE /__sandbox/keap/{resource}/{id}`.
pub async fn delete(
    State(state): State<SharedState>,
    Path((resource, id)): Path<(String, String)>,
) -> Result<StatusCode, ControlError> {
    let target = Target::parse(&resource)?;
    let id = parse_id(&id)?;
    let deleted = match target {
        Target::Contacts => write(&state.keap.contacts).delete(id),
        Target::Records(resource) => write(state.keap.records(resource)).delete(id),
    };
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ControlError::not_found(format!(
            "no {} {id}",
            target.noun()
        )))
    }
}

/// Body of `POST /__sandbox/keap/{resource}/update`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRequest {
    #[serde(default)]
    ids: Option<Vec<IdInput>>,
    #[serde(default)]
    count: Option<usize>,
}

/// `POST /__sandbox/keap/{resource}/update` `{"ids":[..]}` or `{"count":N}`: rewrites a
/// field of those records (the first N by id when no ids are given) and sets their update
/// time to the sandbox's now. Answers `{"ids":[changed..],"updated":n,"update_time":".."}`.
pub async fn update(
    State(state): State<SharedState>,
    Path(resource): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let target = Target::parse(&resource)?;
    let request: UpdateRequest = parse_json_body(&body)?;
    let wanted = match (&request.ids, request.count) {
        (Some(ids), None) => ids_of(ids)?,
        (None, Some(count)) => all_ids(&state, target).into_iter().take(count).collect(),
        _ => {
            return Err(ControlError::bad_request(
                "give exactly one of \"ids\" and \"count\"",
            ))
        }
    };
    let now = state.clock.now_ms();
    let changed = match target {
        Target::Contacts => {
            let mut store = write(&state.keap.contacts);
            let mut patch = Map::new();
            patch.insert("notes".to_owned(), Value::from(edit_text(now)));
            wanted
                .iter()
                .copied()
                .filter(|&id| store.patch(id, &patch, now).is_ok())
                .collect::<Vec<_>>()
        }
        Target::Records(resource) => write(state.keap.records(resource)).edit(&wanted, now),
    };
    Ok(Json(json!({
        "ids": changed,
        "updated": changed.len(),
        "update_time": format_ms(now),
    })))
}

/// Body of `POST /__sandbox/keap/{resource}/touch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TouchRequest {
    ids: Vec<IdInput>,
    /// RFC 3339; defaults to now.
    #[serde(default)]
    update_time: Option<String>,
}

/// `POST /__sandbox/keap/{resource}/touch` `{"ids":[..],"update_time":"..."}`: give many
/// records one update time (default now), e.g. to pile them onto one instant.
pub async fn touch(
    State(state): State<SharedState>,
    Path(resource): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let target = Target::parse(&resource)?;
    let request: TouchRequest = parse_json_body(&body)?;
    let ids = ids_of(&request.ids)?;
    let at = match &request.update_time {
        Some(text) => parse_ms(text)
            .ok_or_else(|| ControlError::bad_request("update_time must be RFC 3339"))?,
        None => state.clock.now_ms(),
    };
    let changed = match target {
        Target::Contacts => {
            let mut store = write(&state.keap.contacts);
            let known: Vec<u64> = ids
                .into_iter()
                .filter(|&id| store.get(id).is_some())
                .collect();
            store.set_update_time(&known, at);
            known
        }
        Target::Records(resource) => write(state.keap.records(resource)).set_update_time(&ids, at),
    };
    Ok(Json(json!({
        "ids": changed,
        "updated": changed.len(),
        "update_time": format_ms(at),
    })))
}
