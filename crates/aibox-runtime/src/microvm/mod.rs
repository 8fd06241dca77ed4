//! The microVM backend: a sandbox is a guest with its own kernel, on a
//! VMM driven (never written) by aibox: QEMU's `microvm` machine (KVM or
//! TCG), or Firecracker (KVM, under its jailer when there is one).
//!
//! ```text
//!  creator ──spawn──► aibox internal-vm DIR (forks, reports, exits)
//!                        └─ supervisor (own session; own network namespace)
//!                              ├─ qemu -M microvm … (dies with it: PDEATHSIG)
//!                              │    user-mode net, restrict=on:
//!                              │    127.0.0.1:1024 (this netns only) → guest 10.0.2.15:1024
//!                              │    guest 10.0.2.100:3128 → `aibox internal-connect DIR/egress.sock`
//!                              └─ DIR/agent.sock ──relay (token first)──► 127.0.0.1:1024
//! ```
//!
//! With the vsock transport (Firecracker always; QEMU with
//! `AIBOX_VM_TRANSPORT=vsock` and vhost-device-vsock) the guest has no
//! network device at all: the relay opens `CONNECT 1024` on the VMM's
//! hybrid vsock socket `v.sock`, and the supervisor answers the guest's
//! connections to host port 3128 on `v.sock_3128` with the egress proxy.
//! See [`crate::microvm::firecracker`].
//!
//! The supervisor's pid is the record's pid, so "alive", `gc` and destroy
//! work as for the namespace backend; the agent client talks to
//! `agent.sock` unchanged. The root filesystem is the template's layers as
//! read-only ext4 images (made once per layer with `mkfs.ext4 -d`, shared
//! by every VM) under a per-sandbox sparse ext4 disk the size of the disk
//! limit, joined by overlayfs in the guest. Pause and resume are the VMM's
//! (`stop`/`cont` over QMP).

pub mod firecracker;
pub mod host;

use crate::sandbox::state::{Record, Status};
use crate::{Error, Runtime};
use aibox_agent::guest::{Boot, BootReply, AGENT_PORT, TOKEN_LEN};
use aibox_types::{
    BackendKind, CgroupReport, ErrorCode, IsolationReport, LimitReport, SandboxSpec, VmReport,
};
use host::VmError;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::sandbox::state::VmState;

/// What the creator hands the supervisor (`DIR/vm-plan.json`).
#[derive(Debug, Serialize, Deserialize)]
struct Plan {
    launch: Launch,
    /// The hybrid vsock socket (the vsock transport), as in [`VmState`].
    #[serde(default)]
    vsock: Option<PathBuf>,
    /// As root: the uid-slot directory. The VMM runs as the first uid of a
    /// slot the supervisor holds (QEMU's `-runas`, Firecracker's jailer).
    #[serde(default)]
    slots: Option<PathBuf>,
    boot: Boot,
    boot_timeout_ms: u64,
    /// A restore: the VM state arrives through `-incoming` (already in
    /// `args`); hold this snapshot lock (shared) for the sandbox's life.
    #[serde(default)]
    restore_lock: Option<PathBuf>,
    /// virtiofsd and the host directories it serves.
    #[serde(default)]
    virtiofsd: Option<PathBuf>,
    #[serde(default)]
    shares: Vec<Share>,
    /// Volumes' lock files: held (shared) for the sandbox's life, so a
    /// volume it mounts is not removed meanwhile.
    #[serde(default)]
    locks: Vec<PathBuf>,
    /// Where volumes are mounted on the host: the supervisor's own mount
    /// namespace lets go of those it does not serve (it would otherwise
    /// keep every other volume's filesystem alive for the VM's life).
    #[serde(default)]
    volumes_dir: Option<PathBuf>,
}

/// A host directory a virtiofsd serves the guest on `socket` (tag `sI`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Share {
    host: PathBuf,
    socket: PathBuf,
    read_only: bool,
    /// Files others change too (a volume): no caching across requests.
    #[serde(default)]
    shared: bool,
}

/// How the supervisor starts the VMM.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "vmm", rename_all = "snake_case")]
enum Launch {
    Qemu {
        bin: PathBuf,
        args: Vec<String>,
        /// vhost-device-vsock, serving `vhost` to QEMU and the hybrid
        /// vsock socket to us (the vsock transport).
        #[serde(default)]
        vhost_vsock: Option<(PathBuf, PathBuf)>,
        /// A restore: the memory file to hand QEMU (`-incoming defer`).
        #[serde(default)]
        incoming: Option<PathBuf>,
        /// The disks, opened by the supervisor and passed as descriptors.
        #[serde(default)]
        disks: Vec<DiskFd>,
    },
    Firecracker {
        bin: PathBuf,
        /// Its working directory (the chroot under the jailer).
        root: PathBuf,
        /// Start it through the jailer, as a uid of a slot it holds.
        jailer: Option<JailerPlan>,
        /// Load `snap.state`/`snap.mem` from `root` instead of booting.
        restore: bool,
        /// Files to bind-mount read-only into the jail (host file, its
        /// name in `root`): what could not be hard-linked there.
        #[serde(default)]
        binds: Vec<(PathBuf, PathBuf)>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct JailerPlan {
    bin: PathBuf,
    /// The chroot base (`DIR/jail`).
    base: PathBuf,
}

/// A disk image QEMU gets as a descriptor in an fd set (`-add-fd`,
/// `file=/dev/fdset/N`), never by path: once it has dropped its
/// privileges it could not open the path again, and it reopens its images
/// when a migration ends and when the guest runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DiskFd {
    path: PathBuf,
    writable: bool,
    /// The descriptor's number in QEMU.
    fd: i32,
    set: u32,
}

/// The first descriptor number given to QEMU; they stay below 100.
const FIRST_DISK_FD: i32 = 10;
/// Layers a microVM can have (each a descriptor, the disk two more).
const MAX_LAYERS: usize = 80;

/// The descriptors for `layers` (read-only, sets 1..) and `upper` (set
/// n+1, one read-write and one read-only descriptor: QEMU picks by mode).
fn disk_fds(layers: &[PathBuf], upper: &Path) -> Vec<DiskFd> {
    let mut out: Vec<DiskFd> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| DiskFd {
            path: l.clone(),
            writable: false,
            fd: FIRST_DISK_FD + i as i32,
            set: i as u32 + 1,
        })
        .collect();
    let (fd, set) = (FIRST_DISK_FD + layers.len() as i32, layers.len() as u32 + 1);
    for (k, writable) in [true, false].into_iter().enumerate() {
        out.push(DiskFd {
            path: upper.to_path_buf(),
            writable,
            fd: fd + k as i32,
            set,
        });
    }
    out
}

const PLAN: &str = "vm-plan.json";
/// The token, beside the record (0600): snapshots carry it to restores.
const TOKEN: &str = "token";
/// The guest's console, kept up to this size.
const CONSOLE: &str = "console.log";
const CONSOLE_MAX: u64 = 1 << 20;

/// Under TCG a boot takes seconds; on a loaded host many more.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

fn failed(msg: impl Into<String>) -> Error {
    Error::Reported {
        code: ErrorCode::Internal,
        message: msg.into(),
    }
}

fn unavailable(msg: impl Into<String>) -> Error {
    Error::Reported {
        code: ErrorCode::IsolationUnavailable,
        message: msg.into(),
    }
}

/// The VMM a microVM runs on.
enum Vmm {
    Qemu {
        bin: PathBuf,
        accel: String,
        /// The vsock transport: vhost-device-vsock.
        vhost_vsock: Option<PathBuf>,
    },
    Firecracker {
        bin: PathBuf,
        /// The jailer, used when we are root.
        jailer: Option<PathBuf>,
    },
}

impl Vmm {
    fn name(&self) -> &'static str {
        match self {
            Vmm::Qemu { .. } => "qemu",
            Vmm::Firecracker { .. } => "firecracker",
        }
    }

    fn accel(&self) -> &str {
        match self {
            Vmm::Qemu { accel, .. } => accel,
            Vmm::Firecracker { .. } => "kvm",
        }
    }

    fn vsock(&self) -> bool {
        !matches!(
            self,
            Vmm::Qemu {
                vhost_vsock: None,
                ..
            }
        )
    }
}

/// The VMM for a new microVM: `want` (a snapshot's VMM and transport),
/// or else what [`host::detect`] chose (which follows `AIBOX_VMM`) with the
/// transport `AIBOX_VM_TRANSPORT` names (QEMU's default: `net`).
fn choose_vmm(want: Option<(&str, bool)>) -> Result<Vmm, Error> {
    let d = host::detect();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (name, vsock) = match want {
        Some((name, vsock)) => (name.to_string(), Some(vsock)),
        None => {
            // (`detect` follows AIBOX_VMM.)
            let name = match &d.choice {
                Ok((vmm, _)) => vmm.clone(),
                Err(why) => {
                    return Err(unavailable(format!(
                        "the microvm backend is not available on this host: {why}"
                    )))
                }
            };
            let vsock = match env("AIBOX_VM_TRANSPORT").as_deref() {
                None => None,
                Some("vsock") => Some(true),
                Some("net") => Some(false),
                Some(t) => {
                    return Err(unavailable(format!(
                        "AIBOX_VM_TRANSPORT is {t:?}: it must be net or vsock"
                    )))
                }
            };
            (name, vsock)
        }
    };
    if name == "firecracker" {
        return firecracker_vmm(
            d.firecracker,
            d.kvm,
            d.jailer,
            aibox_sys::geteuid() == 0,
            vsock,
        );
    }
    let Some((bin, _)) = d.qemu else {
        return Err(unavailable(
            "QEMU is not installed: install Debian's qemu-system-x86",
        ));
    };
    let accel = match d.choice {
        Ok((vmm, accel)) if vmm == "qemu" => accel,
        _ => "tcg".to_string(),
    };
    let vhost_vsock = match vsock {
        Some(true) => Some(d.vhost_vsock.ok_or_else(|| {
            unavailable(
                "the vsock transport under QEMU needs vhost-device-vsock (`cargo install vhost-device-vsock`; scripts/setup.sh installs it)",
            )
        })?),
        _ => None,
    };
    Ok(Vmm::Qemu {
        bin,
        accel,
        vhost_vsock,
    })
}

/// Firecracker, if it can run here: KVM, vsock, and as root only under its
/// jailer, so a VMM escape never lands as the host's root (the review's
/// M6: without a jailer it ran as root).
fn firecracker_vmm(
    bin: Option<PathBuf>,
    kvm: Result<i32, String>,
    jailer: Option<PathBuf>,
    root: bool,
    vsock: Option<bool>,
) -> Result<Vmm, Error> {
    let Some(bin) = bin else {
        return Err(unavailable(
            "Firecracker is not installed (no `firecracker` on PATH): install it, or use QEMU (Debian's qemu-system-x86)",
        ));
    };
    if let Err(e) = kvm {
        return Err(unavailable(format!("Firecracker needs KVM: {e}")));
    }
    if vsock == Some(false) {
        return Err(unavailable(
            "Firecracker reaches its guest over vsock only (AIBOX_VM_TRANSPORT=net is QEMU's)",
        ));
    }
    let jailer = match (jailer, root) {
        (Some(j), true) => Some(j),
        (None, true) => {
            return Err(unavailable(
                "Firecracker runs as root only under its jailer, and there is no `jailer` on PATH: install the jailer from Firecracker's release, run the server rootless, or use QEMU",
            ))
        }
        (_, false) => None,
    };
    Ok(Vmm::Firecracker { bin, jailer })
}

/// The guest artifacts, built on first use (and again when the aibox
/// binary that is the guest's init changed).
fn artifacts(rt: &Runtime) -> Result<(PathBuf, host::Manifest), Error> {
    let dir = rt.dirs().data.join("vm");
    let init = rt.helper_bin();
    if let Ok(m) = host::load_quick(&dir, &init) {
        return Ok((dir, m));
    }
    let _lock = lock_file(&dir.join(".build.lock"))?;
    if let Ok(m) = host::load_quick(&dir, &init) {
        return Ok((dir, m));
    }
    let (m, _) = host::build_artifacts(&dir, host::DEFAULT_KERNEL_PACKAGE, &init, false, &mut |_| {})
        .map_err(|e| match e {
            VmError::Failed(m) | VmError::Unavailable(m) => unavailable(format!(
                "the microVM guest artifacts could not be built ({m}); `aibox vm artifacts` shows the steps"
            )),
            other => other.into(),
        })?;
    Ok((dir, m))
}

