//! Resource limits through cgroups, v1 and v2, with plain file IO.
//!
//! Threat: a sandbox exhausting host memory, pids or CPU. Each sandbox gets
//! its own cgroup *under the cgroup of the process that creates it* (in CI
//! and dev sessions that is e.g. `memory:/process_api/<id>`), never at the
//! hierarchy root. On hybrid hosts the v1 controllers win when they carry
//! memory/pids (cgroup2 there may only have hugetlb); pure v2 hosts use the
//! unified hierarchy. All paths are derived from `/proc/self/mountinfo` and
//! `/proc/self/cgroup`, so tests can point the logic at a temp directory.

use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("failed to create cgroup {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to remove cgroup {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the {0} controller is not available")]
    NoController(&'static str),
}

/// The controllers aibox uses.
pub const CONTROLLERS: [&str; 5] = ["memory", "pids", "cpu", "cpuacct", "freezer"];

/// Where each controller lives for the current process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// controller → directory of *our own* cgroup in that hierarchy.
    V1(Vec<(String, PathBuf)>),
    /// our own cgroup directory in the unified hierarchy, and the controllers
    /// it can delegate.
    V2 {
        own: PathBuf,
        controllers: Vec<String>,
    },
    None,
}

impl Layout {
    /// Detect from the live system.
    pub fn detect() -> Layout {
        let cg = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        // Fast path: the standard mount points, checked with statfs. Reading
        // mountinfo takes the kernel's namespace lock, which can wait a
        // millisecond behind a sandbox's mount namespace being torn down.
        if let Some(l) = Layout::at_standard_places(&cg) {
            return l;
        }
        let mi = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Layout::from_proc(&mi, &cg, |p| fs::read_to_string(p).ok())
    }

    /// The layout when cgroups are mounted where systemd and most
    /// distributions put them (/sys/fs/cgroup, /sys/fs/cgroup/<controllers>,
    /// /sys/fs/cgroup/unified); None when anything looks different.
    fn at_standard_places(self_cgroup: &str) -> Option<Layout> {
        const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
        let root = Path::new("/sys/fs/cgroup");
        let is = |p: &Path, magic: i64| aibox_sys::statfs_type(p).ok() == Some(magic);
        let unified = self_cgroup.lines().find_map(|l| l.strip_prefix("0::"));
        if is(root, aibox_sys::CGROUP2_SUPER_MAGIC) {
            let own = root.join(unified?.trim_start_matches('/'));
            let controllers = fs::read_to_string(own.join("cgroup.controllers"))
                .ok()?
                .split_whitespace()
                .map(str::to_string)
                .collect();
            return Some(Layout::V2 { own, controllers });
        }
        let mut dirs = Vec::new();
        for line in self_cgroup.lines() {
            let mut it = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
                return None;
            };
            if ctrls.is_empty() || !ctrls.split(',').any(|c| CONTROLLERS.contains(&c)) {
                continue;
            }
            let mnt = root.join(ctrls);
            if !is(&mnt, CGROUP_SUPER_MAGIC) {
                return None;
            }
            for c in ctrls.split(',').filter(|c| CONTROLLERS.contains(c)) {
                dirs.push((c.to_string(), mnt.join(path.trim_start_matches('/'))));
            }
        }
        if dirs.iter().any(|(c, _)| c == "memory" || c == "pids") {
            return Some(Layout::V1(dirs));
        }
        None
    }

    /// Pure detection from the text of mountinfo and /proc/self/cgroup.
    pub fn from_proc(
        mountinfo: &str,
        self_cgroup: &str,
        read: impl Fn(&Path) -> Option<String>,
    ) -> Layout {
        let mut v1 = Vec::new();
        let mut v2_mount: Option<PathBuf> = None;
        for line in mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            let (Some(mnt), Some(fstype)) = (pre.get(4), post.first()) else {
                continue;
            };
            match *fstype {
                "cgroup" => {
                    let opts = post.get(2).copied().unwrap_or("");
                    for c in opts.split(',') {
                        if CONTROLLERS.contains(&c) {
                            v1.push((c.to_string(), PathBuf::from(unescape(mnt))));
                        }
                    }
                }
                "cgroup2" => v2_mount = Some(PathBuf::from(unescape(mnt))),
                _ => {}
            }
        }
        let own = |ctrl: &str| -> Option<String> {
            self_cgroup.lines().find_map(|l| {
                let mut it = l.splitn(3, ':');
                let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
                if ctrl.is_empty() {
                    (ctrls.is_empty()).then(|| path.to_string())
                } else {
                    ctrls
                        .split(',')
                        .any(|c| c == ctrl)
                        .then(|| path.to_string())
                }
            })
        };
        let has_v1_core = v1.iter().any(|(c, _)| c == "memory" || c == "pids");
        if has_v1_core {
            let dirs = v1
                .into_iter()
                .filter_map(|(c, mnt)| {
                    let rel = own(&c)?;
                    Some((c, mnt.join(rel.trim_start_matches('/'))))
                })
                .collect();
            return Layout::V1(dirs);
        }
        if let (Some(mnt), Some(rel)) = (v2_mount, own("")) {
            let own_dir = mnt.join(rel.trim_start_matches('/'));
            let controllers = read(&own_dir.join("cgroup.controllers"))
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect();
            return Layout::V2 {
                own: own_dir,
                controllers,
            };
        }
        Layout::None
    }

    pub fn version(&self) -> &'static str {
        match self {
            Layout::V1(_) => "v1",
            Layout::V2 { .. } => "v2",
            Layout::None => "none",
        }
    }

    pub fn has(&self, controller: &str) -> bool {
        match self {
            Layout::V1(d) => d.iter().any(|(c, _)| c == controller),
            // v2 has no separate cpuacct/freezer controllers: cpu.stat and
            // cgroup.freeze are always there.
            Layout::V2 { controllers, .. } => {
                controller == "cpuacct"
                    || controller == "freezer"
                    || controllers.iter().any(|c| c == controller)
            }
            Layout::None => false,
        }
    }
}

