//! MicroVMs, first part: which VMMs this host has (QEMU's `microvm`
//! machine, Firecracker, KVM or TCG), the guest artifacts aibox builds for
//! itself from Debian packages (a kernel and an initramfs whose `/init` is
//! the aibox binary, with the kernel modules it needs), and a boot probe
//! that times boot to "guest ready".
//!
//! The artifacts live in `DIR` (default `DATA_DIR/vm`) with a
//! `manifest.json` naming each file's version and sha256. A build is reused
//! while the kernel package's version and the aibox binary are unchanged.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Debian package whose kernel the guest boots: the cloud flavour of
/// `linux-image-amd64` (the same kernel built for VMs: virtio, no
/// hardware drivers, a quarter of the size).
pub const DEFAULT_KERNEL_PACKAGE: &str = "linux-image-cloud-amd64";

/// Modules the guest loads (with their dependencies): virtio over MMIO
/// (QEMU `microvm`, Firecracker), block, network, console, vsock, overlayfs
/// and virtiofs (the host template's read-only `/usr`).
pub const GUEST_MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "virtio_console",
    "vmw_vsock_virtio_transport",
    "overlay",
    "virtiofs",
];

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{0}")]
    Unavailable(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
}

impl From<VmError> for crate::Error {
    /// With the stable codes front ends print: a host that cannot run
    /// microVMs is `isolation_unavailable`; bad input `invalid_argument`.
    fn from(e: VmError) -> crate::Error {
        use aibox_types::ErrorCode;
        let code = match &e {
            VmError::Unavailable(_) => ErrorCode::IsolationUnavailable,
            VmError::Invalid(_) => ErrorCode::InvalidArgument,
            VmError::Io { .. } | VmError::Failed(_) => ErrorCode::Internal,
        };
        crate::Error::Reported {
            code,
            message: e.to_string(),
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
    let what = what.into();
    move |source| VmError::Io { what, source }
}

// ---- detection

/// Which VMMs and accelerators the host offers.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Detection {
    /// `qemu-system-x86_64` and its version line.
    pub qemu: Option<(PathBuf, String)>,
    pub firecracker: Option<PathBuf>,
    pub jailer: Option<PathBuf>,
    /// vhost-device-vsock, for QEMU's vsock transport.
    #[serde(default)]
    pub vhost_vsock: Option<PathBuf>,
    /// KVM's API version, or why it cannot be used.
    pub kvm: Result<i32, String>,
    /// The VMM a microVM would use: `qemu` or `firecracker` (Firecracker
    /// when it and KVM are here, unless `AIBOX_VMM` names one), with `kvm`
    /// or `tcg`; None with the reason when there is none.
    pub choice: Result<(String, String), String>,
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/bin".into(), "/usr/local/bin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

pub fn detect() -> Detection {
    let qemu = which("qemu-system-x86_64").map(|p| {
        let v = Command::new(&p)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.lines().next().map(str::to_string))
            .unwrap_or_default();
        (p, v)
    });
    let firecracker = which("firecracker");
    let jailer = which("jailer");
    let kvm = aibox_sys::kvm_check(Path::new("/dev/kvm")).map_err(|e| format!("/dev/kvm: {e}"));
    let qemu_accel = if kvm_booted() { "kvm" } else { "tcg" };
    let forced = std::env::var("AIBOX_VMM").ok().filter(|v| !v.is_empty());
    let choice = match (forced.as_deref(), &firecracker, &kvm, &qemu) {
        (Some("qemu"), _, _, Some(_)) => Ok(("qemu".into(), qemu_accel.into())),
        (Some("qemu"), _, _, None) => {
            Err("AIBOX_VMM is qemu but QEMU is not installed (Debian's qemu-system-x86)".into())
        }
        (Some("firecracker"), Some(_), Ok(_), _) => Ok(("firecracker".into(), "kvm".into())),
        (Some("firecracker"), None, _, _) => {
            Err("AIBOX_VMM is firecracker but there is no `firecracker` on PATH".into())
        }
        (Some("firecracker"), _, Err(e), _) => Err(format!("Firecracker needs KVM ({e})")),
        (Some(other), ..) => Err(format!(
            "AIBOX_VMM is {other:?}: it must be qemu or firecracker"
        )),
        (None, Some(_), Ok(_), _) => Ok(("firecracker".into(), "kvm".into())),
        (None, _, _, Some(_)) => Ok(("qemu".into(), qemu_accel.into())),
        (None, None, _, None) => {
            Err("no VMM: install Debian's qemu-system-x86 (or Firecracker, with KVM)".to_string())
        }
        (None, Some(_), Err(e), None) => Err(format!(
            "Firecracker needs KVM ({e}); install qemu-system-x86 for TCG"
        )),
    };
    Detection {
        qemu,
        firecracker,
        jailer,
        vhost_vsock: which("vhost-device-vsock"),
        kvm,
        choice,
    }
}

/// KVM is used for QEMU only once a probe booted a guest with it: on some
/// hosts (nested PVM) the ioctls work but a stock kernel does not boot.
fn kvm_booted() -> bool {
    std::env::var("AIBOX_VM_ACCEL").is_ok_and(|a| a == "kvm")
}

// ---- the initramfs: a newc cpio archive

/// A `newc` cpio archive in memory, as the kernel unpacks an initramfs.
#[derive(Default)]
pub struct Cpio {
    out: Vec<u8>,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        let mut head = String::from("070701");
        for f in fields {
            head.push_str(&format!("{f:08X}"));
        }
        self.out.extend_from_slice(head.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// A directory and its parents (once each).
    pub fn dir(&mut self, path: &str) {
        let mut at = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            if self.dirs.insert(at.clone()) {
                let name = at.clone();
                self.entry(&name, 0o040755, &[]);
            }
        }
    }

