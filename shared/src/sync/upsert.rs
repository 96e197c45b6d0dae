//! Postgres statements for the record tables (migrations `20261121000300_record_tables.sql`
//! and `20261121000500_record_run_marker.sql`): one set-based upsert per page, and the soft
//! deletes. Column names and types match the migrations exactly.
//!
//! Every statement is parameterised; only table and column names, which come from the
//! fixed lists below, are spliced into the text.

use std::collections::HashMap;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use super::{Record, Resource, SyncMode};

/// The typed columns of a resource's table and their SQL types, in table order.
fn typed_columns(resource: Resource) -> &'static [(&'static str, &'static str)] {
    match resource {
        Resource::KeapContacts => &[
            ("given_name", "text"),
            ("family_name", "text"),
            ("email", "text"),
            ("company_name", "text"),
            ("created_at_source", "timestamptz"),
        ],
        Resource::KeapOpportunities => &[
            ("title", "text"),
            ("contact_id", "text"),
            ("stage_name", "text"),
            ("projected_revenue", "numeric"),
            ("created_at_source", "timestamptz"),
        ],
        Resource::KeapOrders => &[
            ("contact_id", "text"),
            ("title", "text"),
            ("status", "text"),
            ("total", "numeric"),
            ("created_at_source", "timestamptz"),
        ],
        Resource::KeapTasks => &[
            ("title", "text"),
            ("contact_id", "text"),
            ("completed", "boolean"),
            ("due_at", "timestamptz"),
            ("created_at_source", "timestamptz"),
        ],
        Resource::ShopifyProducts => &[
            ("title", "text"),
            ("handle", "text"),
            ("status", "text"),
            ("vendor", "text"),
            ("product_type", "text"),
            ("created_at_source", "timestamptz"),
        ],
        Resource::ShopifyOrders => &[
            ("name", "text"),
            ("email", "text"),
            ("customer_id", "text"),
            ("financial_status", "text"),
            ("fulfillment_status", "text"),
            ("total_price", "numeric"),
            ("currency", "text"),
            ("created_at_source", "timestamptz"),
        ],
        Resource::ShopifyCustomers => &[
            ("email", "text"),
            ("first_name", "text"),
            ("last_name", "text"),
            ("created_at_source", "timestamptz"),
        ],
        Resource::ShopifyInventoryLevels => &[
            ("inventory_item_id", "text"),
            ("location_id", "text"),
            ("available", "integer"),
        ],
    }
}

/// The names of a resource's typed columns, in table order.
#[cfg(test)]
pub(crate) fn column_names(resource: Resource) -> Vec<&'static str> {
    typed_columns(resource)
        .iter()
        .map(|(name, _)| *name)
        .collect()
}

/// When an incoming row replaces the stored one: it is newer, or as new but different, or
/// the stored row is soft-deleted. An older version never replaces a newer one, and the
/// same version again changes nothing, so `synced_at` moves only for real changes. (A
/// timeless incoming row never replaces a timed one.)
const FRESH: &str = "(t.deleted_at IS NOT NULL \
     OR excluded.source_updated_at > t.source_updated_at \
     OR (t.source_updated_at IS NULL AND excluded.source_updated_at IS NOT NULL) \
     OR (excluded.source_updated_at IS NOT DISTINCT FROM t.source_updated_at \
     AND excluded.raw IS DISTINCT FROM t.raw))";

/// Postgres: one set-based statement per page. Parameters: `$1` connection_id (text), `$2`
/// the jsonb array from [`records_json`], `$3` run_id (text).
///
/// Incremental: a `WHERE` on the conflict update skips rows that are not fresher.
/// Full: every row is stamped `seen_in_run = $3` (so [`mark_missing_deleted_sql`] spares
/// it), while the data columns change only when fresher, through `CASE` per column. In
/// incremental mode `$3` is referenced only through `NULLIF($3::text, $3::text)` (always
/// NULL) so both modes take the same three parameters.
pub fn upsert_sql(resource: Resource, mode: SyncMode) -> String {
    let columns = typed_columns(resource);
    let table = resource.table();
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let selected: Vec<String> = columns
        .iter()
        .map(|(name, _)| format!("r.{name}"))
        .collect();
    let record_types: Vec<String> = columns
        .iter()
        .map(|(name, sql_type)| format!("{name} {sql_type}"))
        .collect();
    let seen = match mode {
        SyncMode::Full => "$3::text",
        SyncMode::Incremental => "NULLIF($3::text, $3::text)",
    };
    let replaced: Vec<&str> = names
        .iter()
        .copied()
        .chain(["raw", "source_updated_at", "synced_at"])
        .collect();
    let update = match mode {
        SyncMode::Incremental => {
            let mut sets: Vec<String> = replaced
                .iter()
                .map(|name| format!("{name} = excluded.{name}"))
                .collect();
            sets.push("deleted_at = NULL".to_owned());
            format!("{}\nWHERE {FRESH}", sets.join(",\n    "))
        }
        SyncMode::Full => {
            let mut sets: Vec<String> = replaced
                .iter()
                .map(|name| {
                    format!("{name} = CASE WHEN {FRESH} THEN excluded.{name} ELSE t.{name} END")
                })
                .collect();
            sets.push(format!(
                "deleted_at = CASE WHEN {FRESH} THEN NULL ELSE t.deleted_at END"
            ));
            sets.push("seen_in_run = excluded.seen_in_run".to_owned());
            sets.join(",\n    ")
        }
    };
    format!(
        "INSERT INTO public.{table} AS t \
         (connection_id, provider_id, {names}, raw, source_updated_at, synced_at, deleted_at, seen_in_run)\n\
         SELECT $1::text, r.provider_id, {selected}, r.raw, r.source_updated_at, now(), NULL, {seen}\n\
         FROM jsonb_to_recordset($2::jsonb) AS r(provider_id text, {record_types}, raw jsonb, source_updated_at timestamptz)\n\
         ON CONFLICT (connection_id, provider_id) DO UPDATE SET\n    {update}",
        names = names.join(", "),
        selected = selected.join(", "),
        record_types = record_types.join(", "),
    )
}

