//! The sandbox's mount table, as data.
//!
//! [`plan`] turns a sandbox description into an ordered list of [`Step`]s;
//! [`execute`] performs them through `aibox-sys`. Keeping the plan pure makes
//! the security-relevant *order* unit-testable (overlay before pivot_root,
//! /proc masks after /proc, the old root detached last, ...).
//!
//! Threat addressed: the sandbox seeing or writing host files. After these
//! steps the root is an overlay (template lower, tmpfs upper), /usr is a
//! read-only nosuid bind, /dev holds only a handful of device nodes, /proc is
//! the sandbox's own with sensitive files masked (as Docker masks them), /sys
//! is absent, and the host's root is no longer reachable.

use std::path::{Path, PathBuf};

/// Where the host root is while we still need it (after pivot_root).
pub const OLD_ROOT: &str = "/.aibox-old";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Stop mount events propagating back to the host (MS_REC|MS_PRIVATE on /).
    MakePrivate,
    Tmpfs {
        target: PathBuf,
        options: String,
        flags: Flags,
    },
    Mkdir {
        path: PathBuf,
        mode: u32,
    },
    /// A directory with `mode` when there is none (an existing one is left
    /// as it is, with no copy-up).
    MkdirIfMissing {
        path: PathBuf,
        mode: u32,
    },
    /// A file with this content when there is none (mode 0644).
    FileIfMissing {
        path: PathBuf,
        content: &'static str,
    },
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
    },
    PivotRoot {
        new_root: PathBuf,
        put_old: PathBuf,
    },
    Bind {
        src: PathBuf,
        dst: PathBuf,
        mode: BindMode,
        file: bool,
    },
    /// The `Bind` it holds, with its source resolved beneath `root`
    /// without following any symlink: the bind is made of that
    /// descriptor (the review's C2).
    BindBeneath {
        root: PathBuf,
        bind: Box<Step>,
    },
    /// Bind /dev/null over a file (if it exists).
    MaskFile(PathBuf),
    /// Mount an empty read-only tmpfs over a directory (if it exists).
    MaskDir(PathBuf),
    /// Bind a path onto itself read-only (if it exists).
    ReadOnly(PathBuf),
    Proc(PathBuf),
    Devpts {
        target: PathBuf,
        gid5_mapped: bool,
    },
    Symlink {
        target: String,
        link: PathBuf,
    },
    /// Remount an existing mount read-only, keeping its other flags.
    RemountReadOnly(PathBuf),
    /// Lazily unmount the old root and remove its mount point.
    DetachOldRoot,
}

/// What happens to a bind mount's flags after it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// Keep the source mount's flags (it is already sealed, e.g. an
    /// idmapped read-only nosuid staging mount, or the nosuid scratch tmpfs).
    Inherit,
    /// Remount read-only, nosuid, nodev.
    ReadOnly,
    /// Remount nosuid, nodev (writable user mounts).
    NoSuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

const NOSUID_NODEV: Flags = Flags {
    nosuid: true,
    nodev: true,
    noexec: false,
};
const NOSUID_NOEXEC: Flags = Flags {
    nosuid: true,
    nodev: false,
    noexec: true,
};

