//! Safe unpacking of a code zip: no path leaves the target directory, and no archive can
//! make Nimbus write more than the unpacked-size limit.

use std::io::{Cursor, Read, Write};
use std::path::{Component, Path, PathBuf};

use nimbus_core::limits;

/// Why a code zip was refused.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The bytes are not a zip archive this reader understands.
    #[error("not a readable zip archive ({0})")]
    NotZip(String),
    /// An entry's path is absolute, contains `..`, or is otherwise unsafe.
    #[error("entry '{0}' has an unsafe path")]
    UnsafePath(String),
    /// A symlink entry points outside the package.
    #[error("symlink '{0}' points outside the package")]
    EscapingLink(String),
    /// The unpacked contents would exceed the limit.
    #[error("Unzipped size must be smaller than {limit} bytes")]
    TooLarge {
        /// The limit, bytes.
        limit: u64,
    },
    /// The archive has more entries than any real package.
    #[error("the archive has {0} entries, more than the {max} allowed", max = limits::CODE_MAX_ENTRIES)]
    TooManyEntries(usize),
    /// An entry compresses far better than real files do: a zip bomb.
    #[error("entry '{0}' has an implausible compression ratio")]
    Bomb(String),
    /// Writing the unpacked files failed.
    #[error("writing unpacked code: {0}")]
    Io(#[from] std::io::Error),
}

impl UnpackError {
    /// Whether the fault lies with the archive (a user error) rather than with Nimbus.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, UnpackError::Io(_))
    }
}

/// What an unpacked package holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unpacked {
    /// Bytes of file content written.
    pub bytes: u64,
    /// Entries in the archive.
    pub entries: usize,
}

/// Entries bigger than this are checked for an implausible compression ratio.
const RATIO_CHECK_FROM_BYTES: u64 = 1 << 20;
/// Longest symlink target read from an archive.
const LINK_TARGET_MAX_BYTES: u64 = 4096;

/// Unpacks `zip` into the existing empty directory `dest`, refusing unsafe archives.
/// On error `dest` may hold part of the archive; the caller discards it.
pub fn unpack(zip: &[u8], dest: &Path) -> Result<Unpacked, UnpackError> {
    let mut archive =
        zip::ZipArchive::new(Cursor::new(zip)).map_err(|e| UnpackError::NotZip(e.to_string()))?;
    let entries = archive.len();
    if entries > limits::CODE_MAX_ENTRIES {
        return Err(UnpackError::TooManyEntries(entries));
    }
    let limit = limits::CODE_UNZIPPED_MAX_BYTES;
    let mut written: u64 = 0;
    // Symlinks are made last, so no file is ever written through one.
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    for index in 0..entries {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| UnpackError::NotZip(e.to_string()))?;
        let name = entry.name().to_owned();
        let relative = safe_relative(&name).ok_or_else(|| UnpackError::UnsafePath(name.clone()))?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let target = dest.join(&relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&target)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if entry.is_symlink() {
            let mut raw = Vec::new();
            (&mut entry)
                .take(LINK_TARGET_MAX_BYTES)
                .read_to_end(&mut raw)
                .map_err(|e| UnpackError::NotZip(e.to_string()))?;
            let link = PathBuf::from(String::from_utf8_lossy(&raw).into_owned());
            if !link_stays_inside(&relative, &link) {
                return Err(UnpackError::EscapingLink(name));
            }
            links.push((target, link));
            continue;
        }
        let declared = entry.size();
        if declared > limit.saturating_sub(written) {
            return Err(UnpackError::TooLarge { limit });
        }
        if declared >= RATIO_CHECK_FROM_BYTES
            && declared / entry.compressed_size().max(1) > limits::CODE_MAX_COMPRESSION_RATIO
        {
            return Err(UnpackError::Bomb(name));
        }
        let mode = entry.unix_mode().map_or(0o644, |m| (m & 0o777) | 0o400);
        let mut file = std::fs::File::create(&target)?;
        // Count what is really inflated: a declared size may lie.
        let budget = limit - written;
        let copied = copy_at_most(&mut entry, &mut file, budget)
            .map_err(|e| UnpackError::NotZip(e.to_string()))?;
        let Some(copied) = copied else {
            return Err(UnpackError::TooLarge { limit });
        };
        written += copied;
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    for (target, link) in links {
        std::os::unix::fs::symlink(&link, &target)?;
    }
    Ok(Unpacked {
        bytes: written,
        entries,
    })
}

