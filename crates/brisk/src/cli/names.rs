//! Qualified names as the CLI takes them: `name`, `pkg/name`, `/ns/name`, `/ns/pkg/name`.

use super::CliError;
use super::client::{encode_path, encode_segment};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QName {
    /// `_` for the caller's own namespace.
    pub namespace: String,
    /// `name` or `pkg/name`.
    pub path: String,
}

impl QName {
    pub fn parse(s: &str, default_ns: &str) -> Result<Self, CliError> {
        let invalid = || CliError::usage(format!("'{s}' is not a valid qualified name"));
        let (namespace, rest) = if let Some(stripped) = s.strip_prefix('/') {
            let (ns, rest) = stripped.split_once('/').ok_or_else(invalid)?;
            (ns.to_owned(), rest)
        } else {
            (default_ns.to_owned(), s)
        };
        let segments: Vec<&str> = rest.split('/').collect();
        if namespace.is_empty()
            || segments.is_empty()
            || segments.len() > 2
            || segments.iter().any(|seg| seg.is_empty())
        {
            return Err(invalid());
        }
        Ok(Self {
            namespace,
            path: rest.to_owned(),
        })
    }

    /// `namespaces/<ns>/<collection>/<path>`, encoded.
    pub fn url(&self, collection: &str) -> String {
        format!(
            "namespaces/{}/{collection}/{}",
            encode_segment(&self.namespace),
            encode_path(&self.path)
        )
    }

    /// `/ns/[pkg/]name`.
    pub fn full(&self) -> String {
        format!("/{}/{}", self.namespace, self.path)
    }

    /// The last segment.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// The package, if any.
    pub fn package(&self) -> Option<&str> {
        self.path.split_once('/').map(|(p, _)| p)
    }
}

/// `namespaces/<ns>/<collection>` for a namespace argument (`_` when absent).
pub fn collection_url(namespace: &str, collection: &str) -> String {
    format!("namespaces/{}/{collection}", encode_segment(namespace))
}

#[cfg(test)]
mod tests {
    use super::QName;

    #[test]
    fn parses_qualified_names() {
        let check = |input: &str, ns: &str, path: &str| {
            let q = QName::parse(input, "_").expect("valid");
            assert_eq!(
                (q.namespace.as_str(), q.path.as_str()),
                (ns, path),
                "{input}"
            );
        };
        check("hello", "_", "hello");
        check("pkg/hello", "_", "pkg/hello");
        check("/guest/hello", "guest", "hello");
        check("/whisk.system/alarms/alarm", "whisk.system", "alarms/alarm");
        for bad in ["/guest", "a/b/c", "", "/a//b", "/ns/a/b/c"] {
            assert!(QName::parse(bad, "_").is_err(), "{bad}");
        }
        assert_eq!(
            QName::parse("a b", "_").expect("valid").url("actions"),
            "namespaces/_/actions/a%20b"
        );
    }
}
