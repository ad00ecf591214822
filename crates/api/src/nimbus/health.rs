//! `/nimbus/v1/health`'s report of what the sandbox does on this host.

use serde::Serialize;

/// The body of `/nimbus/v1/health`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Health {
    /// Always `ok`: a server that answers is up.
    pub status: &'static str,
    /// What the sandbox does here.
    pub isolation: Isolation,
}

/// Which isolation features instances get on this host (and whether the API checks
/// signatures), as `/nimbus/v1/health` reports them under `isolation`. Each field is `true`
/// when the feature is on; the names are the JSON keys clients read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Isolation {
    /// Instances have a PID namespace of their own.
    pub pid_namespace: bool,
    /// … a mount namespace of their own.
    pub mount_namespace: bool,
    /// … an IPC namespace of their own.
    pub ipc_namespace: bool,
    /// … a UTS namespace of their own.
    pub uts_namespace: bool,
    /// … a network namespace with only loopback (`--instance-network none`, a choice).
    pub network_namespace: bool,
    /// … a root view of their own (system directories, their code, the runtime).
    pub root_view: bool,
    /// … a private `/tmp`.
    pub private_tmp: bool,
    /// … `/tmp` on a disk of its own (ext4 on a loop device), not memory.
    pub tmp_on_disk: bool,
    /// Their code is read-only to them.
    pub read_only_code: bool,
    /// They run as an unprivileged user of their own.
    pub unprivileged_user: bool,
    /// With every capability dropped.
    pub capabilities_dropped: bool,
    /// The cgroup layout their limits are set in; `None` (JSON `null`) without cgroups.
    pub cgroups: Option<CgroupVersion>,
    /// Their memory is limited to the function's MemorySize.
    pub memory_limit: bool,
    /// Their process count is limited.
    pub pids_limit: bool,
    /// Their CPU share follows their memory.
    pub cpu_share: bool,
    /// Idle instances are frozen whole (every process of their cgroup), not by signals to
    /// their process group, which a process that calls setsid() escapes.
    pub cgroup_freezer: bool,
    /// A seccomp filter refuses mount, module, ptrace, namespace and clock calls.
    pub seccomp: bool,
    /// rlimits are set (open files, no core dumps).
    pub rlimits: bool,
    /// no_new_privs is set.
    pub no_new_privs: bool,
    /// Their environment is built from scratch.
    pub clean_environment: bool,
    /// API requests must be SigV4-signed (a choice, not the host's).
    pub api_authentication: bool,
}

/// A cgroup hierarchy's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// cgroup v1: one hierarchy per controller.
    V1,
    /// cgroup v2: the unified hierarchy.
    V2,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_keeps_the_json_names_clients_read() {
        let report = Isolation {
            pid_namespace: true,
            mount_namespace: true,
            ipc_namespace: true,
            uts_namespace: true,
            network_namespace: false,
            root_view: true,
            private_tmp: true,
            tmp_on_disk: false,
            read_only_code: true,
            unprivileged_user: true,
            capabilities_dropped: true,
            cgroups: Some(CgroupVersion::V2),
            memory_limit: true,
            pids_limit: true,
            cpu_share: true,
            cgroup_freezer: true,
            seccomp: true,
            rlimits: true,
            no_new_privs: true,
            clean_environment: true,
            api_authentication: false,
        };
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["cgroups"], "v2");
        assert_eq!(json["tmp_on_disk"], false);
        let keys: Vec<&str> = json
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 21, "{keys:?}");
        let none = Isolation {
            cgroups: None,
            ..report
        };
        assert!(serde_json::to_value(&none).expect("json")["cgroups"].is_null());
    }
}
