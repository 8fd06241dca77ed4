//! Shared helpers for the end-to-end tests: the aibox binary, isolated state
//! directories per test, and loud skips when the host cannot run sandboxes.
#![allow(dead_code)]

pub mod mcp;
pub mod server;

use aibox_runtime::{Dirs, Runtime};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test: `$AIBOX_BIN` (rootless runs copy it somewhere the
/// test user can read) or the one cargo built.
pub fn bin() -> PathBuf {
    std::env::var_os("AIBOX_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_aibox")))
}

pub fn is_root() -> bool {
    aibox_sys::geteuid() == 0
}

/// The unprivileged owner a test gives a directory it mounts read-write:
/// as root, a sandbox acts there as the directory's owner, and one owned
/// by root is refused. Rootless, the caller owns it already.
pub const MOUNT_OWNER: u32 = 1000;

/// Make `dir` (and what is in it) [`MOUNT_OWNER`]'s when running as root.
pub fn give_to_user(dir: &std::path::Path) {
    if !is_root() {
        return;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        std::os::unix::fs::lchown(&p, Some(MOUNT_OWNER), Some(MOUNT_OWNER)).unwrap();
        if p.is_dir() && !p.is_symlink() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
}

/// Can this process create a user namespace at all? Tests that need one
/// call this and skip with a printed reason when not.
pub fn sandboxes_supported() -> bool {
    match aibox_sys::fork() {
        Ok(aibox_sys::Fork::Child) => {
            let ok = aibox_sys::unshare(libc::CLONE_NEWUSER).is_ok();
            aibox_sys::exit_now(if ok { 0 } else { 1 })
        }
        Ok(aibox_sys::Fork::Parent(pid)) => matches!(
            aibox_sys::waitpid(pid),
            Ok(aibox_sys::WaitStatus::Exited(0))
        ),
        Err(_) => false,
    }
}

#[macro_export]
macro_rules! require_sandboxes {
    () => {
        if !common::sandboxes_supported() {
            eprintln!(
                "SKIP {}: this host cannot create user namespaces",
                module_path!()
            );
            return;
        }
    };
}

#[macro_export]
macro_rules! require_root {
    () => {
        if !common::is_root() {
            eprintln!(
                "SKIP {}: needs root (rootless sandboxes cannot do this here)",
                std::thread::current().name().unwrap_or("?")
            );
            return;
        }
    };
}

/// A private run dir per test (so leak checks see only this test's state)
/// and a data dir shared by all tests (the host template is built once).
pub struct Env {
    pub dirs: Dirs,
    /// Environment variables every `aibox` this runs gets.
    pub vars: Vec<(String, String)>,
}

impl Env {
    pub fn new(name: &str) -> Env {
        let uid = aibox_sys::geteuid();
        let base = std::env::temp_dir().join(format!("aibox-test-{uid}"));
        std::fs::create_dir_all(&base).unwrap();
        let run = base.join(format!("run-{name}-{}", aibox_runtime::random_id()));
        let data = base.join("data");
        Env {
            dirs: Dirs { run, data },
            vars: Vec::new(),
        }
    }

    pub fn runtime(&self) -> Runtime {
        Runtime::with(self.dirs.clone(), bin())
    }

    /// `aibox ARGS...` with this environment's directories.
    pub fn aibox(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("AIBOX_RUN_DIR", &self.dirs.run)
            .env("AIBOX_DATA_DIR", &self.dirs.data)
            .env("AIBOX_LOCAL", "1")
            .env_remove("AIBOX_LOG")
            .envs(self.vars.iter().map(|(k, v)| (k, v)));
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.aibox(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let rt = self.runtime();
        for r in rt.list() {
            if let Ok(sb) = rt.get(&r.id) {
                let _ = sb.destroy();
            }
        }
        rt.gc();
        rt.release_volumes();
        let _ = std::fs::remove_dir_all(&self.dirs.run);
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Names of `aibox-*` cgroups under every v1 hierarchy and the unified one.
pub fn aibox_cgroups() -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with("aibox-") {
                out.push(p.clone());
            }
            if depth < 4 {
                walk(&p, depth + 1, out);
            }
        }
    }
    walk(Path::new("/sys/fs/cgroup"), 0, &mut out);
    out
}

/// Mount points of the host's mount namespace.
pub fn host_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/1/mountinfo")
        .or_else(|_| std::fs::read_to_string("/proc/self/mountinfo"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect()
}

/// What a microVM test needs that this host lacks, if anything: QEMU,
/// mkfs.ext4, busybox (for the test image) and apt (for the guest kernel).
pub fn microvm_missing_tool() -> Option<&'static str> {
    [
        "/usr/bin/qemu-system-x86_64",
        "/usr/sbin/mkfs.ext4",
        "/bin/busybox",
        "/usr/bin/apt-get",
    ]
    .into_iter()
    .find(|t| !Path::new(t).exists())
}

/// Write the busybox test image (an OCI layout: a whiteout and an opaque
/// directory across two layers) to `dir`.
pub fn busybox_image(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/make_image.py");
    let ok = Command::new("python3")
        .arg(script)
        .arg(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "make_image.py failed");
}