/// Files under /proc that leak host information or kernel state (Docker's
/// masked paths, plus kallsyms).
/// Docker's list, and what the review's L8 found beyond it: the host's
/// users with keys (`key-users`), its loaded modules and its kernel's
/// configuration (reconnaissance for a kernel exploit). Each is masked only
/// where the kernel has it.
pub const PROC_MASK_FILES: [&str; 10] = [
    "kcore",
    "keys",
    "timer_list",
    "sched_debug",
    "latency_stats",
    "kallsyms",
    "timer_stats",
    "key-users",
    "modules",
    "config.gz",
];
pub const PROC_MASK_DIRS: [&str; 3] = ["acpi", "scsi", "asound"];
/// Docker also remounts bus, fs, irq and sysrq-trigger read-only; in a user
/// namespace that is redundant: their files belong to the host's root, which
/// no sandbox uid is, and writing them needs capabilities in the initial user
/// namespace. /proc/sys holds namespaced, otherwise writable sysctls.
pub const PROC_READ_ONLY: [&str; 1] = ["sys"];
pub const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Inputs to [`plan`].
#[derive(Debug, Clone)]
pub struct Layout<'a> {
    /// Overlay lower layers, topmost first, as seen before pivot_root.
    pub lowers: &'a [PathBuf],
    /// Empty directory where the scratch tmpfs goes.
    pub scratch: &'a Path,
    /// Size of the writable layer in bytes.
    pub disk_bytes: u64,
    /// (source before pivot_root, destination in the sandbox) read-only binds
    /// from the template (e.g. /usr).
    pub template_binds: &'a [(PathBuf, PathBuf)],
    /// The caller's host mounts.
    pub user_mounts: &'a [UserMount],
    /// Whether gid 5 (tty) exists in the sandbox's user namespace.
    pub gid5_mapped: bool,
    /// The template binds are already read-only/nosuid/nodev (idmapped
    /// staging mounts made with those attributes).
    pub template_sealed: bool,
    /// The template may lack the directories mounts go on (an image, not
    /// the host template): create them in the writable layer.
    pub make_mountpoints: bool,
}

/// A host mount, as the mount steps make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMount {
    /// The source, as seen before pivot_root.
    pub src: PathBuf,
    pub dst: PathBuf,
    pub read_only: bool,
    pub file: bool,
    /// Resolve `src` beneath this directory (seen before pivot_root)
    /// without following a symlink (`crate::sandbox::beneath`).
    pub within: Option<PathBuf>,
}

fn old(p: &Path) -> PathBuf {
    Path::new(OLD_ROOT).join(p.strip_prefix("/").unwrap_or(p))
}