    /// A regular file (its parent directories first).
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.entry(path, 0o100000 | (mode & 0o7777), data);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.out
    }
}

/// A module's path and the names it depends on (None: no such module).
pub type ModuleLookup<'a> = dyn FnMut(&str) -> Result<Option<(String, Vec<String>)>, VmError> + 'a;

/// The modules to load for `wanted`, dependencies first.
pub fn module_order(
    wanted: &[&str],
    lookup: &mut ModuleLookup<'_>,
) -> Result<Vec<String>, VmError> {
    fn visit(
        name: &str,
        lookup: &mut ModuleLookup<'_>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) -> Result<(), VmError> {
        let name = name.replace('-', "_");
        if !seen.insert(name.clone()) {
            return Ok(());
        }
        let (path, deps) = lookup(&name)?
            .ok_or_else(|| VmError::Failed(format!("the kernel has no module {name:?}")))?;
        for d in deps {
            visit(&d, lookup, seen, out)?;
        }
        out.push(path);
        Ok(())
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for w in wanted {
        visit(w, lookup, &mut seen, &mut out)?;
    }
    Ok(out)
}

/// The `depends=` field of a module's `.modinfo` (the modules it needs
/// that are not built in).
pub fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    ko.split(|b| *b == 0)
        .find_map(|field| field.strip_prefix(key))
        .map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .filter(|d| !d.is_empty())
                .map(|d| d.replace('-', "_"))
                .collect()
        })
        .unwrap_or_default()
}

/// Every module file under `dir` by module name (relative paths).
fn module_files(dir: &Path) -> Result<BTreeMap<String, String>, VmError> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io(format!("reading {}", d.display())))? {
            let e = e.map_err(io(format!("reading {}", d.display())))?;
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".ko") {
                if let Ok(rel) = p.strip_prefix(dir) {
                    let rel = rel.to_string_lossy().into_owned();
                    out.insert(module_name(&rel), rel);
                }
            }
        }
    }
    Ok(out)
}

fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

// ---- the kernel: from a bzImage to the ELF it compresses

