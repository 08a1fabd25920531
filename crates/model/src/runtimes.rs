//! The runtime manifest: which kinds exist, their defaults, how their containers start and how
//! many stem cells to keep. It is data (`runtimes.json`), in the shape of OpenWhisk's manifest plus
//! the fields Brisk needs to start a runtime proxy on the host.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{ModelError, Result};

/// The manifest shipped with Brisk.
pub const DEFAULT_MANIFEST: &str = include_str!("../runtimes.json");

/// Kind of sequences (no container).
pub const SEQUENCE: &str = "sequence";
/// Kind of native executables / docker images.
pub const BLACKBOX: &str = "blackbox";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageName {
    #[serde(default)]
    pub prefix: Option<String>,
    pub name: String,
    #[serde(default)]
    pub tag: Option<String>,
}

impl ImageName {
    /// `prefix/name:tag` as OpenWhisk prints it.
    pub fn full(&self) -> String {
        let mut s = String::new();
        if let Some(p) = &self.prefix {
            s.push_str(p);
            s.push('/');
        }
        s.push_str(&self.name);
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        s
    }

    /// Whether `image` (as a client wrote it, with or without tag) names this image.
    pub fn matches(&self, image: &str) -> bool {
        let want = image.split(':').next().unwrap_or(image);
        let mine = match &self.prefix {
            Some(p) => format!("{p}/{}", self.name),
            None => self.name.clone(),
        };
        want == mine
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reactive {
    pub min_count: u32,
    pub max_count: u32,
    pub ttl: String,
    pub threshold: u32,
    pub increment: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StemCell {
    #[serde(alias = "count")]
    pub initial_count: u32,
    /// `"256 MB"`.
    pub memory: String,
    #[serde(default)]
    pub reactive: Option<Reactive>,
}

impl StemCell {
    pub fn memory_mb(&self) -> u64 {
        parse_size_mb(&self.memory).unwrap_or(256)
    }
}

/// Parses `"256 MB"`, `"256MB"`, `"1 GB"` into megabytes.
pub fn parse_size_mb(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit.trim().to_ascii_uppercase().as_str() {
        "" | "M" | "MB" => Some(n),
        "G" | "GB" => Some(n * 1024),
        "K" | "KB" => Some(n / 1024),
        _ => None,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeKind {
    pub kind: String,
    #[serde(default)]
    pub default: bool,
    #[serde(default)]
    pub deprecated: bool,
    #[serde(default)]
    pub require_main: bool,
    pub image: ImageName,
    /// Which Brisk runtime proxy serves this kind (`node`, `python`, `native`).
    pub proxy: String,
    /// Interpreter candidates, first that exists wins.
    pub interpreter: Vec<String>,
    /// Options given to the interpreter before the proxy script (`node <args> proxy.js`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default)]
    pub stem_cells: Vec<StemCell>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NativeRuntime {
    pub proxy: String,
    pub interpreter: Vec<String>,
    /// Options given to the interpreter before the proxy script.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeManifest {
    pub runtimes: BTreeMap<String, Vec<RuntimeKind>>,
    #[serde(default)]
    pub blackboxes: Vec<ImageName>,
    pub native: NativeRuntime,
}

impl RuntimeManifest {
    pub fn parse(json: &str) -> Result<Self> {
        let m: RuntimeManifest = serde_json::from_str(json)
            .map_err(|e| ModelError::Invalid(format!("runtime manifest: {e}")))?;
        for (family, kinds) in &m.runtimes {
            let defaults = kinds.iter().filter(|k| k.default).count();
            if kinds.len() > 1 && defaults != 1 {
                return Err(ModelError::Invalid(format!(
                    "runtime manifest: family '{family}' must have exactly one default kind"
                )));
            }
        }
        Ok(m)
    }

    pub fn builtin() -> Self {
        Self::parse(DEFAULT_MANIFEST).expect("the built-in runtime manifest is valid")
    }

    pub fn kinds(&self) -> impl Iterator<Item = &RuntimeKind> {
        self.runtimes.values().flatten()
    }

    pub fn find(&self, kind: &str) -> Option<&RuntimeKind> {
        self.kinds().find(|k| k.kind == kind)
    }

    /// Resolves a client kind (`nodejs:default` → `nodejs:20`) and checks it exists and is usable.
    pub fn resolve(&self, kind: &str) -> Result<&RuntimeKind> {
        if let Some(family) = kind.strip_suffix(":default")
            && let Some(kinds) = self.runtimes.get(family)
        {
            let found = kinds.iter().find(|k| k.default).or(if kinds.len() == 1 {
                kinds.first()
            } else {
                None
            });
            if let Some(k) = found {
                return Ok(k);
            }
        }
        match self.find(kind) {
            Some(k) if k.deprecated => Err(ModelError::DeprecatedKind(kind.to_owned())),
            Some(k) => Ok(k),
            None => Err(ModelError::UnknownKind {
                kind: kind.to_owned(),
                valid: self.valid_kinds(),
            }),
        }
    }

    fn valid_kinds(&self) -> String {
        let mut v: Vec<String> = self.kinds().map(|k| format!("'{}'", k.kind)).collect();
        v.push(format!("'{BLACKBOX}'"));
        v.push(format!("'{SEQUENCE}'"));
        v.join(", ")
    }

    /// Whether an image is a known native/blackbox image that needs no pull.
    pub fn is_native_image(&self, image: &str) -> bool {
        self.blackboxes.iter().any(|b| b.matches(image))
    }

    /// The `runtimes` object of `GET /`.
    pub fn to_info_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (family, kinds) in &self.runtimes {
            let list: Vec<Value> = kinds
                .iter()
                .map(|k| {
                    json!({"kind": k.kind, "image": k.image.full(), "deprecated": k.deprecated,
                           "default": k.default, "attached": true, "requireMain": k.require_main})
                })
                .collect();
            out.insert(family.clone(), Value::Array(list));
        }
        let blackbox: Vec<Value> = self
            .blackboxes
            .iter()
            .map(|b| {
                json!({"kind": BLACKBOX, "image": b.full(), "deprecated": false,
                            "default": true, "attached": false, "requireMain": false})
            })
            .collect();
        out.insert(BLACKBOX.into(), Value::Array(blackbox));
        out.insert(
            SEQUENCE.into(),
            json!([{"kind": SEQUENCE, "deprecated": false, "default": true,
                    "attached": false, "requireMain": false}]),
        );
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_resolves_defaults() {
        let m = RuntimeManifest::builtin();
        assert_eq!(m.resolve("nodejs:default").unwrap().kind, "nodejs:20");
        assert_eq!(m.resolve("python:default").unwrap().kind, "python:3.11");
        assert_eq!(m.resolve("python:3.11").unwrap().proxy, "python");
        let e = m.resolve("cobol:1").unwrap_err().to_string();
        assert!(e.contains("'cobol:1' is not supported"), "{e}");
        assert!(m.is_native_image("openwhisk/dockerskeleton"));
        assert!(m.is_native_image("openwhisk/dockerskeleton:nightly"));
        assert!(!m.is_native_image("me/mine"));
        assert_eq!(parse_size_mb("256 MB"), Some(256));
        assert_eq!(parse_size_mb("1GB"), Some(1024));
    }

    #[test]
    fn interpreter_args_are_optional() {
        let m = RuntimeManifest::builtin();
        // Node's thread pool is kept to one worker: fewer threads to freeze and thaw.
        assert_eq!(m.find("nodejs:20").unwrap().args, ["--v8-pool-size=1"]);
        // Python starts isolated and without `site`; the proxy loads `site` once it listens.
        assert_eq!(m.find("python:3.11").unwrap().args, ["-I", "-S"]);
        let m = RuntimeManifest::parse(
            r#"{"runtimes": {"x": [{"kind": "x:1", "image": {"name": "i"}, "proxy": "node",
                 "interpreter": ["node"], "args": ["--a", "-b"]}]},
                "native": {"proxy": "native", "interpreter": ["sh"]}}"#,
        )
        .unwrap();
        assert_eq!(m.find("x:1").unwrap().args, ["--a", "-b"]);
        assert!(m.native.args.is_empty());
    }
}
