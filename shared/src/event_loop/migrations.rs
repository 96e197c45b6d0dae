//! Pending migrations: the migrations this project ships against what the database says it
//! applied, in `scripts/migrate.sh`'s ledger (`public.edge_sync_schema_migrations`) and,
//! where it exists, the Supabase CLI's (`supabase_migrations.schema_migrations`,
//! <https://supabase.com/docs/reference/cli/supabase-migration-list>). A shipped migration is
//! applied when either ledger holds its version (the timestamp prefix of its file name).
//!
//! The Worker, per tick: run [`LEDGERS_PRESENT_SQL`]; run [`EDGE_SYNC_LEDGER_SQL`] and/or
//! [`SUPABASE_CLI_LEDGER_SQL`] for the ledgers it says exist (a missing table would fail the
//! statement); call [`MigrationWatch::on_ledgers`]; store the events; save the state.
//!
//! Each pending migration is reported once per episode: when it is first seen pending, not
//! on every tick. If it is applied and later becomes pending again (the ledger row was
//! deleted, the database restored from an older backup), that is a new episode and a new
//! event: the episode number is part of the dedup key.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::EventEnvelope;
use crate::Timestamp;

/// The files under `supabase/migrations`, in order. A unit test compares this list with the
/// directory, so a new migration cannot be left out.
pub const SHIPPED_MIGRATIONS: &[&str] = &[
    "20261121000100_background_events.sql",
    "20261121000200_sync_runs.sql",
    "20261121000300_record_tables.sql",
    "20261121000400_connections.sql",
    "20261121000500_record_run_marker.sql",
    "20261202000100_background_events_scoped_dedup.sql",
    "20261202000200_privacy_requests.sql",
    "20261202000900_api_roles_locked_out.sql",
    "20261203000100_agent_runs.sql",
    "20261204000100_propagation.sql",
];

/// Which ledgers exist: one row `edge_sync_ledger bool, supabase_cli_ledger bool`
/// (`to_regclass` answers null for a missing table instead of failing). No parameters.
pub const LEDGERS_PRESENT_SQL: &str = "\
SELECT to_regclass('public.edge_sync_schema_migrations') IS NOT NULL AS edge_sync_ledger,
       to_regclass('supabase_migrations.schema_migrations') IS NOT NULL AS supabase_cli_ledger";

/// `scripts/migrate.sh`'s ledger: rows `version text, name text`. No parameters.
pub const EDGE_SYNC_LEDGER_SQL: &str =
    "SELECT version, name FROM public.edge_sync_schema_migrations ORDER BY version";

/// The Supabase CLI's ledger: rows `version text`. No parameters. Run only when
/// [`LEDGERS_PRESENT_SQL`] says it exists.
pub const SUPABASE_CLI_LEDGER_SQL: &str =
    "SELECT version FROM supabase_migrations.schema_migrations ORDER BY version";

/// `supabase.migration.pending`.
pub const MIGRATION_PENDING: &str = "supabase.migration.pending";

/// The version of a migration file name: its timestamp prefix
/// (`20261203000100_agent_runs.sql` → `20261203000100`).
pub fn migration_version(file_name: &str) -> &str {
    file_name.split('_').next().unwrap_or(file_name)
}

/// What the watcher remembers between ticks (small: at most one entry per shipped migration).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationWatch {
    /// Migrations reported pending and not applied since.
    pub pending: BTreeSet<String>,
    /// How many times each migration became pending (the episode in its dedup key).
    pub episodes: BTreeMap<String, u32>,
}

/// One pending migration, ready for the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingMigration {
    /// The file name.
    pub file_name: String,
    /// Its version.
    pub version: String,
    /// Which time it became pending (1 = the first).
    pub episode: u32,
}

impl PendingMigration {
    /// `supabase:<user_id>:migration.pending:<file name>:<episode>`.
    pub fn dedup_key(&self, user_id: &str) -> String {
        format!(
            "supabase:{user_id}:migration.pending:{}:{}",
            self.file_name, self.episode
        )
    }

