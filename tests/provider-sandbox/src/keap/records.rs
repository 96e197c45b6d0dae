//! Keap REST v2 opportunities, orders and tasks: `GET /crm/rest/v2/{resource}` and
//! `GET /crm/rest/v2/{resource}/{id}`, with the same credentials, quota headers,
//! `page_size`/`page_token` pagination and error shapes as contacts (see
//! [`crate::keap::contacts`]; both use [`crate::keap::pagination`]).
//!
//! What each resource accepts follows keap-sdk's `sdks/v2/swagger.yml` (`listOpportunities`,
//! `listOrders`, `listTasks`;
//! <https://github.com/infusionsoft/keap-sdk/blob/main/sdks/v2/swagger.yml>):
//!
//! | resource | timestamps | update-time filter | `order_by` |
//! | --- | --- | --- | --- |
//! | opportunities | `created_time`, `last_updated_time` | none | `id`, `created_time`, `update_time` |
//! | orders | `creation_time`, `modification_time` | `modified_since_time`, `modified_until_time` | `id`, `order_time`, `modification_time` |
//! | tasks | `create_time`, `modification_time` | `since_time`, `until_time` | `id`, `create_time`, `update_time` |
//!
//! Time filters go in `filter` (`filter=modified_since_time%3D%3D<ISO>`, as Keap documents)
//! or, as a convenience, as plain query parameters (`modified_since_time=<ISO>`); both
//! bounds are inclusive. Which timestamp the tasks filters apply to is UNCONFIRMED
//! (Keap's docs don't say): the sandbox applies them to `modification_time`. Ties on the sort key
//! are broken by id, so every record is listed exactly once however many share a timestamp.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::endpoint::Endpoint;
use crate::keap::pagination::{self, Direction, PageToken, DEFAULT_PAGE_SIZE};
use crate::keap::{authenticate, records_seed, KeapError};
use crate::seed;
use crate::state::{read, SharedState};
use crate::time::{format_ms, parse_ms};

/// A Keap resource listed through this module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// `/crm/rest/v2/opportunities`.
    Opportunities,
    /// `/crm/rest/v2/orders`.
    Orders,
    /// `/crm/rest/v2/tasks`.
    Tasks,
}

impl Resource {
    /// Every resource.
    pub const ALL: [Resource; 3] = [Resource::Opportunities, Resource::Orders, Resource::Tasks];