/// Decode one LZ4 block (the raw block format) onto `out`.
fn lz4_block(mut src: &[u8], out: &mut Vec<u8>) -> Result<(), VmError> {
    let bad = || VmError::Failed("the kernel's LZ4 data is corrupt".into());
    let length = |src: &mut &[u8], mut n: usize| -> Result<usize, VmError> {
        if n == 15 {
            loop {
                let (&b, rest) = src.split_first().ok_or_else(bad)?;
                *src = rest;
                n += b as usize;
                if b != 255 {
                    break;
                }
            }
        }
        Ok(n)
    };
    while let Some((&token, rest)) = src.split_first() {
        src = rest;
        let lit = length(&mut src, (token >> 4) as usize)?;
        if lit > src.len() {
            return Err(bad());
        }
        out.extend_from_slice(&src[..lit]);
        src = &src[lit..];
        if src.is_empty() {
            return Ok(()); // the last sequence has literals only
        }
        if src.len() < 2 {
            return Err(bad());
        }
        let offset = u16::from_le_bytes([src[0], src[1]]) as usize;
        src = &src[2..];
        let len = length(&mut src, (token & 15) as usize)? + 4;
        if offset == 0 || offset > out.len() {
            return Err(bad());
        }
        let start = out.len() - offset;
        for i in 0..len {
            let b = out[start + i];
            out.push(b);
        }
    }
    Ok(())
}

/// The kernel ELF inside a bzImage, for a direct PVH boot (no firmware,
/// no decompression in the guest). LZ4 (the cloud kernel's), gzip and
/// zstd payloads are supported; None for others (boot the bzImage then).
pub fn vmlinux_from_bzimage(b: &[u8]) -> Result<Option<Vec<u8>>, VmError> {
    let not = |m: &str| VmError::Failed(format!("not a bzImage: {m}"));
    if b.get(0x202..0x206) != Some(b"HdrS") {
        return Err(not("no HdrS header"));
    }
    let word = |at: usize| -> Result<usize, VmError> {
        b.get(at..at + 4)
            .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]) as usize)
            .ok_or_else(|| not("short header"))
    };
    let sects = match b[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let start = (sects + 1) * 512 + word(0x248)?;
    let payload = b
        .get(start..start + word(0x24c)?)
        .ok_or_else(|| not("payload out of bounds"))?;
    let elf = if payload.starts_with(&[0x02, 0x21, 0x4c, 0x18]) {
        // The legacy LZ4 frame: the magic, then blocks each preceded by
        // its size; the build appends the decompressed size (4 bytes).
        let mut out = Vec::new();
        let mut at = 4;
        while at + 4 <= payload.len() {
            let n = u32::from_le_bytes([
                payload[at],
                payload[at + 1],
                payload[at + 2],
                payload[at + 3],
            ]) as usize;
            at += 4;
            if n == 0x184c_2102 {
                continue; // a new frame
            }
            if at + n > payload.len() {
                break; // the trailing size
            }
            lz4_block(&payload[at..at + n], &mut out)?;
            at += n;
        }
        out
    } else if payload.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(payload)
            .read_to_end(&mut out)
            .map_err(io("decompressing the kernel (gzip)"))?;
        out
    } else if payload.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let mut out = Vec::new();
        zstd::stream::read::Decoder::new(payload)
            .and_then(|mut d| d.read_to_end(&mut out))
            .map_err(io("decompressing the kernel (zstd)"))?;
        out
    } else {
        return Ok(None);
    };
    if !elf.starts_with(b"\x7fELF") {
        return Err(VmError::Failed(
            "the kernel's payload is not an ELF image".into(),
        ));
    }
    Ok(Some(elf))
}

// ---- artifacts

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileInfo {
    /// The file's name in the artifacts directory.
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The Debian package the kernel came from, and its version.
    pub kernel_package: String,
    pub kernel_version: String,
    /// `uname -r` of the guest kernel.
    pub kernel_release: String,
    pub kernel: FileInfo,
    /// `elf` (booted through PVH, no firmware) or `bzimage`.
    #[serde(default)]
    pub kernel_format: String,
    pub initramfs: FileInfo,
    /// Modules in the initramfs, in load order.
    pub modules: Vec<String>,
    /// The aibox binary that is the guest's `/init`.
    pub init_sha256: String,
    /// The init binary's size and modification time when it was hashed:
    /// a cheap check that it is still the same file.
    #[serde(default)]
    pub init_bytes: u64,
    #[serde(default)]
    pub init_mtime_ms: u64,
    pub built_ms: u64,
}

