//! File operations, run with the requesting user's fs uid/gid so the
//! kernel applies that user's permissions. Relative paths are taken from the
//! sandbox's working directory.

use crate::op::{ok, uid_for, Failure, OpResult};
use crate::stream::{FrameReader, FrameWriter, CHUNK};
use crate::Agent;
use aibox_protocol::{write_frame, FileKind, FileStat, Kind, Op, MAX_FRAME};
use aibox_types::ErrorCode;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Upper bound of a listing's encoded size: the reply must fit one frame.
const MAX_LIST_BYTES: usize = MAX_FRAME - 64 * 1024;

/// Switch this thread's fs ids for the duration of a file operation.
struct FsIds;

impl FsIds {
    fn enter(uid: Option<u32>) -> Result<FsIds, Failure> {
        if let Some(uid) = uid {
            aibox_sys::set_fs_ids(uid, uid).map_err(|e| Failure::io("switching user", &e))?;
        }
        Ok(FsIds)
    }
}

impl Drop for FsIds {
    fn drop(&mut self) {
        let _ = aibox_sys::set_fs_ids(aibox_sys::geteuid(), aibox_sys::getgid());
    }
}

/// The absolute path a request names (relative ones are taken from the
/// sandbox's working directory).
fn absolute(agent: &Agent, path: &str) -> Result<PathBuf, Failure> {
    if path.is_empty() || path.contains('\0') {
        return Err(Failure::new(
            ErrorCode::InvalidArgument,
            "path must be non-empty and contain no NUL",
        ));
    }
    let p = Path::new(path);
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        Path::new(&agent.cfg.workdir).join(p)
    })
}

/// Where a file operation acts, pinned: its parent directory held open and
/// its last name, so nothing can swap a directory of the path for a link
/// between the check and the use. Resolution follows the sandbox's own
/// symlinks but never a magic link (`RESOLVE_NO_MAGICLINKS`: PID 1 holds a
/// descriptor of a host directory, and `/proc/1/fd/N/..` led there, the
/// review's L1). In /proc and /sys the file API only reads files (the
/// host reads a guest's `/proc/net/tcp` so): it lists, stats and changes
/// nothing there, so no link target there is shown.
struct At {
    dir: std::os::fd::OwnedFd,
    name: std::ffi::OsString,
    /// The path as asked, for replies.
    shown: PathBuf,
    /// Only a read: /proc and /sys allowed.
    reads: bool,
}

impl At {
    /// `reads`: the operation only reads a file, which may lie in /proc
    /// or /sys.
    fn locate(agent: &Agent, path: &str, create_parents: bool, reads: bool) -> Result<At, Failure> {
        let shown = absolute(agent, path)?;
        let (parent, name) = match shown.file_name() {
            Some(n) if !shown.ends_with(".") => {
                (shown.parent().unwrap_or(Path::new("/")), n.to_os_string())
            }
            // `/`, or a path ending in `..` or `.`: the directory itself.
            _ => (shown.as_path(), ".".into()),
        };
        let dir = open_dir(parent, create_parents, reads).map_err(|e| Failure::io(path, &e))?;
        Ok(At {
            dir,
            name,
            shown,
            reads,
        })
    }

    /// The path std::fs acts on: the held directory, then the name.
    fn path(&self) -> PathBuf {
        fd_path(&self.dir).join(&self.name)
    }

    /// The object itself, a symlink at the end followed as everywhere
    /// else (never a magic one), held open: its path to act on.
    fn follow(&self) -> std::io::Result<(std::os::fd::OwnedFd, PathBuf)> {
        use std::os::fd::AsFd;
        let fd = aibox_sys::openat2(
            self.dir.as_fd(),
            Path::new(&self.name),
            libc::O_PATH,
            0,
            aibox_sys::resolve::NO_MAGICLINKS,
        )?;
        if !self.reads {
            not_kernel(&fd)?;
        }
        let path = fd_path(&fd);
        Ok((fd, path))
    }

    fn shown(&self) -> String {
        self.shown.to_string_lossy().into_owned()
    }
}

