//! Supabase schema watch: a snapshot of the watched schemas' tables and columns, and the
//! events between two snapshots.
//!
//! Polling a snapshot is the portable way: event triggers (`ddl_command_end`) need rights
//! hosted Supabase projects do not give
//! (<https://supabase.com/docs/guides/database/postgres/event-triggers>). The query reads
//! `pg_catalog` (<https://www.postgresql.org/docs/current/catalogs.html>), which is what
//! `information_schema.columns` is a view over, in one round trip.
//!
//! The Worker, per tick: run [`SNAPSHOT_SQL`] with the watched schemas, build
//! [`SchemaSnapshot::from_rows`], [`diff`] it against the saved one, store the events
//! ([`SchemaEvent::into_envelope`]), then save the new snapshot. A crash between storing and
//! saving diffs the same pair again and yields the same dedup keys: nothing is stored twice.
//!
//! Renames cannot be told apart from a drop plus a create: the catalog keeps no history, and
//! two polls only show that one name went and another came. A dropped table or column is
//! reported as `supabase.schema.changed` with its before-state, and any table or column that
//! appeared in the same diff with the same shape is named under `possible_renames` (a hint,
//! never a claim); the new one is reported as created/added as usual.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{short_digest, EventEnvelope, EventLoopError};
use crate::Timestamp;

/// The schemas watched when the user configures none.
pub const DEFAULT_WATCHED_SCHEMAS: &[&str] = &["public"];

/// The select of [`SNAPSHOT_SQL`] (without its order), shared with [`FINGERPRINT_SQL`].
macro_rules! snapshot_select {
    () => {
        "\
SELECT n.nspname::text AS schema_name,
       c.relname::text AS table_name,
       a.attname::text AS column_name,
       format_type(a.atttypid, a.atttypmod) AS data_type,
       CASE WHEN a.attnum IS NULL THEN NULL ELSE NOT a.attnotnull END AS is_nullable,
       pg_get_expr(d.adbin, d.adrelid) AS column_default,
       a.attnum::int4 AS ordinal_position
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_attribute a
         ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_catalog.pg_attrdef d
         ON d.adrelid = c.oid AND d.adnum = a.attnum
 WHERE n.nspname = ANY($1::text[])
   AND c.relkind IN ('r', 'p')"
    };
}

/// One row per column of every ordinary or partitioned table in the schemas `$1::text[]`,
/// plus one row with null column fields for a table without columns. Columns:
/// `schema_name text, table_name text, column_name text, data_type text` (`format_type`,
/// e.g. `character varying(20)`), `is_nullable bool, column_default text`
/// (`pg_get_expr`), `ordinal_position int4`.
pub const SNAPSHOT_SQL: &str = concat!(snapshot_select!(), "\n ORDER BY 1, 2, 7");

/// One row, one column (`fingerprint text`): the MD5 of [`SNAPSHOT_SQL`]'s rows for the
/// schemas `$1::text[]`, each value quoted (`%L`, so a NULL and the text `NULL` differ). An
/// idle tick runs only this and compares it with [`SchemaSnapshot::fingerprint`]; the full
/// snapshot is read when it differs.
pub const FINGERPRINT_SQL: &str = concat!(
    "SELECT md5(coalesce(string_agg(\
format('%L,%L,%L,%L,%L,%L,%L', schema_name, table_name, column_name, data_type, \
is_nullable, column_default, ordinal_position), \
E'\\n' ORDER BY schema_name, table_name, ordinal_position), '')) AS fingerprint FROM (",
    snapshot_select!(),
    ") s"
);

/// One row of [`SNAPSHOT_SQL`], as the Worker reads it (plain values, no driver types).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaRow {
    /// `schema_name`.
    pub schema: String,
    /// `table_name`.
    pub table: String,
    /// `column_name`; `None` for a table without columns.
    pub column: Option<String>,
    /// `data_type`.
    pub data_type: Option<String>,
    /// `is_nullable`.
    pub nullable: Option<bool>,
    /// `column_default`.
    pub default: Option<String>,
    /// `ordinal_position`.
    pub position: Option<i32>,
}