/// The page as the jsonb array `$2` of [`upsert_sql`]: objects `{<typed columns>,
/// provider_id, source_updated_at (ISO or null), raw}`, borrowed from the records and
/// written out once, by whoever serialises it (the Postgres client). Records are
/// deduplicated by `provider_id`, keeping the newest (the later one on a tie), because
/// `ON CONFLICT` cannot touch one row twice in a statement; the first occurrence fixes the
/// order.
pub fn records_payload(records: &[Record]) -> RecordsPayload<'_> {
    let mut kept: Vec<&Record> = Vec::with_capacity(records.len());
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(records.len());
    for record in records {
        match index.get(record.provider_id.as_str()) {
            Some(&i) => {
                // `None` sorts before any time, so a timed version beats a timeless one.
                if record.source_updated_at >= kept[i].source_updated_at {
                    kept[i] = record;
                }
            }
            None => {
                index.insert(record.provider_id.as_str(), kept.len());
                kept.push(record);
            }
        }
    }
    RecordsPayload(kept)
}

/// [`records_payload`] as a JSON value (tests, benchmarks).
pub fn records_json(records: &[Record]) -> Value {
    serde_json::to_value(records_payload(records)).unwrap_or(Value::Null)
}

/// A page's upsert parameter, see [`records_payload`].
#[derive(Debug)]
pub struct RecordsPayload<'a>(Vec<&'a Record>);

impl Serialize for RecordsPayload<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|record| RecordObject(record)))
    }
}

/// One record of the parameter: its typed columns, then `provider_id`,
/// `source_updated_at` and `raw`.
struct RecordObject<'a>(&'a Record);

impl Serialize for RecordObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let record = self.0;
        let mut object = serializer.serialize_map(Some(record.columns.len() + 3))?;
        for (name, value) in &record.columns {
            object.serialize_entry(name, value)?;
        }
        object.serialize_entry("provider_id", &record.provider_id)?;
        object.serialize_entry(
            "source_updated_at",
            &record.source_updated_at.map(|t| t.to_iso8601()),
        )?;
        object.serialize_entry("raw", &record.raw)?;
        object.end()
    }
}

/// Postgres: after a successful full run, soft-delete the connection's rows that run did
/// not see. Parameters: `$1` connection_id, `$2` run_id. Run it only when the full run
/// completed: a partial run would delete what it had not reached yet.
///
/// Rows written since the run started (`synced_at` at or after its `sync_runs.started_at`,
/// both Postgres' clock) are spared: a webhook delivery inserted or updated them while the
/// walk ran, possibly after the walk passed their place, so not seeing them says nothing.
/// Without a `sync_runs` row for the run nothing is spared.
pub fn mark_missing_deleted_sql(resource: Resource) -> String {
    format!(
        "UPDATE public.{} SET deleted_at = now(), synced_at = now() \
         WHERE connection_id = $1::text AND deleted_at IS NULL \
         AND seen_in_run IS DISTINCT FROM $2::text \
         AND synced_at < coalesce((SELECT started_at FROM public.sync_runs \
         WHERE id = $2::text::uuid), 'infinity'::timestamptz)",
        resource.table()
    )
}

/// Postgres: soft-delete records the provider says are gone (webhook delete signals).
/// Parameters: `$1` connection_id, `$2` text[] of provider ids.
pub fn soft_delete_sql(resource: Resource) -> String {
    format!(
        "UPDATE public.{} SET deleted_at = now(), synced_at = now() \
         WHERE connection_id = $1::text AND provider_id = ANY($2::text[]) \
         AND deleted_at IS NULL",
        resource.table()
    )
}