/// mountinfo escapes spaces etc. as \040.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok());
            if let Some(v) = oct {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Limits to apply; `None` leaves a controller unlimited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    /// In cores.
    pub cpus: Option<f64>,
    /// Create a freezer cgroup (for pause/resume).
    pub freezer: bool,
    /// Create a cpu accounting cgroup (for stats).
    pub accounting: bool,
}

/// A sandbox's cgroup: one directory per controller (v1) or one (v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    pub version: String,
    /// (controller or "unified", directory)
    pub dirs: Vec<(String, PathBuf)>,
}

/// What was applied, for the isolation report.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub memory: bool,
    pub swap: bool,
    pub pids: bool,
    pub cpu: bool,
    pub freezer: bool,
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.into(),
        value: value.into(),
        source,
    })
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::Create {
            path: path.into(),
            source,
        }),
    }
}

impl Cgroup {
    /// Create `name` under our own cgroup with `limits`. Controllers that are
    /// missing are skipped (and reported as not applied); errors creating a
    /// controller that exists are returned so callers can fail closed.
    pub fn create(
        layout: &Layout,
        name: &str,
        limits: &Limits,
    ) -> Result<(Cgroup, Applied), CgroupError> {
        let mut applied = Applied::default();
        match layout {
            Layout::None => Ok((
                Cgroup {
                    version: "none".into(),
                    dirs: vec![],
                },
                applied,
            )),
            Layout::V1(ctrls) => {
                let mut cg = Cgroup {
                    version: "v1".into(),
                    dirs: vec![],
                };
                let want = |c: &str| match c {
                    "memory" => limits.memory.is_some(),
                    "pids" => limits.pids.is_some(),
                    "cpu" => limits.cpus.is_some(),
                    "cpuacct" => limits.accounting,
                    "freezer" => limits.freezer,
                    _ => false,
                };
                for (ctrl, own) in ctrls {
                    if !want(ctrl) || cg.dirs.iter().any(|(c, _)| c == ctrl) {
                        continue;
                    }
                    let dir = own.join(name);
                    if let Err(e) = mkdir(&dir) {
                        cg.remove_quiet();
                        return Err(e);
                    }
                    cg.dirs.push((ctrl.clone(), dir.clone()));
                    let r = (|| -> Result<(), CgroupError> {
                        match ctrl.as_str() {
                            "memory" => {
                                if let Some(m) = limits.memory {
                                    // memsw exists only with swap accounting. Without
                                    // it, a host without swap needs nothing more, and
                                    // otherwise swappiness 0 keeps the limit close to
                                    // real (but not exact: reported as not applied).
                                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                                    let has_memsw = memsw.exists();
                                    // The kernel refuses a limit above memsw's, which a
                                    // reused cgroup may still have from its last run.
                                    if has_memsw {
                                        write(&memsw, "-1")?;
                                    }
                                    write(&dir.join("memory.limit_in_bytes"), &m.to_string())?;
                                    applied.memory = true;
                                    if has_memsw {
                                        write(&memsw, &m.to_string())?;
                                        applied.swap = true;
                                    } else if swap_total() == 0 {
                                        applied.swap = true;
                                    } else {
                                        let _ = write(&dir.join("memory.swappiness"), "0");
                                    }
                                }
                            }
                            "pids" => {
                                if let Some(p) = limits.pids {
                                    write(&dir.join("pids.max"), &p.to_string())?;
                                    applied.pids = true;
                                }
                            }
                            "cpu" => {
                                if let Some(c) = limits.cpus {
                                    write(&dir.join("cpu.cfs_period_us"), "100000")?;
                                    write(
                                        &dir.join("cpu.cfs_quota_us"),
                                        &((c * 100000.0) as u64).max(1000).to_string(),
                                    )?;
                                    applied.cpu = true;
                                }
                            }
                            "freezer" => applied.freezer = true,
                            _ => {}
                        }
                        Ok(())
                    })();
                    if let Err(e) = r {
                        cg.remove_quiet();
                        return Err(e);
                    }
                }
                Ok((cg, applied))
            }
            Layout::V2 { own, controllers } => {
                let wanted: Vec<&str> = ["memory", "pids", "cpu"]
                    .into_iter()
                    .filter(|c| controllers.iter().any(|h| h == c))
                    .collect();
                enable_subtree(own, &wanted)?;
                let dir = own.join(name);
                mkdir(&dir)?;
                let cg = Cgroup {
                    version: "v2".into(),
                    dirs: vec![("unified".into(), dir.clone())],
                };
                let r = (|| -> Result<(), CgroupError> {
                    if let Some(m) = limits.memory.filter(|_| wanted.contains(&"memory")) {
                        write(&dir.join("memory.max"), &m.to_string())?;
                        applied.memory = true;
                        let swap = dir.join("memory.swap.max");
                        applied.swap = if swap.exists() {
                            write(&swap, "0").is_ok()
                        } else {
                            swap_total() == 0
                        };
                    }
                    if let Some(p) = limits.pids.filter(|_| wanted.contains(&"pids")) {
                        write(&dir.join("pids.max"), &p.to_string())?;
                        applied.pids = true;
                    }
                    if let Some(c) = limits.cpus.filter(|_| wanted.contains(&"cpu")) {
                        write(
                            &dir.join("cpu.max"),
                            &format!("{} 100000", ((c * 100000.0) as u64).max(1000)),
                        )?;
                        applied.cpu = true;
                    }
                    applied.freezer = dir.join("cgroup.freeze").exists();
                    Ok(())
                })();
                if let Err(e) = r {
                    cg.remove_quiet();
                    return Err(e);
                }
                Ok((cg, applied))
            }
        }
    }

