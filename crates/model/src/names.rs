//! Entity names, paths and fully qualified names (wire spec §2.1).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Longest name segment OpenWhisk accepts.
pub const MAX_NAME_LEN: usize = 256;

/// The placeholder for "the caller's own namespace".
pub const DEFAULT_NAMESPACE: &str = "_";

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `\A([\w]|[\w][\w@ .&-]{0,254}[\w@.&-])\z`, written out by hand.
pub fn is_valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    if !is_word(first) || s.len() > MAX_NAME_LEN {
        return false;
    }
    let rest = &s[first.len_utf8()..];
    if rest.is_empty() {
        return true;
    }
    let inner_ok = |c: char| is_word(c) || matches!(c, '@' | ' ' | '.' | '&' | '-');
    rest.chars().all(inner_ok) && !rest.ends_with(' ')
}

/// A validated single name segment (action, package, trigger, rule or namespace name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EntityName(String);

impl EntityName {
    pub fn new(s: &str) -> Result<Self> {
        if s.chars().count() > MAX_NAME_LEN {
            return Err(ModelError::NameTooLong(s.chars().count()));
        }
        if !is_valid_name(s) {
            return Err(ModelError::IllegalName);
        }
        Ok(Self(s.to_owned()))
    }

    /// Validates a namespace segment (same grammar, other messages).
    pub fn namespace(s: &str) -> Result<Self> {
        if s.chars().count() > MAX_NAME_LEN {
            return Err(ModelError::NamespaceTooLong(s.chars().count()));
        }
        if !is_valid_name(s) {
            return Err(ModelError::IllegalNamespace);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for EntityName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EntityName::new(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for EntityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for EntityName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A namespace, optionally followed by a package: `guest` or `guest/utils`.
/// This is the `namespace` field of stored entities.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityPath {
    pub namespace: EntityName,
    pub package: Option<EntityName>,
}

impl EntityPath {
    pub fn root(namespace: EntityName) -> Self {
        Self {
            namespace,
            package: None,
        }
    }

    pub fn in_package(namespace: EntityName, package: EntityName) -> Self {
        Self {
            namespace,
            package: Some(package),
        }
    }

    /// Parses `ns` or `ns/pkg` (no leading slash).
    pub fn parse(s: &str) -> Result<Self> {
        let mut it = s.split('/').filter(|p| !p.is_empty());
        let ns = it
            .next()
            .ok_or_else(|| ModelError::IllegalPath(s.to_owned()))?;
        let namespace = EntityName::namespace(ns)?;
        let package = it.next().map(EntityName::new).transpose()?;
        if it.next().is_some() {
            return Err(ModelError::IllegalPath(s.to_owned()));
        }
        Ok(Self { namespace, package })
    }
}

impl fmt::Display for EntityPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.package {
            Some(p) => write!(f, "{}/{}", self.namespace, p),
            None => write!(f, "{}", self.namespace),
        }
    }
}

impl Serialize for EntityPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EntityPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EntityPath::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `/namespace[/package]/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FullyQualifiedName {
    pub path: EntityPath,
    pub name: EntityName,
}

impl FullyQualifiedName {
    pub fn new(path: EntityPath, name: EntityName) -> Self {
        Self { path, name }
    }

    pub fn namespace(&self) -> &EntityName {
        &self.path.namespace
    }

    pub fn package(&self) -> Option<&EntityName> {
        self.path.package.as_ref()
    }

    /// Document id: `ns[/pkg]/name`, no leading slash.
    pub fn doc_id(&self) -> String {
        Self::doc_id_of(&self.path, &self.name)
    }

    /// The document id of `name` in `path`, built in one allocation (it is on every invoke's
    /// path).
    pub fn doc_id_of(path: &EntityPath, name: &EntityName) -> String {
        let ns = path.namespace.as_str();
        let pkg = path.package.as_ref().map_or("", EntityName::as_str);
        let mut id = String::with_capacity(ns.len() + pkg.len() + name.as_str().len() + 2);
        id.push_str(ns);
        if !pkg.is_empty() {
            id.push('/');
            id.push_str(pkg);
        }
        id.push('/');
        id.push_str(name.as_str());
        id
    }

    /// Parses a reference as clients write them: `/ns/name`, `/ns/pkg/name`, and, without a leading
    /// slash, `name` or `pkg/name` relative to `default_ns`. `_` as namespace resolves to
    /// `default_ns`.
    pub fn parse_ref(s: &str, default_ns: &EntityName) -> Result<Self> {
        let bad = || ModelError::IllegalPath(s.to_owned());
        let absolute = s.starts_with('/');
        let parts: Vec<&str> = s.split('/').filter(|p| !p.is_empty()).collect();
        let (ns, pkg, name) = match (absolute, parts.as_slice()) {
            (true, [ns, name]) => (*ns, None, *name),
            (true, [ns, pkg, name]) => (*ns, Some(*pkg), *name),
            (false, [name]) => (default_ns.as_str(), None, *name),
            (false, [pkg, name]) => (default_ns.as_str(), Some(*pkg), *name),
            (false, [ns, pkg, name]) => (*ns, Some(*pkg), *name),
            _ => return Err(bad()),
        };
        let namespace = if ns == DEFAULT_NAMESPACE {
            default_ns.clone()
        } else {
            EntityName::namespace(ns)?
        };
        let package = pkg.map(EntityName::new).transpose()?;
        Ok(Self {
            path: EntityPath { namespace, package },
            name: EntityName::new(name)?,
        })
    }

    /// `{"path": "ns[/pkg]", "name": "x"}` as rules show their trigger and action.
    pub fn to_path_name_json(&self) -> serde_json::Value {
        serde_json::json!({"path": self.path.to_string(), "name": self.name.as_str()})
    }
}

impl fmt::Display for FullyQualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        QualifiedName::new(&self.path, &self.name).fmt(f)
    }
}

/// `/ns[/pkg]/name` of `name` in `path`, as [`FullyQualifiedName`] displays it, written from
/// borrowed names (no copies, no intermediate string).
#[derive(Debug, Clone, Copy)]
pub struct QualifiedName<'a> {
    path: &'a EntityPath,
    name: &'a EntityName,
}

impl<'a> QualifiedName<'a> {
    pub fn new(path: &'a EntityPath, name: &'a EntityName) -> Self {
        Self { path, name }
    }
}

impl fmt::Display for QualifiedName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/{}", self.path, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_openwhisk_grammar() {
        for ok in ["a", "_", "hello", "a b", "x@y.z&w-v", "9", "a-"] {
            assert!(is_valid_name(ok), "{ok} should be valid");
        }
        for bad in ["", " a", "a ", "-a", "a/b", "a$", "é", ".a"] {
            assert!(!is_valid_name(bad), "{bad} should be invalid");
        }
        assert!(is_valid_name(&"a".repeat(256)));
        assert_eq!(
            EntityName::new(&"a".repeat(257)),
            Err(ModelError::NameTooLong(257))
        );
    }

    #[test]
    fn document_ids_have_no_leading_slash() {
        let n = |s: &str| EntityName::new(s).unwrap();
        let root = FullyQualifiedName::new(EntityPath::root(n("guest")), n("hello"));
        assert_eq!(root.doc_id(), "guest/hello");
        assert_eq!(root.to_string(), "/guest/hello");
        let packaged =
            FullyQualifiedName::new(EntityPath::in_package(n("guest"), n("utils")), n("echo"));
        assert_eq!(packaged.doc_id(), "guest/utils/echo");
        assert_eq!(
            packaged.doc_id(),
            format!("{}/{}", packaged.path, packaged.name)
        );
    }

    #[test]
    fn references_resolve_against_the_callers_namespace() {
        let guest = EntityName::new("guest").unwrap();
        let check = |s: &str, want: &str| {
            assert_eq!(
                FullyQualifiedName::parse_ref(s, &guest)
                    .unwrap()
                    .to_string(),
                want
            )
        };
        check("/_/a", "/guest/a");
        check("/whisk.system/utils/echo", "/whisk.system/utils/echo");
        check("a", "/guest/a");
        check("p/a", "/guest/p/a");
        check("ns/p/a", "/ns/p/a");
        assert!(FullyQualifiedName::parse_ref("/a", &guest).is_err());
        assert!(FullyQualifiedName::parse_ref("/a/b/c/d", &guest).is_err());
        assert!(FullyQualifiedName::parse_ref("", &guest).is_err());
    }
}
