//! Activation records (wire spec §2.6).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::{ModelError, Result};
use crate::params::Parameters;
use crate::semver::SemVer;

/// 32 lowercase hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActivationId([u8; 32]);

impl ActivationId {
    /// A fresh id: 12 hex digits of the current time in milliseconds, then 80 random bits.
    /// Clients treat ids as opaque, so the layout is free; time-ordered ids make each new
    /// record land at the end of the store's id index instead of on a random page, which keeps
    /// batched record writes to a few pages.
    pub fn generate() -> Self {
        Self::generate_at(crate::now_millis())
    }

    fn generate_at(now_ms: u64) -> Self {
        let n: u128 = (u128::from(now_ms & 0xffff_ffff_ffff) << 80)
            | (rand::random::<u128>() & ((1u128 << 80) - 1));
        let mut buf = [0u8; 32];
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in buf.iter_mut().enumerate() {
            *b = HEX[((n >> (4 * (31 - i))) & 0xf) as usize];
        }
        Self(buf)
    }

    pub fn as_str(&self) -> &str {
        // The buffer only ever holds ASCII hex digits.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl FromStr for ActivationId {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        if s.len() != 32 {
            return Err(ModelError::ActivationIdLength(s.chars().count()));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ModelError::BadActivationId);
        }
        let mut buf = [0u8; 32];
        buf.copy_from_slice(s.as_bytes());
        Ok(Self(buf))
    }
}

impl fmt::Display for ActivationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ActivationId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ActivationId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The four outcomes of an activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum StatusCode {
    Success = 0,
    ApplicationError = 1,
    DeveloperError = 2,
    WhiskError = 3,
}

impl StatusCode {
    pub fn text(self) -> &'static str {
        match self {
            StatusCode::Success => "success",
            StatusCode::ApplicationError => "application error",
            StatusCode::DeveloperError => "action developer error",
            StatusCode::WhiskError => "whisk internal error",
        }
    }
}

impl From<StatusCode> for u8 {
    fn from(s: StatusCode) -> u8 {
        s as u8
    }
}