fn lock_file(path: &Path) -> Result<std::fs::File, Error> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|e| failed(format!("creating {}: {e}", p.display())))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| failed(format!("opening {}: {e}", path.display())))?;
    aibox_sys::lock_exclusive(f.as_fd())
        .map_err(|e| failed(format!("locking {}: {e}", path.display())))?;
    Ok(f)
}

/// Bytes and entries under `dir` (not following links).
fn tree_size(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            entries += 1;
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            bytes += md.len().div_ceil(4096) * 4096;
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, entries)
}

/// The writable disk's name: its serial (QEMU) and its ext4 label.
const UPPER_NAME: &str = "upper";

/// The ext4 label of a layer image: the first 16 hex digits of its key
/// (its file name), the most a label holds.
fn layer_label(img: &Path) -> String {
    let name = img.file_name().unwrap_or_default().to_string_lossy();
    name.chars().take(16).collect()
}

/// A template layer as a read-only ext4 image, made once (`mkfs.ext4 -d`
/// copies modes, owners, xattrs and whiteout devices) and shared. Its
/// label is [`layer_label`] (`-v2` images have one).
fn layer_image(images: &Path, layer: &Path) -> Result<PathBuf, Error> {
    use sha2::{Digest, Sha256};
    let key: String = Sha256::digest(layer.as_os_str().as_encoded_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    let img = images.join(format!("{key}-v2.ext4"));
    if img.exists() {
        return Ok(img);
    }
    let _lock = lock_file(&images.join(format!(".{key}.lock")))?;
    if img.exists() {
        return Ok(img);
    }
    let (bytes, entries) = tree_size(layer);
    // Room for metadata, the journal-less filesystem's own blocks, and
    // rounding: a fifth more plus 16 MiB.
    let size = (bytes + bytes / 5 + (16 << 20) + entries * 512).div_ceil(1 << 20);
    let tmp = images.join(format!(".{key}.{}.tmp", std::process::id()));
    let made = run_tool(
        Command::new(mkfs_ext4())
            .args(["-q", "-F", "-O", "^has_journal", "-m", "0"])
            .args(["-E", "root_owner=0:0", "-L", &key[..16], "-N"])
            .arg((entries + 64).to_string())
            .arg("-d")
            .arg(layer)
            .arg(&tmp)
            .arg(format!("{size}M")),
        &format!("making the disk image of layer {}", layer.display()),
        E2FSPROGS,
    );
    if made.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    made?;
    std::fs::rename(&tmp, &img).map_err(|e| failed(format!("writing {}: {e}", img.display())))?;
    Ok(img)
}

/// Run a host tool to completion: `what` names the step in errors; a tool
/// that cannot start is `isolation_unavailable` (with `missing`, what to
/// install), one that fails says why on its stderr.
fn run_tool(cmd: &mut Command, what: &str, missing: &str) -> Result<(), Error> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| unavailable(format!("{what}: {e} ({missing})")))?;
    if !out.status.success() {
        return Err(failed(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

const E2FSPROGS: &str = "mkfs.ext4 is Debian's e2fsprogs";

/// `mkfs.ext4` from PATH, else from the sbin directories (which a
/// user's PATH often lacks).
fn mkfs_ext4() -> PathBuf {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d: PathBuf| d.join("mkfs.ext4"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| "mkfs.ext4".into())
}

/// A new sparse ext4 disk of `bytes`.
fn blank_disk(path: &Path, bytes: u64) -> Result<(), Error> {
    run_tool(
        Command::new(mkfs_ext4())
            .args(["-q", "-F", "-m", "0", "-L", UPPER_NAME, "-E"])
            .arg("root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1")
            .arg(path)
            .arg(format!("{}k", bytes / 1024)),
        "making the sandbox disk",
        E2FSPROGS,
    )
}

/// QEMU's option syntax doubles a comma inside a value.
fn qemu_escape(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

/// The guest's memory must hold the unpacked initramfs (twice, while it
/// unpacks) and leave room for the kernel and the agent.
pub fn min_memory_mib(m: &host::Manifest) -> u64 {
    128 + 2 * m.initramfs.bytes.div_ceil(1 << 20)
}

/// A microVM snapshot's own files, beside its `meta.json`.
const SNAP_VM: &str = "vm.json";
const SNAP_MEMORY: &str = "memory.bin";
/// Firecracker's device state (QEMU keeps it in the memory file).
const SNAP_STATE: &str = "vm.state";
const SNAP_DISK: &str = "disk.ext4";

/// What a restore needs of the VM a snapshot was taken from.
#[derive(Debug, Serialize, Deserialize)]
struct SnapVm {
    vm: VmState,
    token: String,
}

/// Create a microVM sandbox (or restore one from a snapshot taken with
/// its memory): its record once the agent answers.
pub(crate) fn create(rt: &Runtime, spec: &SandboxSpec) -> Result<Record, Error> {
    spec.validate().map_err(Error::InvalidSpec)?;
    if !spec.mounts.is_empty() {
        return Err(Error::Unsupported(
            "host mounts are not available in a microVM: copy files in with `aibox cp` or the files API".into(),
        ));
    }
    if matches!(
        spec.network_enforcement,
        Some(aibox_types::egress::Enforcement::L4)
    ) {
        return Err(Error::Unsupported(
            "network enforcement l4 is not available in a microVM: its egress goes through the proxy (enforcement proxy)".into(),
        ));
    }
    rt.dirs().ensure()?;
    let template = crate::image::template::resolve(&rt.dirs().templates(), &spec.template)?;
    // Volumes are served over virtiofs as the host template is: held
    // (shared) until the supervisor holds them too.
    let volumes = spec
        .volumes
        .iter()
        .map(|v| rt.hold_volume(&v.id).map(|h| (v.clone(), h)))
        .collect::<Result<Vec<_>, _>>()?;
    if !volumes.is_empty() {
        if aibox_sys::geteuid() != 0 {
            return Err(unavailable(
                "volumes reach a microVM over virtiofs, which needs root here (virtiofsd cannot drop its groups in a user namespace): use backend namespaces",
            ));
        }
        if spec.snapshot.is_some() {
            return Err(Error::Unsupported(
                "a microVM restored from a snapshot cannot mount volumes (its machine is the snapshot's): restore it without volumes".into(),
            ));
        }
    }
    let virtiofsd = if template.binds.is_empty() && volumes.is_empty() {
        None
    } else {
        Some(find_virtiofsd().ok_or_else(|| {
            unavailable(format!(
                "template {:?} or the volumes are shared with a microVM through virtiofs: install virtiofsd (Debian's qemu-system-common ships one), or use an image template and no volumes",
                spec.template
            ))
        })?)
    };
    if !template.binds.is_empty() && aibox_sys::geteuid() != 0 {
        return Err(unavailable(format!(
            "template {:?} shares the host's /usr over virtiofs, which needs root here (virtiofsd cannot drop its groups in a user namespace): use an image template",
            spec.template
        )));
    }
    if !template.binds.is_empty() && spec.snapshot.is_some() {
        return Err(Error::Unsupported(
            "a microVM on a host-based template has no snapshots (virtiofs cannot be saved)".into(),
        ));
    }
    let spec = &crate::with_image_defaults(spec, &template)?;
    // The floor under any guest, checked before the artifacts are built.
    if spec.snapshot.is_none() && spec.memory_bytes() < 128 << 20 {
        return Err(Error::InvalidSpec(format!(
            "memory {}m is too small for a microVM: it needs at least 128m plus twice its initramfs",
            spec.memory_bytes() >> 20
        )));
    }
    // A restore: the snapshot's machine (memory, vCPUs, disk, kernel, VMM)
    // and its lock, held until the supervisor holds it too.
    let restore = match &spec.snapshot {
        Some(sid) => Some(open_vm_snapshot(rt, sid, spec)?),
        None => None,
    };
    let vmm = choose_vmm(
        restore
            .as_ref()
            .map(|(_, snap, _)| (snap.vm.vmm.as_str(), snap.vm.vsock.is_some())),
    )?;
    let (kernel, initramfs, kernel_release, memory_mib, vcpus, layers) = match &restore {
        Some((dir, snap, _)) => (
            dir.join("kernel"),
            dir.join("initramfs"),
            String::new(),
            snap.vm.memory_mib,
            snap.vm.vcpus,
            snap.vm.layers.clone(),
        ),
        None => {
            let (art, manifest) = artifacts(rt)?;
            let memory_mib = spec.memory_bytes() >> 20;
            let min = min_memory_mib(&manifest);
            if memory_mib < min {
                return Err(Error::InvalidSpec(format!(
                    "memory {memory_mib}m is too small for a microVM: the minimum here is {min}m"
                )));
            }
            let images = rt.dirs().data.join("vm").join("layers");
            let layers = template
                .layers
                .iter()
                .map(|l| layer_image(&images, l))
                .collect::<Result<Vec<_>, _>>()?;
            (
                art.join(&manifest.kernel.file),
                art.join(&manifest.initramfs.file),
                manifest.kernel_release.clone(),
                memory_mib,
                spec.cpus.map_or(1, |c| c.ceil().clamp(1.0, 64.0) as u32),
                layers,
            )
        }
    };
    if layers.len() > MAX_LAYERS {
        return Err(Error::Unsupported(format!(
            "template {:?} has {} layers; a microVM takes at most {MAX_LAYERS}: flatten it (build a template FROM it)",
            spec.template,
            layers.len()
        )));
    }
    if virtiofsd.is_some() && !matches!(vmm, Vmm::Qemu { .. }) {
        return Err(unavailable(format!(
            "template {:?} or the volumes are shared over virtiofs, which aibox drives under QEMU only: use an image template and no volumes, or QEMU",
            spec.template
        )));
    }
    for l in &layers {
        if !l.exists() {
            return Err(failed(format!(
                "the layer image {} of this snapshot is gone",
                l.display()
            )));
        }
    }
    let mut report = report(spec, &vmm, &kernel_release, memory_mib, vcpus);
    if let Some(v) = report.vm.as_mut() {
        v.shared = template
            .binds
            .iter()
            .map(|(_, g)| format!("{} (virtiofs, read-only)", g.display()))
            .chain(volumes.iter().map(|(v, _)| {
                format!(
                    "{} (virtiofs, volume {}, {})",
                    v.path.display(),
                    v.name,
                    if v.read_only {
                        "read-only"
                    } else {
                        "read-write"
                    }
                )
            }))
            .collect();
        if restore.is_some() {
            v.kernel = "restored".into();
        }
    }
    if let Some(level) = spec.require_isolation {
        let gaps = report.gaps(level);
        if !gaps.is_empty() {
            return Err(crate::SetupError::Isolation {
                level,
                gaps,
                report: Box::new(report),
            }
            .into());
        }
    }

    let id = crate::random_id();
    let dir = rt.dirs().sandbox(&id);
    std::fs::create_dir(&dir).map_err(|e| failed(format!("creating {}: {e}", dir.display())))?;
    let result = (|| -> Result<Record, Error> {
        // Firecracker's names are relative to its working directory: the
        // sandbox directory, or its chroot under the jailer.
        let root = match &vmm {
            Vmm::Firecracker {
                bin,
                jailer: Some(_),
            } => {
                let name = bin.file_name().unwrap_or_default();
                dir.join("jail").join(name).join(&id).join("root")
            }
            _ => dir.clone(),
        };
        std::fs::create_dir_all(&root)
            .map_err(|e| failed(format!("creating {}: {e}", root.display())))?;
        let cgroup = vmm_cgroup(rt, &id, memory_mib)?;
        let mut report = report.clone();
        if cgroup.version != "none" {
            report.cgroups.version = cgroup.version.clone();
            report.cgroups.pids = aibox_types::LimitReport::applied(vmm_pids());
        }
        let upper = root.join(crate::microvm::firecracker::UPPER);
        let token = match &restore {
            Some((sdir, snap, _)) => {
                sparse_copy(&sdir.join(SNAP_DISK), &upper)?;
                snap.token.clone()
            }
            None => {
                blank_disk(&upper, spec.disk_bytes())?;
                let mut token = [0u8; TOKEN_LEN / 2];
                crate::fill_random(&mut token)
                    .map_err(|e| failed(format!("no randomness for the token: {e}")))?;
                token.iter().map(|b| format!("{b:02x}")).collect()
            }
        };
        write_private(&dir.join(TOKEN), token.as_bytes())?;
        let firecracker = matches!(vmm, Vmm::Firecracker { .. });
        let control = if firecracker {
            root.join(crate::microvm::firecracker::API)
        } else {
            dir.join("qmp.sock")
        };
        let vsock = vmm
            .vsock()
            .then(|| root.join(crate::microvm::firecracker::VSOCK));
        let rec = Record {
            id: id.clone(),
            status: Status::Creating,
            created_unix_ms: crate::now_ms(),
            pid: aibox_sys::getpid(),
            start_time: aibox_sys::process_start_time(aibox_sys::getpid()).unwrap_or(0),
            spec: spec.clone(),
            isolation: report,
            cgroup,
            uid_slot: None,
            uid_base: None,
            socket: dir.join("agent.sock"),
            scratch_fd: None,
            vm: Some(VmState {
                vmm: vmm.name().into(),
                accel: vmm.accel().into(),
                vmm_pid: 0,
                vmm_start_time: 0,
                control: control.clone(),
                vsock: vsock.clone(),
                root: firecracker.then(|| root.clone()),
                memory_mib,
                vcpus,
                upper: upper.clone(),
                layers: layers.clone(),
                kernel: kernel.clone(),
                initramfs: initramfs.clone(),
                shares: template.binds.clone(),
            }),
        };
        rec.save(&dir)?;
        let hostname = spec
            .hostname
            .clone()
            .unwrap_or_else(|| format!("aibox-{}", &id[..id.len().min(8)]));
        let boot = Boot {
            token,
            unix_ms: crate::now_ms(),
            // QEMU gives each disk the serial we name; Firecracker's disks
            // are found by their ext4 labels.
            layers: if firecracker {
                layers.iter().map(|l| layer_label(l)).collect()
            } else {
                (0..layers.len()).map(|i| format!("l{i}")).collect()
            },
            upper: UPPER_NAME.into(),
            hostname,
            user: spec.user,
            env: crate::namespace::init::base_env(spec, spec.user),
            workdir: spec.workdir.clone(),
            egress: spec.network != aibox_types::NetworkMode::None,
            shares: template
                .binds
                .iter()
                .enumerate()
                .map(|(i, (_, g))| (format!("s{i}"), g.to_string_lossy().into_owned()))
                .collect(),
            volumes: volumes
                .iter()
                .enumerate()
                .map(|(i, (v, _))| aibox_agent::guest::VolumeShare {
                    tag: format!("s{}", template.binds.len() + i),
                    path: v.path.to_string_lossy().into_owned(),
                    read_only: v.read_only,
                })
                .collect(),
        };
        let shares: Vec<Share> = template
            .binds
            .iter()
            .map(|(h, _)| (h.clone(), true, false))
            .chain(
                volumes
                    .iter()
                    .map(|(v, held)| (held.data.clone(), v.read_only, true)),
            )
            .enumerate()
            .map(|(i, (host, read_only, shared))| Share {
                host,
                socket: dir.join(format!("vfs{i}.sock")),
                read_only,
                shared,
            })
            .collect();
        let launch = match &vmm {
            Vmm::Qemu {
                bin,
                accel,
                vhost_vsock,
            } => {
                let vhost = vhost_vsock
                    .as_ref()
                    .map(|b| (b.clone(), dir.join("vhost-vsock.sock")));
                let args = qemu_args(&QemuConfig {
                    accel,
                    kernel: &kernel,
                    initramfs: &initramfs,
                    memory_mib,
                    vcpus,
                    layers: &layers,
                    upper: &upper,
                    qmp: &control,
                    egress: boot.egress.then(|| rt.helper_bin()),
                    incoming: restore.is_some(),
                    shares: &shares,
                    vhost_vsock: vhost.as_ref().map(|(_, s)| s.as_path()),
                });
                Launch::Qemu {
                    bin: bin.clone(),
                    args,
                    vhost_vsock: vhost,
                    incoming: restore.as_ref().map(|(d, _, _)| d.join(SNAP_MEMORY)),
                    disks: disk_fds(&layers, &upper),
                }
            }
            Vmm::Firecracker { bin, jailer } => {
                use crate::microvm::firecracker as fc;
                let mut files: Vec<(PathBuf, String)> = layers
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (l.clone(), fc::layer_name(i)))
                    .collect();
                files.push((kernel.clone(), fc::KERNEL.into()));
                files.push((initramfs.clone(), fc::INITRAMFS.into()));
                if let Some((sdir, _, _)) = &restore {
                    files.push((sdir.join(SNAP_STATE), fc::STATE.into()));
                    files.push((sdir.join(SNAP_MEMORY), fc::MEMORY.into()));
                }
                let mut binds = Vec::new();
                for (from, name) in &files {
                    let to = root.join(name);
                    if std::fs::hard_link(from, &to).is_ok() {
                        continue;
                    }
                    if jailer.is_some() {
                        // A link would point outside the chroot: the
                        // supervisor binds the file over this one.
                        std::fs::File::create(&to)
                            .map_err(|e| failed(format!("creating {}: {e}", to.display())))?;
                        binds.push((from.clone(), to));
                    } else {
                        std::os::unix::fs::symlink(from, &to)
                            .map_err(|e| failed(format!("linking {}: {e}", from.display())))?;
                    }
                }
                if restore.is_none() {
                    let args = format!(
                        "{} {} reboot=k",
                        host::kernel_cmdline(false),
                        aibox_agent::guest::VSOCK_FLAG
                    );
                    let config = fc::config(&fc::Machine {
                        vcpus,
                        memory_mib,
                        boot_args: &args,
                        layers: layers.len(),
                    });
                    std::fs::write(root.join(fc::CONFIG), config.to_string())
                        .map_err(|e| failed(format!("writing the VM configuration: {e}")))?;
                }
                Launch::Firecracker {
                    bin: bin.clone(),
                    root: root.clone(),
                    jailer: jailer.as_ref().map(|j| JailerPlan {
                        bin: j.clone(),
                        base: dir.join("jail"),
                    }),
                    restore: restore.is_some(),
                    binds,
                }
            }
        };
        let plan = Plan {
            launch,
            vsock,
            slots: (aibox_sys::geteuid() == 0).then(|| rt.dirs().slots()),
            boot,
            boot_timeout_ms: BOOT_TIMEOUT.as_millis() as u64,
            restore_lock: restore.as_ref().map(|(d, _, _)| d.join("lock")),
            virtiofsd: virtiofsd.clone(),
            shares,
            locks: volumes.iter().map(|(_, h)| h.lock_path.clone()).collect(),
            volumes_dir: Some(rt.volumes_dir()),
        };
        write_private(
            &dir.join(PLAN),
            &serde_json::to_vec(&plan).map_err(|e| failed(e.to_string()))?,
        )?;
        let out = Command::new(rt.helper_bin())
            .arg("internal-vm")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| {
                Error::Helper(format!("cannot start {}: {e}", rt.helper_bin().display()))
            })?;
        let reply: crate::HelperReply = serde_json::from_slice(&out.stdout).map_err(|_| {
            Error::Helper(format!(
                "the microVM supervisor failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        })?;
        match reply {
            crate::HelperReply::Ok { .. } => Ok(Record::load(&dir)?),
            crate::HelperReply::Error { code, message } => Err(Error::Reported { code, message }),
        }
    })();
    drop(restore);
    drop(volumes);
    if result.is_err() {
        if let Ok(rec) = Record::load(&dir) {
            kill_vm(&rec);
        }
        rt.remove_vm_cgroup(&id);
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// The most processes and threads the VMM's tree (supervisor, VMM,
/// virtiofsd, QEMU's per-connection egress helper and the supervisor's two
/// relay threads per connection) may have: a guest that opens thousands
/// of connections to the egress address made thousands of host processes
/// without it (the review's M6). Room for about 1,300 connections at once;
/// `AIBOX_VMM_PIDS` sets another bound. A guest that spends it may lose
/// its own VMM (QEMU aborts when it cannot start a thread); the host is
/// unaffected.
pub const VMM_PIDS: u64 = 4096;

/// [`VMM_PIDS`], or what `AIBOX_VMM_PIDS` says (at least 64).
pub fn vmm_pids() -> u64 {
    std::env::var("AIBOX_VMM_PIDS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(VMM_PIDS, |n| n.max(64))
}

/// Memory the VMM's tree may use beyond the guest's RAM: QEMU itself, its
/// translation cache under TCG, virtiofsd, the supervisor.
const VMM_OVERHEAD: u64 = 768 << 20;

/// Name prefix of a microVM's cgroup (`gc` removes those with no sandbox).
pub const VM_CGROUP_PREFIX: &str = "aibox-vm-";

/// As root, a cgroup for the sandbox's whole host side (the supervisor
/// joins it before it starts anything): memory for the guest's RAM plus
/// [`VMM_OVERHEAD`], at most [`VMM_PIDS`] processes. Rootless hosts rarely
/// delegate cgroups: none, and the report says so.
fn vmm_cgroup(
    rt: &Runtime,
    id: &str,
    memory_mib: u64,
) -> Result<crate::sandbox::cgroup::Cgroup, Error> {
    let none = crate::sandbox::cgroup::Cgroup {
        version: "none".into(),
        dirs: vec![],
    };
    if aibox_sys::geteuid() != 0 {
        return Ok(none);
    }
    let limits = crate::sandbox::cgroup::Limits {
        memory: Some((memory_mib << 20) + VMM_OVERHEAD),
        pids: Some(vmm_pids()),
        ..Default::default()
    };
    crate::sandbox::cgroup::Cgroup::create(
        rt.cgroup_layout(),
        &format!("{VM_CGROUP_PREFIX}{id}"),
        &limits,
    )
    .map(|(cg, _)| cg)
    .map_err(|e| failed(format!("the VMM's cgroup: {e}")))
}

/// A snapshot taken with memory, for a restore of `spec`: its directory,
/// what the VM was, and its lock held shared.
fn open_vm_snapshot(
    rt: &Runtime,
    sid: &str,
    spec: &SandboxSpec,
) -> Result<(PathBuf, SnapVm, std::os::fd::OwnedFd), Error> {
    let (dir, lock) = rt.hold_snapshot(sid)?;
    let meta = rt.snapshot_info(sid)?;
    if meta.template != spec.template {
        return Err(Error::InvalidSpec(format!(
            "snapshot {sid} was taken from template {:?}, not {:?}",
            meta.template, spec.template
        )));
    }
    let snap: SnapVm = std::fs::read(dir.join(SNAP_VM))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            Error::InvalidSpec(format!(
                "snapshot {sid} holds no microVM (a filesystem snapshot of a namespace sandbox): restore it with backend namespaces"
            ))
        })?;
    let want = (
        spec.memory_bytes() >> 20,
        spec.cpus.map_or(1, |c| c.ceil().clamp(1.0, 64.0) as u32),
        spec.disk_bytes(),
    );
    let had = (snap.vm.memory_mib, snap.vm.vcpus, meta.spec.disk_bytes());
    if want != had {
        return Err(Error::InvalidSpec(format!(
            "a microVM resumes on the machine it was saved from: memory {}m, {} vCPUs, disk {}m (asked for {}m, {}, {}m)",
            had.0,
            had.1,
            had.2 >> 20,
            want.0,
            want.1,
            want.2 >> 20
        )));
    }
    Ok((dir, snap, lock))
}

/// Copy a disk image, keeping its holes.
fn sparse_copy(from: &Path, to: &Path) -> Result<(), Error> {
    run_tool(
        Command::new("cp")
            .args(["--sparse=always", "--reflink=auto"])
            .arg(from)
            .arg(to),
        &format!("copying {}", from.display()),
        "cp is Debian's coreutils",
    )
}

/// Save a running microVM into `dir` (a snapshot being written): its
/// memory and device state (QEMU's migration to a file, with the guest
/// stopped), its disk, and what a restore needs. The guest runs on
/// afterwards unless it was paused. Returns the bytes written.
pub(crate) fn snapshot_into(rt: &Runtime, rec: &Record, dir: &Path) -> Result<u64, Error> {
    let vm = vm_of(rec)?;
    if !rec.alive() {
        return Err(Error::Gone(rec.id.clone()));
    }
    if !vm.shares.is_empty() {
        return Err(Error::Unsupported(format!(
            "sandbox {} runs on a host-based template, shared over virtiofs, which QEMU cannot save: snapshots need an image template",
            rec.id
        )));
    }
    if !rec.spec.volumes.is_empty() {
        return Err(Error::Unsupported(format!(
            "sandbox {} mounts volumes over virtiofs, which QEMU cannot save: a microVM with volumes has no snapshots (snapshot the volumes instead)",
            rec.id
        )));
    }
    if vm.vmm == "qemu" && vm.vsock.is_some() {
        return Err(Error::Unsupported(format!(
            "sandbox {} reaches its guest over vhost-user vsock, which QEMU cannot save: snapshots need the net transport (AIBOX_VM_TRANSPORT=net) or Firecracker",
            rec.id
        )));
    }
    let token = std::fs::read_to_string(rt.dirs().sandbox(&rec.id).join(TOKEN))
        .map_err(|e| failed(format!("reading the sandbox's token: {e}")))?;
    let was_running = !paused(rec);
    set_paused(rec, true)?;
    let saved = (|| -> Result<(), Error> {
        match &vm.root {
            Some(root) => save_firecracker(&vm.control, root, dir)?,
            None => save_qemu(&vm.control, &dir.join(SNAP_MEMORY))?,
        }
        sparse_copy(&vm.upper, &dir.join(SNAP_DISK))?;
        for (from, to) in [(&vm.kernel, "kernel"), (&vm.initramfs, "initramfs")] {
            if std::fs::hard_link(from, dir.join(to)).is_err() {
                std::fs::copy(from, dir.join(to))
                    .map_err(|e| failed(format!("keeping {}: {e}", from.display())))?;
            }
        }
        let snap = SnapVm {
            vm: vm.clone(),
            token: token.trim().to_string(),
        };
        write_private(
            &dir.join(SNAP_VM),
            &serde_json::to_vec_pretty(&snap).map_err(|e| failed(e.to_string()))?,
        )
    })();
    if was_running {
        set_paused(rec, false)?;
    }
    saved?;
    let used = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).map_or(0, |m| m.blocks() * 512)
    };
    Ok([SNAP_MEMORY, SNAP_STATE, SNAP_DISK]
        .iter()
        .map(|f| used(&dir.join(f)))
        .sum())
}

/// QEMU's migration of the stopped guest (memory and device state) into
/// `memory`, a file we open and hand over (QEMU, confined, cannot).
fn save_qemu(qmp_sock: &Path, memory: &Path) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(memory)
        .map_err(|e| failed(format!("creating {}: {e}", memory.display())))?;
    let mut monitor = Qmp::connect(qmp_sock)?;
    monitor.call_with_fd(
        "getfd",
        serde_json::json!({ "fdname": "snapshot" }),
        file.as_fd(),
    )?;
    monitor.call("migrate", Some(serde_json::json!({"uri": "fd:snapshot"})))?;
    drop(monitor);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let st = qmp(qmp_sock, "query-migrate", None)?;
        match st.get("status").and_then(|s| s.as_str()) {
            Some("completed") => return Ok(()),
            Some("failed" | "cancelled") => {
                return Err(failed(format!(
                    "saving the microVM failed: {}",
                    st.get("error-desc").and_then(|d| d.as_str()).unwrap_or("?")
                )))
            }
            _ if Instant::now() > deadline => {
                let _ = qmp(qmp_sock, "migrate_cancel", None);
                return Err(failed("saving the microVM took over 300 s"));
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Firecracker's full snapshot of the paused guest, written in its root
/// (the names it can reach) and moved into the snapshot `dir`. They are
/// left readable: a jailed restore reads them as another uid, and only
/// root reaches the snapshot directory.
fn save_firecracker(api: &Path, root: &Path, dir: &Path) -> Result<(), Error> {
    use crate::microvm::firecracker as fc;
    for f in [fc::STATE, fc::MEMORY] {
        let _ = std::fs::remove_file(root.join(f));
    }
    fc::snapshot(api)?;
    for (from, to) in [(fc::STATE, SNAP_STATE), (fc::MEMORY, SNAP_MEMORY)] {
        let (from, to) = (root.join(from), dir.join(to));
        if std::fs::rename(&from, &to).is_err() {
            sparse_copy(&from, &to)?;
            let _ = std::fs::remove_file(&from);
        }
        std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .map_err(|e| failed(format!("keeping {}: {e}", to.display())))?;
    }
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(data))
        .map_err(|e| failed(format!("writing {}: {e}", path.display())))
}

/// What the isolation report says of a microVM sandbox.
fn report(
    spec: &SandboxSpec,
    vmm: &Vmm,
    kernel: &str,
    memory_mib: u64,
    vcpus: u32,
) -> IsolationReport {
    let mut r = IsolationReport {
        backend: BackendKind::Microvm.as_str().into(),
        rootless: aibox_sys::geteuid() != 0,
        cgroups: CgroupReport {
            version: "none".into(),
            memory: LimitReport::applied(memory_mib << 20),
            cpu: LimitReport {
                requested: spec.cpus.map(|c| (c * 1000.0) as u64),
                applied: spec.cpus.is_some(),
                reason: spec
                    .cpus
                    .map(|_| "whole vCPUs: the guest gets the requested cores rounded up".into()),
            },
            ..Default::default()
        },
        disk_quota: LimitReport::applied(spec.disk_bytes()),
        disk_quota_mechanism: "disk size (virtio-blk)".into(),
        overlay_rootfs: true,
        sys: "guest kernel".into(),
        network: "none".into(),
        vm: Some(VmReport {
            vmm: vmm.name().into(),
            accel: vmm.accel().into(),
            machine: match vmm {
                Vmm::Qemu { .. } => "microvm".into(),
                Vmm::Firecracker {
                    jailer: Some(_), ..
                } => "firecracker (jailed)".into(),
                Vmm::Firecracker { jailer: None, .. } => "firecracker".into(),
            },
            transport: if vmm.vsock() { "vsock" } else { "user-net" }.into(),
            vmm_user: match (vmm, aibox_sys::geteuid() == 0) {
                (_, false) => "the caller (unprivileged)",
                (Vmm::Qemu { .. }, true) => "a uid of its own, with QEMU's seccomp sandbox",
                (
                    Vmm::Firecracker {
                        jailer: Some(_), ..
                    },
                    true,
                ) => "a uid of its own, jailed (chroot, seccomp)",
                (Vmm::Firecracker { jailer: None, .. }, true) => "root (refused: no jailer)",
            }
            .into(),
            kernel: kernel.to_string(),
            vcpus,
            memory_mib,
            disk_mib: spec.disk_bytes() >> 20,
            vmm_netns: true,
            host_network: false,
            shared: vec![],
        }),
        ..Default::default()
    };
    if spec.network != aibox_types::NetworkMode::None {
        let e = aibox_types::egress::proxy_report(spec.network, None);
        r.network = e.enforcement.to_string();
        r.egress = Some(e);
    }
    r.level = Some(r.achieved_level());
    r
}

struct QemuConfig<'a> {
    accel: &'a str,
    kernel: &'a Path,
    initramfs: &'a Path,
    memory_mib: u64,
    vcpus: u32,
    layers: &'a [PathBuf],
    upper: &'a Path,
    qmp: &'a Path,
    /// The aibox binary: forward the guest's proxy address through
    /// `aibox internal-connect @`[`EGRESS_NAME`].
    egress: Option<PathBuf>,
    /// Wait for the VM's state (`migrate-incoming`) instead of booting.
    incoming: bool,
    /// virtiofs shares; tags `s0`, `s1`...
    shares: &'a [Share],
    /// The vsock transport: vhost-device-vsock's vhost-user socket. The
    /// guest then has no network device.
    vhost_vsock: Option<&'a Path>,
}

/// QEMU's arguments: a `microvm` machine with no firmware, no default
/// devices, the kernel entered directly, and only the disks and the one
/// network device the sandbox needs.
fn qemu_args(c: &QemuConfig<'_>) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "-M".into(),
        host::MACHINE.into(),
        "-accel".into(),
        c.accel.into(),
        "-cpu".into(),
        "max".into(),
        "-smp".into(),
        c.vcpus.to_string(),
        "-m".into(),
        format!("{}M", c.memory_mib),
        "-nodefaults".into(),
        // Modern (version 2) virtio-mmio: vhost-user devices need it.
        "-global".into(),
        "virtio-mmio.force-legacy=false".into(),
        "-no-user-config".into(),
        "-nographic".into(),
        "-no-reboot".into(),
        "-serial".into(),
        "stdio".into(),
        "-kernel".into(),
        c.kernel.to_string_lossy().into_owned(),
        "-initrd".into(),
        c.initramfs.to_string_lossy().into_owned(),
        "-append".into(),
        match c.vhost_vsock {
            Some(_) => format!(
                "{} {}",
                host::kernel_cmdline(false),
                aibox_agent::guest::VSOCK_FLAG
            ),
            None => host::kernel_cmdline(false),
        },
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", qemu_escape(c.qmp)),
    ];
    let disks = disk_fds(c.layers, c.upper);
    for d in &disks {
        a.push("-add-fd".into());
        a.push(format!("fd={},set={}", d.fd, d.set));
    }
    // No image locks: the descriptors of one set are separate opens of
    // the same file, whose locks would conflict with each other when QEMU
    // reopens the disk; each disk is this VM's alone (the layers are
    // read-only for every VM).
    for i in 0..c.layers.len() {
        a.push("-drive".into());
        a.push(format!(
            "id=l{i},file=/dev/fdset/{},file.locking=off,format=raw,if=none,readonly=on",
            i + 1
        ));
        a.push("-device".into());
        a.push(format!("virtio-blk-device,drive=l{i},serial=l{i}"));
    }
    a.push("-drive".into());
    a.push(format!(
        "id=upper,file=/dev/fdset/{},file.locking=off,format=raw,if=none,cache=writeback,discard=unmap",
        c.layers.len() + 1
    ));
    a.push("-device".into());
    a.push("virtio-blk-device,drive=upper,serial=upper".into());
    if c.vhost_vsock.is_none() {
        let mut net = format!(
            "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{AGENT_PORT}-{}:{AGENT_PORT}",
            aibox_agent::guest::GUEST_ADDR
        );
        if let Some(bin) = &c.egress {
            let ea = aibox_agent::guest::EGRESS_ADDR;
            net.push_str(&format!(
                ",guestfwd=tcp:{}:{}-cmd:{} internal-connect @{EGRESS_NAME}",
                ea.ip(),
                ea.port(),
                qemu_escape(bin),
            ));
        }
        a.push("-netdev".into());
        a.push(net);
        a.push("-device".into());
        a.push("virtio-net-device,netdev=n0".into());
    }
    if !c.shares.is_empty() || c.vhost_vsock.is_some() {
        // vhost-user needs the guest's RAM shared with its backends.
        if let Some(m) = a.iter_mut().find(|x| x.starts_with("microvm,")) {
            m.push_str(",memory-backend=mem");
        }
        a.push("-object".into());
        a.push(format!(
            "memory-backend-memfd,id=mem,size={}M,share=on",
            c.memory_mib
        ));
        for (i, share) in c.shares.iter().enumerate() {
            a.push("-chardev".into());
            a.push(format!(
                "socket,id=vfs{i},path={}",
                qemu_escape(&share.socket)
            ));
            a.push("-device".into());
            a.push(format!("vhost-user-fs-device,chardev=vfs{i},tag=s{i}"));
        }
        if let Some(sock) = c.vhost_vsock {
            a.push("-chardev".into());
            a.push(format!("socket,id=vsock,path={}", qemu_escape(sock)));
            a.push("-device".into());
            a.push("vhost-user-vsock-device,chardev=vsock".into());
        }
    }
    if c.incoming {
        // The supervisor hands the memory file over QMP (`getfd`): QEMU
        // itself may not be able to open it.
        a.push("-incoming".into());
        a.push("defer".into());
    }
    a
}

/// The abstract Unix socket (in the supervisor's own network namespace)
/// where the supervisor takes QEMU's egress connections to the proxy.
pub const EGRESS_NAME: &str = "aibox-vm-egress";

// ---- the supervisor (`aibox internal-vm DIR`)

/// Start the VM described in `DIR/vm-plan.json`; print a [`HelperReply`]
/// once its agent answers (or it failed), and keep serving in a child
/// process of its own session. Returns the exit code of the reporting
/// process.
///
/// [`HelperReply`]: crate::HelperReply
pub fn supervise(dir: &Path) -> i32 {
    let reply = |r: crate::HelperReply| {
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
    };
    let (r, w) = match aibox_sys::pipe() {
        Ok(p) => p,
        Err(e) => {
            reply(crate::HelperReply::Error {
                code: ErrorCode::Internal,
                message: format!("pipe: {e}"),
            });
            return 1;
        }
    };
    match aibox_sys::fork() {
        Ok(aibox_sys::Fork::Parent(_)) => {
            drop(w);
            let mut text = String::new();
            let _ = std::fs::File::from(r).read_to_string(&mut text);
            if text.trim().is_empty() {
                reply(crate::HelperReply::Error {
                    code: ErrorCode::Internal,
                    message: format!(
                        "the microVM supervisor ended without a word (see {})",
                        dir.join(CONSOLE).display()
                    ),
                });
                return 1;
            }
            print!("{text}");
            0
        }
        Ok(aibox_sys::Fork::Child) => {
            drop(r);
            let mut report = std::fs::File::from(w);
            let _ = aibox_sys::new_session();
            let _ = aibox_sys::stdio_to_devnull();
            // Everything the supervisor starts is held to the VMM's cgroup.
            let joined = Record::load(dir)
                .map_err(|e| failed(e.to_string()))
                .and_then(|rec| {
                    rec.cgroup
                        .join_self()
                        .map_err(|e| failed(format!("joining the VMM's cgroup: {e}")))
                });
            match joined.and_then(|()| start(dir)) {
                Ok(vm) => {
                    let ok = crate::HelperReply::Ok { id: vm.id.clone() };
                    let _ = writeln!(report, "{}", serde_json::to_string(&ok).unwrap_or_default());
                    drop(report);
                    serve(vm)
                }
                Err(e) => {
                    let r = crate::HelperReply::Error {
                        code: e.code(),
                        message: e.to_string(),
                    };
                    let _ = writeln!(report, "{}", serde_json::to_string(&r).unwrap_or_default());
                    aibox_sys::exit_now(1)
                }
            }
        }
        Err(e) => {
            reply(crate::HelperReply::Error {
                code: ErrorCode::Internal,
                message: format!("fork: {e}"),
            });
            1
        }
    }
}

struct Running {
    id: String,
    child: std::process::Child,
    /// A restored sandbox's shared lock on its snapshot.
    _hold: Option<std::fs::File>,
    /// Its volumes' shared locks.
    _volumes: Vec<std::fs::File>,
    /// The uid slot a jailed VMM runs as.
    _slot: Option<std::fs::File>,
}

/// virtiofsd: Debian's Rust package or the one QEMU 7 ships.
fn find_virtiofsd() -> Option<PathBuf> {
    [
        "/usr/libexec/virtiofsd",
        "/usr/lib/qemu/virtiofsd",
        "/usr/bin/virtiofsd",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// Serve each share: in a mount namespace of our own, each read-only host
/// directory is bind-mounted over itself read-only, and a virtiofsd
/// (killed with us) serves it on its socket. Returns once every socket
/// exists.
fn start_shares(plan: &Plan, dir: &Path) -> Result<(), String> {
    let Some(bin) = &plan.virtiofsd else {
        return Ok(());
    };
    own_mount_namespace()?;
    if let Some(vols) = &plan.volumes_dir {
        let served: Vec<&Path> = plan.shares.iter().map(|s| s.host.as_path()).collect();
        for m in aibox_sys::mount_points_under(vols) {
            if !served.contains(&m.as_path()) {
                let _ = aibox_sys::umount2(&m, libc::MNT_DETACH);
            }
        }
    }
    for (i, share) in plan.shares.iter().enumerate() {
        if share.read_only {
            bind_read_only(&share.host, &share.host, libc::MS_REC)?;
        }
        let log = std::fs::File::create(dir.join(format!("virtiofsd{i}.log")))
            .map_err(|e| format!("creating virtiofsd{i}.log: {e}"))?;
        // A volume others write too is not cached across requests.
        let cache = if share.shared {
            "cache=none"
        } else {
            "cache=always"
        };
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--socket-path={}", share.socket.display()))
            .arg("-o")
            .arg(format!("source={}", share.host.display()))
            .args(["-o", cache, "-o", "no_xattr", "--rlimit-nofile=0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        aibox_sys::kill_with_parent(&mut cmd, libc::SIGKILL);
        cmd.spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !plan.shares.iter().all(|s| s.socket.exists()) {
        if Instant::now() > deadline {
            return Err(format!(
                "virtiofsd did not start: {}",
                std::fs::read_to_string(dir.join("virtiofsd0.log")).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// A network namespace of our own (in a user namespace of our own when
/// not root), with loopback up: QEMU's forwarded port is reachable from
/// here only.
fn own_netns() -> Result<(), String> {
    if aibox_sys::geteuid() == 0 {
        aibox_sys::unshare(libc::CLONE_NEWNET).map_err(|e| format!("unshare(net): {e}"))?;
    } else {
        let (uid, gid) = (aibox_sys::geteuid(), aibox_sys::getgid());
        aibox_sys::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET)
            .map_err(|e| format!("unshare(user, net): {e}"))?;
        let w = |f: &str, s: String| {
            std::fs::write(format!("/proc/self/{f}"), s).map_err(|e| format!("writing {f}: {e}"))
        };
        w("setgroups", "deny".into())?;
        w("uid_map", format!("{uid} {uid} 1"))?;
        w("gid_map", format!("{gid} {gid} 1"))?;
    }
    aibox_sys::loopback_up().map_err(|e| format!("loopback: {e}"))
}

fn start(dir: &Path) -> Result<Running, Error> {
    let plan: Plan = std::fs::read(dir.join(PLAN))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| failed(format!("no readable {}", dir.join(PLAN).display())))?;
    let _ = std::fs::remove_file(dir.join(PLAN));
    own_netns().map_err(|e| unavailable(format!("the VMM's network namespace: {e}")))?;
    start_shares(&plan, dir)
        .map_err(|e| unavailable(format!("sharing the host template or volumes: {e}")))?;
    if let (
        Launch::Qemu {
            vhost_vsock: Some((bin, sock)),
            ..
        },
        Some(uds),
    ) = (&plan.launch, &plan.vsock)
    {
        start_vhost_vsock(bin, sock, uds, dir)
            .map_err(|e| unavailable(format!("the vsock device: {e}")))?;
    }
    if plan.boot.egress {
        serve_egress(plan.vsock.as_deref(), &dir.join("egress.sock"))?;
    }
    let vmm_log = std::fs::File::create(dir.join("vmm.log"))
        .map_err(|e| failed(format!("creating vmm.log: {e}")))?;
    let (mut cmd, slot) = vmm_command(&plan, dir)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(vmm_log);
    // The VMM runs under `internal-vmm-init`, PID 1 of a pid namespace of
    // its own, which dies with us (a VMM that drops to another uid loses
    // its own parent-death signal) and takes the namespace down with it.
    aibox_sys::kill_with_parent(&mut cmd, libc::SIGKILL);
    let started = Instant::now();
    let mut child = spawn_in_pid_namespace(cmd)?;
    let vmm_pid = match vmm_child(child.id() as i32) {
        Some(p) => p,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(format!(
                "the VMM did not start: {}",
                std::fs::read_to_string(dir.join("vmm.log")).unwrap_or_default()
            )));
        }
    };
    let stdout = child.stdout.take().ok_or_else(|| failed("no console"))?;
    let (tx, rx) = std::sync::mpsc::channel::<bool>();
    let console = dir.join(CONSOLE);
    std::thread::spawn(move || keep_console(stdout, &console, tx));
    let tail = || {
        let text = std::fs::read_to_string(dir.join(CONSOLE)).unwrap_or_default()
            + &std::fs::read_to_string(dir.join("vmm.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(6)..].join(" | ")
    };
    let fail = |child: &mut std::process::Child, msg: String| {
        let _ = child.kill();
        let _ = child.wait();
        failed(msg)
    };
    // Each volume, held (shared) for the sandbox's life.
    let mut volume_locks = Vec::new();
    for path in &plan.locks {
        let f = std::fs::File::open(path)
            .map_err(|e| fail(&mut child, format!("opening a volume's lock: {e}")))?;
        if !aibox_sys::try_lock_shared(f.as_fd()).unwrap_or(false) {
            return Err(fail(&mut child, "a volume is being removed".into()));
        }
        volume_locks.push(f);
    }
    // A restore holds its snapshot (shared) for the sandbox's life.
    let hold = match &plan.restore_lock {
        Some(path) => {
            let f = std::fs::File::open(path)
                .map_err(|e| fail(&mut child, format!("opening the snapshot's lock: {e}")))?;
            if !aibox_sys::try_lock_shared(f.as_fd()).unwrap_or(false) {
                return Err(fail(&mut child, "the snapshot is being deleted".into()));
            }
            Some(f)
        }
        None => None,
    };
    let deadline = started + Duration::from_millis(plan.boot_timeout_ms);
    let mut kernel = String::new();
    if hold.is_none() {
        let ready = rx.recv_timeout(Duration::from_millis(plan.boot_timeout_ms));
        if ready != Ok(true) {
            let why = if ready.is_err() {
                format!(
                    "the microVM did not get ready within {}s: {}",
                    plan.boot_timeout_ms / 1000,
                    tail()
                )
            } else {
                format!("the microVM stopped while booting: {}", tail())
            };
            return Err(fail(&mut child, why));
        }
        match send_boot(&plan.boot, plan.vsock.as_deref()) {
            Ok(r) if r.ok => kernel = r.kernel,
            Ok(r) => {
                let why = format!(
                    "the microVM could not set the sandbox up: {}",
                    r.error.unwrap_or_default()
                );
                return Err(fail(&mut child, why));
            }
            Err(e) => {
                let why = format!("the microVM's agent did not answer ({e}): {}", tail());
                return Err(fail(&mut child, why));
            }
        }
    } else {
        let loaded = match &plan.launch {
            Launch::Qemu { incoming, .. } => {
                resume_incoming(&mut child, dir, incoming.as_deref(), deadline)
            }
            Launch::Firecracker { root, .. } => load_firecracker(&mut child, root, deadline),
        };
        if let Err(e) = loaded {
            return Err(fail(&mut child, format!("{e}: {}", tail())));
        }
    }
    let mut rec = Record::load(dir)?;
    let _ = std::fs::remove_file(&rec.socket);
    let listener = UnixListener::bind(&rec.socket)
        .map_err(|e| fail(&mut child, format!("binding {}: {e}", rec.socket.display())))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&rec.socket, std::fs::Permissions::from_mode(0o600));
    }
    let target = std::sync::Arc::new(RelayTarget {
        token: plan.boot.token.clone(),
        vsock: plan.vsock.clone(),
        dir: dir.to_path_buf(),
    });
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let target = target.clone();
            let _ = std::thread::Builder::new()
                .name("vm-relay".into())
                .stack_size(256 * 1024)
                .spawn(move || relay(conn, &target));
        }
    });
    if hold.is_some() {
        // The guest runs on where it was saved: its agent answers through
        // the new VMM.
        let client = crate::AgentClient::new(&rec.socket);
        while client.ping().is_err() {
            if Instant::now() > deadline {
                return Err(fail(
                    &mut child,
                    format!("the restored microVM's agent did not answer: {}", tail()),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let me = aibox_sys::getpid();
    rec.status = Status::Running;
    rec.pid = me;
    rec.start_time = aibox_sys::process_start_time(me).unwrap_or(0);
    if let Some(vm) = rec.vm.as_mut() {
        vm.vmm_pid = vmm_pid;
        vm.vmm_start_time = aibox_sys::process_start_time(vmm_pid).unwrap_or(0);
    }
    if let Some(v) = rec.isolation.vm.as_mut() {
        if !kernel.is_empty() {
            v.kernel = kernel;
        }
    }
    rec.save(dir)?;
    let _ = std::fs::write(
        dir.join("boot-ms"),
        started.elapsed().as_millis().to_string(),
    );
    Ok(Running {
        id: rec.id,
        child,
        _hold: hold,
        _volumes: volume_locks,
        _slot: slot,
    })
}

/// Spawn `cmd` as PID 1 of a new pid namespace. A thread of its own does
/// it (a thread whose children go to another pid namespace can start no
/// threads) and then stays: the parent-death signal follows the thread
/// that spawned.
fn spawn_in_pid_namespace(mut cmd: Command) -> Result<std::process::Child, Error> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("vmm-parent".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let r = aibox_sys::unshare(libc::CLONE_NEWPID)
                .map_err(|e| unavailable(format!("the VMM's pid namespace: {e}")))
                .and_then(|()| {
                    cmd.spawn()
                        .map_err(|e| unavailable(format!("starting the VMM: {e}")))
                });
            let _ = tx.send(r);
            loop {
                std::thread::park();
            }
        })
        .map_err(|e| failed(format!("a thread for the VMM: {e}")))?;
    rx.recv()
        .map_err(|_| failed("the VMM's parent thread ended"))?
}

/// `aibox internal-vmm-init` (this binary): the VMM's command follows.
fn vmm_init_command() -> Command {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg("internal-vmm-init").arg("--");
    cmd
}

/// The VMM's pid (in our namespace): the child of `init`, its PID 1.
fn vmm_child(init: i32) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
            .unwrap_or_default();
        if let Some(p) = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
        {
            return Some(p);
        }
        if Instant::now() > deadline || aibox_sys::process_start_time(init).is_none() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A uid of its own for the VMM: the first of a free slot's range, which
/// no host user and no other sandbox has; the slot is held while the
/// returned file is open.
fn vmm_uid(slots: &Path) -> Result<(u32, std::fs::File), Error> {
    let slot = crate::sandbox::state::claim_slot(slots)
        .map_err(|e| failed(format!("a uid for the VMM: {e}")))?;
    Ok((crate::sandbox::state::slot_uid(slot.n), slot.file))
}

/// The VMM's command line, and the uid slot it runs as (held while we
/// live). As root, QEMU drops to that uid once it has opened its files
/// (`-runas`) and confines itself with its seccomp filter (`-sandbox`;
/// no process spawning unless egress needs `guestfwd`'s command).
fn vmm_command(plan: &Plan, dir: &Path) -> Result<(Command, Option<std::fs::File>), Error> {
    use crate::microvm::firecracker as fc;
    match &plan.launch {
        Launch::Qemu {
            bin, args, disks, ..
        } => {
            let mut cmd = vmm_init_command();
            cmd.arg(bin).args(args);
            let mut fds = Vec::with_capacity(disks.len());
            for d in disks {
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(d.writable)
                    .open(&d.path)
                    .map_err(|e| failed(format!("opening {}: {e}", d.path.display())))?;
                fds.push((std::os::fd::OwnedFd::from(f), d.fd));
            }
            aibox_sys::pass_fds(&mut cmd, fds)
                .map_err(|e| failed(format!("passing the disks to QEMU: {e}")))?;
            let Some(slots) = &plan.slots else {
                return Ok((cmd, None));
            };
            let (uid, slot) = vmm_uid(slots)?;
            let spawn = if plan.boot.egress { "allow" } else { "deny" };
            cmd.arg("-runas")
                .arg(format!("{uid}:{uid}"))
                .arg("-sandbox")
                .arg(format!(
                    "on,obsolete=deny,resourcecontrol=deny,spawn={spawn}"
                ));
            Ok((cmd, Some(slot)))
        }
        Launch::Firecracker {
            bin,
            root,
            jailer,
            restore,
            binds,
        } => {
            let mut fc_args = vec!["--api-sock".to_string(), fc::API.to_string()];
            if !restore {
                fc_args.extend(["--config-file".to_string(), fc::CONFIG.to_string()]);
            }
            let Some(j) = jailer else {
                let mut cmd = vmm_init_command();
                cmd.arg(bin).args(&fc_args).current_dir(root);
                return Ok((cmd, None));
            };
            bind_into_jail(binds)
                .map_err(|e| failed(format!("placing the VM's files in its jail: {e}")))?;
            let slots = plan
                .slots
                .as_ref()
                .ok_or_else(|| failed("the jailer needs root"))?;
            let (uid, slot) = vmm_uid(slots)?;
            let upper = root.join(fc::UPPER);
            std::os::unix::fs::chown(&upper, Some(uid), Some(uid))
                .map_err(|e| failed(format!("handing {} to the VMM: {e}", upper.display())))?;
            let id = dir.file_name().unwrap_or_default().to_string_lossy();
            let mut cmd = vmm_init_command();
            cmd.arg(&j.bin)
                .arg("--id")
                .arg(id.as_ref())
                .arg("--exec-file")
                .arg(bin)
                .arg("--uid")
                .arg(uid.to_string())
                .arg("--gid")
                .arg(uid.to_string())
                .arg("--chroot-base-dir")
                .arg(&j.base)
                .arg("--")
                .args(&fc_args);
            Ok((cmd, Some(slot)))
        }
    }
}

/// In a mount namespace of our own (which the jailer's inherits), bind
/// each host file read-only over its placeholder in the jail.
fn bind_into_jail(binds: &[(PathBuf, PathBuf)]) -> Result<(), String> {
    if binds.is_empty() {
        return Ok(());
    }
    own_mount_namespace()?;
    for (from, to) in binds {
        bind_read_only(from, to, 0)?;
    }
    Ok(())
}

/// A mount namespace of our own, nothing propagating out of it.
fn own_mount_namespace() -> Result<(), String> {
    aibox_sys::unshare(libc::CLONE_NEWNS).map_err(|e| format!("unshare(mount): {e}"))?;
    aibox_sys::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
    .map_err(|e| format!("making mounts private: {e}"))
}

/// Bind `from` over `to` (with `extra` flags, e.g. MS_REC), read-only.
fn bind_read_only(from: &Path, to: &Path, extra: libc::c_ulong) -> Result<(), String> {
    aibox_sys::mount(Some(from), to, None, libc::MS_BIND | extra, None)
        .map_err(|e| format!("binding {}: {e}", from.display()))?;
    let flags = aibox_sys::current_mount_flags(to).unwrap_or(0);
    aibox_sys::mount(
        None,
        to,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | flags,
        None,
    )
    .map_err(|e| format!("making {} read-only: {e}", to.display()))
}

/// vhost-device-vsock for QEMU: the vhost-user device on `sock`, the
/// hybrid vsock socket on `uds`. Returns once both exist.
fn start_vhost_vsock(bin: &Path, sock: &Path, uds: &Path, dir: &Path) -> Result<(), String> {
    let log = std::fs::File::create(dir.join("vhost-vsock.log"))
        .map_err(|e| format!("creating vhost-vsock.log: {e}"))?;
    let mut cmd = Command::new(bin);
    cmd.arg("--guest-cid")
        .arg(crate::microvm::firecracker::GUEST_CID.to_string())
        .arg("--socket")
        .arg(sock)
        .arg("--uds-path")
        .arg(uds)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    aibox_sys::kill_with_parent(&mut cmd, libc::SIGKILL);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
            return Err(format!(
                "vhost-device-vsock did not start: {}",
                std::fs::read_to_string(dir.join("vhost-vsock.log")).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // It is reaped with us (its PDEATHSIG); nothing waits for it.
    std::mem::forget(child);
    Ok(())
}

/// Carry the guest's connections to the host's egress proxy to the
/// server's proxy at `egress`: they arrive on `<uds>_3128` (vsock), or on
/// the abstract socket [`EGRESS_NAME`] in our own network namespace, where
/// QEMU's `guestfwd` command (`aibox internal-connect`) connects.
fn serve_egress(vsock: Option<&Path>, egress: &Path) -> Result<(), Error> {
    let listener = match vsock {
        Some(uds) => {
            let path = PathBuf::from(format!(
                "{}_{}",
                uds.display(),
                aibox_types::EGRESS_PROXY_PORT
            ));
            let _ = std::fs::remove_file(&path);
            let l = UnixListener::bind(&path)
                .map_err(|e| failed(format!("binding {}: {e}", path.display())))?;
            // A jailed VMM connects as its own uid; only root and the
            // sandbox's owner reach the 0700 sandboxes directory it is in.
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
                .map_err(|e| failed(format!("chmod {}: {e}", path.display())))?;
            l
        }
        None => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(EGRESS_NAME)
                .map_err(|e| failed(format!("the egress socket's name: {e}")))?;
            UnixListener::bind_addr(&addr)
                .map_err(|e| failed(format!("binding @{EGRESS_NAME}: {e}")))?
        }
    };
    let egress = egress.to_path_buf();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let egress = egress.clone();
            let _ = std::thread::Builder::new()
                .name("vm-egress".into())
                .stack_size(256 * 1024)
                .spawn(move || match UnixStream::connect(&egress) {
                    Ok(up) => aibox_agent::join_streams(Ok(conn), up),
                    Err(_) => {
                        let _ = conn.shutdown(std::net::Shutdown::Both);
                    }
                });
        }
    });
    Ok(())
}

/// A QEMU restore: hand QEMU the memory file (opened here: it may not
/// be able to), let the state load (`inmigrate`); it was saved with the
/// guest stopped, so it then waits paused: start it.
fn resume_incoming(
    child: &mut std::process::Child,
    dir: &Path,
    memory: Option<&Path>,
    deadline: Instant,
) -> Result<(), String> {
    let qmp_sock = Record::load(dir)
        .ok()
        .and_then(|r| r.vm.map(|v| v.control))
        .unwrap_or_default();
    let memory = memory.ok_or("no memory file to restore")?;
    let file =
        std::fs::File::open(memory).map_err(|e| format!("opening {}: {e}", memory.display()))?;
    let mut monitor = loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("QEMU stopped before its monitor was up ({st})"));
        }
        match Qmp::connect(&qmp_sock) {
            Ok(m) => break m,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("QEMU's monitor: {e}")),
        }
    };
    monitor
        .call_with_fd(
            "getfd",
            serde_json::json!({ "fdname": "incoming" }),
            file.as_fd(),
        )
        .and_then(|_| {
            monitor.call(
                "migrate-incoming",
                Some(serde_json::json!({ "uri": "fd:incoming" })),
            )
        })
        .map_err(|e| format!("loading the snapshot: {e}"))?;
    drop(monitor);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!(
                "the microVM stopped while loading its snapshot ({st})"
            ));
        }
        let status = qmp(&qmp_sock, "query-status", None)
            .ok()
            .and_then(|v| v.get("status")?.as_str().map(str::to_string));
        match status.as_deref() {
            Some("running") => return Ok(()),
            Some("paused" | "postmigrate") => {
                return qmp(&qmp_sock, "cont", None)
                    .map(drop)
                    .map_err(|e| format!("starting the restored microVM: {e}"))
            }
            Some("inmigrate") | None => {}
            Some(other) => return Err(format!("the microVM's snapshot did not load ({other})")),
        }
        if Instant::now() > deadline {
            return Err("the microVM's snapshot did not load in time".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Firecracker restore: once its API socket is up, load the snapshot
/// (which resumes the guest).
fn load_firecracker(
    child: &mut std::process::Child,
    root: &Path,
    deadline: Instant,
) -> Result<(), String> {
    let api = root.join(crate::microvm::firecracker::API);
    while !api.exists() {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("Firecracker stopped before its API was up ({st})"));
        }
        if Instant::now() > deadline {
            return Err("Firecracker's API did not come up in time".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    crate::microvm::firecracker::load(&api).map_err(|e| format!("loading the snapshot: {e}"))
}

/// A stream to the guest's agent port: QEMU's forwarded TCP port, or a
/// hybrid vsock connection.
enum Guest {
    Tcp(TcpStream),
    Vsock(UnixStream),
}

fn connect_guest(vsock: Option<&Path>) -> std::io::Result<Guest> {
    match vsock {
        Some(uds) => {
            crate::microvm::firecracker::vsock_connect(uds, u32::from(AGENT_PORT)).map(Guest::Vsock)
        }
        None => TcpStream::connect(("127.0.0.1", AGENT_PORT)).map(|s| {
            let _ = s.set_nodelay(true);
            Guest::Tcp(s)
        }),
    }
}

impl Guest {
    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Guest::Tcp(s) => s.set_read_timeout(t),
            Guest::Vsock(s) => s.set_read_timeout(t),
        }
    }

    fn shutdown(&self, how: std::net::Shutdown) {
        let _ = match self {
            Guest::Tcp(s) => s.shutdown(how),
            Guest::Vsock(s) => s.shutdown(how),
        };
    }
}

impl Read for Guest {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Guest::Tcp(s) => s.read(buf),
            Guest::Vsock(s) => s.read(buf),
        }
    }
}

impl Write for Guest {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Guest::Tcp(s) => s.write(buf),
            Guest::Vsock(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl aibox_agent::egress::ShutdownWrite for Guest {
    fn shutdown_write(&self) {
        self.shutdown(std::net::Shutdown::Write);
    }
    fn shutdown_all(&self) {
        self.shutdown(std::net::Shutdown::Both);
    }
}

impl aibox_agent::egress::Duplex for Guest {
    fn duplicate(&self) -> std::io::Result<Self> {
        Ok(match self {
            Guest::Tcp(s) => Guest::Tcp(s.try_clone()?),
            Guest::Vsock(s) => Guest::Vsock(s.try_clone()?),
        })
    }
}

/// Send the guest its [`Boot`] on the first connection; its answer.
fn send_boot(boot: &Boot, vsock: Option<&Path>) -> Result<BootReply, String> {
    let mut s = connect_guest(vsock).map_err(|e| format!("connecting: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let body = serde_json::to_vec(boot).map_err(|e| e.to_string())?;
    aibox_protocol::write_frame(&mut s, aibox_protocol::Kind::Control, &body)
        .map_err(|e| format!("sending: {e}"))?;
    let f = aibox_protocol::read_frame(&mut s).map_err(|e| format!("reading the answer: {e}"))?;
    serde_json::from_slice(&f.payload).map_err(|e| format!("bad answer: {e}"))
}

/// Copy the guest's console into `path` (up to [`CONSOLE_MAX`]; the rest
/// is read and dropped), telling `ready` when the guest's ready line
/// passes (true) or the console ends first (false).
fn keep_console(out: impl Read, path: &Path, ready: std::sync::mpsc::Sender<bool>) {
    let mut file = std::fs::File::create(path).ok();
    let mut written = 0u64;
    let mut told = false;
    let mut r = BufReader::new(out);
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if written < CONSOLE_MAX {
                    if let Some(f) = file.as_mut() {
                        let _ = f.write_all(&line);
                    }
                    written += n as u64;
                }
                if !told && String::from_utf8_lossy(&line).contains(aibox_agent::guest::READY) {
                    told = true;
                    let _ = ready.send(true);
                }
            }
        }
    }
    if !told {
        let _ = ready.send(false);
    }
}

/// Wait for QEMU (the relay runs on its own thread); exit with it.
fn serve(vm: Running) -> ! {
    let Running { mut child, .. } = vm;
    let _ = child.wait();
    aibox_sys::exit_now(0)
}

/// Where the relay takes each connection to `agent.sock`.
struct RelayTarget {
    token: String,
    vsock: Option<PathBuf>,
    /// The sandbox directory (its record and [`PAUSED_MARK`]).
    dir: PathBuf,
}

fn relay(conn: UnixStream, t: &RelayTarget) {
    // A paused guest takes no connections: its caller hears so at once
    // (and asks why) instead of having a request it gave up on run at
    // the resume; and vhost-device-vsock loses a connection opened while
    // QEMU has its queues stopped.
    if t.dir.join(PAUSED_MARK).exists() && Record::load(&t.dir).is_ok_and(|rec| paused(&rec)) {
        let _ = conn.shutdown(std::net::Shutdown::Both);
        return;
    }
    let up = connect_guest(t.vsock.as_deref()).and_then(|mut s| {
        s.write_all(t.token.as_bytes())?;
        Ok(s)
    });
    match up {
        Ok(up) => aibox_agent::join_streams(Ok(conn), up),
        Err(_) => {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// `aibox internal-vmm-init VMM ARGS...`: PID 1 of the VMM's own pid
/// namespace. It runs the VMM and reaps what ends there; when it dies
/// (killed with the supervisor: its parent-death signal, which a VMM that
/// drops to another uid loses) the kernel kills everything in the
/// namespace, the VMM included. Exits with the VMM's status.
pub fn vmm_init(command: &[std::ffi::OsString]) -> i32 {
    let Some((prog, args)) = command.split_first() else {
        return 2;
    };
    // No program the VMM (or what it spawns) executes gains privileges
    // from set-id bits or file capabilities: a VMM escape cannot climb
    // through a set-uid binary. QEMU's own drop to its uid (`-runas`) is
    // a setuid call, which this leaves alone; QEMU's `elevateprivileges=
    // deny` would forbid that call too.
    if let Err(e) = aibox_sys::set_no_new_privs() {
        eprintln!("aibox: no_new_privs for the VMM: {e}");
        return 1;
    }
    let vmm = match Command::new(prog).args(args).spawn() {
        Ok(c) => c.id() as i32,
        Err(e) => {
            eprintln!("aibox: cannot start {}: {e}", prog.to_string_lossy());
            return 127;
        }
    };
    loop {
        match aibox_sys::wait_any(true) {
            Ok(Some((pid, st))) if pid == vmm => {
                return match st {
                    aibox_sys::WaitStatus::Exited(c) => c,
                    aibox_sys::WaitStatus::Signaled(s) => 128 + s,
                }
            }
            Ok(_) => {}
            Err(_) => return 1,
        }
    }
}

/// `aibox internal-connect PATH`: stdin to the Unix socket at `path`, its
/// answers to stdout (QEMU runs this for each guest connection to the
/// egress proxy address).
pub fn connect_stdio(path: &Path) -> i32 {
    let sock = match path.to_str().and_then(|p| p.strip_prefix('@')) {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|a| UnixStream::connect_addr(&a))
        }
        None => UnixStream::connect(path),
    };
    let Ok(sock) = sock else {
        return 1;
    };
    let Ok(mut back) = sock.try_clone() else {
        return 1;
    };
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut back, &mut std::io::stdout());
    });
    let mut s = sock;
    let _ = std::io::copy(&mut std::io::stdin(), &mut s);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
    0
}

// ---- operations on a running microVM

/// SIGKILL the supervisor and the VMM (each checked against its start
/// time) and wait until both are gone.
pub(crate) fn kill_vm(rec: &Record) {
    let mut targets = vec![(rec.pid, rec.start_time)];
    if let Some(vm) = &rec.vm {
        targets.push((vm.vmm_pid, vm.vmm_start_time));
    }
    for (pid, start) in targets {
        if pid <= 0 || pid == aibox_sys::getpid() {
            continue;
        }
        let Ok(fd) = aibox_sys::pidfd_open(pid) else {
            continue;
        };
        if aibox_sys::process_start_time(pid) != Some(start) {
            continue;
        }
        let _ = aibox_sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
        let _ = aibox_sys::poll_readable(&[fd.as_fd()], Some(Duration::from_secs(5)));
    }
}

/// A QMP connection, capabilities negotiated.
struct Qmp {
    w: UnixStream,
    r: BufReader<UnixStream>,
    sock: PathBuf,
}

impl Qmp {
    fn connect(sock: &Path) -> Result<Qmp, Error> {
        let err =
            |e: std::io::Error| failed(format!("the VMM's monitor ({}): {e}", sock.display()));
        let s = UnixStream::connect(sock).map_err(err)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(err)?;
        let w = s.try_clone().map_err(err)?;
        let mut q = Qmp {
            w,
            r: BufReader::new(s),
            sock: sock.to_path_buf(),
        };
        q.answer("the greeting")?;
        q.call("qmp_capabilities", None)?;
        Ok(q)
    }

    fn err(&self, e: std::io::Error) -> Error {
        failed(format!("the VMM's monitor ({}): {e}", self.sock.display()))
    }

    fn request(command: &str, arguments: Option<serde_json::Value>) -> String {
        let mut req = serde_json::json!({ "execute": command });
        if let Some(a) = arguments {
            req["arguments"] = a;
        }
        format!("{req}\n")
    }

    /// One command; its `return` value.
    fn call(
        &mut self,
        command: &str,
        arguments: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, Error> {
        let req = Self::request(command, arguments);
        self.w.write_all(req.as_bytes()).map_err(|e| self.err(e))?;
        self.answer(command)
    }

    /// One command sent with a descriptor (`getfd`, `add-fd`).
    fn call_with_fd(
        &mut self,
        command: &str,
        arguments: serde_json::Value,
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> Result<serde_json::Value, Error> {
        let req = Self::request(command, Some(arguments));
        aibox_sys::send_with_fds(self.w.as_fd(), req.as_bytes(), &[fd]).map_err(|e| self.err(e))?;
        self.answer(command)
    }

    /// Read up to the answer (events before it are skipped).
    fn answer(&mut self, what: &str) -> Result<serde_json::Value, Error> {
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).map_err(|e| self.err(e))? == 0 {
                return Err(failed("the VMM's monitor closed"));
            }
            let v: serde_json::Value = serde_json::from_str(&line)
                .map_err(|e| failed(format!("the VMM's monitor said {line:?}: {e}")))?;
            if let Some(ret) = v.get("return").or_else(|| v.get("QMP")) {
                return Ok(ret.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(failed(format!(
                    "the VMM refused {what}: {}",
                    e.get("desc").and_then(|d| d.as_str()).unwrap_or("?")
                )));
            }
        }
    }
}

/// One QMP command on a connection of its own; its `return` value.
pub fn qmp(
    sock: &Path,
    command: &str,
    arguments: Option<serde_json::Value>,
) -> Result<serde_json::Value, Error> {
    Qmp::connect(sock)?.call(command, arguments)
}

fn vm_of(rec: &Record) -> Result<&VmState, Error> {
    rec.vm
        .as_ref()
        .ok_or_else(|| failed(format!("sandbox {} is not a microVM", rec.id)))
}

/// In the sandbox directory while the guest is paused (set before the
/// VMM stops it, removed after it runs again): the relay refuses
/// connections then.
const PAUSED_MARK: &str = "paused";

pub(crate) fn set_paused(rec: &Record, pause: bool) -> Result<(), Error> {
    if !rec.alive() {
        return Err(Error::Gone(rec.id.clone()));
    }
    let vm = vm_of(rec)?;
    let mark = rec.socket.with_file_name(PAUSED_MARK);
    if pause {
        let _ = std::fs::write(&mark, b"");
    }
    let r = match vm.root {
        Some(_) => crate::microvm::firecracker::set_paused(&vm.control, pause),
        None => qmp(&vm.control, if pause { "stop" } else { "cont" }, None).map(drop),
    };
    if !pause && r.is_ok() {
        let _ = std::fs::remove_file(&mark);
    }
    r
}

pub(crate) fn paused(rec: &Record) -> bool {
    vm_of(rec).is_ok_and(|vm| match vm.root {
        Some(_) => crate::microvm::firecracker::paused(&vm.control).unwrap_or(false),
        None => qmp(&vm.control, "query-status", None)
            .is_ok_and(|v| v.get("running").and_then(|r| r.as_bool()) == Some(false)),
    })
}

/// The VMM process's CPU time and resident memory.
pub(crate) fn stats(rec: &Record) -> crate::sandbox::cgroup::Stats {
    let mut s = crate::sandbox::cgroup::Stats::default();
    let Some(vm) = &rec.vm else { return s };
    if aibox_sys::process_start_time(vm.vmm_pid) != Some(vm.vmm_start_time) {
        return s;
    }
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", vm.vmm_pid)) {
        // Fields after the command name (which may hold spaces): utime and
        // stime are the 12th and 13th, in clock ticks (100 a second).
        if let Some((_, rest)) = stat.rsplit_once(')') {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            if let (Some(u), Some(st)) = (tick(11), tick(12)) {
                s.cpu_usec = Some((u + st) * 10_000);
            }
        }
    }
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", vm.vmm_pid)) {
        let kb = |key: &str| {
            status.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
        };
        s.memory_bytes = kb("VmRSS:").map(|k| k * 1024);
        s.memory_peak_bytes = kb("VmHWM:").map(|k| k * 1024);
    }
    s
}

