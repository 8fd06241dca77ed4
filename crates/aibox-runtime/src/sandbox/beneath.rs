//! The one way the host acts on a path inside a tree whose contents it
//! does not control: a sandbox's upper directory, a layer being written
//! from one, an image layer being unpacked, a host directory a tenant
//! mounts.
//!
//! Threat: the tree's contents come from an attacker (sandboxed code, an
//! image's author, a tenant with a writable mount). Any symlink in it may
//! point anywhere on the host, and any directory may have been replaced by
//! one since it was created. A path-based call made as root (`chmod`,
//! `open_tree`, `utimes`) would then act on the host file the link names:
//! the review's C2, C3 and H1.
//!
//! Invariant: every path below a [`Tree`] is resolved by openat2(2) from
//! the tree's own descriptor with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS`. The kernel refuses, rather than follows, any
//! symlink, any `..` above the root, any absolute path and any
//! `/proc/PID/fd` link, in one call, so there is no window between a check
//! and the use. Metadata is then changed through the descriptor (fchmod,
//! futimens), never by path.

use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aibox_sys::resolve;

/// The resolution rules for every path under a [`Tree`].
const RULES: u64 = resolve::BENEATH | resolve::NO_SYMLINKS | resolve::NO_MAGICLINKS;

/// A directory tree, held open by its root.
#[derive(Debug)]
pub struct Tree {
    root: OwnedFd,
    path: PathBuf,
}

/// Why a path under a tree could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    #[error("opening the tree {path}")]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The path leaves the tree, or goes through a symlink: refused.
    #[error("{rel} is not inside {root} without following a symlink")]
    Escapes { root: PathBuf, rel: PathBuf },
    #[error("{what} {rel} under {root}")]
    Io {
        what: &'static str,
        root: PathBuf,
        rel: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl BeneathError {
    /// The path is not there, or no longer the kind of entry asked for
    /// (a directory replaced by a file or a symlink).
    pub fn is_gone(&self) -> bool {
        match self {
            BeneathError::Escapes { .. } => true,
            BeneathError::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::ENOENT) | Some(libc::ENOTDIR)
            ),
            BeneathError::Root { .. } => false,
        }
    }
}

/// A path relative to a tree: no root, prefix or `..` component.
fn relative(rel: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

impl Tree {
    /// Hold `path` open as a tree's root. The root itself is trusted (the
    /// caller chose it); only what lies below it is not.
    pub fn open(path: &Path) -> Result<Tree, BeneathError> {
        use std::os::unix::fs::OpenOptionsExt;
        // O_PATH: the root need not be readable (a 0711 directory), only
        // a starting point.
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)
            .map_err(|source| BeneathError::Root {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Tree {
            root: f.into(),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Open `rel` (relative to the root; a leading `/` means the root)
    /// with open(2) `flags`, under the tree's rules.
    pub fn open_at(&self, rel: &Path, flags: libc::c_int) -> Result<OwnedFd, BeneathError> {
        let Some(r) = relative(rel) else {
            return Err(self.escapes(rel));
        };
        let r = if r.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            r
        };
        // No O_NOFOLLOW: with it, O_PATH would open a trailing symlink
        // itself; without it RESOLVE_NO_SYMLINKS refuses every symlink,
        // the last component included (openat2(2)).
        aibox_sys::openat2(self.root.as_fd(), &r, flags & !libc::O_NOFOLLOW, 0, RULES).map_err(
            |source| match source.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::EXDEV) => self.escapes(rel),
                _ => BeneathError::Io {
                    what: "opening",
                    root: self.path.clone(),
                    rel: rel.to_path_buf(),
                    source,
                },
            },
        )
    }

    /// The directory `rel`, opened for reading (and fchmod, futimens).
    pub fn open_dir(&self, rel: &Path) -> Result<fs::File, BeneathError> {
        self.open_at(rel, libc::O_RDONLY | libc::O_DIRECTORY)
            .map(fs::File::from)
    }

    /// Set the mode (all 12 bits) and, if given, the access and
    /// modification times of the directory `rel`, through a descriptor.
    /// `Ok(false)` when `rel` is no longer a directory inside the tree
    /// (replaced by a file or a symlink since): nothing is changed then.
    pub fn set_dir_meta(
        &self,
        rel: &Path,
        mode: u32,
        times: Option<((i64, i64), (i64, i64))>,
    ) -> Result<bool, BeneathError> {
        let dir = match self.open_dir(rel) {
            Ok(d) => d,
            Err(e) if e.is_gone() => return Ok(false),
            Err(e) => return Err(e),
        };
        let io = |what| {
            let (root, rel) = (self.path.clone(), rel.to_path_buf());
            move |source| BeneathError::Io {
                what,
                root,
                rel,
                source,
            }
        };
        dir.set_permissions(fs::Permissions::from_mode(mode & 0o7777))
            .map_err(io("chmod"))?;
        if let Some((a, m)) = times {
            let t = fs::FileTimes::new()
                .set_accessed(system_time(a))
                .set_modified(system_time(m));
            dir.set_times(t).map_err(io("setting times of"))?;
        }
        Ok(true)
    }

    fn escapes(&self, rel: &Path) -> BeneathError {
        BeneathError::Escapes {
            root: self.path.clone(),
            rel: rel.to_path_buf(),
        }
    }
}

fn system_time((secs, nanos): (i64, i64)) -> SystemTime {
    let nanos = nanos.clamp(0, 999_999_999) as u32;
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn tmp() -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "aibox-beneath-{}",
            crate::sandbox::ids::random_id()
        ));
        fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn symlinks_and_dotdot_never_lead_out() {
        let t = tmp();
        let outside = t.join("outside");
        fs::create_dir(&outside).unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o700)).unwrap();
        let root = t.join("root");
        fs::create_dir_all(root.join("d/inner")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("rel-link")).unwrap();
        std::os::unix::fs::symlink("/proc/self/cwd", root.join("magic")).unwrap();
        let tree = Tree::open(&root).unwrap();
        for bad in [
            "link",
            "rel-link",
            "link/.",
            "../outside",
            "magic",
            "d/../../outside",
        ] {
            let r = tree.set_dir_meta(Path::new(bad), 0o4777, None).unwrap();
            assert!(!r, "{bad} was not refused");
        }
        assert_eq!(
            fs::metadata(&outside).unwrap().mode() & 0o7777,
            0o700,
            "nothing outside the tree changed"
        );
        assert!(tree
            .set_dir_meta(Path::new("d/inner"), 0o751, Some(((5, 0), (7, 1))))
            .unwrap());
        let md = fs::metadata(root.join("d/inner")).unwrap();
        assert_eq!((md.mode() & 0o7777, md.mtime(), md.atime()), (0o751, 7, 5));
        // A file where a directory was: left alone.
        fs::write(root.join("f"), "x").unwrap();
        assert!(!tree.set_dir_meta(Path::new("f"), 0o777, None).unwrap());
        assert!(tree.set_dir_meta(Path::new("/"), 0o755, None).unwrap());
        fs::remove_dir_all(&t).unwrap();
    }
}
