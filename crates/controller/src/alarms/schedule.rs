//! Alarm schedules as pure values: parsing feed parameters and computing the next fire time for
//! a given "now". No clock is read here, so every rule is testable at any instant.

use chrono::{DateTime, TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde_json::{Map, Value, json};

/// Which feed created the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Alarm,
    Once,
    Interval,
}

impl Feed {
    pub fn from_action(name: &str) -> Option<Self> {
        Some(match name {
            "alarm" => Feed::Alarm,
            "once" => Feed::Once,
            "interval" => Feed::Interval,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Feed::Alarm => "alarm",
            Feed::Once => "once",
            Feed::Interval => "interval",
        }
    }
}

/// What `deleteAfterFire` asks for once a `once` alarm has fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFire {
    Keep,
    DeleteTrigger,
    DeleteTriggerAndRules,
}

#[derive(Debug, Clone)]
pub enum Rule {
    Cron(Box<Cron>),
    Once(u64),
    Interval(u64),
}

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub rule: Rule,
    pub start: Option<u64>,
    pub stop: Option<u64>,
    pub payload: Map<String, Value>,
    pub after_fire: AfterFire,
}

/// Epoch ms or an ISO-8601 / RFC 3339 date.
pub fn parse_date(v: &Value, name: &str) -> Result<u64, String> {
    let bad =
        || format!("{name} parameter '{v}' is not a valid date (epoch milliseconds or ISO 8601)");
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(bad),
        Value::String(s) => {
            if let Ok(ms) = s.trim().parse::<u64>() {
                return Ok(ms);
            }
            DateTime::parse_from_rfc3339(s.trim())
                .map(|d| d.timestamp_millis().max(0) as u64)
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M:%S%.f")
                        .map(|d| Utc.from_utc_datetime(&d).timestamp_millis().max(0) as u64)
                })
                .map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

pub fn parse_cron(pattern: &str) -> Result<Cron, String> {
    let fields = pattern.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "cron pattern '{pattern}' is not valid: expected 5 fields (or 6 with seconds)"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(pattern)
        .map_err(|e| format!("cron pattern '{pattern}' is not valid: {e}"))
}

