//! What an action runs: code of a runtime kind, a native/blackbox image, or a sequence.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ModelError, Result};
use crate::names::{EntityName, FullyQualifiedName};
use crate::runtimes::{BLACKBOX, RuntimeManifest, SEQUENCE};

#[derive(Debug, Clone, PartialEq)]
pub enum Exec {
    Code {
        kind: String,
        code: String,
        binary: bool,
        main: Option<String>,
    },
    Blackbox {
        image: String,
        code: Option<String>,
        binary: bool,
        main: Option<String>,
    },
    Sequence {
        components: Vec<FullyQualifiedName>,
    },
}

/// `exec` as a client sends it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecPut {
    pub kind: String,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub jar: Option<String>,
    #[serde(default)]
    pub main: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub components: Option<Vec<String>>,
    #[serde(default)]
    pub binary: Option<bool>,
}

/// OpenWhisk's rule: code is binary iff trimmed, non-empty, length % 4 == 0 and base64 alphabet.
pub fn is_binary_code(code: &str) -> bool {
    let t = code.trim();
    let body = t.trim_end_matches('=');
    !t.is_empty()
        && t.len().is_multiple_of(4)
        && t.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

impl Exec {
    /// Validates a client's `exec` against the manifest. Sequence components are parsed
    /// (with `_` resolved to `caller_ns`) but not looked up; that is the controller's job.
    pub fn from_put(
        put: ExecPut,
        manifest: &RuntimeManifest,
        caller_ns: &EntityName,
    ) -> Result<Self> {
        let code = put.code.or(put.jar);
        match put.kind.as_str() {
            SEQUENCE => {
                let comps = put.components.unwrap_or_default();
                if comps.is_empty() {
                    return Err(ModelError::Invalid(
                        "No component specified for the sequence.".into(),
                    ));
                }
                let components = comps
                    .iter()
                    .map(|c| FullyQualifiedName::parse_ref(c, caller_ns))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Exec::Sequence { components })
            }
            BLACKBOX => {
                let image = put
                    .image
                    .filter(|i| !i.trim().is_empty())
                    .ok_or_else(|| ModelError::Invalid("blackbox exec requires an image".into()))?;
                let code = code.filter(|c| !c.trim().is_empty());
                let binary = code.as_deref().is_some_and(is_binary_code);
                Ok(Exec::Blackbox {
                    image,
                    code,
                    binary,
                    main: put.main,
                })
            }
            kind => {
                let rt = manifest.resolve(kind)?;
                if rt.require_main && put.main.is_none() {
                    return Err(ModelError::Invalid(format!(
                        "The kind '{}' requires a 'main' property.",
                        rt.kind
                    )));
                }
                let code = code.ok_or_else(|| {
                    ModelError::Invalid(format!("exec of kind '{}' requires code", rt.kind))
                })?;
                let binary = is_binary_code(&code);
                Ok(Exec::Code {
                    kind: rt.kind.clone(),
                    code,
                    binary,
                    main: put.main,
                })
            }
        }
    }

    pub fn kind(&self) -> &str {
        match self {
            Exec::Code { kind, .. } => kind,
            Exec::Blackbox { .. } => BLACKBOX,
            Exec::Sequence { .. } => SEQUENCE,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            Exec::Code { code, .. } => Some(code),
            Exec::Blackbox { code, .. } => code.as_deref(),
            Exec::Sequence { .. } => None,
        }
    }

    pub fn binary(&self) -> bool {
        match self {
            Exec::Code { binary, .. } | Exec::Blackbox { binary, .. } => *binary,
            Exec::Sequence { .. } => false,
        }
    }

    pub fn main(&self) -> Option<&str> {
        match self {
            Exec::Code { main, .. } | Exec::Blackbox { main, .. } => main.as_deref(),
            Exec::Sequence { .. } => None,
        }
    }

    /// Size of the code in bytes, for the exec size limit.
    pub fn code_size(&self) -> usize {
        self.code().map_or(0, str::len)
            + match self {
                Exec::Sequence { components } => components.len() * 64,
                _ => 0,
            }
    }

    /// JSON form; `with_code = false` omits `code` (`?code=false`).
    pub fn to_json(&self, with_code: bool) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), Value::from(self.kind()));
        match self {
            Exec::Code {
                code, binary, main, ..
            } => {
                if with_code {
                    m.insert("code".into(), Value::from(code.as_str()));
                }
                m.insert("binary".into(), Value::Bool(*binary));
                if let Some(main) = main {
                    m.insert("main".into(), Value::from(main.as_str()));
                }
            }
            Exec::Blackbox {
                image,
                code,
                binary,
                main,
            } => {
                m.insert("image".into(), Value::from(image.as_str()));
                if let (true, Some(code)) = (with_code, code) {
                    m.insert("code".into(), Value::from(code.as_str()));
                }
                m.insert("binary".into(), Value::Bool(*binary));
                if let Some(main) = main {
                    m.insert("main".into(), Value::from(main.as_str()));
                }
            }
            Exec::Sequence { components } => {
                m.insert(
                    "components".into(),
                    Value::Array(
                        components
                            .iter()
                            .map(|c| Value::from(c.to_string()))
                            .collect(),
                    ),
                );
            }
        }
        Value::Object(m)
    }
}

