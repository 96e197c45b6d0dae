//! A Durable Object's SQLite storage as a small typed record store: JSON values under string
//! keys, with optional expiry. Every call is synchronous, so a read-modify-write without an
//! `await` in between is atomic (the Durable Object runs one event at a time between awaits).

use serde::{de::DeserializeOwned, Serialize};
use worker::{SqlStorage, SqlStorageValue};

use edge_sync_shared::Timestamp;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS records (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        expires_at INTEGER
    )",
    "CREATE INDEX IF NOT EXISTS records_expiry ON records (expires_at) WHERE expires_at IS NOT NULL",
];

/// Typed access to the `records` table.
#[derive(Debug, Clone)]
pub struct Store {
    sql: SqlStorage,
}

#[derive(serde::Deserialize)]
struct ValueRow {
    value: String,
}

impl Store {
    /// Opens the store, creating its table on first use.
    pub fn open(sql: SqlStorage) -> worker::Result<Self> {
        for statement in SCHEMA {
            sql.exec(statement, None)?;
        }
        Ok(Self { sql })
    }

    /// A store whose table could not be created; every call will report the SQLite error.
    pub fn unopened(sql: SqlStorage) -> Self {
        Self { sql }
    }

    /// The SQLite handle, for modules with tables of their own.
    pub fn sql(&self) -> &SqlStorage {
        &self.sql
    }

    /// The value under `key`, unless absent or expired at `now`.
    pub fn get<T: DeserializeOwned>(&self, key: &str, now: Timestamp) -> worker::Result<Option<T>> {
        let rows: Vec<ValueRow> = self
            .sql
            .exec(
                "SELECT value FROM records WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
                vec![key.into(), SqlStorageValue::from(now.as_millis())],
            )?
            .to_array()?;
        rows.first()
            .map(|row| {
                serde_json::from_str(&row.value)
                    .map_err(|e| worker::Error::RustError(format!("stored {key}: {e}")))
            })
            .transpose()
    }

    /// Stores `value` under `key`, replacing any previous value.
    pub fn put<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        expires_at: Option<Timestamp>,
    ) -> worker::Result<()> {
        let json =
            serde_json::to_string(value).map_err(|e| worker::Error::RustError(e.to_string()))?;
        let expiry = match expires_at {
            Some(t) => SqlStorageValue::from(t.as_millis()),
            None => SqlStorageValue::Null,
        };
        self.sql.exec(
            "INSERT INTO records (key, value, expires_at) VALUES (?, ?, ?)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            vec![key.into(), json.into(), expiry],
        )?;
        Ok(())
    }

    /// Removes `key` and returns what it held, expired or not (so a caller can tell
    /// "expired" from "unknown").
    pub fn take_even_if_expired<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> worker::Result<Option<T>> {
        let rows: Vec<ValueRow> = self
            .sql
            .exec("SELECT value FROM records WHERE key = ?", vec![key.into()])?
            .to_array()?;
        self.delete(key)?;
        rows.first()
            .map(|row| {
                serde_json::from_str(&row.value)
                    .map_err(|e| worker::Error::RustError(format!("stored {key}: {e}")))
            })
            .transpose()
    }

    /// Removes `key`.
    pub fn delete(&self, key: &str) -> worker::Result<()> {
        self.sql
            .exec("DELETE FROM records WHERE key = ?", vec![key.into()])?;
        Ok(())
    }

    /// Every unexpired value whose key starts with `prefix`, in key order.
    pub fn list<T: DeserializeOwned>(
        &self,
        prefix: &str,
        now: Timestamp,
    ) -> worker::Result<Vec<(String, T)>> {
        #[derive(serde::Deserialize)]
        struct Row {
            key: String,
            value: String,
        }
        let rows: Vec<Row> = self
            .sql
            .exec(
                // A key range, so the primary key's index finds the rows: every key that
                // starts with `prefix` sorts between it and `prefix` + U+10FFFF.
                "SELECT key, value FROM records WHERE key >= ? AND key < ?
                 AND (expires_at IS NULL OR expires_at > ?) ORDER BY key",
                vec![
                    prefix.into(),
                    format!("{prefix}\u{10FFFF}").into(),
                    SqlStorageValue::from(now.as_millis()),
                ],
            )?
            .to_array()?;
        rows.into_iter()
            .map(|row| {
                let value = serde_json::from_str(&row.value)
                    .map_err(|e| worker::Error::RustError(format!("stored {}: {e}", row.key)))?;
                Ok((row.key, value))
            })
            .collect()
    }

    /// Deletes every record that expired before `now`.
    pub fn purge_expired(&self, now: Timestamp) -> worker::Result<()> {
        self.sql.exec(
            "DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at <= ?",
            vec![SqlStorageValue::from(now.as_millis())],
        )?;
        Ok(())
    }

    /// Deletes every record (used when a connection is deleted).
    pub fn clear(&self) -> worker::Result<()> {
        self.sql.exec("DELETE FROM records", None)?;
        Ok(())
    }
}