/// The TCP ports the guest listens on (its `/proc/net/tcp{,6}`, read by
/// the agent), without the agent's own port; none while it is paused.
pub(crate) fn listeners(rec: &Record) -> Result<Vec<crate::sandbox::listening::Listener>, Error> {
    // A paused guest cannot be asked: its ports show again once it resumes.
    if paused(rec) {
        return Ok(Vec::new());
    }
    let client = crate::AgentClient::new(&rec.socket);
    let mut out = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match client.read_file(file, Some(aibox_types::User::Root)) {
            Ok((_, data)) => out.extend(crate::sandbox::listening::parse(
                &String::from_utf8_lossy(&data),
            )),
            // A guest kernel without IPv6 has no tcp6 table.
            Err(_) if file.ends_with('6') => {}
            Err(e) => return Err(e.into()),
        }
    }
    out.retain(|l| l.port != AGENT_PORT);
    out.sort();
    out.dedup();
    Ok(out)
}

/// The microVM backend: QEMU (`microvm` machine) or Firecracker, chosen
/// per host (`choose_vmm`).
pub struct MicroVm;

impl crate::backend::Backend for MicroVm {
    fn kind(&self) -> aibox_types::BackendKind {
        aibox_types::BackendKind::Microvm
    }

    /// A supervisor process of its own holds the VM.
    fn creates_single_threaded(&self) -> bool {
        false
    }

