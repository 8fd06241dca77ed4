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
/// nothing is left behind when it fails. A `name` taken meanwhile is the
/// error `taken` makes.
pub(crate) fn write<T>(
    parent: &Path,
    name: &str,
    taken: impl FnOnce() -> Error,
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
                taken()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_directory_is_whole_or_absent() {
        let parent = std::env::temp_dir().join(format!("aibox-staged-{}", random_id()));
        fs::create_dir(&parent).unwrap();
        let taken = || Error::Conflict("taken".into());
        // Made: there, under its name, with what build wrote.
        let n = write(&parent, "a", taken, |d| {
            fs::write(d.join("f"), "x").unwrap();
            Ok(7)
        })
        .unwrap();
        assert_eq!(n, 7);
        assert_eq!(fs::read_to_string(parent.join("a/f")).unwrap(), "x");
        // A build that fails leaves nothing; its error is the caller's.
        let e = write(&parent, "b", taken, |d| {
            fs::write(d.join("f"), "half").unwrap();
            Err::<(), _>(Error::Conflict("busy".into()))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "busy");
        // A name taken meanwhile is `taken`'s error, and leaves nothing.
        let e = write(&parent, "a", taken, |d| {
            fs::write(d.join("g"), "y").unwrap();
            Ok(())
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "taken");
        let names: Vec<String> = fs::read_dir(&parent)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a"]);
        // What an interrupted writer left (no lock held) is collected.
        fs::create_dir(parent.join(".tmp-left")).unwrap();
        lock_of(&parent.join(".tmp-left"), true).unwrap();
        assert_eq!(gc(&parent, |_| false), [".tmp-left"]);
        fs::remove_dir_all(&parent).unwrap();
    }
}
