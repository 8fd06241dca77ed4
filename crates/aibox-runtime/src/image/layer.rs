//! Filesystem layers: turning a sandbox's overlay upper directory into a
//! self-contained, read-only layer on disk (a snapshot), which a new
//! sandbox then uses as an extra overlay lower layer (restore, fork).
//!
//! A layer is a directory tree in overlayfs's own format: a whiteout is a
//! character device 0:0, an opaque directory carries `user.overlay.opaque=y`
//! (the `userxattr` form every sandbox mount uses). A layer is always
//! relative to the template alone: a snapshot of a sandbox that was itself
//! restored is its parent layer with the upper applied on top, so restores
//! never stack more than two lower layers. Files unchanged since the parent
//! are hard links to it (layers are immutable once written).
//!
//! Ownership is stored *canonically* (the sandbox's own uids, 0..65536): in
//! root mode the upper is owned by the sandbox's host uid range, which is
//! shifted back by the range's base; a restored sandbox sees the layer
//! through an idmapped mount onto its own range. Set-uid and set-gid bits on
//! files are dropped (sandboxes run with no_new_privs, where they mean
//! nothing, and such a file must never sit on the host owned by root).
//! Device nodes other than whiteouts and sockets are skipped; a sandbox
//! cannot create the former and the latter do not survive a restart.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const OPAQUE_XATTR: &[u8] = b"user.overlay.opaque";

#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct LayerError {
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn beneath_err(path: &Path) -> impl FnOnce(crate::sandbox::beneath::BeneathError) -> LayerError {
    let path = path.to_path_buf();
    move |e| LayerError {
        what: "setting the metadata of",
        path,
        source: io::Error::other(e.to_string()),
    }
}

fn at(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LayerError {
    let path = path.to_path_buf();
    move |source| LayerError { what, path, source }
}

/// How file owners in the source map to the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owners {
    /// Keep them (rootless: everything is the caller's own uid).
    Keep,
    /// Host uids `base..base+65536` become `0..65536`; anything else
    /// becomes nobody (65534).
    Shift { base: u32 },
    /// Copy them verbatim (a layer that is already canonical).
    Verbatim,
}

