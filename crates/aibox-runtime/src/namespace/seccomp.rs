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
//! The BPF program is generated here as a binary search over syscall-number
//! intervals (about 2·log2(n) instructions per decision), so the kernel's
//! per-syscall action cache is cheap to build at install time; seccompiler
//! only installs it.
//!
//! Architecture: x86_64 and aarch64 syscall numbers come from `libc`.

use seccompiler::sock_filter;
pub use seccompiler::BpfProgram;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
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
    SYS_listen, SYS_getsockname, SYS_getpeername, SYS_setsockopt, SYS_getsockopt,
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
    SYS_syncfs, SYS_sync_file_range, SYS_vmsplice, SYS_utimensat, SYS_signalfd4,
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
    ("socketpair(anything but AF_UNIX)", "a pair of another family (TIPC) works, and any family's create() autoloads its module"),
    ("socket(AF_INET*, SOCK_SEQPACKET or a protocol other than IP/TCP/UDP/ICMP)", "SCTP, DCCP, L2TP, MPTCP and friends: rarely used stacks, autoloaded on demand"),
    ("ioctl(TIOCSTI, TIOCLINUX, TIOCSETD)", "injecting keystrokes into a terminal the sandbox shares; loading line disciplines (n_gsm, n_hdlc)"),
    ("sync (answers 0, does nothing)", "host-wide writeback on demand; syncfs and fsync stay"),
    ("personality(other than Linux defaults)", "disabling ASLR and other exploitation aids"),
];

/// Namespace flags refused in `clone`.
const CLONE_NS_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP) as u32;

const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541C;
const TIOCSETD: u32 = 0x5423;
/// `socket(2)`'s type argument without SOCK_NONBLOCK and SOCK_CLOEXEC.
const SOCK_TYPE_MASK: u32 = 0xf;
/// Internet protocols a sandbox may open: the default for the type, ICMP
/// (ping sockets), TCP, UDP, ICMPv6.
const INET_PROTOCOLS: [u32; 5] = [0, 1, 6, 17, 58];
/// Internet socket types: stream, datagram, raw (raw needs CAP_NET_RAW,
/// which no sandbox process has).
const INET_TYPES: [u32; 3] = [1, 2, 3];

#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
#[cfg(not(target_arch = "aarch64"))]
const AUDIT_ARCH: u32 = 0xC000_003E;

// Classic BPF opcodes and seccomp return values (linux/filter.h, seccomp.h).
const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGE_K: u16 = 0x35;
const JMP_JSET_K: u16 = 0x45;
const ALU_AND_K: u16 = 0x54;
const RET_K: u16 = 0x06;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const fn ret_errno(e: i32) -> u32 {
    0x0005_0000 | (e as u32 & 0xffff)
}
// Offsets in struct seccomp_data: nr, arch, then args[i] (u64, little endian).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_lo(i: u32) -> u32 {
    16 + 8 * i
}

/// What the filter decides for one syscall number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Allow,
    Deny,
    Enosys,
    /// Allowed after an argument check (index into the special blocks).
    Check(usize),
}

