//! Thin, safe wrappers over the Linux system calls aibox needs.
//!
//! This is the only crate in the workspace that may use `unsafe`. Every wrapper
//! validates its inputs (C strings, buffer sizes) and turns `-1`/`errno` into
//! `std::io::Error`; every `unsafe` block states the invariant it relies on.
//! Nothing here decides policy: the runtime decides *what* to do and in which
//! order, this crate only knows *how* to ask the kernel.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub use libc::{
    CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER,
    CLONE_NEWUTS, MNT_DETACH, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY,
    MS_REC, MS_REMOUNT, SIGKILL, SIGTERM,
};

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn cvt_long(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn cpath(p: &Path) -> io::Result<CString> {
    cstr(p.as_os_str())
}

// ---------------------------------------------------------------- processes

/// Result of [`fork`].
pub enum Fork {
    Parent(libc::pid_t),
    Child,
}

/// fork(2). Only sound to use from a single-threaded process (the caller
/// checks this; see `aibox_runtime::setup`): the child inherits copies of
/// locks held by other threads, which would never be released.
pub fn fork() -> io::Result<Fork> {
    // SAFETY: fork has no memory-safety preconditions of its own; the
    // single-thread requirement above is about deadlocks, not UB in Rust terms,
    // and is enforced by the caller.
    let pid = cvt(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Fork::Child
    } else {
        Fork::Parent(pid)
    })
}

/// _exit(2): leave a forked child without running atexit handlers or
/// flushing stdio buffers that belong to the parent.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and takes no pointers.
    unsafe { libc::_exit(code) }
}

/// clone(2) without CLONE_VM: like fork, but the child starts in the new
/// namespaces given by `flags` (e.g. CLONE_NEWUSER), so the parent can
/// configure them (uid maps) without waiting for the child to unshare.
/// Same single-thread requirement as [`fork`].
pub fn clone_process(flags: libc::c_int) -> io::Result<Fork> {
    // SAFETY: without CLONE_VM and with a null stack the child runs on a
    // copy-on-write copy of our stack, exactly as after fork. The caller is
    // single-threaded, so no lock can be held by a thread that does not exist
    // in the child.
    let pid = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    })?;
    Ok(if pid == 0 {
        Fork::Child
    } else {
        Fork::Parent(pid as libc::pid_t)
    })
}

/// A new user namespace with exactly these maps (`uid_map` and `gid_map`
/// in the kernel's "inside outside count" lines; an idmapped mount needs
/// both),
/// held by a descriptor and by nothing else: what an idmapped mount
/// translates ownership through. A child is cloned into the namespace
/// only long enough to write its maps. Same single-thread requirement as
/// [`fork`]; writing maps to outside ids other than our own needs
/// CAP_SETUID / CAP_SETGID.
pub fn mapped_userns(uid_map: &str, gid_map: &str) -> io::Result<OwnedFd> {
    let pid = match clone_process(libc::CLONE_NEWUSER)? {
        Fork::Child => loop {
            // SAFETY: pause takes nothing; the parent kills us.
            unsafe { libc::pause() };
        },
        Fork::Parent(pid) => pid,
    };
    let made = (|| {
        let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
        std::fs::write(proc_dir.join("uid_map"), uid_map)?;
        std::fs::write(proc_dir.join("gid_map"), gid_map)?;
        Ok(OwnedFd::from(std::fs::File::open(
            proc_dir.join("ns/user"),
        )?))
    })();
    let _ = kill(pid, libc::SIGKILL);
    let _ = waitpid(pid);
    made
}

/// Every address of this host's interfaces (getifaddrs), IPv4 and IPv6.
pub fn interface_addresses() -> io::Result<Vec<std::net::IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    cvt(unsafe { libc::getifaddrs(&mut head) })?;
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: cur is a live node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr whose family says
            // which struct it is.
            match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
                libc::AF_INET => {
                    // SAFETY: an AF_INET sockaddr is a sockaddr_in.
                    let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    out.push(std::net::IpAddr::V4(std::net::Ipv4Addr::from(
                        u32::from_be(a.sin_addr.s_addr),
                    )));
                }
                libc::AF_INET6 => {
                    // SAFETY: an AF_INET6 sockaddr is a sockaddr_in6.
                    let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    out.push(std::net::IpAddr::V6(std::net::Ipv6Addr::from(
                        a.sin6_addr.s6_addr,
                    )));
                }
                _ => {}
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: head came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare takes a flag word only.
    cvt(unsafe { libc::unshare(flags) }).map(drop)
}

/// setns(2): join the namespaces of `flags` that `fd` (a pidfd or an
/// nsfs file) refers to.
pub fn setns(fd: BorrowedFd<'_>, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: setns takes an fd and a flag word; the fd is borrowed, so open.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), flags) }).map(drop)
}

pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

pub fn getgid() -> u32 {
    // SAFETY: getgid cannot fail.
    unsafe { libc::getgid() }
}

pub fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

pub fn setresuid(uid: u32) -> io::Result<()> {
    // SAFETY: plain integer arguments. The raw syscall changes only the calling
    // thread, which is what we want in a single-threaded setup process.
    cvt_long(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) }).map(drop)
}

pub fn setresgid(gid: u32) -> io::Result<()> {
    // SAFETY: as for setresuid.
    cvt_long(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) }).map(drop)
}

/// setgroups(0, NULL) for the calling thread.
pub fn clear_groups() -> io::Result<()> {
    // SAFETY: a zero-length list with a null pointer is the documented way to
    // drop all supplementary groups.
    cvt_long(unsafe { libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) })
        .map(drop)
}

/// setfsuid/setfsgid for the calling thread only (the kernel keeps
/// credentials per thread). Used by the agent so file operations are checked
/// against the requesting user's permissions.
pub fn set_fs_ids(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: integer arguments; raw syscalls so glibc does not broadcast the
    // change to every thread.
    unsafe {
        libc::syscall(libc::SYS_setfsgid, gid);
        libc::syscall(libc::SYS_setfsuid, uid);
        // setfsuid reports the previous id, never an error; read back to verify.
        let now = libc::syscall(libc::SYS_setfsuid, u32::MAX) as u32;
        if now != uid {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
    }
    Ok(())
}

pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe the borrowed string.
    cvt(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// Decoded wait status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    Exited(i32),
    Signaled(i32),
}

impl WaitStatus {
    /// Shell convention: the exit code, or 128 + signal number.
    pub fn code(self) -> i32 {
        match self {
            WaitStatus::Exited(c) => c,
            WaitStatus::Signaled(s) => 128 + s,
        }
    }
}

fn decode_status(status: libc::c_int) -> Option<WaitStatus> {
    if libc::WIFEXITED(status) {
        Some(WaitStatus::Exited(libc::WEXITSTATUS(status)))
    } else if libc::WIFSIGNALED(status) {
        Some(WaitStatus::Signaled(libc::WTERMSIG(status)))
    } else {
        None
    }
}

/// waitpid(pid, 0) restarting on EINTR; ignores stop/continue reports.
pub fn waitpid(pid: libc::pid_t) -> io::Result<WaitStatus> {
    loop {
        let mut status = 0;
        // SAFETY: status points to a live c_int.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if let Some(s) = decode_status(status) {
            return Ok(s);
        }
    }
}

/// waitpid(-1, WNOHANG or 0): reap any child. `Ok(None)` when nothing was
/// ready (WNOHANG) ; `Err(ECHILD)` when there are no children at all.
pub fn wait_any(block: bool) -> io::Result<Option<(libc::pid_t, WaitStatus)>> {
    loop {
        let mut status = 0;
        let flags = if block { 0 } else { libc::WNOHANG };
        // SAFETY: status points to a live c_int.
        let rc = unsafe { libc::waitpid(-1, &mut status, flags) };
        if rc == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if rc == 0 {
            return Ok(None);
        }
        if let Some(s) = decode_status(status) {
            return Ok(Some((rc, s)));
        }
    }
}

