//! Per-instance cgroups: a memory limit (the function's MemorySize), a pids limit, and a
//! CPU share proportional to memory (1,769 MB = one vCPU's worth). Both layouts are
//! supported: v1 (one hierarchy per controller) and v2 (unified). Nimbus keeps its cgroups
//! under a parent of its own, `nimbus-<server pid>`, removed when the server stops. Idle
//! instances are frozen whole through the cgroup (v1's `freezer` hierarchy, v2's
//! `cgroup.freeze`): a process that left the instance's process group freezes too.

use std::path::{Path, PathBuf};

/// Lambda's process limit per execution environment.
pub const PIDS_MAX: u32 = 1024;
/// Memory that buys one vCPU of CPU share, MB.
const MB_PER_VCPU: u64 = 1769;

/// Which cgroup layout the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One hierarchy per controller under the root (`memory/`, `pids/`, `cpu/`).
    V1,
    /// The unified hierarchy.
    V2,
}

/// The cgroups Nimbus creates on this host.
#[derive(Debug, Clone)]
pub struct Cgroups {
    /// The layout.
    pub layout: Layout,
    /// Whether instances can be frozen through their cgroup (v2 always; v1 where the
    /// `freezer` hierarchy is mounted). Without it idle instances are stopped by signal.
    pub freezer: bool,
    root: PathBuf,
    parent: String,
}

/// The v1 hierarchies an instance joins: one per controller.
fn v1_controllers(freezer: bool) -> &'static [&'static str] {
    if freezer {
        &["memory", "pids", "cpu", "freezer"]
    } else {
        &["memory", "pids", "cpu"]
    }
}

/// One instance's cgroup(s).
#[derive(Debug)]
pub struct InstanceCgroup {
    layout: Layout,
    /// Directories to remove, one per controller hierarchy (v1) or one (v2).
    dirs: Vec<PathBuf>,
    /// The `cgroup.procs` files the process joins before it runs.
    pub(crate) procs: Vec<PathBuf>,
    memory: PathBuf,
    cpu: PathBuf,
    /// The file that freezes and thaws the whole cgroup, if the host has one.
    freeze: Option<PathBuf>,
}

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value)
}

impl Cgroups {
    /// Detects a usable layout (as root) and creates Nimbus's parent cgroup; `None` when
    /// the host gives no writable memory controller.
    pub fn detect() -> Option<Cgroups> {
        Cgroups::detect_at(Path::new("/sys/fs/cgroup"))
    }

    fn detect_at(root: &Path) -> Option<Cgroups> {
        let parent = format!("nimbus-{}", std::process::id());
        let controllers =
            std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        let layout = if ["memory", "pids", "cpu"]
            .iter()
            .all(|c| controllers.split_whitespace().any(|x| x == *c))
        {
            Layout::V2
        } else if root.join("memory/memory.limit_in_bytes").exists() {
            Layout::V1
        } else {
            return None;
        };
        let mut cgroups = Cgroups {
            // v1 freezes through the `freezer` hierarchy, where it is mounted.
            freezer: layout == Layout::V1 && root.join("freezer/tasks").exists(),
            layout,
            root: root.to_owned(),
            parent,
        };
        cgroups.remove_stale();
        match cgroups.layout {
            Layout::V2 => {
                let dir = root.join(&cgroups.parent);
                std::fs::create_dir_all(&dir).ok()?;
                write(&root.join("cgroup.subtree_control"), "+memory +pids +cpu").ok();
                write(&dir.join("cgroup.subtree_control"), "+memory +pids +cpu").ok()?;
                // Every non-root v2 cgroup has cgroup.freeze (Linux 5.2 and later).
                cgroups.freezer = dir.join("cgroup.freeze").exists();
            }
            Layout::V1 => {
                for controller in v1_controllers(false) {
                    std::fs::create_dir_all(root.join(controller).join(&cgroups.parent)).ok()?;
                }
                if cgroups.freezer {
                    cgroups.freezer =
                        std::fs::create_dir_all(root.join("freezer").join(&cgroups.parent)).is_ok();
                }
            }
        }
        Some(cgroups)
    }