impl TryFrom<u8> for StatusCode {
    type Error = String;
    fn try_from(v: u8) -> std::result::Result<Self, String> {
        Ok(match v {
            0 => StatusCode::Success,
            1 => StatusCode::ApplicationError,
            2 => StatusCode::DeveloperError,
            3 => StatusCode::WhiskError,
            _ => return Err(format!("bad status code {v}")),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationResponse {
    #[serde(rename = "statusCode")]
    pub status_code: StatusCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
}

impl ActivationResponse {
    pub fn success(result: Value) -> Self {
        Self {
            status_code: StatusCode::Success,
            result: Some(result),
            size: None,
        }
    }

    /// An error outcome: the result is always `{"error": value}`.
    pub fn error(status_code: StatusCode, error: impl Into<Value>) -> Self {
        Self {
            status_code,
            result: Some(json!({ "error": error.into() })),
            size: None,
        }
    }

    pub fn is_success(&self) -> bool {
        self.status_code == StatusCode::Success
    }

    /// API form: `{"status", "success", "result", "size"?}` without `statusCode`.
    pub fn to_api_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("status".into(), Value::from(self.status_code.text()));
        m.insert("success".into(), Value::Bool(self.is_success()));
        if let Some(r) = &self.result {
            m.insert("result".into(), r.clone());
        }
        if let Some(s) = self.size {
            m.insert("size".into(), Value::from(s));
        }
        Value::Object(m)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activation {
    /// Invoking namespace (not the action's).
    pub namespace: String,
    pub name: String,
    pub subject: String,
    pub activation_id: ActivationId,
    pub start: u64,
    /// 0 for records without an end (trigger fires).
    #[serde(default)]
    pub end: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<ActivationId>,
    pub response: ActivationResponse,
    #[serde(default)]
    pub logs: Vec<String>,
    pub version: SemVer,
    #[serde(default)]
    pub publish: bool,
    #[serde(default)]
    pub annotations: Parameters,
}

impl Activation {
    /// `pkg/action` or `action`, derived from the `binding` or `path` annotation, for the `name`
    /// filter of activation lists.
    pub fn filter_name(&self) -> String {
        if let Some(Value::String(b)) = self.annotations.get("binding") {
            let pkg = b.split('/').nth(1).unwrap_or("");
            return format!("{pkg}/{}", self.name);
        }
        if let Some(Value::String(p)) = self.annotations.get("path") {
            let parts: Vec<&str> = p.split('/').collect();
            if parts.len() == 3 {
                return format!("{}/{}", parts[1], parts[2]);
            }
        }
        self.name.clone()
    }

    /// Extended JSON as the API returns it.
    pub fn to_api_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("namespace".into(), Value::from(self.namespace.as_str()));
        m.insert("name".into(), Value::from(self.name.as_str()));
        m.insert("version".into(), Value::from(self.version.to_string()));
        m.insert("subject".into(), Value::from(self.subject.as_str()));
        m.insert(
            "activationId".into(),
            Value::from(self.activation_id.as_str()),
        );
        m.insert("start".into(), Value::from(self.start));
        if self.end != 0 {
            m.insert("end".into(), Value::from(self.end));
        }
        if let Some(d) = self.duration {
            m.insert("duration".into(), Value::from(d));
        }
        if let Some(c) = &self.cause {
            m.insert("cause".into(), Value::from(c.as_str()));
        }
        m.insert("response".into(), self.response.to_api_json());
        m.insert(
            "logs".into(),
            Value::Array(self.logs.iter().map(|l| Value::from(l.as_str())).collect()),
        );
        m.insert(
            "annotations".into(),
            serde_json::to_value(&self.annotations).unwrap_or_default(),
        );
        m.insert("publish".into(), Value::Bool(self.publish));
        Value::Object(m)
    }

    /// List element without `docs`.
    pub fn summary_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("namespace".into(), Value::from(self.namespace.as_str()));
        m.insert("name".into(), Value::from(self.name.as_str()));
        m.insert("version".into(), Value::from(self.version.to_string()));
        m.insert("publish".into(), Value::Bool(self.publish));
        m.insert(
            "annotations".into(),
            serde_json::to_value(&self.annotations).unwrap_or_default(),
        );
        m.insert(
            "activationId".into(),
            Value::from(self.activation_id.as_str()),
        );
        m.insert("start".into(), Value::from(self.start));
        if self.end != 0 {
            m.insert("end".into(), Value::from(self.end));
            if let Some(d) = self.duration {
                m.insert("duration".into(), Value::from(d));
            }
            m.insert(
                "statusCode".into(),
                Value::from(u8::from(self.response.status_code)),
            );
        }
        if let Some(c) = &self.cause {
            m.insert("cause".into(), Value::from(c.as_str()));
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_lowercase_hex_and_validated() {
        let id = ActivationId::generate();
        assert_eq!(id.as_str().len(), 32);
        assert_eq!(id.as_str().parse::<ActivationId>().unwrap(), id);
        assert_eq!(
            "abc".parse::<ActivationId>().unwrap_err().to_string(),
            "Activation id length is 3 but must be 32."
        );
        assert_eq!(
            "G".repeat(32)
                .parse::<ActivationId>()
                .unwrap_err()
                .to_string(),
            "The activation id is not valid."
        );
        assert_ne!(ActivationId::generate(), ActivationId::generate());
    }

    #[test]
    fn ids_are_ordered_by_time_and_random_within_a_millisecond() {
        let a = ActivationId::generate_at(1_700_000_000_000);
        let b = ActivationId::generate_at(1_700_000_000_001);
        assert!(a < b, "{a:?} < {b:?}");
        assert_eq!(&a.as_str()[..12], format!("{:012x}", 1_700_000_000_000u64));
        let c = ActivationId::generate_at(1_700_000_000_000);
        assert_ne!(a, c);
        assert_eq!(a.as_str()[..12], c.as_str()[..12]);
    }

    #[test]
    fn api_response_has_no_status_code() {
        let r = ActivationResponse::error(StatusCode::ApplicationError, "boom");
        assert_eq!(
            r.to_api_json(),
            json!({"status":"application error","success":false,"result":{"error":"boom"}})
        );
    }
}
