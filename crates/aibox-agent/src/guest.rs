//! PID 1 of a microVM: the aibox binary is the initramfs's `/init`.
//!
//! Boot, in order:
//! 1. mount the kernel filesystems and load the kernel modules the
//!    initramfs lists in `/etc/aibox/modules` (in dependency order, fixed
//!    when the initramfs was built);
//! 2. with `aibox.probe` on the kernel command line: say ready and power
//!    off (the boot probe of `aibox vm probe`);
//! 3. otherwise listen on [`AGENT_PORT`]: on vsock with `aibox.vsock` on
//!    the command line (Firecracker's or vhost-user-vsock's hybrid vsock,
//!    no network device at all), else on `eth0` (QEMU's user-mode
//!    network, with no way out). Then say [`READY`] on the console: the
//!    host connects as soon as it reads that line;
//! 4. the first connection carries the [`Boot`] message: the disks that
//!    make the root filesystem (read-only template layers under a writable
//!    disk, joined by overlayfs), the clock, the user, the environment and
//!    a token. Nothing but the host can make that connection: no program of
//!    the sandbox runs yet, and the VMM forwards the port from a network
//!    namespace only the host's supervisor is in;
//! 5. switch to the new root, start the agent on a Unix socket only root
//!    can reach, and relay every later connection that starts with the
//!    token to it — the same agent and protocol as the namespace backend.
//!
//! Errors before the agent runs are printed on the console (which the
//! host keeps) and answered on the boot connection when there is one.

use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file listing the modules to load, one initramfs path per line.
pub const MODULE_LIST: &str = "etc/aibox/modules";
/// What the guest prints once it listens for the host.
pub const READY: &str = "aibox-guest: ready";
/// The guest's TCP port for the host's connections.
pub const AGENT_PORT: u16 = 1024;
/// The guest's address on the VMM's user-mode network (QEMU's default).
pub const GUEST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// Where the VMM forwards the guest's connections to the host's egress
/// proxy (a `guestfwd` address inside the user-mode network).
pub const EGRESS_ADDR: SocketAddrV4 =
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 100), aibox_types::EGRESS_PROXY_PORT);
/// The kernel command-line word that selects the vsock transport.
pub const VSOCK_FLAG: &str = "aibox.vsock";
/// The host's vsock CID (the VMM), which guest connections reach.
const HOST_CID: u32 = 2;
/// Length of the token every relayed connection starts with (hex).
pub const TOKEN_LEN: usize = 64;
/// The agent's socket in the guest's root (its directory is root's only).
const AGENT_SOCKET: &str = "/run/aibox/agent.sock";

/// What the host sends on the first connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Boot {
    /// Hex, [`TOKEN_LEN`] characters: the first bytes of every later
    /// connection.
    pub token: String,
    /// The host's clock (the guest has none it can trust).
    pub unix_ms: u64,
    /// Names of the read-only layer disks, top first: a disk's serial
    /// number (QEMU) or its ext4 label (Firecracker, whose disks have no
    /// serial of our choosing).
    pub layers: Vec<String>,
    /// Name of the writable disk, the same way.
    pub upper: String,
    pub hostname: String,
    /// The identity of requests that name none.
    pub user: aibox_types::User,
    pub env: Vec<(String, String)>,
    pub workdir: String,
    /// Relay the egress proxy port to the host: to [`EGRESS_ADDR`] on the
    /// user-mode network, or to the host's vsock port
    /// [`aibox_types::EGRESS_PROXY_PORT`].
    pub egress: bool,
    /// Read-only virtiofs shares: (tag, path in the sandbox), mounted over
    /// the root (the host template's `/usr`).
    #[serde(default)]
    pub shares: Vec<(String, String)>,
    /// Volumes: virtiofs shares mounted where the sandbox asked (the
    /// directory made if the image lacks it).
    #[serde(default)]
    pub volumes: Vec<VolumeShare>,
}

/// A volume the guest mounts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeShare {
    pub tag: String,
    pub path: String,
    pub read_only: bool,
}

/// The guest's answer to [`Boot`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootReply {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    /// `uname -r` of the guest.
    #[serde(default)]
    pub kernel: String,
}

/// Whether this process is a microVM's init (PID 1 started as `/init`).
pub fn is_guest_init() -> bool {
    aibox_sys::getpid() == 1 && std::env::args_os().next().is_some_and(|a| a == "/init")
}

fn say(line: &str) {
    // The kernel gives init /dev/console as its stdio.
    let _ = writeln!(std::io::stdout(), "{line}");
    let _ = std::io::stdout().flush();
}