pub const MANIFEST: &str = "manifest.json";

fn sha256_file(path: &Path) -> Result<(String, u64), VmError> {
    let mut f = std::fs::File::open(path).map_err(io(format!("reading {}", path.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f
            .read(&mut buf)
            .map_err(io(format!("reading {}", path.display())))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex(&h.finalize()), n))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn run(cmd: &mut Command, what: &str) -> Result<String, VmError> {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("running {what}")))?;
    if !o.status.success() {
        return Err(VmError::Failed(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The versioned kernel package a metapackage depends on, and its version.
fn resolve_package(meta: &str) -> Result<(String, String), VmError> {
    let deps = run(
        Command::new("apt-cache").args(["depends", meta]),
        "apt-cache depends",
    )?;
    let pkg = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string)
        .unwrap_or_else(|| meta.to_string());
    let show = run(
        Command::new("apt-cache").args(["show", "--no-all-versions", &pkg]),
        "apt-cache show",
    )?;
    let version = show
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .ok_or_else(|| VmError::Failed(format!("apt-cache knows no version of {pkg}")))?
        .to_string();
    Ok((pkg, version))
}

/// The artifacts in `dir`, when its manifest's files are all there with
/// their recorded hashes.
pub fn load(dir: &Path) -> Result<Manifest, VmError> {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).map_err(|_| {
        VmError::Unavailable(format!(
            "no microVM artifacts in {}: run `aibox vm artifacts`",
            dir.display()
        ))
    })?;
    let m: Manifest = serde_json::from_str(&text)
        .map_err(|e| VmError::Failed(format!("{}: {e}", dir.join(MANIFEST).display())))?;
    for f in [&m.kernel, &m.initramfs] {
        let (sum, _) = sha256_file(&dir.join(&f.file))?;
        if sum != f.sha256 {
            return Err(VmError::Failed(format!(
                "{} does not match its manifest (sha256 {sum}, recorded {}): run `aibox vm artifacts --rebuild`",
                dir.join(&f.file).display(),
                f.sha256
            )));
        }
    }
    Ok(m)
}

/// A file's size and modification time (ms).
fn file_stamp(p: &Path) -> (u64, u64) {
    std::fs::metadata(p)
        .map(|m| {
            let t = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64);
            (m.len(), t)
        })
        .unwrap_or((0, 0))
}

/// The artifacts in `dir` without hashing them (the hot path of a
/// create): the manifest's files are there with their sizes, and `init`
/// is the same file (size and mtime) the initramfs was built from.
pub fn load_quick(dir: &Path, init: &Path) -> Result<Manifest, VmError> {
    let text = std::fs::read_to_string(dir.join(MANIFEST))
        .map_err(|_| VmError::Unavailable(format!("no microVM artifacts in {}", dir.display())))?;
    let m: Manifest = serde_json::from_str(&text)
        .map_err(|e| VmError::Failed(format!("{}: {e}", dir.join(MANIFEST).display())))?;
    for f in [&m.kernel, &m.initramfs] {
        let len = std::fs::metadata(dir.join(&f.file)).map(|md| md.len()).ok();
        if len != Some(f.bytes) {
            return Err(VmError::Failed(format!("{} is missing or damaged", f.file)));
        }
    }
    if file_stamp(init) != (m.init_bytes, m.init_mtime_ms) {
        return Err(VmError::Failed("the init binary changed".into()));
    }
    Ok(m)
}

/// QEMU's machine: `microvm` without option ROMs, PIT or PIC (each costs
/// boot time under TCG). The RTC stays: without it this kernel boots
/// 1.5–2.5 s slower under TCG (measured).
pub const MACHINE: &str = "microvm,x-option-roms=off,pit=off,pic=off";

/// The guest kernel's command line: console on the serial port, quiet,
/// no reboot on panic (the VMM exits), no PCI probe (virtio is on MMIO),
/// aibox as init; the TSC frequency
/// given so the kernel skips its calibration (~100 ms under TCG).
pub fn kernel_cmdline(probe: bool) -> String {
    let mut append = String::from("console=ttyS0 quiet panic=-1 pci=off rdinit=/init");
    if probe {
        append.push_str(" aibox.probe");
    }
    if let Some(khz) = cpu_khz() {
        append.push_str(&format!(" tsc_early_khz={khz}"));
    }
    append
}

/// Build (or reuse) the guest kernel and initramfs in `dir`, with `init`
/// (the aibox binary) as the guest's `/init`. `log` gets progress lines.
pub fn build_artifacts(
    dir: &Path,
    package: &str,
    init: &Path,
    rebuild: bool,
    log: &mut dyn FnMut(&str),
) -> Result<(Manifest, bool), VmError> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let (pkg, version) = resolve_package(package)?;
    let (init_sha, _) = sha256_file(init)?;
    if !rebuild {
        if let Ok(m) = load(dir) {
            if m.kernel_package == pkg && m.kernel_version == version && m.init_sha256 == init_sha {
                // The same binary under a new mtime (a copy, a rebuild with
                // the same bytes): note its stamp for `load_quick`.
                let stamp = file_stamp(init);
                if (m.init_bytes, m.init_mtime_ms) != stamp {
                    let mut m2 = m.clone();
                    (m2.init_bytes, m2.init_mtime_ms) = stamp;
                    if let Ok(text) = serde_json::to_vec_pretty(&m2) {
                        let tmp = dir.join(".manifest.tmp");
                        if std::fs::write(&tmp, text).is_ok() {
                            let _ = std::fs::rename(&tmp, dir.join(MANIFEST));
                        }
                    }
                    return Ok((m2, true));
                }
                return Ok((m, true));
            }
        }
    }
    let work = dir.join(format!(".build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(io("creating the build directory"))?;
    let result = build_in(&work, dir, &pkg, &version, init, &init_sha, log);
    let _ = std::fs::remove_dir_all(&work);
    result.map(|m| (m, false))
}

fn build_in(
    work: &Path,
    dir: &Path,
    pkg: &str,
    version: &str,
    init: &Path,
    init_sha: &str,
    log: &mut dyn FnMut(&str),
) -> Result<Manifest, VmError> {
    log(&format!("downloading {pkg} {version}"));
    run(
        Command::new("apt-get")
            .args(["download", &format!("{pkg}={version}")])
            .current_dir(work),
        "apt-get download",
    )?;
    let deb = std::fs::read_dir(work)
        .map_err(io("listing the download"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| VmError::Failed(format!("apt-get download left no .deb for {pkg}")))?;
    let root = work.join("root");
    run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
        "dpkg-deb -x",
    )?;
    let modules_root = root.join("lib/modules");
    let release = std::fs::read_dir(&modules_root)
        .map_err(io(format!("reading {}", modules_root.display())))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .ok_or_else(|| VmError::Failed(format!("{pkg} holds no kernel modules")))?;
    let vmlinuz = root.join(format!("boot/vmlinuz-{release}"));
    if !vmlinuz.is_file() {
        return Err(VmError::Failed(format!(
            "{pkg} has no boot/vmlinuz-{release}"
        )));
    }
    let mdir = modules_root.join(&release);
    // The package has no modules.dep (depmod makes it at install time):
    // each module's .modinfo names what it needs.
    let files = module_files(&mdir)?;
    let order = module_order(GUEST_MODULES, &mut |name| {
        let Some(rel) = files.get(name) else {
            return Ok(None);
        };
        let data = std::fs::read(mdir.join(rel)).map_err(io(format!("reading module {rel}")))?;
        Ok(Some((rel.clone(), modinfo_depends(&data))))
    })?;
    log(&format!(
        "kernel {release}: {} modules for {}",
        order.len(),
        GUEST_MODULES.join(", ")
    ));

    let mut cpio = Cpio::default();
    for d in ["dev", "proc", "sys", "tmp", "run", "etc/aibox"] {
        cpio.dir(d);
    }
    let mut list = String::new();
    for m in &order {
        let data = std::fs::read(mdir.join(m)).map_err(io(format!("reading module {m}")))?;
        let at = format!("lib/modules/{release}/{m}");
        cpio.file(&at, 0o644, &data);
        list.push_str(&format!("/{at}\n"));
    }
    cpio.file(aibox_agent::guest::MODULE_LIST, 0o644, list.as_bytes());
    let init_bytes = std::fs::read(init).map_err(io(format!("reading {}", init.display())))?;
    cpio.file("init", 0o755, &init_bytes);
    let initramfs = cpio.finish();
    log(&format!(
        "initramfs: {} MiB (the aibox binary as /init)",
        initramfs.len() >> 20
    ));

    // Write the new files beside the old ones, then the manifest last: a
    // manifest always names complete files.
    let bzimage = std::fs::read(&vmlinuz).map_err(io("reading the kernel"))?;
    let (kernel_name, kernel_format, kernel) = match vmlinux_from_bzimage(&bzimage)? {
        Some(elf) => (format!("vmlinux-{release}"), "elf", elf),
        None => (format!("vmlinuz-{release}"), "bzimage", bzimage),
    };
    log(&format!(
        "kernel image: {kernel_format}, {} MiB",
        kernel.len() >> 20
    ));
    let initramfs_name = format!("initramfs-{}.cpio", &init_sha[..16]);
    let write = |name: &str, data: &[u8]| -> Result<(), VmError> {
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(io(format!("writing {name}")))?;
        f.write_all(data).map_err(io(format!("writing {name}")))?;
        f.sync_all().map_err(io(format!("writing {name}")))?;
        std::fs::rename(&tmp, dir.join(name)).map_err(io(format!("writing {name}")))
    };
    write(&kernel_name, &kernel)?;
    write(&initramfs_name, &initramfs)?;
    let info = |name: &str| -> Result<FileInfo, VmError> {
        let (sha256, bytes) = sha256_file(&dir.join(name))?;
        Ok(FileInfo {
            file: name.to_string(),
            sha256,
            bytes,
        })
    };
    let m = Manifest {
        format: 1,
        kernel_package: pkg.to_string(),
        kernel_version: version.to_string(),
        kernel_release: release,
        kernel: info(&kernel_name)?,
        kernel_format: kernel_format.to_string(),
        initramfs: info(&initramfs_name)?,
        modules: order.iter().map(|p| module_name(p)).collect(),
        init_sha256: init_sha.to_string(),
        init_bytes: file_stamp(init).0,
        init_mtime_ms: file_stamp(init).1,
        built_ms: crate::now_ms(),
    };
    let text = serde_json::to_vec_pretty(&m).map_err(|e| VmError::Failed(e.to_string()))?;
    write(MANIFEST, &text)?;
    // Older builds' files go once the manifest names the new ones.
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.filter_map(Result::ok) {
            let n = e.file_name().to_string_lossy().into_owned();
            let ours = n.starts_with("vmlinuz-")
                || n.starts_with("vmlinux-")
                || n.starts_with("initramfs-");
            if ours && n != m.kernel.file && n != m.initramfs.file {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(m)
}

// ---- the boot probe

#[derive(Debug, Clone, serde::Serialize)]
pub struct Probe {
    pub vmm: String,
    pub accel: String,
    /// From starting the VMM to the guest's ready line.
    pub ready_ms: u64,
    /// The guest kernel's uptime when init said ready.
    pub guest_uptime_s: f64,
    pub modules_loaded: usize,
    /// Until the VMM exited after the guest powered off.
    pub total_ms: u64,
}

/// The host CPU's frequency in kHz, for `tsc_early_khz=`: without it the
/// guest kernel sometimes hangs calibrating its TSC under TCG.
fn cpu_khz() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0) as u64)
}

/// Boot the artifacts in `dir` under QEMU's `microvm` machine with `accel`
/// (`tcg` or `kvm`) and time it to the guest's ready line.
pub fn probe(dir: &Path, accel: &str, timeout: Duration) -> Result<Probe, VmError> {
    if accel != "tcg" && accel != "kvm" {
        return Err(VmError::Invalid(format!(
            "accel must be tcg or kvm, not {accel:?}"
        )));
    }
    let m = load(dir)?;
    let d = detect();
    let (qemu, _) = d.qemu.ok_or_else(|| {
        VmError::Unavailable("no qemu-system-x86_64: install Debian's qemu-system-x86".into())
    })?;
    let append = kernel_cmdline(true);
    // The initramfs holds the whole aibox binary; give the guest room to
    // unpack it.
    let mem_mib = 256 + 2 * (m.initramfs.bytes >> 20);
    let start = Instant::now();
    let mut child = Command::new(&qemu)
        .args([
            "-M",
            MACHINE,
            "-accel",
            accel,
            "-cpu",
            "max",
            "-smp",
            "1",
            "-nodefaults",
        ])
        .args([
            "-no-user-config",
            "-nographic",
            "-no-reboot",
            "-serial",
            "stdio",
        ])
        .arg("-m")
        .arg(mem_mib.to_string())
        .arg("-kernel")
        .arg(dir.join(&m.kernel.file))
        .arg("-initrd")
        .arg(dir.join(&m.initramfs.file))
        .arg("-append")
        .arg(&append)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io(format!("starting {}", qemu.display())))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| VmError::Failed("no stdout".into()))?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let ready = loop {
        let left = timeout.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(aibox_agent::guest::READY) => {
                break Some((line, start.elapsed()))
            }
            Ok(line) => seen.push(line),
            Err(_) => break None,
        }
    };
    let Some((line, at)) = ready else {
        let _ = child.kill();
        let _ = child.wait();
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let tail: Vec<_> = seen.iter().rev().take(5).rev().cloned().collect();
        return Err(VmError::Failed(format!(
            "the guest did not get ready within {}s under {accel}: {} {}",
            timeout.as_secs(),
            err.trim(),
            tail.join(" | ")
        )));
    };
    // The guest powers off after the probe; wait for QEMU to exit.
    let deadline = Instant::now() + Duration::from_secs(20);
    let total = loop {
        match child.try_wait() {
            Ok(Some(_)) => break start.elapsed(),
            _ if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break start.elapsed();
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .map(str::to_string)
    };
    Ok(Probe {
        vmm: "qemu microvm".into(),
        accel: accel.to_string(),
        ready_ms: at.as_millis() as u64,
        guest_uptime_s: field("uptime=").and_then(|v| v.parse().ok()).unwrap_or(0.0),
        modules_loaded: field("modules=").and_then(|v| v.parse().ok()).unwrap_or(0),
        total_ms: total.as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read a newc archive back: (name, mode, data).
    fn entries(mut b: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let total = b.len();
        loop {
            assert_eq!(&b[..6], b"070701");
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                    .unwrap()
            };
            let (mode, size, namesize) = (field(1), field(6) as usize, field(11) as usize);
            let name = std::str::from_utf8(&b[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            let mut at = 110 + namesize;
            at += (4 - (total - b.len() + at) % 4) % 4;
            let data = b[at..at + size].to_vec();
            at += size;
            at += (4 - (total - b.len() + at) % 4) % 4;
            b = &b[at..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty());
                return out;
            }
            out.push((name, mode, data));
        }
    }

    #[test]
    fn cpio_newc_round_trips_with_parents_once() {
        let mut c = Cpio::default();
        c.dir("etc/aibox");
        c.file("lib/modules/x/a.ko", 0o644, b"abc");
        c.file("lib/modules/x/b.ko", 0o644, b"hello");
        c.file("init", 0o755, &[1, 2, 3, 4, 5]);
        let e = entries(&c.finish());
        let names: Vec<_> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc",
                "etc/aibox",
                "lib",
                "lib/modules",
                "lib/modules/x",
                "lib/modules/x/a.ko",
                "lib/modules/x/b.ko",
                "init"
            ]
        );
        assert_eq!(e[0].1, 0o040755);
        assert_eq!((e[6].1, e[6].2.as_slice()), (0o100644, &b"hello"[..]));
        assert_eq!(
            (e[7].1, e[7].2.as_slice()),
            (0o100755, &[1, 2, 3, 4, 5][..])
        );
    }

    #[test]
    fn modules_load_after_their_dependencies() {
        let deps: BTreeMap<&str, (&str, Vec<String>)> = [
            (
                "virtio_blk",
                (
                    "block/virtio_blk.ko",
                    vec!["virtio_ring".into(), "virtio".into()],
                ),
            ),
            (
                "virtio_ring",
                ("virtio/virtio_ring.ko", vec!["virtio".into()]),
            ),
            ("virtio", ("virtio/virtio.ko", vec![])),
            (
                "virtio_mmio",
                (
                    "virtio/virtio_mmio.ko",
                    vec!["virtio".into(), "virtio_ring".into()],
                ),
            ),
            ("overlay", ("fs/overlay.ko", vec![])),
        ]
        .into_iter()
        .collect();
        let mut lookup = |n: &str| Ok(deps.get(n).map(|(p, d)| (p.to_string(), d.clone())));
        let order = module_order(&["virtio_mmio", "virtio-blk", "overlay"], &mut lookup).unwrap();
        assert_eq!(
            order,
            [
                "virtio/virtio.ko",
                "virtio/virtio_ring.ko",
                "virtio/virtio_mmio.ko",
                "block/virtio_blk.ko",
                "fs/overlay.ko"
            ]
        );
        assert!(module_order(&["nope"], &mut lookup)
            .unwrap_err()
            .to_string()
            .contains("no module"));
        assert_eq!(
            module_name("kernel/x/vmw_vsock-virtio.ko.xz"),
            "vmw_vsock_virtio"
        );
        let ko = b"\x7fELF...\0license=GPL\0depends=virtio,virtio_ring\0retpoline=Y\0";
        assert_eq!(modinfo_depends(ko), ["virtio", "virtio_ring"]);
        assert!(modinfo_depends(b"\0depends=\0").is_empty());
    }

    #[test]
    fn lz4_blocks_decode_with_overlapping_matches() {
        // "abcabcabcabc" + "xyz": 3 literals, then a match of 9 at offset
        // 3 (overlapping), then the last literals.
        let block = [0x35, b'a', b'b', b'c', 3, 0, 0x30, b'x', b'y', b'z'];
        let mut out = Vec::new();
        lz4_block(&block, &mut out).unwrap();
        assert_eq!(out, b"abcabcabcabcxyz");
        // Long literal runs use extra length bytes.
        let mut long = vec![0xf0, 5];
        long.extend(std::iter::repeat_n(b'q', 20));
        let mut out = Vec::new();
        lz4_block(&long, &mut out).unwrap();
        assert_eq!(out, vec![b'q'; 20]);
        for bad in [&[0x10][..], &[0x00, 9, 0, 0x00][..], &[0x10, b'a', 0][..]] {
            assert!(lz4_block(bad, &mut Vec::new()).is_err(), "{bad:?}");
        }
        assert!(vmlinux_from_bzimage(b"not a kernel at all").is_err());
    }

    #[test]
    fn a_missing_or_altered_artifact_is_refused() {
        let dir = std::env::temp_dir().join(format!("aibox-vm-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(load(&dir)
            .unwrap_err()
            .to_string()
            .contains("aibox vm artifacts"));
        std::fs::write(dir.join("k"), b"kernel").unwrap();
        std::fs::write(dir.join("i"), b"initramfs").unwrap();
        let info = |f: &str| {
            let (sha256, bytes) = sha256_file(&dir.join(f)).unwrap();
            FileInfo {
                file: f.into(),
                sha256,
                bytes,
            }
        };
        let m = Manifest {
            format: 1,
            kernel_package: "p".into(),
            kernel_version: "1".into(),
            kernel_release: "r".into(),
            kernel: info("k"),
            kernel_format: "elf".into(),
            initramfs: info("i"),
            modules: vec![],
            init_sha256: "x".into(),
            init_bytes: 0,
            init_mtime_ms: 0,
            built_ms: 0,
        };
        std::fs::write(dir.join(MANIFEST), serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(load(&dir).unwrap(), m);
        std::fs::write(dir.join("i"), b"tampered").unwrap();
        assert!(load(&dir)
            .unwrap_err()
            .to_string()
            .contains("does not match"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