    /// The path segment and response key (`opportunities`, ...).
    pub fn plural(self) -> &'static str {
        match self {
            Resource::Opportunities => "opportunities",
            Resource::Orders => "orders",
            Resource::Tasks => "tasks",
        }
    }

    /// Looks a resource up by its path segment.
    pub fn from_plural(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.plural() == text)
    }

    fn noun(self) -> &'static str {
        match self {
            Resource::Opportunities => "Opportunity",
            Resource::Orders => "Order",
            Resource::Tasks => "Task",
        }
    }

    /// The creation timestamp's field name.
    pub fn create_field(self) -> &'static str {
        match self {
            Resource::Opportunities => "created_time",
            Resource::Orders => "creation_time",
            Resource::Tasks => "create_time",
        }
    }

    /// The last-update timestamp's field name.
    pub fn update_field(self) -> &'static str {
        match self {
            Resource::Opportunities => "last_updated_time",
            Resource::Orders | Resource::Tasks => "modification_time",
        }
    }

    /// The free-text field `POST /__sandbox/keap/{resource}/update` rewrites.
    pub fn edit_field(self) -> &'static str {
        match self {
            Resource::Opportunities => "next_action_notes",
            Resource::Orders => "notes",
            Resource::Tasks => "description",
        }
    }

    /// Endpoint key of the list route.
    pub fn list_endpoint(self) -> Endpoint {
        match self {
            Resource::Opportunities => Endpoint::KeapOpportunitiesList,
            Resource::Orders => Endpoint::KeapOrdersList,
            Resource::Tasks => Endpoint::KeapTasksList,
        }
    }

    /// Endpoint key of the get-by-id route.
    pub fn get_endpoint(self) -> Endpoint {
        match self {
            Resource::Opportunities => Endpoint::KeapOpportunitiesGet,
            Resource::Orders => Endpoint::KeapOrdersGet,
            Resource::Tasks => Endpoint::KeapTasksGet,
        }
    }

    /// `order_by` field names (keap-sdk swagger; `id` is accepted everywhere).
    fn parse_sort_field(self, name: &str) -> Result<SortField, KeapError> {
        let field = match (self, name) {
            (_, "id") => Some(SortField::Id),
            (Resource::Opportunities, "created_time" | "create_time") => Some(SortField::Create),
            (Resource::Opportunities, "update_time" | "last_updated_time") => {
                Some(SortField::Update)
            }
            (Resource::Orders, "order_time") => Some(SortField::Create),
            (Resource::Orders, "modification_time") => Some(SortField::Update),
            (Resource::Tasks, "create_time") => Some(SortField::Create),
            (Resource::Tasks, "update_time") => Some(SortField::Update),
            _ => None,
        };
        if let Some(field) = field {
            return Ok(field);
        }
        let (known_unsupported, allowed): (&[&str], &str) = match self {
            Resource::Opportunities => (
                &["next_action_time", "contact_name", "opportunity_title"],
                "id, created_time, update_time",
            ),
            Resource::Orders => (&[], "id, order_time, modification_time"),
            Resource::Tasks => (&["due_time"], "id, create_time, update_time"),
        };
        if known_unsupported.contains(&name) {
            return Err(KeapError::bad_request(format!(
                "order_by field '{name}' is valid at Keap but not implemented by the sandbox; use {allowed}"
            )));
        }
        Err(KeapError::bad_request(format!(
            "Invalid order_by field '{name}': use {allowed}"
        )))
    }

    /// Applies one `name==value` filter term.
    fn apply_filter_term(
        self,
        filter: &mut Filter,
        name: &str,
        value: &str,
    ) -> Result<(), KeapError> {
        let time = || {
            parse_ms(value).ok_or_else(|| {
                KeapError::bad_request(format!("Invalid {name} '{value}': expected RFC 3339"))
            })
        };
        let attr_names: &[&str] = match self {
            Resource::Opportunities => &["contact_id", "stage_id", "user_id", "opportunity_title"],
            Resource::Orders => &["contact_id", "paid", "title", "order_type"],
            Resource::Tasks => &[
                "contact_id",
                "user_id",
                "is_completed",
                "has_due_date",
                "priority",
                "title",
                "opportunity_id",
            ],
        };
        match (self, name) {
            (Resource::Orders, "modified_since_time") | (Resource::Tasks, "since_time") => {
                filter.update_from = Some(time()?);
            }
            (Resource::Orders, "modified_until_time") | (Resource::Tasks, "until_time") => {
                filter.update_to = Some(time()?);
            }
            (Resource::Orders, "created_since_time") => filter.create_from = Some(time()?),
            (Resource::Orders, "created_until_time") => filter.create_to = Some(time()?),
            (Resource::Opportunities | Resource::Orders, "ids") | (Resource::Tasks, "task_ids") => {
                let ids = value
                    .trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.trim_matches('"').parse::<u64>())
                    .collect::<Result<BTreeSet<_>, _>>()
                    .map_err(|_| KeapError::bad_request(format!("{name} must be numeric ids")))?;
                filter.ids = Some(ids);
            }
            (_, attr) if attr_names.contains(&attr) => {
                filter
                    .attrs
                    .insert(attr.to_owned(), value.to_ascii_lowercase());
            }
            _ => {
                let unsupported: &[&str] = match self {
                    Resource::Opportunities => &[
                        "lead_source_name",
                        "affiliate_id",
                        "opportunity_id",
                        "contact_phone",
                        "contact_city",
                        "contact_state",
                        "projected_revenue_high",
                        "projected_revenue_low",
                    ],
                    Resource::Orders => &[
                        "id",
                        "product_id",
                        "invoice_id",
                        "invoice_xid",
                        "shipping_locality",
                        "shipping_region_code",
                        "shipping_postal_code",
                        "shipping_country_code",
                    ],
                    Resource::Tasks => &["id"],
                };
                if unsupported.contains(&name) {
                    return Err(KeapError::bad_request(format!(
                        "filter field '{name}' is valid at Keap but not implemented by the sandbox"
                    )));
                }
                let mut allowed: Vec<&str> = attr_names.to_vec();
                allowed.extend(match self {
                    Resource::Opportunities => &["ids"][..],
                    Resource::Orders => &[
                        "ids",
                        "modified_since_time",
                        "modified_until_time",
                        "created_since_time",
                        "created_until_time",
                    ][..],
                    Resource::Tasks => &["task_ids", "since_time", "until_time"][..],
                });
                return Err(KeapError::bad_request(format!(
                    "Unknown filter field '{name}': allowed are {}",
                    allowed.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Plain query parameters that act as time filters (`modified_since_time=<ISO>`).
    fn is_time_param(self, key: &str) -> bool {
        matches!(
            (self, key),
            (
                Resource::Orders,
                "modified_since_time" | "modified_until_time"
            ) | (Resource::Tasks, "since_time" | "until_time")
        )
    }

    /// The attributes filters compare against, read from a record's JSON.
    fn attrs(self, value: &Value) -> Vec<(&'static str, Box<str>)> {
        let text = |v: Option<&Value>| -> Box<str> {
            match v {
                Some(Value::String(s)) => s.to_ascii_lowercase().into(),
                Some(Value::Bool(b)) => b.to_string().into(),
                Some(Value::Number(n)) => n.to_string().into(),
                _ => "".into(),
            }
        };
        let nested = |outer: &str, inner: &str| text(value.get(outer).and_then(|o| o.get(inner)));
        match self {
            Resource::Opportunities => vec![
                ("contact_id", nested("contact", "id")),
                ("stage_id", nested("stage", "id")),
                ("user_id", nested("user", "id")),
                ("opportunity_title", text(value.get("opportunity_title"))),
            ],
            Resource::Orders => vec![
                ("contact_id", nested("contact", "id")),
                (
                    "paid",
                    (value.get("status").and_then(Value::as_str) == Some("PAID"))
                        .to_string()
                        .into(),
                ),
                ("title", text(value.get("title"))),
                ("order_type", text(value.get("order_type"))),
            ],
            Resource::Tasks => vec![
                ("contact_id", text(value.get("contact_id"))),
                ("user_id", text(value.get("assigned_to_user_id"))),
                ("is_completed", text(value.get("completed"))),
                (
                    "has_due_date",
                    value.get("due_time").is_some().to_string().into(),
                ),
                ("priority", text(value.get("priority"))),
                ("title", text(value.get("title"))),
                ("opportunity_id", text(value.get("opportunity_id"))),
            ],
        }
    }
}

/// One stored record: its JSON and the keys listing sorts and filters on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Numeric id.
    pub id: u64,
    /// Creation time, unix ms.
    pub create_ms: i64,
    /// Last update time, unix ms.
    pub update_ms: i64,
    attrs: Vec<(&'static str, Box<str>)>,
    json: Box<str>,
}

impl Record {
    /// Indexes a record given as JSON: it needs a numeric string `id` and RFC 3339 creation
    /// and update timestamps under the resource's field names.
    pub fn from_value(resource: Resource, value: &Value) -> Result<Self, String> {
        let id = value
            .get("id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| format!("{} id must be a numeric string", resource.noun()))?;
        let time = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .and_then(parse_ms)
                .ok_or_else(|| format!("{key} must be RFC 3339"))
        };
        Ok(Self {
            id,
            create_ms: time(resource.create_field())?,
            update_ms: time(resource.update_field())?,
            attrs: resource.attrs(value),
            json: value.to_string().into(),
        })
    }

    /// The record as Keap sends it.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The record as a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or(Value::Null)
    }

    fn key(&self, field: SortField) -> i64 {
        match field {
            SortField::Id => i64::try_from(self.id).unwrap_or(i64::MAX),
            SortField::Create => self.create_ms,
            SortField::Update => self.update_ms,
        }
    }

    fn cmp_cursor(&self, field: SortField, cursor: &Cursor) -> Ordering {
        self.key(field)
            .cmp(&cursor.key)
            .then(self.id.cmp(&cursor.id))
    }

    fn attr(&self, name: &str) -> &str {
        self.attrs
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v)
    }
}

/// What a resource can be ordered by (all integer keys).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortField {
    /// Numeric id (the default).
    #[default]
    Id,
    /// The creation timestamp.
    Create,
    /// The last-update timestamp.
    Update,
}

/// A parsed `order_by`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Sort key; ties are broken by id in the same direction.
    pub field: SortField,
    /// Direction.
    pub dir: Direction,
}

