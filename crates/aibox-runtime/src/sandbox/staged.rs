//! Directories made whole or not at all (snapshots, volumes, volume
//! snapshots): written as `.tmp-ID` beside their place, with the `lock`
//! file in it held exclusively while they are written, then renamed into
//! place; removed on error. Removals rename to `.trash-…` first. `gc`
//! removes what an interrupted writer or removal left: a `.tmp-` nobody
//! holds, a `.trash-`.

use crate::{random_id, Error};
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// The lock file of a staged (or committed) directory.
pub(crate) const LOCK: &str = "lock";

/// The lock file `name` in `dir`, for flock, opened (created when
/// `create`).
pub(crate) fn lock_file(dir: &Path, name: &str, create: bool) -> std::io::Result<OwnedFd> {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .truncate(false)
        .open(dir.join(name))?;
    Ok(f.into())
}

/// `dir`'s own lock file ([`LOCK`]).
pub(crate) fn lock_of(dir: &Path, create: bool) -> std::io::Result<OwnedFd> {
    lock_file(dir, LOCK, create)
}

/// Make `parent/name` with `build`, which fills the directory it is given;
/// nothing is left behind when it fails. A `name` taken meanwhile is a
/// conflict.
pub(crate) fn write<T>(
    parent: &Path,
    name: &str,
    build: impl FnOnce(&Path) -> Result<T, Error>,
) -> Result<T, Error> {
    let tmp = parent.join(format!(".tmp-{}", random_id()));
    fs::create_dir(&tmp).map_err(|e| Error::Helper(format!("creating {}: {e}", tmp.display())))?;
    let result = (|| {
        let lock = lock_of(&tmp, true)
            .and_then(|l| aibox_sys::lock_exclusive(l.as_fd()).map(|()| l))
            .map_err(|e| Error::Helper(format!("locking {}: {e}", tmp.display())))?;
        let made = build(&tmp)?;
        fs::rename(&tmp, parent.join(name)).map_err(|e| {
            if matches!(
                e.kind(),
                std::io::ErrorKind::DirectoryNotEmpty | std::io::ErrorKind::AlreadyExists
            ) {
                Error::Conflict(format!("{name} exists already"))
            } else {
                Error::Helper(format!("committing {}: {e}", parent.join(name).display()))
            }
        })?;
        drop(lock);
        Ok(made)
    })();
    if result.is_err() {
        let _ = crate::image::layer::remove_tree(&tmp);
    }
    result
}

/// Write `value` as pretty JSON to `dir/file` (a staged directory's
/// metadata).
pub(crate) fn write_json(
    dir: &Path,
    file: &str,
    value: &impl serde::Serialize,
) -> Result<(), Error> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Helper(e.to_string()))?;
    fs::write(dir.join(file), bytes)
        .map_err(|e| Error::Helper(format!("writing {}: {e}", dir.join(file).display())))
}

/// Remove from `dir` what interrupted writes and removals left, except
/// what `keep` says must stay (say, a tree with a filesystem still
/// mounted in it). Returns the names removed.
pub(crate) fn gc(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<String> {
    let mut cleaned = vec![];
    let Ok(rd) = fs::read_dir(dir) else {
        return cleaned;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(".tmp-") || name.starts_with(".trash-")) {
            continue;
        }
        let stale = match lock_of(&e.path(), false) {
            Ok(l) => aibox_sys::try_lock_exclusive(l.as_fd()).unwrap_or(false),
            // Not yet locked by its writer, or a crash before that.
            Err(_) => crate::age(&e).is_some_and(|a| a > std::time::Duration::from_secs(60)),
        };
        if stale && !keep(&e.path()) && crate::image::layer::remove_tree(&e.path()).is_ok() {
            cleaned.push(name);
        }
    }
    cleaned
}