    fn runs_one_shot(&self) -> bool {
        false
    }

    fn no_per_connection_egress(&self) -> Option<&'static str> {
        Some("a microVM's egress goes through the proxy (its VMM forwards the proxy address only)")
    }

    fn create(&self, rt: &Runtime, spec: &SandboxSpec) -> Result<Record, Error> {
        create(rt, spec)
    }

    fn destroy(&self, rec: &Record) -> Result<(), Error> {
        kill_vm(rec);
        // What the VMM's tree left (virtiofsd, egress helpers).
        rec.cgroup.kill_all();
        let _ = rec.cgroup.remove(std::time::Duration::from_secs(5));
        Ok(())
    }

    fn set_paused(&self, rec: &Record, paused: bool) -> Result<(), Error> {
        set_paused(rec, paused)
    }

    fn paused(&self, rec: &Record) -> bool {
        paused(rec)
    }

    fn stats(&self, rec: &Record) -> crate::sandbox::cgroup::Stats {
        stats(rec)
    }

    fn listeners(&self, rec: &Record) -> Result<Vec<crate::sandbox::listening::Listener>, Error> {
        listeners(rec)
    }

    /// Memory and devices too: a restore resumes the processes.
    fn snapshot_into(
        &self,
        rt: &Runtime,
        rec: &Record,
        dir: &Path,
    ) -> Result<crate::sandbox::snapshot::Copied, Error> {
        let bytes = snapshot_into(rt, rec, dir)?;
        Ok(crate::sandbox::snapshot::Copied {
            bytes,
            entries: 0,
            consistent: true,
            memory: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> host::Manifest {
        let f = |n: &str, b| host::FileInfo {
            file: n.into(),
            sha256: String::new(),
            bytes: b,
        };
        host::Manifest {
            format: 1,
            kernel_package: "p".into(),
            kernel_version: "1".into(),
            kernel_release: "6.1.0-test".into(),
            kernel: f("vmlinux-x", 1),
            kernel_format: "elf".into(),
            initramfs: f("initramfs-x", 30 << 20),
            modules: vec![],
            init_sha256: String::new(),
            init_bytes: 0,
            init_mtime_ms: 0,
            built_ms: 0,
        }
    }

    #[test]
    fn qemu_args_hold_the_disks_the_restricted_network_and_escaped_paths() {
        let layers = vec![PathBuf::from("/d/a.ext4"), PathBuf::from("/d/b,c.ext4")];
        let args = qemu_args(&QemuConfig {
            accel: "tcg",
            kernel: Path::new("/art/vmlinux"),
            initramfs: Path::new("/art/initramfs"),
            memory_mib: 512,
            vcpus: 2,
            layers: &layers,
            upper: Path::new("/s/disk.ext4"),
            qmp: Path::new("/s/qmp.sock"),
            egress: Some("/bin/aibox".into()),
            incoming: true,
            shares: &[Share {
                host: "/usr".into(),
                socket: "/s/vfs0.sock".into(),
                read_only: true,
                shared: false,
            }],
            vhost_vsock: None,
        });
        let joined = args.join(" ");
        assert!(joined.contains("-accel tcg"));
        assert!(joined.contains("-m 512M"));
        assert!(joined.contains("-smp 2"));
        assert!(joined.contains(
            "-add-fd fd=10,set=1 -add-fd fd=11,set=2 -add-fd fd=12,set=3 -add-fd fd=13,set=3"
        ));
        assert!(joined
            .contains("id=l1,file=/dev/fdset/2,file.locking=off,format=raw,if=none,readonly=on"));
        assert!(joined.contains("id=upper,file=/dev/fdset/3,file.locking=off,format=raw"));
        assert!(!joined.contains("/d/b"), "a disk by path: {joined}");
        assert!(joined.contains("virtio-blk-device,drive=l0,serial=l0"));
        assert!(joined.contains("serial=upper"));
        let fds = disk_fds(&layers, Path::new("/s/disk.ext4"));
        assert_eq!(fds.len(), 4);
        assert_eq!((fds[1].fd, fds[1].set, fds[1].writable), (11, 2, false));
        assert_eq!((fds[2].fd, fds[2].set, fds[2].writable), (12, 3, true));
        assert_eq!((fds[3].fd, fds[3].set, fds[3].writable), (13, 3, false));
        assert!(joined.contains("restrict=on"));
        assert!(joined.contains("hostfwd=tcp:127.0.0.1:1024-10.0.2.15:1024"));
        assert!(joined.contains(
            "guestfwd=tcp:10.0.2.100:3128-cmd:/bin/aibox internal-connect @aibox-vm-egress"
        ));
        assert!(joined.contains("-nodefaults"));
        assert!(joined.contains("microvm,x-option-roms=off,pit=off,pic=off,memory-backend=mem"));
        assert!(joined.contains("memory-backend-memfd,id=mem,size=512M,share=on"));
        assert!(joined.contains("vhost-user-fs-device,chardev=vfs0,tag=s0"));
        assert!(joined.ends_with("-incoming defer"));
        assert!(!joined.contains("aibox.vsock"));
    }

    #[test]
    fn qemu_args_for_the_vsock_transport_have_no_network_device() {
        let layers = vec![PathBuf::from("/d/a.ext4")];
        let args = qemu_args(&QemuConfig {
            accel: "tcg",
            kernel: Path::new("/art/vmlinux"),
            initramfs: Path::new("/art/initramfs"),
            memory_mib: 256,
            vcpus: 1,
            layers: &layers,
            upper: Path::new("/s/disk.ext4"),
            qmp: Path::new("/s/qmp.sock"),
            egress: Some("/bin/aibox".into()),
            incoming: false,
            shares: &[],
            vhost_vsock: Some(Path::new("/s/vhost-vsock.sock")),
        });
        let joined = args.join(" ");
        assert!(!joined.contains("-netdev"), "{joined}");
        assert!(!joined.contains("virtio-net"), "{joined}");
        assert!(!joined.contains("guestfwd"), "{joined}");
        assert!(joined.contains("memory-backend-memfd,id=mem,size=256M,share=on"));
        assert!(joined.contains("socket,id=vsock,path=/s/vhost-vsock.sock"));
        assert!(joined.contains("vhost-user-vsock-device,chardev=vsock"));
        assert!(joined.contains(" aibox.vsock"));
    }

    #[test]
    fn layer_labels_fit_ext4() {
        let l = layer_label(Path::new("/x/0123456789abcdef0123456789abcdef-v2.ext4"));
        assert_eq!(l, "0123456789abcdef");
        assert!(l.len() <= 16);
    }

    #[test]
    fn firecracker_never_runs_as_root_without_its_jailer() {
        let fc = |jailer: Option<&str>, root| {
            firecracker_vmm(
                Some("/usr/bin/firecracker".into()),
                Ok(3),
                jailer.map(PathBuf::from),
                root,
                None,
            )
        };
        let Err(e) = fc(None, true) else {
            panic!("Firecracker as root without its jailer");
        };
        assert!(e.to_string().contains("jailer"), "{e}");
        assert_eq!(e.code(), ErrorCode::IsolationUnavailable);
        assert!(matches!(
            fc(Some("/usr/bin/jailer"), true),
            Ok(Vmm::Firecracker {
                jailer: Some(_),
                ..
            })
        ));
        // Rootless it runs as the caller, and the jailer (root-only) is not used.
        assert!(matches!(
            fc(Some("/usr/bin/jailer"), false),
            Ok(Vmm::Firecracker { jailer: None, .. })
        ));
        assert!(matches!(
            fc(None, false),
            Ok(Vmm::Firecracker { jailer: None, .. })
        ));
    }

    #[test]
    fn the_report_reaches_the_vm_level_with_limits_and_says_why_not_otherwise() {
        let spec = SandboxSpec::default();
        let qemu = Vmm::Qemu {
            bin: "/usr/bin/qemu-system-x86_64".into(),
            accel: "tcg".into(),
            vhost_vsock: None,
        };
        let r = report(&spec, &qemu, "6.1.0-test", 1024, 1);
        assert_eq!(r.backend, "microvm");
        assert_eq!(r.vm.as_ref().unwrap().transport, "user-net");
        let fc = Vmm::Firecracker {
            bin: "/usr/bin/firecracker".into(),
            jailer: Some("/usr/bin/jailer".into()),
        };
        let f = report(&spec, &fc, "6.1.0-test", 1024, 1);
        let v = f.vm.as_ref().unwrap();
        assert_eq!((v.vmm.as_str(), v.accel.as_str()), ("firecracker", "kvm"));
        assert_eq!(v.transport, "vsock");
        assert_eq!(v.machine, "firecracker (jailed)");
        assert_eq!(f.level, Some(aibox_types::IsolationLevel::Vm));
        assert_eq!(r.level, Some(aibox_types::IsolationLevel::Vm));
        assert!(r.gaps(aibox_types::IsolationLevel::Vm).is_empty());
        let ns = IsolationReport::default();
        assert!(ns
            .gaps(aibox_types::IsolationLevel::Vm)
            .iter()
            .any(|g| g.contains("microvm")));
        assert!(min_memory_mib(&manifest()) >= 128 + 60);
    }
}
