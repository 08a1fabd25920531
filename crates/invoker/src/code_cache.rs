//! Unpacked code of zipped actions, shared by their containers.
//!
//! A zipped action (a Node.js package with its `node_modules`, a Python virtualenv) is unpacked
//! once per action version into `<run_dir>/.code/<key>`, and each container of the action gets
//! a copy of that tree made of hard links: one `link()` per file instead of inflating and
//! writing it again (a 2,000-file archive: ~15 times less work). The container sees its copy
//! read-only (the sandbox binds it so), so no container can change what the others run.
//!
//! The key is a 128-bit hash of the action's identity and code under keys drawn at random when
//! the cache is made: no other tenant's code can be guessed into, and nothing is reused across
//! restarts (the invoker empties `run_dir` when it starts and stops).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use brisk_model::Action;

use crate::error::{Error, Result};
use crate::zip;

/// Unpacked trees kept at most; the oldest go first.
const MAX_ENTRIES: usize = 64;

pub(crate) struct CodeCache {
    dir: PathBuf,
    keys: [std::hash::RandomState; 2],
    /// Entries being unpacked: starts of the same version wait for the first one's unpacking
    /// instead of each unpacking its own.
    unpacking: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Archives unpacked into the cache so far.
    unpacked: std::sync::atomic::AtomicU64,
}

impl CodeCache {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            keys: [std::hash::RandomState::new(), std::hash::RandomState::new()],
            unpacking: Mutex::new(HashMap::new()),
            unpacked: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The cache entry name of `action`'s current code: its identity under both keys, the code
    /// (which can be tens of megabytes) read once, under the first.
    fn key(&self, action: &Action, code: &str) -> String {
        let hash = |state: &std::hash::RandomState, code: Option<&str>| {
            let mut h = state.build_hasher();
            action.namespace.hash(&mut h);
            action.name.hash(&mut h);
            (action.version, action.updated).hash(&mut h);
            code.hash(&mut h);
            h.finish()
        };
        format!(
            "{:016x}{:016x}",
            hash(&self.keys[0], Some(code)),
            hash(&self.keys[1], None)
        )
    }

    /// Unpacks `code` (base64 of a zip) of `action` into the cache unless this version is
    /// there already, and returns its entry. Callers for the same version wait for one
    /// unpacking.
    fn entry(&self, action: &Action, code: &str) -> Result<PathBuf> {
        let key = self.key(action, code);
        let entry = self.dir.join(&key);
        if entry.is_dir() {
            return Ok(entry);
        }
        let lock = self
            .unpacking
            .lock()
            .entry(key.clone())
            .or_default()
            .clone();
        let unpacked = {
            let _turn = lock.lock();
            if entry.is_dir() {
                Ok(())
            } else {
                self.unpack_entry(code, &entry)
            }
        };
        let mut unpacking = self.unpacking.lock();
        // The last one out (the map's own reference and this one are left) forgets the lock.
        if Arc::strong_count(&lock) == 2 {
            unpacking.remove(&key);
        }
        drop(unpacking);
        unpacked.map(|()| entry)
    }

