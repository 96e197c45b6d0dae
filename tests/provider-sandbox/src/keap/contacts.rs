//! Keap REST v2 contacts: `GET /crm/rest/v2/contacts` with `page_size`/`page_token`,
//! `order_by` and `filter` (keap-sdk `ListContacts`:
//! <https://github.com/infusionsoft/keap-sdk/blob/main/sdks/v2/swagger.yml>), plus the
//! sandbox-only control handlers that read and edit the data.
//!
//! Contacts are kept as pre-serialised JSON plus the few fields that sorting and filtering
//! need, so 100,000 of them cost about 120 MB and a page is a string concatenation.
//!
//! Pagination is keyset-based ([`crate::keap::pagination`]): a page token carries the order,
//! the filter and the last `(sort key, id)` seen, so a walk returns every matching record
//! exactly once even when thousands share one `update_time` (bulk imports).

use std::cmp::Ordering;
use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::control::{parse_json_body, ControlError};
use crate::keap::model::Contact;
use crate::keap::pagination::{self, PageToken};
use crate::keap::{authenticate, KeapError};
use crate::seed;
use crate::state::{read, write, SharedState};
use crate::time::{format_ms, parse_ms};

pub use crate::keap::pagination::{Direction, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

/// Properties the v2 `fields` parameter may name (keap-sdk `ListContacts`).
#[rustfmt::skip]
const CONTACT_FIELDS: &[&str] = &[
    "addresses", "anniversary_date", "birth_date", "company", "contact_type", "create_time",
    "custom_fields", "email_addresses", "family_name", "fax_numbers", "given_name", "id",
    "job_title", "leadsource_id", "links", "middle_name", "notes", "origin", "owner_id",
    "phone_numbers", "preferred_locale", "preferred_name", "prefix", "referral_code",
    "score_value", "social_accounts", "source_type", "spouse_name", "suffix", "tag_ids",
    "time_zone", "update_time", "utm_parameters", "website",
];
const FILTER_FIELDS: &str = "email, given_name, family_name, company_id, contact_ids, \
                             start_update_time, end_update_time";

/// One stored contact: its JSON and the keys the list endpoint sorts and filters on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactRecord {
    /// Numeric id.
    pub id: u64,
    /// `create_time` in unix ms.
    pub create_ms: i64,
    /// `update_time` in unix ms.
    pub update_ms: i64,
    /// First email address, lower-cased ("" when none).
    email: Box<str>,
    given_name: Box<str>,
    family_name: Box<str>,
    company_id: Option<Box<str>>,
    json: Box<str>,
}

fn str_field<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