fn fd_path(fd: &std::os::fd::OwnedFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Refuse /proc and /sys.
fn not_kernel(fd: &std::os::fd::OwnedFd) -> std::io::Result<()> {
    match aibox_sys::statfs_type(&fd_path(fd))? {
        PROC_SUPER_MAGIC | SYSFS_MAGIC => Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "in /proc and /sys the file API only reads files (run a command for the rest)",
        )),
        _ => Ok(()),
    }
}

/// Open the directory `path` one component at a time from `/`, never
/// through a magic link, creating what is missing when asked; in /proc or
/// /sys only when `reads`.
fn open_dir(path: &Path, create: bool, reads: bool) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    use std::path::Component;
    let flags = libc::O_PATH | libc::O_DIRECTORY;
    let nomagic = aibox_sys::resolve::NO_MAGICLINKS;
    let root = std::fs::File::open("/")?;
    let mut dir = aibox_sys::openat2(root.as_fd(), Path::new("/"), flags, 0, nomagic)?;
    for c in path.components() {
        let name = match c {
            Component::Normal(n) => Path::new(n),
            Component::ParentDir => Path::new(".."),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
        };
        let next = match aibox_sys::openat2(dir.as_fd(), name, flags, 0, nomagic) {
            Err(e) if create && e.kind() == std::io::ErrorKind::NotFound => {
                match fs::create_dir(fd_path(&dir).join(name)) {
                    Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
                    _ => {}
                }
                aibox_sys::openat2(dir.as_fd(), name, flags, 0, nomagic)?
            }
            r => r?,
        };
        dir = next;
    }
    if !reads {
        not_kernel(&dir)?;
    }
    Ok(dir)
}

pub fn stat(path: &Path, display: &str) -> std::io::Result<FileStat> {
    let md = fs::symlink_metadata(path)?;
    let ft = md.file_type();
    let kind = if ft.is_symlink() {
        FileKind::Symlink
    } else if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    };
    Ok(FileStat {
        path: display.to_string(),
        kind,
        size: md.len(),
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: md.mtime(),
        target: ft
            .is_symlink()
            .then(|| fs::read_link(path).ok())
            .flatten()
            .map(|t| t.to_string_lossy().into_owned()),
    })
}

fn value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

