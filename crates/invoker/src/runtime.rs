//! Resolution of runtime kinds to an interpreter binary and a proxy script, done once at start.
//! A Python proxy is byte-compiled here, so that no container start compiles it again.

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
        use_compiled_python(&mut by_kind);
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

/// Points every kind whose proxy is a Python script at its byte-compiled form, compiled once per
/// interpreter and script: Python runs a compiled file like the script itself, without parsing
/// and compiling it first (~2 ms of every container start).
fn use_compiled_python(by_kind: &mut HashMap<String, ResolvedRuntime>) {
    let mut compiled: HashMap<(PathBuf, PathBuf), PathBuf> = HashMap::new();
    for rt in by_kind.values_mut() {
        if let Ok((interpreter, proxy)) = &mut rt.launch
            && proxy.extension().is_some_and(|e| e == "py")
        {
            *proxy = compiled
                .entry((interpreter.clone(), proxy.clone()))
                .or_insert_with(|| {
                    byte_compile(interpreter, proxy).unwrap_or_else(|| proxy.clone())
                })
                .clone();
        }
    }
}

/// Compiles `script` with the interpreter that will run it; returns the compiled file
/// (`__pycache__/<name>.<tag>.pyc` next to it), or `None` (the reason logged) when that fails and
/// containers run the source.
fn byte_compile(interpreter: &Path, script: &Path) -> Option<PathBuf> {
    const COMPILE: &str =
        "import py_compile, sys; print(py_compile.compile(sys.argv[1], doraise=True))";
    let out = std::process::Command::new(interpreter)
        .args(["-I", "-S", "-c", COMPILE])
        .arg(script)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output();
    let failure = match out {
        Ok(o) if o.status.success() => {
            let compiled = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            if compiled.is_absolute() && compiled.is_file() {
                return Some(compiled);
            }
            format!("unexpected output {:?}", String::from_utf8_lossy(&o.stdout))
        }
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        Err(e) => e.to_string(),
    };
    tracing::warn!(
        script = %script.display(),
        error = %failure,
        "could not byte-compile the proxy; containers compile it at every start"
    );
    None
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

    /// The built-in manifest on a runtimes directory with `files`.
    fn resolve_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Runtimes) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let r = Runtimes::resolve(&RuntimeManifest::builtin(), dir.path());
        (dir, r)
    }

    #[test]
    fn python_proxies_run_byte_compiled_with_the_manifest_args() {
        let (dir, r) = resolve_with(&[
            ("python/proxy.py", "print('compiled proxy ran')\n"),
            ("native/proxy.py", "print('native')\n"),
            ("node/proxy.js", ""),
        ]);
        let python = r.get("python:3.11").unwrap();
        let (interpreter, proxy) = python.launch.clone().unwrap();
        assert_eq!(python.args, ["-I", "-S"]);
        assert_eq!(proxy.extension().unwrap(), "pyc");
        assert!(
            proxy.starts_with(dir.path().join("python/__pycache__")),
            "{proxy:?}"
        );
        // The compiled file runs as the script would.
        let out = std::process::Command::new(&interpreter)
            .args(&python.args)
            .arg(&proxy)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "compiled proxy ran\n");
        let (_, native) = r.get(BLACKBOX).unwrap().launch.clone().unwrap();
        assert!(native.starts_with(dir.path().join("native/__pycache__")));
        let (_, node) = r.get("nodejs:20").unwrap().launch.clone().unwrap();
        assert_eq!(node, dir.path().join("node/proxy.js"));
    }

    #[test]
    fn a_python_proxy_that_does_not_compile_runs_from_source() {
        let (dir, r) = resolve_with(&[("python/proxy.py", "def broken(:\n")]);
        let (_, proxy) = r.get("python:3.11").unwrap().launch.clone().unwrap();
        assert_eq!(proxy, dir.path().join("python/proxy.py"));
    }

    #[test]
    fn absolute_candidates_are_checked() {
        assert_eq!(
            find_interpreter(&["/nope/sh".into(), "/bin/sh".into()]),
            Some(PathBuf::from("/bin/sh"))
        );
    }
}