impl ContactRecord {
    /// Indexes a contact given as JSON; it needs a numeric string `id` and RFC 3339
    /// `create_time` and `update_time`.
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let id = str_field(value, "id")
            .parse::<u64>()
            .map_err(|_| "contact id must be a numeric string".to_owned())?;
        let time = |key: &str| {
            parse_ms(str_field(value, key)).ok_or_else(|| format!("{key} must be RFC 3339"))
        };
        let email = value
            .get("email_addresses")
            .and_then(|list| list.get(0))
            .map_or("", |first| str_field(first, "email"))
            .to_lowercase();
        let company_id = value
            .get("company")
            .and_then(|c| c.get("id"))
            .and_then(Value::as_str)
            .map(Into::into);
        Ok(Self {
            id,
            create_ms: time("create_time")?,
            update_ms: time("update_time")?,
            email: email.into(),
            given_name: str_field(value, "given_name").into(),
            family_name: str_field(value, "family_name").into(),
            company_id,
            json: value.to_string().into(),
        })
    }

    /// Indexes a generated contact without a detour through `serde_json::Value` (which
    /// would double the start-up time for 100,000 contacts).
    pub fn from_contact(contact: &Contact) -> Result<Self, String> {
        let id = contact
            .id
            .parse::<u64>()
            .map_err(|_| "contact id must be a numeric string".to_owned())?;
        let time =
            |key: &str, text: &str| parse_ms(text).ok_or_else(|| format!("{key} must be RFC 3339"));
        let json = serde_json::to_string(contact).map_err(|e| e.to_string())?;
        Ok(Self {
            id,
            create_ms: time("create_time", &contact.create_time)?,
            update_ms: time("update_time", &contact.update_time)?,
            email: contact
                .email_addresses
                .first()
                .map_or_else(String::new, |e| e.email.to_lowercase())
                .into(),
            given_name: contact.given_name.as_str().into(),
            family_name: contact.family_name.as_str().into(),
            company_id: contact.company.as_ref().map(|c| c.id.as_str().into()),
            json: json.into(),
        })
    }

    /// The contact as Keap would send it.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The contact as a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or(Value::Null)
    }

    fn int_key(&self, field: SortField) -> i64 {
        match field {
            SortField::Id | SortField::Email => i64::try_from(self.id).unwrap_or(i64::MAX),
            SortField::CreateTime => self.create_ms,
            SortField::UpdateTime => self.update_ms,
        }
    }

    fn sort_key(&self, field: SortField) -> SortKey {
        match field {
            SortField::Email => SortKey::Str(self.email.to_string()),
            _ => SortKey::Int(self.int_key(field)),
        }
    }

    /// Where this record lies relative to a cursor in the given order (ascending sense).
    fn cmp_cursor(&self, field: SortField, cursor: &Cursor) -> Ordering {
        let by_key = match (&cursor.key, field) {
            (SortKey::Str(s), SortField::Email) => (*self.email).cmp(s.as_str()),
            (SortKey::Int(k), _) => self.int_key(field).cmp(k),
            // Tokens are checked on decode so the key type always matches the field.
            (SortKey::Str(_), _) => Ordering::Equal,
        };
        by_key.then(self.id.cmp(&cursor.id))
    }
}

/// A field contacts can be ordered by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortField {
    /// Numeric id (the default).
    #[default]
    Id,
    /// `create_time` (`date_created` in older docs).
    CreateTime,
    /// `update_time`.
    UpdateTime,
    /// First email address.
    Email,
}

/// An `order_by` value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// What to sort by; ties are always broken by id in the same direction.
    pub field: SortField,
    /// Which way.
    pub dir: Direction,
}

/// A parsed `filter` (all conditions must hold). Both update-time bounds are inclusive:
/// Keap does not document whether `end_update_time` is (UNCONFIRMED), and inclusive bounds
/// make a client that assumes exclusive ones see duplicates rather than miss records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_update_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_update_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    company_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    contact_ids: Option<BTreeSet<u64>>,
}

impl Filter {
    fn matches(&self, r: &ContactRecord) -> bool {
        self.start_update_ms.is_none_or(|s| r.update_ms >= s)
            && self.end_update_ms.is_none_or(|e| r.update_ms <= e)
            && self.email.as_deref().is_none_or(|e| *r.email == *e)
            && self
                .given_name
                .as_deref()
                .is_none_or(|n| r.given_name.eq_ignore_ascii_case(n))
            && self
                .family_name
                .as_deref()
                .is_none_or(|n| r.family_name.eq_ignore_ascii_case(n))
            && self
                .company_id
                .as_deref()
                .is_none_or(|c| r.company_id.as_deref() == Some(c))
            && self
                .contact_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&r.id))
    }

    /// Whether every record after `r` in this order is outside the update-time range, so a
    /// scan can stop.
    fn past_range(&self, order: Order, r: &ContactRecord) -> bool {
        if order.field != SortField::UpdateTime {
            return false;
        }
        match order.dir {
            Direction::Asc => self.end_update_ms.is_some_and(|e| r.update_ms > e),
            Direction::Desc => self.start_update_ms.is_some_and(|s| r.update_ms < s),
        }
    }
}