fn mount(
    src: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), String> {
    let _ = std::fs::create_dir_all(target);
    aibox_sys::mount(
        Some(Path::new(src)),
        Path::new(target),
        Some(fstype),
        flags,
        data,
    )
    .map_err(|e| format!("mount {fstype} on {target}: {e}"))
}

/// The parameters the kernel command line gives module `path`
/// (`name.key=value` words, as modprobe would pass them): the VMM lists
/// its virtio-mmio devices there (`virtio_mmio.device=…`) when it has no
/// ACPI table for them.
fn module_params(path: &str, cmdline: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let name = file.split(".ko").next().unwrap_or(file).replace('-', "_");
    cmdline
        .split_whitespace()
        .filter_map(|w| {
            let (module, param) = w.split_once('.')?;
            (module.replace('-', "_") == name && param.contains('=')).then_some(param)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Load the listed modules: (loaded, errors). A module already in the
/// kernel (`EEXIST`) counts as loaded.
fn load_modules(list: &str, cmdline: &str) -> (usize, Vec<String>) {
    let mut loaded = 0;
    let mut errors = Vec::new();
    for path in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let params = module_params(path, cmdline);
        let r = std::fs::File::open(path).and_then(|f| aibox_sys::finit_module(f.as_fd(), &params));
        match r {
            Ok(()) => loaded += 1,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => loaded += 1,
            Err(e) => errors.push(format!("{path}: {e}")),
        }
    }
    (loaded, errors)
}

fn halt(why: &str) -> ! {
    say(&format!("aibox-guest: {why}"));
    let e = aibox_sys::power_off();
    say(&format!("aibox-guest: power off failed: {e}"));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Run as the guest's init; never returns.
pub fn main() -> ! {
    let mut problems = Vec::new();
    let nosuid = libc::MS_NOSUID | libc::MS_NOEXEC;
    for (src, target, fstype) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
    ] {
        if let Err(e) = mount(src, target, fstype, nosuid, None) {
            problems.push(e);
        }
    }
    let list = std::fs::read_to_string(Path::new("/").join(MODULE_LIST)).unwrap_or_default();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let (loaded, errors) = load_modules(&list, &cmdline);
    problems.extend(errors);
    for p in &problems {
        say(&format!("aibox-guest: {p}"));
    }
    let uptime = || {
        std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|u| u.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| "?".into())
    };
    if cmdline.split_whitespace().any(|w| w == "aibox.probe") {
        say(&format!("{READY} uptime={} modules={loaded}", uptime()));
        halt("probe done; powering off");
    }
    let vsock = cmdline.split_whitespace().any(|w| w == VSOCK_FLAG);
    let listener = match listen(vsock) {
        Ok(l) => l,
        Err(e) => halt(&format!("no way for the host to reach the guest: {e}")),
    };
    say(&format!("{READY} uptime={} modules={loaded}", uptime()));
    let token = match boot(&listener, vsock) {
        Ok(t) => t,
        Err(e) => halt(&format!("boot failed: {e}")),
    };
    relay(&listener, &token)
}

/// Where the host's connections arrive.
enum Listener {
    Tcp(TcpListener),
    Vsock(std::os::fd::OwnedFd),
}

impl Listener {
    /// The next connection. A vsock stream is held as a `UnixStream`:
    /// both are plain stream sockets to read, write and shut down.
    fn accept(&self) -> std::io::Result<Conn> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(c, _)| {
                let _ = c.set_nodelay(true);
                Conn::Tcp(c)
            }),
            Listener::Vsock(fd) => {
                aibox_sys::accept(fd.as_fd()).map(|c| Conn::Vsock(UnixStream::from(c)))
            }
        }
    }
}

enum Conn {
    Tcp(TcpStream),
    Vsock(UnixStream),
}

fn listen(vsock: bool) -> Result<Listener, String> {
    aibox_sys::interface_up("lo").map_err(|e| format!("lo: {e}"))?;
    if vsock {
        return aibox_sys::vsock_listen(u32::from(AGENT_PORT))
            .map(Listener::Vsock)
            .map_err(|e| format!("listening on vsock port {AGENT_PORT}: {e}"));
    }
    aibox_sys::set_ipv4("eth0", GUEST_ADDR, Ipv4Addr::new(255, 255, 255, 0))
        .map_err(|e| format!("eth0 address: {e}"))?;
    aibox_sys::interface_up("eth0").map_err(|e| format!("eth0: {e}"))?;
    TcpListener::bind((GUEST_ADDR, AGENT_PORT))
        .map(Listener::Tcp)
        .map_err(|e| format!("listening on {AGENT_PORT}: {e}"))
}