/// Copies `from` into `to`; `None` if `from` holds more than `budget` bytes.
fn copy_at_most(
    from: &mut impl Read,
    to: &mut impl Write,
    budget: u64,
) -> std::io::Result<Option<u64>> {
    let copied = std::io::copy(&mut from.take(budget.saturating_add(1)), to)?;
    Ok((copied <= budget).then_some(copied))
}

/// The entry name as a relative path with only normal components, or `None` if it is unsafe.
fn safe_relative(name: &str) -> Option<PathBuf> {
    if name.contains('\0') || name.contains('\\') {
        return None;
    }
    let mut out = PathBuf::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Whether a symlink at `entry` (relative to the package root) pointing at `link` resolves,
/// lexically, to a place inside the package.
fn link_stays_inside(entry: &Path, link: &Path) -> bool {
    if link.as_os_str().is_empty() || link.is_absolute() {
        return false;
    }
    let mut depth: usize = entry.components().count().saturating_sub(1);
    for component in link.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            w.start_file(*name, SimpleFileOptions::default())
                .expect("start");
            w.write_all(data).expect("write");
        }
        w.finish().expect("finish").into_inner()
    }

    fn zip_with_link(name: &str, target: &str) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.add_symlink(name, target, SimpleFileOptions::default())
            .expect("symlink");
        w.finish().expect("finish").into_inner()
    }

    #[test]
    fn unpacks_files_with_modes() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file(
            "bin/bootstrap",
            SimpleFileOptions::default().unix_permissions(0o755),
        )
        .expect("start");
        w.write_all(b"#!/bin/sh\n").expect("write");
        let bytes = w.finish().expect("finish").into_inner();
        let got = unpack(&bytes, dir.path()).expect("unpack");
        assert_eq!(got.bytes, 10);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("bin/bootstrap"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn refuses_paths_that_leave_the_tree() {
        for name in ["../evil.py", "/etc/evil", "a/../../evil", "a\\..\\evil"] {
            let dir = tempfile::tempdir().expect("tmp");
            let err = unpack(&zip_of(&[(name, b"x")]), dir.path()).expect_err(name);
            assert!(matches!(err, UnpackError::UnsafePath(_)), "{name}: {err}");
        }
    }

    #[test]
    fn refuses_symlinks_out_of_the_tree_but_keeps_inner_ones() {
        for target in ["/etc/passwd", "../../etc/passwd", "a/../../x"] {
            let dir = tempfile::tempdir().expect("tmp");
            let err = unpack(&zip_with_link("link", target), dir.path()).expect_err(target);
            assert!(
                matches!(err, UnpackError::EscapingLink(_)),
                "{target}: {err}"
            );
        }
        let dir = tempfile::tempdir().expect("tmp");
        unpack(&zip_with_link("sub/link", "../app.py"), dir.path()).expect("inner link");
    }

    #[test]
    fn refuses_bombs_and_garbage() {
        let dir = tempfile::tempdir().expect("tmp");
        let zeros = vec![0u8; 8 << 20];
        let err = unpack(&zip_of(&[("zeros", &zeros)]), dir.path()).expect_err("bomb");
        assert!(matches!(err, UnpackError::Bomb(_)), "{err}");
        let err = unpack(b"not a zip", dir.path()).expect_err("garbage");
        assert!(matches!(err, UnpackError::NotZip(_)), "{err}");
    }

    #[test]
    fn link_check_is_lexical_and_relative_to_the_entry() {
        assert!(link_stays_inside(Path::new("a/b/link"), Path::new("../c")));
        assert!(!link_stays_inside(Path::new("link"), Path::new("../c")));
        assert!(link_stays_inside(Path::new("link"), Path::new("./c/../d")));
    }
}
