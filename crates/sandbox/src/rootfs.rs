//! The root filesystem an instance sees: a fresh tmpfs holding only the host directories it
//! may read (the system's `/usr`, `/etc`, …, its code at `/var/task`, the runtime at
//! `/var/runtime`), all read-only, plus a private size-limited `/tmp`, a minimal `/dev` and
//! its own `/proc`. The server's data dir and other functions' code are simply not there.
//!
//! The jailer assembles the view inside the instance's own mount namespace, on an empty host
//! directory (`staging`) that the host never sees mounted, then makes it the root with
//! `pivot_root`.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// A host path an instance sees read-only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bind {
    /// The host directory or file (a symlink is recreated as the same symlink).
    pub source: PathBuf,
    /// Where it appears inside the instance (absolute).
    pub target: PathBuf,
}

impl Bind {
    /// `path` at the same place inside the instance.
    pub fn same(path: impl Into<PathBuf>) -> Bind {
        let path = path.into();
        Bind {
            source: path.clone(),
            target: path,
        }
    }
}

/// The filesystem an instance sees.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RootView {
    /// An existing empty host directory the view is assembled on.
    pub staging: PathBuf,
    /// What it sees read-only, in mount order (a later bind may sit inside an earlier one).
    pub binds: Vec<Bind>,
    /// Size of its private writable `/tmp`, MB.
    pub tmp_mb: u32,
    /// Its working directory, inside the view.
    pub cwd: PathBuf,
}

/// Character devices every process expects: (name, major, minor).
const DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
];

/// Links in `/dev` into the process's own descriptors.
const DEV_LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// One step of assembling the view, with host paths already under the staging directory.
enum Step {
    Dir(CString),
    File(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    Bind {
        source: CString,
        target: CString,
    },
    Tmpfs {
        target: CString,
        options: CString,
    },
    Device {
        path: CString,
        major: u32,
        minor: u32,
    },
}

/// The prepared assembly of a [`RootView`].
pub(crate) struct Plan {
    staging: CString,
    steps: Vec<Step>,
    proc_dir: CString,
    cwd: CString,
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)
}

fn text(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(io::Error::other)
}

/// `target` (absolute, inside the view) as a relative path with normal components only.
fn relative(target: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for component in target.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(part) => out.push(part),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a plain absolute path", target.display()),
                ))
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the root itself cannot be bound",
        ));
    }
    Ok(out)
}

impl Plan {
    /// Prepares `view`: checks its sources and turns it into steps.
    pub(crate) fn of(view: &RootView) -> io::Result<Plan> {
        let root = &view.staging;
        let mut steps = Vec::new();
        let mut made = BTreeSet::new();
        // Every directory on the way to `path` (relative), then `path` itself if `dir`.
        let dirs = |steps: &mut Vec<Step>,
                    made: &mut BTreeSet<PathBuf>,
                    path: &Path,
                    dir: bool|
         -> io::Result<()> {
            let mut at = PathBuf::new();
            let parts: Vec<_> = path.components().collect();
            for (i, part) in parts.iter().enumerate() {
                at.push(part);
                if (i + 1 < parts.len() || dir) && made.insert(at.clone()) {
                    steps.push(Step::Dir(cstring(&root.join(&at))?));
                }
            }
            Ok(())
        };
        for fixed in ["tmp", "proc", "dev", "var/task", "var/runtime"] {
            dirs(&mut steps, &mut made, Path::new(fixed), true)?;
        }
        steps.push(Step::Tmpfs {
            target: cstring(&root.join("tmp"))?,
            options: text(&format!("size={}m,mode=1777", view.tmp_mb.max(1)))?,
        });
        steps.push(Step::Tmpfs {
            target: cstring(&root.join("dev"))?,
            options: text("size=64k,mode=755")?,
        });
        for (name, major, minor) in DEVICES {
            steps.push(Step::Device {
                path: cstring(&root.join("dev").join(name))?,
                major: *major,
                minor: *minor,
            });
        }
        for (name, to) in DEV_LINKS {
            steps.push(Step::Symlink {
                target: text(to)?,
                link: cstring(&root.join("dev").join(name))?,
            });
        }
        for bind in &view.binds {
            let inside = relative(&bind.target)?;
            let meta = std::fs::symlink_metadata(&bind.source)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", bind.source.display())))?;
            let at = cstring(&root.join(&inside))?;
            if meta.is_symlink() {
                dirs(&mut steps, &mut made, &inside, false)?;
                if made.insert(inside.clone()) {
                    steps.push(Step::Symlink {
                        target: cstring(&std::fs::read_link(&bind.source)?)?,
                        link: at,
                    });
                }
                continue;
            }
            if meta.is_dir() {
                dirs(&mut steps, &mut made, &inside, true)?;
            } else {
                dirs(&mut steps, &mut made, &inside, false)?;
                if made.insert(inside.clone()) {
                    steps.push(Step::File(at.clone()));
                }
            }
            steps.push(Step::Bind {
                source: cstring(&bind.source)?,
                target: at,
            });
        }
        Ok(Plan {
            staging: cstring(root)?,
            steps,
            proc_dir: cstring(&root.join("proc"))?,
            cwd: cstring(&view.cwd)?,
        })
    }