/// Take the first connection's [`Boot`], set the sandbox up, answer.
fn boot(listener: &Listener, vsock: bool) -> Result<String, String> {
    match listener.accept().map_err(|e| format!("accept: {e}"))? {
        Conn::Tcp(c) => boot_on(c, vsock),
        Conn::Vsock(c) => boot_on(c, vsock),
    }
}

/// A connection from the host: what [`boot_on`] and [`relay_one`] need.
trait HostConn: crate::egress::Duplex {
    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()>;
}

impl HostConn for TcpStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        TcpStream::set_read_timeout(self, t)
    }
}

impl HostConn for UnixStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        UnixStream::set_read_timeout(self, t)
    }
}

fn boot_on(mut conn: impl HostConn, vsock: bool) -> Result<String, String> {
    let t0 = std::time::Instant::now();
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let frame = aibox_protocol::read_frame(&mut conn)
        .map_err(|e| format!("reading the boot message: {e}"))?;
    let reply = match serde_json::from_slice::<Boot>(&frame.payload) {
        Ok(b) => match setup(&b, vsock) {
            Ok(()) => Ok(b.token),
            Err(e) => Err(e),
        },
        Err(e) => Err(format!("bad boot message: {e}")),
    };
    let answer = BootReply {
        ok: reply.is_ok(),
        error: reply.as_ref().err().cloned(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    };
    say(&format!(
        "aibox-guest: sandbox set up in {} ms",
        t0.elapsed().as_millis()
    ));
    let body = serde_json::to_vec(&answer).unwrap_or_default();
    let _ = aibox_protocol::write_frame(&mut conn, aibox_protocol::Kind::Control, &body);
    reply
}

/// Block devices by name: their serial number (`/sys/block/vdX/serial`)
/// and their ext4 label, each a name of its own.
fn disks() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/block") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let dev = Path::new("/dev").join(&name);
            if let Ok(serial) = std::fs::read_to_string(e.path().join("serial")) {
                let serial = serial.trim();
                if !serial.is_empty() {
                    out.push((serial.to_string(), dev.clone()));
                }
            }
            if let Some(label) = ext4_label(&dev) {
                out.push((label, dev));
            }
        }
    }
    out
}

/// The volume label of the ext4 filesystem on `dev`, if it has one.
fn ext4_label(dev: &Path) -> Option<String> {
    let mut sb = [0u8; 1024];
    let mut f = std::fs::File::open(dev).ok()?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(1024)).ok()?;
    f.read_exact(&mut sb).ok()?;
    label_of_superblock(&sb)
}

/// An ext2/3/4 superblock's label (`s_volume_name`), checked by its magic.
fn label_of_superblock(sb: &[u8; 1024]) -> Option<String> {
    if sb[0x38..0x3a] != [0x53, 0xef] {
        return None;
    }
    let name = &sb[0x78..0x88];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    let label = std::str::from_utf8(&name[..end]).ok()?;
    (!label.is_empty()).then(|| label.to_string())
}