pub(crate) fn handle(agent: &Agent, s: &mut UnixStream, op: Op) -> OpResult {
    match op {
        Op::FileRead { path, user } => {
            let _ids = FsIds::enter(uid_for(agent, user)?)?;
            let at = At::locate(agent, &path, false, true)?;
            let (_held, p) = at.follow().map_err(|e| Failure::io(&path, &e))?;
            let mut f = fs::File::open(&p).map_err(|e| Failure::io(&path, &e))?;
            let st = stat(&at.path(), &at.shown()).map_err(|e| Failure::io(&path, &e))?;
            // The opened file, not the path: a symlink to a directory is one.
            let is_dir = f.metadata().map(|m| m.is_dir()).unwrap_or(false);
            if st.kind == FileKind::Dir || is_dir {
                return Err(Failure::new(
                    ErrorCode::InvalidArgument,
                    format!("{path}: is a directory"),
                ));
            }
            ok(s, value(&st))?;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = f.read(&mut buf).map_err(|e| Failure::io(&path, &e))?;
                write_frame(s, Kind::Data, &buf[..n])?;
                if n == 0 {
                    return Ok(());
                }
            }
        }
        Op::FileWrite {
            path,
            mode,
            user,
            parents,
        } => {
            let mut body = FrameReader::new(s);
            let r = (|| -> Result<FileStat, Failure> {
                let _ids = FsIds::enter(uid_for(agent, user)?)?;
                let at = At::locate(agent, &path, parents, false)?;
                if at.name == "." {
                    return Err(Failure::new(
                        ErrorCode::InvalidArgument,
                        format!("{path}: not a file path"),
                    ));
                }
                let (name, dir, p) = (&at.name, fd_path(&at.dir), at.path());
                // What is there now (a link followed): a directory is
                // refused, a file gives its mode.
                let now = match at.follow() {
                    Ok((_held, real)) => fs::metadata(real).ok(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(Failure::io(&path, &e)),
                };
                if now.as_ref().is_some_and(|m| m.is_dir()) {
                    return Err(Failure::new(
                        ErrorCode::InvalidArgument,
                        format!("{path}: is a directory"),
                    ));
                }
                let mode = mode
                    .map(|m| m & 0o7777)
                    .or_else(|| now.map(|m| m.mode() & 0o7777))
                    .unwrap_or(0o644);
                // Atomic: write a temp file next to the target, then rename.
                let tmp = dir.join(format!(
                    ".{}.aibox-{}",
                    name.to_string_lossy(),
                    std::process::id() ^ rand_u32()
                ));
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(|e| Failure::io(&path, &e))?;
                let res = std::io::copy(&mut body, &mut f)
                    .and_then(|_| f.set_permissions(fs::Permissions::from_mode(mode)))
                    .and_then(|_| fs::rename(&tmp, &p));
                if let Err(e) = res {
                    let _ = fs::remove_file(&tmp);
                    return Err(Failure::io(&path, &e));
                }
                stat(&p, &at.shown()).map_err(|e| Failure::io(&path, &e))
            })();
            // Keep the connection in sync even when we failed early.
            let _ = body.drain();
            ok(s, value(&r?))
        }
        Op::FileStat { path, user } => {
            let _ids = FsIds::enter(uid_for(agent, user)?)?;
            let at = At::locate(agent, &path, false, false)?;
            let st = stat(&at.path(), &at.shown()).map_err(|e| Failure::io(&path, &e))?;
            ok(s, value(&st))
        }
        Op::FileList {
            path,
            recursive,
            user,
        } => {
            let _ids = FsIds::enter(uid_for(agent, user)?)?;
            let at = At::locate(agent, &path, false, false)?;
            let (held, _) = at.follow().map_err(|e| Failure::io(&path, &e))?;
            let mut out = Vec::new();
            let mut budget = MAX_LIST_BYTES;
            list(&held, &at.shown, recursive, 0, &mut out, &mut budget)
                .map_err(|e| Failure::io(&path, &e))?;
            if budget == 0 {
                return Err(Failure::new(
                    ErrorCode::InvalidArgument,
                    format!("{path} has too many entries to list at once: list a narrower path, or without recursion"),
                ));
            }
            ok(s, value(&out))
        }
        Op::Mkdir { path, mode, user } => {
            let _ids = FsIds::enter(uid_for(agent, user)?)?;
            let at = At::locate(agent, &path, true, false)?;
            let p = at.path();
            let mut b = fs::DirBuilder::new();
            std::os::unix::fs::DirBuilderExt::mode(&mut b, mode.unwrap_or(0o755) & 0o7777);
            match b.create(&p) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && p.is_dir() => {}
                r => r.map_err(|e| Failure::io(&path, &e))?,
            }
            ok(
                s,
                value(&stat(&p, &at.shown()).map_err(|e| Failure::io(&path, &e))?),
            )
        }
        Op::Remove {
            path,
            recursive,
            user,
        } => {
            let _ids = FsIds::enter(uid_for(agent, user)?)?;
            let at = At::locate(agent, &path, false, false)?;
            if at.name == "." {
                return Err(Failure::new(
                    ErrorCode::InvalidArgument,
                    format!("refusing to remove {path}: name what is in it"),
                ));
            }
            let p = at.path();
            let md = fs::symlink_metadata(&p).map_err(|e| Failure::io(&path, &e))?;
            let r = if md.is_dir() {
                if recursive {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_dir(&p)
                }
            } else {
                fs::remove_file(&p)
            };
            r.map_err(|e| Failure::io(&path, &e))?;
            ok(s, serde_json::Value::Null)
        }
        Op::Rename { from, to, user } => {
            let _ids = FsIds::enter(uid_for(agent, user)?)?;
            let (a, b) = (
                At::locate(agent, &from, false, false)?,
                At::locate(agent, &to, false, false)?,
            );
            fs::rename(a.path(), b.path())
                .map_err(|e| Failure::io(&format!("{from} -> {to}"), &e))?;
            ok(s, serde_json::Value::Null)
        }
        Op::TarUpload { path, user } => {
            let mut body = FrameReader::new(s);
            let r = (|| -> Result<(), Failure> {
                let _ids = FsIds::enter(uid_for(agent, user)?)?;
                let dir = open_dir(&absolute(agent, &path)?, true, false)
                    .map_err(|e| Failure::io(&path, &e))?;
                let p = fd_path(&dir);
                let mut ar = tar::Archive::new(&mut body);
                ar.set_preserve_permissions(true);
                ar.set_overwrite(true);
                // unpack() refuses entries that escape `p` ("..", absolute
                // paths, links pointing outside) — and we are inside the jail anyway.
                ar.unpack(&p).map_err(|e| {
                    let f = Failure::io(&format!("extracting into {path}"), &e);
                    if f.code == ErrorCode::Internal {
                        // What is not an I/O condition is a malformed archive.
                        Failure::new(
                            ErrorCode::InvalidArgument,
                            format!("extracting into {path}: not a valid tar archive ({e})"),
                        )
                    } else {
                        f
                    }
                })
            })();
            let _ = body.drain();
            r?;
            ok(s, serde_json::Value::Null)
        }
        Op::TarDownload { path, user } => {
            let _ids = FsIds::enter(uid_for(agent, user)?)?;
            let at = At::locate(agent, &path, false, false)?;
            let p = at.path();
            let md = fs::symlink_metadata(&p).map_err(|e| Failure::io(&path, &e))?;
            ok(s, serde_json::Value::Null)?;
            let mut w = FrameWriter::new(s);
            let r = {
                let mut b = tar::Builder::new(&mut w);
                b.follow_symlinks(false);
                let res = if md.is_dir() {
                    child_at(&at.dir, &at.name, libc::O_PATH | libc::O_DIRECTORY)
                        .and_then(|top| append_tree(&mut b, Path::new("."), &top, 0))
                } else {
                    let name = at
                        .shown
                        .file_name()
                        .map(PathBuf::from)
                        .unwrap_or_else(|| "file".into());
                    append_entry(&mut b, &at.dir, &at.name, &md, &name)
                };
                res.and_then(|_| b.finish())
            };
            // A failure mid-stream cannot become an error frame (the client
            // is reading data); it ends the stream without the end marker.
            r.map_err(|e| Failure::io(&path, &e))?;
            w.finish().map_err(|e| Failure::io(&path, &e))?;
            Ok(())
        }
        other => Err(Failure::new(
            ErrorCode::InvalidArgument,
            format!("unsupported operation {other:?}"),
        )),
    }
}

