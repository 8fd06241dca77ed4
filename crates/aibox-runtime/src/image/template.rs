//! Templates: the read-only lower layer of a sandbox's root filesystem.
//!
//! The only template today is `host`: the host's own `/usr` (bind-mounted
//! read-only), the merged-usr symlinks, and a *synthesized* minimal `/etc`.
//! Nothing of the host's /home, /root, /var or /etc secrets (shadow, ssh
//! keys, machine-id, credentials) is copied. The base directory is built
//! once per host state and shared by all sandboxes (it is the overlay lower
//! layer, idmapped per sandbox, never copied).

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown template {0:?}: `aibox template ls` lists the templates here (import or pull one first)")]
    NotFound(String),
    #[error("template {name:?}: {source}")]
    Oci {
        name: String,
        #[source]
        source: crate::image::oci::OciError,
    },
    #[error("failed to build the host template at {path}")]
    Build {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Bumped when the synthesized content changes, so stale bases are rebuilt.
const HOST_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    /// The lower layers, top first.
    pub layers: Vec<PathBuf>,
    /// Host directories bind-mounted read-only: (host path, path in sandbox).
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// An image's defaults (env, workdir, user, command).
    pub config: Option<crate::image::oci::ImageConfig>,
}

/// Top-level directories that come from the host when they are real
/// directories (non-merged-usr systems); on merged-usr hosts they are symlinks.
const USR_LINKS: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

pub fn resolve(templates_dir: &Path, name: &str) -> Result<Template, TemplateError> {
    if name != "host" {
        let store = crate::image::oci::Store::new(templates_dir);
        return match store.lowers(name) {
            Ok((meta, mut layers)) => {
                let mut binds = Vec::new();
                if meta.base.as_deref() == Some("host") {
                    let host = resolve(templates_dir, "host")?;
                    layers.extend(host.layers);
                    binds = host.binds;
                }
                Ok(Template {
                    name: name.into(),
                    layers,
                    binds,
                    config: Some(meta.config),
                })
            }
            Err(crate::image::oci::OciError::NotFound(_)) => {
                Err(TemplateError::NotFound(name.to_string()))
            }
            Err(source) => Err(TemplateError::Oci {
                name: name.into(),
                source,
            }),
        };
    }
    let key = host_key();
    let dir = templates_dir.join("host").join(&key);
    let rootfs = dir.join("rootfs");
    if !rootfs.join("etc/passwd").exists() {
        build_host(&dir).map_err(|source| TemplateError::Build {
            path: dir.clone(),
            source,
        })?;
    }
    let mut binds = vec![(PathBuf::from("/usr"), PathBuf::from("/usr"))];
    for l in USR_LINKS {
        let host = Path::new("/").join(l);
        if fs::symlink_metadata(&host)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            binds.push((host.clone(), host));
        }
    }
    Ok(Template {
        name: name.into(),
        layers: vec![rootfs],
        binds,
        config: None,
    })
}

/// An image's `USER` (`name`, `uid`, `name:group`, `uid:gid`) as a
/// sandbox user; names are looked up in the image's own /etc/passwd
/// (`layers` top first). The group is the uid's number in a sandbox.
pub fn image_user(user: &str, layers: &[PathBuf]) -> Result<aibox_types::User, crate::Error> {
    use aibox_types::{User, MAX_UID};
    let name = user.split_once(':').map_or(user, |(u, _)| u);
    let uid = match name.parse::<u32>() {
        Ok(n) => n,
        Err(_) => {
            let passwd = layers.iter().find_map(|l| {
                let p = l.join("etc/passwd");
                let md = fs::symlink_metadata(&p).ok()?;
                // A whiteout (or anything but a file) hides lower layers.
                Some(if md.is_file() {
                    fs::read_to_string(&p).ok()
                } else {
                    None
                })
            });
            let entry = passwd
                .flatten()
                .and_then(|text| aibox_types::passwd_entry(&text, |n, _| n == name));
            match entry {
                Some(e) => e.uid,
                None => {
                    return Err(crate::Error::InvalidSpec(format!(
                        "the image's USER {user:?} is not in its /etc/passwd; pass --user root or a uid"
                    )))
                }
            }
        }
    };
    if uid > MAX_UID {
        return Err(crate::Error::InvalidSpec(format!(
            "the image's USER {user:?} is uid {uid}, beyond what a sandbox maps (0-{MAX_UID})"
        )));
    }
    Ok(User::from_uid(uid))
}

/// A cache key that changes when the host files we copy change.
pub(crate) fn host_key() -> String {
    let mtime = |p: &str| {
        fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs())
    };
    format!(
        "v{HOST_FORMAT}-{:x}",
        mtime("/etc/ld.so.cache")
            ^ mtime("/etc/ssl/certs/ca-certificates.crt").rotate_left(17)
            ^ mtime("/etc/alternatives").rotate_left(34)
    )
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
user:x:1000:1000:user:/home/user:/bin/bash\n\
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const GROUP: &str = "root:x:0:\ntty:x:5:\nusers:x:100:user\nuser:x:1000:\nnogroup:x:65534:\n";
const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n";
const PROFILE: &str = "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n";

/// Host files that are safe and useful to copy verbatim.
const COPY_FILES: [&str; 9] = [
    "etc/ld.so.cache",
    "etc/ld.so.conf",
    "etc/protocols",
    "etc/services",
    "etc/shells",
    "etc/debian_version",
    "etc/mime.types",
    "etc/inputrc",
    "etc/bash.bashrc",
];

