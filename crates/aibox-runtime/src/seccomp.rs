//! The seccomp allowlist applied to every sandbox (the agent and every
//! command it starts).
//!
//! Threat: a process inside the sandbox uses a kernel interface that is not
//! namespaced, or that has a history of privilege-escalation bugs, to reach
//! the host. The filter is an *allowlist* modelled on Docker's default
//! profile: anything not listed fails with EPERM. The families we block on
//! purpose are in [`BLOCKED`], each with the reason. `clone3` answers ENOSYS
//! so libc falls back to `clone`, whose flags we *can* inspect.
//!
//! Architecture: x86_64 and aarch64 syscall numbers come from `libc`.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("failed to build the seccomp filter")]
    Build(#[source] seccompiler::Error),
    #[error("failed to build the seccomp filter")]
    Backend(#[source] seccompiler::BackendError),
    #[error("failed to install the seccomp filter")]
    Install(#[source] seccompiler::Error),
}

macro_rules! calls {
    ($($name:ident),* $(,)?) => { &[$((stringify!($name), libc::$name)),*] };
}

/// Syscalls allowed without conditions.
#[rustfmt::skip]
const ALLOWED: &[(&str, libc::c_long)] = calls![
    SYS_read, SYS_write, SYS_close, SYS_fstat, SYS_lseek, SYS_mmap, SYS_mprotect, SYS_munmap,
    SYS_brk, SYS_rt_sigaction, SYS_rt_sigprocmask, SYS_rt_sigreturn, SYS_pread64, SYS_pwrite64,
    SYS_readv, SYS_writev, SYS_sched_yield, SYS_mremap, SYS_msync, SYS_mincore, SYS_madvise,
    SYS_shmget, SYS_shmat, SYS_shmctl, SYS_dup, SYS_dup3, SYS_nanosleep, SYS_getitimer,
    SYS_setitimer, SYS_getpid, SYS_sendfile, SYS_connect, SYS_accept, SYS_accept4, SYS_sendto,
    SYS_recvfrom, SYS_sendmsg, SYS_recvmsg, SYS_sendmmsg, SYS_recvmmsg, SYS_shutdown, SYS_bind,
    SYS_listen, SYS_getsockname, SYS_getpeername, SYS_socketpair, SYS_setsockopt, SYS_getsockopt,
    SYS_execve, SYS_execveat, SYS_exit, SYS_exit_group, SYS_wait4, SYS_waitid, SYS_kill,
    SYS_tkill, SYS_tgkill, SYS_uname, SYS_semget, SYS_semop, SYS_semtimedop, SYS_semctl,
    SYS_shmdt, SYS_msgget, SYS_msgsnd, SYS_msgrcv, SYS_msgctl, SYS_fcntl, SYS_flock, SYS_fsync,
    SYS_fdatasync, SYS_truncate, SYS_ftruncate, SYS_getcwd, SYS_chdir, SYS_fchdir, SYS_fchmod,
    SYS_fchown, SYS_umask, SYS_gettimeofday, SYS_getrlimit, SYS_setrlimit, SYS_prlimit64,
    SYS_getrusage, SYS_sysinfo, SYS_times, SYS_getuid, SYS_getgid, SYS_geteuid, SYS_getegid,
    SYS_setuid, SYS_setgid, SYS_setpgid, SYS_getppid, SYS_setsid, SYS_setreuid, SYS_setregid,
    SYS_getgroups, SYS_setgroups, SYS_setresuid, SYS_getresuid, SYS_setresgid, SYS_getresgid,
    SYS_getpgid, SYS_setfsuid, SYS_setfsgid, SYS_getsid, SYS_capget, SYS_capset,
    SYS_rt_sigpending, SYS_rt_sigtimedwait, SYS_rt_sigqueueinfo, SYS_rt_tgsigqueueinfo,
    SYS_rt_sigsuspend, SYS_sigaltstack, SYS_statfs, SYS_fstatfs, SYS_getpriority,
    SYS_setpriority, SYS_sched_setparam, SYS_sched_getparam, SYS_sched_setscheduler,
    SYS_sched_getscheduler, SYS_sched_get_priority_max, SYS_sched_get_priority_min,
    SYS_sched_rr_get_interval, SYS_sched_setaffinity, SYS_sched_getaffinity, SYS_sched_setattr,
    SYS_sched_getattr, SYS_mlock, SYS_mlock2, SYS_munlock, SYS_mlockall, SYS_munlockall,
    SYS_prctl, SYS_gettid, SYS_readahead, SYS_setxattr, SYS_lsetxattr, SYS_fsetxattr,
    SYS_getxattr, SYS_lgetxattr, SYS_fgetxattr, SYS_listxattr, SYS_llistxattr, SYS_flistxattr,
    SYS_removexattr, SYS_lremovexattr, SYS_fremovexattr, SYS_futex, SYS_futex_waitv,
    SYS_set_robust_list, SYS_get_robust_list, SYS_io_setup, SYS_io_destroy, SYS_io_getevents,
    SYS_io_submit, SYS_io_cancel, SYS_getdents64, SYS_set_tid_address,
    SYS_restart_syscall, SYS_fadvise64, SYS_timer_create, SYS_timer_settime, SYS_timer_gettime,
    SYS_timer_getoverrun, SYS_timer_delete, SYS_clock_gettime, SYS_clock_getres,
    SYS_clock_nanosleep, SYS_epoll_ctl, SYS_epoll_pwait, SYS_epoll_pwait2, SYS_epoll_create1,
    SYS_mbind, SYS_set_mempolicy, SYS_get_mempolicy, SYS_mq_open, SYS_mq_unlink,
    SYS_mq_timedsend, SYS_mq_timedreceive, SYS_mq_notify, SYS_mq_getsetattr, SYS_ioprio_set,
    SYS_ioprio_get, SYS_inotify_add_watch, SYS_inotify_rm_watch, SYS_inotify_init1, SYS_openat,
    SYS_openat2, SYS_mkdirat, SYS_mknodat, SYS_fchownat, SYS_newfstatat, SYS_unlinkat,
    SYS_renameat, SYS_renameat2, SYS_linkat, SYS_symlinkat, SYS_readlinkat, SYS_fchmodat,
    SYS_fchmodat2, SYS_faccessat, SYS_faccessat2, SYS_pselect6, SYS_ppoll, SYS_splice, SYS_tee,
    SYS_sync, SYS_syncfs, SYS_sync_file_range, SYS_vmsplice, SYS_utimensat, SYS_signalfd4,
    SYS_timerfd_create, SYS_timerfd_settime, SYS_timerfd_gettime, SYS_eventfd2, SYS_fallocate,
    SYS_pipe2, SYS_preadv, SYS_pwritev, SYS_preadv2, SYS_pwritev2, SYS_getcpu, SYS_getrandom,
    SYS_memfd_create, SYS_membarrier, SYS_copy_file_range, SYS_statx, SYS_rseq,
    SYS_pidfd_open, SYS_pidfd_send_signal, SYS_close_range, SYS_pkey_mprotect, SYS_pkey_alloc,
    SYS_pkey_free, SYS_seccomp, SYS_landlock_create_ruleset, SYS_landlock_add_rule,
    SYS_landlock_restrict_self, SYS_process_madvise,
];

/// Legacy x86_64 entry points that newer architectures replaced with *at variants.
#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
const ALLOWED_LEGACY: &[(&str, libc::c_long)] = calls![
    SYS_open, SYS_stat, SYS_lstat, SYS_poll, SYS_access, SYS_pipe, SYS_select, SYS_dup2,
    SYS_pause, SYS_alarm, SYS_fork, SYS_vfork, SYS_getdents, SYS_rename, SYS_mkdir, SYS_rmdir,
    SYS_creat, SYS_link, SYS_unlink, SYS_symlink, SYS_readlink, SYS_chmod, SYS_chown,
    SYS_lchown, SYS_utime, SYS_utimes, SYS_mknod, SYS_ustat, SYS_arch_prctl, SYS_time,
    SYS_epoll_create, SYS_epoll_wait, SYS_inotify_init, SYS_signalfd, SYS_eventfd,
    SYS_futimesat, SYS_getpgrp, SYS_set_thread_area, SYS_get_thread_area,
];
#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_LEGACY: &[(&str, libc::c_long)] = &[];

/// Families blocked on purpose, with why. Everything else not in the
/// allowlist is blocked too; these are the ones a reviewer should know about.
pub const BLOCKED: &[(&str, &str)] = &[
    ("init_module finit_module delete_module", "loading kernel code is a direct host compromise"),
    ("kexec_load kexec_file_load reboot", "replacing or rebooting the host kernel"),
    ("bpf", "eBPF verifier bugs are a recurring privilege-escalation path; not namespaced"),
    ("perf_event_open", "leaks kernel addresses and has a long CVE history; not namespaced"),
    ("add_key request_key keyctl", "kernel keyrings are not namespaced: keys of other users and containers"),
    ("mount umount2 pivot_root chroot fsopen fsconfig fsmount fspick move_mount open_tree mount_setattr", "mount table changes could uncover masked paths"),
    ("unshare setns clone(CLONE_NEW*) clone3", "new namespaces expose more kernel attack surface (user namespaces especially)"),
    ("ptrace process_vm_readv process_vm_writev kcmp pidfd_getfd", "inspecting or stealing from other processes"),
    ("io_uring_setup io_uring_enter io_uring_register", "io_uring bypasses syscall filtering and has many CVEs"),
    ("open_by_handle_at name_to_handle_at", "file handles can reach files outside the root (the 'shocker' escape)"),
    ("userfaultfd", "lets an attacker stall the kernel at chosen points to win races"),
    ("swapon swapoff acct quotactl quotactl_fd syslog vhangup", "host-global administration"),
    ("settimeofday clock_settime clock_adjtime adjtimex", "the clock is not namespaced"),
    ("iopl ioperm modify_ldt", "raw hardware I/O and legacy descriptor tables"),
    ("sethostname setdomainname", "the sandbox's identity is set by aibox"),
    ("move_pages migrate_pages", "touching the memory placement of other processes"),
    ("socket(AF_PACKET, AF_VSOCK, AF_ALG, ...)", "only unix, inet, inet6 and netlink sockets are allowed"),
    ("ioctl(TIOCSTI, TIOCLINUX)", "injecting keystrokes into a terminal the sandbox shares"),
    ("personality(other than Linux defaults)", "disabling ASLR and other exploitation aids"),
];

/// Namespace flags refused in `clone`.
const CLONE_NS_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP) as u64;

const TIOCSTI: u64 = 0x5412;
const TIOCLINUX: u64 = 0x541C;

fn arch() -> TargetArch {
    #[cfg(target_arch = "aarch64")]
    {
        TargetArch::aarch64
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        TargetArch::x86_64
    }
}

fn cond(
    arg: u8,
    len: SeccompCmpArgLen,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompCondition, SeccompError> {
    SeccompCondition::new(arg, len, op, value).map_err(SeccompError::Backend)
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, SeccompError> {
    SeccompRule::new(conds).map_err(SeccompError::Backend)
}

/// Number of syscalls the allowlist admits (unconditionally or with argument checks).
pub fn allowed_count() -> usize {
    ALLOWED.len() + ALLOWED_LEGACY.len() + 4
}

/// The main allowlist program.
fn allowlist() -> Result<BpfProgram, SeccompError> {
    use SeccompCmpArgLen::{Dword, Qword};
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, nr) in ALLOWED.iter().chain(ALLOWED_LEGACY) {
        rules.insert(*nr, vec![]);
    }
    // clone: threads and processes yes, new namespaces no.
    rules.insert(
        libc::SYS_clone,
        vec![rule(vec![cond(
            0,
            Qword,
            SeccompCmpOp::MaskedEq(CLONE_NS_FLAGS),
            0,
        )?])?],
    );
    // socket: unix, inet, inet6, netlink.
    let families = [
        libc::AF_UNIX,
        libc::AF_INET,
        libc::AF_INET6,
        libc::AF_NETLINK,
    ];
    rules.insert(
        libc::SYS_socket,
        families
            .iter()
            .map(|f| rule(vec![cond(0, Dword, SeccompCmpOp::Eq, *f as u64)?]))
            .collect::<Result<_, _>>()?,
    );
    // ioctl: everything but terminal injection.
    rules.insert(
        libc::SYS_ioctl,
        vec![rule(vec![
            cond(1, Dword, SeccompCmpOp::Ne, TIOCSTI)?,
            cond(1, Dword, SeccompCmpOp::Ne, TIOCLINUX)?,
        ])?],
    );
    // personality: query and the standard Linux personas only.
    rules.insert(
        libc::SYS_personality,
        [0u64, 0x8, 0x20000, 0x20008, 0xffff_ffff]
            .iter()
            .map(|p| rule(vec![cond(0, Dword, SeccompCmpOp::Eq, *p)?]))
            .collect::<Result<_, _>>()?,
    );
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch(),
    )
    .map_err(SeccompError::Backend)?;
    filter.try_into().map_err(SeccompError::Backend)
}

/// A second, tiny filter: clone3 → ENOSYS (its flags live in memory that
/// seccomp cannot inspect; libc then falls back to clone). Installed after
/// the allowlist so its ERRNO value wins for clone3.
fn clone3_enosys() -> Result<BpfProgram, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    rules.insert(libc::SYS_clone3, vec![]);
    SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch(),
    )
    .map_err(SeccompError::Backend)?
    .try_into()
    .map_err(SeccompError::Backend)
}