    /// The event for the durable store, owned by `user_id`.
    pub fn into_envelope(self, user_id: &str, occurred_at: Timestamp) -> EventEnvelope {
        EventEnvelope {
            source: "supabase".to_owned(),
            event_type: Some(MIGRATION_PENDING.to_owned()),
            dedup_key: Some(self.dedup_key(user_id)),
            content_key: None,
            event_data: json!({
                "migration": self.file_name,
                "version": self.version,
                "episode": self.episode,
            }),
            occurred_at: Some(occurred_at),
            record_change: None,
            user_id: Some(user_id.to_owned()),
            rate_limit_per_minute: 0,
        }
    }
}

impl MigrationWatch {
    /// The migrations of `shipped` that became pending since the last call, given the
    /// versions each ledger holds (pass an empty list for a missing ledger). Updates the
    /// state: applied ones leave `pending`, new ones enter it with the next episode.
    pub fn on_ledgers(
        &mut self,
        shipped: &[&str],
        edge_sync_versions: &[String],
        supabase_cli_versions: &[String],
    ) -> Vec<PendingMigration> {
        let applied: BTreeSet<&str> = edge_sync_versions
            .iter()
            .chain(supabase_cli_versions)
            .map(|v| v.trim())
            .collect();
        let mut newly = Vec::new();
        let mut now_pending = BTreeSet::new();
        for file_name in shipped {
            let version = migration_version(file_name);
            if applied.contains(version) {
                continue;
            }
            now_pending.insert((*file_name).to_owned());
            if self.pending.contains(*file_name) {
                continue;
            }
            let episode = self.episodes.entry((*file_name).to_owned()).or_insert(0);
            *episode += 1;
            newly.push(PendingMigration {
                file_name: (*file_name).to_owned(),
                version: version.to_owned(),
                episode: *episode,
            });
        }
        self.pending = now_pending;
        newly
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_matches_the_migrations_directory() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../supabase/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("supabase/migrations is readable")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        assert_eq!(files, SHIPPED_MIGRATIONS, "update SHIPPED_MIGRATIONS");
        let versions: BTreeSet<&str> = SHIPPED_MIGRATIONS
            .iter()
            .map(|f| migration_version(f))
            .collect();
        assert_eq!(
            versions.len(),
            SHIPPED_MIGRATIONS.len(),
            "versions are unique"
        );
    }

    fn versions(list: &[&str]) -> Vec<String> {
        list.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn pending_once_until_applied_and_again_after_a_regression() {
        let shipped = ["1_a.sql", "2_b.sql", "3_c.sql"];
        let mut watch = MigrationWatch::default();
        let first = watch.on_ledgers(&shipped, &versions(&["1"]), &[]);
        assert_eq!(
            first
                .iter()
                .map(|p| p.file_name.as_str())
                .collect::<Vec<_>>(),
            ["2_b.sql", "3_c.sql"]
        );
        // A crash before the state was saved: the same events, the same keys.
        let mut fresh = MigrationWatch::default();
        assert_eq!(fresh.on_ledgers(&shipped, &versions(&["1"]), &[]), first);
        // Next ticks: nothing new.
        assert!(watch
            .on_ledgers(&shipped, &versions(&["1"]), &[])
            .is_empty());
        // The CLI's ledger counts as applied.
        assert!(watch
            .on_ledgers(&shipped, &versions(&["1"]), &versions(&["2", "3"]))
            .is_empty());
        assert!(watch.pending.is_empty());
        // Pending again after being applied: a new episode, a new key.
        let again = watch.on_ledgers(&shipped, &versions(&["1", "2"]), &[]);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].episode, 2);
        assert_eq!(
            again[0].dedup_key("u1"),
            "supabase:u1:migration.pending:3_c.sql:2"
        );
        assert_ne!(again[0].dedup_key("u1"), first[1].dedup_key("u1"));
        let envelope = again[0].clone().into_envelope("u1", Timestamp(5));
        assert_eq!(envelope.event_type.as_deref(), Some(MIGRATION_PENDING));
        assert_eq!(envelope.event_data["version"], "3");
    }

    #[test]
    fn sql_shapes() {
        assert!(
            LEDGERS_PRESENT_SQL.contains("to_regclass('supabase_migrations.schema_migrations')")
        );
        assert_eq!(
            migration_version("20261203000100_agent_runs.sql"),
            "20261203000100"
        );
    }
}
