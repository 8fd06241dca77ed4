//! OCI images as templates: a content-addressed store of unpacked layers,
//! shared read-only by every sandbox that uses them (overlay lower layers,
//! idmapped per sandbox as root, never copied), and an image record per
//! template name.
//!
//! ```text
//! TEMPLATES/oci/layers/<sha256 hex>/      a layer, unpacked in overlayfs's format
//! TEMPLATES/oci/layers/<sha256 hex>.json  its record (digest, diff_id, sizes)
//! TEMPLATES/oci/images/<key>.json         an image: name, digest, layers, config
//! ```
//!
//! A layer is keyed by the digest of its blob as published (what a pull
//! fetches, so a present layer is never fetched again). Unpacking is where
//! hostile images are stopped: no entry may leave the layer (`..`,
//! absolute paths, and writes through symlinks are refused), device nodes
//! are skipped, set-id bits are dropped on files, directory modes are set
//! last through descriptors that never follow a symlink
//! ([`crate::sandbox::beneath`]), hard links must point inside, and counts and sizes
//! are bounded. Every blob is checked against its digest before it is used.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Hidden images (build cache entries) have names starting with this.
pub const CACHE_PREFIX: &str = ".build/";

/// Most layers an image may have (overlayfs stacks at most ~500, and the
/// mount options must fit a page).
pub const MAX_LAYERS: usize = 128;
/// Most entries in one layer (`AIBOX_MAX_LAYER_ENTRIES` lowers or raises it).
pub const MAX_ENTRIES: u64 = 2_000_000;

fn max_entries() -> u64 {
    std::env::var("AIBOX_MAX_LAYER_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(MAX_ENTRIES)
}
/// Most bytes one layer may unpack to.
pub const MAX_LAYER_BYTES: u64 = 64 << 30;
/// Largest JSON document (manifest, index, config) read.
const MAX_JSON: u64 = 4 << 20;
/// Ids a sandbox maps (0..65536): owners outside become 65534.
const ID_RANGE: u32 = 65536;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{0}")]
    Invalid(String),
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    Digest {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("image limit: {0}")]
    Limit(String),
    #[error("no template named {0:?}")]
    NotFound(String),
    #[error("the registry has no image {0}")]
    ImageNotFound(String),
    #[error("cannot reach the registry: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Denied(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl OciError {
    pub fn code(&self) -> aibox_types::ErrorCode {
        use aibox_types::ErrorCode;
        match self {
            OciError::Invalid(_) | OciError::Digest { .. } | OciError::Limit(_) => {
                ErrorCode::InvalidArgument
            }
            OciError::NotFound(_) => ErrorCode::TemplateNotFound,
            OciError::ImageNotFound(_) => ErrorCode::NotFound,
            OciError::Unreachable(_) => ErrorCode::Unavailable,
            OciError::Denied(_) => ErrorCode::PermissionDenied,
            OciError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                ErrorCode::NotFound
            }
            // Corrupt or truncated input found while reading it.
            OciError::Io { source, .. }
                if matches!(
                    source.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ) =>
            {
                ErrorCode::InvalidArgument
            }
            OciError::Io { .. } => ErrorCode::Internal,
        }
    }
}

/// A read error inside a tar stream: malformed input (a bad header, a
/// truncated or corrupt compressed stream), not a fault of this host.
fn not_tar(what: &'static str) -> impl Fn(io::Error) -> OciError {
    move |e| OciError::Invalid(format!("{what} is not a valid tar stream: {e}"))
}

fn io_at(context: impl Into<String>) -> impl FnOnce(io::Error) -> OciError {
    let context = context.into();
    move |source| OciError::Io { context, source }
}

/// The parts of an image's config a sandbox uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    /// `sha256:...` of the blob as published (compressed).
    pub digest: String,
    /// `sha256:...` of the uncompressed tar.
    pub diff_id: String,
    /// Bytes of the blob.
    pub size: u64,
    /// Bytes and entries once unpacked.
    pub unpacked_bytes: u64,
    pub entries: u64,
    /// Entries dropped (device nodes, sockets), with one example.
    #[serde(default)]
    pub skipped: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMeta {
    /// The template name (`busybox:1`, `localhost:5000/tools:latest`).
    pub name: String,
    /// `sha256:...` of the manifest.
    pub digest: String,
    /// Bottom layer first, as in the manifest.
    pub layers: Vec<LayerMeta>,
    pub config: ImageConfig,
    pub created_ms: u64,
    /// Where it came from (a registry reference, a layout path, an archive).
    pub source: String,
    /// `host`: the layers go on top of the built-in host template (a
    /// promoted snapshot of a sandbox made from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

impl ImageMeta {
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.unpacked_bytes).sum()
    }
}

