//! `-p KEY VALUE` / `-P FILE` parameters and `-a` / `-A` annotations as key-value arrays.

use std::path::Path;

use clap::Args;
use serde_json::{Map, Value, json};

use super::CliError;

/// Parameters and annotations of entity create/update.
#[derive(Args, Debug, Clone, Default)]
pub struct KvArgs {
    /// Parameter KEY VALUE; VALUE is JSON when it parses as JSON, else a string.
    #[arg(short = 'p', long = "param", num_args = 2, value_names = ["KEY", "VALUE"], action = clap::ArgAction::Append, allow_hyphen_values = true)]
    pub param: Vec<String>,
    /// A JSON file of parameters (an object).
    #[arg(short = 'P', long = "param-file", value_name = "FILE")]
    pub param_file: Option<std::path::PathBuf>,
    /// Annotation KEY VALUE; VALUE is JSON when it parses as JSON, else a string.
    #[arg(short = 'a', long = "annotation", num_args = 2, value_names = ["KEY", "VALUE"], action = clap::ArgAction::Append, allow_hyphen_values = true)]
    pub annotation: Vec<String>,
    /// A JSON file of annotations (an object).
    #[arg(short = 'A', long = "annotation-file", value_name = "FILE")]
    pub annotation_file: Option<std::path::PathBuf>,
}

/// Only parameters (invoke, fire, feed calls).
#[derive(Args, Debug, Clone, Default)]
pub struct ParamArgs {
    /// Parameter KEY VALUE; VALUE is JSON when it parses as JSON, else a string.
    #[arg(short = 'p', long = "param", num_args = 2, value_names = ["KEY", "VALUE"], action = clap::ArgAction::Append, allow_hyphen_values = true)]
    pub param: Vec<String>,
    /// A JSON file of parameters (an object).
    #[arg(short = 'P', long = "param-file", value_name = "FILE")]
    pub param_file: Option<std::path::PathBuf>,
}

impl KvArgs {
    pub fn params(&self) -> Result<Option<Map<String, Value>>, CliError> {
        object(&self.param, self.param_file.as_deref())
    }

    pub fn annotations(&self) -> Result<Option<Map<String, Value>>, CliError> {
        object(&self.annotation, self.annotation_file.as_deref())
    }
}

impl ParamArgs {
    /// The parameters as a JSON object (empty when none were given).
    pub fn object(&self) -> Result<Map<String, Value>, CliError> {
        Ok(object(&self.param, self.param_file.as_deref())?.unwrap_or_default())
    }
}

/// A value from the command line: JSON when valid JSON, else the string itself.
pub fn parse_value(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_owned()))
}

/// The file's object, then the flag pairs over it; `None` when neither was given.
fn object(pairs: &[String], file: Option<&Path>) -> Result<Option<Map<String, Value>>, CliError> {
    if pairs.is_empty() && file.is_none() {
        return Ok(None);
    }
    let mut map = Map::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(obj)) => map.extend(obj),
            _ => {
                return Err(CliError::usage(format!(
                    "{} must contain a JSON object",
                    path.display()
                )));
            }
        }
    }
    for pair in pairs.chunks(2) {
        if let [k, v] = pair {
            map.insert(k.clone(), parse_value(v));
        }
    }
    Ok(Some(map))
}

/// `{"k": v}` → `[{"key": "k", "value": v}]`.
pub fn to_key_values(map: &Map<String, Value>) -> Value {
    Value::Array(
        map.iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect(),
    )
}

/// The value of `key` in a key-value array.
pub fn kv_get<'a>(array: &'a Value, key: &str) -> Option<&'a Value> {
    array
        .as_array()?
        .iter()
        .find(|kv| kv.get("key").and_then(Value::as_str) == Some(key))
        .and_then(|kv| kv.get("value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_json_when_valid() {
        let check = |input: &str, expected: Value| assert_eq!(parse_value(input), expected);
        check("5", json!(5));
        check("true", json!(true));
        check("hello", json!("hello"));
        check("\"quoted\"", json!("quoted"));
        check("{\"a\":[1]}", json!({"a": [1]}));
        check("*/5 * * * *", json!("*/5 * * * *"));
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("p.json");
        std::fs::write(&file, r#"{"a": 1, "b": "x"}"#).expect("write");
        let map = object(&["b".into(), "2".into()], Some(&file))
            .expect("parse")
            .expect("some");
        assert_eq!(Value::Object(map), json!({"a": 1, "b": 2}));
        assert_eq!(
            to_key_values(&serde_json::from_value(json!({"k": true})).expect("map")),
            json!([{"key": "k", "value": true}])
        );
    }
}