/// A sort-key value inside a page token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SortKey {
    /// Id or timestamp.
    Int(i64),
    /// Email.
    Str(String),
}

/// The last record a page ended on.
pub type Cursor = pagination::Cursor<SortKey>;

/// The request a page token belongs to.
#[derive(Debug, Serialize, Deserialize)]
struct TokenQuery {
    order: Order,
    filter: Filter,
}

/// A page token's request and cursor, if its sort key has the type its order needs.
fn decode_token(text: &str) -> Option<(TokenQuery, Cursor)> {
    let (query, cursor) = PageToken::<TokenQuery, SortKey>::decode(text)?;
    let key_fits = matches!(
        (query.order.field, &cursor.key),
        (SortField::Email, SortKey::Str(_))
            | (
                SortField::Id | SortField::CreateTime | SortField::UpdateTime,
                SortKey::Int(_)
            )
    );
    key_fits.then_some((query, cursor))
}

/// A parsed list request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    /// Records per page, 1..=1000.
    pub page_size: usize,
    /// Sort order.
    pub order: Order,
    /// Conditions.
    pub filter: Filter,
    /// Continue after this record (from `page_token`).
    pub after: Option<Cursor>,
    /// Properties to include (`fields`); all when `None`.
    pub fields: Option<BTreeSet<String>>,
}

impl ListQuery {
    /// Parses the raw query string of a list request.
    ///
    /// A page token fixes the order and filter it was issued for: a request may repeat them
    /// or leave them out, but a different value is a 400 (as in Google-style APIs, which Keap
    /// v2 follows), so a client bug cannot silently skip records.
    pub fn parse(raw: &str) -> Result<Self, KeapError> {
        let mut page_size = DEFAULT_PAGE_SIZE;
        let (mut order, mut filter, mut token, mut fields) = (None, None, None, None);
        for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            match key.as_ref() {
                "page_size" => page_size = pagination::parse_page_size(&value)?,
                // An empty token is what the last page returns: treat it as "from the start".
                "page_token" if !value.trim().is_empty() => token = Some(value.into_owned()),
                "order_by" if !value.trim().is_empty() => order = Some(parse_order(&value)?),
                "filter" if !value.trim().is_empty() => filter = Some(parse_filter(&value)?),
                "fields" if !value.trim().is_empty() => fields = Some(parse_fields(&value)?),
                // Unknown parameters are ignored, as HTTP APIs generally do.
                _ => {}
            }
        }
        let (order, filter, after) = match token {
            None => (order.unwrap_or_default(), filter.unwrap_or_default(), None),
            Some(text) => {
                let (token, cursor) = decode_token(&text)
                    .ok_or_else(|| KeapError::bad_request("Invalid page_token"))?;
                let (order, filter) =
                    pagination::pinned_by_token(order, filter, token.order, token.filter)?;
                (order, filter, Some(cursor))
            }
        };
        Ok(Self {
            page_size,
            order,
            filter,
            after,
            fields,
        })
    }
}

/// `id`, `update_time desc`, `create_time+asc`, ... (a `+` may arrive encoded as `%2B`).
fn parse_order(text: &str) -> Result<Order, KeapError> {
    let (field, dir) = pagination::parse_order(text, |word| match word {
        "id" => Ok(SortField::Id),
        "create_time" | "date_created" => Ok(SortField::CreateTime),
        "update_time" | "last_updated" => Ok(SortField::UpdateTime),
        "email" => Ok(SortField::Email),
        other => Err(KeapError::bad_request(format!(
            "Invalid order_by field '{other}': use id, create_time, update_time or email"
        ))),
    })?;
    Ok(Order { field, dir })
}