/// A column's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnShape {
    /// `format_type` of the column, e.g. `text`, `numeric(10,2)`.
    pub data_type: String,
    /// Whether it accepts null.
    pub nullable: bool,
    /// Its default expression.
    pub default: Option<String>,
    /// Its attribute number (gaps where columns were dropped).
    pub position: i32,
}

/// A table's shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableShape {
    /// By column name.
    pub columns: BTreeMap<String, ColumnShape>,
}

/// The watched schemas at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaSnapshot {
    /// When it was taken; part of every dedup key derived from a diff against it, so the
    /// same change happening twice (added, dropped, added again) is two events.
    pub taken_at: Timestamp,
    /// By `"schema.table"`.
    pub tables: BTreeMap<String, TableShape>,
    /// [`FINGERPRINT_SQL`]'s answer when this snapshot was read (set by the Worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl SchemaSnapshot {
    /// The snapshot of [`SNAPSHOT_SQL`]'s rows.
    pub fn from_rows(
        taken_at: Timestamp,
        rows: impl IntoIterator<Item = SchemaRow>,
    ) -> Result<Self, EventLoopError> {
        let mut tables: BTreeMap<String, TableShape> = BTreeMap::new();
        for row in rows {
            let table = tables
                .entry(format!("{}.{}", row.schema, row.table))
                .or_default();
            let Some(column) = row.column else {
                continue;
            };
            let bad = |what: &str| EventLoopError::BadRow {
                query: "SNAPSHOT_SQL",
                reason: format!("column {}.{}.{column} has no {what}", row.schema, row.table),
            };
            let shape = ColumnShape {
                data_type: row.data_type.clone().ok_or_else(|| bad("data_type"))?,
                nullable: row.nullable.ok_or_else(|| bad("is_nullable"))?,
                default: row.default,
                position: row.position.ok_or_else(|| bad("ordinal_position"))?,
            };
            table.columns.insert(column, shape);
        }
        Ok(Self {
            taken_at,
            tables,
            fingerprint: None,
        })
    }
}

/// The watched schemas: the user's list, trimmed and without duplicates, or
/// [`DEFAULT_WATCHED_SCHEMAS`] when empty. Bind it as `$1` of [`SNAPSHOT_SQL`].
pub fn watched_schemas(configured: &[String]) -> Vec<String> {
    let mut list: Vec<String> = configured
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    list.sort();
    list.dedup();
    if list.is_empty() {
        return DEFAULT_WATCHED_SCHEMAS
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
    }
    list
}

/// `supabase.table.created`.
pub const TABLE_CREATED: &str = "supabase.table.created";
/// `supabase.column.added`.
pub const COLUMN_ADDED: &str = "supabase.column.added";
/// `supabase.column.updated`.
pub const COLUMN_UPDATED: &str = "supabase.column.updated";
/// `supabase.schema.changed`: drops, renames, anything else.
pub const SCHEMA_CHANGED: &str = "supabase.schema.changed";

/// One schema change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaEvent {
    /// One of [`TABLE_CREATED`], [`COLUMN_ADDED`], [`COLUMN_UPDATED`], [`SCHEMA_CHANGED`].
    pub event_type: String,
    /// `supabase:schema:<change>:<schema.table[.column]>:<digest>`, the digest over the
    /// previous snapshot's time and the before/after states: the same change seen twice
    /// gives the same key. [`SchemaEvent::into_envelope`] scopes it by user.
    pub dedup_key: String,
    /// `{change, schema, table, column?, before, after, possible_renames?}`.
    pub event_data: Value,
}

impl SchemaEvent {
    /// The event for the durable store, owned by `user_id`, its key scoped by user
    /// (`supabase:<user_id>:schema:...`): schema events have no connection, and the
    /// Postgres unique index would otherwise merge two users' identical changes.
    pub fn into_envelope(self, user_id: &str, occurred_at: Timestamp) -> EventEnvelope {
        let key = self
            .dedup_key
            .strip_prefix("supabase:")
            .unwrap_or(&self.dedup_key);
        EventEnvelope {
            source: "supabase".to_owned(),
            event_type: Some(self.event_type),
            dedup_key: Some(format!("supabase:{user_id}:{key}")),
            content_key: None,
            event_data: self.event_data,
            occurred_at: Some(occurred_at),
            record_change: None,
            user_id: Some(user_id.to_owned()),
            rate_limit_per_minute: 0,
        }
    }
}