/// `sha256:<64 hex>` → the hex part.
pub fn digest_hex(d: &str) -> Result<&str, OciError> {
    d.strip_prefix("sha256:")
        .filter(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
        .ok_or_else(|| {
            OciError::Invalid(format!(
                "unsupported or malformed digest {d:?} (sha256 only)"
            ))
        })
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256:<hex>` of what a hasher has seen so far.
fn digest_of(h: &Sha256) -> String {
    format!("sha256:{}", hex(&h.clone().finalize()))
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    count: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

impl<R> Hashing<R> {
    fn new(inner: R) -> Hashing<R> {
        Hashing {
            inner,
            hash: Sha256::new(),
            count: 0,
        }
    }
    fn digest(&self) -> String {
        digest_of(&self.hash)
    }
}

/// Is this a name a template can have? Registry references as people
/// write them: lower-case path components with `._-`, an optional host
/// with port, and a `:tag`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "host"
        && !name.starts_with(['.', '-', '/', ':'])
        && !name.contains("..")
        && !name.contains("//")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b))
}

pub struct Store {
    root: PathBuf,
}

/// A lock on the whole store: imports share it, prune takes it alone (so
/// a layer unpacked for an image not yet recorded is never pruned).
pub struct StoreLock(#[allow(dead_code)] fs::File);

impl Store {
    pub fn new(templates_dir: &Path) -> Store {
        Store {
            root: templates_dir.join("oci"),
        }
    }

    /// Held while an image is added: `prune` waits for it.
    pub fn lock_shared(&self) -> Result<StoreLock, OciError> {
        self.lock(false)
    }

    /// The record of a layer the store has, unpacked.
    pub fn present_layer(&self, digest: &str) -> Option<LayerMeta> {
        let l = self.layer(digest)?;
        self.layer_path(digest).ok()?.is_dir().then_some(l)
    }

    fn lock(&self, exclusive: bool) -> Result<StoreLock, OciError> {
        use std::os::fd::AsFd;
        fs::create_dir_all(&self.root).map_err(io_at("creating the template store"))?;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(".lock"))
            .map_err(io_at("locking the template store"))?;
        loop {
            let got = if exclusive {
                aibox_sys::try_lock_exclusive(f.as_fd())
            } else {
                aibox_sys::try_lock_shared(f.as_fd())
            }
            .map_err(io_at("locking the template store"))?;
            if got {
                return Ok(StoreLock(f));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    fn image_file(&self, name: &str) -> PathBuf {
        self.images_dir()
            .join(format!("{}.json", &sha256_hex(name.as_bytes())[..32]))
    }

    /// The unpacked directory of layer `digest`.
    pub fn layer_path(&self, digest: &str) -> Result<PathBuf, OciError> {
        Ok(self.layers_dir().join(digest_hex(digest)?))
    }

    pub fn layer(&self, digest: &str) -> Option<LayerMeta> {
        let hex = digest_hex(digest).ok()?;
        let text = fs::read(self.layers_dir().join(format!("{hex}.json"))).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// The templates, without the build cache's hidden images.
    pub fn images(&self) -> Vec<ImageMeta> {
        let mut v = self.all_images();
        v.retain(|m| !m.name.starts_with(CACHE_PREFIX));
        v
    }

    /// Every image record, the build cache's included.
    fn all_images(&self) -> Vec<ImageMeta> {
        let mut v: Vec<ImageMeta> = fs::read_dir(self.images_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn get(&self, name: &str) -> Option<ImageMeta> {
        let b = fs::read(self.image_file(name)).ok()?;
        serde_json::from_slice::<ImageMeta>(&b)
            .ok()
            .filter(|m| m.name == name)
    }

    /// The layer directories of `name`, top first (overlay order).
    pub fn lowers(&self, name: &str) -> Result<(ImageMeta, Vec<PathBuf>), OciError> {
        let m = self
            .get(name)
            .ok_or_else(|| OciError::NotFound(name.to_string()))?;
        let mut v = Vec::new();
        for l in m.layers.iter().rev() {
            let p = self.layer_path(&l.digest)?;
            if !p.is_dir() {
                return Err(OciError::Invalid(format!(
                    "template {name}: layer {} is missing from the store (pull or import it again)",
                    l.digest
                )));
            }
            v.push(p);
        }
        if v.is_empty() && m.base.is_none() {
            // An image without layers: one empty lower.
            let empty = self.root.join("empty");
            fs::create_dir_all(&empty).map_err(io_at("creating the empty layer"))?;
            v.push(empty);
        }
        Ok((m, v))
    }

    /// Write an image record (atomically).
    pub fn save(&self, m: &ImageMeta) -> Result<(), OciError> {
        fs::create_dir_all(self.images_dir()).map_err(io_at("creating the image store"))?;
        let path = self.image_file(&m.name);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let body = serde_json::to_vec_pretty(m).map_err(|e| OciError::Invalid(e.to_string()))?;
        fs::write(&tmp, body).map_err(io_at("writing the image record"))?;
        fs::rename(&tmp, &path).map_err(io_at("writing the image record"))
    }

    /// Forget a template (its layers stay until `prune`).
    pub fn remove(&self, name: &str) -> Result<(), OciError> {
        match fs::remove_file(self.image_file(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(OciError::NotFound(name.to_string()))
            }
            Err(e) => Err(io_at("removing the image record")(e)),
        }
    }

    /// Remove layers no template (nor the build cache) uses; with
    /// `build_cache`, forget the build cache first. Returns (layers, bytes)
    /// removed. Layers of running sandboxes stay usable: their mounts
    /// hold them.
    pub fn prune(&self, build_cache: bool) -> Result<(u64, u64), OciError> {
        let _lock = self.lock(true)?;
        let mut images = self.all_images();
        if build_cache {
            for m in images.iter().filter(|m| m.name.starts_with(CACHE_PREFIX)) {
                let _ = fs::remove_file(self.image_file(&m.name));
            }
            images.retain(|m| !m.name.starts_with(CACHE_PREFIX));
        }
        let used: std::collections::HashSet<String> = images
            .iter()
            .flat_map(|m| m.layers.iter())
            .filter_map(|l| digest_hex(&l.digest).ok().map(str::to_string))
            .collect();
        let (mut n, mut bytes) = (0, 0);
        let mut entries: Vec<fs::DirEntry> = fs::read_dir(self.layers_dir())
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        // Layer directories first: their records (read for the sizes) go after.
        entries.sort_by_key(|e| !e.path().is_dir());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let hex = name.strip_suffix(".json").unwrap_or(&name).to_string();
            let stale_tmp = name.starts_with(".tmp-");
            if used.contains(&hex) && !stale_tmp {
                continue;
            }
            if e.path().is_dir() {
                bytes += self
                    .layer(&format!("sha256:{hex}"))
                    .map_or(0, |l| l.unpacked_bytes);
                crate::image::layer::remove_tree(&e.path()).map_err(io_at("removing a layer"))?;
                n += 1;
            } else {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok((n, bytes))
    }

    /// Disk use of the store: (layers, bytes unpacked).
    pub fn usage(&self) -> (u64, u64) {
        let mut n = 0;
        let mut bytes = 0;
        for e in fs::read_dir(self.layers_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(hex) = name.strip_suffix(".json") {
                if let Some(l) = self.layer(&format!("sha256:{hex}")) {
                    n += 1;
                    bytes += l.unpacked_bytes;
                }
            }
        }
        (n, bytes)
    }

    /// Unpack one layer blob (gzip, zstd or plain tar, told apart by their
    /// magic numbers) unless the store has it; the blob must hash to
    /// `digest`. `progress` gets the bytes read so far.
    pub fn add_layer(
        &self,
        digest: &str,
        blob: &mut dyn Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<LayerMeta, OciError> {
        let hex = digest_hex(digest)?.to_string();
        if let Some(l) = self.layer(digest) {
            if self.layers_dir().join(&hex).is_dir() {
                return Ok(l);
            }
        }
        fs::create_dir_all(self.layers_dir()).map_err(io_at("creating the layer store"))?;
        let tmp = self
            .layers_dir()
            .join(format!(".tmp-{hex}-{}", crate::random_id()));
        fs::create_dir(&tmp).map_err(io_at("creating a layer directory"))?;
        let result = (|| {
            let mut hashed = Hashing::new(Progress {
                inner: blob,
                progress,
                seen: 0,
            });
            let mut stats = {
                let mut peek = io::BufReader::with_capacity(64 * 1024, &mut hashed);
                let magic = {
                    use io::BufRead;
                    peek.fill_buf()
                        .map_err(io_at("reading the layer"))?
                        .to_vec()
                };
                let mut tar_hash = Hashing::new(decompressor(&magic, peek)?);
                let stats = unpack(&mut tar_hash, &tmp)?;
                // Whatever follows the tar's end (padding) belongs to the blob.
                io::copy(&mut tar_hash, &mut io::sink()).map_err(not_tar("a layer"))?;
                Stats {
                    diff_id: tar_hash.digest(),
                    ..stats
                }
            };
            io::copy(&mut hashed, &mut io::sink()).map_err(io_at("reading the layer"))?;
            let actual = hashed.digest();
            if actual != digest {
                return Err(OciError::Digest {
                    what: "a layer".into(),
                    expected: digest.to_string(),
                    actual,
                });
            }
            stats.size = hashed.count;
            Ok(stats)
        })();
        let stats = match result {
            Ok(s) => s,
            Err(e) => {
                let _ = crate::image::layer::remove_tree(&tmp);
                return Err(e);
            }
        };
        let meta = LayerMeta {
            digest: digest.to_string(),
            diff_id: stats.diff_id,
            size: stats.size,
            unpacked_bytes: stats.bytes,
            entries: stats.entries,
            skipped: stats.skipped,
        };
        let dst = self.layers_dir().join(&hex);
        if dst.exists() {
            // Someone else unpacked it meanwhile: theirs is as good.
            let _ = crate::image::layer::remove_tree(&tmp);
        } else {
            // Read-only from here on: the root of a lower layer.
            fs::rename(&tmp, &dst).map_err(io_at("storing a layer"))?;
        }
        let record = serde_json::to_vec(&meta).map_err(|e| OciError::Invalid(e.to_string()))?;
        let rec_tmp = self
            .layers_dir()
            .join(format!(".tmp-{hex}-{}.json", crate::random_id()));
        fs::write(&rec_tmp, record).map_err(io_at("writing a layer record"))?;
        fs::rename(&rec_tmp, self.layers_dir().join(format!("{hex}.json")))
            .map_err(io_at("writing a layer record"))?;
        Ok(meta)
    }
}

struct Progress<'a> {
    inner: &'a mut dyn Read,
    progress: &'a mut dyn FnMut(u64),
    seen: u64,
}

impl Read for Progress<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen += n as u64;
        (self.progress)(self.seen);
        Ok(n)
    }
}

fn decompressor<'a, R: io::BufRead + 'a>(
    magic: &[u8],
    r: R,
) -> Result<Box<dyn Read + 'a>, OciError> {
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r).map_err(io_at("starting zstd"))?)
    } else {
        Box::new(r)
    })
}

#[derive(Debug, Default)]
struct Stats {
    diff_id: String,
    size: u64,
    bytes: u64,
    entries: u64,
    skipped: u64,
}

/// The path of a tar entry inside the layer, refused when it would leave
/// it (absolute, `..`) or is empty.
fn entry_path(raw: &[u8]) -> Result<PathBuf, OciError> {
    let text = std::str::from_utf8(raw).map_err(|_| {
        OciError::Invalid(format!(
            "layer entry {:?} is not UTF-8",
            String::from_utf8_lossy(raw)
        ))
    })?;
    let mut out = PathBuf::new();
    for c in Path::new(text).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => {
                return Err(OciError::Invalid(format!(
                    "layer entry {text:?} points outside the layer"
                )))
            }
        }
    }
    Ok(out)
}

/// `target` (a relative symlink's text) seen from directory `base`, both
/// inside the archive; refused when it climbs out.
fn lexical_join(base: &Path, target: &[u8]) -> Result<PathBuf, OciError> {
    let target = Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(target));
    let mut out: Vec<std::ffi::OsString> = if target.is_absolute() {
        Vec::new()
    } else {
        base.components()
            .map(|c| c.as_os_str().to_os_string())
            .collect()
    };
    for c in target.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir if out.pop().is_none() => {
                return Err(OciError::Invalid(format!(
                    "link to {} leaves the archive",
                    target.display()
                )));
            }
            _ => {}
        }
    }
    Ok(out.iter().collect())
}

/// Make sure no directory on the way to `rel` under `root` is a symlink
/// (an earlier entry could have planted one to redirect a write).
fn check_parents(root: &Path, rel: &Path) -> Result<(), OciError> {
    let mut p = root.to_path_buf();
    let parents: Vec<_> = rel
        .parent()
        .map(|x| x.components().collect())
        .unwrap_or_default();
    for c in parents {
        p.push(c);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(OciError::Invalid(format!(
                    "layer entry {} would be written through the symlink {}",
                    rel.display(),
                    p.strip_prefix(root).unwrap_or(&p).display()
                )))
            }
            Ok(m) if !m.is_dir() => {
                return Err(OciError::Invalid(format!(
                    "layer entry {} is under a file",
                    rel.display()
                )))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&p).map_err(io_at(format!("creating {}", p.display())))?;
            }
            Err(e) => return Err(io_at(format!("checking {}", p.display()))(e)),
        }
    }
    Ok(())
}

/// Remove whatever is at `p` (an entry replaces an earlier one).
fn clear(p: &Path) -> Result<(), OciError> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => fs::remove_file(p).map_err(io_at(format!("replacing {}", p.display()))),
        Err(_) => Ok(()),
    }
}

/// Unpack a tar stream into `dir` in overlayfs's format: `.wh.NAME`
/// becomes a whiteout (char 0:0) and `.wh..wh..opq` marks its directory
/// opaque.
fn unpack(r: &mut dyn Read, dir: &Path) -> Result<Stats, OciError> {
    let root_owned = aibox_sys::geteuid() == 0;
    let mut ar = tar::Archive::new(r);
    let mut stats = Stats::default();
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    let max = max_entries();
    for entry in ar.entries().map_err(not_tar("a layer"))? {
        let mut e = entry.map_err(not_tar("a layer"))?;
        stats.entries += 1;
        if stats.entries > max {
            return Err(OciError::Limit(format!(
                "a layer has more than {max} entries (a file-count bomb?); AIBOX_MAX_LAYER_ENTRIES sets the limit"
            )));
        }
        let raw = e.path_bytes().into_owned();
        let rel = entry_path(&raw)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        check_parents(dir, &rel)?;
        let dst = dir.join(&rel);
        // Whiteouts.
        if name == ".wh..wh..opq" {
            let parent = dst.parent().unwrap_or(dir);
            aibox_sys::set_xattr(parent, crate::image::layer::OPAQUE_XATTR, b"y")
                .map_err(io_at(format!("marking {} opaque", parent.display())))?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(OciError::Invalid(format!("bad whiteout {}", rel.display())));
            }
            let target = dst.with_file_name(hidden);
            if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                crate::image::layer::remove_tree(&target).map_err(io_at("whiting out"))?;
            } else {
                clear(&target)?;
            }
            aibox_sys::mknod_whiteout(&target)
                .map_err(io_at(format!("creating the whiteout {}", target.display())))?;
            continue;
        }
        let h = e.header();
        let kind = h.entry_type();
        let mode = h.mode().unwrap_or(0o644);
        let (uid, gid) = (
            h.uid().unwrap_or(0).min(u64::from(u32::MAX)) as u32,
            h.gid().unwrap_or(0).min(u64::from(u32::MAX)) as u32,
        );
        // Set-id bits never stay on a file: in the store (root-owned on
        // the host) they would be a set-uid program for whoever reaches it
        // (the review's H3), and sandboxes run with no_new_privs, where
        // they mean nothing. A directory keeps set-gid (group inheritance).
        let mode = if kind == tar::EntryType::Directory {
            mode & 0o3777
        } else {
            mode & 0o1777
        };
        let (uid, gid) = (uid.min(ID_RANGE - 2), gid.min(ID_RANGE - 2));
        match kind {
            tar::EntryType::Directory => {
                if fs::symlink_metadata(&dst).is_ok_and(|m| !m.is_dir()) {
                    clear(&dst)?;
                }
                if !dst.exists() {
                    fs::create_dir(&dst).map_err(io_at(format!("creating {}", dst.display())))?;
                }
                dir_modes.push((rel.clone(), mode));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                clear(&dst)?;
                let size = e.size();
                stats.bytes += size;
                if stats.bytes > MAX_LAYER_BYTES {
                    return Err(OciError::Limit(format!(
                        "a layer unpacks to more than {} GiB",
                        MAX_LAYER_BYTES >> 30
                    )));
                }
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&dst)
                    .map_err(io_at(format!("creating {}", dst.display())))?;
                io::copy(&mut (&mut e).take(size), &mut f)
                    .map_err(io_at(format!("writing {}", dst.display())))?;
                f.flush().map_err(io_at("writing"))?;
                fs::set_permissions(&dst, fs::Permissions::from_mode(mode))
                    .map_err(io_at(format!("chmod {}", dst.display())))?;
            }
            tar::EntryType::Symlink => {
                clear(&dst)?;
                let target = e.link_name_bytes().ok_or_else(|| {
                    OciError::Invalid(format!("symlink {} without a target", rel.display()))
                })?;
                let target = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&target);
                std::os::unix::fs::symlink(target, &dst)
                    .map_err(io_at(format!("creating {}", dst.display())))?;
            }
            tar::EntryType::Link => {
                let target = e.link_name_bytes().ok_or_else(|| {
                    OciError::Invalid(format!("hard link {} without a target", rel.display()))
                })?;
                let trel = entry_path(&target)?;
                check_parents(dir, &trel)?;
                let src = dir.join(&trel);
                match fs::symlink_metadata(&src) {
                    Ok(m) if m.is_file() => {}
                    _ => {
                        return Err(OciError::Invalid(format!(
                            "hard link {} points to {}, which is no regular file of this layer",
                            rel.display(),
                            trel.display()
                        )))
                    }
                }
                clear(&dst)?;
                fs::hard_link(&src, &dst).map_err(io_at(format!("linking {}", dst.display())))?;
                continue;
            }
            tar::EntryType::Fifo => {
                clear(&dst)?;
                aibox_sys::mkfifo(&dst, mode & 0o777)
                    .map_err(io_at(format!("creating {}", dst.display())))?;
            }
            // Devices (and anything else) never enter a sandbox's tree.
            _ => {
                stats.skipped += 1;
                continue;
            }
        }
        if root_owned {
            let _ = std::os::unix::fs::lchown(&dst, Some(uid), Some(gid));
        }
        if let Ok(Some(xattrs)) = e.pax_extensions() {
            for x in xattrs.flatten() {
                if let (Ok(k), v) = (x.key(), x.value_bytes()) {
                    if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                        // Only user.* (security.* / trusted.* are the host's).
                        if name.starts_with("user.") && !name.starts_with("user.overlay.") {
                            let _ = aibox_sys::set_xattr(&dst, name.as_bytes(), v);
                        }
                    }
                }
            }
        }
    }
    // Directory modes last: a read-only directory would refuse its
    // entries. Through descriptors opened beneath the layer's root: a
    // later entry may have replaced the directory with a symlink (the
    // review's H1), which is skipped, never followed.
    let beneath = |e: crate::sandbox::beneath::BeneathError| OciError::Io {
        context: "setting directory modes in a layer".into(),
        source: io::Error::other(e.to_string()),
    };
    let tree = crate::sandbox::beneath::Tree::open(dir).map_err(beneath)?;
    for (d, mode) in dir_modes.into_iter().rev() {
        // As before: a mode that cannot be set (rootless, an odd order of
        // entries) leaves the directory as it is.
        if let Err(e) = tree.set_dir_meta(&d, mode & 0o7777, None) {
            tracing::debug!(error = %e, "a layer directory's mode");
        }
    }
    Ok(stats)
}

// ---- sources: OCI layouts and docker/podman archives

#[derive(Debug, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    annotations: std::collections::HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Debug, Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct ConfigFile {
    config: Option<RawConfig>,
    rootfs: Option<RootFs>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// The config's `rootfs.diff_ids` must name the layers as unpacked (when
/// it names any): the digests of their uncompressed tars, in order.
pub fn check_diff_ids(config: &[u8], layers: &[LayerMeta]) -> Result<(), OciError> {
    let c: ConfigFile = serde_json::from_slice(config)
        .map_err(|e| OciError::Invalid(format!("image config: {e}")))?;
    let ids = c.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    if ids.is_empty() {
        return Ok(());
    }
    if ids.len() != layers.len() {
        return Err(OciError::Invalid(format!(
            "the image config lists {} layers, the manifest {}",
            ids.len(),
            layers.len()
        )));
    }
    for (want, l) in ids.iter().zip(layers) {
        if *want != l.diff_id {
            return Err(OciError::Digest {
                what: format!("the uncompressed layer {}", l.digest),
                expected: want.clone(),
                actual: l.diff_id.clone(),
            });
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawConfig {
    #[serde(rename = "Env")]
    env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir")]
    workdir: Option<String>,
    #[serde(rename = "User")]
    user: Option<String>,
    #[serde(rename = "Entrypoint")]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd")]
    cmd: Option<Vec<String>>,
}

pub fn parse_config(b: &[u8]) -> Result<ImageConfig, OciError> {
    let c: ConfigFile =
        serde_json::from_slice(b).map_err(|e| OciError::Invalid(format!("image config: {e}")))?;
    let c = c.config.unwrap_or_default();
    Ok(ImageConfig {
        env: c.env.unwrap_or_default(),
        workdir: c.workdir.filter(|w| !w.is_empty()),
        user: c.user.filter(|u| !u.is_empty()),
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
    })
}

/// This host's architecture as OCI names it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Read a blob of an OCI layout, checked against its digest.
fn layout_blob(dir: &Path, digest: &str, max: u64) -> Result<Vec<u8>, OciError> {
    let hex = digest_hex(digest)?;
    let p = dir.join("blobs/sha256").join(hex);
    let f = fs::File::open(&p).map_err(io_at(format!("opening {}", p.display())))?;
    let mut b = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut b)
        .map_err(io_at(format!("reading {}", p.display())))?;
    if b.len() as u64 > max {
        return Err(OciError::Limit(format!(
            "{digest} is larger than {max} bytes"
        )));
    }
    let actual = format!("sha256:{}", sha256_hex(&b));
    if actual != digest {
        return Err(OciError::Digest {
            what: format!("blob {}", p.display()),
            expected: digest.into(),
            actual,
        });
    }
    Ok(b)
}

/// Choose the manifest: by its ref annotation when `tag` is given, else
/// the one for this host's platform, else the only one.
fn pick<'a>(ds: &'a [Descriptor], tag: Option<&str>) -> Result<&'a Descriptor, OciError> {
    if let Some(t) = tag {
        return ds
            .iter()
            .find(|d| {
                d.annotations
                    .get("org.opencontainers.image.ref.name")
                    .map(String::as_str)
                    == Some(t)
            })
            .ok_or_else(|| OciError::NotFound(format!("tag {t} in the layout")));
    }
    if let Some(d) = ds.iter().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == host_arch())
    }) {
        return Ok(d);
    }
    match ds {
        [one] => Ok(one),
        [] => Err(OciError::Invalid(
            "the image index lists no manifest".into(),
        )),
        _ => Err(OciError::Invalid(format!(
            "the image index has {} manifests and none for linux/{}: name one with DIR:TAG",
            ds.len(),
            host_arch()
        ))),
    }
}

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

impl Store {
    /// Import an image from an OCI layout directory as template `name`.
    pub fn import_layout(
        &self,
        dir: &Path,
        tag: Option<&str>,
        name: &str,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<ImageMeta, OciError> {
        if !valid_name(name) {
            return Err(OciError::Invalid(format!(
                "{name:?} is not a valid template name"
            )));
        }
        let _lock = self.lock(false)?;
        let index_text = fs::read(dir.join("index.json")).map_err(io_at(format!(
            "{} is no OCI layout (index.json)",
            dir.display()
        )))?;
        let mut index: Index = serde_json::from_slice(&index_text)
            .map_err(|e| OciError::Invalid(format!("index.json: {e}")))?;
        let mut tag = tag;
        // Nested indexes (multi-platform images).
        let manifest_desc = loop {
            let d = pick(&index.manifests, tag)?;
            tag = None;
            if INDEX_TYPES.contains(&d.media_type.as_str()) {
                index = serde_json::from_slice(&layout_blob(dir, &d.digest, MAX_JSON)?)
                    .map_err(|e| OciError::Invalid(format!("image index: {e}")))?;
                continue;
            }
            break (d.digest.clone(), d.size);
        };
        let manifest_bytes = layout_blob(dir, &manifest_desc.0, MAX_JSON)?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| OciError::Invalid(format!("manifest: {e}")))?;
        if manifest.layers.len() > MAX_LAYERS {
            return Err(OciError::Limit(format!(
                "the image has {} layers; at most {MAX_LAYERS}",
                manifest.layers.len()
            )));
        }
        let config_bytes = layout_blob(dir, &manifest.config.digest, MAX_JSON)?;
        let config = parse_config(&config_bytes)?;
        let mut layers = Vec::new();
        let total = manifest.layers.len();
        for (i, l) in manifest.layers.iter().enumerate() {
            let hex = digest_hex(&l.digest)?;
            let p = dir.join("blobs/sha256").join(hex);
            let mut f = fs::File::open(&p).map_err(io_at(format!("opening {}", p.display())))?;
            let label = format!("layer {}/{total} {}", i + 1, &hex[..12]);
            let size = l.size;
            layers.push(self.add_layer(&l.digest, &mut f, &mut |n| progress(&label, n, size))?);
        }
        check_diff_ids(&config_bytes, &layers)?;
        let meta = ImageMeta {
            name: name.to_string(),
            digest: manifest_desc.0,
            layers,
            config,
            created_ms: crate::now_ms(),
            source: dir.display().to_string(),
            base: None,
        };
        self.save(&meta)?;
        Ok(meta)
    }

    /// Import a `docker save` / `podman save` archive (or an OCI layout
    /// packed as a tar). `name` defaults to the archive's first tag.
    pub fn import_archive(
        &self,
        archive: &Path,
        name: Option<&str>,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<ImageMeta, OciError> {
        // Unpacked to a scratch directory first: its members are read in
        // whatever order the manifest names them.
        let scratch = self.root.join(format!(".import-{}", crate::random_id()));
        fs::create_dir_all(&scratch).map_err(io_at("creating an import directory"))?;
        let r = (|| {
            let f =
                fs::File::open(archive).map_err(io_at(format!("opening {}", archive.display())))?;
            extract_plain(f, &scratch)?;
            if scratch.join("index.json").exists() && scratch.join("oci-layout").exists() {
                let tag = name.and_then(|n| n.rsplit_once(':').map(|(_, t)| t.to_string()));
                let name =
                    name.ok_or_else(|| OciError::Invalid("name the template: --name NAME".into()))?;
                return self
                    .import_layout(&scratch, None, name, progress)
                    .or_else(|e| match tag {
                        Some(t) => self.import_layout(&scratch, Some(&t), name, progress),
                        None => Err(e),
                    });
            }
            self.import_docker(&scratch, name, archive, progress)
        })();
        let _ = crate::image::layer::remove_tree(&scratch);
        r
    }

    fn import_docker(
        &self,
        dir: &Path,
        name: Option<&str>,
        archive: &Path,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<ImageMeta, OciError> {
        #[derive(Deserialize)]
        struct Entry {
            #[serde(rename = "Config")]
            config: String,
            #[serde(rename = "RepoTags", default)]
            repo_tags: Option<Vec<String>>,
            #[serde(rename = "Layers")]
            layers: Vec<String>,
        }
        let text = fs::read(dir.join("manifest.json")).map_err(|_| {
            OciError::Invalid(format!(
                "{} is neither a docker/podman archive (manifest.json) nor an OCI layout (index.json, oci-layout)",
                archive.display()
            ))
        })?;
        let entries: Vec<Entry> = serde_json::from_slice(&text)
            .map_err(|e| OciError::Invalid(format!("manifest.json: {e}")))?;
        let e = match name {
            Some(n) => entries
                .iter()
                .find(|e| e.repo_tags.iter().flatten().any(|t| t == n))
                .or(entries.first()),
            None => entries.first(),
        }
        .ok_or_else(|| OciError::Invalid("the archive holds no image".into()))?;
        let name = match name {
            Some(n) => n.to_string(),
            None => e
                .repo_tags
                .iter()
                .flatten()
                .next()
                .cloned()
                .ok_or_else(|| {
                    OciError::Invalid("the archive's image has no tag: name it with --name".into())
                })?,
        };
        if !valid_name(&name) {
            return Err(OciError::Invalid(format!(
                "{name:?} is not a valid template name"
            )));
        }
        let _lock = self.lock(false)?;
        if e.layers.len() > MAX_LAYERS {
            return Err(OciError::Limit(format!(
                "the image has {} layers; at most {MAX_LAYERS}",
                e.layers.len()
            )));
        }
        let member =
            |m: &str| -> Result<PathBuf, OciError> { Ok(dir.join(entry_path(m.as_bytes())?)) };
        let config_bytes =
            fs::read(member(&e.config)?).map_err(io_at("reading the image config"))?;
        let config = parse_config(&config_bytes)?;
        let mut layers = Vec::new();
        let total = e.layers.len();
        for (i, l) in e.layers.iter().enumerate() {
            let p = member(l)?;
            // Archives name members by path; their digest is computed here.
            let digest = {
                let mut f =
                    fs::File::open(&p).map_err(io_at(format!("opening {}", p.display())))?;
                let mut h = Hashing::new(&mut f);
                io::copy(&mut h, &mut io::sink()).map_err(io_at("hashing a layer"))?;
                h.digest()
            };
            let size = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            let mut f = fs::File::open(&p).map_err(io_at(format!("opening {}", p.display())))?;
            let label = format!("layer {}/{total} {}", i + 1, &digest[7..19]);
            layers.push(self.add_layer(&digest, &mut f, &mut |n| progress(&label, n, size))?);
        }
        check_diff_ids(&config_bytes, &layers)?;
        let meta = ImageMeta {
            name,
            digest: format!("sha256:{}", sha256_hex(&config_bytes)),
            layers,
            config,
            created_ms: crate::now_ms(),
            source: archive.display().to_string(),
            base: None,
        };
        self.save(&meta)?;
        Ok(meta)
    }

    /// Write template `name` as an OCI layout in `dir` (gzip layers), so
    /// it can be imported on another machine.
    pub fn export_layout(&self, name: &str, dir: &Path) -> Result<String, OciError> {
        let (meta, _) = self.lowers(name)?;
        if let Some(base) = &meta.base {
            return Err(OciError::Invalid(format!(
                "template {name} is built on the {base} template, which is this host's own and cannot be exported"
            )));
        }
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(io_at(format!("creating {}", blobs.display())))?;
        let write_blob = |data: &[u8]| -> Result<(String, u64), OciError> {
            let hex = sha256_hex(data);
            fs::write(blobs.join(&hex), data).map_err(io_at("writing a blob"))?;
            Ok((format!("sha256:{hex}"), data.len() as u64))
        };
        let mut layer_descs = Vec::new();
        let mut diff_ids = Vec::new();
        for l in &meta.layers {
            let src = self.layer_path(&l.digest)?;
            let tmp = blobs.join(format!(".tmp-{}", crate::random_id()));
            let (digest, size, diff_id) = {
                let f = fs::File::create(&tmp).map_err(io_at("writing a layer"))?;
                let mut hashed_out = HashingWriter::new(f);
                let mut gz =
                    flate2::write::GzEncoder::new(&mut hashed_out, flate2::Compression::fast());
                let diff = {
                    let mut tar_hash = HashingWriter::new(&mut gz);
                    pack(&src, &mut tar_hash)?;
                    tar_hash.digest()
                };
                gz.finish().map_err(io_at("compressing a layer"))?;
                (hashed_out.digest(), hashed_out.count, diff)
            };
            fs::rename(&tmp, blobs.join(&digest[7..])).map_err(io_at("writing a layer"))?;
            layer_descs.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest, "size": size}));
            diff_ids.push(diff_id);
        }
        let c = &meta.config;
        let mut cfg = serde_json::json!({"Env": c.env, "Entrypoint": c.entrypoint, "Cmd": c.cmd});
        if let Some(w) = &c.workdir {
            cfg["WorkingDir"] = serde_json::json!(w);
        }
        if let Some(u) = &c.user {
            cfg["User"] = serde_json::json!(u);
        }
        let config = serde_json::json!({
            "architecture": host_arch(), "os": "linux", "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": diff_ids}});
        let (config_digest, config_size) = write_blob(config.to_string().as_bytes())?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": layer_descs});
        let (m_digest, m_size) = write_blob(manifest.to_string().as_bytes())?;
        let tag = name.rsplit_once(':').map_or("latest", |(_, t)| t);
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m_digest, "size": m_size,
            "annotations": {"org.opencontainers.image.ref.name": tag}}]});
        fs::write(dir.join("index.json"), index.to_string())
            .map_err(io_at("writing index.json"))?;
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
            .map_err(io_at("writing oci-layout"))?;
        Ok(m_digest)
    }
}

impl Store {
    /// Add a layer made from a directory tree already in overlayfs's
    /// format (a snapshot's): packed to a tar, then unpacked like any
    /// layer, so it gets the same checks.
    pub fn add_tree(&self, tree: &Path) -> Result<LayerMeta, OciError> {
        fs::create_dir_all(&self.root).map_err(io_at("creating the template store"))?;
        let tmp = self.root.join(format!(".pack-{}.tar", crate::random_id()));
        let r = (|| {
            let digest = {
                let f = fs::File::create(&tmp).map_err(io_at("writing a layer"))?;
                let mut w = HashingWriter::new(io::BufWriter::new(f));
                pack(tree, &mut w)?;
                w.flush().map_err(io_at("writing a layer"))?;
                w.digest()
            };
            let mut f = fs::File::open(&tmp).map_err(io_at("reading a layer"))?;
            self.add_layer(&digest, &mut f, &mut |_| {})
        })();
        let _ = fs::remove_file(&tmp);
        r
    }
}

struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hash: Sha256::new(),
            count: 0,
        }
    }
    fn digest(&self) -> String {
        digest_of(&self.hash)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A layer directory as a tar, whiteouts and opaque markers turned back
/// into `.wh.` entries.
fn pack(src: &Path, out: &mut dyn Write) -> Result<(), OciError> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    fn walk(b: &mut tar::Builder<&mut dyn Write>, root: &Path, dir: &Path) -> Result<(), OciError> {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .map_err(io_at(format!("reading {}", dir.display())))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
            let md = fs::symlink_metadata(&p).map_err(io_at(format!("reading {}", p.display())))?;
            use std::os::unix::fs::FileTypeExt;
            if md.file_type().is_char_device() && md.rdev() == 0 {
                let wh = rel.with_file_name(format!(".wh.{}", e.file_name().to_string_lossy()));
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(0);
                h.set_mode(0o600);
                b.append_data(&mut h, &wh, io::empty())
                    .map_err(io_at("packing"))?;
                continue;
            }
            let ft = md.file_type();
            if ft.is_char_device() || ft.is_block_device() || ft.is_socket() || ft.is_fifo() {
                // Unpacking skips device nodes anyway; sockets and fifos
                // mean nothing in a template.
                continue;
            }
            b.append_path_with_name(&p, &rel)
                .map_err(io_at(format!("packing {}", p.display())))?;
            if md.is_dir() {
                if aibox_sys::get_xattr(&p, crate::image::layer::OPAQUE_XATTR)
                    .ok()
                    .flatten()
                    .is_some()
                {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(0);
                    h.set_mode(0o600);
                    b.append_data(&mut h, rel.join(".wh..wh..opq"), io::empty())
                        .map_err(io_at("packing"))?;
                }
                walk(b, root, &p)?;
            }
        }
        Ok(())
    }
    walk(&mut b, src, src)?;
    b.finish().map_err(io_at("packing"))
}

/// Extract a tar of plain files and directories (an image archive), with
/// the same refusals as layers but no overlay semantics.
fn extract_plain(r: impl Read, dir: &Path) -> Result<(), OciError> {
    let mut ar = tar::Archive::new(r);
    let mut n = 0u64;
    for entry in ar.entries().map_err(not_tar("the archive"))? {
        let mut e = entry.map_err(not_tar("the archive"))?;
        n += 1;
        if n > 100_000 {
            return Err(OciError::Limit(
                "the archive has more than 100000 members".into(),
            ));
        }
        let rel = entry_path(&e.path_bytes())?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        check_parents(dir, &rel)?;
        let dst = dir.join(&rel);
        match e.header().entry_type() {
            tar::EntryType::Directory => {
                fs::create_dir_all(&dst).map_err(io_at(format!("creating {}", dst.display())))?
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                clear(&dst)?;
                let mut f =
                    fs::File::create(&dst).map_err(io_at(format!("creating {}", dst.display())))?;
                io::copy(&mut e, &mut f).map_err(io_at(format!("writing {}", dst.display())))?;
            }
            // docker save links identical layers; a copy is as good.
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = e
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let trel = if e.header().entry_type() == tar::EntryType::Link {
                    entry_path(&target)?
                } else {
                    let base = rel.parent().map(Path::to_path_buf).unwrap_or_default();
                    lexical_join(&base, &target)?
                };
                check_parents(dir, &trel)?;
                let src = dir.join(&trel);
                if src.is_file() {
                    fs::copy(&src, &dst).map_err(io_at(format!("copying {}", src.display())))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("aibox-oci-{name}-{}", crate::random_id()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// A tar from (path, kind) entries: kind "d" dir, "f:TEXT" file,
    /// "l:TARGET" symlink, "h:TARGET" hard link, "c" char device.
    pub(crate) fn tar_of(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o755);
            h.set_uid(0);
            h.set_gid(0);
            let (t, rest) = kind.split_once(':').unwrap_or((kind, ""));
            // Raw names, so hostile paths reach the unpacker as written.
            let name = path.as_bytes();
            {
                let gnu = h.as_gnu_mut().unwrap();
                gnu.name[..name.len()].copy_from_slice(name);
            }
            match t {
                "d" => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_cksum();
                    b.append(&h, io::empty()).unwrap();
                }
                "f" | "s" => {
                    h.set_entry_type(tar::EntryType::Regular);
                    if t == "s" {
                        h.set_mode(0o4755);
                        h.set_uid(100_000);
                    }
                    h.set_size(rest.len() as u64);
                    h.set_cksum();
                    b.append(&h, rest.as_bytes()).unwrap();
                }
                "l" | "h" => {
                    h.set_entry_type(if t == "l" {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    });
                    h.set_size(0);
                    {
                        let gnu = h.as_gnu_mut().unwrap();
                        gnu.linkname[..rest.len()].copy_from_slice(rest.as_bytes());
                    }
                    h.set_cksum();
                    b.append(&h, io::empty()).unwrap();
                }
                "c" => {
                    h.set_entry_type(tar::EntryType::Char);
                    h.set_size(0);
                    h.set_device_major(1).unwrap();
                    h.set_device_minor(3).unwrap();
                    h.set_cksum();
                    b.append(&h, io::empty()).unwrap();
                }
                _ => unreachable!(),
            }
        }
        b.into_inner().unwrap()
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    /// An OCI layout with these layer blobs (bottom first) and config.
    pub(crate) fn layout(dir: &Path, layers: &[Vec<u8>], config: serde_json::Value) {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        let put = |b: &[u8]| {
            let h = sha256_hex(b);
            fs::write(blobs.join(&h), b).unwrap();
            (format!("sha256:{h}"), b.len())
        };
        let ls: Vec<_> = layers
            .iter()
            .map(|l| {
                let (d, n) = put(l);
                serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n})
            })
            .collect();
        let (cd, cn) = put(config.to_string().as_bytes());
        let m = serde_json::json!({"schemaVersion": 2, "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn}, "layers": ls});
        let (md, mn) = put(m.to_string().as_bytes());
        let idx = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn, "annotations": {"org.opencontainers.image.ref.name": "1"}}]});
        fs::write(dir.join("index.json"), idx.to_string()).unwrap();
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    }

    #[test]
    fn layers_unpack_in_overlay_format_with_whiteouts() {
        let base = tmp("store");
        let src = base.join("src");
        let store = Store::new(&base.join("templates"));
        let lower = tar_of(&[
            ("etc/", "d"),
            ("etc/a", "f:lower-a"),
            ("etc/gone", "f:x"),
            ("opq/", "d"),
            ("opq/old", "f:old"),
            ("bin/", "d"),
            ("bin/tool", "f:#!tool"),
            ("bin/alias", "l:tool"),
            ("bin/hard", "h:bin/tool"),
            ("dev/", "d"),
            ("dev/null", "c"),
            ("bin/suid", "s:x"),
        ]);
        let upper = zstd::encode_all(
            &tar_of(&[
                ("etc/", "d"),
                ("etc/.wh.gone", "f:"),
                ("opq/", "d"),
                ("opq/.wh..wh..opq", "f:"),
                ("opq/new", "f:new"),
            ])[..],
            1,
        )
        .unwrap();
        layout(
            &src,
            &[gzip(&lower), upper],
            serde_json::json!({"config": {"Env": ["A=1"], "WorkingDir": "/srv", "Cmd": ["sh"]}}),
        );
        let m = store
            .import_layout(&src, None, "test/img:1", &mut |_, _, _| {})
            .unwrap();
        assert_eq!(m.layers.len(), 2);
        assert_eq!(m.config.env, ["A=1"]);
        assert_eq!(m.config.workdir.as_deref(), Some("/srv"));
        let (_, lowers) = store.lowers("test/img:1").unwrap();
        let (top, bottom) = (&lowers[0], &lowers[1]);
        assert_eq!(fs::read_to_string(bottom.join("etc/a")).unwrap(), "lower-a");
        assert_eq!(
            fs::read_link(bottom.join("bin/alias")).unwrap(),
            Path::new("tool")
        );
        assert_eq!(
            fs::metadata(bottom.join("bin/hard")).unwrap().ino(),
            fs::metadata(bottom.join("bin/tool")).unwrap().ino()
        );
        assert!(!bottom.join("dev/null").exists(), "devices are skipped");
        assert_eq!(m.layers[0].skipped, 1);
        // Set-id bits of files are gone.
        assert_eq!(
            fs::metadata(bottom.join("bin/suid")).unwrap().mode() & 0o7000,
            0
        );
        use std::os::unix::fs::FileTypeExt;
        let wh = fs::symlink_metadata(top.join("etc/gone")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
        assert_eq!(
            aibox_sys::get_xattr(&top.join("opq"), crate::image::layer::OPAQUE_XATTR).unwrap(),
            Some(b"y".to_vec())
        );
        // Present layers are not unpacked again; a second name shares them.
        let again = store
            .import_layout(&src, Some("1"), "other:latest", &mut |_, _, _| {})
            .unwrap();
        assert_eq!(again.layers, m.layers);
        assert_eq!(store.images().len(), 2);
        assert_eq!(store.usage().0, 2);
        // Export, then import the export: the same trees.
        let out = base.join("export");
        store.export_layout("test/img:1", &out).unwrap();
        let back = Store::new(&base.join("t2"));
        let m2 = back
            .import_layout(&out, None, "back:1", &mut |_, _, _| {})
            .unwrap();
        let (_, l2) = back.lowers("back:1").unwrap();
        assert_eq!(fs::read_to_string(l2[1].join("etc/a")).unwrap(), "lower-a");
        assert!(fs::symlink_metadata(l2[0].join("etc/gone"))
            .unwrap()
            .file_type()
            .is_char_device());
        assert_eq!(m2.config, m.config);
        // Removing a template keeps shared layers until prune.
        store.remove("test/img:1").unwrap();
        assert_eq!(store.prune(false).unwrap().0, 0);
        store.remove("other:latest").unwrap();
        let (n, bytes) = store.prune(false).unwrap();
        assert_eq!(n, 2);
        assert!(bytes > 0, "the sizes of what was removed are counted");
        assert!(matches!(
            store.remove("other:latest"),
            Err(OciError::NotFound(_))
        ));
        let _ = crate::image::layer::remove_tree(&base);
    }

    #[test]
    fn hostile_layers_are_refused() {
        let base = tmp("hostile");
        let store = Store::new(&base.join("templates"));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("dotdot", tar_of(&[("../escape", "f:x")])),
            ("absolute", tar_of(&[("/etc/escape", "f:x")])),
            (
                "through a symlink",
                tar_of(&[("link", "l:/tmp"), ("link/escape", "f:x")]),
            ),
            ("hard link outside", tar_of(&[("h", "h:../../etc/passwd")])),
            (
                "hard link to a symlink",
                tar_of(&[("s", "l:/etc/passwd"), ("h", "h:s")]),
            ),
        ];
        for (what, t) in cases {
            let digest = format!("sha256:{}", sha256_hex(&t));
            let r = store.add_layer(&digest, &mut &t[..], &mut |_| {});
            assert!(matches!(r, Err(OciError::Invalid(_))), "{what}: {r:?}");
        }
        assert!(!std::env::temp_dir().join("escape").exists());
        // A digest that does not match is refused, and nothing is kept.
        let t = tar_of(&[("a", "f:x")]);
        let wrong = format!("sha256:{}", "0".repeat(64));
        let r = store.add_layer(&wrong, &mut &t[..], &mut |_| {});
        assert!(matches!(r, Err(OciError::Digest { .. })), "{r:?}");
        assert_eq!(store.usage(), (0, 0));
        assert!(fs::read_dir(base.join("templates/oci/layers"))
            .unwrap()
            .next()
            .is_none());
        // Bad names and digests.
        for bad in ["", "host", "../x", "a//b", "UP PER", "-x"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_name("localhost:5000/team/tools:1.2"));
        assert!(digest_hex("sha256:abc").is_err());
        assert!(digest_hex(&format!("sha512:{}", "a".repeat(64))).is_err());
        let _ = crate::image::layer::remove_tree(&base);
    }

    /// The review's H1: a directory entry, its whiteout, then a symlink
    /// of the same name to a host file: the deferred directory mode must
    /// not reach the link's target.
    #[test]
    fn h1_a_directory_replaced_by_a_symlink_is_never_chmodded() {
        let base = tmp("h1");
        let canary = base.join("canary");
        fs::write(&canary, "secret").unwrap();
        fs::set_permissions(&canary, fs::Permissions::from_mode(0o600)).unwrap();
        let store = Store::new(&base.join("templates"));
        let target = format!("l:{}", canary.display());
        let t = tar_of(&[
            ("x/", "d"),
            ("x/sub/", "d"),
            (".wh.x", "f:"),
            ("x", &target),
            ("y/", "d"),
            ("y/suid", "f:x"),
        ]);
        let digest = format!("sha256:{}", sha256_hex(&t));
        store.add_layer(&digest, &mut &t[..], &mut |_| {}).unwrap();
        assert_eq!(
            fs::metadata(&canary).unwrap().mode() & 0o7777,
            0o600,
            "the symlink's target was chmodded"
        );
        let layer = store.layers_dir().join(&digest["sha256:".len()..]);
        assert!(fs::symlink_metadata(layer.join("x")).unwrap().is_symlink());
        assert_eq!(
            fs::metadata(layer.join("y")).unwrap().mode() & 0o7777,
            0o755
        );
        let _ = crate::image::layer::remove_tree(&base);
    }

    #[test]
    fn a_config_that_names_other_layers_is_refused() {
        let base = tmp("diffids");
        let src = base.join("src");
        let t = tar_of(&[("a", "f:x")]);
        let wrong = format!("sha256:{}", sha256_hex(b"something else"));
        layout(
            &src,
            &[gzip(&t)],
            serde_json::json!({"rootfs": {"type": "layers", "diff_ids": [wrong]}}),
        );
        let store = Store::new(&base.join("t"));
        let r = store.import_layout(&src, None, "x:1", &mut |_, _, _| {});
        assert!(matches!(r, Err(OciError::Digest { .. })), "{r:?}");
        assert!(store.get("x:1").is_none());
        let right = format!("sha256:{}", sha256_hex(&t));
        let src2 = base.join("src2");
        layout(
            &src2,
            &[gzip(&t)],
            serde_json::json!({"rootfs": {"type": "layers", "diff_ids": [right]}}),
        );
        store
            .import_layout(&src2, None, "x:1", &mut |_, _, _| {})
            .unwrap();
        let _ = crate::image::layer::remove_tree(&base);
    }

    #[test]
    fn too_many_layers_are_refused() {
        let base = tmp("bomb");
        let src = base.join("src");
        let one = gzip(&tar_of(&[("a", "f:x")]));
        layout(&src, &vec![one; MAX_LAYERS + 1], serde_json::json!({}));
        let r = Store::new(&base.join("t")).import_layout(&src, None, "bomb:1", &mut |_, _, _| {});
        assert!(matches!(r, Err(OciError::Limit(_))), "{r:?}");
        let _ = crate::image::layer::remove_tree(&base);
    }
}
