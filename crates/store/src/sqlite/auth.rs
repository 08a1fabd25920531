use async_trait::async_trait;
use brisk_model::{AuthKey, EntityName, UserLimits, now_millis};
use rusqlite::{OptionalExtension, Row, params};

use super::SqliteStore;
use crate::error::{Error, Result};
use crate::keys;
use crate::{AuthStore, NamespaceRecord};

const COLUMNS: &str = "subject, namespace, uuid, key_hash, salt, blocked, limits";

type Raw = (String, String, String, Vec<u8>, Vec<u8>, bool, String);

fn record(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn to_record(raw: Raw) -> Result<NamespaceRecord> {
    let (subject, namespace, uuid, key_hash, salt, blocked, limits) = raw;
    Ok(NamespaceRecord {
        subject,
        namespace: EntityName::namespace(&namespace)
            .map_err(|e| Error::Task(format!("stored namespace {namespace}: {e}")))?,
        uuid,
        key_hash,
        salt,
        blocked,
        limits: serde_json::from_str(&limits)?,
    })
}

impl SqliteStore {
    async fn one_namespace(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<NamespaceRecord>> {
        let value = value.to_owned();
        self.read(move |c| {
            let sql = format!("SELECT {COLUMNS} FROM namespaces WHERE {column} = ?1");
            let raw = c.query_row(&sql, [&value], record).optional()?;
            raw.map(to_record).transpose()
        })
        .await
    }
}

#[async_trait]
impl AuthStore for SqliteStore {
    async fn namespace_by_uuid(&self, uuid: &str) -> Result<Option<NamespaceRecord>> {
        self.one_namespace("uuid", uuid).await
    }

    async fn namespace_by_name(&self, namespace: &str) -> Result<Option<NamespaceRecord>> {
        self.one_namespace("namespace", namespace).await
    }

    async fn create_namespace(
        &self,
        subject: &str,
        namespace: &EntityName,
        authkey: &AuthKey,
    ) -> Result<()> {
        let salt = keys::new_salt();
        let hash = keys::hash_key(&salt, &authkey.key);
        let (subject, ns, uuid) = (
            subject.to_owned(),
            namespace.to_string(),
            authkey.uuid.clone(),
        );
        self.write(move |c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO namespaces (namespace, subject, uuid, key_hash, salt, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![ns, subject, uuid, hash, salt, now_millis() as i64],
            )?;
            if n == 0 {
                return Err(Error::NamespaceExists(ns));
            }
            Ok(())
        })
        .await
    }

    async fn list_namespaces(&self) -> Result<Vec<NamespaceRecord>> {
        self.read(|c| {
            let sql = format!("SELECT {COLUMNS} FROM namespaces ORDER BY subject, namespace");
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map([], record)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(to_record(r?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_namespace(&self, namespace: &str) -> Result<bool> {
        let ns = namespace.to_owned();
        self.write(move |c| {
            Ok(c.execute("DELETE FROM namespaces WHERE namespace = ?1", [&ns])? > 0)
        })
        .await
    }

    async fn set_blocked(&self, subject: &str, blocked: bool) -> Result<u64> {
        let subject = subject.to_owned();
        self.write(move |c| {
            Ok(c.execute(
                "UPDATE namespaces SET blocked = ?1 WHERE subject = ?2",
                params![blocked, subject],
            )? as u64)
        })
        .await
    }

    async fn set_limits(&self, namespace: &str, limits: &UserLimits) -> Result<()> {
        let ns = namespace.to_owned();
        let doc = serde_json::to_string(limits)?;
        self.write(move |c| {
            let n = c.execute(
                "UPDATE namespaces SET limits = ?1 WHERE namespace = ?2",
                params![doc, ns],
            )?;
            if n == 0 {
                return Err(Error::NotFound);
            }
            Ok(())
        })
        .await
    }
}