fn event(
    previous: &SchemaSnapshot,
    event_type: &str,
    change: &str,
    table: &str,
    column: Option<&str>,
    before: Value,
    after: Value,
) -> SchemaEvent {
    let (schema, name) = table.split_once('.').unwrap_or(("", table));
    let object = column.map_or_else(|| table.to_owned(), |c| format!("{table}.{c}"));
    let digest = short_digest(&format!(
        "{}\n{object}\n{before}\n{after}",
        previous.taken_at.as_millis()
    ));
    let mut data = json!({
        "change": change,
        "schema": schema,
        "table": name,
        "before": before,
        "after": after,
    });
    if let (Some(column), Some(object)) = (column, data.as_object_mut()) {
        object.insert("column".to_owned(), column.into());
    }
    SchemaEvent {
        event_type: event_type.to_owned(),
        dedup_key: format!("supabase:schema:{change}:{object}:{digest}"),
        event_data: data,
    }
}

fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The events from `previous` to `current`; none for the first snapshot (the baseline).
///
/// - a new table → [`TABLE_CREATED`] (`after`: its columns);
/// - a new column of a table in both → [`COLUMN_ADDED`];
/// - a column whose type, nullability or default changed → [`COLUMN_UPDATED`];
/// - a dropped table or column (or the old side of a rename) → [`SCHEMA_CHANGED`]
///   (`change`: `table_dropped` / `column_dropped`, with `possible_renames`);
/// - a column whose position alone changed (dropped and re-added between two polls) →
///   [`SCHEMA_CHANGED`] (`change`: `column_moved`).
pub fn diff(previous: Option<&SchemaSnapshot>, current: &SchemaSnapshot) -> Vec<SchemaEvent> {
    let Some(previous) = previous else {
        return Vec::new();
    };
    let mut events = Vec::new();
    let created: Vec<&String> = current
        .tables
        .keys()
        .filter(|t| !previous.tables.contains_key(*t))
        .collect();
    for table in &created {
        events.push(event(
            previous,
            TABLE_CREATED,
            "table_created",
            table,
            None,
            Value::Null,
            to_json(&current.tables[*table]),
        ));
    }
    for (table, before) in &previous.tables {
        let Some(after) = current.tables.get(table) else {
            let renames: Vec<&String> = created
                .iter()
                .copied()
                .filter(|t| current.tables[*t] == *before)
                .collect();
            let mut e = event(
                previous,
                SCHEMA_CHANGED,
                "table_dropped",
                table,
                None,
                to_json(before),
                Value::Null,
            );
            e.event_data["possible_renames"] = to_json(&renames);
            events.push(e);
            continue;
        };
        let added: Vec<&String> = after
            .columns
            .keys()
            .filter(|c| !before.columns.contains_key(*c))
            .collect();
        for column in &added {
            events.push(event(
                previous,
                COLUMN_ADDED,
                "column_added",
                table,
                Some(column),
                Value::Null,
                to_json(&after.columns[*column]),
            ));
        }
        for (column, old) in &before.columns {
            match after.columns.get(column) {
                None => {
                    let renames: Vec<&String> = added
                        .iter()
                        .copied()
                        .filter(|c| {
                            let new = &after.columns[*c];
                            new.data_type == old.data_type
                                && new.nullable == old.nullable
                                && new.default == old.default
                        })
                        .collect();
                    let mut e = event(
                        previous,
                        SCHEMA_CHANGED,
                        "column_dropped",
                        table,
                        Some(column),
                        to_json(old),
                        Value::Null,
                    );
                    e.event_data["possible_renames"] = to_json(&renames);
                    events.push(e);
                }
                Some(new) if new == old => {}
                Some(new) => {
                    let shape_changed = new.data_type != old.data_type
                        || new.nullable != old.nullable
                        || new.default != old.default;
                    let (event_type, change) = if shape_changed {
                        (COLUMN_UPDATED, "column_updated")
                    } else {
                        (SCHEMA_CHANGED, "column_moved")
                    };
                    events.push(event(
                        previous,
                        event_type,
                        change,
                        table,
                        Some(column),
                        to_json(old),
                        to_json(new),
                    ));
                }
            }
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(table: &str, column: &str, data_type: &str, nullable: bool, position: i32) -> SchemaRow {
        SchemaRow {
            schema: "public".into(),
            table: table.into(),
            column: Some(column.into()),
            data_type: Some(data_type.into()),
            nullable: Some(nullable),
            default: None,
            position: Some(position),
        }
    }

    fn snapshot(at: i64, rows: Vec<SchemaRow>) -> SchemaSnapshot {
        SchemaSnapshot::from_rows(Timestamp(at), rows).expect("valid rows")
    }

    fn base_rows() -> Vec<SchemaRow> {
        vec![
            row("contacts", "id", "bigint", false, 1),
            row("contacts", "email", "text", true, 2),
        ]
    }

    fn types(events: &[SchemaEvent]) -> Vec<(&str, &str)> {
        events
            .iter()
            .map(|e| {
                (
                    e.event_type.as_str(),
                    e.event_data["change"].as_str().unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn rows_make_a_snapshot_and_tables_without_columns_count() {
        let mut rows = base_rows();
        rows.push(SchemaRow {
            schema: "public".into(),
            table: "empty".into(),
            column: None,
            data_type: None,
            nullable: None,
            default: None,
            position: None,
        });
        let snap = snapshot(1, rows);
        assert_eq!(snap.tables.len(), 2);
        assert!(snap.tables["public.empty"].columns.is_empty());
        assert_eq!(snap.tables["public.contacts"].columns["email"].position, 2);
        let mut bad = row("t", "c", "text", true, 1);
        bad.data_type = None;
        assert!(SchemaSnapshot::from_rows(Timestamp(1), vec![bad]).is_err());
        let round: SchemaSnapshot =
            serde_json::from_str(&serde_json::to_string(&snap).expect("ser")).expect("de");
        assert_eq!(round, snap);
    }

    #[test]
    fn the_first_snapshot_is_a_baseline() {
        assert!(diff(None, &snapshot(1, base_rows())).is_empty());
        let same = snapshot(1, base_rows());
        assert!(diff(Some(&same), &snapshot(2, base_rows())).is_empty());
    }

    #[test]
    fn created_added_updated_and_dropped() {
        let before = snapshot(1, base_rows());
        let mut rows = base_rows();
        rows[1].data_type = Some("character varying(200)".into());
        rows.push(row("contacts", "phone", "text", true, 3));
        rows.push(row("orders", "id", "bigint", false, 1));
        let events = diff(Some(&before), &snapshot(2, rows));
        assert_eq!(
            types(&events),
            vec![
                (TABLE_CREATED, "table_created"),
                (COLUMN_ADDED, "column_added"),
                (COLUMN_UPDATED, "column_updated"),
            ]
        );
        let added = &events[1];
        assert_eq!(added.event_data["column"], "phone");
        assert_eq!(added.event_data["table"], "contacts");
        assert_eq!(added.event_data["schema"], "public");
        assert_eq!(added.event_data["after"]["data_type"], "text");
        assert_eq!(added.event_data["before"], Value::Null);
        let updated = &events[2];
        assert_eq!(updated.event_data["before"]["data_type"], "text");
        assert_eq!(
            updated.event_data["after"]["data_type"],
            "character varying(200)"
        );
        assert!(updated
            .dedup_key
            .starts_with("supabase:schema:column_updated:public.contacts.email:"));

        let dropped = diff(
            Some(&before),
            &snapshot(3, vec![row("contacts", "id", "bigint", false, 1)]),
        );
        assert_eq!(types(&dropped), vec![(SCHEMA_CHANGED, "column_dropped")]);
        assert_eq!(dropped[0].event_data["after"], Value::Null);
        assert_eq!(dropped[0].event_data["before"]["data_type"], "text");
        let table_dropped = diff(Some(&before), &snapshot(3, vec![]));
        assert_eq!(
            types(&table_dropped),
            vec![(SCHEMA_CHANGED, "table_dropped")]
        );
    }

    #[test]
    fn a_rename_is_a_drop_and_an_add_with_a_hint() {
        let before = snapshot(1, base_rows());
        let renamed = vec![
            row("contacts", "id", "bigint", false, 1),
            row("contacts", "mail", "text", true, 2),
        ];
        let events = diff(Some(&before), &snapshot(2, renamed));
        assert_eq!(
            types(&events),
            vec![
                (COLUMN_ADDED, "column_added"),
                (SCHEMA_CHANGED, "column_dropped")
            ]
        );
        assert_eq!(events[1].event_data["possible_renames"], json!(["mail"]));
        let mut moved_rows = base_rows();
        for r in &mut moved_rows {
            r.table = "people".into();
        }
        let events = diff(Some(&before), &snapshot(2, moved_rows));
        assert_eq!(
            types(&events),
            vec![
                (TABLE_CREATED, "table_created"),
                (SCHEMA_CHANGED, "table_dropped")
            ]
        );
        assert_eq!(
            events[1].event_data["possible_renames"],
            json!(["public.people"])
        );
    }

    #[test]
    fn the_same_change_seen_twice_has_one_key_and_a_repeat_has_another() {
        let before = snapshot(1, base_rows());
        let mut rows = base_rows();
        rows.push(row("contacts", "phone", "text", true, 3));
        // Two ticks diffing against the same saved snapshot (state not saved in between).
        let first = diff(Some(&before), &snapshot(2, rows.clone()));
        let again = diff(Some(&before), &snapshot(3, rows.clone()));
        assert_eq!(first, again);
        // Added, dropped, added again: a new event each time.
        let with_phone = snapshot(2, rows.clone());
        let without = snapshot(3, base_rows());
        let readded = diff(Some(&without), &snapshot(4, rows));
        assert_ne!(first[0].dedup_key, readded[0].dedup_key);
        assert!(diff(Some(&with_phone), &without)[0]
            .dedup_key
            .contains("column_dropped"));
        let envelope = first[0].clone().into_envelope("u1", Timestamp(2));
        assert_eq!(envelope.source, "supabase");
        assert_eq!(envelope.event_type.as_deref(), Some(COLUMN_ADDED));
        assert!(envelope
            .dedup_key
            .as_deref()
            .is_some_and(|k| k.starts_with("supabase:u1:schema:column_added:")));
        assert_eq!(envelope.user_id.as_deref(), Some("u1"));
    }

    #[test]
    fn watched_schemas_default_to_public() {
        assert_eq!(watched_schemas(&[]), vec!["public"]);
        assert_eq!(watched_schemas(&[" ".into()]), vec!["public"]);
        assert_eq!(
            watched_schemas(&["app".into(), "public".into(), "app".into()]),
            vec!["app", "public"]
        );
        assert!(SNAPSHOT_SQL.contains("$1::text[]"));
    }

    /// Virtual time: a loop snapshots every tick, the store keeps each dedup key once, and
    /// the instance crashes once after storing events but before saving the snapshot.
    /// Every change is stored exactly once.
    #[test]
    fn simulation_ticks_with_a_crash_store_each_change_once() {
        let mut saved: Option<SchemaSnapshot> = None;
        let mut store: Vec<String> = Vec::new();
        let mut rows = base_rows();
        for tick in 0..20_i64 {
            match tick {
                3 => rows.push(row("contacts", "phone", "text", true, 3)),
                7 => rows.push(row("orders", "id", "bigint", false, 1)),
                11 => rows[1].nullable = Some(false),
                15 => rows.retain(|r| r.column.as_deref() != Some("phone")),
                _ => {}
            }
            let current = snapshot(tick * 60_000, rows.clone());
            for event in diff(saved.as_ref(), &current) {
                let envelope = event.into_envelope("u1", current.taken_at);
                let key = envelope.dedup_key.expect("keyed");
                if !store.contains(&key) {
                    store.push(key);
                }
            }
            if tick == 7 {
                continue; // crashed before saving: tick 8 diffs the same pair again
            }
            saved = Some(current);
        }
        let kinds: Vec<&str> = store
            .iter()
            .map(|k| k.split(':').nth(3).unwrap_or_default())
            .collect();
        assert_eq!(
            kinds,
            [
                "column_added",
                "table_created",
                "column_updated",
                "column_dropped"
            ]
        );
    }
}