/// `start_update_time==2026-01-01T00:00:00Z;end_update_time==...` (already URL-decoded).
fn parse_filter(text: &str) -> Result<Filter, KeapError> {
    let mut filter = Filter::default();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, value)) = part.split_once("==") else {
            return Err(KeapError::bad_request(format!(
                "Invalid filter '{part}': expected field==value"
            )));
        };
        let (name, value) = (name.trim(), value.trim());
        let time = || {
            parse_ms(value).ok_or_else(|| {
                KeapError::bad_request(format!("Invalid {name} '{value}': expected RFC 3339"))
            })
        };
        match name {
            "start_update_time" => filter.start_update_ms = Some(time()?),
            "end_update_time" => filter.end_update_ms = Some(time()?),
            "email" => filter.email = Some(value.to_lowercase()),
            "given_name" => filter.given_name = Some(value.to_owned()),
            "family_name" => filter.family_name = Some(value.to_owned()),
            "company_id" => filter.company_id = Some(value.to_owned()),
            "contact_ids" => {
                let ids = value
                    .trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.trim_matches('"').parse::<u64>())
                    .collect::<Result<BTreeSet<_>, _>>()
                    .map_err(|_| KeapError::bad_request("contact_ids must be numeric ids"))?;
                filter.contact_ids = Some(ids);
            }
            other => {
                return Err(KeapError::bad_request(format!(
                    "Unknown filter field '{other}': allowed are {FILTER_FIELDS}"
                )))
            }
        }
    }
    Ok(filter)
}

fn parse_fields(text: &str) -> Result<BTreeSet<String>, KeapError> {
    let mut fields = BTreeSet::new();
    for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !CONTACT_FIELDS.contains(&name) {
            return Err(KeapError::bad_request(format!(
                "Unknown field '{name}' in fields"
            )));
        }
        fields.insert(name.to_owned());
    }
    // The id always comes back: a record without it is useless to a sync.
    fields.insert("id".to_owned());
    Ok(fields)
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page<'a> {
    /// The records, in order.
    pub items: Vec<&'a ContactRecord>,
    /// Token for the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

impl Page<'_> {
    /// The response body: `{"contacts":[...],"next_page_token":"..."}`. On the last page the
    /// token is `""`: Keap v2 follows Google's API design, where an empty string means "no
    /// more pages"; clients should treat `""`, `null` and a missing field alike.
    pub fn render(&self, fields: Option<&BTreeSet<String>>) -> String {
        let size: usize = self.items.iter().map(|r| r.json.len() + 1).sum();
        let mut out = String::with_capacity(size + 256);
        out.push_str("{\"contacts\":[");
        for (i, record) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match fields {
                None => out.push_str(record.json()),
                Some(fields) => out.push_str(&project(record.json(), fields)),
            }
        }
        out.push_str("],\"next_page_token\":");
        out.push_str(&Value::from(self.next_page_token.clone().unwrap_or_default()).to_string());
        out.push('}');
        out
    }
}

fn project(json: &str, fields: &BTreeSet<String>) -> String {
    match serde_json::from_str::<Map<String, Value>>(json) {
        Ok(mut map) => {
            map.retain(|k, _| fields.contains(k));
            Value::Object(map).to_string()
        }
        Err(_) => json.to_owned(),
    }
}

/// All contacts, sorted by id, with sort indexes for the other orders.
#[derive(Debug, Default)]
pub struct ContactStore {
    seed: u64,
    records: Vec<ContactRecord>,
    by_create: Vec<usize>,
    by_update: Vec<usize>,
    by_email: Vec<usize>,
}

impl ContactStore {
    /// Generates `count` contacts from `seed`.
    pub fn generate(seed: u64, count: usize) -> Self {
        let bulk = seed::bulk_import_times(seed);
        // Generated contacts always index; `filter_map` only avoids a panic path.
        let records = (0..count as u64)
            .filter_map(|index| {
                ContactRecord::from_contact(&seed::generate_contact(seed, index, &bulk)).ok()
            })
            .collect();
        let mut store = Self {
            seed,
            records,
            ..Self::default()
        };
        store.reindex();
        store
    }

