//! Unpacking of zipped action code into a container's private directory.

use std::io::{Cursor, Read};
use std::path::Path;

use base64::Engine;

use crate::error::{Error, Result};

/// Most bytes an archive may expand to.
pub const MAX_UNPACKED: u64 = 512 * 1024 * 1024;
/// Most entries an archive may hold.
pub const MAX_ENTRIES: usize = 100_000;

/// Decodes base64 `code` and unpacks it into `dest` (created). Blocking: run it off the
/// async threads.
pub fn unpack_base64(code: &str, dest: &Path) -> Result<()> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(code.trim().as_bytes())
        .map_err(|_| Error::BadBase64)?;
    unpack(&bytes, dest)
}

/// Unpacks a zip archive, refusing entries that leave `dest`, symlinks, and archives that
/// expand beyond [`MAX_UNPACKED`]. Executable bits are kept.
pub fn unpack(bytes: &[u8], dest: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |e: &dyn std::fmt::Display| Error::BadZip(e.to_string());
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| bad(&e))?;
    if archive.len() > MAX_ENTRIES {
        return Err(Error::BadZip(format!("more than {MAX_ENTRIES} entries")));
    }
    std::fs::create_dir_all(dest).map_err(|e| Error::io("create code dir", dest, e))?;
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(|e| bad(&e))?;
        let Some(rel) = file.enclosed_name() else {
            return Err(Error::BadZip(format!(
                "entry '{}' escapes the archive",
                file.name()
            )));
        };
        let target = dest.join(rel);
        if file.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| Error::io("create dir", &target, e))?;
            continue;
        }
        if file.is_symlink() {
            return Err(Error::BadZip(format!(
                "entry '{}' is a symbolic link",
                file.name()
            )));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("create dir", parent, e))?;
        }
        let mut out =
            std::fs::File::create(&target).map_err(|e| Error::io("create file", &target, e))?;
        // Count what is really inflated, not what the header claims.
        let budget = MAX_UNPACKED - total;
        let copied = std::io::copy(&mut (&mut file).take(budget + 1), &mut out)
            .map_err(|e| Error::io("unpack", &target, e))?;
        total += copied;
        if total > MAX_UNPACKED {
            return Err(Error::BadZip(format!(
                "the archive expands to more than {MAX_UNPACKED} bytes"
            )));
        }
        if let Some(mode) = file.unix_mode() {
            let mode = mode & 0o777;
            if mode & 0o111 != 0 {
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode | 0o400))
                    .map_err(|e| Error::io("set permissions", &target, e))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn make_zip(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data, mode) in entries {
            let opts = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn unpacks_and_keeps_exec_bits() {
        let dir = tempfile::tempdir().unwrap();
        let z = make_zip(&[("exec", b"#!/bin/sh\n", 0o755), ("a/b.txt", b"hi", 0o644)]);
        unpack(&z, dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join("exec"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);
        assert_eq!(std::fs::read(dir.path().join("a/b.txt")).unwrap(), b"hi");
    }

    #[test]
    fn refuses_zip_slip() {
        let dir = tempfile::tempdir().unwrap();
        let z = make_zip(&[("../evil", b"x", 0o644)]);
        let err = unpack(&z, &dir.path().join("code")).unwrap_err();
        assert!(err.to_string().contains("escapes"), "{err}");
        assert!(!dir.path().join("evil").exists());
    }

    #[test]
    fn refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            unpack_base64("!!!", dir.path()),
            Err(Error::BadBase64)
        ));
        assert!(matches!(
            unpack(b"not a zip", dir.path()),
            Err(Error::BadZip(_))
        ));
    }
}