pub fn plan(l: &Layout<'_>) -> Vec<Step> {
    let scratch = l.scratch.to_path_buf();
    let root = scratch.join("root");
    let mut s = vec![
        Step::MakePrivate,
        Step::Tmpfs {
            target: scratch.clone(),
            options: format!("size={},mode=0755", l.disk_bytes),
            flags: NOSUID_NODEV,
        },
        Step::Mkdir {
            path: scratch.join("upper"),
            mode: 0o755,
        },
        Step::Mkdir {
            path: scratch.join("work"),
            mode: 0o755,
        },
        Step::Mkdir {
            path: root.clone(),
            mode: 0o755,
        },
        Step::Overlay {
            lowers: l.lowers.to_vec(),
            upper: scratch.join("upper"),
            work: scratch.join("work"),
            target: root.clone(),
        },
        Step::Mkdir {
            path: root.join(OLD_ROOT.trim_start_matches('/')),
            mode: 0o700,
        },
        Step::PivotRoot {
            new_root: root.clone(),
            put_old: root.join(OLD_ROOT.trim_start_matches('/')),
        },
    ];
    if l.make_mountpoints {
        for (d, mode) in [
            ("/dev", 0o755),
            ("/proc", 0o555),
            ("/tmp", 0o1777),
            ("/etc", 0o755),
        ] {
            s.push(Step::MkdirIfMissing {
                path: d.into(),
                mode,
            });
        }
        // What every program expects to find (an image may not ship them).
        s.push(Step::FileIfMissing {
            path: "/etc/hosts".into(),
            content: "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        });
        s.push(Step::FileIfMissing {
            path: "/etc/hostname".into(),
            content: "aibox\n",
        });
    }
    for (src, dst) in l.template_binds {
        s.push(Step::Bind {
            src: old(src),
            dst: dst.clone(),
            mode: if l.template_sealed {
                BindMode::Inherit
            } else {
                BindMode::ReadOnly
            },
            file: false,
        });
    }
    // /dev: a small tmpfs with bind-mounted host device nodes (a user
    // namespace cannot mknod), a private devpts, and /dev/shm.
    s.push(Step::Tmpfs {
        target: "/dev".into(),
        options: "size=64k,mode=0755".into(),
        flags: NOSUID_NOEXEC,
    });
    for n in DEV_NODES {
        let p = Path::new("/dev").join(n);
        s.push(Step::Bind {
            src: old(&p),
            dst: p,
            mode: BindMode::Inherit,
            file: true,
        });
    }
    s.push(Step::Mkdir {
        path: "/dev/pts".into(),
        mode: 0o755,
    });
    s.push(Step::Devpts {
        target: "/dev/pts".into(),
        gid5_mapped: l.gid5_mapped,
    });
    s.push(Step::Symlink {
        target: "pts/ptmx".into(),
        link: "/dev/ptmx".into(),
    });
    s.push(Step::Mkdir {
        path: "/dev/shm".into(),
        mode: 0o1777,
    });
    s.push(Step::Tmpfs {
        target: "/dev/shm".into(),
        options: format!("size={},mode=1777", l.disk_bytes.min(64 << 20)),
        flags: Flags {
            nosuid: true,
            nodev: true,
            noexec: true,
        },
    });
    for (t, link) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        s.push(Step::Symlink {
            target: t.into(),
            link: Path::new("/dev").join(link),
        });
    }
    s.push(Step::RemountReadOnly("/dev".into()));
    // /proc of the sandbox's own pid namespace, with Docker's masks.
    s.push(Step::Proc("/proc".into()));
    for f in PROC_MASK_FILES {
        s.push(Step::MaskFile(Path::new("/proc").join(f)));
    }
    for d in PROC_MASK_DIRS {
        s.push(Step::MaskDir(Path::new("/proc").join(d)));
    }
    for r in PROC_READ_ONLY {
        s.push(Step::ReadOnly(Path::new("/proc").join(r)));
    }
    for m in l.user_mounts {
        let step = Step::Bind {
            src: old(&m.src),
            dst: m.dst.clone(),
            mode: if m.read_only {
                BindMode::ReadOnly
            } else {
                BindMode::NoSuid
            },
            file: m.file,
        };
        s.push(match &m.within {
            Some(root) => Step::BindBeneath {
                root: old(root),
                bind: Box::new(step),
            },
            None => step,
        });
    }
    s.push(Step::DetachOldRoot);
    s
}

#[derive(Debug, thiserror::Error)]
#[error("mount setup failed at {step}")]
pub struct MountError {
    pub step: String,
    #[source]
    pub source: std::io::Error,
}

/// A path of the sandbox's own files (image, snapshot, a mount's target)
/// that leads out of its root: the request's or the content's fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OutsideRoot(pub String);

impl MountError {
    /// What P is told: the content's fault prefixed with [`REFUSED`].
    pub fn message(&self) -> String {
        match self
            .source
            .get_ref()
            .and_then(|e| e.downcast_ref::<OutsideRoot>())
        {
            Some(o) => format!("{REFUSED}{o}"),
            None => format!("{self}: {}", self.source),
        }
    }
}

/// The prefix of a setup error that is the sandbox content's fault.
pub const REFUSED: &str = "refused: ";

/// Perform the steps in order. Runs inside the new mount namespace.
pub fn execute(steps: &[Step]) -> Result<(), MountError> {
    for step in steps {
        exec_step(step).map_err(|source| MountError {
            step: describe(step),
            source,
        })?;
    }
    Ok(())
}

fn describe(step: &Step) -> String {
    match step {
        Step::Tmpfs { target, .. } => format!("tmpfs on {}", target.display()),
        Step::Mkdir { path, .. } => format!("mkdir {}", path.display()),
        Step::Overlay { target, .. } => format!("overlay on {}", target.display()),
        Step::PivotRoot { .. } => "pivot_root".into(),
        Step::Bind { src, dst, .. } => format!("bind {} on {}", src.display(), dst.display()),
        Step::BindBeneath { root, bind } => {
            format!("{} (beneath {})", describe(bind), root.display())
        }
        Step::MaskFile(p)
        | Step::MaskDir(p)
        | Step::ReadOnly(p)
        | Step::Proc(p)
        | Step::RemountReadOnly(p) => {
            format!("{:?} {}", std::mem::discriminant(step), p.display())
        }
        other => format!("{other:?}"),
    }
}

fn flags_of(f: Flags) -> libc::c_ulong {
    let mut m = 0;
    if f.nosuid {
        m |= libc::MS_NOSUID;
    }
    if f.nodev {
        m |= libc::MS_NODEV;
    }
    if f.noexec {
        m |= libc::MS_NOEXEC;
    }
    m
}

fn remount_ro(path: &Path, extra: libc::c_ulong) -> std::io::Result<()> {
    let cur = aibox_sys::current_mount_flags(path)?;
    aibox_sys::mount(
        None,
        path,
        None,
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | cur | extra,
        None,
    )
}

/// Between `PivotRoot` and `DetachOldRoot` (S runs the steps, alone).
static PIVOTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// After `pivot_root` the host's root stays at [`OLD_ROOT`] until the last
/// step detaches it, and an absolute symlink in the image or a snapshot
/// (`etc -> /.aibox-old/tmp`) resolves there: a step that creates or
/// mounts on such a path would act on the host (the review's L2). So every
/// path a step creates or mounts on must resolve, as far as it exists,
/// inside the new root; a dangling link is refused too, since creating
/// through it would make its target. Below /dev and /proc (filesystems
/// this setup just mounted, whose own mount points were checked) nothing
/// is left to the image.
fn stays_inside(path: &Path) -> std::io::Result<()> {
    use std::sync::atomic::Ordering;
    // Before the pivot every path is the host's own, chosen by setup.
    // Below /dev and /proc only setup's own paths (user mounts are refused
    // there), and only as written: `/./proc/self/root/...` is checked.
    let plain = || path.as_os_str() == path.components().collect::<PathBuf>().as_os_str();
    if !PIVOTED.load(Ordering::Relaxed)
        || !path.is_absolute()
        || ((path.starts_with("/dev/") || path.starts_with("/proc/")) && plain())
    {
        return Ok(());
    }
    let out = |why: &str| {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            OutsideRoot(format!("{} {why}", path.display())),
        ))
    };
    if std::fs::symlink_metadata(path).is_ok() {
        return match std::fs::canonicalize(path) {
            Ok(real) if real.starts_with(OLD_ROOT) => {
                out("leads out of the sandbox's root (a symlink in the image or snapshot)")
            }
            Ok(_) => Ok(()),
            Err(_) => out("is a symlink that leads nowhere"),
        };
    }
    match path.parent() {
        Some(parent) if parent != path => stays_inside(parent),
        _ => Ok(()),
    }
}