impl Owners {
    fn map(self, id: u32) -> Option<u32> {
        match self {
            Owners::Keep => None,
            Owners::Verbatim => Some(id),
            Owners::Shift { base } => Some(match id.checked_sub(base) {
                Some(v) if v < 65536 => v,
                _ => 65534,
            }),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    /// Entries written (files, directories, links, whiteouts).
    pub entries: u64,
    /// Disk space of the layer's file data (hard-linked data included;
    /// holes are free).
    pub bytes: u64,
}

enum Kind {
    Dir,
    File,
    Symlink,
    Whiteout,
    Fifo,
    Skip,
}

fn kind(md: &fs::Metadata, path: &Path) -> Kind {
    let ft = md.file_type();
    if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_char_device() && md.rdev() == 0 {
        Kind::Whiteout
    } else if ft.is_file() {
        // The "xwhiteout" form: an empty file marked by an xattr.
        if md.len() == 0
            && aibox_sys::get_xattr(path, b"user.overlay.whiteout")
                .ok()
                .flatten()
                .is_some()
        {
            Kind::Whiteout
        } else {
            Kind::File
        }
    } else if ft.is_fifo() {
        Kind::Fifo
    } else {
        Kind::Skip
    }
}

/// Directory metadata applied after its children are written (a read-only
/// directory must stay writable until then, and writing children changes
/// its mtime).
struct DirMeta {
    mode: u32,
    atime: (i64, i64),
    mtime: (i64, i64),
}

struct Copier {
    owners: Owners,
    /// (dev, ino) of multiply-linked source files → their copy.
    links: HashMap<(u64, u64), PathBuf>,
    /// Directories in creation order, finished in reverse.
    dirs: Vec<PathBuf>,
    dir_meta: HashMap<PathBuf, DirMeta>,
    stats: CopyStats,
}

fn times(md: &fs::Metadata) -> ((i64, i64), (i64, i64)) {
    ((md.atime(), md.atime_nsec()), (md.mtime(), md.mtime_nsec()))
}

impl Copier {
    fn new(owners: Owners) -> Copier {
        Copier {
            owners,
            links: HashMap::new(),
            dirs: Vec::new(),
            dir_meta: HashMap::new(),
            stats: CopyStats::default(),
        }
    }

    fn chown(&self, dst: &Path, md: &fs::Metadata) -> Result<(), LayerError> {
        if let (Some(u), Some(g)) = (self.owners.map(md.uid()), self.owners.map(md.gid())) {
            std::os::unix::fs::lchown(dst, Some(u), Some(g)).map_err(at("chown", dst))?;
        }
        Ok(())
    }

    /// Copy user xattrs, except overlayfs's own (opaque is handled apart).
    fn xattrs(&self, src: &Path, dst: &Path, keep_overlay: bool) -> Result<(), LayerError> {
        for name in aibox_sys::list_xattrs(src).map_err(at("listing xattrs of", src))? {
            let user = name.starts_with(b"user.");
            let overlay = name.starts_with(b"user.overlay.");
            if !user || (overlay && !keep_overlay) {
                continue;
            }
            if let Some(v) =
                aibox_sys::get_xattr(src, &name).map_err(at("reading xattr of", src))?
            {
                aibox_sys::set_xattr(dst, &name, &v).map_err(at("setting xattr on", dst))?;
            }
        }
        Ok(())
    }

    fn new_dir(&mut self, dst: &Path, md: &fs::Metadata) -> Result<(), LayerError> {
        fs::DirBuilder::new()
            .create(dst)
            .map_err(at("creating directory", dst))?;
        fs::set_permissions(dst, fs::Permissions::from_mode(0o700)).map_err(at("chmod", dst))?;
        self.dirs.push(dst.to_path_buf());
        self.set_dir_meta(dst, md);
        self.stats.entries += 1;
        Ok(())
    }

    fn set_dir_meta(&mut self, dst: &Path, md: &fs::Metadata) {
        let (atime, mtime) = times(md);
        self.dir_meta.insert(
            dst.to_path_buf(),
            DirMeta {
                mode: md.mode() & 0o7777,
                atime,
                mtime,
            },
        );
    }

    /// Apply the directories' metadata, deepest first, through
    /// descriptors opened beneath the layer's root (`crate::sandbox::beneath`): an
    /// entry the upper turned into a symlink or a file since its
    /// directory was made is skipped, never followed (the review's C3: a
    /// path-based chmod here followed a sandbox's symlink to the host).
    fn finish_dirs(&mut self, root: &Path) -> Result<(), LayerError> {
        let tree = crate::sandbox::beneath::Tree::open(root).map_err(beneath_err(root))?;
        for d in self.dirs.drain(..).rev() {
            let Some(m) = self.dir_meta.get(&d) else {
                continue;
            };
            let Ok(rel) = d.strip_prefix(root) else {
                continue;
            };
            tree.set_dir_meta(rel, m.mode, Some((m.atime, m.mtime)))
                .map_err(beneath_err(&d))?;
        }
        Ok(())
    }

    /// A non-directory entry, copied (or hard-linked to an earlier copy of
    /// the same source inode).
    fn leaf(
        &mut self,
        src: &Path,
        dst: &Path,
        md: &fs::Metadata,
        k: Kind,
    ) -> Result<(), LayerError> {
        if md.nlink() > 1 && matches!(k, Kind::File) {
            if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                fs::hard_link(first, dst).map_err(at("linking", dst))?;
                self.stats.entries += 1;
                self.stats.bytes += md.blocks() * 512;
                return Ok(());
            }
        }
        match k {
            Kind::File => {
                copy_data(src, dst).map_err(at("copying", src))?;
                self.stats.bytes += md.blocks() * 512;
            }
            Kind::Symlink => {
                let target = fs::read_link(src).map_err(at("reading link", src))?;
                std::os::unix::fs::symlink(target, dst).map_err(at("creating link", dst))?;
            }
            Kind::Whiteout => {
                aibox_sys::mknod_whiteout(dst).map_err(at("creating whiteout", dst))?
            }
            Kind::Fifo => aibox_sys::mkfifo(dst, 0o600).map_err(at("creating fifo", dst))?,
            Kind::Dir | Kind::Skip => return Ok(()),
        }
        self.chown(dst, md)?;
        if !md.file_type().is_symlink() && !md.file_type().is_char_device() {
            // Set-id bits are dropped (see the module doc).
            fs::set_permissions(dst, fs::Permissions::from_mode(md.mode() & 0o1777))
                .map_err(at("chmod", dst))?;
            self.xattrs(src, dst, false)?;
        }
        let (a, m) = times(md);
        aibox_sys::set_times_nofollow(dst, a, m).map_err(at("setting times of", dst))?;
        if md.nlink() > 1 && md.file_type().is_file() {
            self.links.insert((md.dev(), md.ino()), dst.to_path_buf());
        }
        self.stats.entries += 1;
        Ok(())
    }

    /// Apply the upper directory `src` onto the layer directory `dst` with
    /// overlayfs semantics.
    ///
    /// The upper belongs to the sandbox, which may be changing it (when
    /// there is no freezer): no symlink in it is ever followed. Directories
    /// are held open and entries are reached through `/proc/self/fd/N/NAME`,
    /// so the only name resolved is the last one, and it is resolved
    /// without following (lstat, lgetxattr, readlink, O_NOFOLLOW).
    ///
    /// `fresh`: `dst` was made empty in this pass, so nothing in it needs
    /// looking up first.
    fn apply(
        &mut self,
        src: &SrcDir,
        dst: &Path,
        depth: usize,
        fresh: bool,
    ) -> Result<(), LayerError> {
        if depth > MAX_DEPTH {
            return Err(LayerError {
                what: "directories nested too deeply (over 256 levels) at",
                path: src.rel.clone(),
                source: io::Error::from(io::ErrorKind::Unsupported),
            });
        }
        let base = src.path();
        let rd = fs::read_dir(&base).map_err(at("reading directory", &src.rel))?;
        for e in rd {
            let e = e.map_err(at("reading directory", &src.rel))?;
            let name = e.file_name();
            let s = base.join(&name);
            let rel = src.rel.join(&name);
            let d = dst.join(&name);
            let md = fs::symlink_metadata(&s).map_err(at("stat", &rel))?;
            let existing = if fresh {
                None
            } else {
                fs::symlink_metadata(&d).ok()
            };
            match kind(&md, &s) {
                Kind::Skip => {}
                Kind::Dir => {
                    for redirect in [&b"user.overlay.redirect"[..], b"trusted.overlay.redirect"] {
                        if aibox_sys::get_xattr(&s, redirect).ok().flatten().is_some() {
                            return Err(LayerError {
                                what: "unsupported overlay redirect at",
                                path: rel,
                                source: io::Error::from(io::ErrorKind::Unsupported),
                            });
                        }
                    }
                    let sub = SrcDir::open(&s, rel)?;
                    let mut opaque = is_opaque(&s);
                    let mut sub_fresh = true;
                    match &existing {
                        Some(x) if x.is_dir() && !is_whiteout(x) => {
                            if opaque {
                                clear_dir(&d).map_err(at("clearing", &d))?;
                                self.links.retain(|_, p| !p.starts_with(&d));
                            } else {
                                sub_fresh = false;
                            }
                            self.set_dir_meta(&d, &md);
                        }
                        other => {
                            if other.is_some() {
                                remove_tree(&d).map_err(at("removing", &d))?;
                                // Nothing below it may be linked to again.
                                self.links.retain(|_, p| !p.starts_with(&d));
                                // Whatever lies below must stay hidden.
                                opaque = true;
                            }
                            self.new_dir(&d, &md)?;
                        }
                    }
                    self.chown(&d, &md)?;
                    self.xattrs(&s, &d, false)?;
                    if opaque {
                        aibox_sys::set_xattr(&d, OPAQUE_XATTR, b"y")
                            .map_err(at("marking opaque", &d))?;
                    }
                    self.apply(&sub, &d, depth + 1, sub_fresh)?;
                }
                k => {
                    if existing.is_some() {
                        remove_tree(&d).map_err(at("removing", &d))?;
                        self.links.retain(|_, p| !p.starts_with(&d));
                    }
                    self.leaf(&s, &d, &md, k).map_err(|mut e| {
                        if e.path == s {
                            e.path = rel;
                        }
                        e
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Recreate the layer `src` at `dst`: directories anew, everything
    /// else hard-linked (copied where a link is impossible).
    fn link(&mut self, src: &Path, dst: &Path) -> Result<(), LayerError> {
        let rd = fs::read_dir(src).map_err(at("reading directory", src))?;
        for e in rd {
            let e = e.map_err(at("reading directory", src))?;
            let s = e.path();
            let d = dst.join(e.file_name());
            let md = fs::symlink_metadata(&s).map_err(at("stat", &s))?;
            if md.is_dir() {
                self.new_dir(&d, &md)?;
                self.chown(&d, &md)?;
                self.xattrs(&s, &d, true)?;
                self.link(&s, &d)?;
            } else if fs::hard_link(&s, &d).is_ok() {
                self.stats.entries += 1;
                if md.is_file() {
                    self.stats.bytes += md.blocks() * 512;
                }
            } else {
                // EMLINK (too many links) or another filesystem.
                let k = kind(&md, &s);
                self.leaf(&s, &d, &md, k)?;
            }
        }
        Ok(())
    }
}

/// Deepest directory nesting a snapshot copies.
const MAX_DEPTH: usize = 256;

/// A directory of the upper being copied, held open.
struct SrcDir {
    fd: std::os::fd::OwnedFd,
    /// Its path inside the upper, for messages.
    rel: PathBuf,
}

impl SrcDir {
    fn open(path: &Path, rel: PathBuf) -> Result<SrcDir, LayerError> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)
            .map_err(at("opening directory", &rel))?;
        Ok(SrcDir { fd: f.into(), rel })
    }

    /// `/proc/self/fd/N`: the directory itself, whatever its path now.
    fn path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

fn is_whiteout(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    [&b"user.overlay.opaque"[..], b"trusted.overlay.opaque"]
        .iter()
        .any(|n| matches!(aibox_sys::get_xattr(dir, n), Ok(Some(v)) if v == b"y"))
}

/// Copy a file's data, keeping holes (a sandbox can make a sparse file far
/// larger than its disk quota).
fn copy_data(src: &Path, dst: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    // Not a symlink, and never blocking on a fifo swapped in meanwhile.
    let mut from = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(src)?;
    let md = from.metadata()?;
    if !md.is_file() {
        return Err(io::Error::other("changed while being copied"));
    }
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)?;
    let size = md.len();
    const CHUNK: usize = 256 << 10;
    // Small and not sparse (most files): one read, one write.
    if size <= CHUNK as u64 && md.blocks() * 512 >= size {
        let mut data = vec![0u8; size as usize];
        let mut n = 0;
        while n < data.len() {
            match from.read(&mut data[n..])? {
                0 => break,
                r => n += r,
            }
        }
        return to.write_all(&data[..n]);
    }
    to.set_len(size)?;
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    while pos < size {
        let start = match aibox_sys::seek_data_hole(from.as_fd(), pos, true) {
            Ok(Some(s)) => s,
            Ok(None) => break,
            // No SEEK_DATA here: copy everything.
            Err(_) => pos,
        };
        let end = aibox_sys::seek_data_hole(from.as_fd(), start, false)
            .ok()
            .flatten()
            .unwrap_or(size)
            .min(size);
        from.seek(SeekFrom::Start(start))?;
        to.seek(SeekFrom::Start(start))?;
        let mut left = end - start;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = from.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            to.write_all(&buf[..n])?;
            left -= n as u64;
        }
        pos = end.max(start + 1);
    }
    Ok(())
}

/// Remove a file or a whole tree, making read-only directories writable
/// first (a rootless caller is not exempt from their permissions).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let md = match fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !md.is_dir() {
        return fs::remove_file(path);
    }
    clear_dir(path)?;
    fs::remove_dir(path)
}

fn clear_dir(path: &Path) -> io::Result<()> {
    let md = fs::symlink_metadata(path)?;
    if md.mode() & 0o700 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(md.mode() | 0o700))?;
    }
    for e in fs::read_dir(path)? {
        remove_tree(&e?.path())?;
    }
    Ok(())
}

