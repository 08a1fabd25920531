use async_trait::async_trait;
use brisk_model::{Collection, Entity, Exec};
use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use super::SqliteStore;
use crate::error::{Error, Result};
use crate::{EntityQuery, EntityStore, Stored};

/// Splits an action's code out of its document so lists never load it.
fn split_code(entity: &Entity) -> (Value, Option<String>) {
    let mut doc = entity.to_doc();
    let mut code = None;
    if let Entity::Action(a) = entity
        && !matches!(a.exec, Exec::Sequence { .. })
        && let Some(Value::Object(exec)) = doc.get_mut("exec")
        && let Some(Value::String(c)) = exec.remove("code")
    {
        code = Some(c);
    }
    (doc, code)
}

fn join_code(mut doc: Value, code: Option<String>) -> Value {
    if let (Some(code), Some(Value::Object(exec))) = (code, doc.get_mut("exec")) {
        exec.insert("code".into(), Value::String(code));
    }
    doc
}

fn decode(collection: &str, doc: &str, code: Option<String>) -> Result<Entity> {
    let collection = Collection::parse(collection)
        .ok_or_else(|| Error::Task(format!("unknown collection {collection}")))?;
    let doc: Value = serde_json::from_str(doc)?;
    Ok(Entity::from_doc(collection, join_code(doc, code))?)
}

fn where_clause(q: &EntityQuery) -> (&'static str, String) {
    match &q.package {
        Some(pkg) => ("path = ?1", format!("{}/{}", q.namespace, pkg)),
        None => ("namespace = ?1", q.namespace.clone()),
    }
}

#[async_trait]
impl EntityStore for SqliteStore {
    async fn get(&self, doc_id: &str, with_code: bool) -> Result<Option<Stored>> {
        let doc_id = doc_id.to_owned();
        self.read(move |c| {
            let sql = if with_code {
                "SELECT collection, doc, rev, code FROM entities WHERE doc_id = ?1"
            } else {
                "SELECT collection, doc, rev, NULL FROM entities WHERE doc_id = ?1"
            };
            let row = c
                .query_row(sql, [&doc_id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })
                .optional()?;
            row.map(|(coll, doc, rev, code)| {
                Ok(Stored {
                    entity: decode(&coll, &doc, code)?,
                    rev: rev as u64,
                })
            })
            .transpose()
        })
        .await
    }

    async fn put(&self, entity: &Entity, expected_rev: Option<u64>) -> Result<u64> {
        let fqn = entity.fqn();
        let doc_id = fqn.doc_id();
        let collection = entity.collection().as_str();
        let namespace = fqn.namespace().to_string();
        let path = fqn.path.to_string();
        let name = fqn.name.to_string();
        let updated = entity.updated() as i64;
        let (doc, code) = split_code(entity);
        let doc = serde_json::to_string(&doc)?;
        self.write(move |c| {
            let tx = c.transaction()?;
            let current: Option<i64> = tx
                .query_row("SELECT rev FROM entities WHERE doc_id = ?1", [&doc_id], |r| {
                    r.get(0)
                })
                .optional()?;
            let new_rev = match (current, expected_rev) {
                (None, None) => 1,
                (Some(_), None) => return Err(Error::Exists),
                (None, Some(_)) => return Err(Error::Conflict),
                (Some(cur), Some(exp)) if cur as u64 != exp => return Err(Error::Conflict),
                (Some(cur), Some(_)) => cur + 1,
            };
            tx.execute(
                "INSERT INTO entities (doc_id, collection, namespace, path, name, updated, rev, doc, code)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(doc_id) DO UPDATE SET collection = ?2, namespace = ?3, path = ?4,
                   name = ?5, updated = ?6, rev = ?7, doc = ?8, code = ?9",
                params![doc_id, collection, namespace, path, name, updated, new_rev, doc, code],
            )?;
            tx.commit()?;
            Ok(new_rev as u64)
        })
        .await
    }

    async fn delete(&self, doc_id: &str, rev: u64) -> Result<()> {
        let doc_id = doc_id.to_owned();
        self.write(move |c| {
            let n = c.execute(
                "DELETE FROM entities WHERE doc_id = ?1 AND rev = ?2",
                params![doc_id, rev as i64],
            )?;
            if n == 1 {
                return Ok(());
            }
            let exists: Option<i64> = c
                .query_row(
                    "SELECT rev FROM entities WHERE doc_id = ?1",
                    [&doc_id],
                    |r| r.get(0),
                )
                .optional()?;
            Err(if exists.is_some() {
                Error::Conflict
            } else {
                Error::NotFound
            })
        })
        .await
    }

    async fn list(&self, q: &EntityQuery) -> Result<Vec<Entity>> {
        let q = q.clone();
        self.read(move |c| {
            let (cond, key) = where_clause(&q);
            let limit = if q.limit == 0 { -1 } else { q.limit as i64 };
            let sql = format!(
                "SELECT collection, doc FROM entities WHERE {cond} AND collection = ?2
                 ORDER BY updated DESC, doc_id LIMIT ?3 OFFSET ?4"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![key, q.collection.as_str(), limit, q.skip as i64],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (coll, doc) = row?;
                out.push(decode(&coll, &doc, None)?);
            }
            Ok(out)
        })
        .await
    }

    async fn count(&self, q: &EntityQuery) -> Result<u64> {
        let q = q.clone();
        self.read(move |c| {
            let (cond, key) = where_clause(&q);
            let sql = format!("SELECT COUNT(*) FROM entities WHERE {cond} AND collection = ?2");
            let n: i64 = c.query_row(&sql, params![key, q.collection.as_str()], |r| r.get(0))?;
            Ok((n as u64).saturating_sub(q.skip))
        })
        .await
    }
}