pub fn kill(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: integer arguments.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// A pidfd: a stable handle on a process that cannot be confused with a later
/// process that reuses the same pid.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments; on success the kernel returns a new fd we own.
    let fd = cvt_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: fd is a freshly created descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: valid fd, null siginfo is allowed, flags 0.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// poll(2) for readability of several fds. Returns, per fd, whether it is
/// readable (or hung up). `None` timeout waits forever.
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = match timeout {
        None => -1,
        Some(d) => d.as_millis().min(i32::MAX as u128) as libc::c_int,
    };
    loop {
        // SAFETY: pfds is a live, correctly sized array of pollfd.
        let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if rc == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(pfds.iter().map(|p| p.revents != 0).collect());
    }
}

/// pipe2(O_CLOEXEC) → (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a two-element array as pipe2 requires.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

// ---------------------------------------------------------------- prctl & caps

pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }).map(drop)
}

pub fn no_new_privs() -> io::Result<bool> {
    // SAFETY: prctl with integer arguments.
    cvt(unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) }).map(|v| v == 1)
}

pub fn set_pdeathsig(sig: libc::c_int) -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    cvt(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig, 0, 0, 0) }).map(drop)
}

/// Overwrite this process's initial environment block, the bytes
/// `/proc/PID/environ` shows, with zeros: a process cloned from its creator
/// carries the creator's environment there (credentials, tokens) even
/// when it never uses it. Afterwards the process's own environment
/// (`getenv`) is empty too.
pub fn scrub_environ_block() -> io::Result<()> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name, which may contain spaces: field 3
    // (state) is the first; env_start and env_end are fields 50 and 51.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> io::Result<usize> {
        f.get(n - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
    };
    let (start, end) = (field(50)?, field(51)?);
    if end <= start || end - start > 1 << 24 {
        return Err(io::Error::from(io::ErrorKind::InvalidData));
    }
    // SAFETY: [env_start, env_end) is the kernel's record of this
    // process's environment strings, mapped and writable (the top of the
    // initial stack). No Rust value lives there: only libc's `environ`
    // array points into it, and its entries become empty strings, which
    // match no name. Volatile, so the writes are not elided.
    unsafe {
        for addr in start..end {
            std::ptr::write_volatile(addr as *mut u8, 0);
        }
    }
    Ok(())
}

pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    cvt(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }).map(drop)
}

/// Highest capability number this kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Drop every capability but `keep` from the bounding set and clear the
/// ambient set.
pub fn drop_bounding_and_ambient(keep: &[u32]) -> io::Result<()> {
    for cap in (0..=last_cap()).filter(|c| !keep.contains(c)) {
        // SAFETY: prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc == -1 {
            let e = io::Error::last_os_error();
            // EINVAL: the kernel does not know this cap; nothing to drop.
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
        }
    }
    // SAFETY: prctl with integer arguments.
    cvt(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    })
    .map(drop)
}

pub const CAP_KILL: u32 = 5;
pub const CAP_SETGID: u32 = 6;
pub const CAP_SETUID: u32 = 7;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Set effective and permitted to exactly `keep`, inheritable to nothing.
pub fn set_caps(keep: &[u32]) -> io::Result<()> {
    let mut data = [CapData::default(); 2];
    for &c in keep {
        let word = (c / 32) as usize;
        if word < 2 {
            data[word].effective |= 1 << (c % 32);
            data[word].permitted |= 1 << (c % 32);
        }
    }
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: header and a two-element data array, the layout capset(2) v3 expects.
    cvt_long(unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) }).map(drop)
}

pub const CAP_NET_ADMIN: u32 = 12;

/// Keep only `cap`, in every set including the ambient one, so a program
/// this process executes has it whatever its uid.
pub fn keep_ambient(cap: u32) -> io::Result<()> {
    let mut data = [CapData::default(); 2];
    let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
    if word >= 2 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    data[word] = CapData {
        effective: bit,
        permitted: bit,
        inheritable: bit,
    };
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: header and a two-element data array, the layout capset(2) v3 expects.
    cvt_long(unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) })?;
    // SAFETY: prctl with integer arguments.
    cvt(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE,
            cap as libc::c_ulong,
            0,
            0,
        )
    })
    .map(drop)
}

/// Read the bounding set as a bitmask (PR_CAPBSET_READ for each cap).
pub fn bounding_set() -> u64 {
    let mut mask = 0u64;
    for cap in 0..=last_cap().min(63) {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) } == 1 {
            mask |= 1 << cap;
        }
    }
    mask
}

pub fn setrlimit(resource: RlimitResource, soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    let res = match resource {
        RlimitResource::Core => libc::RLIMIT_CORE,
        RlimitResource::NoFile => libc::RLIMIT_NOFILE,
    };
    // SAFETY: lim is a valid rlimit struct.
    cvt(unsafe { libc::setrlimit(res, &lim) }).map(drop)
}

#[derive(Debug, Clone, Copy)]
pub enum RlimitResource {
    Core,
    NoFile,
}

// ---------------------------------------------------------------- mounts

pub fn mount(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = src.map(cpath).transpose()?;
    let target = cpath(target)?;
    let fstype = fstype.map(|s| cstr(OsStr::new(s))).transpose()?;
    let data = data.map(|s| cstr(OsStr::new(s))).transpose()?;
    // SAFETY: every pointer is either null or a NUL-terminated string that
    // outlives the call.
    cvt(unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr().cast()),
        )
    })
    .map(drop)
}

pub fn umount2(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let t = cpath(target)?;
    // SAFETY: t is NUL-terminated and outlives the call.
    cvt(unsafe { libc::umount2(t.as_ptr(), flags) }).map(drop)
}

pub fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let n = cpath(new_root)?;
    let o = cpath(put_old)?;
    // SAFETY: both strings are NUL-terminated and outlive the call.
    cvt_long(unsafe { libc::syscall(libc::SYS_pivot_root, n.as_ptr(), o.as_ptr()) }).map(drop)
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const AT_EMPTY_PATH: libc::c_uint = 0x1000;
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached copy of the mount tree at `src` (recursively), not attached
/// anywhere: only the returned descriptor reaches it until
/// [`attach_tree`] puts it somewhere (in any mount namespace where the
/// caller may mount). With `userns`, its ownership is translated through
/// that user namespace's mapping (an idmapped mount); `attrs` are extra
/// MOUNT_ATTR_* flags.
///
/// Idmapping needs CAP_SYS_ADMIN in the initial user namespace and a
/// filesystem that supports it (ext4, xfs, btrfs, tmpfs ≥ 6.3, overlay …).
pub fn detached_tree(
    src: &Path,
    userns: Option<BorrowedFd<'_>>,
    attrs: u64,
) -> io::Result<OwnedFd> {
    let s = cpath(src)?;
    // SAFETY: s is NUL-terminated; flags are integers; the returned fd is new.
    let tree = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            s.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE,
        )
    })?;
    // SAFETY: tree is a fresh fd we own.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    set_tree_attrs(tree, userns, attrs)
}

/// [`detached_tree`] of the directory an open descriptor names (from
/// [`openat2`], say): no path is resolved again, so nothing can be swapped
/// between the check of the path and the mount.
pub fn detached_tree_of(
    dir: BorrowedFd<'_>,
    userns: Option<BorrowedFd<'_>>,
    attrs: u64,
) -> io::Result<OwnedFd> {
    let empty = c"";
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH names `dir`
    // itself; flags are integers; the returned fd is new.
    let tree = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            dir.as_raw_fd(),
            empty.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH,
        )
    })?;
    // SAFETY: tree is a fresh fd we own.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    set_tree_attrs(tree, userns, attrs)
}

