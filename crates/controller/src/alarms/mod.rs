//! The built-in alarms provider (`/whisk.system/alarms`): feed actions `alarm` (cron), `once`
//! (a date) and `interval` (minutes) register durable schedules, and a scheduler task fires
//! their triggers through the same path and throttles as any fire.
//!
//! The feed actions run inside the server (no container): they only validate and store a
//! schedule. Missed fires (the server was down when a fire was due) are coalesced: each
//! schedule fires once right after start-up, then resumes from the current time. See
//! `docs/alarms.md`.

mod schedule;

use std::sync::{Arc, Weak};
use std::time::Duration;

use brisk_model::{
    Action, ActivationResponse, AuthKey, Entity, FullyQualifiedName, StatusCode, now_millis,
};
use brisk_store::AlarmRecord;
use serde_json::{Map, Value, json};

pub use schedule::{AfterFire, Feed, Schedule};

use crate::Controller;
use crate::throttle::Rate;

/// Longest the scheduler sleeps without looking at the store again.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// The feed a built-in alarms action implements, if `action` is one.
pub fn feed_of(action: &Action) -> Option<Feed> {
    let pkg = action.namespace.package.as_ref()?;
    if action.namespace.namespace.as_str() != "whisk.system" || pkg.as_str() != "alarms" {
        return None;
    }
    if !action.annotations.is_truthy("feed") {
        return None;
    }
    Feed::from_action(action.name.as_str())
}

fn fail(msg: impl Into<String>) -> ActivationResponse {
    ActivationResponse::error(StatusCode::ApplicationError, msg.into())
}

/// Parameters of the schedule itself (without the lifecycle fields).
fn schedule_params(args: &Map<String, Value>) -> Map<String, Value> {
    let mut p = args.clone();
    for k in ["lifecycleEvent", "triggerName", "authKey"] {
        p.remove(k);
    }
    p
}

impl Controller {
    /// Handles one lifecycle call of a feed action.
    pub(crate) async fn alarm_feed(&self, feed: Feed, args: &Value) -> ActivationResponse {
        let Some(args) = args.as_object() else {
            return fail("alarms feeds require an object of parameters");
        };
        let event = args
            .get("lifecycleEvent")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_uppercase();
        let Some(trigger_name) = args.get("triggerName").and_then(Value::as_str) else {
            return fail("alarms feeds require a triggerName parameter");
        };
        let Some(identity) = (match args
            .get("authKey")
            .and_then(Value::as_str)
            .and_then(AuthKey::parse)
        {
            Some(k) => self.auth.verify(&k).await.ok().flatten(),
            None => None,
        }) else {
            return fail("alarms feeds require a valid authKey parameter");
        };
        let trigger = match FullyQualifiedName::parse_ref(trigger_name, &identity.namespace) {
            Ok(t) if t.package().is_none() && t.namespace() == &identity.namespace => t,
            _ => {
                return fail(format!(
                    "triggerName '{trigger_name}' is not a trigger of the authKey's namespace"
                ));
            }
        };
        let key = trigger.to_string();
        let now = now_millis();
        let result = match event.as_str() {
            "CREATE" | "UPDATE" => {
                let mut params = schedule_params(args);
                if event == "UPDATE" {
                    let old = match self.store.get_alarm(&key).await {
                        Ok(Some(a)) => a,
                        Ok(None) => return fail(format!("trigger {key} has no alarm to update")),
                        Err(e) => return fail(format!("could not read the alarm: {e}")),
                    };
                    let mut merged = old.spec.as_object().cloned().unwrap_or_default();
                    merged.extend(params);
                    params = merged;
                }
                if event == "CREATE"
                    && !matches!(
                        self.fetch(&trigger.doc_id(), false).await,
                        Ok(Some(s)) if matches!(s.entity, Entity::Trigger(_))
                    )
                {
                    return fail(format!("trigger {key} does not exist"));
                }
                let schedule = match Schedule::parse(feed, &params, now) {
                    Ok(s) => s,
                    Err(e) => return fail(e),
                };
                params.insert("feed".into(), Value::from(feed.as_str()));
                let record = AlarmRecord {
                    trigger: key.clone(),
                    namespace: identity.namespace.to_string(),
                    spec: Value::Object(params),
                    next_fire: schedule.next_after(now),
                    paused: false,
                };
                if let Err(e) = self.store.put_alarm(&record).await {
                    return fail(format!("could not store the alarm: {e}"));
                }
                self.alarm_wakeup.notify_one();
                json!({"status": "success", "triggerName": key, "nextFire": record.next_fire})
            }
            "READ" => match self.store.get_alarm(&key).await {
                Ok(Some(a)) => {
                    json!({"config": a.spec, "status": {"active": !a.paused, "nextFire": a.next_fire}})
                }
                Ok(None) => return fail(format!("trigger {key} has no alarm")),
                Err(e) => return fail(format!("could not read the alarm: {e}")),
            },
            "DELETE" => {
                if let Err(e) = self.store.delete_alarm(&key).await {
                    return fail(format!("could not delete the alarm: {e}"));
                }
                json!({"status": "success", "triggerName": key})
            }
            "PAUSE" | "UNPAUSE" => match self.store.get_alarm(&key).await {
                Ok(Some(mut a)) => {
                    a.paused = event == "PAUSE";
                    if let Err(e) = self.store.put_alarm(&a).await {
                        return fail(format!("could not store the alarm: {e}"));
                    }
                    self.alarm_wakeup.notify_one();
                    json!({"status": "success", "active": !a.paused})
                }
                Ok(None) => return fail(format!("trigger {key} has no alarm")),
                Err(e) => return fail(format!("could not read the alarm: {e}")),
            },
            other => return fail(format!("unsupported lifecycleEvent '{other}'")),
        };
        ActivationResponse::success(result)
    }
}

