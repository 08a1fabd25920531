use async_trait::async_trait;
use brisk_model::{Activation, ActivationId};
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::error::Result;
use crate::{ActivationQuery, ActivationStore};

/// `WHERE` clause and parameters shared by list and count.
fn filter(q: &ActivationQuery) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let mut cond = String::from("namespace = ?");
    let mut args = vec![V::Text(q.namespace.clone())];
    if let Some(name) = &q.name {
        cond.push_str(" AND filter_name = ?");
        args.push(V::Text(name.clone()));
    }
    if let Some(since) = q.since {
        cond.push_str(" AND start >= ?");
        args.push(V::Integer(since as i64));
    }
    if let Some(upto) = q.upto {
        cond.push_str(" AND start <= ?");
        args.push(V::Integer(upto as i64));
    }
    (cond, args)
}

#[async_trait]
impl ActivationStore for SqliteStore {
    async fn store_batch(&self, records: &[std::sync::Arc<Activation>]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        // Serialized on the writer's thread, off the async workers that serve requests.
        let records = records.to_vec();
        self.write(move |c| {
            // A record that fails to serialize drops the transaction: nothing of the batch is
            // written.
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT OR REPLACE INTO activations (namespace, activation_id, filter_name, start, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for a in &records {
                    stmt.execute(params![
                        a.namespace,
                        a.activation_id.as_str(),
                        a.filter_name(),
                        a.start as i64,
                        serde_json::to_string(&**a)?,
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn get_activation(
        &self,
        namespace: &str,
        id: &ActivationId,
    ) -> Result<Option<Activation>> {
        let ns = namespace.to_owned();
        let id = id.to_string();
        self.read(move |c| {
            let doc: Option<String> = c
                .query_row(
                    "SELECT doc FROM activations WHERE namespace = ?1 AND activation_id = ?2",
                    params![ns, id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
        })
        .await
    }

    async fn list_activations(&self, q: &ActivationQuery) -> Result<Vec<Activation>> {
        let q = q.clone();
        self.read(move |c| {
            let (cond, mut args) = filter(&q);
            let limit = if q.limit == 0 { -1 } else { q.limit as i64 };
            args.push(rusqlite::types::Value::Integer(limit));
            args.push(rusqlite::types::Value::Integer(q.skip as i64));
            let sql = format!(
                "SELECT doc FROM activations WHERE {cond} ORDER BY start DESC, activation_id LIMIT ? OFFSET ?"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for doc in rows {
                out.push(serde_json::from_str(&doc?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn count_activations(&self, q: &ActivationQuery) -> Result<u64> {
        let q = q.clone();
        self.read(move |c| {
            let (cond, args) = filter(&q);
            let sql = format!("SELECT COUNT(*) FROM activations WHERE {cond}");
            let n: i64 = c.query_row(&sql, rusqlite::params_from_iter(args), |r| r.get(0))?;
            Ok((n as u64).saturating_sub(q.skip))
        })
        .await
    }
}