fn set_tree_attrs(
    tree: OwnedFd,
    userns: Option<BorrowedFd<'_>>,
    attrs: u64,
) -> io::Result<OwnedFd> {
    let attr = MountAttr {
        attr_set: attrs
            | if userns.is_some() {
                MOUNT_ATTR_IDMAP
            } else {
                0
            },
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |u| u.as_raw_fd() as u64),
    };
    if attr.attr_set != 0 {
        let empty = c"";
        // SAFETY: attr is a live struct of the size passed; empty path with
        // AT_EMPTY_PATH applies the change to the tree fd itself.
        cvt_long(unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                empty.as_ptr(),
                AT_EMPTY_PATH | AT_RECURSIVE,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        })?;
    }
    Ok(tree)
}

/// Add MOUNT_ATTR_* `attrs` to the mount at `path` and every mount below
/// it (mount_setattr(2) with AT_RECURSIVE): a read-only bind stays
/// read-only in its submounts, which a remount (one mount at a time) does
/// not do.
pub fn set_mount_attrs_recursive(path: &Path, attrs: u64) -> io::Result<()> {
    let p = cpath(path)?;
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: p is NUL-terminated; attr is a live struct of the size passed.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            p.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// Attach a detached tree (from [`detached_tree`]) at `target`, in the
/// caller's mount namespace.
pub fn attach_tree(tree: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let t = cpath(target)?;
    let empty = c"";
    // SAFETY: both paths are NUL-terminated; the tree fd is valid.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// How [`openat2`] resolves a path (openat2(2)'s `RESOLVE_*` flags).
pub mod resolve {
    /// No component may be a `/proc/PID/fd`-style magic link.
    pub const NO_MAGICLINKS: u64 = libc::RESOLVE_NO_MAGICLINKS;
    /// No component may be a symlink (the last one included).
    pub const NO_SYMLINKS: u64 = libc::RESOLVE_NO_SYMLINKS;
    /// The path must stay beneath the directory: no `..` above it, no
    /// absolute path, no symlink leading out.
    pub const BENEATH: u64 = libc::RESOLVE_BENEATH;
    /// No crossing into another mount.
    pub const NO_XDEV: u64 = libc::RESOLVE_NO_XDEV;
}

/// openat2(2): open `path` relative to `dir` under the `resolve` rules
/// (see [`resolve`]). `flags` are `O_*` flags (`O_CLOEXEC` is added);
/// `mode` applies with `O_CREAT`. The kernel refuses (EXDEV, ELOOP) a
/// resolution that breaks the rules instead of following it, with no
/// window between a check and the use.
pub fn openat2(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: libc::c_int,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    /// openat2(2)'s `struct open_how` (libc's is non-exhaustive).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let p = cpath(path)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
            u64::from(mode)
        } else {
            0
        },
        resolve,
    };
    // SAFETY: p is NUL-terminated; `how` is a live open_how (the kernel's
    // version-0 layout, 24 bytes) of the size passed; the returned fd is
    // new and owned by the caller.
    let fd = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            p.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    })?;
    // SAFETY: fd is a fresh descriptor nobody else holds.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A connected pair of Unix stream sockets (close-on-exec), which unlike
/// a pipe can carry descriptors.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a live array of two ints.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair returned two fresh fds we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Most descriptors one message carries.
pub const MAX_PASSED_FDS: usize = 64;

/// Send `bytes` (all of them) with `fds` attached to the first byte.
pub fn send_with_fds(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_PASSED_FDS || bytes.is_empty() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let space = if raw.is_empty() {
        0
    } else {
        // SAFETY: CMSG_SPACE is a pure size computation.
        unsafe { libc::CMSG_SPACE(std::mem::size_of_val(raw.as_slice()) as u32) as usize }
    };
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: a zeroed msghdr is valid; the fields set below point at live
    // buffers of the stated sizes.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !raw.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg_control holds CMSG_SPACE bytes for one header and
        // the fd array, so the first header and its data are in bounds.
        unsafe {
            let h = libc::CMSG_FIRSTHDR(&msg);
            (*h).cmsg_level = libc::SOL_SOCKET;
            (*h).cmsg_type = libc::SCM_RIGHTS;
            (*h).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(raw.as_slice()) as u32) as usize;
            std::ptr::copy_nonoverlapping(raw.as_ptr(), libc::CMSG_DATA(h).cast(), raw.len());
        }
    }
    let n = loop {
        // SAFETY: msg describes live buffers.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    // The descriptors went with the first byte; the rest is plain data.
    write_all_fd(sock, &bytes[n..])
}

/// Read exactly `buf.len()` bytes, collecting the descriptors that came
/// with them. EOF before the end is `UnexpectedEof`.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Vec<OwnedFd>> {
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE((MAX_PASSED_FDS * std::mem::size_of::<RawFd>()) as u32) }
        as usize;
    let mut control = vec![0u8; space];
    let mut fds = Vec::new();
    let mut got = 0;
    while got < buf.len() {
        let mut iov = libc::iovec {
            iov_base: buf[got..].as_mut_ptr().cast(),
            iov_len: buf.len() - got,
        };
        // SAFETY: a zeroed msghdr is valid; the fields point at live buffers.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg describes live buffers; MSG_CMSG_CLOEXEC marks the
        // received descriptors close-on-exec.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: the kernel filled msg_control with well-formed headers,
        // walked with the CMSG_* macros within msg_controllen.
        unsafe {
            let mut h = libc::CMSG_FIRSTHDR(&msg);
            while !h.is_null() {
                if (*h).cmsg_level == libc::SOL_SOCKET && (*h).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(h) as *const RawFd;
                    let count =
                        ((*h).cmsg_len - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                    for i in 0..count {
                        fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                    }
                }
                h = libc::CMSG_NXTHDR(&msg, h);
            }
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(io::Error::other("too many descriptors in one message"));
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        got += n as usize;
    }
    Ok(fds)
}

/// statfs f_type of a path (e.g. to tell cgroup2 from a tmpfs of v1 mounts).
pub fn statfs_type(path: &Path) -> io::Result<i64> {
    let p = cpath(path)?;
    // SAFETY: zeroed statfs is a valid value; p is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: st is a live, writable statfs.
    cvt(unsafe { libc::statfs(p.as_ptr(), &mut st) })?;
    Ok(st.f_type)
}

pub const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// A filesystem's size and free space, in bytes (statfs): `(total, free)`,
/// free counting only what an unprivileged writer may use.
pub fn fs_space(path: &Path) -> io::Result<(u64, u64)> {
    let p = cpath(path)?;
    // SAFETY: zeroed statfs is a valid value; p is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: st is a live, writable statfs.
    cvt(unsafe { libc::statfs(p.as_ptr(), &mut st) })?;
    let bsize = st.f_bsize as u64;
    Ok((st.f_blocks as u64 * bsize, st.f_bavail as u64 * bsize))
}

/// The mount points of this mount namespace strictly below `dir`
/// (from `/proc/self/mountinfo`, octal escapes undone).
pub fn mount_points_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| {
            PathBuf::from(
                m.replace("\\040", " ")
                    .replace("\\011", "\t")
                    .replace("\\012", "\n")
                    .replace("\\134", "\\"),
            )
        })
        .filter(|m| m != dir && m.starts_with(dir))
        .collect()
}

// ---------------------------------------------------------------- loop devices

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// Whether this host can attach loop devices (`/dev/loop-control`).
pub fn loop_devices_available() -> bool {
    Path::new("/dev/loop-control").exists()
}

const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;

