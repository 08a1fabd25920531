//! Resolution of runtime kinds to an interpreter binary and a proxy script, done once at start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use brisk_model::RuntimeManifest;
use brisk_model::runtimes::BLACKBOX;

/// A kind ready to start containers, or the reason it cannot.
#[derive(Debug, Clone)]
pub struct ResolvedRuntime {
    /// Interpreter and proxy script.
    pub launch: Result<(PathBuf, PathBuf), String>,
    /// Interpreter options from the manifest, given before the proxy script.
    pub args: Vec<String>,
}

/// Every kind of the manifest plus `blackbox` (the native proxy).
#[derive(Debug, Default)]
pub struct Runtimes {
    by_kind: HashMap<String, ResolvedRuntime>,
}

impl Runtimes {
    /// Looks at the file system; call from a blocking context.
    pub fn resolve(manifest: &RuntimeManifest, runtimes_dir: &Path) -> Self {
        let mut by_kind = HashMap::new();
        for k in manifest.kinds() {
            by_kind.insert(
                k.kind.clone(),
                resolve_one(&k.interpreter, &k.args, &k.proxy, runtimes_dir),
            );
        }
        let native = &manifest.native;
        by_kind.insert(
            BLACKBOX.to_owned(),
            resolve_one(
                &native.interpreter,
                &native.args,
                &native.proxy,
                runtimes_dir,
            ),
        );
        Self { by_kind }
    }

    pub fn get(&self, kind: &str) -> Option<&ResolvedRuntime> {
        self.by_kind.get(kind)
    }
}

fn resolve_one(candidates: &[String], args: &[String], proxy: &str, dir: &Path) -> ResolvedRuntime {
    let launch = find_interpreter(candidates)
        .ok_or_else(|| {
            let name = candidates
                .first()
                .and_then(|c| Path::new(c).file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "interpreter".into());
            format!(
                "no `{name}` interpreter found (tried {})",
                candidates.join(", ")
            )
        })
        .and_then(|interp| {
            find_proxy(dir, proxy).map(|p| (interp, p)).ok_or_else(|| {
                format!(
                    "no proxy script found in {}",
                    dir.join(proxy).to_string_lossy()
                )
            })
        });
    ResolvedRuntime {
        launch,
        args: args.to_vec(),
    }
}

/// First candidate that exists; bare names are searched on `PATH`.
pub fn find_interpreter(candidates: &[String]) -> Option<PathBuf> {
    candidates.iter().find_map(|c| {
        if c.contains('/') {
            let p = PathBuf::from(c);
            is_executable(&p).then_some(p)
        } else {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(c))
                    .find(|p| is_executable(p))
            })
        }
    })
}

fn find_proxy(dir: &Path, proxy: &str) -> Option<PathBuf> {
    ["proxy.js", "proxy.py"]
        .iter()
        .map(|f| dir.join(proxy).join(f))
        .find(|p| p.is_file())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_interpreter_is_named() {
        let r = resolve_one(
            &["nodexyz".into(), "/nope/nodexyz".into()],
            &[],
            "node",
            Path::new("/nonexistent"),
        );
        assert_eq!(
            r.launch.unwrap_err(),
            "no `nodexyz` interpreter found (tried nodexyz, /nope/nodexyz)"
        );
    }

    #[test]
    fn manifest_args_are_kept_per_kind() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("node")).unwrap();
        std::fs::write(dir.path().join("node/proxy.js"), "").unwrap();
        let mut m = RuntimeManifest::builtin();
        for k in m.runtimes.values_mut().flatten() {
            k.interpreter = vec!["/bin/sh".into()];
            k.args = vec![format!("--for={}", k.kind)];
        }
        let r = Runtimes::resolve(&m, dir.path());
        let node = r.get("nodejs:20").unwrap();
        assert_eq!(node.args, ["--for=nodejs:20"]);
        assert!(node.launch.is_ok());
        assert!(r.get(BLACKBOX).unwrap().args.is_empty());
    }

    #[test]
    fn absolute_candidates_are_checked() {
        assert_eq!(
            find_interpreter(&["/nope/sh".into(), "/bin/sh".into()]),
            Some(PathBuf::from("/bin/sh"))
        );
    }
}