/// The scheduler: fires due alarms, then sleeps until the next one (or a change).
pub async fn run_scheduler(state: Weak<Controller>) {
    loop {
        let Some(ctl) = state.upgrade() else { return };
        let sleep = match tick(&ctl).await {
            Ok(Some(next)) => {
                Duration::from_millis(next.saturating_sub(now_millis())).min(MAX_SLEEP)
            }
            Ok(None) => MAX_SLEEP,
            Err(e) => {
                tracing::warn!(error = %e, "alarm scheduler could not read schedules");
                Duration::from_secs(1)
            }
        };
        let stop = ctl.stopping.clone();
        let wake = ctl.clone();
        drop(ctl);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.alarm_wakeup.notified() => {}
        }
    }
}

/// Fires what is due; returns the earliest future fire.
async fn tick(ctl: &Arc<Controller>) -> brisk_store::Result<Option<u64>> {
    let now = now_millis();
    let mut earliest: Option<u64> = None;
    for mut alarm in ctl.store.list_alarms().await? {
        let Some(next) = alarm.next_fire else {
            continue;
        };
        if alarm.paused {
            continue;
        }
        if next > now {
            earliest = Some(earliest.map_or(next, |e| e.min(next)));
            continue;
        }
        let feed = alarm
            .spec
            .get("feed")
            .and_then(Value::as_str)
            .and_then(Feed::from_action);
        let params = alarm.spec.as_object().cloned().unwrap_or_default();
        // Validated when stored; `0` as "now" so a past `once` date still parses.
        let schedule = feed.and_then(|f| Schedule::parse(f, &params, 0).ok());
        let Some(schedule) = schedule else {
            tracing::warn!(trigger = %alarm.trigger, "dropping an alarm whose schedule no longer parses");
            ctl.store.delete_alarm(&alarm.trigger).await?;
            continue;
        };
        let keep = fire_alarm(ctl, &alarm, &schedule).await;
        alarm.next_fire = schedule.next_after(now);
        if !keep || alarm.next_fire.is_none() {
            ctl.store.delete_alarm(&alarm.trigger).await?;
            if keep && schedule.after_fire != AfterFire::Keep {
                delete_after_fire(ctl, &alarm, schedule.after_fire).await;
            }
            continue;
        }
        ctl.store.put_alarm(&alarm).await?;
        if let Some(n) = alarm.next_fire {
            earliest = Some(earliest.map_or(n, |e| e.min(n)));
        }
    }
    Ok(earliest)
}

/// Fires one alarm's trigger. Returns `false` when the trigger or its owner is gone.
async fn fire_alarm(ctl: &Arc<Controller>, alarm: &AlarmRecord, schedule: &Schedule) -> bool {
    let Ok(owner) = ctl.auth.owner_of(&alarm.namespace).await else {
        return true;
    };
    let Some(owner) = owner else { return false };
    let Ok(fqn) = FullyQualifiedName::parse_ref(&alarm.trigger, &owner.namespace) else {
        return false;
    };
    let trigger = match ctl.fetch(&fqn.doc_id(), false).await {
        Ok(Some(s)) => match s.entity {
            Entity::Trigger(t) => t,
            _ => return false,
        },
        Ok(None) => return false,
        Err(_) => return true,
    };
    let limit = owner
        .limits
        .fires_per_minute
        .unwrap_or(ctl.config.fires_per_minute);
    if let Err(e) = ctl
        .throttles
        .check_rate(owner.namespace.as_str(), Rate::Fires, limit)
    {
        tracing::warn!(trigger = %alarm.trigger, error = %e, "alarm fire throttled");
        return true;
    }
    let tid = format!("alarm-{}", brisk_model::ActivationId::generate());
    let id = crate::fire::fire(ctl, &owner, &trigger, schedule.payload.clone(), None, &tid).await;
    tracing::info!(trigger = %alarm.trigger, activation_id = ?id, "alarm fired");
    true
}

/// `deleteAfterFire`: remove the trigger (and with `rules`, the rules that point at it).
async fn delete_after_fire(ctl: &Controller, alarm: &AlarmRecord, what: AfterFire) {
    let Ok(ns) = brisk_model::EntityName::namespace(&alarm.namespace) else {
        return;
    };
    let Ok(fqn) = FullyQualifiedName::parse_ref(&alarm.trigger, &ns) else {
        return;
    };
    let Ok(Some(stored)) = ctl.fetch(&fqn.doc_id(), false).await else {
        return;
    };
    if let (AfterFire::DeleteTriggerAndRules, Entity::Trigger(t)) = (what, &stored.entity) {
        for rule in t.rules.iter().flat_map(|r| r.keys()) {
            if let Ok(Some(r)) = ctl.fetch(rule, false).await {
                let _ = ctl.store.delete(rule, r.rev).await;
            }
        }
    }
    let _ = ctl.store.delete(&fqn.doc_id(), stored.rev).await;
}