/// The loop device already backed by `image` (the same device and inode,
/// as the kernel reports them), if any: a second device over one image
/// would give the filesystem two independent caches, which corrupts it.
pub fn loop_device_of(image: &Path) -> io::Result<Option<PathBuf>> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(image)?;
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return Ok(None);
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // /sys/block/loopN/loop exists only while the device is bound.
        if !name.starts_with("loop") || !e.path().join("loop").exists() {
            continue;
        }
        let dev = PathBuf::from(format!("/dev/{name}"));
        let Ok(f) = std::fs::File::open(&dev) else {
            continue;
        };
        // SAFETY: an all-zero LoopInfo64 is valid; the kernel fills it.
        let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
        // SAFETY: info is a live, writable LoopInfo64.
        if unsafe { libc::ioctl(f.as_raw_fd(), LOOP_GET_STATUS64, &mut info) } != 0 {
            continue; // unbound meanwhile
        }
        if info.lo_inode == meta.ino() && info.lo_device == meta.dev() {
            return Ok(Some(dev));
        }
    }
    Ok(None)
}

/// Bind a free loop device to `image` (read-write), cleared by the kernel
/// once nothing holds it any more (its last mount gone). The returned
/// descriptor holds it meanwhile: keep it until the device is mounted.
pub fn attach_loop(image: &Path) -> io::Result<(PathBuf, std::fs::File)> {
    let ctl = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")?;
    let backing = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)?;
    // Another attach may take the free device first: try again.
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
        let n = cvt(unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) })?;
        let dev = PathBuf::from(format!("/dev/loop{n}"));
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&dev)
        else {
            continue;
        };
        // SAFETY: an all-zero LoopConfig is valid (no name, no key).
        let mut cfg: LoopConfig = unsafe { std::mem::zeroed() };
        cfg.fd = backing.as_raw_fd() as u32;
        cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        let name = image.as_os_str().as_encoded_bytes();
        let len = name.len().min(63);
        cfg.info.lo_file_name[..len].copy_from_slice(&name[..len]);
        // SAFETY: cfg is a live LoopConfig the kernel only reads.
        match cvt(unsafe { libc::ioctl(f.as_raw_fd(), LOOP_CONFIGURE, &cfg) }) {
            Ok(_) => return Ok((dev, f)),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
            // Before Linux 5.8: the two-step way.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTTY)) => {
                // SAFETY: LOOP_SET_FD takes the backing descriptor.
                match cvt(unsafe { libc::ioctl(f.as_raw_fd(), LOOP_SET_FD, backing.as_raw_fd()) }) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
                    Err(e) => return Err(e),
                }
                // SAFETY: cfg.info is a live LoopInfo64 the kernel reads.
                let set = unsafe { libc::ioctl(f.as_raw_fd(), LOOP_SET_STATUS64, &cfg.info) };
                if let Err(e) = cvt(set) {
                    // SAFETY: LOOP_CLR_FD takes no argument.
                    unsafe { libc::ioctl(f.as_raw_fd(), LOOP_CLR_FD, 0) };
                    return Err(e);
                }
                return Ok((dev, f));
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::ResourceBusy,
        "no free loop device after 16 tries",
    ))
}

const FIFREEZE: libc::c_ulong = 0xC004_5877;
const FITHAW: libc::c_ulong = 0xC004_5878;

/// Freeze the filesystem `dir` (an open directory of it) is on: writes
/// block, and the journal is clean on disk, until [`thaw_fs`]. The image
/// underneath is then a consistent copy source. EBUSY: already frozen.
pub fn freeze_fs(dir: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: FIFREEZE takes an ignored int argument.
    cvt(unsafe { libc::ioctl(dir.as_raw_fd(), FIFREEZE, 0) }).map(drop)
}

/// Thaw what [`freeze_fs`] froze. EINVAL: it was not frozen.
pub fn thaw_fs(dir: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: FITHAW takes an ignored int argument.
    cvt(unsafe { libc::ioctl(dir.as_raw_fd(), FITHAW, 0) }).map(drop)
}

/// Copy `src` to a new file `dst` keeping holes: a clone (FICLONE) where
/// the filesystem shares blocks (btrfs, xfs), else only the data extents
/// (SEEK_DATA/SEEK_HOLE with copy_file_range). Returns whether it cloned.
pub fn copy_sparse(src: &Path, dst: &Path) -> io::Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    let from = std::fs::File::open(src)?;
    let to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)?;
    // SAFETY: FICLONE takes the source descriptor.
    if unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) } == 0 {
        return Ok(true);
    }
    let len = from.metadata()?.len();
    to.set_len(len)?;
    let mut pos: i64 = 0;
    while (pos as u64) < len {
        // SAFETY: plain lseek on a descriptor we own.
        let data = unsafe { libc::lseek(from.as_raw_fd(), pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole remains
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = cvt_long(
            unsafe { libc::lseek(from.as_raw_fd(), data, libc::SEEK_HOLE) } as libc::c_long,
        )?;
        let (mut off_in, mut off_out) = (data, data);
        let mut left = (hole - data) as usize;
        while left > 0 {
            // SAFETY: both offsets are live i64s; the descriptors are ours.
            let n = cvt_long(unsafe {
                libc::copy_file_range(
                    from.as_raw_fd(),
                    &mut off_in,
                    to.as_raw_fd(),
                    &mut off_out,
                    left,
                    0,
                )
            } as libc::c_long);
            let n = match n {
                Ok(n) => n as usize,
                // Filesystems (or kernels) without it: read and write.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EXDEV | libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL)
                    ) =>
                {
                    use std::os::unix::fs::FileExt;
                    let mut buf = vec![0u8; left.min(1 << 20)];
                    let got = from.read_at(&mut buf, off_in as u64)?;
                    to.write_all_at(&buf[..got], off_out as u64)?;
                    off_in += got as i64;
                    off_out += got as i64;
                    got
                }
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} ended while being copied", src.display()),
                ));
            }
            left -= n;
        }
        pos = hole;
    }
    to.sync_all()?;
    Ok(false)
}

// ---------------------------------------------------------------- network

/// An AF_INET datagram socket for interface ioctls, and an `ifreq` naming `name`.
fn ifreq_for(name: &str) -> io::Result<(OwnedFd, libc::ifreq)> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: plain socket creation.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd is a fresh socket we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; zeroed is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in name.bytes().enumerate() {
        req.ifr_name[i] = b as libc::c_char;
    }
    Ok((sock, req))
}

/// Bring interface `name` up in the current network namespace
/// (SIOCSIFFLAGS; no netlink needed).
pub fn interface_up(name: &str) -> io::Result<()> {
    let (sock, mut req) = ifreq_for(name)?;
    // SAFETY: req is a valid ifreq for this ioctl.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: reading/writing the flags member of the union that SIOCGIFFLAGS filled.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: req is a valid ifreq for this ioctl.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) }).map(drop)
}

/// Bring the loopback interface up in the current network namespace.
pub fn loopback_up() -> io::Result<()> {
    interface_up("lo")
}

/// Give interface `name` an IPv4 address and netmask (SIOCSIFADDR,
/// SIOCSIFNETMASK), which also adds the subnet's route once it is up.
pub fn set_ipv4(
    name: &str,
    addr: std::net::Ipv4Addr,
    netmask: std::net::Ipv4Addr,
) -> io::Result<()> {
    for (request, a) in [(libc::SIOCSIFADDR, addr), (libc::SIOCSIFNETMASK, netmask)] {
        let (sock, mut req) = ifreq_for(name)?;
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(a).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: sockaddr_in fits in the union's sockaddr (both 16 bytes);
        // we write it through a pointer of the right type.
        unsafe {
            std::ptr::write(
                std::ptr::addr_of_mut!(req.ifr_ifru.ifru_addr) as *mut libc::sockaddr_in,
                sin,
            );
        }
        // SAFETY: req is a valid ifreq for this ioctl.
        cvt(unsafe { libc::ioctl(sock.as_raw_fd(), request, &req) })?;
    }
    Ok(())
}

fn sockaddr_vm(cid: u32, port: u32) -> libc::sockaddr_vm {
    // SAFETY: sockaddr_vm is plain data; all zeroes is valid.
    let mut a: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    a.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    a.svm_cid = cid;
    a.svm_port = port;
    a
}

