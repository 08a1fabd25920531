//! Actions, packages, triggers and rules as OpenWhisk stores and returns them (wire spec §2.2–2.5).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::exec::Exec;
use crate::limits::ActionLimits;
use crate::names::{EntityName, EntityPath, FullyQualifiedName, QualifiedName};
use crate::params::Parameters;
use crate::semver::SemVer;

/// Milliseconds since the epoch.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub namespace: EntityPath,
    pub name: EntityName,
    pub exec: Exec,
    #[serde(default)]
    pub parameters: Parameters,
    pub limits: ActionLimits,
    pub version: SemVer,
    #[serde(default)]
    pub publish: bool,
    #[serde(default)]
    pub annotations: Parameters,
    #[serde(default)]
    pub updated: u64,
}

impl Action {
    /// A first version of an action of `kind` running plain `code`, with the default limits and
    /// no parameters or annotations (what `wsk action create` without options makes).
    pub fn from_code(namespace: EntityPath, name: EntityName, kind: &str, code: &str) -> Self {
        Action {
            namespace,
            name,
            exec: Exec::Code {
                kind: kind.into(),
                code: code.into(),
                binary: false,
                main: None,
            },
            parameters: Parameters::new(),
            limits: crate::SystemLimits::default().default_action_limits(),
            version: SemVer::INITIAL,
            publish: false,
            annotations: Parameters::new(),
            updated: 1,
        }
    }

    pub fn fqn(&self) -> FullyQualifiedName {
        FullyQualifiedName::new(self.namespace.clone(), self.name.clone())
    }

    /// `/ns[/pkg]/name`, as `fqn()` displays it, without copying the names.
    pub fn qualified_name(&self) -> QualifiedName<'_> {
        QualifiedName::new(&self.namespace, &self.name)
    }

    /// `ns[/pkg]/name`, as `fqn().doc_id()` without copying the names first.
    pub fn doc_id(&self) -> String {
        FullyQualifiedName::doc_id_of(&self.namespace, &self.name)
    }

    /// Full JSON; `with_code = false` drops `exec.code`.
    pub fn to_json(&self, with_code: bool) -> Value {
        json!({
            "namespace": self.namespace.to_string(),
            "name": self.name,
            "version": self.version,
            "exec": self.exec.to_json(with_code),
            "annotations": self.annotations,
            "parameters": self.parameters,
            "limits": self.limits,
            "publish": self.publish,
            "updated": self.updated,
        })
    }

    /// List element: no parameters, `exec` reduced to `{"binary"}`.
    pub fn summary_json(&self) -> Value {
        json!({
            "namespace": self.namespace.to_string(),
            "name": self.name,
            "version": self.version,
            "exec": {"binary": self.exec.binary()},
            "annotations": self.annotations,
            "limits": self.limits,
            "publish": self.publish,
            "updated": self.updated,
        })
    }

    pub fn is_conductor(&self) -> bool {
        !matches!(self.exec, Exec::Sequence { .. }) && self.annotations.is_truthy("conductor")
    }
}

/// `{"namespace": "ns", "name": "pkg"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub namespace: EntityName,
    pub name: EntityName,
}