    /// Move a process into every directory of this cgroup.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        for (_, dir) in &self.dirs {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Move the calling (single-threaded) process into every directory of a
    /// v1 cgroup by writing "0" to `tasks`: moving oneself this way does not
    /// take the kernel's global threadgroup lock, so it never waits for an
    /// RCU grace period.
    pub fn join_self(&self) -> Result<(), CgroupError> {
        self.join_self_under(Path::new("/"))
    }

    /// [`join_self`](Self::join_self) with the host's tree mounted at `root`.
    pub fn join_self_under(&self, root: &Path) -> Result<(), CgroupError> {
        for (_, dir) in &self.dirs {
            let dir = root.join(dir.strip_prefix("/").unwrap_or(dir));
            write(&dir.join("tasks"), "0")?;
        }
        Ok(())
    }

    fn dir(&self, ctrl: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _)| c == ctrl || c == "unified")
            .map(|(_, d)| d.as_path())
    }

    /// Freeze (`true`) or thaw every process, waiting until the kernel confirms.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let dir = self
            .dir("freezer")
            .ok_or(CgroupError::NoController("freezer"))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        if self.version == "v2" {
            write(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
            let want = if frozen { "frozen 1" } else { "frozen 0" };
            while Instant::now() < deadline {
                if read(&dir.join("cgroup.events"))?.lines().any(|l| l == want) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        } else {
            let state = if frozen { "FROZEN" } else { "THAWED" };
            write(&dir.join("freezer.state"), state)?;
            while Instant::now() < deadline {
                if read(&dir.join("freezer.state"))?.trim() == state {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Err(CgroupError::Write {
            path: dir.into(),
            value: if frozen {
                "frozen".into()
            } else {
                "thawed".into()
            },
            source: io::Error::from(io::ErrorKind::TimedOut),
        })
    }

    pub fn is_frozen(&self) -> bool {
        let Some(dir) = self.dir("freezer") else {
            return false;
        };
        if self.version == "v2" {
            read(&dir.join("cgroup.events"))
                .map(|s| s.lines().any(|l| l == "frozen 1"))
                .unwrap_or(false)
        } else {
            read(&dir.join("freezer.state"))
                .map(|s| s.trim() == "FROZEN")
                .unwrap_or(false)
        }
    }

    /// Current usage.
    pub fn stats(&self) -> Stats {
        let num = |ctrl: &str, file: &str| -> Option<u64> {
            read(&self.dir(ctrl)?.join(file)).ok()?.trim().parse().ok()
        };
        let kv = |ctrl: &str, file: &str, key: &str| -> Option<u64> {
            read(&self.dir(ctrl)?.join(file))
                .ok()?
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == key).then(|| v.trim().parse().ok()).flatten()
                })
        };
        if self.version == "v2" {
            Stats {
                cpu_usec: kv("cpu", "cpu.stat", "usage_usec"),
                memory_bytes: num("memory", "memory.current"),
                memory_peak_bytes: num("memory", "memory.peak"),
                pids: num("pids", "pids.current"),
                oom_kills: kv("memory", "memory.events", "oom_kill"),
            }
        } else {
            Stats {
                cpu_usec: num("cpuacct", "cpuacct.usage").map(|ns| ns / 1000),
                memory_bytes: num("memory", "memory.usage_in_bytes"),
                memory_peak_bytes: num("memory", "memory.max_usage_in_bytes"),
                pids: num("pids", "pids.current"),
                oom_kills: kv("memory", "memory.oom_control", "oom_kill"),
            }
        }
    }

    /// Pids of every process in the cgroup (from the first directory).
    pub fn procs(&self) -> Vec<i32> {
        self.dirs
            .first()
            .and_then(|(_, d)| read(&d.join("cgroup.procs")).ok())
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// SIGKILL everything inside (cgroup.kill on v2, a loop on v1).
    pub fn kill_all(&self) {
        if let Some((_, d)) = self.dirs.first() {
            if self.version == "v2" && write(&d.join("cgroup.kill"), "1").is_ok() {
                return;
            }
        }
        // A frozen task only dies once thawed.
        if self.is_frozen() {
            let _ = self.set_frozen(false);
        }
        for _ in 0..50 {
            let procs = self.procs();
            if procs.is_empty() {
                return;
            }
            for p in procs {
                let _ = aibox_sys::kill(p, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Remove every directory, waiting (up to `wait`) for exiting tasks.
    pub fn remove(&self, wait: Duration) -> Result<(), CgroupError> {
        let deadline = Instant::now() + wait;
        for (_, dir) in &self.dirs {
            loop {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(source) => {
                        return Err(CgroupError::Remove {
                            path: dir.clone(),
                            source,
                        })
                    }
                }
            }
        }
        Ok(())
    }

    fn remove_quiet(&self) {
        for (_, dir) in &self.dirs {
            let _ = fs::remove_dir(dir);
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub cpu_usec: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub memory_peak_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub oom_kills: Option<u64>,
}

fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.into(),
        source,
    })
}

fn swap_total() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("SwapTotal:")
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
        })
        .unwrap_or(0)
}