fn vsock_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments.
    let fd =
        cvt(unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A listening AF_VSOCK stream socket on `port` (any local CID).
pub fn vsock_listen(port: u32) -> io::Result<OwnedFd> {
    let fd = vsock_socket()?;
    let a = sockaddr_vm(libc::VMADDR_CID_ANY, port);
    // SAFETY: a valid sockaddr_vm of the size given.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::addr_of!(a).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    })?;
    // SAFETY: listen(2) on our socket.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), 128) })?;
    Ok(fd)
}

/// Accept one connection on a listening socket of any family (std's
/// listeners insist on their own family).
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: accept4(2) without an address buffer.
    let fd = cvt(unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Connect an AF_VSOCK stream socket to `cid:port`.
pub fn vsock_connect(cid: u32, port: u32) -> io::Result<OwnedFd> {
    let fd = vsock_socket()?;
    let a = sockaddr_vm(cid, port);
    // SAFETY: a valid sockaddr_vm of the size given.
    cvt(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            std::ptr::addr_of!(a).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    })?;
    Ok(fd)
}

/// Set the system clock (CLOCK_REALTIME) to `unix_ms`.
pub fn set_realtime(unix_ms: u64) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: (unix_ms / 1000) as libc::time_t,
        tv_nsec: ((unix_ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: a valid timespec pointer.
    cvt(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) }).map(drop)
}

/// mknod(2) of a character device `major:minor` with permission `mode`.
pub fn mknod_char(path: &Path, mode: u32, major: u32, minor: u32) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: a NUL-terminated path; mode and dev are integers.
    cvt(unsafe {
        libc::mknod(
            p.as_ptr(),
            libc::S_IFCHR | (mode & 0o7777) as libc::mode_t,
            libc::makedev(major, minor),
        )
    })
    .map(drop)
}

// ---------------------------------------------------------------- landlock

/// Landlock ABI version of the running kernel, or None when unsupported.
pub fn landlock_abi() -> Option<u32> {
    // SAFETY: null attr with size 0 and the VERSION flag is the documented probe.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    if v <= 0 {
        None
    } else {
        Some(v as u32)
    }
}

#[repr(C)]
struct LandlockRulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct LandlockPathBeneath {
    allowed_access: u64,
    parent_fd: i32,
}

/// Landlock ruleset under construction.
pub struct Landlock {
    fd: OwnedFd,
}

impl Landlock {
    /// Create a ruleset handling `fs` accesses and `scoped` scopes. The size
    /// passed to the kernel follows the ABI: 8 bytes (v1-3), 16 (v4-5), 24 (v6+).
    pub fn new(abi: u32, fs: u64, scoped: u64) -> io::Result<Landlock> {
        let attr = LandlockRulesetAttr {
            handled_access_fs: fs,
            handled_access_net: 0,
            scoped,
        };
        let size = if abi >= 6 {
            24
        } else if abi >= 4 {
            16
        } else {
            8
        };
        // SAFETY: attr is live and at least `size` bytes long.
        let fd = cvt_long(unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const _,
                size as usize,
                0u32,
            )
        })?;
        // SAFETY: fresh fd owned by us.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        Ok(Landlock { fd })
    }

    /// Allow `access` beneath the directory (or file) at `path`.
    pub fn allow(&self, path: &Path, access: u64) -> io::Result<()> {
        let f = std::fs::File::open(path)?;
        let rule = LandlockPathBeneath {
            allowed_access: access,
            parent_fd: f.as_raw_fd(),
        };
        // SAFETY: rule is live; type 1 = LANDLOCK_RULE_PATH_BENEATH.
        cvt_long(unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.fd.as_raw_fd(),
                1u32,
                &rule as *const _,
                0u32,
            )
        })
        .map(drop)
    }

    /// Enforce on the calling thread (and its future children).
    pub fn restrict_self(self) -> io::Result<()> {
        // SAFETY: valid ruleset fd, flags 0.
        cvt_long(unsafe {
            libc::syscall(libc::SYS_landlock_restrict_self, self.fd.as_raw_fd(), 0u32)
        })
        .map(drop)
    }
}

// ---------------------------------------------------------------- signals

/// Block `signals` for the calling thread and return a signalfd that reports them.
pub fn signalfd(signals: &[libc::c_int]) -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a live sigset_t.
    unsafe {
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
    }
    // SAFETY: set is initialised; old set pointer may be null.
    cvt(unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })?;
    // SAFETY: -1 asks for a new fd; set is initialised.
    let fd = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) })?;
    // SAFETY: fresh fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Read one signal number from a signalfd.
pub fn read_signal(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: signalfd_siginfo is plain data.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let n = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: info is a writable buffer of n bytes.
    let rc = unsafe {
        libc::read(
            fd.as_raw_fd(),
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            n,
        )
    };
    if rc as usize != n {
        return Err(io::Error::last_os_error());
    }
    Ok(info.ssi_signo as libc::c_int)
}

/// Ignore SIGPIPE so writes to closed sockets return EPIPE instead of killing us.
pub fn ignore_sigpipe() {
    // SAFETY: installing SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

// ---------------------------------------------------------------- terminals

pub fn get_winsize(fd: BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    // SAFETY: winsize is plain data.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: ws is a writable winsize.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) })?;
    Ok((ws.ws_row, ws.ws_col))
}

pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: ws is a valid winsize.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) }).map(drop)
}

/// Open a new pseudo-terminal pair from /dev/ptmx: (master, slave).
pub fn openpty() -> io::Result<(OwnedFd, OwnedFd)> {
    let master = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags_cloexec_noctty()
        .open("/dev/ptmx")?;
    let master: OwnedFd = master.into();
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to int.
    cvt(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })?;
    // SAFETY: TIOCGPTPEER returns a new fd for the slave side.
    let slave = cvt(unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fresh fd owned by us.
    Ok((master, unsafe { OwnedFd::from_raw_fd(slave) }))
}

trait OpenOptionsExt2 {
    fn custom_flags_cloexec_noctty(&mut self) -> &mut Self;
}

impl OpenOptionsExt2 for std::fs::OpenOptions {
    fn custom_flags_cloexec_noctty(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
    }
}

/// Saved terminal attributes, restored by [`restore_termios`].
pub struct Termios(libc::termios);

/// Put a terminal in raw mode, returning the previous settings.
pub fn make_raw(fd: BorrowedFd<'_>) -> io::Result<Termios> {
    // SAFETY: termios is plain data.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: t is writable.
    cvt(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) })?;
    let saved = Termios(t);
    // SAFETY: t was initialised by tcgetattr.
    unsafe { libc::cfmakeraw(&mut t) };
    // SAFETY: t is a valid termios.
    cvt(unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t) })?;
    Ok(saved)
}

pub fn restore_termios(fd: BorrowedFd<'_>, t: &Termios) -> io::Result<()> {
    // SAFETY: t holds settings read by tcgetattr.
    cvt(unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t.0) }).map(drop)
}

// ---------------------------------------------------------------- exec helpers