    /// Removes the parents left by servers that are gone (killed with SIGKILL).
    fn remove_stale(&self) {
        let hierarchies: Vec<PathBuf> = match self.layout {
            Layout::V2 => vec![self.root.clone()],
            Layout::V1 => v1_controllers(self.freezer)
                .iter()
                .map(|c| self.root.join(c))
                .collect(),
        };
        for hierarchy in hierarchies {
            let Ok(entries) = std::fs::read_dir(&hierarchy) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(pid) = name
                    .strip_prefix("nimbus-")
                    .and_then(|p| p.parse::<u32>().ok())
                else {
                    continue;
                };
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    remove_tree(&entry.path());
                }
            }
        }
    }

    /// Creates the cgroup of instance `id`, limited to `memory_mb`.
    pub fn create(&self, id: &str, memory_mb: u32) -> std::io::Result<InstanceCgroup> {
        let mut dirs = Vec::new();
        let procs;
        let (memory, cpu, freeze);
        match self.layout {
            Layout::V2 => {
                let dir = self.root.join(&self.parent).join(id);
                std::fs::create_dir(&dir)?;
                dirs.push(dir.clone());
                write(&dir.join("pids.max"), &PIDS_MAX.to_string())?;
                procs = vec![dir.join("cgroup.procs")];
                freeze = self.freezer.then(|| dir.join("cgroup.freeze"));
                (memory, cpu) = (dir.clone(), dir);
            }
            Layout::V1 => {
                let dir = |c: &str| self.root.join(c).join(&self.parent).join(id);
                let controllers = v1_controllers(self.freezer);
                for c in controllers {
                    std::fs::create_dir(dir(c))?;
                    dirs.push(dir(c));
                }
                write(&dir("pids").join("pids.max"), &PIDS_MAX.to_string())?;
                procs = controllers
                    .iter()
                    .map(|c| dir(c).join("cgroup.procs"))
                    .collect();
                freeze = self.freezer.then(|| dir("freezer").join("freezer.state"));
                (memory, cpu) = (dir("memory"), dir("cpu"));
            }
        }
        let cgroup = InstanceCgroup {
            layout: self.layout.clone(),
            dirs,
            procs,
            memory,
            cpu,
            freeze,
        };
        if let Err(e) = cgroup.limit(memory_mb) {
            cgroup.remove();
            return Err(e);
        }
        Ok(cgroup)
    }

    /// Removes Nimbus's parent cgroup(s), waiting up to a few seconds for the instances
    /// (killed by now) to exit: a cgroup with processes cannot be removed. Blocks.
    pub fn remove(&self) {
        let parents: Vec<PathBuf> = match self.layout {
            Layout::V2 => vec![self.root.join(&self.parent)],
            Layout::V1 => v1_controllers(self.freezer)
                .iter()
                .map(|c| self.root.join(c).join(&self.parent))
                .collect(),
        };
        for _ in 0..100 {
            for parent in &parents {
                remove_tree(parent);
            }
            if parents.iter().all(|p| !p.exists()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        tracing::warn!(parent = %self.parent, "could not remove the server's cgroups: processes are still in them");
    }
}

/// Removes a cgroup directory and its children (cgroup dirs are removed with rmdir).
fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// A `key N` line's N in a cgroup stats file.
fn stat(path: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|line| {
            let (k, v) = line.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
}

impl InstanceCgroup {
    /// Sets the memory limit to `memory_mb` and the CPU share to match (a cgroup made
    /// ahead of demand learns its function's memory only when it is given work).
    pub fn limit(&self, memory_mb: u32) -> std::io::Result<()> {
        let memory_bytes = (u64::from(memory_mb) * 1024 * 1024).to_string();
        let cpu = (u64::from(memory_mb) * 1024 / MB_PER_VCPU).max(2);
        match self.layout {
            Layout::V2 => {
                write(&self.memory.join("memory.max"), &memory_bytes)?;
                write(&self.memory.join("memory.swap.max"), "0").ok();
                // cpu.weight is 1–10000 with 100 the default for one share.
                write(
                    &self.cpu.join("cpu.weight"),
                    &(cpu * 100 / 1024).clamp(1, 10_000).to_string(),
                )
            }
            Layout::V1 => {
                // With swap accounting, memory+swap must be raised first and lowered last.
                let memsw = self.memory.join("memory.memsw.limit_in_bytes");
                write(&memsw, &memory_bytes).ok();
                write(&self.memory.join("memory.limit_in_bytes"), &memory_bytes)?;
                write(&memsw, &memory_bytes).ok();
                write(&self.cpu.join("cpu.shares"), &cpu.to_string())
            }
        }
    }

    /// Whether the whole cgroup can be frozen (else only signals stop its processes).
    pub fn can_freeze(&self) -> bool {
        self.freeze.is_some()
    }

    /// Freezes (`true`) or thaws every process in the cgroup, wherever its process group
    /// or session. Fails when the host has no freezer for it (see [`Self::can_freeze`]).
    pub fn set_frozen(&self, frozen: bool) -> std::io::Result<()> {
        let Some(file) = &self.freeze else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "no cgroup freezer on this host",
            ));
        };
        let value = match (&self.layout, frozen) {
            (Layout::V2, true) => "1",
            (Layout::V2, false) => "0",
            (Layout::V1, true) => "FROZEN",
            (Layout::V1, false) => "THAWED",
        };
        write(file, value)
    }

    /// Whether the kernel killed something in it for running out of memory.
    pub fn oom_killed(&self) -> bool {
        let count = match self.layout {
            Layout::V2 => stat(&self.memory.join("memory.events"), "oom_kill"),
            Layout::V1 => stat(&self.memory.join("memory.oom_control"), "oom_kill"),
        };
        count.unwrap_or(0) > 0
    }

    /// Peak memory use, bytes, where the kernel reports it.
    pub fn max_memory_bytes(&self) -> Option<u64> {
        let file = match self.layout {
            Layout::V2 => "memory.peak",
            Layout::V1 => "memory.max_usage_in_bytes",
        };
        std::fs::read_to_string(self.memory.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Removes the cgroup once its processes are gone; retries briefly while they exit.
    pub fn remove(&self) {
        for _ in 0..50 {
            let mut all = true;
            for dir in &self.dirs {
                if dir.exists() && std::fs::remove_dir(dir).is_err() {
                    all = false;
                }
            }
            if all {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory standing in for a cgroup mount: plain files take the writes.
    fn fake_root(name: &str) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("nimbus-cgroup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("fake root");
        root
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path)
            .expect("read")
            .trim()
            .to_owned()
    }

    #[test]
    fn v2_limits_memory_pids_and_cpu_weight_in_one_directory() {
        let root = fake_root("v2");
        std::fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .expect("w");
        let cgroups = Cgroups::detect_at(&root).expect("a v2 layout");
        assert_eq!(cgroups.layout, Layout::V2);
        let parent = root.join(format!("nimbus-{}", std::process::id()));
        assert_eq!(
            read(&parent.join("cgroup.subtree_control")),
            "+memory +pids +cpu"
        );
        let cgroup = cgroups.create("i1", 128).expect("create");
        let dir = parent.join("i1");
        assert_eq!(read(&dir.join("memory.max")), (128u64 << 20).to_string());
        assert_eq!(read(&dir.join("pids.max")), "1024");
        assert_eq!(
            read(&dir.join("cpu.weight")),
            "7",
            "128 MB is 7% of a vCPU's weight"
        );
        assert_eq!(cgroup.procs, vec![dir.join("cgroup.procs")]);
        // A shell made ahead learns its function's memory later: 1769 MB is one vCPU.
        cgroup.limit(1769).expect("limit");
        assert_eq!(read(&dir.join("memory.max")), (1769u64 << 20).to_string());
        assert_eq!(read(&dir.join("cpu.weight")), "100");
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .expect("w");
        std::fs::write(dir.join("memory.peak"), "52428800\n").expect("w");
        assert!(cgroup.oom_killed());
        assert_eq!(cgroup.max_memory_bytes(), Some(52_428_800));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn v1_limits_each_controller_in_its_own_hierarchy() {
        let root = fake_root("v1");
        for controller in ["memory", "pids", "cpu"] {
            std::fs::create_dir_all(root.join(controller)).expect("dir");
        }
        std::fs::write(root.join("memory/memory.limit_in_bytes"), "max").expect("w");
        let cgroups = Cgroups::detect_at(&root).expect("a v1 layout");
        assert_eq!(cgroups.layout, Layout::V1);
        let cgroup = cgroups.create("i1", 512).expect("create");
        let dir = |c: &str| {
            root.join(c)
                .join(format!("nimbus-{}", std::process::id()))
                .join("i1")
        };
        assert_eq!(
            read(&dir("memory").join("memory.limit_in_bytes")),
            (512u64 << 20).to_string()
        );
        assert_eq!(read(&dir("pids").join("pids.max")), "1024");
        assert_eq!(
            read(&dir("cpu").join("cpu.shares")),
            "296",
            "512/1769 of 1024 shares"
        );
        assert_eq!(cgroup.procs.len(), 3, "one cgroup.procs per hierarchy");
        assert!(
            !cgroups.freezer && !cgroup.can_freeze(),
            "no freezer hierarchy here"
        );
        assert!(cgroup.set_frozen(true).is_err());
        std::fs::write(
            dir("memory").join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        )
        .expect("w");
        assert!(!cgroup.oom_killed());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn v1_freezes_through_the_freezer_hierarchy() {
        let root = fake_root("v1-freezer");
        for controller in ["memory", "pids", "cpu", "freezer"] {
            std::fs::create_dir_all(root.join(controller)).expect("dir");
        }
        std::fs::write(root.join("memory/memory.limit_in_bytes"), "max").expect("w");
        std::fs::write(root.join("freezer/tasks"), "").expect("w");
        let cgroups = Cgroups::detect_at(&root).expect("a v1 layout");
        assert!(cgroups.freezer);
        let cgroup = cgroups.create("i1", 128).expect("create");
        let dir = root
            .join("freezer")
            .join(format!("nimbus-{}", std::process::id()))
            .join("i1");
        assert_eq!(cgroup.procs.len(), 4, "the freezer hierarchy is joined too");
        assert!(cgroup.procs.contains(&dir.join("cgroup.procs")));
        cgroup.set_frozen(true).expect("freeze");
        assert_eq!(read(&dir.join("freezer.state")), "FROZEN");
        cgroup.set_frozen(false).expect("thaw");
        assert_eq!(read(&dir.join("freezer.state")), "THAWED");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn v2_freezes_through_cgroup_freeze() {
        let root = fake_root("v2-freeze");
        std::fs::write(root.join("cgroup.controllers"), "cpu memory pids\n").expect("w");
        let parent = root.join(format!("nimbus-{}", std::process::id()));
        std::fs::create_dir_all(&parent).expect("dir");
        std::fs::write(parent.join("cgroup.freeze"), "0\n").expect("w");
        let cgroups = Cgroups::detect_at(&root).expect("a v2 layout");
        assert!(cgroups.freezer);
        let cgroup = cgroups.create("i1", 128).expect("create");
        cgroup.set_frozen(true).expect("freeze");
        assert_eq!(read(&parent.join("i1/cgroup.freeze")), "1");
        cgroup.set_frozen(false).expect("thaw");
        assert_eq!(read(&parent.join("i1/cgroup.freeze")), "0");
        let _ = std::fs::remove_dir_all(&root);
    }
}