fn build_host(dir: &Path) -> io::Result<()> {
    let parent = dir
        .parent()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".build-{}", crate::sandbox::ids::random_id()));
    let root = tmp.join("rootfs");
    let result = (|| -> io::Result<()> {
        let mkdir = |p: &str, mode: u32| -> io::Result<()> {
            let path = root.join(p);
            fs::create_dir_all(&path)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
        };
        for (p, m) in [
            ("", 0o755),
            ("usr", 0o755),
            ("etc", 0o755),
            ("etc/ssl/certs", 0o755),
            ("etc/ld.so.conf.d", 0o755),
            ("proc", 0o555),
            ("dev", 0o755),
            ("tmp", 0o1777),
            ("var/tmp", 0o1777),
            ("var/lib", 0o755),
            ("var/cache", 0o755),
            ("var/log", 0o755),
            ("run", 0o755),
            ("opt", 0o755),
            ("mnt", 0o755),
            ("root", 0o700),
            ("home/user", 0o755),
            ("workspace", 0o755),
        ] {
            mkdir(p, m)?;
        }
        for l in USR_LINKS {
            let host = Path::new("/").join(l);
            match fs::symlink_metadata(&host) {
                Ok(m) if m.file_type().is_symlink() => {
                    symlink(fs::read_link(&host)?, root.join(l))?
                }
                Ok(m) if m.is_dir() => fs::create_dir(root.join(l))?,
                _ => {}
            }
        }
        let write = |p: &str, content: &str, mode: u32| -> io::Result<()> {
            fs::write(root.join(p), content)?;
            fs::set_permissions(root.join(p), fs::Permissions::from_mode(mode))
        };
        write("etc/passwd", PASSWD, 0o644)?;
        write("etc/group", GROUP, 0o644)?;
        write("etc/hosts", HOSTS, 0o644)?;
        write("etc/hostname", "aibox\n", 0o644)?;
        write("etc/nsswitch.conf", NSSWITCH, 0o644)?;
        write(
            "etc/resolv.conf",
            "# no network: aibox sandboxes have only loopback\n",
            0o644,
        )?;
        write("etc/profile", PROFILE, 0o644)?;
        for f in COPY_FILES {
            if let Ok(content) = fs::read(Path::new("/").join(f)) {
                fs::write(root.join(f), content)?;
            }
        }
        if let Ok(rd) = fs::read_dir("/etc/ld.so.conf.d") {
            for e in rd.flatten() {
                if e.file_type()?.is_file() {
                    fs::copy(e.path(), root.join("etc/ld.so.conf.d").join(e.file_name()))?;
                }
            }
        }
        if let Ok(certs) = fs::read("/etc/ssl/certs/ca-certificates.crt") {
            fs::write(root.join("etc/ssl/certs/ca-certificates.crt"), certs)?;
        }
        symlink("../usr/lib/os-release", root.join("etc/os-release"))?;
        symlink("/usr/share/zoneinfo/Etc/UTC", root.join("etc/localtime"))?;
        // Debian's update-alternatives links (/usr/bin/awk -> /etc/alternatives/awk -> ...).
        if let Ok(rd) = fs::read_dir("/etc/alternatives") {
            fs::create_dir(root.join("etc/alternatives"))?;
            for e in rd.flatten() {
                if let Ok(target) = fs::read_link(e.path()) {
                    if target.starts_with("/usr")
                        || target.starts_with("/bin")
                        || target.starts_with("/lib")
                    {
                        symlink(target, root.join("etc/alternatives").join(e.file_name()))?;
                    }
                }
            }
        }
        // The unprivileged user owns its home and the workspace. As root the
        // on-disk uid 1000 becomes the sandbox's uid 1000 through the idmapped
        // mount; rootless, everything belongs to the caller anyway.
        if aibox_sys::geteuid() == 0 {
            for p in ["home/user", "workspace"] {
                std::os::unix::fs::chown(root.join(p), Some(1000), Some(1000))?;
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        // Another process built it concurrently: use theirs.
        Err(_) if dir.join("rootfs/etc/passwd").exists() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_template_is_a_clear_error() {
        let e = resolve(Path::new("/nonexistent"), "ubuntu").unwrap_err();
        assert!(e.to_string().contains("unknown template \"ubuntu\""));
    }

    #[test]
    fn host_template_has_no_host_secrets() {
        let tmp =
            std::env::temp_dir().join(format!("aibox-tpl-{}", crate::sandbox::ids::random_id()));
        let t = resolve(&tmp, "host").unwrap();
        let passwd = fs::read_to_string(t.layers[0].join("etc/passwd")).unwrap();
        assert!(passwd.contains("user:x:1000:1000"));
        assert!(!t.layers[0].join("etc/shadow").exists());
        assert!(!t.layers[0].join("etc/machine-id").exists());
        assert!(!t.layers[0].join("etc/ssh").exists());
        assert_eq!(t.binds[0], (PathBuf::from("/usr"), PathBuf::from("/usr")));
        // A second resolve reuses the same base.
        assert_eq!(resolve(&tmp, "host").unwrap().layers, t.layers);
        fs::remove_dir_all(tmp).unwrap();
    }
}