/// Append `dir`'s entries to `out` while their encoded size fits `budget`
/// (which reaches 0 when it did not: the caller reports that). `dir` is
/// held open, and so is every directory descended into, each opened from
/// its parent without following a link: a directory swapped for a link
/// while the listing runs is not followed.
fn list(
    dir: &std::os::fd::OwnedFd,
    shown: &Path,
    recursive: bool,
    depth: usize,
    out: &mut Vec<FileStat>,
    budget: &mut usize,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(fd_path(dir))?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let shown = shown.join(e.file_name());
        let Ok(st) = stat(&path, &shown.to_string_lossy()) else {
            continue;
        };
        // JSON of one entry: the path (escaped at most 6×) plus ~150 bytes.
        let cost = st.path.len() * 6 + 150 + st.target.as_ref().map_or(0, |t| t.len() * 6);
        if cost >= *budget {
            *budget = 0;
            return Ok(());
        }
        *budget -= cost;
        let is_dir = st.kind == FileKind::Dir;
        out.push(st);
        if recursive && is_dir && depth < 64 {
            // Unreadable subdirectories are listed but not descended into.
            if let Ok(child) = child_at(dir, &e.file_name(), libc::O_PATH | libc::O_DIRECTORY) {
                let _ = list(&child, &shown, true, depth + 1, out, budget);
            }
            if *budget == 0 {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// `name` in the held directory `dir`, opened with `flags` without
/// following any link (magic or not).
fn child_at(
    dir: &std::os::fd::OwnedFd,
    name: &std::ffi::OsStr,
    flags: i32,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    aibox_sys::openat2(
        dir.as_fd(),
        Path::new(name),
        flags,
        0,
        aibox_sys::resolve::NO_SYMLINKS | aibox_sys::resolve::NO_MAGICLINKS,
    )
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    u32::from_le_bytes(b)
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0))
}

const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const SYSFS_MAGIC: i64 = 0x6265_6572;

/// Add `dir` to the archive as `name`, best effort: what this user cannot
/// read is left out rather than failing the whole download (as
/// `tar --ignore-failed-read` does), and kernel pseudo-filesystems (/proc)
/// are not descended into, since their files lie about their sizes.
fn append_tree<W: std::io::Write>(
    b: &mut tar::Builder<W>,
    name: &Path,
    dir: &std::os::fd::OwnedFd,
    depth: usize,
) -> std::io::Result<()> {
    let here = fd_path(dir);
    if name != Path::new(".") {
        b.append_dir(name, &here)?;
    }
    if depth > 256
        || matches!(
            aibox_sys::statfs_type(&here),
            Ok(PROC_SUPER_MAGIC | SYSFS_MAGIC)
        )
    {
        return Ok(());
    }
    let Ok(rd) = fs::read_dir(&here) else {
        return Ok(());
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let child = name.join(e.file_name());
        let Ok(md) = fs::symlink_metadata(e.path()) else {
            continue;
        };
        if md.is_dir() {
            // Held, opened without following a link (one swapped in
            // meanwhile is skipped).
            if let Ok(sub) = child_at(dir, &e.file_name(), libc::O_PATH | libc::O_DIRECTORY) {
                append_tree(b, &child, &sub, depth + 1)?;
            }
            continue;
        }
        append_entry(b, dir, &e.file_name(), &md, &child)?;
    }
    Ok(())
}

/// One entry of the held directory `dir` (as `md` described it) into the
/// archive as `as_name`: a file read through a descriptor opened without
/// following any link, a link as a link, a special file as its header.
fn append_entry<W: std::io::Write>(
    b: &mut tar::Builder<W>,
    dir: &std::os::fd::OwnedFd,
    name: &std::ffi::OsStr,
    md: &fs::Metadata,
    as_name: &Path,
) -> std::io::Result<()> {
    let r = if md.is_file() {
        child_at(dir, name, libc::O_RDONLY).and_then(|fd| {
            let f = fs::File::from(fd);
            let meta = f.metadata()?;
            if !meta.is_file() {
                return Ok(());
            }
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            b.append_data(&mut header, as_name, f)
        })
    } else if md.file_type().is_symlink() {
        fs::read_link(fd_path(dir).join(name)).and_then(|target| {
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(md, tar::HeaderMode::Complete);
            header.set_size(0);
            b.append_link(&mut header, as_name, target)
        })
    } else {
        use std::os::unix::fs::FileTypeExt;
        let t = md.file_type();
        if !(t.is_fifo() || t.is_char_device() || t.is_block_device()) {
            // A socket: the format cannot describe it.
            return Ok(());
        }
        // A header only, from what was seen; nothing is opened.
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(md, tar::HeaderMode::Complete);
        header.set_size(0);
        b.append_data(&mut header, as_name, std::io::empty())
    };
    match r {
        Ok(()) => Ok(()),
        // Unreadable, or gone (or swapped for a link) meanwhile: skipped.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound
            ) || e.raw_os_error() == Some(libc::ELOOP) =>
        {
            Ok(())
        }
        // A special file the format cannot describe (nothing was written
        // for it: headers are built before they are written): skipped.
        Err(_) if !md.is_file() => Ok(()),
        // Anything else (the client went away, a file changed size while
        // read) ends the transfer.
        Err(e) => Err(e),
    }
}