/// Conditions that must all hold. Time bounds are inclusive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    update_from: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    update_to: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    create_from: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    create_to: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ids: Option<BTreeSet<u64>>,
    /// Attribute name to lower-cased wanted value; a trailing `*` is a prefix match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    attrs: BTreeMap<String, String>,
}

impl Filter {
    fn matches(&self, r: &Record) -> bool {
        self.update_from.is_none_or(|t| r.update_ms >= t)
            && self.update_to.is_none_or(|t| r.update_ms <= t)
            && self.create_from.is_none_or(|t| r.create_ms >= t)
            && self.create_to.is_none_or(|t| r.create_ms <= t)
            && self.ids.as_ref().is_none_or(|ids| ids.contains(&r.id))
            && self.attrs.iter().all(|(name, want)| {
                let have = r.attr(name);
                match want.strip_suffix('*') {
                    Some(prefix) => have.starts_with(prefix),
                    None => have == want,
                }
            })
    }

    /// Whether no record after `r` in this order can match, so a scan can stop.
    fn past_range(&self, order: Order, r: &Record) -> bool {
        let (from, to) = match order.field {
            SortField::Id => return false,
            SortField::Create => (self.create_from, self.create_to),
            SortField::Update => (self.update_from, self.update_to),
        };
        let key = r.key(order.field);
        match order.dir {
            Direction::Asc => to.is_some_and(|t| key > t),
            Direction::Desc => from.is_some_and(|t| key < t),
        }
    }
}

