//! The seccomp filter every instance runs under: the system calls a function never needs —
//! mounting, loading kernel code, tracing other processes, joining namespaces, setting the
//! clock — fail with EPERM; everything else is allowed.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// The denied system calls.
const DENIED: &[i64] = &[
    libc_sys::SYS_mount,
    libc_sys::SYS_umount2,
    libc_sys::SYS_pivot_root,
    libc_sys::SYS_swapon,
    libc_sys::SYS_swapoff,
    libc_sys::SYS_reboot,
    libc_sys::SYS_kexec_load,
    libc_sys::SYS_kexec_file_load,
    libc_sys::SYS_init_module,
    libc_sys::SYS_finit_module,
    libc_sys::SYS_delete_module,
    libc_sys::SYS_ptrace,
    libc_sys::SYS_process_vm_readv,
    libc_sys::SYS_process_vm_writev,
    libc_sys::SYS_bpf,
    libc_sys::SYS_perf_event_open,
    libc_sys::SYS_keyctl,
    libc_sys::SYS_add_key,
    libc_sys::SYS_request_key,
    libc_sys::SYS_setns,
    libc_sys::SYS_unshare,
    libc_sys::SYS_acct,
    libc_sys::SYS_settimeofday,
    libc_sys::SYS_clock_settime,
    libc_sys::SYS_adjtimex,
    libc_sys::SYS_quotactl,
    libc_sys::SYS_open_by_handle_at,
    libc_sys::SYS_name_to_handle_at,
    libc_sys::SYS_syslog,
    libc_sys::SYS_userfaultfd,
];

use nix::libc as libc_sys;

/// The compiled filter, built once (before any fork: the child must not allocate).
/// `None` if this architecture has no filter.
pub(crate) fn filter() -> Option<&'static BpfProgram> {
    static FILTER: OnceLock<Option<BpfProgram>> = OnceLock::new();
    FILTER
        .get_or_init(|| {
            let arch = TargetArch::try_from(std::env::consts::ARCH).ok()?;
            let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
                DENIED.iter().map(|call| (*call, Vec::new())).collect();
            let filter = SeccompFilter::new(
                rules,
                SeccompAction::Allow,
                SeccompAction::Errno(libc_sys::EPERM as u32),
                arch,
            )
            .ok()?;
            BpfProgram::try_from(filter).ok()
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_filter_compiles_for_this_machine() {
        let program = super::filter().expect("a filter for this architecture");
        assert!(program.len() > super::DENIED.len());
    }
}
