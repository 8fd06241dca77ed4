//! Volumes: named filesystems that outlive sandboxes, mounted into any
//! number of them at once.
//!
//! `DATA_DIR/volumes/<id>/` holds `volume.json` (its metadata), `lock`
//! and `data/`, the files. Every sandbox that mounts the volume holds a
//! shared `flock` on `lock` for its whole life (its PID 1 inherits it, as
//! it does a snapshot's), so a volume in use is never removed and a crash
//! leaves no stale count behind.
//!
//! **The quota.** As root, the files live in an ext4 filesystem of the
//! volume's size, `disk.ext4` (sparse: it takes only what is written),
//! mounted on `data/` through a loop device (nosuid, nodev): a write past
//! the quota fails with `ENOSPC` inside the sandbox and nothing outside
//! it grows. The mount stays while the volume exists (and is made again
//! after a reboot, on first use); one loop device serves each image, so
//! every sandbox sees the one filesystem. Rootless, or where the host has
//! no loop devices, `data/` is a plain directory and the quota is not
//! enforced: the volume's view says so (`quota.enforced: false`, with the
//! reason), and its usage is measured by walking it.
//!
//! **Ownership.** Files are stored with the sandbox's own ids (0..65536):
//! as root each sandbox mounts the volume idmapped through its own user
//! namespace (as it does its template), so sandboxes with different uid
//! slots share files as the same users. Rootless, the one id there is.
//!
//! **Snapshots and clones** copy `disk.ext4` with the filesystem frozen
//! (FIFREEZE: writers wait, the image is consistent), cloning its blocks
//! where the filesystem under `DATA_DIR` can (btrfs, xfs), else copying
//! only its allocated extents; a plain directory is copied file by file.

use crate::image::layer;
use crate::sandbox::staged::{self, lock_of as open_lock};
use crate::{now_ms, random_id, Error, Runtime};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

const META: &str = "volume.json";
const DATA: &str = "data";
const IMAGE: &str = "disk.ext4";
const SNAPSHOTS: &str = "snapshots";

/// A volume's metadata (`volume.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMeta {
    pub id: String,
    pub name: String,
    pub size_bytes: u64,
    /// Owner of its top directory, as the sandbox sees it.
    pub uid: u32,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub created_unix_ms: u64,
    /// An ext4 image on a loop device: the quota is enforced.
    pub image: bool,
    /// `VOLUME` or `VOLUME@SNAPSHOT` it was cloned from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloned_from: Option<String>,
    /// The server's API key that owns it (None: made without a server).
    /// The server's database is the authority; this lets a server that
    /// crashed between the two give the volume back to its owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl VolumeMeta {
    /// How the quota is kept, or why it is not.
    pub fn quota_how(&self) -> String {
        if self.image {
            "an ext4 filesystem of this size on a loop device: writes past it fail with ENOSPC"
                .into()
        } else if aibox_sys::geteuid() != 0 {
            "not enforced: a rootless server cannot mount a filesystem of its own (usage is measured)"
                .into()
        } else {
            "not enforced: this host has no loop devices (usage is measured)".into()
        }
    }
}

/// A volume snapshot's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSnapshotMeta {
    pub name: String,
    pub created_unix_ms: u64,
    /// Disk space its copy takes.
    pub size_bytes: u64,
}

/// What a new volume is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewVolume {
    pub name: String,
    pub size_bytes: u64,
    pub uid: u32,
    pub labels: BTreeMap<String, String>,
    pub owner: Option<String>,
}

/// Most snapshots one volume keeps.
pub const MAX_VOLUME_SNAPSHOTS: usize = 64;

/// A volume opened for a sandbox: its files, and its lock held shared
/// (for PID 1 to keep for the sandbox's life).
pub(crate) struct HeldVolume {
    pub data: PathBuf,
    pub lock: OwnedFd,
    /// The lock's file (for a process that takes its own hold).
    pub lock_path: PathBuf,
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Helper(format!("{what}: {e}"))
}