    /// Number of contacts.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are no contacts.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// All contacts in id order.
    pub fn records(&self) -> &[ContactRecord] {
        &self.records
    }

    /// The contact with this id.
    pub fn get(&self, id: u64) -> Option<&ContactRecord> {
        self.position(id).map(|i| &self.records[i])
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.records.binary_search_by_key(&id, |r| r.id).ok()
    }

    fn reindex(&mut self) {
        let records = &self.records;
        let n = records.len();
        // Stable sorts over id-ordered positions: ties keep id order, which is the tie-break.
        self.by_create = (0..n).collect();
        self.by_create.sort_by_key(|&i| records[i].create_ms);
        self.by_update = (0..n).collect();
        self.by_update.sort_by_key(|&i| records[i].update_ms);
        self.by_email = (0..n).collect();
        self.by_email
            .sort_by(|&a, &b| records[a].email.cmp(&records[b].email));
    }

    fn at(&self, field: SortField, i: usize) -> &ContactRecord {
        let position = match field {
            SortField::Id => i,
            SortField::CreateTime => self.by_create[i],
            SortField::UpdateTime => self.by_update[i],
            SortField::Email => self.by_email[i],
        };
        &self.records[position]
    }

    /// One page of records for `query`.
    pub fn list(&self, query: &ListQuery) -> Page<'_> {
        let order = query.order;
        let field = order.field;
        let after = query
            .after
            .as_ref()
            .map(|c| move |r: &ContactRecord| r.cmp_cursor(field, c));
        let (items, more) = pagination::page(
            self.records.len(),
            |i| self.at(field, i),
            order.dir,
            after,
            query.page_size,
            |r| query.filter.past_range(order, r),
            |r| query.filter.matches(r),
        );
        let next_page_token = more.then(|| items.last()).flatten().map(|last| {
            let token = TokenQuery {
                order,
                filter: query.filter.clone(),
            };
            PageToken::encode(token, last.sort_key(field), last.id)
        });
        Page {
            items,
            next_page_token,
        }
    }

    /// Merges `patch` into a contact's top-level fields (`null` removes a field). Sets
    /// `update_time` to `now_ms` unless the patch sets it.
    pub fn patch(
        &mut self,
        id: u64,
        patch: &Map<String, Value>,
        now_ms: i64,
    ) -> Result<&ContactRecord, String> {
        let position = self
            .position(id)
            .ok_or_else(|| format!("no contact {id}"))?;
        if patch.contains_key("id") {
            return Err("id cannot change".to_owned());
        }
        let mut value = self.records[position].to_value();
        let Some(object) = value.as_object_mut() else {
            return Err("stored contact is not an object".to_owned());
        };
        merge(object, patch, now_ms);
        self.records[position] = ContactRecord::from_value(&value)?;
        self.reindex();
        Ok(&self.records[position])
    }

    /// Adds a contact with the next id: generated like the seed data, created now, then
    /// overlaid with `fields`.
    pub fn create(
        &mut self,
        fields: &Map<String, Value>,
        now_ms: i64,
    ) -> Result<&ContactRecord, String> {
        if fields.contains_key("id") {
            return Err("id is assigned by the sandbox".to_owned());
        }
        let id = self.records.last().map_or(1, |r| r.id + 1);
        let bulk = seed::bulk_import_times(self.seed);
        let base = seed::generate_contact(self.seed, id - 1, &bulk);
        let mut value = serde_json::to_value(base).map_err(|e| e.to_string())?;
        let Some(object) = value.as_object_mut() else {
            return Err("generated contact is not an object".to_owned());
        };
        object.insert("create_time".to_owned(), Value::from(format_ms(now_ms)));
        merge(object, fields, now_ms);
        self.records.push(ContactRecord::from_value(&value)?);
        self.reindex();
        Ok(&self.records[self.records.len() - 1])
    }

    /// Adds a contact made through the API: exactly `fields`, the next id, created and
    /// updated now.
    pub fn insert(
        &mut self,
        fields: &Map<String, Value>,
        now_ms: i64,
    ) -> Result<&ContactRecord, String> {
        let id = self.records.last().map_or(1, |r| r.id + 1);
        let mut object = fields.clone();
        object.retain(|_, v| !v.is_null());
        object.insert("id".to_owned(), Value::from(id.to_string()));
        object.insert("create_time".to_owned(), Value::from(format_ms(now_ms)));
        object.insert("update_time".to_owned(), Value::from(format_ms(now_ms)));
        self.records
            .push(ContactRecord::from_value(&Value::Object(object))?);
        self.reindex();
        Ok(&self.records[self.records.len() - 1])
    }

    /// Deletes a contact; returns whether it existed.
    pub fn delete(&mut self, id: u64) -> bool {
        let Some(position) = self.position(id) else {
            return false;
        };
        self.records.remove(position);
        self.reindex();
        true
    }

    /// Sets `update_time` of the given contacts to `update_ms` (unknown ids are skipped);
    /// returns how many changed. Lets tests pile many records onto one timestamp.
    pub fn set_update_time(&mut self, ids: &[u64], update_ms: i64) -> usize {
        let stamp = Value::from(format_ms(update_ms));
        let mut changed = 0;
        for &id in ids {
            let Some(position) = self.position(id) else {
                continue;
            };
            let mut value = self.records[position].to_value();
            if let Some(object) = value.as_object_mut() {
                object.insert("update_time".to_owned(), stamp.clone());
            }
            if let Ok(record) = ContactRecord::from_value(&value) {
                self.records[position] = record;
                changed += 1;
            }
        }
        self.reindex();
        changed
    }
}