/// The last record a page ended on.
pub type Cursor = pagination::Cursor<i64>;

/// The request a page token belongs to.
#[derive(Debug, Serialize, Deserialize)]
struct TokenQuery {
    /// The resource it was issued for: a token from another list is refused.
    r: String,
    order: Order,
    filter: Filter,
}

/// A page token's request and cursor, if it was issued for `resource`.
fn decode_token(text: &str, resource: Resource) -> Option<(TokenQuery, Cursor)> {
    let (query, cursor) = PageToken::<TokenQuery, i64>::decode(text)?;
    (query.r == resource.plural()).then_some((query, cursor))
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
    /// Continue after this record.
    pub after: Option<Cursor>,
}

impl ListQuery {
    /// Parses a list request's raw query string. As with contacts, a page token pins the
    /// order and filter it was issued for: repeating them is fine, changing them is a 400.
    pub fn parse(resource: Resource, raw: &str) -> Result<Self, KeapError> {
        let mut page_size = DEFAULT_PAGE_SIZE;
        let (mut order, mut token) = (None, None);
        let mut filter: Option<Filter> = None;
        for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            let value = value.trim();
            match key.as_ref() {
                "page_size" => page_size = pagination::parse_page_size(value)?,
                "page_token" if !value.is_empty() => token = Some(value.to_owned()),
                "order_by" if !value.is_empty() => order = Some(parse_order(resource, value)?),
                "filter" if !value.is_empty() => {
                    let f = filter.get_or_insert_with(Filter::default);
                    for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                        let Some((name, wanted)) = part.split_once("==") else {
                            return Err(KeapError::bad_request(format!(
                                "Invalid filter '{part}': expected field==value"
                            )));
                        };
                        resource.apply_filter_term(f, name.trim(), wanted.trim())?;
                    }
                }
                param if resource.is_time_param(param) && !value.is_empty() => {
                    let f = filter.get_or_insert_with(Filter::default);
                    resource.apply_filter_term(f, param, value)?;
                }
                // `fields` (optional properties such as custom_fields) and unknown
                // parameters are accepted and ignored: every property is always returned.
                _ => {}
            }
        }
        let (order, filter, after) = match token {
            None => (order.unwrap_or_default(), filter.unwrap_or_default(), None),
            Some(text) => {
                let (token, cursor) = decode_token(&text, resource)
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
        })
    }
}

fn parse_order(resource: Resource, text: &str) -> Result<Order, KeapError> {
    let (field, dir) = pagination::parse_order(text, |word| resource.parse_sort_field(word))?;
    Ok(Order { field, dir })
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page<'a> {
    /// The records, in order.
    pub items: Vec<&'a Record>,
    /// Token for the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

impl Page<'_> {
    /// `{"<resource>":[...],"next_page_token":"..."}`, with `""` on the last page.
    pub fn render(&self, resource: Resource) -> String {
        let size: usize = self.items.iter().map(|r| r.json.len() + 1).sum();
        let mut out = String::with_capacity(size + 64);
        out.push_str("{\"");
        out.push_str(resource.plural());
        out.push_str("\":[");
        for (i, record) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(record.json());
        }
        out.push_str("],\"next_page_token\":");
        out.push_str(&Value::from(self.next_page_token.clone().unwrap_or_default()).to_string());
        out.push('}');
        out
    }
}

