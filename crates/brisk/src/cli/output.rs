//! Printing like `wsk`: `ok: ...` lines, JSON indented by four spaces, list tables; or, with
//! `--json`, exactly one JSON document per command on stdout.

use serde::Serialize;
use serde_json::Value;

use super::params::kv_get;

#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
}

/// JSON indented by four spaces, as wsk prints it.
pub fn pretty(v: &Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    match v.serialize(&mut ser) {
        Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
        Err(_) => v.to_string(),
    }
}

impl Out {
    /// `ok: <msg>` in text mode; nothing with `--json`.
    pub fn ok(&self, msg: &str) {
        if !self.json {
            println!("ok: {msg}");
        }
    }

    /// The document with `--json`; in text mode the `ok:` line.
    pub fn done(&self, msg: &str, doc: &Value) {
        if self.json {
            println!("{}", pretty(doc));
        } else {
            println!("ok: {msg}");
        }
    }

    /// The `ok:` line then the pretty JSON (text mode), or just the JSON.
    pub fn got(&self, msg: &str, doc: &Value) {
        if !self.json {
            println!("ok: {msg}");
        }
        println!("{}", pretty(doc));
    }

    pub fn json(&self, doc: &Value) {
        println!("{}", pretty(doc));
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn publish_state(v: &Value) -> &'static str {
    if v.get("publish").and_then(Value::as_bool) == Some(true) {
        "shared"
    } else {
        "private"
    }
}

/// `/ns/name` of a list element.
pub fn full_name(v: &Value) -> String {
    format!("/{}/{}", str_field(v, "namespace"), str_field(v, "name"))
}

/// A wsk list table: the collection header then one row per entity.
pub fn table(collection: &str, items: &[Value]) -> String {
    let mut s = format!("{collection}\n");
    for item in items {
        let name = full_name(item);
        let row = match collection {
            "actions" => {
                let kind = kv_get(item.get("annotations").unwrap_or(&Value::Null), "exec")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                format!("{name:<70} {} {kind}", publish_state(item))
            }
            "rules" => format!(
                "{name:<70} {:<20} {}",
                publish_state(item),
                str_field(item, "status")
            ),
            "packages" => {
                let binding = item
                    .get("binding")
                    .filter(|b| b.as_object().is_some_and(|o| !o.is_empty()))
                    .map(|b| {
                        format!(
                            " binding /{}/{}",
                            str_field(b, "namespace"),
                            str_field(b, "name")
                        )
                    })
                    .unwrap_or_default();
                format!("{name:<70} {}{binding}", publish_state(item))
            }
            _ => format!("{name:<70} {}", publish_state(item)),
        };
        s.push_str(row.trim_end());
        s.push('\n');
    }
    s
}

/// The text of an activation's status code.
pub fn status_text(code: Option<i64>) -> &'static str {
    match code {
        Some(0) => "success",
        Some(1) => "application error",
        Some(2) => "developer error",
        Some(3) => "internal error",
        _ => "",
    }
}

/// wsk's activation list table.
pub fn activation_table(items: &[Value]) -> String {
    let mut s = format!(
        "{:<19} {:<32} {:<9} {:<5} {:<10} {:<17} {}\n",
        "Datetime", "Activation ID", "Kind", "Start", "Duration", "Status", "Entity"
    );
    for a in items {
        let start = a.get("start").and_then(Value::as_i64).unwrap_or(0);
        let when = chrono::DateTime::from_timestamp_millis(start)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_default();
        let annotations = a.get("annotations").cloned().unwrap_or(Value::Null);
        let kind = kv_get(&annotations, "kind")
            .and_then(Value::as_str)
            .unwrap_or("trigger");
        let start_kind = if kv_get(&annotations, "initTime").is_some() {
            "cold"
        } else if kind == "sequence" || kind == "trigger" {
            "--"
        } else {
            "warm"
        };
        let duration = a
            .get("duration")
            .and_then(Value::as_i64)
            .map(|d| format!("{d}ms"))
            .unwrap_or_else(|| "--".into());
        let status = status_text(a.get("statusCode").and_then(Value::as_i64).or_else(|| {
            // full records (--full) carry the status in `response`
            a.pointer("/response/success")
                .and_then(Value::as_bool)
                .map(|ok| if ok { 0 } else { 1 })
        }));
        let status = if status.is_empty() { "success" } else { status };
        let entity = format!(
            "{}/{}:{}",
            str_field(a, "namespace"),
            str_field(a, "name"),
            str_field(a, "version")
        );
        s.push_str(&format!(
            "{when:<19} {:<32} {kind:<9} {start_kind:<5} {duration:<10} {status:<17} {entity}\n",
            str_field(a, "activationId")
        ));
    }
    s
}

/// `--summary` of an action, trigger or package, like wsk.
pub fn summary(kind: &str, entity: &Value) -> String {
    let name = full_name(entity);
    let annotations = entity.get("annotations").cloned().unwrap_or(Value::Null);
    let description = kv_get(&annotations, "description")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut params: Vec<String> = entity
        .get("parameters")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|kv| kv.get("key").and_then(Value::as_str))
                .map(|k| format!("*{k}"))
                .collect()
        })
        .unwrap_or_default();
    params.sort();
    let params = if params.is_empty() {
        "none defined".to_owned()
    } else {
        params.join(", ")
    };
    let mut s = if description.is_empty() {
        format!("{kind} {name}\n")
    } else {
        format!("{kind} {name}: {description}\n")
    };
    s.push_str(&format!("   (parameters: {params})\n"));
    if kind == "package" {
        for (field, label) in [("actions", " action"), ("feeds", "   feed")] {
            for a in entity
                .get(field)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                s.push_str(&format!("{label} {name}/{}\n", str_field(a, "name")));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_look_like_wsk() {
        let actions = [json!({"namespace":"guest","name":"hello","publish":false,
            "annotations":[{"key":"exec","value":"nodejs:20"}]})];
        let t = table("actions", &actions);
        assert!(t.starts_with("actions\n/guest/hello "), "{t}");
        assert!(t.ends_with(" private nodejs:20\n"), "{t}");
        assert_eq!(
            pretty(&json!({"a": [1]})),
            "{\n    \"a\": [\n        1\n    ]\n}"
        );
    }
}