/// New session with `tty_fd` (already dup'ed onto stdin) as the controlling
/// terminal.
pub fn spawn_with_controlling_tty(cmd: &mut Command) {
    // SAFETY: setsid and ioctl are async-signal-safe; fd 0 is the slave pty
    // because the caller set it as stdin.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Give the child of `cmd` each descriptor at its target number (3..100),
/// without the close-on-exec flag. The descriptors are first moved to
/// numbers of 100 and up, so no target overwrites a source.
pub fn pass_fds(cmd: &mut Command, fds: Vec<(OwnedFd, RawFd)>) -> io::Result<()> {
    let mut moved = Vec::with_capacity(fds.len());
    for (fd, target) in fds {
        if !(3..100).contains(&target) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "descriptor targets must be in 3..100",
            ));
        }
        // SAFETY: F_DUPFD_CLOEXEC on a valid descriptor.
        let high = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100) })?;
        // SAFETY: a new descriptor we own.
        moved.push((unsafe { OwnedFd::from_raw_fd(high) }, target));
    }
    // SAFETY: dup2 is async-signal-safe; the sources stay open in the
    // parent's copy of the closure until the child has exec'd.
    unsafe {
        cmd.pre_exec(move || {
            for (fd, target) in &moved {
                if libc::dup2(fd.as_raw_fd(), *target) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(())
}

/// The command, once spawned, gets `sig` when the spawning thread dies
/// (PR_SET_PDEATHSIG), and exits at once if that already happened.
pub fn kill_with_parent(cmd: &mut Command, sig: libc::c_int) {
    // SAFETY: getpid is async-signal-safe and runs in the parent here.
    let parent = unsafe { libc::getpid() };
    // SAFETY: prctl, getppid and _exit are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong) == -1 {
                return Err(io::Error::last_os_error());
            }
            // (PID 1 of a new pid namespace sees its parent as 0.)
            let pp = libc::getppid();
            if pp != parent && pp != 0 {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// What [`spawn_clean`] starts.
pub struct CleanSpawn<'a> {
    /// Absolute path of the program.
    pub path: &'a Path,
    /// argv, including argv[0].
    pub argv: &'a [String],
    /// The whole environment, as `KEY=value`.
    pub env: &'a [(String, String)],
    pub cwd: &'a Path,
    /// Point stdin at /dev/null (otherwise it is inherited).
    pub stdin_null: bool,
    /// Put the child in a new process group of its own.
    pub new_process_group: bool,
    /// Descriptors to put at 0, 1 and 2 instead of ours (after
    /// `stdin_null`).
    pub stdio: [Option<RawFd>; 3],
}

/// Is `fd` a terminal?
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: isatty takes an fd only.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}

/// What the vfork child reads (the parent is suspended until it execs).
struct CleanChild {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    stdin_null: bool,
    new_process_group: bool,
    stdio: [Option<RawFd>; 3],
    /// errno of the step that failed, 0 if exec succeeded.
    err: std::sync::atomic::AtomicI32,
}

extern "C" fn clean_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points at the parent's CleanChild, alive while the
    // parent is suspended (CLONE_VFORK). Only raw syscalls below: no
    // allocation, no locks, no unwinding; every signal is blocked until the
    // dispositions are reset, so no handler runs on this stack.
    unsafe {
        let c = &*(arg as *const CleanChild);
        let fail = |c: &CleanChild| -> libc::c_int {
            c.err.store(
                *libc::__errno_location(),
                std::sync::atomic::Ordering::SeqCst,
            );
            libc::_exit(127)
        };
        default_dispositions_raw();
        if c.new_process_group && libc::setpgid(0, 0) == -1 {
            return fail(c);
        }
        if c.stdin_null {
            let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
            if fd == -1 || libc::dup2(fd, 0) == -1 {
                return fail(c);
            }
            if fd != 0 {
                libc::close(fd);
            }
        }
        for (target, fd) in c.stdio.iter().enumerate() {
            if let Some(fd) = *fd {
                // (dup2 leaves the copy without close-on-exec.)
                if libc::dup2(fd, target as libc::c_int) == -1 {
                    return fail(c);
                }
            }
        }
        if libc::chdir(c.cwd) == -1 {
            return fail(c);
        }
        set_signal_mask_raw(0, None);
        libc::execve(c.path, c.argv, c.envp);
        fail(c)
    }
}

/// Start a command the way posix_spawn does (a vfork: no copy of this
/// process's page tables), except that *every* signal disposition is reset
/// to the default, glibc's reserved realtime signals included (glibc's
/// posix_spawn leaves those ignored in the child). Returns the child's pid
/// once it has exec'd; a failure to exec is returned as its errno.
pub fn spawn_clean(spec: &CleanSpawn<'_>) -> io::Result<libc::pid_t> {
    let path = cstr(spec.path.as_os_str())?;
    let cwd = cstr(spec.cwd.as_os_str())?;
    let argv: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| cstr(OsStr::new(a)))
        .collect::<io::Result<_>>()?;
    let envp: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| cstr(OsStr::new(&format!("{k}={v}"))))
        .collect::<io::Result<_>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let child = CleanChild {
        path: path.as_ptr(),
        argv: argv_ptrs.as_ptr(),
        envp: envp_ptrs.as_ptr(),
        cwd: cwd.as_ptr(),
        stdin_null: spec.stdin_null,
        new_process_group: spec.new_process_group,
        stdio: spec.stdio,
        err: std::sync::atomic::AtomicI32::new(0),
    };
    let mut stack = vec![0u8; 64 * 1024];
    let mut old: u64 = 0;
    // Every signal blocked around the clone, so no handler of ours runs in
    // the child (which resets them all before unblocking).
    set_signal_mask_raw(!0, Some(&mut old));
    // SAFETY: the stack is ours and outlives the child's use of it (the
    // parent resumes only after the child exec'd or exited: CLONE_VFORK);
    // the top is 16-byte aligned as the ABI wants.
    let (pid, clone_err) = unsafe {
        let top = stack.as_mut_ptr().add(stack.len());
        let top = (top as usize & !15) as *mut libc::c_void;
        let pid = libc::clone(
            clean_child,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &child as *const CleanChild as *mut libc::c_void,
        );
        (pid, io::Error::last_os_error())
    };
    set_signal_mask_raw(old, None);
    if pid == -1 {
        return Err(clone_err);
    }
    drop(stack);
    match child.err.load(std::sync::atomic::Ordering::SeqCst) {
        0 => Ok(pid),
        errno => {
            let _ = waitpid(pid);
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

/// Seccomp: install a classic BPF program (the filter bytes come from
/// `seccompiler`, which this crate re-exports the installer of).
pub fn seccomp_installed() -> io::Result<bool> {
    // SAFETY: prctl with integer arguments.
    cvt(unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) }).map(|v| v == 2)
}

/// Write all of `buf` to a raw fd (used in forked children before exec).
pub fn write_all_fd(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is a live slice.
        let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Start time of a process in clock ticks since boot (field 22 of
/// /proc/PID/stat): with the pid it identifies a process uniquely.
pub fn process_start_time(pid: libc::pid_t) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// The start time of a process that is still running (not a zombie
/// waiting for its parent to reap it).
pub fn live_process_start_time(pid: libc::pid_t) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Mount flags (MS_*) currently in effect at `path`, as statvfs reports
/// them. A bind remount inside a user namespace must keep "locked" flags
/// (nosuid, nodev, noexec, atime), so we re-apply what is already there.
pub fn current_mount_flags(path: &Path) -> io::Result<libc::c_ulong> {
    let p = cpath(path)?;
    // SAFETY: statvfs is plain data.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: st is writable; p is NUL-terminated.
    cvt(unsafe { libc::statvfs(p.as_ptr(), &mut st) })?;
    let map = [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
        (libc::ST_RDONLY, libc::MS_RDONLY),
    ];
    Ok(map
        .iter()
        .filter(|(st_flag, _)| st.f_flag & st_flag != 0)
        .fold(0, |acc, (_, ms)| acc | ms))
}

pub use libc::{MS_NOATIME, MS_RELATIME};

/// Close every fd except `keep` (and 0, 1, 2). Used right after fork so no
/// host descriptor (a server socket, a log file) leaks into a sandbox.
pub fn close_fds_except(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|fd| *fd > 2).collect();
    keep.sort_unstable();
    let mut lo: u32 = 3;
    for fd in keep
        .iter()
        .map(|f| *f as u32)
        .chain(std::iter::once(u32::MAX))
    {
        if fd > lo {
            // SAFETY: close_range takes integers; closing fds we do not own
            // is the point, and nothing in this process refers to them again.
            cvt_long(unsafe { libc::syscall(libc::SYS_close_range, lo, fd - 1, 0) })?;
        }
        lo = fd.saturating_add(1);
    }
    Ok(())
}

/// Point stdin, stdout and stderr at /dev/null.
pub fn stdio_to_devnull() -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for target in 0..3 {
        // SAFETY: dup2 onto the standard fds; the source fd is valid.
        cvt(unsafe { libc::dup2(null.as_raw_fd(), target) })?;
    }
    Ok(())
}

