//! Client configuration the way `wsk` keeps it: a `KEY=value` properties file (`~/.wskprops`,
//! or `WSK_CONFIG_FILE`), overridden by `__OW_*` environment variables, overridden by flags.

use std::path::PathBuf;

use super::{CliError, GlobalArgs};

/// The properties file: ordered `KEY=value` lines; unknown keys and comments are kept as they are.
#[derive(Debug, Default)]
pub struct Props {
    path: PathBuf,
    lines: Vec<String>,
}

impl Props {
    /// `WSK_CONFIG_FILE`, else `~/.wskprops`.
    pub fn path() -> PathBuf {
        if let Some(p) = std::env::var_os("WSK_CONFIG_FILE").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".wskprops")
    }

    /// Reads the file; a missing file is an empty configuration.
    pub fn load() -> Result<Self, CliError> {
        let path = Self::path();
        let lines = match std::fs::read_to_string(&path) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(CliError::general(format!(
                    "cannot read the properties file {}: {e}",
                    path.display()
                )));
            }
        };
        Ok(Self { path, lines })
    }

    pub fn file(&self) -> &std::path::Path {
        &self.path
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.lines.iter().rev().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_owned())
        })
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.unset(key);
        self.lines.push(format!("{key}={value}"));
    }

    pub fn unset(&mut self, key: &str) {
        self.lines
            .retain(|line| line.split_once('=').is_none_or(|(k, _)| k.trim() != key));
    }

    pub fn save(&self) -> Result<(), CliError> {
        let mut text = self.lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(parent);
        }
        std::fs::write(&self.path, text).map_err(|e| {
            CliError::general(format!(
                "cannot write the properties file {}: {e}",
                self.path.display()
            ))
        })
    }
}

/// The effective settings for one command.
#[derive(Debug, Clone)]
pub struct Config {
    /// As configured (for messages), e.g. `localhost:3233`.
    pub apihost: Option<String>,
    pub auth: Option<String>,
    /// Default namespace; `_` means "the caller's own".
    pub namespace: String,
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

impl Config {
    /// Flags win over the environment, which wins over the properties file.
    pub fn resolve(global: &GlobalArgs) -> Result<Self, CliError> {
        let props = Props::load()?;
        let apihost = global
            .apihost
            .clone()
            .or_else(|| env("__OW_API_HOST"))
            .or_else(|| props.get("APIHOST"))
            .filter(|v| !v.is_empty());
        let auth = global
            .auth
            .clone()
            .or_else(|| env("__OW_API_KEY"))
            .or_else(|| props.get("AUTH"))
            .filter(|v| !v.is_empty());
        let namespace = env("__OW_NAMESPACE")
            .or_else(|| props.get("NAMESPACE"))
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "_".to_owned());
        Ok(Self {
            apihost,
            auth,
            namespace,
        })
    }

    /// The base URL (`scheme://host[:port]`), or a message saying how to configure one.
    pub fn base_url(&self) -> Result<String, CliError> {
        let Some(host) = &self.apihost else {
            return Err(CliError::config(
                "no API host is configured; set one with:\n  brisk property set --apihost <host:port> --auth <uuid:key>\n(or pass --apihost, or set __OW_API_HOST)",
            ));
        };
        Ok(normalize_apihost(host))
    }

    pub fn auth(&self) -> Result<&str, CliError> {
        let Some(auth) = &self.auth else {
            return Err(CliError::config(
                "no authorization key is configured; set one with:\n  brisk property set --auth <uuid:key>\n(or pass --auth, or set __OW_API_KEY)",
            ));
        };
        if !auth.contains(':') {
            return Err(CliError::config(format!(
                "the authorization key must have the form <uuid>:<key>, got '{auth}'; fix it with:\n  brisk property set --auth <uuid:key>"
            )));
        }
        Ok(auth)
    }
}

/// `http://`/`https://` are kept; a bare `localhost`/loopback host means http (a local
/// `brisk serve`), any other bare host https, as `wsk` assumes. A trailing `/api/v1` is dropped.
pub fn normalize_apihost(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    let host = host.strip_suffix("/api/v1").unwrap_or(host);
    if host.starts_with("http://") || host.starts_with("https://") {
        return host.to_owned();
    }
    let bare = host.split(':').next().unwrap_or(host);
    let local = matches!(bare, "localhost" | "127.0.0.1" | "[") || host.starts_with("[::1]");
    if local {
        format!("http://{host}")
    } else {
        format!("https://{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_apihost;

    #[test]
    fn apihost_schemes() {
        let check = |input: &str, expected: &str| assert_eq!(normalize_apihost(input), expected);
        check("localhost:3233", "http://localhost:3233");
        check("127.0.0.1:3233", "http://127.0.0.1:3233");
        check("[::1]:3233", "http://[::1]:3233");
        check("openwhisk.example.com", "https://openwhisk.example.com");
        check("http://10.0.0.1:3233/", "http://10.0.0.1:3233");
        check("https://h/api/v1", "https://h");
    }
}
