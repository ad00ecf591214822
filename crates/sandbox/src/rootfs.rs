//! The root filesystem an instance sees: a fresh tmpfs holding only the host directories it
//! may read (the system's `/usr`, `/etc`, …, its code at `/var/task`, the runtime at
//! `/var/runtime`), all read-only, plus a private size-limited `/tmp`, a minimal `/dev` and
//! its own `/proc`. The server's data dir and other functions' code are simply not there.
//!
//! The jailer assembles the view inside the instance's own mount namespace, on an empty host
//! directory (`staging`) that the host never sees mounted, in two parts: the [`BaseView`]
//! every instance of the server shares, built while the jailer waits for work, and the
//! [`RootView`] of its function (code, runtime, `/tmp`), added when the work comes. Then
//! `pivot_root` makes it the root.

use std::collections::BTreeSet;
use std::io;
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use crate::tmpdisk::{self, TmpDisk};

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

/// What every instance of a server sees: a jailer builds it before it knows its function.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BaseView {
    /// An existing empty host directory the view is assembled on.
    pub staging: PathBuf,
    /// What it sees read-only, in mount order (a later bind may sit inside an earlier one).
    pub binds: Vec<Bind>,
    /// The disk this shell mounts at `/tmp` ahead (the common size), if the host has them.
    #[serde(default)]
    pub tmp: Option<TmpDisk>,
}

/// What one instance adds to the [`BaseView`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RootView {
    /// Its own read-only binds (its code, the runtime).
    pub binds: Vec<Bind>,
    /// Size of its private writable `/tmp`, MB.
    pub tmp_mb: u32,
    /// What its `/tmp` is.
    pub tmp: Tmp,
    /// Its working directory, inside the view.
    pub cwd: PathBuf,
}

/// What an instance's private `/tmp` is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Tmp {
    /// The disk its shell mounted ahead ([`BaseView::tmp`]), which has the right size.
    ShellDisk,
    /// A disk made for it.
    Disk(TmpDisk),
    /// A tmpfs, where the host cannot give it a disk: its pages count as its memory.
    Memory,
}

/// Character devices every process expects: (name, major, minor).
const DEVICES: &[(&str, u64, u64)] = &[
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

/// Directories every view has.
const FIXED_DIRS: &[&str] = &["tmp", "proc", "dev", "var/task", "var/runtime"];

/// One step of assembling a view, with paths already under the staging directory.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Dir(PathBuf),
    File(PathBuf),
    Symlink {
        target: PathBuf,
        link: PathBuf,
    },
    Bind {
        source: PathBuf,
        target: PathBuf,
    },
    Tmpfs {
        target: PathBuf,
        options: String,
    },
    /// A `/tmp` image, loop-mounted.
    Disk {
        disk: TmpDisk,
        target: PathBuf,
    },
    /// What the base mounted there goes (the instance brings its own).
    Unmount(PathBuf),
    Device {
        path: PathBuf,
        major: u64,
        minor: u64,
    },
}

/// Steps that build (part of) a view.
pub(crate) struct Plan {
    steps: Vec<Step>,
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

/// Builds the steps of a plan rooted at `root`, making each directory once.
struct Builder<'a> {
    root: &'a Path,
    steps: Vec<Step>,
    made: BTreeSet<PathBuf>,
}

impl Builder<'_> {
    /// Every directory on the way to `path` (relative), then `path` itself if `dir`.
    fn dirs(&mut self, path: &Path, dir: bool) {
        let mut at = PathBuf::new();
        let parts: Vec<_> = path.components().collect();
        for (i, part) in parts.iter().enumerate() {
            at.push(part);
            if (i + 1 < parts.len() || dir) && self.made.insert(at.clone()) {
                self.steps.push(Step::Dir(self.root.join(&at)));
            }
        }
    }

    fn binds(&mut self, binds: &[Bind]) -> io::Result<()> {
        for bind in binds {
            let inside = relative(&bind.target)?;
            let meta = std::fs::symlink_metadata(&bind.source)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", bind.source.display())))?;
            let at = self.root.join(&inside);
            if meta.is_symlink() {
                self.dirs(&inside, false);
                if self.made.insert(inside.clone()) {
                    let target = std::fs::read_link(&bind.source)?;
                    self.steps.push(Step::Symlink { target, link: at });
                }
                continue;
            }
            if meta.is_dir() {
                self.dirs(&inside, true);
            } else {
                self.dirs(&inside, false);
                if self.made.insert(inside.clone()) {
                    self.steps.push(Step::File(at.clone()));
                }
            }
            self.steps.push(Step::Bind {
                source: bind.source.clone(),
                target: at,
            });
        }
        Ok(())
    }
}