/// setsid(2): start a new session (and process group) without a terminal.
pub fn new_session() -> io::Result<()> {
    // SAFETY: no arguments.
    cvt(unsafe { libc::setsid() }).map(drop)
}

/// Drop the resident pages of this binary's read-only mappings (code and
/// constants) that hold nothing of ours: what the serving loop needs comes
/// back on first use, the rest (setup code, tables) stops counting against
/// an idle sandbox. A read-only mapping with private (copied-on-write)
/// pages — relocations written at startup — is left alone, since
/// discarding those pages would undo the writes.
pub fn release_code_pages() -> io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = 0;
    // (start, end, perms, path) of the mapping being read, and whether it
    // has anonymous pages.
    let mut current: Option<(usize, usize, bool)> = None;
    let mut flush = |m: Option<(usize, usize, bool)>, anon: bool| -> io::Result<()> {
        let Some((start, end, candidate)) = m else {
            return Ok(());
        };
        if !candidate || anon {
            return Ok(());
        }
        // SAFETY: the range is a private, read-only file mapping of our own
        // binary with no private pages; MADV_DONTNEED only drops resident
        // pages, which the kernel re-reads unchanged from the file on access.
        cvt(unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED)
        })?;
        released += end - start;
        Ok(())
    };
    let mut anon = false;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let Some(first) = f.next() else {
            continue;
        };
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                flush(current.take(), anon)?;
                anon = false;
                let perms = f.next().unwrap_or("");
                let path = f.nth(3).unwrap_or("");
                let candidate = (perms == "r-xp" || perms == "r--p") && Path::new(path) == exe;
                current = Some((start, end, candidate));
                continue;
            }
        }
        if first == "Anonymous:" {
            anon = f.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(1) > 0;
        }
    }
    flush(current.take(), anon)?;
    Ok(released)
}

/// Run the calling *thread* as `uid`/`gid` until the guard drops, keeping
/// 0 as the saved ids so it can switch back. Credentials are per thread in
/// the kernel (raw syscalls, no glibc broadcast), so other threads are not
/// affected. A process spawned meanwhile (posix_spawn/vfork) starts with
/// these ids; its exec then sets all ids to `uid` and clears every capability.
pub fn thread_identity(uid: u32, gid: u32) -> io::Result<ThreadIdentity> {
    // SAFETY: integer arguments; affects only this thread.
    cvt_long(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, 0u32) })?;
    // SAFETY: as above.
    if let Err(e) = cvt_long(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, 0u32) }) {
        // SAFETY: as above; restores the gids set a moment ago.
        unsafe { libc::syscall(libc::SYS_setresgid, 0u32, 0u32, 0u32) };
        return Err(e);
    }
    Ok(ThreadIdentity(()))
}

/// Restores uid/gid 0 (and with it the thread's capabilities) when dropped.
pub struct ThreadIdentity(());

impl Drop for ThreadIdentity {
    fn drop(&mut self) {
        // SAFETY: integer arguments; 0 is our saved uid/gid, so this is
        // always permitted, and euid 0 brings the permitted caps back.
        unsafe {
            libc::syscall(libc::SYS_setresuid, 0u32, 0u32, 0u32);
            libc::syscall(libc::SYS_setresgid, 0u32, 0u32, 0u32);
        }
    }
}

/// Has the peer of a stream socket hung up (or shut down its writing side)?
/// Checked without blocking, so a request whose client already gave up is
/// not carried out.
pub fn peer_closed(fd: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let rc = unsafe { libc::poll(&mut p, 1, 0) };
    rc == 1 && p.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0
}

/// The destination a TCP connection had before netfilter redirected it to
/// this socket (`SO_ORIGINAL_DST`, IPv4).
pub fn original_dst(fd: BorrowedFd<'_>) -> io::Result<std::net::SocketAddrV4> {
    /// From <linux/netfilter_ipv4.h>.
    const SO_ORIGINAL_DST: libc::c_int = 80;
    // SAFETY: an all-zero sockaddr_in is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: sa and len describe a writable sockaddr_in of that size.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_IP,
            SO_ORIGINAL_DST,
            (&mut sa as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
        u16::from_be(sa.sin_port),
    ))
}

/// Close a TCP socket with a reset instead of a FIN (SO_LINGER 0), so
/// the peer sees its connection refused rather than ended.
pub fn set_linger_zero(fd: BorrowedFd<'_>) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid linger struct of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// flock(LOCK_EX | LOCK_NB): Ok(false) when someone else holds the lock.
pub fn try_lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    try_flock(fd, libc::LOCK_EX)
}

/// flock(LOCK_SH | LOCK_NB): Ok(false) when someone holds it exclusively.
pub fn try_lock_shared(fd: BorrowedFd<'_>) -> io::Result<bool> {
    try_flock(fd, libc::LOCK_SH)
}

fn try_flock(fd: BorrowedFd<'_>, op: libc::c_int) -> io::Result<bool> {
    // SAFETY: flock on a valid fd with integer flags.
    let rc = unsafe { libc::flock(fd.as_raw_fd(), op | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

static SIGNAL_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    // Async-signal-safe: one write(2) of one byte, errno preserved.
    let fd = SIGNAL_PIPE.load(std::sync::atomic::Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: __errno_location returns this thread's errno slot; write
        // takes a pointer to a live byte. A full pipe just drops the byte
        // (the reader still wakes for the ones already queued).
        unsafe {
            let errno = *libc::__errno_location();
            let b = sig as u8;
            libc::write(fd, (&b as *const u8).cast(), 1);
            *libc::__errno_location() = errno;
        }
    }
}

/// Deliver `signals` as bytes on a pipe (the self-pipe trick): the returned
/// read end becomes readable when one arrives. Unlike signalfd this needs no
/// blocked signal mask, which children spawned with posix_spawn would
/// otherwise inherit. One per process.
pub fn signal_pipe(signals: &[libc::c_int]) -> io::Result<OwnedFd> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a two-element array as pipe2 requires.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
    // SAFETY: both fds were just created; the write end is deliberately kept
    // open for the life of the process (the handler uses it).
    let read = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    SIGNAL_PIPE.store(fds[1], std::sync::atomic::Ordering::Relaxed);
    for &sig in signals {
        // SAFETY: sigaction is plain data; zeroed is a valid start.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        // SAFETY: sa_mask is initialised by sigemptyset; the handler is
        // async-signal-safe (see on_signal).
        unsafe {
            libc::sigemptyset(&mut sa.sa_mask);
            cvt(libc::sigaction(sig, &sa, std::ptr::null_mut()))?;
        }
    }
    Ok(read)
}

/// Read every signal number queued on a [`signal_pipe`].
pub fn read_signals(fd: BorrowedFd<'_>) -> Vec<libc::c_int> {
    let mut buf = [0u8; 64];
    // SAFETY: buf is a writable buffer of its length; the fd is non-blocking.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return vec![];
    }
    buf[..n as usize]
        .iter()
        .map(|b| *b as libc::c_int)
        .collect()
}

/// Unblock every signal and set every disposition back to the default, including the
/// realtime ones glibc reserves (so nothing "ignored" by whoever started us
/// is inherited by sandboxed commands). Raw rt_sigaction, since glibc
/// refuses to touch its reserved signals. Call before creating threads.
pub fn reset_signal_dispositions() {
    set_signal_mask_raw(0, None);
    default_dispositions_raw();
}