fn exec_step(step: &Step) -> std::io::Result<()> {
    use aibox_sys::mount;
    use std::os::unix::fs::DirBuilderExt;
    match step {
        // (What exists already, even a dangling link, the `IfMissing`
        // steps leave alone.)
        Step::MkdirIfMissing { path: p, .. } | Step::FileIfMissing { path: p, .. }
            if std::fs::symlink_metadata(p).is_err() =>
        {
            stays_inside(p)?
        }
        Step::Tmpfs { target: p, .. }
        | Step::Mkdir { path: p, .. }
        | Step::Bind { dst: p, .. }
        | Step::Proc(p)
        | Step::Symlink { link: p, .. } => stays_inside(p)?,
        _ => {}
    }
    match step {
        Step::MakePrivate => mount(
            None,
            Path::new("/"),
            None,
            libc::MS_REC | libc::MS_PRIVATE,
            None,
        ),
        Step::Tmpfs {
            target,
            options,
            flags,
        } => mount(
            Some(Path::new("tmpfs")),
            target,
            Some("tmpfs"),
            flags_of(*flags),
            Some(options),
        ),
        Step::Mkdir { path, mode } => {
            match std::fs::DirBuilder::new()
                .recursive(true)
                .mode(*mode)
                .create(path)
            {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            // DirBuilder honours the umask; the sticky bit needs an explicit chmod.
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(*mode))
        }
        Step::FileIfMissing { path, content } => {
            if std::fs::symlink_metadata(path).is_ok() {
                return Ok(());
            }
            std::fs::write(path, content)?;
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        }
        Step::MkdirIfMissing { path, mode } => {
            if std::fs::symlink_metadata(path).is_ok() {
                return Ok(());
            }
            std::fs::DirBuilder::new().mode(*mode).create(path)?;
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(*mode))
        }
        Step::Overlay {
            lowers,
            upper,
            work,
            target,
        } => {
            let lower: Vec<String> = lowers.iter().map(|l| l.display().to_string()).collect();
            let base = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.join(":"),
                upper.display(),
                work.display()
            );
            // userxattr: overlay metadata in user.* xattrs, the only kind a
            // user namespace may write (tmpfs supports them since 6.6).
            mount(
                Some(Path::new("overlay")),
                target,
                Some("overlay"),
                0,
                Some(&format!("{base},userxattr")),
            )
            .or_else(|_| {
                mount(
                    Some(Path::new("overlay")),
                    target,
                    Some("overlay"),
                    0,
                    Some(&base),
                )
            })
        }
        Step::PivotRoot { new_root, put_old } => {
            aibox_sys::pivot_root(new_root, put_old)?;
            PIVOTED.store(true, std::sync::atomic::Ordering::Relaxed);
            std::env::set_current_dir("/")
        }
        Step::Bind {
            src,
            dst,
            mode,
            file,
        } => {
            if *file {
                if !dst.exists() {
                    if let Some(p) = dst.parent() {
                        std::fs::create_dir_all(p)?;
                    }
                    std::fs::File::create(dst)?;
                }
            } else {
                std::fs::create_dir_all(dst)?;
            }
            mount(Some(src), dst, None, libc::MS_BIND | libc::MS_REC, None)?;
            match mode {
                BindMode::Inherit => Ok(()),
                // Every submount too (the review's M9: a remount is per
                // mount, so /dev/shm or a data disk under a read-only
                // rootless bind stayed writable).
                BindMode::ReadOnly => aibox_sys::set_mount_attrs_recursive(
                    dst,
                    aibox_sys::MOUNT_ATTR_RDONLY
                        | aibox_sys::MOUNT_ATTR_NOSUID
                        | aibox_sys::MOUNT_ATTR_NODEV,
                ),
                BindMode::NoSuid => {
                    let cur = aibox_sys::current_mount_flags(dst)?;
                    mount(
                        None,
                        dst,
                        None,
                        libc::MS_REMOUNT | libc::MS_BIND | cur | libc::MS_NOSUID | libc::MS_NODEV,
                        None,
                    )
                }
            }
        }
        Step::BindBeneath { root, bind } => {
            let Step::Bind {
                src,
                dst,
                mode,
                file,
            } = bind.as_ref()
            else {
                return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
            };
            let rel = src
                .strip_prefix(root)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
            let fd = crate::sandbox::beneath::Tree::open(root)
                .and_then(|t| t.open_at(rel, libc::O_PATH))
                .map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::PermissionDenied, e.to_string())
                })?;
            let by_fd = Step::Bind {
                src: PathBuf::from(format!(
                    "/proc/self/fd/{}",
                    std::os::fd::AsRawFd::as_raw_fd(&fd)
                )),
                dst: dst.clone(),
                mode: *mode,
                file: *file,
            };
            exec_step(&by_fd)
        }
        Step::MaskFile(p) => {
            if p.exists() {
                mount(Some(Path::new("/dev/null")), p, None, libc::MS_BIND, None)?;
            }
            Ok(())
        }
        Step::MaskDir(p) => {
            if p.is_dir() {
                mount(
                    Some(Path::new("tmpfs")),
                    p,
                    Some("tmpfs"),
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    Some("size=0"),
                )?;
            }
            Ok(())
        }
        Step::ReadOnly(p) => {
            if p.exists() {
                mount(Some(p), p, None, libc::MS_BIND | libc::MS_REC, None)?;
                remount_ro(p, libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC)?;
            }
            Ok(())
        }
        Step::Proc(p) => mount(
            Some(Path::new("proc")),
            p,
            Some("proc"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
        ),
        Step::Devpts {
            target,
            gid5_mapped,
        } => {
            let opts = if *gid5_mapped {
                "newinstance,ptmxmode=0666,mode=0620,gid=5"
            } else {
                "newinstance,ptmxmode=0666,mode=0620"
            };
            mount(
                Some(Path::new("devpts")),
                target,
                Some("devpts"),
                libc::MS_NOSUID | libc::MS_NOEXEC,
                Some(opts),
            )
        }
        Step::Symlink { target, link } => std::os::unix::fs::symlink(target, link),
        Step::RemountReadOnly(p) => remount_ro(p, 0),
        Step::DetachOldRoot => {
            aibox_sys::umount2(Path::new(OLD_ROOT), libc::MNT_DETACH)?;
            PIVOTED.store(false, std::sync::atomic::Ordering::Relaxed);
            std::fs::remove_dir(OLD_ROOT)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Step> {
        let binds = vec![(PathBuf::from("/usr"), PathBuf::from("/usr"))];
        let user = vec![UserMount {
            src: PathBuf::from("/host/data"),
            dst: PathBuf::from("/data"),
            read_only: true,
            file: false,
            within: None,
        }];
        plan(&Layout {
            lowers: &[
                PathBuf::from("/run/aibox/staging/snap"),
                PathBuf::from("/run/aibox/staging/lower"),
            ],
            scratch: Path::new("/run/aibox/staging/scratch"),
            disk_bytes: 1 << 30,
            template_binds: &binds,
            user_mounts: &user,
            gid5_mapped: true,
            template_sealed: false,
            make_mountpoints: false,
        })
    }

    fn pos(steps: &[Step], f: impl Fn(&Step) -> bool) -> usize {
        steps.iter().position(f).expect("step present")
    }

    #[test]
    fn order_is_safe() {
        let s = sample();
        assert_eq!(s[0], Step::MakePrivate, "nothing may propagate to the host");
        let overlay = pos(&s, |x| matches!(x, Step::Overlay { .. }));
        let pivot = pos(&s, |x| matches!(x, Step::PivotRoot { .. }));
        let proc_ = pos(&s, |x| matches!(x, Step::Proc(_)));
        let first_mask = pos(&s, |x| matches!(x, Step::MaskFile(_)));
        let dev_null = pos(
            &s,
            |x| matches!(x, Step::Bind { dst, .. } if dst == Path::new("/dev/null")),
        );
        assert!(overlay < pivot && pivot < proc_ && proc_ < first_mask);
        assert!(
            dev_null < first_mask,
            "masks bind /dev/null, which must exist first"
        );
        assert_eq!(
            s.last(),
            Some(&Step::DetachOldRoot),
            "the host root goes away last"
        );
        assert!(
            !s.iter()
                .any(|x| matches!(x, Step::Bind { dst, .. } if dst.starts_with("/sys"))),
            "/sys stays absent"
        );
    }

    #[test]
    fn binds_come_from_the_old_root_after_pivot() {
        let s = sample();
        let pivot = pos(&s, |x| matches!(x, Step::PivotRoot { .. }));
        for (i, st) in s.iter().enumerate() {
            if let Step::Bind { src, .. } = st {
                assert!(i > pivot && src.starts_with(OLD_ROOT), "{st:?}");
            }
        }
        assert!(s.contains(&Step::Bind {
            src: "/.aibox-old/usr".into(),
            dst: "/usr".into(),
            mode: BindMode::ReadOnly,
            file: false
        }));
        assert!(s.contains(&Step::Bind {
            src: "/.aibox-old/host/data".into(),
            dst: "/data".into(),
            mode: BindMode::ReadOnly,
            file: false
        }));
    }

    #[test]
    fn every_docker_masked_proc_path_is_covered() {
        let s = sample();
        for p in [
            "/proc/kcore",
            "/proc/keys",
            "/proc/timer_list",
            "/proc/sched_debug",
            "/proc/kallsyms",
        ] {
            assert!(s.contains(&Step::MaskFile(p.into())), "{p}");
        }
        assert!(s.contains(&Step::ReadOnly("/proc/sys".into())));
    }
}