fn setup(b: &Boot, vsock: bool) -> Result<(), String> {
    if b.token.len() != TOKEN_LEN || !b.token.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err("the token must be 64 hex digits".into());
    }
    let _ = aibox_sys::set_realtime(b.unix_ms);
    let disks = disks();
    let dev = |serial: &str| -> Result<String, String> {
        disks
            .iter()
            .find(|(s, _)| s == serial)
            .map(|(_, p)| p.to_string_lossy().into_owned())
            .ok_or_else(|| format!("no disk with serial {serial:?}"))
    };
    let mut lowers = Vec::new();
    for (i, serial) in b.layers.iter().enumerate() {
        let at = format!("/mnt/l{i}");
        mount(
            &dev(serial)?,
            &at,
            "ext4",
            libc::MS_RDONLY | libc::MS_NODEV,
            None,
        )?;
        lowers.push(at);
    }
    mount(
        &dev(&b.upper)?,
        "/mnt/upper",
        "ext4",
        libc::MS_NOATIME,
        // No background zeroing of inode tables: under TCG it would take
        // the guest's CPU for seconds, and a new disk has nothing to zero.
        Some("noinit_itable"),
    )?;
    for d in ["/mnt/upper/root", "/mnt/upper/work"] {
        std::fs::create_dir_all(d).map_err(|e| format!("creating {d}: {e}"))?;
    }
    // Every ext4 layer image has a `lost+found` the template never had: a
    // whiteout in the upper layer hides it.
    let lf = Path::new("/mnt/upper/root/lost+found");
    if lf.symlink_metadata().is_err() {
        aibox_sys::mknod_whiteout(lf).map_err(|e| format!("hiding lost+found: {e}"))?;
    }
    if lowers.is_empty() {
        return Err("no template layers".into());
    }
    let opts = format!(
        "lowerdir={},upperdir=/mnt/upper/root,workdir=/mnt/upper/work,userxattr",
        lowers.join(":")
    );
    mount("overlay", "/mnt/root", "overlay", 0, Some(&opts))?;
    switch_root("/mnt/root")?;
    finish_root(b)?;
    let agent =
        UnixListener::bind(AGENT_SOCKET).map_err(|e| format!("binding {AGENT_SOCKET}: {e}"))?;
    let cfg = crate::Config {
        default_user: Some(b.user),
        fixed_uid: None,
        env: b.env.clone(),
        workdir: b.workdir.clone(),
        egress_dir_fd: None,
        egress_vm: b.egress.then_some(if vsock {
            crate::VmEgress::Vsock {
                cid: HOST_CID,
                port: u32::from(aibox_types::EGRESS_PROXY_PORT),
            }
        } else {
            crate::VmEgress::Tcp(EGRESS_ADDR)
        }),
    };
    std::thread::Builder::new()
        .name("agent".into())
        .spawn(move || crate::serve(agent.into(), cfg))
        .map_err(|e| format!("starting the agent: {e}"))?;
    Ok(())
}

/// Make `new` the root: unmount the initramfs's kernel filesystems, free
/// its files (they are RAM), move `new` over `/` and chroot into it.
fn switch_root(new: &str) -> Result<(), String> {
    for m in ["/proc", "/sys", "/dev"] {
        let _ = aibox_sys::umount2(Path::new(m), libc::MNT_DETACH);
    }
    if let Ok(rd) = std::fs::read_dir("/") {
        for e in rd.flatten() {
            let name = e.file_name();
            if name == "mnt" {
                continue;
            }
            let p = e.path();
            let _ = if p.is_dir() && !p.is_symlink() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
    std::env::set_current_dir(new).map_err(|e| format!("chdir {new}: {e}"))?;
    aibox_sys::mount(
        Some(Path::new(".")),
        Path::new("/"),
        None,
        libc::MS_MOVE,
        None,
    )
    .map_err(|e| format!("moving the root: {e}"))?;
    std::os::unix::fs::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))
}

/// The shares, the kernel filesystems, a minimal /dev, the workdir, the
/// hostname.
fn finish_root(b: &Boot) -> Result<(), String> {
    for (tag, path) in &b.shares {
        mount(
            tag,
            path,
            "virtiofs",
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
            None,
        )?;
    }
    for v in &b.volumes {
        std::fs::create_dir_all(&v.path).map_err(|e| format!("mkdir {}: {e}", v.path))?;
        let ro = if v.read_only { libc::MS_RDONLY } else { 0 };
        mount(
            &v.tag,
            &v.path,
            "virtiofs",
            ro | libc::MS_NOSUID | libc::MS_NODEV,
            None,
        )?;
    }
    let nosuid = libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV;
    mount("proc", "/proc", "proc", nosuid, None)?;
    mount("sysfs", "/sys", "sysfs", nosuid | libc::MS_RDONLY, None)?;
    mount(
        "tmpfs",
        "/dev",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("mode=755,size=1m"),
    )?;
    for (name, minor) in [
        ("null", 3),
        ("zero", 5),
        ("full", 7),
        ("random", 8),
        ("urandom", 9),
    ] {
        let p = Path::new("/dev").join(name);
        aibox_sys::mknod_char(&p, 0o666, 1, minor)
            .map_err(|e| format!("mknod {}: {e}", p.display()))?;
        let _ = std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o666));
    }
    aibox_sys::mknod_char(Path::new("/dev/tty"), 0o666, 5, 0)
        .map_err(|e| format!("mknod /dev/tty: {e}"))?;
    let _ = std::fs::set_permissions(
        "/dev/tty",
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    );
    mount(
        "devpts",
        "/dev/pts",
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    )?;
    let _ = std::os::unix::fs::symlink("pts/ptmx", "/dev/ptmx");
    mount(
        "shm",
        "/dev/shm",
        "tmpfs",
        nosuid,
        Some("mode=1777,size=64m"),
    )?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let _ = std::os::unix::fs::symlink(target, Path::new("/dev").join(link));
    }
    for d in ["/tmp", "/run"] {
        let _ = std::fs::create_dir_all(d);
    }
    let _ = std::fs::set_permissions("/tmp", std::os::unix::fs::PermissionsExt::from_mode(0o1777));
    mount("tmpfs", "/run", "tmpfs", nosuid, Some("mode=755,size=16m"))?;
    std::fs::create_dir("/run/aibox").map_err(|e| format!("creating /run/aibox: {e}"))?;
    std::fs::set_permissions(
        "/run/aibox",
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .map_err(|e| format!("chmod /run/aibox: {e}"))?;
    let workdir = Path::new(&b.workdir);
    if !workdir.exists() {
        std::fs::create_dir_all(workdir)
            .map_err(|e| format!("creating workdir {}: {e}", workdir.display()))?;
        let uid = b.user.uid();
        std::os::unix::fs::chown(workdir, Some(uid), Some(uid))
            .map_err(|e| format!("chown workdir: {e}"))?;
    }
    aibox_sys::sethostname(&b.hostname).map_err(|e| format!("sethostname: {e}"))?;
    Ok(())
}

