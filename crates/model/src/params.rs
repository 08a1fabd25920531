//! Parameters and annotations: ordered `[{"key", "value"}]` lists (wire spec §2.2).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One `{"key": .., "value": ..}` entry. `init` marks parameters delivered at `/init`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
}

/// An ordered key/value list. Later entries with the same key win when read as a map.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Parameters(pub Vec<KeyValue>);

impl Parameters {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .rev()
            .find(|kv| kv.key == key)
            .map(|kv| &kv.value)
    }

    /// Whether `key` is set to a truthy value (OpenWhisk's notion: not false, null, 0 or "").
    pub fn is_truthy(&self, key: &str) -> bool {
        self.get(key).is_some_and(truthy)
    }

    /// Whether `key` is set to exactly JSON `true`.
    pub fn is_true(&self, key: &str) -> bool {
        self.get(key) == Some(&Value::Bool(true))
    }

    /// Sets `key`, replacing an existing entry in place or appending.
    pub fn set(&mut self, key: &str, value: Value) {
        if let Some(kv) = self.0.iter_mut().find(|kv| kv.key == key) {
            kv.value = value;
        } else {
            self.0.push(KeyValue {
                key: key.to_owned(),
                value,
                init: None,
            });
        }
    }

    pub fn remove(&mut self, key: &str) {
        self.0.retain(|kv| kv.key != key);
    }

    /// Overlays `other` onto `self`: keys of `other` replace ours, new keys are appended.
    pub fn merge(&mut self, other: &Parameters) {
        for kv in &other.0 {
            if let Some(mine) = self.0.iter_mut().find(|m| m.key == kv.key) {
                *mine = kv.clone();
            } else {
                self.0.push(kv.clone());
            }
        }
    }

    /// Removes duplicate keys, keeping the last value at the first key's position.
    pub fn dedup(self) -> Self {
        let mut out = Parameters::new();
        out.merge(&self);
        out
    }

    /// Keys of parameters marked `init: true`.
    pub fn init_keys(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(|kv| kv.init == Some(true))
            .map(|kv| kv.key.as_str())
    }

    /// The list as a JSON object (later duplicates win).
    pub fn to_object(&self) -> Map<String, Value> {
        let mut m = Map::with_capacity(self.0.len());
        for kv in &self.0 {
            m.insert(kv.key.clone(), kv.value.clone());
        }
        m
    }

    /// Size of the serialized list in bytes, for the 1 MB limits.
    pub fn json_size(&self) -> usize {
        serde_json::to_vec(self).map(|v| v.len()).unwrap_or(0)
    }
}

impl FromIterator<(String, Value)> for Parameters {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Parameters(
            iter.into_iter()
                .map(|(key, value)| KeyValue {
                    key,
                    value,
                    init: None,
                })
                .collect(),
        )
    }
}

/// OpenWhisk's truthiness for annotation values.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_overrides_and_appends() {
        let mut a: Parameters = serde_json::from_value(json!([
            {"key": "x", "value": 1}, {"key": "y", "value": 2}
        ]))
        .unwrap();
        let b: Parameters =
            serde_json::from_value(json!([{"key": "y", "value": 3}, {"key": "z", "value": 4}]))
                .unwrap();
        a.merge(&b);
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!([{"key":"x","value":1},{"key":"y","value":3},{"key":"z","value":4}])
        );
    }

    #[test]
    fn truthiness_matches_openwhisk() {
        for (v, t) in [
            (json!(null), false),
            (json!(false), false),
            (json!(0), false),
            (json!(""), false),
            (json!(true), true),
            (json!(1), true),
            (json!("x"), true),
            (json!([]), true),
            (json!({}), true),
        ] {
            assert_eq!(truthy(&v), t, "{v}");
        }
    }
}