    /// Archives unpacked into the cache so far.
    pub(crate) fn unpacks(&self) -> u64 {
        self.unpacked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Unpacks the code of `action` into the cache ahead of its first start, so that the start
    /// only links it.
    pub(crate) fn prepare(&self, action: &Action, code: &str) -> Result<()> {
        self.entry(action, code).map(drop)
    }

    /// Fills `dest` with the unpacked tree of `code` (base64 of a zip) of `action`: hard links
    /// into the cache, unpacking into the cache first when this version is not there yet.
    /// Should linking fail (say `dest` is on another file system), unpacks into `dest` itself.
    pub(crate) fn materialize(&self, action: &Action, code: &str, dest: &Path) -> Result<()> {
        let entry = self.entry(action, code)?;
        match link_tree(&entry, dest) {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, "linking cached code failed; unpacking");
                let _ = std::fs::remove_dir_all(dest);
                zip::unpack_base64(code, dest)
            }
        }
    }

    /// Unpacks into a temporary directory and renames it into place, so that a start checking
    /// for the entry without waiting for the lock never links a half-unpacked tree.
    fn unpack_entry(&self, code: &str, entry: &Path) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io("create code cache", &self.dir, e))?;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.dir.join(format!(".tmp-{}-{n}", std::process::id()));
        if let Err(e) = zip::unpack_base64(code, &tmp) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        self.unpacked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if std::fs::rename(&tmp, entry).is_err() {
            // Linking will tell, and fall back to unpacking in place.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        self.trim();
        Ok(())
    }

    /// Drops the oldest entries beyond [`MAX_ENTRIES`]. Containers keep their links: a file's
    /// data lives as long as one of its names does.
    fn trim(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if dirs.len() <= MAX_ENTRIES {
            return;
        }
        dirs.sort();
        for (_, path) in &dirs[..dirs.len() - MAX_ENTRIES] {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// Recreates the tree under `src` at `dst` with directories made anew and files hard-linked.
fn link_tree(src: &Path, dst: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            link_tree(&from, &to)?;
            let mode = entry.metadata()?.permissions().mode();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))?;
        } else if kind.is_file() {
            std::fs::hard_link(&from, &to)?;
        }
        // Unpacking refuses symbolic links; nothing else is there.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use brisk_model::{EntityName, EntityPath};
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    /// Entries in the cache directory under `tmp` (temporary ones included).
    fn cache_entries(tmp: &tempfile::TempDir) -> Vec<PathBuf> {
        std::fs::read_dir(tmp.path().join(".code"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    fn ino(p: &Path) -> u64 {
        std::fs::metadata(p).unwrap().ino()
    }

    fn zip_b64(files: &[(&str, &str)]) -> String {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = ::zip::ZipWriter::new(&mut buf);
            let opts = ::zip::write::SimpleFileOptions::default()
                .compression_method(::zip::CompressionMethod::Deflated);
            for (name, body) in files {
                w.start_file(*name, opts).unwrap();
                w.write_all(body.as_bytes()).unwrap();
            }
            w.finish().unwrap();
        }
        base64::engine::general_purpose::STANDARD.encode(buf.into_inner())
    }

    fn action(name: &str) -> Action {
        Action::from_code(
            EntityPath::root(EntityName::new("guest").unwrap()),
            EntityName::new(name).unwrap(),
            "nodejs:20",
            "",
        )
    }

    #[test]
    fn code_prepared_ahead_is_linked_not_unpacked_again() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = CodeCache::new(tmp.path().join(".code"));
        let code = zip_b64(&[("index.js", "ahead"), ("node_modules/m/index.js", "m")]);
        let a = action("a");
        cache.prepare(&a, &code).unwrap();
        assert_eq!(cache.unpacks(), 1);
        let entries = cache_entries(&tmp);
        assert_eq!(entries.len(), 1, "{entries:?}");
        // Preparing the same version again, and its first container, reuse the entry.
        cache.prepare(&a, &code).unwrap();
        let dest = tmp.path().join("c1/code");
        cache.materialize(&a, &code, &dest).unwrap();
        assert_eq!(cache.unpacks(), 1);
        assert_eq!(
            ino(&dest.join("node_modules/m/index.js")),
            ino(&entries[0].join("node_modules/m/index.js"))
        );
        assert_eq!(
            std::fs::read_to_string(dest.join("index.js")).unwrap(),
            "ahead"
        );
        // A bad archive is an error ahead of time too, and leaves nothing behind.
        assert!(cache.prepare(&action("b"), "not base64!").is_err());
        assert_eq!(cache_entries(&tmp).len(), 1);
    }

    #[test]
    fn containers_of_one_version_share_one_unpacked_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = CodeCache::new(tmp.path().join(".code"));
        let v1 = zip_b64(&[("index.js", "v1"), ("node_modules/m/index.js", "m")]);
        let a = action("a");
        let (c1, c2) = (tmp.path().join("c1/code"), tmp.path().join("c2/code"));
        cache.materialize(&a, &v1, &c1).unwrap();
        cache.materialize(&a, &v1, &c2).unwrap();
        for c in [&c1, &c2] {
            assert_eq!(std::fs::read_to_string(c.join("index.js")).unwrap(), "v1");
            assert_eq!(
                std::fs::read_to_string(c.join("node_modules/m/index.js")).unwrap(),
                "m"
            );
        }
        // The same file behind both: one unpacking, two links.
        assert_eq!(ino(&c1.join("index.js")), ino(&c2.join("index.js")));
        assert_eq!(cache_entries(&tmp).len(), 1);

        // Other code (an update, or another action) is another tree.
        let v2 = zip_b64(&[("index.js", "v2")]);
        let c3 = tmp.path().join("c3/code");
        cache.materialize(&a, &v2, &c3).unwrap();
        assert_eq!(std::fs::read_to_string(c3.join("index.js")).unwrap(), "v2");
        assert_ne!(ino(&c1.join("index.js")), ino(&c3.join("index.js")));
        let c4 = tmp.path().join("c4/code");
        cache.materialize(&action("b"), &v1, &c4).unwrap();
        assert_ne!(ino(&c1.join("index.js")), ino(&c4.join("index.js")));
        assert_eq!(cache_entries(&tmp).len(), 3);

        // A bad archive fails and leaves nothing behind in the cache.
        let err = cache.materialize(&a, "not base64!", &tmp.path().join("c5/code"));
        assert!(err.is_err());
        assert_eq!(cache_entries(&tmp).len(), 3);
    }

    #[test]
    fn the_cache_keeps_a_bounded_number_of_trees_and_links_survive_trimming() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = CodeCache::new(tmp.path().join(".code"));
        let first = tmp.path().join("c0/code");
        let code = |i: usize| zip_b64(&[("index.js", &format!("v{i}"))]);
        cache.materialize(&action("a0"), &code(0), &first).unwrap();
        for i in 1..=MAX_ENTRIES + 5 {
            let dest = tmp.path().join(format!("c{i}/code"));
            cache
                .materialize(&action(&format!("a{i}")), &code(i), &dest)
                .unwrap();
        }
        let kept = cache_entries(&tmp).len();
        assert_eq!(kept, MAX_ENTRIES);
        assert_eq!(
            std::fs::read_to_string(first.join("index.js")).unwrap(),
            "v0"
        );
    }

    #[test]
    fn concurrent_starts_of_one_version_unpack_it_once() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Arc::new(CodeCache::new(tmp.path().join(".code")));
        let files: Vec<(String, String)> = (0..200)
            .map(|i| (format!("node_modules/p{i}/index.js"), format!("{i}")))
            .collect();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let code = Arc::new(zip_b64(&refs));
        let a = Arc::new(action("a"));
        let dests: Vec<PathBuf> = (0..4)
            .map(|i| tmp.path().join(format!("c{i}/code")))
            .collect();
        let threads: Vec<_> = dests
            .iter()
            .map(|d| {
                let (cache, code, a, d) = (cache.clone(), code.clone(), a.clone(), d.clone());
                std::thread::spawn(move || cache.materialize(&a, &code, &d))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let first = ino(&dests[0].join("node_modules/p7/index.js"));
        for d in &dests {
            assert_eq!(ino(&d.join("node_modules/p7/index.js")), first);
        }
        // One entry, no temporary directories left, no lock left behind.
        let entries = cache_entries(&tmp);
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert!(cache.unpacking.lock().is_empty());
        assert_eq!(cache.unpacks(), 1);
    }
}