/// All records of one resource, sorted by id, with indexes for the time orders.
#[derive(Debug)]
pub struct RecordStore {
    resource: Resource,
    seed: u64,
    contacts: usize,
    records: Vec<Record>,
    by_create: Vec<usize>,
    by_update: Vec<usize>,
}

impl RecordStore {
    /// Generates `count` records (ids `1..=count`) from `seed`; they refer to contacts
    /// `1..=contacts`.
    pub fn generate(resource: Resource, seed: u64, count: usize, contacts: usize) -> Self {
        let bulk = seed::bulk_import_times(seed);
        let records = (0..count as u64)
            .filter_map(|index| {
                let value = records_seed::generate(resource, seed, index, contacts, &bulk);
                Record::from_value(resource, &value).ok()
            })
            .collect();
        let mut store = Self {
            resource,
            seed,
            contacts,
            records,
            by_create: Vec::new(),
            by_update: Vec::new(),
        };
        store.reindex();
        store
    }

    /// Which resource this store holds.
    pub fn resource(&self) -> Resource {
        self.resource
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// All records in id order.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The record with this id.
    pub fn get(&self, id: u64) -> Option<&Record> {
        self.position(id).map(|i| &self.records[i])
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.records.binary_search_by_key(&id, |r| r.id).ok()
    }

    fn reindex(&mut self) {
        let records = &self.records;
        let n = records.len();
        // Stable sorts over id-ordered positions: ties keep id order (the tie-break).
        self.by_create = (0..n).collect();
        self.by_create.sort_by_key(|&i| records[i].create_ms);
        self.by_update = (0..n).collect();
        self.by_update.sort_by_key(|&i| records[i].update_ms);
    }

    fn at(&self, field: SortField, i: usize) -> &Record {
        let position = match field {
            SortField::Id => i,
            SortField::Create => self.by_create[i],
            SortField::Update => self.by_update[i],
        };
        &self.records[position]
    }

    /// One page for `query`.
    pub fn list(&self, query: &ListQuery) -> Page<'_> {
        let order = query.order;
        let field = order.field;
        let after = query
            .after
            .as_ref()
            .map(|c| move |r: &Record| r.cmp_cursor(field, c));
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
                r: self.resource.plural().to_owned(),
                order,
                filter: query.filter.clone(),
            };
            PageToken::encode(token, last.key(field), last.id)
        });
        Page {
            items,
            next_page_token,
        }
    }

    fn replace(&mut self, position: usize, value: &Value) -> Result<(), String> {
        self.records[position] = Record::from_value(self.resource, value)?;
        Ok(())
    }

    /// Merges `patch` into a record's top-level fields (`null` removes one) and sets the
    /// update timestamp to `now_ms` unless the patch sets it.
    pub fn patch(
        &mut self,
        id: u64,
        patch: &Map<String, Value>,
        now_ms: i64,
    ) -> Result<&Record, String> {
        let noun = self.resource.noun().to_ascii_lowercase();
        let position = self.position(id).ok_or_else(|| format!("no {noun} {id}"))?;
        if patch.contains_key("id") {
            return Err("id cannot change".to_owned());
        }
        let mut value = self.records[position].to_value();
        let Some(object) = value.as_object_mut() else {
            return Err(format!("stored {noun} is not an object"));
        };
        let update_field = self.resource.update_field();
        for (key, v) in patch {
            if v.is_null() {
                object.remove(key);
            } else {
                object.insert(key.clone(), v.clone());
            }
        }
        if !patch.contains_key(update_field) {
            object.insert(update_field.to_owned(), Value::from(format_ms(now_ms)));
        }
        self.replace(position, &value)?;
        self.reindex();
        Ok(&self.records[position])
    }

    /// Adds a record with the next id, generated like the seed data, created now, then
    /// overlaid with `fields`.
    pub fn create(&mut self, fields: &Map<String, Value>, now_ms: i64) -> Result<&Record, String> {
        if fields.contains_key("id") {
            return Err("id is assigned by the sandbox".to_owned());
        }
        let id = self.records.last().map_or(1, |r| r.id + 1);
        let bulk = seed::bulk_import_times(self.seed);
        let mut value =
            records_seed::generate(self.resource, self.seed, id - 1, self.contacts, &bulk);
        let Some(object) = value.as_object_mut() else {
            return Err("generated record is not an object".to_owned());
        };
        let stamp = Value::from(format_ms(now_ms));
        object.insert(self.resource.create_field().to_owned(), stamp.clone());
        object.insert(self.resource.update_field().to_owned(), stamp);
        for (key, v) in fields {
            if v.is_null() {
                object.remove(key);
            } else {
                object.insert(key.clone(), v.clone());
            }
        }
        self.records
            .push(Record::from_value(self.resource, &value)?);
        self.reindex();
        Ok(&self.records[self.records.len() - 1])
    }

    /// Deletes a record; returns whether it existed.
    pub fn delete(&mut self, id: u64) -> bool {
        let Some(position) = self.position(id) else {
            return false;
        };
        self.records.remove(position);
        self.reindex();
        true
    }

    /// Sets the update timestamp of the given records (unknown ids are skipped); returns
    /// the ids changed.
    pub fn set_update_time(&mut self, ids: &[u64], update_ms: i64) -> Vec<u64> {
        let field = self.resource.update_field();
        let stamp = Value::from(format_ms(update_ms));
        let mut changed = Vec::new();
        for &id in ids {
            let Some(position) = self.position(id) else {
                continue;
            };
            let mut value = self.records[position].to_value();
            if let Some(object) = value.as_object_mut() {
                object.insert(field.to_owned(), stamp.clone());
            }
            if self.replace(position, &value).is_ok() {
                changed.push(id);
            }
        }
        self.reindex();
        changed
    }

    /// Rewrites the resource's edit field of the given records (see
    /// [`Resource::edit_field`]) and sets their update timestamp to `now_ms`; returns the
    /// ids changed.
    pub fn edit(&mut self, ids: &[u64], now_ms: i64) -> Vec<u64> {
        let mut changed = Vec::new();
        let mut patch = Map::new();
        patch.insert(
            self.resource.edit_field().to_owned(),
            Value::from(edit_text(now_ms)),
        );
        for &id in ids {
            if self.patch(id, &patch, now_ms).is_ok() {
                changed.push(id);
            }
        }
        changed
    }
}