/// rt_sigprocmask(SIG_SETMASK) on the kernel's 64-bit set, by raw syscall
/// (glibc hides its reserved signals). Async-signal-safe, allocation-free:
/// usable in a vfork child.
fn set_signal_mask_raw(mask: u64, old: Option<&mut u64>) {
    let old = old.map_or(std::ptr::null_mut(), |o| o as *mut u64);
    // SAFETY: `mask` is a valid 8-byte kernel sigset; `old` is null or
    // points at one we own.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &mask as *const u64,
            old,
            8usize,
        );
    }
}

/// Every signal's disposition back to SIG_DFL, by raw rt_sigaction (glibc
/// refuses to touch its reserved signals). Allocation-free, like the above.
fn default_dispositions_raw() {
    // kernel_sigaction: handler SIG_DFL (0), no flags, no restorer, empty mask.
    let dfl = [0u64; 4];
    for sig in 1..=64 {
        // SAFETY: a valid kernel_sigaction; SIGKILL and SIGSTOP answer
        // EINVAL, which is fine to ignore.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                dfl.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            );
        }
    }
}

// ------------------------------------------------------------- file trees

/// flock(LOCK_EX), waiting for it.
pub fn lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<()> {
    loop {
        // SAFETY: flock on a valid fd with integer flags.
        let rc = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// mknod(2) of an overlayfs whiteout: a character device 0:0, which the
/// kernel lets anyone create.
pub fn mknod_whiteout(path: &Path) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: a NUL-terminated path; mode and dev are integers.
    cvt(unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR, 0) }).map(drop)
}

/// mkfifo(3) with `mode`.
pub fn mkfifo(path: &Path, mode: u32) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: a NUL-terminated path and an integer mode.
    cvt(unsafe { libc::mkfifo(p.as_ptr(), mode as libc::mode_t) }).map(drop)
}

/// The extended attribute names of `path` (not following a symlink).
pub fn list_xattrs(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let p = cpath(path)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: the buffer pointer and length describe `buf`.
        let n = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf
                .split(|b| *b == 0)
                .filter(|n| !n.is_empty())
                .map(<[u8]>::to_vec)
                .collect());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(vec![]),
            _ => return Err(e),
        }
    }
}

/// One extended attribute of `path` (not following a symlink); None when absent.
pub fn get_xattr(path: &Path, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let p = cpath(path)?;
    let n = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: NUL-terminated path and name; the pointer and length describe `buf`.
        let len =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if len >= 0 {
            buf.truncate(len as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 16, 0),
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Set an extended attribute of `path` (not following a symlink).
pub fn set_xattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let p = cpath(path)?;
    let n = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: NUL-terminated path and name; the pointer and length describe `value`.
    cvt(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(drop)
}

/// Set access and modification times (seconds, nanoseconds) of `path`
/// without following a symlink.
pub fn set_times_nofollow(path: &Path, atime: (i64, i64), mtime: (i64, i64)) -> io::Result<()> {
    let p = cpath(path)?;
    let ts = [
        libc::timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1,
        },
        libc::timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1,
        },
    ];
    // SAFETY: a NUL-terminated path and an array of two timespecs.
    cvt(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// lseek(SEEK_DATA) / lseek(SEEK_HOLE) from `offset`: the next data (or
/// hole) offset, None past the end of data. For copying sparse files.
pub fn seek_data_hole(fd: BorrowedFd<'_>, offset: u64, data: bool) -> io::Result<Option<u64>> {
    let whence = if data {
        libc::SEEK_DATA
    } else {
        libc::SEEK_HOLE
    };
    // SAFETY: lseek on a valid fd with integer arguments.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), offset as libc::off_t, whence) };
    if r >= 0 {
        return Ok(Some(r as u64));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENXIO) {
        Ok(None)
    } else {
        Err(e)
    }
}

/// For a long-running server: blocks of 256 KiB and more (request bodies,
/// copy buffers) are mmapped and go back to the kernel when freed, instead
/// of staying in the heap once glibc's adaptive threshold has grown; and at
/// most four malloc arenas, so memory freed on one blocking-pool thread is
/// reused by the next. Call before starting threads.
pub fn malloc_for_server() {
    // SAFETY: mallopt takes integer parameters and only tunes the allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

/// Fill `buf` from the kernel's CSPRNG (getrandom(2)).
pub fn getrandom(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of buf.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(())
}

// ---- microVM guest and host

/// Load a kernel module from an open `.ko` file (finit_module(2)), with
/// no parameters.
pub fn finit_module(fd: BorrowedFd<'_>, params: &str) -> io::Result<()> {
    let params = CString::new(params)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in module parameters"))?;
    // SAFETY: a valid fd and a NUL-terminated parameter string.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            fd.as_raw_fd(),
            params.as_ptr(),
            0 as libc::c_int,
        )
    })
    .map(drop)
}

/// Power the machine off now (reboot(2), `RB_POWER_OFF`): the end of a
/// guest's init. Returns only on failure.
pub fn power_off() -> io::Error {
    // SAFETY: reboot takes no pointers.
    unsafe { libc::sync() };
    // SAFETY: as above.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
    io::Error::last_os_error()
}

/// Whether KVM answers at `path`: its API version, once `KVM_CREATE_VM`
/// has also succeeded (a VM that is made and closed at once).
pub fn kvm_check(path: &Path) -> io::Result<i32> {
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    // SAFETY: ioctls without argument pointers on an fd we own.
    let version = cvt(unsafe { libc::ioctl(f.as_raw_fd(), KVM_GET_API_VERSION, 0) })?;
    // SAFETY: as above; the returned fd is owned and closed at once.
    let vm = cvt(unsafe { libc::ioctl(f.as_raw_fd(), KVM_CREATE_VM, 0) })?;
    // SAFETY: `vm` is a new fd nobody else holds.
    drop(unsafe { OwnedFd::from_raw_fd(vm) });
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn wait_status_code_follows_shell_convention() {
        assert_eq!(WaitStatus::Exited(3).code(), 3);
        assert_eq!(WaitStatus::Signaled(9).code(), 137);
    }

    #[test]
    fn pipe_and_poll() {
        let (r, w) = pipe().unwrap();
        assert_eq!(
            poll_readable(&[r.as_fd()], Some(Duration::from_millis(1))).unwrap(),
            vec![false]
        );
        write_all_fd(w.as_fd(), b"x").unwrap();
        assert_eq!(
            poll_readable(&[r.as_fd()], Some(Duration::from_millis(100))).unwrap(),
            vec![true]
        );
    }

    #[test]
    fn descriptors_pass_over_a_socketpair() {
        let (a, b) = socketpair().unwrap();
        let (r, w) = pipe().unwrap();
        send_with_fds(a.as_fd(), b"hello", &[w.as_fd()]).unwrap();
        drop(w);
        let mut buf = [0u8; 5];
        let fds = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!((&buf, fds.len()), (b"hello", 1));
        write_all_fd(fds[0].as_fd(), b"x").unwrap();
        assert!(poll_readable(&[r.as_fd()], Some(Duration::from_millis(100))).unwrap()[0]);
        // No descriptors is fine; EOF is an error.
        send_with_fds(a.as_fd(), b"ab", &[]).unwrap();
        let mut two = [0u8; 2];
        assert!(recv_with_fds(b.as_fd(), &mut two).unwrap().is_empty());
        drop(a);
        let e = recv_with_fds(b.as_fd(), &mut two).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn start_time_of_self_is_known() {
        assert!(process_start_time(getpid()).is_some());
        assert!(process_start_time(-5).is_none());
    }

    #[test]
    fn nul_in_path_is_rejected_not_truncated() {
        let e = mount(None, Path::new("/tmp/a\0b"), Some("tmpfs"), 0, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