impl Schedule {
    /// Validates a feed's parameters (`now` decides whether a `once` date is in the future).
    pub fn parse(feed: Feed, p: &Map<String, Value>, now: u64) -> Result<Self, String> {
        let date = |k: &str| {
            p.get(k)
                .filter(|v| !v.is_null())
                .map(|v| parse_date(v, k))
                .transpose()
        };
        if let Some(tz) = p.get("timezone").and_then(Value::as_str)
            && !matches!(tz, "UTC" | "Etc/UTC" | "GMT" | "Z")
        {
            return Err(format!(
                "timezone '{tz}' is not supported: schedules run in UTC"
            ));
        }
        let rule = match feed {
            Feed::Alarm => {
                let cron = p
                    .get("cron")
                    .and_then(Value::as_str)
                    .ok_or("alarms trigger feeds require a cron parameter")?;
                Rule::Cron(Box::new(parse_cron(cron)?))
            }
            Feed::Once => {
                let at = date("date")?.ok_or("alarms once feeds require a date parameter")?;
                if at <= now {
                    return Err(format!("date parameter '{at}' must be in the future"));
                }
                Rule::Once(at)
            }
            Feed::Interval => {
                let minutes = p
                    .get("minutes")
                    .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
                    .filter(|m| *m > 0)
                    .ok_or("interval feeds require a positive integer minutes parameter")?;
                Rule::Interval(minutes * 60_000)
            }
        };
        let start = date("startDate")?;
        let stop = date("stopDate")?;
        if let (Some(a), Some(b)) = (start, stop)
            && b <= a
        {
            return Err("stopDate must be after startDate".into());
        }
        if let Some(s) = stop
            && s <= now
        {
            return Err("stopDate must be in the future".into());
        }
        let payload = match p.get("trigger_payload") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(m)) => m,
                _ => json!({"payload": s})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            },
            Some(other) => json!({"payload": other})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        let after_fire = match p.get("deleteAfterFire") {
            Some(Value::Bool(true)) => AfterFire::DeleteTrigger,
            Some(Value::String(s)) if s == "rules" => AfterFire::DeleteTriggerAndRules,
            Some(Value::String(s)) if s == "true" => AfterFire::DeleteTrigger,
            _ => AfterFire::Keep,
        };
        Ok(Self {
            rule,
            start,
            stop,
            payload,
            after_fire,
        })
    }

    /// The first fire strictly after `after` (epoch ms), honouring start and stop dates.
    pub fn next_after(&self, after: u64) -> Option<u64> {
        let from = self.start.map_or(after, |s| after.max(s.saturating_sub(1)));
        let next = match &self.rule {
            Rule::Once(at) => (*at > after).then_some(*at)?,
            Rule::Interval(every) => match self.start {
                Some(s) if s > after => s,
                Some(s) => s + ((after - s) / every + 1) * every,
                None => after + every,
            },
            Rule::Cron(cron) => {
                let t = Utc.timestamp_millis_opt(from as i64).single()?;
                let n = cron.find_next_occurrence(&t, false).ok()?;
                n.timestamp_millis().max(0) as u64
            }
        };
        match self.stop {
            Some(stop) if next > stop => None,
            _ => Some(next),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    const T0: u64 = 1_800_000_000_000; // 2027-01-15T08:00:00Z

    #[test]
    fn cron_next_fires_on_the_minute() {
        let s = Schedule::parse(Feed::Alarm, &params(json!({"cron": "*/5 * * * *"})), T0).unwrap();
        let n = s.next_after(T0).unwrap();
        assert_eq!(n % 300_000, 0);
        assert!(n > T0 && n <= T0 + 300_000);
        let n2 = s.next_after(n).unwrap();
        assert_eq!(n2 - n, 300_000);
        // Six fields: seconds.
        let s =
            Schedule::parse(Feed::Alarm, &params(json!({"cron": "*/10 * * * * *"})), T0).unwrap();
        assert_eq!(s.next_after(T0).unwrap() - T0, 10_000);
    }

    #[test]
    fn start_and_stop_dates_bound_the_schedule() {
        let p = params(
            json!({"cron": "* * * * *", "startDate": T0 + 3_600_000, "stopDate": T0 + 3_700_000}),
        );
        let s = Schedule::parse(Feed::Alarm, &p, T0).unwrap();
        let first = s.next_after(T0).unwrap();
        assert!(first >= T0 + 3_600_000);
        assert_eq!(s.next_after(T0 + 3_700_000), None);
    }

    #[test]
    fn once_and_interval() {
        let once = Schedule::parse(
            Feed::Once,
            &params(json!({"date": "2027-01-15T08:00:05Z", "deleteAfterFire": "rules"})),
            T0,
        )
        .unwrap();
        assert_eq!(once.next_after(T0), Some(T0 + 5_000));
        assert_eq!(once.next_after(T0 + 5_000), None);
        assert_eq!(once.after_fire, AfterFire::DeleteTriggerAndRules);
        let i = Schedule::parse(Feed::Interval, &params(json!({"minutes": 2})), T0).unwrap();
        assert_eq!(i.next_after(T0), Some(T0 + 120_000));
        let i = Schedule::parse(
            Feed::Interval,
            &params(json!({"minutes": 1, "startDate": T0 - 90_000})),
            T0,
        )
        .unwrap();
        assert_eq!(i.next_after(T0), Some(T0 + 30_000));
    }

    #[test]
    fn bad_parameters_are_rejected_with_reasons() {
        let bad = |f: Feed, v: Value| Schedule::parse(f, &params(v), T0).unwrap_err();
        assert!(bad(Feed::Alarm, json!({})).contains("cron"));
        assert!(bad(Feed::Alarm, json!({"cron": "61 * * * *"})).contains("not valid"));
        assert!(bad(Feed::Alarm, json!({"cron": "* *"})).contains("5 fields"));
        assert!(bad(Feed::Once, json!({"date": T0 - 1})).contains("future"));
        assert!(bad(Feed::Once, json!({"date": "yesterday"})).contains("not a valid date"));
        assert!(bad(Feed::Interval, json!({"minutes": 0})).contains("minutes"));
        assert!(
            bad(
                Feed::Alarm,
                json!({"cron": "* * * * *", "timezone": "Europe/Paris"})
            )
            .contains("UTC")
        );
    }

    #[test]
    fn trigger_payload_becomes_the_event() {
        let s = Schedule::parse(
            Feed::Interval,
            &params(json!({"minutes": 1, "trigger_payload": {"a": 1}})),
            T0,
        )
        .unwrap();
        assert_eq!(Value::Object(s.payload), json!({"a": 1}));
    }
}