/// v2 "no internal processes": controllers can only be enabled for children
/// of a cgroup that has no processes itself. If ours has (EBUSY), move our
/// own process into a leaf `aibox.host` first (what systemd-run and podman do).
fn enable_subtree(own: &Path, controllers: &[&str]) -> Result<(), CgroupError> {
    if controllers.is_empty() {
        return Ok(());
    }
    let enabled = read(&own.join("cgroup.subtree_control")).unwrap_or_default();
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let value = missing.join(" ");
    let path = own.join("cgroup.subtree_control");
    match fs::write(&path, &value) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            let leaf = own.join("aibox.host");
            mkdir(&leaf)?;
            write(&leaf.join("cgroup.procs"), &aibox_sys::getpid().to_string())?;
            write(&path, &value)
        }
        Err(source) => Err(CgroupError::Write {
            path,
            value,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
32 30 0:28 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
33 30 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 30 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpuacct
";
    const HYBRID_SELF: &str = "4:memory:/process_api/abc\n8:pids:/\n1:cpu:/\n2:cpuacct:/\n0::/\n";

    #[test]
    fn hybrid_host_uses_v1_under_own_cgroup() {
        let l = Layout::from_proc(HYBRID_MOUNTINFO, HYBRID_SELF, |_| None);
        let Layout::V1(dirs) = &l else {
            panic!("{l:?}")
        };
        assert!(dirs.contains(&(
            "memory".into(),
            "/sys/fs/cgroup/memory/process_api/abc".into()
        )));
        assert!(dirs.contains(&("pids".into(), "/sys/fs/cgroup/pids".into())));
        assert!(l.has("cpuacct") && !l.has("freezer"));
    }

    #[test]
    fn unified_host_uses_v2() {
        let mi = "34 25 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let l = Layout::from_proc(mi, "0::/user.slice/x.scope\n", |p| {
            assert_eq!(
                p,
                Path::new("/sys/fs/cgroup/user.slice/x.scope/cgroup.controllers")
            );
            Some("cpu memory pids\n".into())
        });
        assert_eq!(
            l,
            Layout::V2 {
                own: "/sys/fs/cgroup/user.slice/x.scope".into(),
                controllers: vec!["cpu".into(), "memory".into(), "pids".into()]
            }
        );
    }

    #[test]
    fn standard_places_agree_with_mountinfo() {
        let cg = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mi = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let slow = Layout::from_proc(&mi, &cg, |p| fs::read_to_string(p).ok());
        match Layout::at_standard_places(&cg) {
            Some(fast) => {
                let sorted = |l: &Layout| match l {
                    Layout::V1(d) => {
                        let mut d = d.clone();
                        d.sort();
                        Layout::V1(d)
                    }
                    other => other.clone(),
                };
                assert_eq!(sorted(&fast), sorted(&slow));
            }
            None => eprintln!("SKIP: cgroups are not at the standard places here ({slow:?})"),
        }
    }

    #[test]
    fn no_cgroups_at_all() {
        assert_eq!(Layout::from_proc("", "", |_| None), Layout::None);
    }

    #[test]
    fn v1_create_writes_limits_in_a_fake_tree() {
        let tmp = tempdir();
        let mem = tmp.join("memory");
        let pids = tmp.join("pids");
        fs::create_dir_all(&mem).unwrap();
        fs::create_dir_all(&pids).unwrap();
        let layout = Layout::V1(vec![
            ("memory".into(), mem.clone()),
            ("pids".into(), pids.clone()),
        ]);
        let limits = Limits {
            memory: Some(64 << 20),
            pids: Some(16),
            cpus: Some(0.5),
            ..Default::default()
        };
        let (cg, applied) = Cgroup::create(&layout, "aibox-t", &limits).unwrap();
        assert_eq!(
            fs::read_to_string(mem.join("aibox-t/memory.limit_in_bytes")).unwrap(),
            "67108864"
        );
        assert_eq!(
            fs::read_to_string(pids.join("aibox-t/pids.max")).unwrap(),
            "16"
        );
        assert!(
            applied.memory && applied.pids && !applied.cpu,
            "cpu controller is absent here"
        );
        for (_, d) in &cg.dirs {
            for f in fs::read_dir(d).unwrap() {
                fs::remove_file(f.unwrap().path()).unwrap();
            }
        }
        cg.remove(Duration::from_millis(10)).unwrap();
        assert!(!mem.join("aibox-t").exists());
        fs::remove_dir_all(tmp).unwrap();
    }

    #[test]
    fn v2_create_in_a_fake_tree() {
        let tmp = tempdir();
        fs::write(tmp.join("cgroup.subtree_control"), "").unwrap();
        let layout = Layout::V2 {
            own: tmp.clone(),
            controllers: vec!["memory".into(), "pids".into()],
        };
        let (cg, applied) = Cgroup::create(
            &layout,
            "sb",
            &Limits {
                memory: Some(1 << 30),
                pids: Some(5),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(tmp.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids"
        );
        assert_eq!(
            fs::read_to_string(tmp.join("sb/memory.max")).unwrap(),
            "1073741824"
        );
        assert!(applied.memory && applied.pids);
        assert_eq!(cg.dirs, vec![("unified".to_string(), tmp.join("sb"))]);
        fs::remove_dir_all(tmp).unwrap();
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape(r"/plain"), "/plain");
    }

    fn tempdir() -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "aibox-cg-test-{}-{}",
            std::process::id(),
            crate::sandbox::ids::random_id()
        ));
        fs::create_dir_all(&p).unwrap();
        p
    }
}
