use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};

use super::SqliteStore;
use crate::error::Result;
use crate::{AlarmRecord, AlarmStore};

type Raw = (String, String, String, Option<i64>, bool);

fn raw(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn decode((trigger, namespace, spec, next_fire, paused): Raw) -> Result<AlarmRecord> {
    Ok(AlarmRecord {
        trigger,
        namespace,
        spec: serde_json::from_str(&spec)?,
        next_fire: next_fire.map(|n| n as u64),
        paused,
    })
}

#[async_trait]
impl AlarmStore for SqliteStore {
    async fn put_alarm(&self, a: &AlarmRecord) -> Result<()> {
        let spec = serde_json::to_string(&a.spec)?;
        let a = a.clone();
        self.write(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO alarms (trigger, namespace, spec, next_fire, paused)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    a.trigger,
                    a.namespace,
                    spec,
                    a.next_fire.map(|n| n as i64),
                    a.paused
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_alarm(&self, trigger: &str) -> Result<Option<AlarmRecord>> {
        let t = trigger.to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT trigger, namespace, spec, next_fire, paused FROM alarms WHERE trigger = ?1",
                [&t],
                raw,
            )
            .optional()?
            .map(decode)
            .transpose()
        })
        .await
    }

    async fn delete_alarm(&self, trigger: &str) -> Result<bool> {
        let t = trigger.to_owned();
        self.write(move |c| Ok(c.execute("DELETE FROM alarms WHERE trigger = ?1", [&t])? > 0))
            .await
    }

    async fn list_alarms(&self) -> Result<Vec<AlarmRecord>> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT trigger, namespace, spec, next_fire, paused FROM alarms")?;
            let rows = stmt.query_map([], raw)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(decode(r?)?);
            }
            Ok(out)
        })
        .await
    }
}