/// Write a layer at `dst` (which must not exist): `parent` (an earlier
/// layer, already canonical) if given, with the overlay upper directory
/// `upper` applied on top.
pub fn build(
    upper: &Path,
    parent: Option<&Path>,
    dst: &Path,
    owners: Owners,
) -> Result<CopyStats, LayerError> {
    let mut c = Copier::new(Owners::Verbatim);
    fs::DirBuilder::new()
        .create(dst)
        .map_err(at("creating directory", dst))?;
    if let Some(p) = parent {
        c.link(p, dst)?;
    }
    c.owners = owners;
    let root = SrcDir::open(upper, PathBuf::from("/"))?;
    c.apply(&root, dst, 0, parent.is_none())?;
    // The layer's root: overlay takes the root's attributes from the upper
    // layer of the sandbox that uses it, so only a sane mode matters.
    fs::set_permissions(dst, fs::Permissions::from_mode(0o755)).map_err(at("chmod", dst))?;
    c.finish_dirs(dst)?;
    Ok(c.stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let p =
            std::env::temp_dir().join(format!("aibox-layer-{}", crate::sandbox::ids::random_id()));
        fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn apply_follows_overlay_semantics() {
        let t = tmp();
        let (parent, upper, out) = (t.join("parent"), t.join("upper"), t.join("out"));
        // Parent layer: a/keep, a/gone, b/old, c (file), d/x.
        for d in [
            "parent/a", "parent/b", "parent/d", "upper/a", "upper/b", "upper/c",
        ] {
            fs::create_dir_all(t.join(d)).unwrap();
        }
        fs::write(parent.join("a/keep"), "keep").unwrap();
        fs::write(parent.join("a/gone"), "gone").unwrap();
        fs::write(parent.join("b/old"), "old").unwrap();
        fs::write(parent.join("c"), "file").unwrap();
        fs::write(parent.join("d/x"), "x").unwrap();
        // Upper: a/gone whited out, a/new added, b opaque, c now a dir, d removed.
        let whiteouts = aibox_sys::mknod_whiteout(&upper.join("a/gone")).is_ok()
            && aibox_sys::mknod_whiteout(&upper.join("d")).is_ok();
        fs::write(upper.join("a/new"), "new").unwrap();
        fs::write(upper.join("b/fresh"), "fresh").unwrap();
        let xattrs = aibox_sys::set_xattr(&upper.join("b"), OPAQUE_XATTR, b"y").is_ok();
        fs::write(upper.join("c/inner"), "inner").unwrap();
        fs::set_permissions(upper.join("c"), fs::Permissions::from_mode(0o555)).unwrap();
        let stats = build(&upper, Some(&parent), &out, Owners::Keep).unwrap();
        assert_eq!(fs::read_to_string(out.join("a/keep")).unwrap(), "keep");
        assert_eq!(fs::read_to_string(out.join("a/new")).unwrap(), "new");
        assert_eq!(fs::read_to_string(out.join("c/inner")).unwrap(), "inner");
        assert_eq!(
            fs::metadata(out.join("c")).unwrap().mode() & 0o777,
            0o555,
            "directory modes are applied last"
        );
        assert!(
            is_opaque(&out.join("c")) || !xattrs,
            "a dir replacing a file is opaque"
        );
        if xattrs {
            assert!(
                !out.join("b/old").exists(),
                "opaque dir hides the parent's entries"
            );
            assert!(is_opaque(&out.join("b")));
        }
        assert_eq!(fs::read_to_string(out.join("b/fresh")).unwrap(), "fresh");
        if whiteouts {
            assert!(is_whiteout(
                &fs::symlink_metadata(out.join("a/gone")).unwrap()
            ));
            assert!(is_whiteout(&fs::symlink_metadata(out.join("d")).unwrap()));
        }
        // Unchanged files are shared with the parent, not copied.
        assert_eq!(
            fs::metadata(out.join("a/keep")).unwrap().ino(),
            fs::metadata(parent.join("a/keep")).unwrap().ino()
        );
        assert!(stats.entries >= 6);
        remove_tree(&t).unwrap();
        assert!(!t.exists());
    }

    #[test]
    fn sparse_files_stay_sparse_and_setid_bits_go() {
        let t = tmp();
        let upper = t.join("upper");
        fs::create_dir(&upper).unwrap();
        let f = fs::File::create(upper.join("sparse")).unwrap();
        f.set_len(64 << 30).unwrap();
        drop(f);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(upper.join("sparse"))
            .unwrap();
        f.seek(SeekFrom::Start(1 << 30)).unwrap();
        f.write_all(b"middle").unwrap();
        drop(f);
        fs::write(upper.join("suid"), "x").unwrap();
        fs::set_permissions(upper.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::write(upper.join("a"), "linked").unwrap();
        fs::hard_link(upper.join("a"), upper.join("b")).unwrap();
        let out = t.join("out");
        build(&upper, None, &out, Owners::Keep).unwrap();
        let md = fs::metadata(out.join("sparse")).unwrap();
        assert_eq!(md.len(), 64 << 30);
        assert!(md.blocks() * 512 < 1 << 20, "holes were written out");
        let mut back = fs::File::open(out.join("sparse")).unwrap();
        back.seek(SeekFrom::Start(1 << 30)).unwrap();
        let mut buf = [0u8; 6];
        back.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"middle");
        assert_eq!(
            fs::metadata(out.join("suid")).unwrap().mode() & 0o7777,
            0o755
        );
        assert_eq!(
            fs::metadata(out.join("a")).unwrap().ino(),
            fs::metadata(out.join("b")).unwrap().ino(),
            "hard links stay links"
        );
        remove_tree(&t).unwrap();
    }

    /// The review's C3 at the unit level: a directory of the parent layer
    /// that the upper replaced by a symlink (or a file) keeps none of the
    /// directory's metadata, and nothing the link names is touched.
    #[test]
    fn c3_a_replaced_directory_is_never_chmodded_through_a_symlink() {
        let t = tmp();
        let (parent, upper, out) = (t.join("parent"), t.join("upper"), t.join("out"));
        let canary = t.join("canary");
        fs::write(&canary, "secret").unwrap();
        fs::set_permissions(&canary, fs::Permissions::from_mode(0o600)).unwrap();
        let victim_dir = t.join("victim-dir");
        fs::create_dir_all(victim_dir.join("sub")).unwrap();
        fs::set_permissions(victim_dir.join("sub"), fs::Permissions::from_mode(0o700)).unwrap();
        for d in ["parent/x", "parent/y/sub", "parent/z", "upper"] {
            fs::create_dir_all(t.join(d)).unwrap();
        }
        for d in ["parent/x", "parent/y", "parent/y/sub", "parent/z"] {
            fs::set_permissions(t.join(d), fs::Permissions::from_mode(0o4777)).unwrap();
        }
        // x: a link to a host file; y (with a subdirectory): a link to a
        // host directory; z: a plain file.
        std::os::unix::fs::symlink(&canary, upper.join("x")).unwrap();
        std::os::unix::fs::symlink(&victim_dir, upper.join("y")).unwrap();
        fs::write(upper.join("z"), "file").unwrap();
        fs::set_permissions(upper.join("z"), fs::Permissions::from_mode(0o644)).unwrap();
        build(&upper, Some(&parent), &out, Owners::Keep).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&canary), 0o600, "the link's target was chmodded");
        assert_eq!(
            mode(&victim_dir.join("sub")),
            0o700,
            "chmod went through a link"
        );
        assert!(fs::symlink_metadata(out.join("x")).unwrap().is_symlink());
        assert_eq!(
            mode(&out.join("z")),
            0o644,
            "a file took its directory's mode"
        );
        remove_tree(&t).unwrap();
    }

    #[test]
    fn symlinks_are_copied_never_followed_and_nesting_is_bounded() {
        let t = tmp();
        let upper = t.join("upper");
        fs::create_dir(&upper).unwrap();
        std::os::unix::fs::symlink("/etc", upper.join("evil")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", upper.join("evil-file")).unwrap();
        build(&upper, None, &t.join("out"), Owners::Keep).unwrap();
        for l in ["evil", "evil-file"] {
            let md = fs::symlink_metadata(t.join("out").join(l)).unwrap();
            assert!(md.file_type().is_symlink(), "{l}");
        }
        let mut deep = upper.join("d");
        for _ in 0..=MAX_DEPTH {
            deep = deep.join("d");
        }
        fs::create_dir_all(&deep).unwrap();
        let e = build(&upper, None, &t.join("out2"), Owners::Keep).unwrap_err();
        assert!(e.to_string().contains("nested too deeply"), "{e}");
        remove_tree(&t).unwrap();
    }
}