impl Plan {
    /// The shared part: the fixed directories, `/dev`, and the base binds.
    pub(crate) fn base(view: &BaseView) -> io::Result<Plan> {
        let mut b = Builder {
            root: &view.staging,
            steps: Vec::new(),
            made: BTreeSet::new(),
        };
        for fixed in FIXED_DIRS {
            b.dirs(Path::new(fixed), true);
        }
        let dev = view.staging.join("dev");
        b.steps.push(Step::Tmpfs {
            target: dev.clone(),
            options: "size=64k,mode=755".to_owned(),
        });
        for (name, major, minor) in DEVICES {
            b.steps.push(Step::Device {
                path: dev.join(name),
                major: *major,
                minor: *minor,
            });
        }
        for (name, to) in DEV_LINKS {
            b.steps.push(Step::Symlink {
                target: PathBuf::from(to),
                link: dev.join(name),
            });
        }
        b.binds(&view.binds)?;
        if let Some(disk) = &view.tmp {
            b.steps.push(Step::Disk {
                disk: disk.clone(),
                target: view.staging.join("tmp"),
            });
        }
        Ok(Plan { steps: b.steps })
    }

    /// One instance's part on top of `base`: its `/tmp` (unless the base's disk is it) and
    /// its binds.
    pub(crate) fn instance(base: &BaseView, view: &RootView) -> io::Result<Plan> {
        let staging = &base.staging;
        let mut b = Builder {
            root: staging,
            steps: Vec::new(),
            // The base made these.
            made: FIXED_DIRS
                .iter()
                .flat_map(|d| Path::new(d).ancestors())
                .filter(|a| !a.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .collect(),
        };
        let tmp = staging.join("tmp");
        let memory = Step::Tmpfs {
            target: tmp.clone(),
            options: format!("size={}m,mode=1777", view.tmp_mb.max(1)),
        };
        match (&base.tmp, &view.tmp) {
            (Some(_), Tmp::ShellDisk) => {} // mounted already
            (None, Tmp::ShellDisk | Tmp::Memory) => b.steps.push(memory),
            (Some(_), Tmp::Memory) => b.steps.extend([Step::Unmount(tmp), memory]),
            (shells, Tmp::Disk(disk)) => {
                if shells.is_some() {
                    b.steps.push(Step::Unmount(tmp.clone()));
                }
                b.steps.push(Step::Disk {
                    disk: disk.clone(),
                    target: tmp,
                });
            }
        }
        b.binds(&view.binds)?;
        Ok(Plan { steps: b.steps })
    }

    /// Carries the steps out (in the instance's own mount namespace, on the staging root).
    pub(crate) fn run(&self) -> io::Result<()> {
        let none: Option<&str> = None;
        for step in &self.steps {
            match step {
                Step::Dir(path) => {
                    match nix::unistd::mkdir(path, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Step::File(path) => {
                    std::fs::File::create(path)?;
                }
                Step::Symlink { target, link } => std::os::unix::fs::symlink(target, link)?,
                Step::Tmpfs { target, options } => mount(
                    Some("tmpfs"),
                    target,
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID,
                    Some(options.as_str()),
                )?,
                Step::Disk { disk, target } => {
                    if let Err(e) = tmpdisk::mount(disk, target) {
                        // No loop device to be had now: a tmpfs of the size serves instead.
                        disk.remove();
                        eprintln!("nimbus: /tmp is in memory, its disk failed: {e}");
                        mount(
                            Some("tmpfs"),
                            target,
                            Some("tmpfs"),
                            MsFlags::MS_NOSUID,
                            Some(format!("size={}m,mode=1777", disk.size_mb.max(1)).as_str()),
                        )?;
                    }
                }
                Step::Unmount(target) => umount2(target, MntFlags::MNT_DETACH)?,
                Step::Device { path, major, minor } => {
                    mknod(
                        path,
                        SFlag::S_IFCHR,
                        Mode::from_bits_truncate(0o666),
                        makedev(*major, *minor),
                    )?;
                    // mknod is subject to the umask: make the devices usable by anyone.
                    std::fs::set_permissions(
                        path,
                        std::os::unix::fs::PermissionsExt::from_mode(0o666),
                    )?;
                }
                Step::Bind { source, target } => {
                    mount(
                        Some(source),
                        target,
                        none,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        none,
                    )?;
                    mount(
                        none,
                        target,
                        none,
                        MsFlags::MS_BIND
                            | MsFlags::MS_REMOUNT
                            | MsFlags::MS_RDONLY
                            | MsFlags::MS_NOSUID
                            | MsFlags::MS_NODEV,
                        none,
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// In a new mount namespace: stops mounts propagating back to the host and mounts the
/// view's root tmpfs on `staging`.
pub(crate) fn prepare(staging: &Path) -> io::Result<()> {
    let none: Option<&str> = None;
    // Whatever the server's umask, the view must be readable by the instance's user.
    nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)?;
    mount(
        Some("tmpfs"),
        staging,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("size=1m,mode=755"),
    )?;
    Ok(())
}

/// As PID 1 of the instance's PID namespace: mounts its own `/proc` in the view.
pub(crate) fn mount_proc(staging: &Path) -> io::Result<()> {
    mount(
        Some("proc"),
        &staging.join("proc"),
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )?;
    Ok(())
}

/// Makes the view at `staging` the root (the host's is detached), seals it read-only and
/// enters `cwd`.
pub(crate) fn enter(staging: &Path, cwd: &Path) -> io::Result<()> {
    let none: Option<&str> = None;
    nix::unistd::chdir(staging)?;
    // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves only
    // the view.
    nix::unistd::pivot_root(".", ".")?;
    umount2(".", MntFlags::MNT_DETACH)?;
    nix::unistd::chdir("/")?;
    mount(
        none,
        "/",
        none,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        none,
    )?;
    nix::unistd::chdir(cwd)?;
    Ok(())
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
        let base = BaseView {
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
            tmp: None,
        };
        let plan = Plan::base(&base).expect("plan");
        let dirs: Vec<&Path> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Dir(d) => Some(d.as_path()),
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
                dirs.iter().filter(|d| **d == Path::new(expected)).count(),
                1,
                "{expected}"
            );
        }
        assert!(plan.steps.contains(&Step::Symlink {
            target: PathBuf::from("usr/bin"),
            link: PathBuf::from("/stage/bin"),
        }));
        // An instance adds its /tmp and binds, not the directories the base made.
        let view = RootView {
            binds: vec![Bind {
                source: host.join("usr"),
                target: PathBuf::from("/var/task"),
            }],
            tmp_mb: 512,
            tmp: Tmp::Memory,
            cwd: PathBuf::from("/var/task"),
        };
        let mine = Plan::instance(&base, &view).expect("plan");
        assert_eq!(
            mine.steps,
            vec![
                Step::Tmpfs {
                    target: PathBuf::from("/stage/tmp"),
                    options: "size=512m,mode=1777".to_owned(),
                },
                Step::Bind {
                    source: host.join("usr"),
                    target: PathBuf::from("/stage/var/task"),
                },
            ]
        );
        let _ = std::fs::remove_dir_all(&host);
    }

    #[test]
    fn tmp_is_the_shells_disk_or_the_instances_own_or_a_tmpfs() {
        let disk = |name: &str, size_mb| TmpDisk {
            image: PathBuf::from(format!("/disks/{name}.img")),
            size_mb,
        };
        let mut base = BaseView {
            staging: PathBuf::from("/stage"),
            binds: Vec::new(),
            tmp: Some(disk("shell", 512)),
        };
        let tmp = PathBuf::from("/stage/tmp");
        assert!(Plan::base(&base)
            .expect("plan")
            .steps
            .contains(&Step::Disk {
                disk: disk("shell", 512),
                target: tmp.clone(),
            }));
        let mut view = RootView {
            binds: Vec::new(),
            tmp_mb: 512,
            tmp: Tmp::ShellDisk,
            cwd: PathBuf::from("/var/task"),
        };
        // The shell's disk has the size asked for: nothing more to mount.
        assert_eq!(Plan::instance(&base, &view).expect("plan").steps, vec![]);
        // Another size: the shell's goes, the instance's own comes.
        view.tmp_mb = 2048;
        view.tmp = Tmp::Disk(disk("own", 2048));
        assert_eq!(
            Plan::instance(&base, &view).expect("plan").steps,
            vec![
                Step::Unmount(tmp.clone()),
                Step::Disk {
                    disk: disk("own", 2048),
                    target: tmp.clone(),
                },
            ]
        );
        // No disk could be made: a tmpfs of the size, in place of the shell's.
        let memory = Step::Tmpfs {
            target: tmp.clone(),
            options: "size=2048m,mode=1777".to_owned(),
        };
        view.tmp = Tmp::Memory;
        assert_eq!(
            Plan::instance(&base, &view).expect("plan").steps,
            vec![Step::Unmount(tmp), memory.clone()]
        );
        // No disks on this host at all: the tmpfs alone.
        base.tmp = None;
        assert_eq!(
            Plan::instance(&base, &view).expect("plan").steps,
            vec![memory]
        );
    }
}