/// Serve forever: each connection must start with the token; then its
/// bytes go to and from a new connection to the agent.
fn relay(listener: &Listener, token: &str) -> ! {
    let token: std::sync::Arc<[u8]> = token.as_bytes().into();
    loop {
        let Ok(conn) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let token = token.clone();
        let _ = std::thread::Builder::new()
            .name("vm-conn".into())
            .stack_size(256 * 1024)
            .spawn(move || match conn {
                Conn::Tcp(c) => relay_one(c, &token, false),
                // Hybrid vsock carries no half-close: when the agent's
                // side ends, the host learns it from a full close.
                Conn::Vsock(c) => relay_one(c, &token, true),
            });
    }
}

fn relay_one(mut conn: impl HostConn, token: &[u8], full_close: bool) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut got = [0u8; TOKEN_LEN];
    if conn.read_exact(&mut got).is_err() || !same(&got, token) {
        conn.shutdown_write();
        return;
    }
    let _ = conn.set_read_timeout(None);
    match UnixStream::connect(AGENT_SOCKET) {
        Ok(agent) if full_close => crate::egress::join_closing(Ok(conn), agent),
        Ok(agent) => crate::egress::join(Ok(conn), agent),
        Err(_) => conn.shutdown_write(),
    }
}

/// Compare without an early exit (the time taken says nothing of where
/// a wrong token differs).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_parameters_come_from_the_command_line() {
        let cmdline = "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5 virtio-mmio.device=4K@0xd0001000:6 virtio_blk.x aibox.vsock";
        assert_eq!(
            module_params("/lib/modules/k/virtio/virtio_mmio.ko", cmdline),
            "device=4K@0xd0000000:5 device=4K@0xd0001000:6"
        );
        assert_eq!(module_params("/m/virtio_blk.ko.xz", cmdline), "");
        assert_eq!(module_params("/m/overlay.ko", cmdline), "");
    }

    #[test]
    fn ext4_labels() {
        let mut sb = [0u8; 1024];
        assert_eq!(label_of_superblock(&sb), None);
        sb[0x38] = 0x53;
        sb[0x39] = 0xef;
        assert_eq!(label_of_superblock(&sb), None);
        sb[0x78..0x78 + 5].copy_from_slice(b"upper");
        assert_eq!(label_of_superblock(&sb).as_deref(), Some("upper"));
        sb[0x78..0x88].copy_from_slice(b"0123456789abcdef");
        assert_eq!(
            label_of_superblock(&sb).as_deref(),
            Some("0123456789abcdef")
        );
    }

    #[test]
    fn token_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }

    #[test]
    fn boot_message_round_trips() {
        let b = Boot {
            token: "a".repeat(TOKEN_LEN),
            unix_ms: 1,
            layers: vec!["l0".into()],
            upper: "upper".into(),
            hostname: "h".into(),
            user: aibox_types::User::User,
            env: vec![("A".into(), "b".into())],
            workdir: "/workspace".into(),
            egress: false,
            shares: vec![("s0".into(), "/usr".into())],
            volumes: vec![VolumeShare {
                tag: "s1".into(),
                path: "/data".into(),
                read_only: false,
            }],
        };
        let back: Boot = serde_json::from_slice(&serde_json::to_vec(&b).unwrap()).unwrap();
        assert_eq!(back.layers, ["l0"]);
        assert_eq!(back.volumes[0].path, "/data");
        assert_eq!(back.user, aibox_types::User::User);
    }
}