impl Binding {
    pub fn fqn(&self) -> FullyQualifiedName {
        FullyQualifiedName::new(EntityPath::root(self.namespace.clone()), self.name.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Package {
    pub namespace: EntityPath,
    pub name: EntityName,
    #[serde(default, with = "binding_serde")]
    pub binding: Option<Binding>,
    #[serde(default)]
    pub parameters: Parameters,
    pub version: SemVer,
    #[serde(default)]
    pub publish: bool,
    #[serde(default)]
    pub annotations: Parameters,
    #[serde(default)]
    pub updated: u64,
}

mod binding_serde {
    use super::Binding;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(b: &Option<Binding>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => b.serialize(s),
            None => serde_json::Map::new().serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Binding>, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        match &v {
            serde_json::Value::Object(m) if m.is_empty() => Ok(None),
            serde_json::Value::Null | serde_json::Value::Bool(false) => Ok(None),
            _ => serde_json::from_value(v)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl Package {
    pub fn fqn(&self) -> FullyQualifiedName {
        FullyQualifiedName::new(self.namespace.clone(), self.name.clone())
    }

    /// The path under which this package's actions live: `ns/pkg`.
    pub fn contents_path(&self) -> EntityPath {
        EntityPath::in_package(self.namespace.namespace.clone(), self.name.clone())
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// List element: `binding` is `false` or the binding object; no parameters.
    pub fn summary_json(&self) -> Value {
        json!({
            "namespace": self.namespace.to_string(),
            "name": self.name,
            "version": self.version,
            "publish": self.publish,
            "annotations": self.annotations,
            "binding": match &self.binding {
                Some(b) => serde_json::to_value(b).unwrap_or(Value::Null),
                None => Value::Bool(false),
            },
            "updated": self.updated,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleStatus {
    Active,
    Inactive,
}

impl RuleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleStatus::Active => "active",
            RuleStatus::Inactive => "inactive",
        }
    }
}

/// The link a trigger keeps for each rule: `{"action": {path, name}, "status"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleLink {
    #[serde(with = "path_name")]
    pub action: FullyQualifiedName,
    pub status: RuleStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub namespace: EntityPath,
    pub name: EntityName,
    #[serde(default)]
    pub parameters: Parameters,
    #[serde(default = "empty_object")]
    pub limits: Value,
    pub version: SemVer,
    #[serde(default)]
    pub publish: bool,
    #[serde(default)]
    pub annotations: Parameters,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<BTreeMap<String, RuleLink>>,
    #[serde(default)]
    pub updated: u64,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl Trigger {
    pub fn fqn(&self) -> FullyQualifiedName {
        FullyQualifiedName::new(self.namespace.clone(), self.name.clone())
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    pub fn summary_json(&self) -> Value {
        json!({
            "namespace": self.namespace.to_string(),
            "name": self.name,
            "version": self.version,
            "publish": self.publish,
            "annotations": self.annotations,
            "updated": self.updated,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub namespace: EntityPath,
    pub name: EntityName,
    #[serde(with = "path_name")]
    pub trigger: FullyQualifiedName,
    #[serde(with = "path_name")]
    pub action: FullyQualifiedName,
    pub version: SemVer,
    #[serde(default)]
    pub publish: bool,
    #[serde(default)]
    pub annotations: Parameters,
    #[serde(default)]
    pub updated: u64,
}

impl Rule {
    pub fn fqn(&self) -> FullyQualifiedName {
        FullyQualifiedName::new(self.namespace.clone(), self.name.clone())
    }

    /// JSON with the computed status.
    pub fn to_json(&self, status: RuleStatus) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("status".into(), Value::from(status.as_str()));
        }
        v
    }

    pub fn summary_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Serializes a fully qualified name as `{"path": "ns[/pkg]", "name": "x"}`.
pub mod path_name {
    use super::*;
    use serde::{Deserializer, Serializer};

    #[derive(Serialize, Deserialize)]
    struct PathName {
        path: EntityPath,
        name: EntityName,
    }

    pub fn serialize<S: Serializer>(f: &FullyQualifiedName, s: S) -> Result<S::Ok, S::Error> {
        PathName {
            path: f.path.clone(),
            name: f.name.clone(),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FullyQualifiedName, D::Error> {
        let p = PathName::deserialize(d)?;
        Ok(FullyQualifiedName::new(p.path, p.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_binding_round_trips_as_openwhisk_shapes() {
        let p: Package = serde_json::from_value(json!({
            "namespace":"guest","name":"b","binding":{"namespace":"whisk.system","name":"utils"},
            "version":"0.0.1"
        }))
        .unwrap();
        assert_eq!(p.binding.as_ref().unwrap().name.as_str(), "utils");
        assert_eq!(p.summary_json()["binding"]["namespace"], "whisk.system");
        let q: Package = serde_json::from_value(
            json!({"namespace":"guest","name":"p","binding":{},"version":"0.0.1"}),
        )
        .unwrap();
        assert!(q.binding.is_none());
        assert_eq!(q.to_json()["binding"], json!({}));
        assert_eq!(q.summary_json()["binding"], json!(false));
    }

    #[test]
    fn rule_serializes_path_name() {
        let ns = EntityName::new("guest").unwrap();
        let r = Rule {
            namespace: EntityPath::root(ns.clone()),
            name: EntityName::new("r").unwrap(),
            trigger: FullyQualifiedName::parse_ref("/guest/t", &ns).unwrap(),
            action: FullyQualifiedName::parse_ref("/guest/p/a", &ns).unwrap(),
            version: SemVer::INITIAL,
            publish: false,
            annotations: Parameters::new(),
            updated: 1,
        };
        let v = r.to_json(RuleStatus::Active);
        assert_eq!(v["action"], json!({"path":"guest/p","name":"a"}));
        assert_eq!(v["status"], "active");
    }
}

/// The four entity collections, which share one name space per namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Collection {
    Actions,
    Packages,
    Triggers,
    Rules,
}

impl Collection {
    pub fn as_str(self) -> &'static str {
        match self {
            Collection::Actions => "actions",
            Collection::Packages => "packages",
            Collection::Triggers => "triggers",
            Collection::Rules => "rules",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "actions" => Collection::Actions,
            "packages" => Collection::Packages,
            "triggers" => Collection::Triggers,
            "rules" => Collection::Rules,
            _ => return None,
        })
    }
}

/// Any stored entity.
#[derive(Debug, Clone, PartialEq)]
pub enum Entity {
    Action(Action),
    Package(Package),
    Trigger(Trigger),
    Rule(Rule),
}

impl Entity {
    pub fn collection(&self) -> Collection {
        match self {
            Entity::Action(_) => Collection::Actions,
            Entity::Package(_) => Collection::Packages,
            Entity::Trigger(_) => Collection::Triggers,
            Entity::Rule(_) => Collection::Rules,
        }
    }

    pub fn fqn(&self) -> FullyQualifiedName {
        match self {
            Entity::Action(a) => a.fqn(),
            Entity::Package(p) => p.fqn(),
            Entity::Trigger(t) => t.fqn(),
            Entity::Rule(r) => r.fqn(),
        }
    }

    pub fn updated(&self) -> u64 {
        match self {
            Entity::Action(a) => a.updated,
            Entity::Package(p) => p.updated,
            Entity::Trigger(t) => t.updated,
            Entity::Rule(r) => r.updated,
        }
    }

    /// The element of a list response.
    pub fn summary_json(&self) -> Value {
        match self {
            Entity::Action(a) => a.summary_json(),
            Entity::Package(p) => p.summary_json(),
            Entity::Trigger(t) => t.summary_json(),
            Entity::Rule(r) => r.summary_json(),
        }
    }

    /// Serializes the stored document.
    pub fn to_doc(&self) -> Value {
        match self {
            Entity::Action(a) => serde_json::to_value(a),
            Entity::Package(p) => serde_json::to_value(p),
            Entity::Trigger(t) => serde_json::to_value(t),
            Entity::Rule(r) => serde_json::to_value(r),
        }
        .unwrap_or(Value::Null)
    }

    /// Reads a stored document of a known collection.
    pub fn from_doc(collection: Collection, doc: Value) -> serde_json::Result<Self> {
        Ok(match collection {
            Collection::Actions => Entity::Action(serde_json::from_value(doc)?),
            Collection::Packages => Entity::Package(serde_json::from_value(doc)?),
            Collection::Triggers => Entity::Trigger(serde_json::from_value(doc)?),
            Collection::Rules => Entity::Rule(serde_json::from_value(doc)?),
        })
    }
}
