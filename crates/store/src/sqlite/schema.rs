//! Schema migrations, versioned with `PRAGMA user_version`. Append, never edit.

use rusqlite::Connection;

use crate::error::Result;

const MIGRATIONS: &[&str] = &[
    // 1: entities, activations, identities.
    "CREATE TABLE entities (
        doc_id     TEXT PRIMARY KEY,
        collection TEXT NOT NULL,
        namespace  TEXT NOT NULL,
        path       TEXT NOT NULL,
        name       TEXT NOT NULL,
        updated    INTEGER NOT NULL,
        rev        INTEGER NOT NULL,
        doc        TEXT NOT NULL,
        code       TEXT
    );
    CREATE INDEX entities_by_namespace ON entities(namespace, collection, updated DESC);
    CREATE INDEX entities_by_path ON entities(path, collection, updated DESC);
    CREATE TABLE activations (
        namespace     TEXT NOT NULL,
        activation_id TEXT NOT NULL,
        filter_name   TEXT NOT NULL,
        start         INTEGER NOT NULL,
        doc           TEXT NOT NULL,
        PRIMARY KEY (namespace, activation_id)
    );
    CREATE INDEX activations_by_start ON activations(namespace, start DESC);
    CREATE INDEX activations_by_name ON activations(namespace, filter_name, start DESC);
    CREATE TABLE namespaces (
        namespace TEXT PRIMARY KEY,
        subject   TEXT NOT NULL,
        uuid      TEXT NOT NULL UNIQUE,
        key_hash  BLOB NOT NULL,
        salt      BLOB NOT NULL,
        blocked   INTEGER NOT NULL DEFAULT 0,
        limits    TEXT NOT NULL DEFAULT '{}',
        created   INTEGER NOT NULL
    );",
    // 2: durable alarm schedules.
    "CREATE TABLE alarms (
        trigger   TEXT PRIMARY KEY,
        namespace TEXT NOT NULL,
        spec      TEXT NOT NULL,
        next_fire INTEGER,
        paused    INTEGER NOT NULL DEFAULT 0
    );",
];

pub fn migrate(conn: &mut Connection) -> Result<()> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied store migration");
    }
    Ok(())
}
