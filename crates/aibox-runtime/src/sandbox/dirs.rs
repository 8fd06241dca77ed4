//! Where aibox keeps its state: the run and data dirs (their defaults are
//! `aibox_types::paths`), and uid slots (root only, host-wide):
//! `$AIBOX_SLOTS_DIR`, else `/run/aibox/slots`.
//!
//! Directories we create are checked to be owned by us and not writable by
//! others, so another local user cannot plant symlinks in them.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DirsError {
    #[error("failed to create directory {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is owned by uid {owner}, not by us (uid {uid}); refusing to use it")]
    NotOurs { path: PathBuf, owner: u32, uid: u32 },
    #[error("{path} is writable by other users; refusing to use it")]
    WorldWritable { path: PathBuf },
    #[error("{path} contains a character (',', ':' or a newline) that mount options cannot carry")]
    BadChar { path: PathBuf },
}

#[derive(Debug, Clone)]
pub struct Dirs {
    pub run: PathBuf,
    pub data: PathBuf,
}

impl Dirs {
    pub fn from_env() -> Dirs {
        let (run, data) =
            aibox_types::paths::default_dirs(aibox_sys::geteuid(), |k| std::env::var(k).ok());
        Dirs { run, data }
    }

    pub fn sandboxes(&self) -> PathBuf {
        self.run.join("sandboxes")
    }
    pub fn sandbox(&self, id: &str) -> PathBuf {
        self.sandboxes().join(id)
    }
    /// uid-range slots are host-wide, whatever the run dir: two run dirs
    /// must never hand out the same range (`$AIBOX_SLOTS_DIR` overrides).
    pub fn slots(&self) -> PathBuf {
        std::env::var_os("AIBOX_SLOTS_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| "/run/aibox/slots".into())
    }
    pub fn staging(&self) -> PathBuf {
        self.run.join("staging")
    }
    pub fn templates(&self) -> PathBuf {
        self.data.join("templates")
    }

    /// Create the directory tree with safe modes. Sandboxes' own setup
    /// processes (mapped to unprivileged uids) must be able to traverse the
    /// run dir and staging, nothing else.
    pub fn ensure(&self) -> Result<(), DirsError> {
        for p in [&self.run, &self.data] {
            let s = p.to_string_lossy();
            if s.contains(',') || s.contains(':') || s.contains('\n') {
                return Err(DirsError::BadChar { path: p.clone() });
            }
        }
        ensure_dir(&self.run, 0o711)?;
        ensure_dir(&self.sandboxes(), 0o700)?;
        if aibox_sys::geteuid() == 0 {
            ensure_dir(&self.slots(), 0o700)?;
        }
        let st = self.staging();
        ensure_dir(&st, 0o711)?;
        for sub in ["lower", "snap", "scratch"] {
            ensure_dir(&st.join(sub), 0o755)?;
        }
        ensure_dir(&self.data, 0o711)?;
        // Layers hold image files owned by host uids (an image's uid 1000
        // is host uid 1000 there) and world-writable directories: no other
        // local user may reach them (the review's H3). Sandboxes never
        // resolve these paths: in root mode the creator hands over mount
        // descriptors, rootless the sandbox runs as the owner.
        ensure_dir(&self.templates(), 0o700)?;
        Ok(())
    }
}

/// mkdir -p with `mode` for the last component, then verify ownership.
pub(crate) fn ensure_dir(path: &Path, mode: u32) -> Result<(), DirsError> {
    let create = |source| DirsError::Create {
        path: path.to_path_buf(),
        source,
    };
    // One lstat in the common case (everything exists); a symlink fails the
    // checks below (its mode is 0777), so it is never followed.
    let md = match fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .map_err(create)?;
            }
            match fs::DirBuilder::new().mode(mode).create(path) {
                Ok(()) => {
                    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(create)?
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(create(e)),
            }
            fs::symlink_metadata(path).map_err(create)?
        }
        Err(e) => return Err(create(e)),
    };
    let uid = aibox_sys::geteuid();
    if md.uid() == uid && md.is_dir() && md.mode() & 0o777 & !mode != 0 {
        // Made by an older aibox with a looser mode: never looser than asked.
        fs::set_permissions(path, fs::Permissions::from_mode(md.mode() & mode & 0o7777))
            .map_err(create)?;
    }
    if md.uid() != uid {
        return Err(DirsError::NotOurs {
            path: path.into(),
            owner: md.uid(),
            uid,
        });
    }
    if md.mode() & 0o002 != 0 {
        return Err(DirsError::WorldWritable { path: path.into() });
    }
    Ok(())
}