/// The text `update` controls write into a record.
pub fn edit_text(now_ms: i64) -> String {
    format!("Edited through the sandbox at {}", format_ms(now_ms))
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /crm/rest/v2/{resource}`.
pub async fn list(
    resource: Resource,
    state: SharedState,
    headers: HeaderMap,
    raw: Option<String>,
) -> Result<Response, KeapError> {
    authenticate(&state, &headers, state.clock.now_ms())?;
    let query = ListQuery::parse(resource, raw.as_deref().unwrap_or(""))?;
    let body = {
        let store = read(state.keap.records(resource));
        store.list(&query).render(resource)
    };
    Ok(json_response(body))
}

/// `GET /crm/rest/v2/{resource}/{id}`.
pub async fn get_one(
    resource: Resource,
    state: SharedState,
    headers: HeaderMap,
    id: String,
) -> Result<Response, KeapError> {
    authenticate(&state, &headers, state.clock.now_ms())?;
    let noun = resource.noun();
    let id = id.parse::<u64>().map_err(|_| {
        KeapError::bad_request(format!("{}_id must be numeric", noun.to_ascii_lowercase()))
    })?;
    let store = read(state.keap.records(resource));
    let record = store
        .get(id)
        .ok_or_else(|| KeapError::not_found(format!("{noun} {id} not found")))?;
    Ok(json_response(record.json().to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashSet;

    use super::*;
    use crate::time::SEED_BASE_MS;
    use axum::http::StatusCode;

    fn walk(store: &RecordStore, first_query: &str) -> Vec<u64> {
        let resource = store.resource();
        let mut ids = Vec::new();
        let mut query = first_query.to_owned();
        loop {
            let q = ListQuery::parse(resource, &query).unwrap();
            let page = store.list(&q);
            ids.extend(page.items.iter().map(|r| r.id));
            match page.next_page_token {
                Some(token) => query = format!("page_size={}&page_token={token}", q.page_size),
                None => break,
            }
        }
        ids
    }

    fn assert_each_once(ids: &[u64], expected: usize) {
        let unique: HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "duplicates in walk");
        assert_eq!(ids.len(), expected, "walk length");
    }

    #[test]
    fn generation_is_deterministic_and_sized() {
        for resource in Resource::ALL {
            let a = RecordStore::generate(resource, 42, 300, 1000);
            let b = RecordStore::generate(resource, 42, 100, 1000);
            assert_eq!(a.len(), 300);
            assert_eq!(&a.records()[..100], b.records());
            let total: usize = a.records().iter().map(|r| r.json().len()).sum();
            let average = total / a.len();
            assert!((300..=1500).contains(&average), "{resource:?}: {average} B");
            for r in a.records() {
                assert!(r.create_ms <= r.update_ms, "{resource:?} {}", r.json());
                assert!(r.update_ms <= SEED_BASE_MS);
                assert!(r.create_ms >= SEED_BASE_MS - seed::YEAR_MS);
            }
            // Some records share a bulk-import instant.
            let mut seen = HashSet::new();
            let shared = a
                .records()
                .iter()
                .filter(|r| !seen.insert(r.update_ms))
                .count();
            assert!(
                shared > 5,
                "{resource:?}: only {shared} shared update times"
            );
        }
        let opp = RecordStore::generate(Resource::Opportunities, 42, 300, 1000);
        let average: usize =
            opp.records().iter().map(|r| r.json().len()).sum::<usize>() / opp.len();
        assert!((400..=700).contains(&average), "opportunity {average} B");
    }

    #[test]
    fn walks_return_everything_once_in_every_order() {
        for resource in Resource::ALL {
            let mut store = RecordStore::generate(resource, 42, 1500, 1000);
            // 600 records on one instant: more than a small page, fewer than 1000.
            let shared: Vec<u64> = (1..=1500).filter(|id| id % 5 < 2).collect();
            assert_eq!(
                store.set_update_time(&shared, SEED_BASE_MS - 5_000).len(),
                600
            );
            let update = match resource {
                Resource::Orders => "modification_time",
                _ => "update_time",
            };
            for page_size in [1000, 7] {
                for order in [
                    "id".to_owned(),
                    format!("{update} asc"),
                    format!("{update}+desc"),
                ] {
                    let ids = walk(
                        &store,
                        &format!(
                            "page_size={page_size}&order_by={}",
                            order.replace(' ', "%20")
                        ),
                    );
                    assert_each_once(&ids, 1500);
                    let keys: Vec<(i64, u64)> = ids
                        .iter()
                        .map(|&id| (store.get(id).unwrap().update_ms, id))
                        .collect();
                    if order.ends_with("asc") {
                        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{resource:?} {order}");
                    } else if order.ends_with("desc") {
                        assert!(keys.windows(2).all(|w| w[0] > w[1]), "{resource:?} {order}");
                    } else {
                        assert!(ids.windows(2).all(|w| w[0] < w[1]));
                    }
                }
            }
        }
    }

    #[test]
    fn time_filters_are_inclusive() {
        let start = SEED_BASE_MS - 120 * 86_400_000;
        let end = SEED_BASE_MS - 30 * 86_400_000;
        for (resource, lo, hi) in [
            (
                Resource::Orders,
                "modified_since_time",
                "modified_until_time",
            ),
            (Resource::Tasks, "since_time", "until_time"),
        ] {
            let mut store = RecordStore::generate(resource, 42, 800, 1000);
            // Records exactly on both bounds must be included.
            store.set_update_time(&[3], start);
            store.set_update_time(&[4], end);
            let expected: HashSet<u64> = store
                .records()
                .iter()
                .filter(|r| r.update_ms >= start && r.update_ms <= end)
                .map(|r| r.id)
                .collect();
            assert!(expected.contains(&3) && expected.contains(&4));
            let (s, e) = (format_ms(start), format_ms(end));
            let update = if resource == Resource::Orders {
                "modification_time"
            } else {
                "update_time"
            };
            for query in [
                format!("{lo}={s}&{hi}={e}"),
                format!("filter={lo}%3D%3D{s}%3B{hi}%3D%3D{e}"),
                format!("filter={lo}=={s};{hi}=={e}&order_by={update}%20desc"),
                format!("{lo}={s}&{hi}={e}&order_by={update}"),
            ] {
                let ids = walk(&store, &format!("page_size=9&{query}"));
                assert_each_once(&ids, expected.len());
                assert_eq!(ids.into_iter().collect::<HashSet<_>>(), expected, "{query}");
            }
        }
    }

    #[test]
    fn opportunities_have_no_update_filter() {
        for query in [
            "filter=start_update_time%3D%3D2025-01-01T00:00:00Z",
            "filter=since_time%3D%3D2025-01-01T00:00:00Z",
            "filter=last_updated_time%3D%3D2025-01-01T00:00:00Z",
            "filter=modified_since_time%3D%3D2025-01-01T00:00:00Z",
            "order_by=modification_time",
            "order_by=contact_name",
        ] {
            let err = ListQuery::parse(Resource::Opportunities, query).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{query}");
        }
        // A plain `since_time` parameter is not a filter here: ignored like any unknown one.
        let q = ListQuery::parse(Resource::Opportunities, "since_time=2025-01-01T00:00:00Z");
        assert_eq!(q.unwrap().filter, Filter::default());
        for query in [
            "order_by=update_time%20desc",
            "order_by=created_time",
            "order_by=id",
            "filter=stage_id%3D%3D2",
        ] {
            assert!(
                ListQuery::parse(Resource::Opportunities, query).is_ok(),
                "{query}"
            );
        }
    }

    #[test]
    fn bad_parameters_are_400() {
        for (resource, query) in [
            (Resource::Orders, "page_size=0"),
            (Resource::Orders, "page_size=1001"),
            (Resource::Orders, "order_by=update_time"),
            (Resource::Orders, "modified_since_time=yesterday"),
            (
                Resource::Orders,
                "filter=since_time%3D%3D2025-01-01T00:00:00Z",
            ),
            (Resource::Tasks, "order_by=modification_time"),
            (
                Resource::Tasks,
                "filter=modified_since_time%3D%3D2025-01-01T00:00:00Z",
            ),
            (Resource::Tasks, "order_by=id%20sideways"),
            (Resource::Tasks, "page_token=nope"),
        ] {
            let err = ListQuery::parse(resource, query).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{resource:?} {query}");
        }
        // A token from another resource is refused.
        let orders = RecordStore::generate(Resource::Orders, 42, 20, 10);
        let q = ListQuery::parse(Resource::Orders, "page_size=5").unwrap();
        let token = orders.list(&q).next_page_token.unwrap();
        assert!(ListQuery::parse(Resource::Tasks, &format!("page_token={token}")).is_err());
        assert!(ListQuery::parse(Resource::Orders, &format!("page_token={token}")).is_ok());
    }

    #[test]
    fn attribute_filters() {
        let store = RecordStore::generate(Resource::Tasks, 42, 300, 1000);
        let ids = walk(&store, "filter=is_completed%3D%3Dtrue&page_size=1000");
        assert!(!ids.is_empty() && ids.len() < 300);
        for id in ids {
            assert_eq!(store.get(id).unwrap().to_value()["completed"], true);
        }
        let ids = walk(&store, "filter=task_ids%3D%3D1,5,9,100000");
        assert_eq!(ids, [1, 5, 9]);
        let opp = RecordStore::generate(Resource::Opportunities, 42, 300, 1000);
        let ids = walk(&opp, "filter=stage_id%3D%3D2&page_size=13");
        assert!(!ids.is_empty());
        for id in ids {
            assert_eq!(opp.get(id).unwrap().to_value()["stage"]["id"], "2");
        }
    }

    #[test]
    fn edit_delete_create() {
        let mut store = RecordStore::generate(Resource::Orders, 42, 10, 10);
        let now = SEED_BASE_MS + 1000;
        assert_eq!(store.edit(&[2, 4, 99], now), [2, 4]);
        let v = store.get(4).unwrap().to_value();
        assert_eq!(v["notes"], edit_text(now));
        assert_eq!(v["modification_time"], format_ms(now));
        let q = ListQuery::parse(
            Resource::Orders,
            "order_by=modification_time%20desc&page_size=2",
        )
        .unwrap();
        let top: Vec<u64> = store.list(&q).items.iter().map(|r| r.id).collect();
        assert_eq!(top, [4, 2]);
        assert!(store.delete(4));
        assert!(!store.delete(4));
        assert!(store.get(4).is_none());
        let created = store.create(&Map::new(), now).unwrap();
        assert_eq!((created.id, created.create_ms), (11, now));
    }
}