fn ins(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// Syscalls with an argument check: (nr, block). Each block starts with A
/// undefined and must end in a return.
fn checks() -> Vec<(i64, Vec<sock_filter>)> {
    let allow = || ins(RET_K, RET_ALLOW, 0, 0);
    let deny = || ins(RET_K, ret_errno(libc::EPERM), 0, 0);
    let mut v = Vec::new();
    // clone: threads and processes yes, new namespaces no.
    v.push((
        libc::SYS_clone,
        vec![
            ins(LD_W_ABS, off_arg_lo(0), 0, 0),
            ins(JMP_JSET_K, CLONE_NS_FLAGS, 0, 1),
            deny(),
            allow(),
        ],
    ));
    // socket: unix and netlink as they are; inet and inet6 only with a
    // common type and protocol; any other family looks unsupported.
    let unsupported = |e: i32| ins(RET_K, ret_errno(e), 0, 0);
    let mut b = vec![
        ins(LD_W_ABS, off_arg_lo(0), 0, 0),
        ins(JMP_JEQ_K, libc::AF_UNIX as u32, 0, 1),
        allow(),
        ins(JMP_JEQ_K, libc::AF_NETLINK as u32, 0, 1),
        allow(),
        ins(JMP_JEQ_K, libc::AF_INET as u32, 2, 0),
        ins(JMP_JEQ_K, libc::AF_INET6 as u32, 1, 0),
        unsupported(libc::EAFNOSUPPORT),
        // The type, without its flags.
        ins(LD_W_ABS, off_arg_lo(1), 0, 0),
        ins(ALU_AND_K, SOCK_TYPE_MASK, 0, 0),
    ];
    let n = INET_TYPES.len();
    for (i, t) in INET_TYPES.iter().enumerate() {
        b.push(ins(JMP_JEQ_K, *t, (n - i) as u8, 0));
    }
    b.push(unsupported(libc::ESOCKTNOSUPPORT));
    b.push(ins(LD_W_ABS, off_arg_lo(2), 0, 0));
    let n = INET_PROTOCOLS.len();
    for (i, p) in INET_PROTOCOLS.iter().enumerate() {
        b.push(ins(JMP_JEQ_K, *p, (n - i) as u8, 0));
    }
    b.push(unsupported(libc::EPROTONOSUPPORT));
    b.push(allow());
    v.push((libc::SYS_socket, b));
    // socketpair: unix only (the one family whose pairs are common).
    v.push((
        libc::SYS_socketpair,
        vec![
            ins(LD_W_ABS, off_arg_lo(0), 0, 0),
            ins(JMP_JEQ_K, libc::AF_UNIX as u32, 1, 0),
            unsupported(libc::EAFNOSUPPORT),
            allow(),
        ],
    ));
    // ioctl: everything but terminal injection and line disciplines.
    v.push((
        libc::SYS_ioctl,
        vec![
            ins(LD_W_ABS, off_arg_lo(1), 0, 0),
            ins(JMP_JEQ_K, TIOCSTI, 2, 0),
            ins(JMP_JEQ_K, TIOCLINUX, 1, 0),
            ins(JMP_JEQ_K, TIOCSETD, 0, 1),
            deny(),
            allow(),
        ],
    ));
    // sync: succeeds without flushing every filesystem of the host.
    v.push((libc::SYS_sync, vec![ins(RET_K, ret_errno(0), 0, 0)]));
    // personality: query and the standard Linux personas only.
    let pers = [0u32, 0x8, 0x20000, 0x20008, 0xffff_ffff];
    let mut b = vec![ins(LD_W_ABS, off_arg_lo(0), 0, 0)];
    for (i, p) in pers.iter().enumerate() {
        b.push(ins(JMP_JEQ_K, *p, (pers.len() - i) as u8, 0));
    }
    b.push(deny());
    b.push(allow());
    v.push((libc::SYS_personality, b));
    v
}

/// Number of syscalls the allowlist admits (unconditionally or with argument checks).
pub fn allowed_count() -> usize {
    ALLOWED.len() + ALLOWED_LEGACY.len() + checks().len()
}

/// Sorted, merged intervals [lo, hi) of syscall numbers with one action,
/// covering 0..=u32::MAX (x32 and unknown numbers fall in the Deny tail).
fn intervals(decisions: &[(u32, Action)]) -> Vec<(u32, Action)> {
    let mut sorted = decisions.to_vec();
    sorted.sort_by_key(|d| d.0);
    let mut out: Vec<(u32, Action)> = Vec::new();
    let push = |lo: u32, a: Action, out: &mut Vec<(u32, Action)>| {
        if out.last().map(|l| l.1) != Some(a) {
            out.push((lo, a));
        }
    };
    let mut next = 0u32;
    for (nr, a) in sorted {
        if nr > next {
            push(next, Action::Deny, &mut out);
        }
        push(nr, a, &mut out);
        next = nr + 1;
    }
    push(next, Action::Deny, &mut out);
    out
}

/// A binary search over interval starts. Leaves are returns, or jumps to
/// check blocks (patched later: `Check` leaves are emitted as JA with the
/// block index in k).
fn tree(iv: &[(u32, Action)]) -> Vec<sock_filter> {
    if iv.len() == 1 {
        return vec![match iv[0].1 {
            Action::Allow => ins(RET_K, RET_ALLOW, 0, 0),
            Action::Deny => ins(RET_K, ret_errno(libc::EPERM), 0, 0),
            Action::Enosys => ins(RET_K, ret_errno(libc::ENOSYS), 0, 0),
            Action::Check(i) => ins(JMP_JA, i as u32, 0xff, 0xff),
        }];
    }
    let mid = iv.len() / 2;
    let left = tree(&iv[..mid]);
    let right = tree(&iv[mid..]);
    let mut v = Vec::with_capacity(1 + left.len() + right.len());
    // Offsets are u8: a tree over a few hundred syscalls stays far below 255
    // instructions per left subtree (asserted in tests).
    v.push(ins(JMP_JGE_K, iv[mid].0, left.len().min(255) as u8, 0));
    v.extend(left);
    v.extend(right);
    v
}

/// The whole program.
pub fn program() -> BpfProgram {
    let checks = checks();
    let mut decisions: Vec<(u32, Action)> = ALLOWED
        .iter()
        .chain(ALLOWED_LEGACY)
        .map(|(_, nr)| (*nr as u32, Action::Allow))
        .collect();
    for (i, (nr, _)) in checks.iter().enumerate() {
        decisions.push((*nr as u32, Action::Check(i)));
    }
    // clone3 carries its flags in memory seccomp cannot read: ENOSYS makes
    // libc fall back to clone, whose flags we check.
    decisions.push((libc::SYS_clone3 as u32, Action::Enosys));
    let mut prog = vec![
        ins(LD_W_ABS, OFF_ARCH, 0, 0),
        ins(JMP_JEQ_K, AUDIT_ARCH, 1, 0),
        ins(RET_K, RET_KILL_PROCESS, 0, 0),
        ins(LD_W_ABS, OFF_NR, 0, 0),
    ];
    let body = tree(&intervals(&decisions));
    let base = prog.len();
    let body_len = body.len();
    // Where each check block will start.
    let mut starts = Vec::new();
    let mut at = base + body_len;
    for (_, b) in &checks {
        starts.push(at);
        at += b.len();
    }
    for (pc, mut i) in body.into_iter().enumerate() {
        if i.code == JMP_JA && i.jt == 0xff {
            let target = starts[i.k as usize];
            i = ins(JMP_JA, (target - (base + pc) - 1) as u32, 0, 0);
        }
        prog.push(i);
    }
    for (_, b) in checks {
        prog.extend(b);
    }
    prog
}

/// Install on the calling thread. no_new_privs must already be set.
pub(crate) fn install(prog: &BpfProgram) -> Result<(), SeccompError> {
    seccompiler::apply_filter(prog).map_err(SeccompError::Install)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny classic-BPF interpreter for the subset we emit.
    fn eval(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = &prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    acc =
                        u32::from_le_bytes(data[i.k as usize..i.k as usize + 4].try_into().unwrap())
                }
                JMP_JA => pc += i.k as usize,
                JMP_JEQ_K => pc += if acc == i.k { i.jt } else { i.jf } as usize,
                JMP_JGE_K => pc += if acc >= i.k { i.jt } else { i.jf } as usize,
                JMP_JSET_K => pc += if acc & i.k != 0 { i.jt } else { i.jf } as usize,
                ALU_AND_K => acc &= i.k,
                RET_K => return i.k,
                c => panic!("unknown opcode {c:#x}"),
            }
        }
    }

    fn decide(nr: i64) -> u32 {
        eval(&program(), AUDIT_ARCH, nr as u32, [0; 6])
    }

    #[test]
    fn every_allowed_syscall_is_allowed_and_nothing_else() {
        let allowed: Vec<i64> = ALLOWED
            .iter()
            .chain(ALLOWED_LEGACY)
            .map(|(_, n)| *n)
            .collect();
        for nr in 0..600 {
            let got = decide(nr);
            if allowed.contains(&nr) {
                assert_eq!(got, RET_ALLOW, "syscall {nr}");
            } else if [
                libc::SYS_clone,
                libc::SYS_socket,
                libc::SYS_socketpair,
                libc::SYS_ioctl,
                libc::SYS_personality,
                libc::SYS_sync,
            ]
            .contains(&nr)
            {
                // argument-checked, tested below
            } else if nr == libc::SYS_clone3 {
                assert_eq!(got, ret_errno(libc::ENOSYS));
            } else {
                assert_eq!(got, ret_errno(libc::EPERM), "syscall {nr} should be denied");
            }
        }
        assert_eq!(decide(0x4000_0000), ret_errno(libc::EPERM), "x32 ABI");
        assert_eq!(decide(u32::MAX as i64), ret_errno(libc::EPERM));
    }

    #[test]
    fn foreign_architecture_is_killed() {
        assert_eq!(eval(&program(), 0x4000_0003, 1, [0; 6]), RET_KILL_PROCESS);
    }

    #[test]
    fn argument_checks() {
        let p = program();
        let call = |nr: i64, args: [u64; 6]| eval(&p, AUDIT_ARCH, nr as u32, args);
        assert_eq!(
            call(libc::SYS_clone, [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            call(libc::SYS_clone, [0x003d_0f00, 0, 0, 0, 0, 0]),
            RET_ALLOW,
            "pthread flags"
        );
        assert_eq!(
            call(libc::SYS_clone, [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]),
            ret_errno(libc::EPERM)
        );
        assert_eq!(
            call(libc::SYS_socket, [libc::AF_INET as u64, 1, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            call(libc::SYS_socket, [libc::AF_PACKET as u64, 3, 0, 0, 0, 0]),
            ret_errno(libc::EAFNOSUPPORT)
        );
        assert_eq!(
            call(libc::SYS_socket, [libc::AF_VSOCK as u64, 1, 0, 0, 0, 0]),
            ret_errno(libc::EAFNOSUPPORT)
        );
        assert_eq!(
            call(libc::SYS_ioctl, [0, TIOCSTI as u64, 0, 0, 0, 0]),
            ret_errno(libc::EPERM)
        );
        assert_eq!(
            call(libc::SYS_ioctl, [0, TIOCLINUX as u64, 0, 0, 0, 0]),
            ret_errno(libc::EPERM)
        );
        assert_eq!(
            call(libc::SYS_ioctl, [0, libc::TIOCGWINSZ, 0, 0, 0, 0]),
            RET_ALLOW
        );
        // M4: line disciplines, socketpair families, inet protocols, sync.
        assert_eq!(
            call(libc::SYS_ioctl, [0, TIOCSETD as u64, 0, 0, 0, 0]),
            ret_errno(libc::EPERM)
        );
        for (args, want) in [
            ([libc::AF_UNIX as u64, 1, 0, 0, 0, 0], RET_ALLOW),
            (
                [30 /* AF_TIPC */, 5, 0, 0, 0, 0],
                ret_errno(libc::EAFNOSUPPORT),
            ),
            (
                [libc::AF_INET as u64, 1, 0, 0, 0, 0],
                ret_errno(libc::EAFNOSUPPORT),
            ),
        ] {
            assert_eq!(
                call(libc::SYS_socketpair, args),
                want,
                "socketpair {args:?}"
            );
        }
        let nb = (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u64;
        for (args, want) in [
            ([libc::AF_INET6 as u64, 1 | nb, 6, 0, 0, 0], RET_ALLOW),
            ([libc::AF_INET as u64, 2, 17, 0, 0, 0], RET_ALLOW),
            ([libc::AF_INET as u64, 2, 1, 0, 0, 0], RET_ALLOW),
            ([libc::AF_INET6 as u64, 2, 58, 0, 0, 0], RET_ALLOW),
            ([libc::AF_UNIX as u64, 5, 0, 0, 0, 0], RET_ALLOW),
            ([libc::AF_NETLINK as u64, 3, 0, 0, 0, 0], RET_ALLOW),
            (
                [libc::AF_INET as u64, 1, 132, 0, 0, 0],
                ret_errno(libc::EPROTONOSUPPORT),
            ),
            (
                [libc::AF_INET as u64, 1, 262, 0, 0, 0],
                ret_errno(libc::EPROTONOSUPPORT),
            ),
            (
                [libc::AF_INET6 as u64, 6, 33, 0, 0, 0],
                ret_errno(libc::ESOCKTNOSUPPORT),
            ),
            (
                [libc::AF_INET as u64, 5 | nb, 0, 0, 0, 0],
                ret_errno(libc::ESOCKTNOSUPPORT),
            ),
        ] {
            assert_eq!(call(libc::SYS_socket, args), want, "socket {args:?}");
        }
        assert_eq!(call(libc::SYS_sync, [0; 6]), ret_errno(0));
        assert_eq!(
            call(libc::SYS_personality, [0xffff_ffff, 0, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            call(libc::SYS_personality, [0x0040_0000, 0, 0, 0, 0, 0]),
            ret_errno(libc::EPERM),
            "ADDR_NO_RANDOMIZE"
        );
    }

    #[test]
    fn program_is_small_and_jumps_fit() {
        let p = program();
        assert!(p.len() < 400, "{} instructions", p.len());
        // No u8 jump offset was clamped: every conditional target is in range.
        for (pc, i) in p.iter().enumerate() {
            if matches!(i.code, JMP_JEQ_K | JMP_JGE_K | JMP_JSET_K) {
                assert!(pc + 1 + (i.jt.max(i.jf) as usize) < p.len());
                assert!(i.jt < 255);
            }
        }
    }

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

    /// Install in a forked child and check exact errnos (style rule: seccomp
    /// tests run in a child so the test process is untouched).
    #[test]
    fn filter_blocks_with_exact_errno_in_child() {
        let prog = program();
        match aibox_sys::fork().unwrap() {
            aibox_sys::Fork::Child => {
                let ok = (|| -> Option<()> {
                    aibox_sys::set_no_new_privs().ok()?;
                    install(&prog).ok()?;
                    let e = aibox_sys::unshare(libc::CLONE_NEWUTS).err()?;
                    (e.raw_os_error() == Some(libc::EPERM)).then_some(())?;
                    std::fs::read_to_string("/proc/self/status").ok()?;
                    std::thread::spawn(|| ()).join().ok()?;
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