impl Serialize for Exec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json(true).serialize(s)
    }
}

/// Reads the stored form back without manifest checks (a stored action stays readable even if
/// its kind is later removed from the manifest).
impl<'de> Deserialize<'de> for Exec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let put = ExecPut::deserialize(d)?;
        Ok(match put.kind.as_str() {
            SEQUENCE => {
                let placeholder = EntityName::new("_").map_err(D::Error::custom)?;
                Exec::Sequence {
                    components: put
                        .components
                        .unwrap_or_default()
                        .iter()
                        .map(|c| FullyQualifiedName::parse_ref(c, &placeholder))
                        .collect::<Result<_>>()
                        .map_err(D::Error::custom)?,
                }
            }
            BLACKBOX => Exec::Blackbox {
                image: put.image.unwrap_or_default(),
                binary: put.binary.unwrap_or(false),
                code: put.code,
                main: put.main,
            },
            _ => Exec::Code {
                kind: put.kind,
                binary: put.binary.unwrap_or(false),
                code: put.code.unwrap_or_default(),
                main: put.main,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_detection() {
        assert!(is_binary_code("UEsDBA=="));
        assert!(!is_binary_code("function main() {}"));
        assert!(!is_binary_code(""));
        assert!(!is_binary_code("abc"));
        assert!(!is_binary_code("ab=c"));
    }

    #[test]
    fn put_validation() {
        let m = RuntimeManifest::builtin();
        let ns = EntityName::new("guest").unwrap();
        let put = |v: serde_json::Value| serde_json::from_value::<ExecPut>(v).unwrap();
        let e = Exec::from_put(
            put(serde_json::json!({"kind":"nodejs:default","code":"x"})),
            &m,
            &ns,
        )
        .unwrap();
        assert_eq!(e.kind(), "nodejs:20");
        let s = Exec::from_put(
            put(serde_json::json!({"kind":"sequence","components":["/_/a","/whisk.system/utils/echo"]})),
            &m,
            &ns,
        )
        .unwrap();
        assert_eq!(
            s.to_json(true)["components"],
            serde_json::json!(["/guest/a", "/whisk.system/utils/echo"])
        );
        assert!(
            Exec::from_put(
                put(serde_json::json!({"kind":"sequence","components":[]})),
                &m,
                &ns
            )
            .is_err()
        );
        assert!(
            Exec::from_put(put(serde_json::json!({"kind":"nope","code":"x"})), &m, &ns).is_err()
        );
    }
}