    /// In the child, inside its new mount namespace: builds the view on the staging
    /// directory, everything but `/proc` (which must wait for the PID namespace).
    ///
    /// # Safety
    /// Only in a single-threaded process, in a mount namespace of its own (it remounts `/`).
    pub(crate) unsafe fn build(&self) -> io::Result<()> {
        use nix::libc::{
            mkdir, mknod, mount, open, symlink, MS_BIND, MS_NODEV, MS_NOSUID, MS_PRIVATE,
            MS_RDONLY, MS_REC, MS_REMOUNT, O_CLOEXEC, O_CREAT, O_WRONLY, S_IFCHR,
        };
        let none: *const nix::libc::c_char = std::ptr::null();
        let no_data: *const nix::libc::c_void = std::ptr::null();
        // Whatever the server's umask, the view must be readable by the instance's user.
        nix::libc::umask(0o022);
        // Nothing mounted here propagates back to the host.
        check(mount(
            none,
            c"/".as_ptr(),
            none,
            MS_REC | MS_PRIVATE,
            no_data,
        ))?;
        check(mount(
            c"tmpfs".as_ptr(),
            self.staging.as_ptr(),
            c"tmpfs".as_ptr(),
            MS_NOSUID | MS_NODEV,
            c"size=1m,mode=755".as_ptr().cast(),
        ))?;
        for step in &self.steps {
            match step {
                Step::Dir(path) => check(mkdir(path.as_ptr(), 0o755))?,
                Step::File(path) => {
                    let fd = open(path.as_ptr(), O_WRONLY | O_CREAT | O_CLOEXEC, 0o644);
                    if fd < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    nix::libc::close(fd);
                }
                Step::Symlink { target, link } => check(symlink(target.as_ptr(), link.as_ptr()))?,
                Step::Tmpfs { target, options } => check(mount(
                    c"tmpfs".as_ptr(),
                    target.as_ptr(),
                    c"tmpfs".as_ptr(),
                    MS_NOSUID,
                    options.as_ptr().cast(),
                ))?,
                Step::Device { path, major, minor } => check(mknod(
                    path.as_ptr(),
                    S_IFCHR | 0o666,
                    nix::libc::makedev(*major, *minor),
                ))?,
                Step::Bind { source, target } => {
                    check(mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        none,
                        MS_BIND | MS_REC,
                        no_data,
                    ))?;
                    check(mount(
                        none,
                        target.as_ptr(),
                        none,
                        MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
                        no_data,
                    ))?;
                }
            }
        }
        // mknod above ignores the umask only partly: make the devices usable by anyone.
        for step in &self.steps {
            if let Step::Device { path, .. } = step {
                check(nix::libc::chmod(path.as_ptr(), 0o666))?;
            }
        }
        Ok(())
    }

    /// In the child, now PID 1 of its namespace: mounts its `/proc`, makes the view the
    /// root (the host's is detached), seals the root read-only and enters the working dir.
    ///
    /// # Safety
    /// Only in a single-threaded process, after [`Plan::build`] in the same namespace.
    pub(crate) unsafe fn enter(&self) -> io::Result<()> {
        use nix::libc::{
            chdir, mount, syscall, umount2, SYS_pivot_root, MNT_DETACH, MS_NODEV, MS_NOEXEC,
            MS_NOSUID, MS_RDONLY, MS_REMOUNT,
        };
        let none: *const nix::libc::c_char = std::ptr::null();
        let no_data: *const nix::libc::c_void = std::ptr::null();
        check(mount(
            c"proc".as_ptr(),
            self.proc_dir.as_ptr(),
            c"proc".as_ptr(),
            MS_NOSUID | MS_NODEV | MS_NOEXEC,
            no_data,
        ))?;
        check(chdir(self.staging.as_ptr()))?;
        // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves
        // only the view.
        let dot = c".".as_ptr();
        if syscall(SYS_pivot_root, dot, dot) != 0 {
            return Err(io::Error::last_os_error());
        }
        check(umount2(dot, MNT_DETACH))?;
        check(chdir(c"/".as_ptr()))?;
        check(mount(
            none,
            c"/".as_ptr(),
            none,
            MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
            no_data,
        ))?;
        check(chdir(self.cwd.as_ptr()))
    }
}

fn check(rc: i32) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_must_be_plain_absolute_paths() {
        assert!(relative(Path::new("/var/task")).is_ok());
        assert!(relative(Path::new("/var/../etc")).is_err());
        assert!(relative(Path::new("/")).is_err());
    }

    #[test]
    fn every_parent_is_made_once_and_symlinks_are_kept() {
        let host = std::env::temp_dir().join(format!("nimbus-rootfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&host);
        std::fs::create_dir_all(host.join("usr/bin")).expect("dirs");
        std::os::unix::fs::symlink("usr/bin", host.join("bin")).expect("link");
        let view = RootView {
            staging: PathBuf::from("/stage"),
            binds: vec![
                Bind {
                    source: host.join("usr"),
                    target: PathBuf::from("/usr"),
                },
                Bind {
                    source: host.join("bin"),
                    target: PathBuf::from("/bin"),
                },
                Bind {
                    source: host.join("usr/bin"),
                    target: PathBuf::from("/opt/a/b"),
                },
            ],
            tmp_mb: 512,
            cwd: PathBuf::from("/var/task"),
        };
        let plan = Plan::of(&view).expect("plan");
        let dirs: Vec<String> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Dir(d) => Some(d.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        for expected in [
            "/stage/var",
            "/stage/var/task",
            "/stage/opt/a/b",
            "/stage/usr",
        ] {
            assert_eq!(
                dirs.iter().filter(|d| *d == expected).count(),
                1,
                "{expected}"
            );
        }
        assert!(plan.steps.iter().any(|s| matches!(s,
            Step::Symlink { target, link } if target.to_bytes() == b"usr/bin" && link.to_bytes() == b"/stage/bin")));
        let _ = std::fs::remove_dir_all(&host);
    }
}