fn merge(object: &mut Map<String, Value>, patch: &Map<String, Value>, now_ms: i64) {
    for (key, value) in patch {
        if value.is_null() {
            object.remove(key);
        } else {
            object.insert(key.clone(), value.clone());
        }
    }
    if !patch.contains_key("update_time") {
        object.insert("update_time".to_owned(), Value::from(format_ms(now_ms)));
    }
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /crm/rest/v2/contacts`.
pub async fn list(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, KeapError> {
    authenticate(&state, &headers, state.clock.now_ms())?;
    let query = ListQuery::parse(raw.as_deref().unwrap_or(""))?;
    let body = {
        let store = read(&state.keap.contacts);
        store.list(&query).render(query.fields.as_ref())
    };
    Ok(json_response(body))
}

/// `GET /crm/rest/v2/contacts/{contact_id}` (optional `fields`).
pub async fn get_one(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(contact_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, KeapError> {
    authenticate(&state, &headers, state.clock.now_ms())?;
    let fields = url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
        .find(|(k, v)| k == "fields" && !v.trim().is_empty())
        .map(|(_, v)| parse_fields(&v))
        .transpose()?;
    let id = contact_id
        .parse::<u64>()
        .map_err(|_| KeapError::bad_request("contact_id must be numeric"))?;
    let store = read(&state.keap.contacts);
    let record = store
        .get(id)
        .ok_or_else(|| KeapError::not_found(format!("Contact {id} not found")))?;
    let body = match &fields {
        None => record.json().to_owned(),
        Some(fields) => project(record.json(), fields),
    };
    Ok(json_response(body))
}

fn control_id(text: &str) -> Result<u64, ControlError> {
    text.parse()
        .map_err(|_| ControlError::bad_request("contact id must be numeric"))
}

/// Control API: `GET /__sandbox/keap/contacts/{id}`: the sandbox's current copy.
pub async fn control_get(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    let id = control_id(&id)?;
    let store = read(&state.keap.contacts);
    let record = store
        .get(id)
        .ok_or_else(|| ControlError::not_found(format!("no contact {id}")))?;
    Ok(json_response(record.json().to_owned()))
}

/// Control API: `PATCH /__sandbox/keap/contacts/{id}`: merge fields, bump `update_time`.
pub async fn control_patch(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ControlError> {
    let id = control_id(&id)?;
    let patch: Map<String, Value> = parse_json_body(&body)?;
    let now = state.clock.now_ms();
    let mut store = write(&state.keap.contacts);
    let record = store.patch(id, &patch, now).map_err(|e| {
        if e.starts_with("no contact") {
            ControlError::not_found(e)
        } else {
            ControlError::bad_request(e)
        }
    })?;
    Ok(json_response(record.json().to_owned()))
}

/// Control API: `POST /__sandbox/keap/contacts`: add a contact with the next id.
pub async fn control_create(
    State(state): State<SharedState>,
    body: Bytes,
) -> Result<Response, ControlError> {
    let fields: Map<String, Value> = if body.is_empty() {
        Map::new()
    } else {
        parse_json_body(&body)?
    };
    let now = state.clock.now_ms();
    let mut store = write(&state.keap.contacts);
    let record = store
        .create(&fields, now)
        .map_err(ControlError::bad_request)?;
    let mut response = json_response(record.json().to_owned());
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashSet;

    use serde_json::json;

    use super::*;
    use crate::time::SEED_BASE_MS;

    fn walk(store: &ContactStore, first_query: &str) -> (Vec<u64>, usize) {
        let mut ids = Vec::new();
        let mut pages = 0;
        let mut query = first_query.to_owned();
        loop {
            let q = ListQuery::parse(&query).unwrap();
            let page = store.list(&q);
            pages += 1;
            ids.extend(page.items.iter().map(|r| r.id));
            match page.next_page_token {
                Some(token) => query = format!("page_size={}&page_token={token}", q.page_size),
                None => break,
            }
        }
        (ids, pages)
    }

    fn assert_each_once(ids: &[u64], expected: usize) {
        let unique: HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "duplicates in walk");
        assert_eq!(ids.len(), expected, "walk length");
    }

    #[test]
    fn id_walk_with_page_size_1000_returns_everything_once() {
        let store = ContactStore::generate(42, 2500);
        let (ids, pages) = walk(&store, "page_size=1000");
        assert_eq!(pages, 3);
        assert_each_once(&ids, 2500);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn update_time_walk_with_shared_timestamps_is_stable() {
        let mut store = ContactStore::generate(42, 3000);
        // 1,500 contacts on one instant: more than a page, so only the id tie-break saves us.
        let shared: Vec<u64> = (1..=3000).filter(|id| id % 2 == 0).collect();
        assert_eq!(store.set_update_time(&shared, SEED_BASE_MS - 5_000), 1500);
        for order in ["update_time%20asc", "update_time+desc"] {
            let (ids, _) = walk(&store, &format!("page_size=1000&order_by={order}"));
            assert_each_once(&ids, 3000);
            let times: Vec<i64> = ids
                .iter()
                .map(|&id| store.get(id).unwrap().update_ms)
                .collect();
            if order.contains("asc") {
                assert!(times.windows(2).all(|w| w[0] <= w[1]));
            } else {
                assert!(times.windows(2).all(|w| w[0] >= w[1]));
            }
        }
        // Small pages across the shared run too.
        let (ids, _) = walk(&store, "page_size=7&order_by=update_time");
        assert_each_once(&ids, 3000);
    }

    #[test]
    fn update_time_filter_selects_inclusive_range() {
        let store = ContactStore::generate(42, 2000);
        let start = SEED_BASE_MS - 90 * 86_400_000;
        let end = SEED_BASE_MS - 30 * 86_400_000;
        let expected: HashSet<u64> = store
            .records()
            .iter()
            .filter(|r| r.update_ms >= start && r.update_ms <= end)
            .map(|r| r.id)
            .collect();
        assert!(!expected.is_empty());
        let filter = format!(
            "start_update_time%3D%3D{};end_update_time=={}",
            format_ms(start),
            format_ms(end)
        );
        for order in [
            "id",
            "update_time asc",
            "update_time desc",
            "email",
            "create_time desc",
        ] {
            let (ids, _) = walk(
                &store,
                &format!("page_size=100&order_by={order}&filter={filter}"),
            );
            assert_each_once(&ids, expected.len());
            assert_eq!(ids.into_iter().collect::<HashSet<_>>(), expected, "{order}");
        }
    }

    #[test]
    fn bad_parameters_are_400() {
        for query in [
            "page_size=0",
            "page_size=1001",
            "page_size=ten",
            "page_token=not-a-token",
            "order_by=given_name",
            "order_by=id%20sideways",
            "filter=favourite_color%3D%3Dblue",
            "filter=start_update_time%3D%3Dyesterday",
            "filter=start_update_time",
            "fields=shoe_size",
        ] {
            let err = ListQuery::parse(query).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{query}");
        }
        assert_eq!(ListQuery::parse("page_size=1000").unwrap().page_size, 1000);
        assert_eq!(ListQuery::parse("").unwrap().page_size, DEFAULT_PAGE_SIZE);
    }

    #[test]
    fn token_pins_order_and_filter() {
        let store = ContactStore::generate(42, 100);
        let q = ListQuery::parse("page_size=10&order_by=update_time desc").unwrap();
        let token = store.list(&q).next_page_token.unwrap();
        assert!(
            ListQuery::parse(&format!("page_token={token}&order_by=update_time%20desc")).is_ok()
        );
        let err = ListQuery::parse(&format!("page_token={token}&order_by=id")).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        let err = ListQuery::parse(&format!("page_token={token}&filter=given_name%3D%3DOlivia"))
            .unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn fields_projection_keeps_id() {
        let store = ContactStore::generate(42, 3);
        let q = ListQuery::parse("fields=given_name,update_time").unwrap();
        let body: Value = serde_json::from_str(&store.list(&q).render(q.fields.as_ref())).unwrap();
        let first = body["contacts"][0].as_object().unwrap();
        let keys: Vec<&str> = first.keys().map(String::as_str).collect();
        assert_eq!(keys, ["given_name", "id", "update_time"]);
        assert_eq!(body["next_page_token"], "");
    }

    #[test]
    fn both_indexing_paths_agree() {
        for contact in seed::generate_contacts(9, 200) {
            let direct = ContactRecord::from_contact(&contact).unwrap();
            let value = serde_json::to_value(&contact).unwrap();
            let via_value = ContactRecord::from_value(&value).unwrap();
            assert_eq!(direct.to_value(), via_value.to_value());
            let (mut a, mut b) = (direct, via_value);
            a.json = Box::from("");
            b.json = Box::from("");
            assert_eq!(a, b);
        }
    }

    #[test]
    fn patch_create_delete() {
        let mut store = ContactStore::generate(42, 10);
        let now = SEED_BASE_MS + 1000;
        let patch = json!({"given_name": "Zed", "notes": null});
        let r = store.patch(3, patch.as_object().unwrap(), now).unwrap();
        assert_eq!(r.update_ms, now);
        let v = r.to_value();
        assert_eq!(v["given_name"], "Zed");
        assert!(v.get("notes").is_none());
        // Now last in update order.
        let q = ListQuery::parse("order_by=update_time desc&page_size=1").unwrap();
        assert_eq!(store.list(&q).items[0].id, 3);

        let created = store.create(&Map::new(), now).unwrap();
        assert_eq!(created.id, 11);
        assert_eq!(created.create_ms, now);
        assert!(store.delete(11));
        assert!(!store.delete(11));
        assert!(store.patch(99, &Map::new(), now).is_err());
    }
}