/// Build both programs (cheap; done before any irreversible step).
pub(crate) fn programs() -> Result<[BpfProgram; 2], SeccompError> {
    Ok([allowlist()?, clone3_enosys()?])
}

/// Install on the calling thread. no_new_privs must already be set.
pub(crate) fn install(progs: &[BpfProgram; 2]) -> Result<(), SeccompError> {
    for p in progs {
        seccompiler::apply_filter(p).map_err(SeccompError::Install)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_families_are_not_allowlisted() {
        let allowed: Vec<&str> = ALLOWED
            .iter()
            .chain(ALLOWED_LEGACY)
            .map(|(n, _)| n.trim_start_matches("SYS_"))
            .collect();
        for (family, why) in BLOCKED {
            assert!(!why.is_empty());
            for name in family.split_whitespace() {
                let bare = name.split('(').next().unwrap_or(name);
                assert!(
                    !allowed.contains(&bare),
                    "{bare} is both blocked and allowed"
                );
            }
        }
        for must_block in [
            "ptrace",
            "bpf",
            "mount",
            "unshare",
            "setns",
            "keyctl",
            "io_uring_setup",
            "open_by_handle_at",
            "userfaultfd",
            "perf_event_open",
            "init_module",
            "kexec_load",
        ] {
            assert!(!allowed.contains(&must_block), "{must_block}");
        }
    }

    #[test]
    fn no_duplicates_in_allowlist() {
        let mut nrs: Vec<_> = ALLOWED
            .iter()
            .chain(ALLOWED_LEGACY)
            .map(|(_, n)| *n)
            .collect();
        let before = nrs.len();
        nrs.sort();
        nrs.dedup();
        assert_eq!(nrs.len(), before);
    }

    #[test]
    fn programs_build_within_kernel_limits() {
        let [a, b] = programs().unwrap();
        assert!(a.len() < 4096 && !b.is_empty());
    }

    /// Install in a forked child and check exact errnos (style rule: seccomp
    /// tests run in a child so the test process is untouched).
    #[test]
    fn filter_blocks_with_exact_errno_in_child() {
        let progs = programs().unwrap();
        match aibox_sys::fork().unwrap() {
            aibox_sys::Fork::Child => {
                let ok = (|| -> Option<()> {
                    aibox_sys::set_no_new_privs().ok()?;
                    install(&progs).ok()?;
                    // unshare is not in the list → EPERM.
                    let e = aibox_sys::unshare(libc::CLONE_NEWUTS).err()?;
                    (e.raw_os_error() == Some(libc::EPERM)).then_some(())?;
                    // Ordinary calls still work.
                    std::fs::read_to_string("/proc/self/status").ok()?;
                    Some(())
                })();
                aibox_sys::exit_now(if ok.is_some() { 0 } else { 1 })
            }
            aibox_sys::Fork::Parent(pid) => {
                assert_eq!(
                    aibox_sys::waitpid(pid).unwrap(),
                    aibox_sys::WaitStatus::Exited(0)
                );
            }
        }
    }
}