/// Deletes every row a connection synced into `resource`'s table (`$1` connection id): what
/// `DELETE /coordinator/connections/{id}?purge=true` runs for each of the provider's
/// resources. A plain delete keeps the rows.
pub fn purge_sql(resource: Resource) -> String {
    format!(
        "DELETE FROM public.{} WHERE connection_id = $1::text",
        resource.table()
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map};

    use super::*;
    use crate::Timestamp;

    /// The column lists of the migration, copied by hand: a change on either side fails.
    #[test]
    fn columns_match_the_migration() {
        let migration =
            include_str!("../../../supabase/migrations/20261121000300_record_tables.sql");
        for resource in Resource::ALL {
            let start = migration
                .find(&format!(
                    "CREATE TABLE IF NOT EXISTS public.{} (",
                    resource.table()
                ))
                .expect("table in migration");
            let body = &migration[start..];
            let body = &body[..body.find(");").expect("end of table")];
            for (name, sql_type) in typed_columns(resource) {
                let line = body
                    .lines()
                    .map(str::trim)
                    .find(|line| line.split_whitespace().next() == Some(name))
                    .unwrap_or_else(|| panic!("{} has no {name}", resource.table()));
                let declared = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .trim_end_matches(',');
                assert_eq!(declared, *sql_type, "{}.{name}", resource.table());
            }
            let declared: Vec<&str> = body
                .lines()
                .skip(1)
                .map(str::trim)
                .filter_map(|line| line.split_whitespace().next())
                .filter(|name| {
                    !matches!(
                        *name,
                        "connection_id"
                            | "provider_id"
                            | "raw"
                            | "source_updated_at"
                            | "synced_at"
                            | "deleted_at"
                            | "PRIMARY"
                    )
                })
                .collect();
            assert_eq!(declared, column_names(resource), "{}", resource.table());
        }
    }

    #[test]
    fn incremental_sql_guards_the_update_and_leaves_the_marker() {
        let sql = upsert_sql(Resource::KeapTasks, SyncMode::Incremental);
        assert!(sql.starts_with("INSERT INTO public.keap_tasks AS t (connection_id, provider_id, title, contact_id, completed, due_at, created_at_source, raw, source_updated_at, synced_at, deleted_at, seen_in_run)"));
        assert!(sql.contains("completed boolean, due_at timestamptz"));
        assert!(sql.contains("NULLIF($3::text, $3::text)"));
        assert!(sql.contains("\nWHERE (t.deleted_at IS NOT NULL"));
        assert!(!sql.contains("seen_in_run ="));
        assert!(!sql.contains("CASE"));
        for n in 1..=3 {
            assert!(sql.contains(&format!("${n}::")), "${n}");
        }
    }

    #[test]
    fn full_sql_always_stamps_the_run() {
        let sql = upsert_sql(Resource::ShopifyInventoryLevels, SyncMode::Full);
        assert!(sql.contains("available integer"));
        assert!(sql.contains(", now(), NULL, $3::text\n"));
        assert!(sql.contains("seen_in_run = excluded.seen_in_run"));
        assert!(sql.contains("available = CASE WHEN (t.deleted_at IS NOT NULL"));
        assert!(sql.contains("deleted_at = CASE WHEN"));
        assert!(!sql.contains("\nWHERE"));
        assert!(!sql.contains("created_at_source"));
        let orders = upsert_sql(Resource::ShopifyOrders, SyncMode::Full);
        assert!(orders.contains("total_price numeric"));
    }

    #[test]
    fn delete_statements() {
        assert_eq!(
            mark_missing_deleted_sql(Resource::ShopifyProducts),
            "UPDATE public.shopify_products SET deleted_at = now(), synced_at = now() \
             WHERE connection_id = $1::text AND deleted_at IS NULL \
             AND seen_in_run IS DISTINCT FROM $2::text \
             AND synced_at < coalesce((SELECT started_at FROM public.sync_runs \
             WHERE id = $2::text::uuid), 'infinity'::timestamptz)"
        );
        assert!(soft_delete_sql(Resource::KeapContacts).contains("provider_id = ANY($2::text[])"));
        assert_eq!(
            purge_sql(Resource::ShopifyInventoryLevels),
            "DELETE FROM public.shopify_inventory_levels WHERE connection_id = $1::text"
        );
    }

    fn record(id: &str, at: Option<i64>, version: u32) -> Record {
        let mut columns = Map::new();
        columns.insert("title".to_owned(), json!(format!("v{version}")));
        Record {
            provider_id: id.to_owned(),
            source_updated_at: at.map(Timestamp::from_millis),
            columns,
            raw: json!({"id": id, "version": version}).into(),
        }
    }

    #[test]
    fn records_json_keeps_the_newest_of_duplicates() {
        let records = [
            record("1", Some(2_000), 1),
            record("2", None, 1),
            record("1", Some(1_000), 2),
            record("2", Some(0), 2),
            record("3", Some(5), 1),
            record("3", Some(5), 2),
        ];
        let json = records_json(&records);
        assert_eq!(
            json,
            json!([
                {"provider_id": "1", "title": "v1", "source_updated_at": "1970-01-01T00:00:02.000Z", "raw": {"id": "1", "version": 1}},
                {"provider_id": "2", "title": "v2", "source_updated_at": "1970-01-01T00:00:00.000Z", "raw": {"id": "2", "version": 2}},
                {"provider_id": "3", "title": "v2", "source_updated_at": "1970-01-01T00:00:00.005Z", "raw": {"id": "3", "version": 2}},
            ])
        );
        assert_eq!(records_json(&[]), json!([]));
    }
}