fn not_found(id: &str) -> Error {
    Error::VolumeNotFound(id.to_string())
}

/// The lock one snapshot or clone of a volume holds at a time.
fn copy_lock(dir: &Path) -> std::io::Result<OwnedFd> {
    staged::lock_file(dir, "copy.lock", true)
}

/// The top directory of the filesystem mounted on `data` (checked: the
/// mount is there), opened once, for ioctls that act on the filesystem.
fn open_mounted(data: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(data)?;
    let parent = fs::metadata(data.parent().unwrap_or(Path::new("/")))?;
    if f.metadata()?.dev() == parent.dev() {
        return Err(std::io::Error::other(format!(
            "{} is not mounted",
            data.display()
        )));
    }
    Ok(f)
}

/// An e2fsprogs tool (`mkfs.ext4`, `dumpe2fs`) from PATH or the sbin
/// directories (which a non-login PATH may lack).
fn e2fs_tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d: PathBuf| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| name.into())
}

fn run_e2fs(name: &str, args: &[&std::ffi::OsStr]) -> Result<String, Error> {
    let out = Command::new(e2fs_tool(name))
        .args(args)
        .output()
        .map_err(|e| {
            Error::Unsupported(format!(
                "running {name} (Debian's e2fsprogs) for a volume: {e}"
            ))
        })?;
    if !out.status.success() {
        return Err(Error::Helper(format!(
            "{name} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An ext4 image's block counts from its superblock: (free bytes, used
/// bytes), as `df` shows them once mounted (ext4's own metadata in
/// neither).
fn image_space(image: &Path) -> Result<(u64, u64), Error> {
    let out = run_e2fs("dumpe2fs", &["-h".as_ref(), image.as_os_str()])?;
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    match (
        field("Block count:"),
        field("Free blocks:"),
        field("Block size:"),
    ) {
        (Some(total), Some(free), Some(b)) => {
            let overhead = field("Overhead clusters:").unwrap_or(0);
            let used = total.saturating_sub(overhead).saturating_sub(free);
            Ok((free * b, used * b))
        }
        _ => Err(Error::Helper(format!(
            "dumpe2fs: no block counts for {}",
            image.display()
        ))),
    }
}

/// A sparse ext4 image whose files may take `bytes` (the image is larger
/// by ext4's own journal and tables), whose top directory `uid` owns,
/// with no blocks reserved for root (the sandbox's root is not the
/// host's).
fn make_image(image: &Path, bytes: u64, uid: u32) -> Result<(), Error> {
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(image)
        .map_err(io_err(format!("creating {}", image.display())))?;
    let options =
        format!("root_owner={uid}:{uid},lazy_itable_init=1,lazy_journal_init=1,nodiscard");
    let mut len = bytes;
    for _ in 0..3 {
        f.set_len(len)
            .map_err(io_err(format!("sizing {}", image.display())))?;
        run_e2fs(
            "mkfs.ext4",
            &[
                "-q".as_ref(),
                "-F".as_ref(),
                "-m".as_ref(),
                "0".as_ref(),
                "-O".as_ref(),
                "^resize_inode".as_ref(),
                "-E".as_ref(),
                options.as_ref(),
                image.as_os_str(),
            ],
        )?;
        let (free, _) = image_space(image)?;
        if free >= bytes {
            return Ok(());
        }
        // Room for the metadata on top (a larger filesystem has a little
        // more of it: measured again).
        len += bytes - free + (1 << 20);
    }
    Err(Error::Helper(format!(
        "could not size an ext4 filesystem to hold {} of files",
        aibox_types::ByteSize(bytes)
    )))
}

/// Whether something is mounted on `dir` (in this mount namespace).
fn mounted(dir: &Path) -> bool {
    dir.parent()
        .is_some_and(|p| aibox_sys::mount_points_under(p).iter().any(|m| m == dir))
}

/// Bytes the files under `dir` take (a volume without an image). Each
/// directory is opened beneath the one before without following a link,
/// so a sandbox that swaps a directory for a symlink mid-walk leads it
/// nowhere.
fn walk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let open_dir = |p: &Path| {
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(p)
    };
    let Ok(root) = open_dir(dir) else { return 0 };
    let mut total = 0;
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        use std::os::fd::AsRawFd;
        let here = PathBuf::from(format!("/proc/self/fd/{}", d.as_raw_fd()));
        let Ok(rd) = fs::read_dir(&here) else {
            continue;
        };
        for e in rd.flatten() {
            // lstat through the open directory: never follows.
            let Ok(m) = e.metadata() else { continue };
            total += m.blocks() * 512;
            if m.is_dir() && stack.len() < 4096 {
                if let Ok(sub) = open_dir(&here.join(e.file_name())) {
                    stack.push(sub);
                }
            }
        }
    }
    total
}

/// Copy the tree `src` into the new directory `dst` (a plain volume's
/// snapshot or clone), keeping modes, times and links.
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    let out = Command::new("cp")
        .args(["-a", "--reflink=auto", "--no-target-directory"])
        .arg(src)
        .arg(dst)
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

impl Runtime {
    pub fn volumes_dir(&self) -> PathBuf {
        self.dirs().data.join("volumes")
    }

    fn volume_dir(&self, id: &str) -> Result<PathBuf, Error> {
        if !aibox_types::validate_id(id) {
            return Err(not_found(id));
        }
        Ok(self.volumes_dir().join(id))
    }

    /// Whether a new volume here gets an enforced quota.
    pub fn volume_quota_enforced(&self) -> bool {
        !self.rootless() && aibox_sys::loop_devices_available()
    }

    /// Make a volume. Nothing is left behind when it fails.
    pub fn create_volume(&self, new: &NewVolume) -> Result<VolumeMeta, Error> {
        self.make_volume(new, None, |_, _| Ok(()))
    }

    /// Make a volume whose files `fill` provides (given the new volume's
    /// directory and whether it is an image): a clone.
    fn make_volume(
        &self,
        new: &NewVolume,
        cloned_from: Option<String>,
        fill: impl FnOnce(&Path, bool) -> Result<(), Error>,
    ) -> Result<VolumeMeta, Error> {
        if !aibox_types::api::valid_volume_name(&new.name) {
            return Err(Error::InvalidSpec(format!(
                "invalid volume name {:?}: use 1-63 letters, digits, '.', '_' or '-', not starting with '.' or '-'",
                new.name
            )));
        }
        let (min, max) = (
            aibox_types::api::MIN_VOLUME_BYTES,
            aibox_types::api::MAX_VOLUME_BYTES,
        );
        if !(min..=max).contains(&new.size_bytes) {
            return Err(Error::InvalidSpec(format!(
                "volume size {} is out of range: use 16m to 8t",
                aibox_types::ByteSize(new.size_bytes)
            )));
        }
        if new.uid > aibox_types::MAX_UID {
            return Err(Error::InvalidSpec(format!(
                "uid {} is out of range: 0 to {}",
                new.uid,
                aibox_types::MAX_UID
            )));
        }
        crate::sandbox::dirs::ensure_dir(&self.volumes_dir(), 0o700)?;
        let id = random_id();
        let image = self.volume_quota_enforced();
        let taken = || Error::Conflict(format!("volume {id} exists already"));
        staged::write(&self.volumes_dir(), &id, taken, |tmp| {
            fs::create_dir(tmp.join(DATA)).map_err(io_err("creating the volume".into()))?;
            if !image {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(tmp.join(DATA), fs::Permissions::from_mode(0o755))
                    .map_err(io_err("creating the volume".into()))?;
                if !self.rootless() {
                    // The sandbox's own ids (its top directory the
                    // volume's uid's), as an image's root_owner gives.
                    std::os::unix::fs::chown(tmp.join(DATA), Some(new.uid), Some(new.uid))
                        .map_err(io_err("creating the volume".into()))?;
                }
            }
            fill(tmp, image)?;
            if image && !tmp.join(IMAGE).exists() {
                make_image(&tmp.join(IMAGE), new.size_bytes, new.uid)?;
            }
            let meta = VolumeMeta {
                id: id.clone(),
                name: new.name.clone(),
                size_bytes: new.size_bytes,
                uid: new.uid,
                labels: new.labels.clone(),
                created_unix_ms: now_ms(),
                image,
                cloned_from,
                owner: new.owner.clone(),
            };
            staged::write_json(tmp, META, &meta)?;
            Ok(meta)
        })
    }

    /// Every volume, by name then id.
    pub fn volumes(&self) -> Vec<VolumeMeta> {
        let Ok(rd) = fs::read_dir(self.volumes_dir()) else {
            return vec![];
        };
        let mut v: Vec<VolumeMeta> = rd
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| serde_json::from_slice(&fs::read(e.path().join(META)).ok()?).ok())
            .collect();
        v.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        v
    }

    pub fn volume(&self, id: &str) -> Result<VolumeMeta, Error> {
        let dir = self.volume_dir(id)?;
        // Absent only when it is not there: another failure (no
        // descriptors, an I/O error) is not evidence that it is gone.
        let bytes = fs::read(dir.join(META)).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                not_found(id)
            } else {
                io_err(format!("reading volume {id}"))(e)
            }
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Helper(format!("volume {id}: corrupt metadata: {e}")))
    }

    /// Bytes its files take now.
    pub fn volume_usage(&self, meta: &VolumeMeta) -> u64 {
        let Ok(dir) = self.volume_dir(&meta.id) else {
            return 0;
        };
        if meta.image {
            let data = dir.join(DATA);
            if mounted(&data) {
                if let Ok((total, free)) = aibox_sys::fs_space(&data) {
                    return total.saturating_sub(free);
                }
            }
            // Not mounted (after a reboot, before its first use, while
            // nothing uses it): its superblock's count.
            return image_space(&dir.join(IMAGE)).map_or(0, |(_, used)| used);
        }
        walk_usage(&dir.join(DATA))
    }

    /// A volume as the API shows it: quota, usage now, the sandboxes that
    /// mount it, its snapshots.
    pub fn volume_view(&self, meta: &VolumeMeta) -> aibox_types::api::VolumeView {
        self.view_with(meta, &self.list())
    }

    /// [`Runtime::volume_view`] of each (the sandboxes read once).
    pub fn volume_views(&self, metas: &[VolumeMeta]) -> Vec<aibox_types::api::VolumeView> {
        let records = self.list();
        metas.iter().map(|m| self.view_with(m, &records)).collect()
    }

    fn view_with(
        &self,
        meta: &VolumeMeta,
        records: &[crate::sandbox::state::Record],
    ) -> aibox_types::api::VolumeView {
        use aibox_types::api::{QuotaView, VolumeSnapshotView, VolumeView};
        VolumeView {
            id: meta.id.clone(),
            name: meta.name.clone(),
            created_at_ms: meta.created_unix_ms,
            quota: QuotaView {
                bytes: meta.size_bytes,
                enforced: meta.image,
                how: meta.quota_how(),
            },
            used_bytes: self.volume_usage(meta),
            uid: meta.uid,
            labels: meta.labels.clone(),
            cloned_from: meta.cloned_from.clone(),
            in_use_by: records
                .iter()
                .filter(|r| r.spec.volumes.iter().any(|v| v.id == meta.id))
                .map(|r| r.id.clone())
                .collect(),
            snapshots: self
                .volume_snapshots(&meta.id)
                .into_iter()
                .map(|s| VolumeSnapshotView {
                    name: s.name,
                    created_at_ms: s.created_unix_ms,
                    size_bytes: s.size_bytes,
                })
                .collect(),
        }
    }

    /// The volume a name (or id) names among this runtime's: without a
    /// server, names are the host's (two of a name: use the id).
    pub fn find_volume(&self, name: &str) -> Result<VolumeMeta, Error> {
        if aibox_types::validate_id(name) {
            if let Ok(m) = self.volume(name) {
                return Ok(m);
            }
        }
        let mut found: Vec<VolumeMeta> = self
            .volumes()
            .into_iter()
            .filter(|v| v.name == name)
            .collect();
        match found.len() {
            0 => Err(Error::VolumeNotFound(name.to_string())),
            1 => Ok(found.remove(0)),
            _ => Err(Error::InvalidSpec(format!(
                "{} volumes are named {name:?} (made through the server by different keys): use an id ({})",
                found.len(),
                found.iter().map(|v| v.id.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// A spec's volumes given by name only (no server resolved them: the
    /// CLI without one) resolved among this runtime's.
    pub fn resolve_volumes(&self, spec: &mut aibox_types::SandboxSpec) -> Result<(), Error> {
        for v in spec.volumes.iter_mut().filter(|v| v.id.is_empty()) {
            v.id = self.find_volume(&v.name)?.id;
        }
        Ok(())
    }

    /// The sandboxes of this runtime that mount volume `id` and run.
    pub fn volume_users(&self, id: &str) -> Vec<String> {
        self.list()
            .into_iter()
            .filter(|r| r.spec.volumes.iter().any(|v| v.id == id) && r.alive())
            .map(|r| r.id)
            .collect()
    }

    /// The volume's files mounted on `data/`, under the volume's
    /// `attach.lock`: as root an image through its loop device (one device
    /// per image, found by device and inode), or a plain directory bound
    /// onto itself nosuid,nodev; rootless a plain directory as it is.
    fn ensure_mounted(&self, dir: &Path, meta: &VolumeMeta) -> Result<PathBuf, Error> {
        let data = dir.join(DATA);
        if self.rootless() {
            if meta.image {
                return Err(Error::Unsupported(format!(
                    "volume {} is an ext4 image, which only a root server can mount",
                    meta.name
                )));
            }
            return Ok(data);
        }
        if mounted(&data) {
            return Ok(data);
        }
        let guard = staged::lock_file(dir, "attach.lock", true)
            .map_err(io_err("volume attach lock".into()))?;
        aibox_sys::lock_exclusive(guard.as_fd()).map_err(io_err("volume attach lock".into()))?;
        if mounted(&data) {
            return Ok(data);
        }
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOATIME;
        if !meta.image {
            aibox_sys::mount(Some(&data), &data, None, libc::MS_BIND, None)
                .and_then(|()| {
                    aibox_sys::mount(
                        None,
                        &data,
                        None,
                        libc::MS_BIND | libc::MS_REMOUNT | flags,
                        None,
                    )
                })
                .map_err(io_err(format!("mounting volume {}", meta.name)))?;
            return Ok(data);
        }
        let image = dir.join(IMAGE);
        // A fresh device is held open until mounted (it clears itself
        // once nothing holds it).
        let (dev, _held) = match aibox_sys::loop_device_of(&image).map_err(io_err(format!(
            "looking for {}'s loop device",
            image.display()
        )))? {
            Some(dev) => (dev, None),
            None => {
                let (dev, f) = aibox_sys::attach_loop(&image).map_err(io_err(format!(
                    "attaching {} to a loop device",
                    image.display()
                )))?;
                (dev, Some(f))
            }
        };
        aibox_sys::mount(Some(&dev), &data, Some("ext4"), flags, None)
            .map_err(io_err(format!("mounting volume {}", meta.name)))?;
        Ok(data)
    }

    /// Thaw a volume a copy froze and never thawed (its process killed
    /// meanwhile): when nobody holds the copy lock, nothing should be
    /// frozen. EINVAL (not frozen) is the usual answer.
    fn thaw_leftover(&self, dir: &Path) {
        let Ok(copy) = copy_lock(dir) else { return };
        if aibox_sys::try_lock_exclusive(copy.as_fd()).unwrap_or(false) {
            if let Ok(d) = open_mounted(&dir.join(DATA)) {
                let _ = aibox_sys::thaw_fs(d.as_fd());
            }
        }
    }

    /// For a create: the volume's files, and its lock held shared (it
    /// cannot be removed while the sandbox lives).
    pub(crate) fn hold_volume(&self, id: &str) -> Result<HeldVolume, Error> {
        let dir = self.volume_dir(id)?;
        let lock = open_lock(&dir, false).map_err(|_| not_found(id))?;
        // Held exclusively by a removal (then it is gone), a server
        // unmounting it on the way down, or a copy of a plain volume:
        // the last two are brief.
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        while !aibox_sys::try_lock_shared(lock.as_fd())
            .map_err(io_err(format!("locking volume {id}")))?
        {
            if std::time::Instant::now() > deadline {
                return Err(match self.volume(id) {
                    Ok(m) => Error::Conflict(format!(
                        "volume {} is busy (a snapshot or clone of it is under way)",
                        m.name
                    )),
                    Err(e) => e,
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let meta = self.volume(id)?;
        let data = self.ensure_mounted(&dir, &meta)?;
        if meta.image {
            self.thaw_leftover(&dir);
        }
        Ok(HeldVolume {
            data,
            lock,
            lock_path: dir.join(staged::LOCK),
        })
    }

    /// Remove a volume and its snapshots; refused while a sandbox has it
    /// mounted (or a copy of it is under way).
    pub fn remove_volume(&self, id: &str) -> Result<(), Error> {
        let dir = self.volume_dir(id)?;
        let meta = self.volume(id)?;
        let lock = open_lock(&dir, false).map_err(|_| not_found(id))?;
        let free = aibox_sys::try_lock_exclusive(lock.as_fd())
            .map_err(io_err(format!("locking volume {id}")))?;
        if !free {
            let users = self.volume_users(id);
            return Err(Error::Conflict(if users.is_empty() {
                format!(
                    "volume {} is in use (a sandbox being made with it, or a snapshot or clone of it)",
                    meta.name
                )
            } else {
                format!(
                    "volume {} is mounted by running sandboxes ({}); destroy them first",
                    meta.name,
                    users.join(", ")
                )
            }));
        }
        let data = dir.join(DATA);
        if mounted(&data) {
            if meta.image {
                self.thaw_leftover(&dir);
            }
            aibox_sys::umount2(&data, 0)
                .map_err(io_err(format!("unmounting volume {}", meta.name)))?;
        }
        let trash = self
            .volumes_dir()
            .join(format!(".trash-{id}-{}", random_id()));
        fs::rename(&dir, &trash).map_err(io_err(format!("removing volume {id}")))?;
        // Still locked: `gc_volumes` leaves the trash to us.
        let removed = layer::remove_tree(&trash);
        drop(lock);
        removed.map_err(io_err(format!("removing volume {id}")))
    }

    /// Unmount every volume no sandbox uses (a server going down: nothing
    /// stays mounted that nothing needs). Mounts come back on first use.
    pub fn release_volumes(&self) {
        for meta in self.volumes() {
            let Ok(dir) = self.volume_dir(&meta.id) else {
                continue;
            };
            let Ok(lock) = open_lock(&dir, false) else {
                continue;
            };
            if aibox_sys::try_lock_exclusive(lock.as_fd()).unwrap_or(false) {
                let data = dir.join(DATA);
                if mounted(&data) {
                    let _ = aibox_sys::umount2(&data, 0);
                }
            }
        }
    }

    /// Copy the volume's current files into `dst` (a new directory), the
    /// volume held against removal meanwhile and one copy at a time:
    /// * an image with its filesystem frozen (writers wait; the journal
    ///   is clean on disk), frozen and thawed through one descriptor of
    ///   the volume's own mount, never a path that could name another
    ///   filesystem;
    /// * a plain directory only while no sandbox mounts it (the volume's
    ///   lock held exclusively): a sandbox could otherwise swap a
    ///   directory for a symlink under the copy.
    fn copy_volume(&self, dir: &Path, meta: &VolumeMeta, dst: &Path) -> Result<(), Error> {
        let busy = || {
            Error::Conflict(format!(
                "a snapshot or clone of volume {} is under way",
                meta.name
            ))
        };
        let copy = copy_lock(dir).map_err(io_err("volume copy lock".into()))?;
        if !aibox_sys::try_lock_exclusive(copy.as_fd())
            .map_err(io_err("volume copy lock".into()))?
        {
            return Err(busy());
        }
        let lock = open_lock(dir, false).map_err(|_| not_found(&meta.id))?;
        if !meta.image {
            if !aibox_sys::try_lock_exclusive(lock.as_fd())
                .map_err(io_err(format!("locking volume {}", meta.name)))?
            {
                return Err(Error::Conflict(format!(
                    "volume {} has no enforced quota, and such a volume is copied only while no sandbox mounts it: destroy its sandboxes first",
                    meta.name
                )));
            }
            return copy_tree(&dir.join(DATA), &dst.join(DATA))
                .map_err(io_err(format!("copying volume {}", meta.name)));
        }
        if !aibox_sys::try_lock_shared(lock.as_fd())
            .map_err(io_err(format!("locking volume {}", meta.name)))?
        {
            return Err(not_found(&meta.id));
        }
        let data = self.ensure_mounted(dir, meta)?;
        let fs = open_mounted(&data).map_err(io_err(format!("opening volume {}", meta.name)))?;
        aibox_sys::freeze_fs(fs.as_fd()).map_err(|e| {
            if e.raw_os_error() == Some(libc::EBUSY) {
                busy()
            } else {
                io_err(format!("freezing volume {}", meta.name))(e)
            }
        })?;
        let copied = aibox_sys::copy_sparse(&dir.join(IMAGE), &dst.join(IMAGE));
        let thawed = aibox_sys::thaw_fs(fs.as_fd());
        copied.map_err(io_err(format!("copying volume {}", meta.name)))?;
        thawed.map_err(io_err(format!("thawing volume {}", meta.name)))?;
        Ok(())
    }

    /// A named point-in-time copy of the volume.
    pub fn snapshot_volume(&self, id: &str, name: &str) -> Result<VolumeSnapshotMeta, Error> {
        if !aibox_types::api::valid_volume_name(name) {
            return Err(Error::InvalidSpec(format!(
                "invalid snapshot name {name:?}: use 1-63 letters, digits, '.', '_' or '-'"
            )));
        }
        let dir = self.volume_dir(id)?;
        let meta = self.volume(id)?;
        let snaps = dir.join(SNAPSHOTS);
        crate::sandbox::dirs::ensure_dir(&snaps, 0o700)?;
        if snaps.join(name).exists() {
            return Err(Error::Conflict(format!(
                "volume {} already has a snapshot {name:?}",
                meta.name
            )));
        }
        if self.volume_snapshots(id).len() >= MAX_VOLUME_SNAPSHOTS {
            return Err(Error::Conflict(format!(
                "volume {} has {MAX_VOLUME_SNAPSHOTS} snapshots, the most it keeps: delete some first",
                meta.name
            )));
        }
        let taken = || {
            Error::Conflict(format!(
                "volume {} already has a snapshot {name:?}",
                meta.name
            ))
        };
        staged::write(&snaps, name, taken, |tmp| {
            self.copy_volume(&dir, &meta, tmp)?;
            use std::os::unix::fs::MetadataExt;
            let size_bytes = if meta.image {
                fs::metadata(tmp.join(IMAGE)).map_or(0, |m| m.blocks() * 512)
            } else {
                walk_usage(&tmp.join(DATA))
            };
            let snap = VolumeSnapshotMeta {
                name: name.to_string(),
                created_unix_ms: now_ms(),
                size_bytes,
            };
            staged::write_json(tmp, META, &snap)?;
            Ok(snap)
        })
    }

    /// The volume's snapshots, oldest first.
    pub fn volume_snapshots(&self, id: &str) -> Vec<VolumeSnapshotMeta> {
        let Ok(dir) = self.volume_dir(id) else {
            return vec![];
        };
        let Ok(rd) = fs::read_dir(dir.join(SNAPSHOTS)) else {
            return vec![];
        };
        let mut v: Vec<VolumeSnapshotMeta> = rd
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| serde_json::from_slice(&fs::read(e.path().join(META)).ok()?).ok())
            .collect();
        v.sort_by(|a, b| (a.created_unix_ms, &a.name).cmp(&(b.created_unix_ms, &b.name)));
        v
    }

    fn volume_snapshot_dir(&self, id: &str, name: &str) -> Result<PathBuf, Error> {
        let dir = self.volume_dir(id)?;
        let snap = dir.join(SNAPSHOTS).join(name);
        if !aibox_types::api::valid_volume_name(name) || !snap.join(META).exists() {
            return Err(Error::VolumeNotFound(format!("{id}@{name}")));
        }
        Ok(snap)
    }

    pub fn remove_volume_snapshot(&self, id: &str, name: &str) -> Result<(), Error> {
        let snap = self.volume_snapshot_dir(id, name)?;
        let trash = snap.with_file_name(format!(".trash-{name}-{}", random_id()));
        fs::rename(&snap, &trash).map_err(io_err(format!("removing snapshot {name}")))?;
        layer::remove_tree(&trash).map_err(io_err(format!("removing snapshot {name}")))
    }

    /// A new volume with the files of volume `id` now, or of its snapshot
    /// `snapshot`; same size and owner.
    pub fn clone_volume(
        &self,
        id: &str,
        snapshot: Option<&str>,
        name: &str,
        labels: BTreeMap<String, String>,
        owner: Option<String>,
    ) -> Result<VolumeMeta, Error> {
        let dir = self.volume_dir(id)?;
        let meta = self.volume(id)?;
        let snap = snapshot
            .map(|s| self.volume_snapshot_dir(id, s))
            .transpose()?;
        let new = NewVolume {
            name: name.to_string(),
            size_bytes: meta.size_bytes,
            uid: meta.uid,
            labels,
            owner,
        };
        let from = match snapshot {
            Some(s) => format!("{}@{s}", meta.name),
            None => meta.name.clone(),
        };
        self.make_volume(&new, Some(from), |tmp, image| {
            if image != meta.image {
                return Err(Error::Unsupported(format!(
                    "volume {} was made {} an enforced quota, and this server makes volumes {}: it cannot be cloned here",
                    meta.name,
                    if meta.image { "with" } else { "without" },
                    if image { "with one" } else { "without one" },
                )));
            }
            match &snap {
                Some(s) if image => aibox_sys::copy_sparse(&s.join(IMAGE), &tmp.join(IMAGE))
                    .map(drop)
                    .map_err(io_err(format!("copying snapshot of volume {}", meta.name))),
                Some(s) => {
                    fs::remove_dir(tmp.join(DATA)).map_err(io_err("cloning".into()))?;
                    copy_tree(&s.join(DATA), &tmp.join(DATA))
                        .map_err(io_err(format!("copying snapshot of volume {}", meta.name)))
                }
                None if image => self.copy_volume(&dir, &meta, tmp),
                None => {
                    fs::remove_dir(tmp.join(DATA)).map_err(io_err("cloning".into()))?;
                    self.copy_volume(&dir, &meta, tmp)
                }
            }
        })
    }

    /// Remove what interrupted volume creates, snapshots and removals
    /// left (`.tmp-*` no writer holds, `.trash-*`).
    pub fn gc_volumes(&self) -> Vec<String> {
        let mut dirs = vec![self.volumes_dir()];
        dirs.extend(
            self.volumes()
                .iter()
                .map(|v| self.volumes_dir().join(&v.id).join(SNAPSHOTS)),
        );
        dirs.iter()
            // Never a tree with a filesystem still mounted in it.
            .flat_map(|d| staged::gc(d, |p| mounted(&p.join(DATA))))
            .collect()
    }
}
