//! What a caller asks for when creating a sandbox.

use crate::{ByteSize, IsolationLevel};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub const DEFAULT_WORKDIR: &str = "/workspace";

/// Identity commands run as inside the sandbox. Written as `"user"`,
/// `"root"` or a numeric uid (`"1001"`; its group is the same number,
/// `"1001:1001"` is accepted too): an image's `USER` becomes one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum User {
    /// uid/gid 1000, named `user`, home /home/user.
    #[default]
    User,
    /// uid 0 inside the sandbox (no capabilities, and not root on the host).
    Root,
    /// Another uid (and the gid of the same number), named by the
    /// sandbox's own /etc/passwd.
    Id(u32),
}

/// The largest uid a sandbox can use (its user namespace maps 0..65536;
/// 65535 is the kernel's "no id").
pub const MAX_UID: u32 = 65534;

impl User {
    pub fn from_uid(uid: u32) -> User {
        match uid {
            0 => User::Root,
            1000 => User::User,
            n => User::Id(n),
        }
    }
    pub fn uid(self) -> u32 {
        match self {
            User::User => 1000,
            User::Root => 0,
            User::Id(n) => n,
        }
    }
    /// Name and home directory: fixed for `user` and `root`, else from
    /// `passwd` (the text of the sandbox's /etc/passwd), else the number
    /// and `/`.
    pub fn identity(self, passwd: Option<&str>) -> (String, String) {
        match self {
            User::User => ("user".into(), "/home/user".into()),
            User::Root => ("root".into(), "/root".into()),
            User::Id(n) => passwd
                .and_then(|text| passwd_entry(text, |_, uid| uid == n))
                .map(|e| (e.name, e.home))
                .unwrap_or_else(|| (n.to_string(), "/".into())),
        }
    }
    pub fn name(self) -> String {
        self.identity(None).0
    }
    pub fn home(self) -> String {
        self.identity(None).1
    }
}

/// One line of an /etc/passwd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// The first entry of `text` (an /etc/passwd) that `pick(name, uid)` accepts.
pub fn passwd_entry(text: &str, pick: impl Fn(&str, u32) -> bool) -> Option<PasswdEntry> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        let (uid, gid) = (f[2].parse().ok()?, f[3].parse().ok()?);
        pick(f[0], uid).then(|| PasswdEntry {
            name: f[0].to_string(),
            uid,
            gid,
            home: f[5].to_string(),
        })
    })
}

impl std::str::FromStr for User {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => return Ok(User::User),
            "root" => return Ok(User::Root),
            _ => {}
        }
        let bad = || {
            format!(
                "unknown user {s:?}: expected \"user\", \"root\" or a numeric uid (0-{MAX_UID})"
            )
        };
        let (u, g) = s.split_once(':').unwrap_or((s, s));
        let uid: u32 = u.parse().map_err(|_| bad())?;
        if uid > MAX_UID || u.starts_with('+') {
            return Err(bad());
        }
        if g != u {
            return Err(format!(
                "user {s:?}: a sandbox user's group is the number of its uid ({uid}:{uid})"
            ));
        }
        Ok(User::from_uid(uid))
    }
}

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            User::User => f.write_str("user"),
            User::Root => f.write_str("root"),
            User::Id(n) => write!(f, "{n}"),
        }
    }
}

impl schemars::JsonSchema for User {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "User".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(user|root|[0-9]{1,5}(:[0-9]{1,5})?)$",
            "description": "`user` (uid 1000), `root` (uid 0 in the sandbox) or a numeric uid"
        })
    }
}

impl Serialize for User {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for User {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = User;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"user\", \"root\" or a numeric uid")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<User, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<User, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<User, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

/// How much network a sandbox has (the mode of its egress policy).
pub use crate::egress::Mode as NetworkMode;

/// Where a sandbox with egress finds the proxy: its agent listens here,
/// on the sandbox's own loopback.
pub const EGRESS_PROXY_PORT: u16 = 3128;
/// Where nftables inside a sandbox sends its TCP connections when egress
/// is checked per connection by the agent (rootless L4).
pub const L4_TCP_PORT: u16 = 3129;
/// Where nftables inside a sandbox sends its DNS queries (rootless L4).
pub const L4_DNS_PORT: u16 = 3153;

/// A host directory or file made visible inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MountSpec {
    pub host: PathBuf,
    pub guest: PathBuf,
    #[serde(default)]
    pub read_only: bool,
    /// Resolve `host` beneath this directory without following any
    /// symlink (the server sets it to the operator's allowed path that
    /// `host` lies under; whatever a client sends is replaced). None: the
    /// caller's own path, taken as given (`aibox run -v`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<PathBuf>,
}

impl std::str::FromStr for MountSpec {
    type Err = String;
    /// `HOST:GUEST[:ro|:rw]`, both absolute.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        let (host, guest, mode) = match parts.as_slice() {
            [h, g] => (*h, *g, "rw"),
            [h, g, m] => (*h, *g, *m),
            _ => return Err(format!("invalid mount {s:?}: expected HOST:GUEST[:ro]")),
        };
        let read_only = match mode {
            "ro" => true,
            "rw" => false,
            m => {
                return Err(format!(
                    "invalid mount mode {m:?} in {s:?}: expected ro or rw"
                ))
            }
        };
        let spec = MountSpec {
            host: host.into(),
            guest: guest.into(),
            read_only,
            within: None,
        };
        spec.validate()?;
        Ok(spec)
    }
}

impl MountSpec {
    pub fn validate(&self) -> Result<(), String> {
        if !self.host.is_absolute() {
            return Err(format!(
                "mount source {:?} must be an absolute path",
                self.host
            ));
        }
        if self
            .host
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
            || self.host.as_os_str().as_encoded_bytes().contains(&0)
        {
            return Err(format!(
                "mount source {:?} may not contain '..' or NUL",
                self.host
            ));
        }
        check_target(&self.guest)
    }
}

/// A mount target must be absolute, free of `..` and NUL, and outside
/// what the sandbox itself provides (`/`, `/proc`, `/dev`, `/usr`, `/sys`).
pub fn check_target(target: &std::path::Path) -> Result<(), String> {
    let g = target.to_string_lossy();
    if !target.is_absolute() {
        return Err(format!("mount target {g:?} must be an absolute path"));
    }
    if target
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
        || target.as_os_str().as_encoded_bytes().contains(&0)
    {
        return Err(format!("mount target {g:?} may not contain '..' or NUL"));
    }
    // Compared by components (`/./proc/x` and `//proc/x` are in /proc:
    // a string compare let them through, and setup then followed
    // `/proc/self/root` back to the host's root).
    let guest: std::path::PathBuf = target.components().collect();
    for reserved in ["/proc", "/dev", "/usr", "/sys"] {
        if guest.starts_with(reserved) {
            return Err(format!("mount target {g:?} is reserved by the sandbox"));
        }
    }
    if guest == std::path::Path::new("/") {
        return Err(format!("mount target {g:?} is reserved by the sandbox"));
    }
    Ok(())
}

/// A volume mounted into a sandbox: the volume's id (which the server
/// resolves from the caller's name for it, never taken from a request),
/// the name it was asked by, where it goes and whether read-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    pub id: String,
    pub name: String,
    pub path: PathBuf,
    #[serde(default)]
    pub read_only: bool,
}
/// An isolation backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Linux namespaces, seccomp, cgroups and Landlock around processes
    /// of the host's kernel.
    Namespaces,
    /// A microVM with its own kernel (QEMU `microvm` or Firecracker).
    Microvm,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Namespaces => "namespaces",
            BackendKind::Microvm => "microvm",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "namespaces" => Ok(BackendKind::Namespaces),
            "microvm" => Ok(BackendKind::Microvm),
            other => Err(format!(
                "unknown backend {other:?}: expected namespaces or microvm"
            )),
        }
    }
}

/// Everything needed to create a sandbox. Defaults are the safe choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSpec {
    pub template: String,
    /// Memory limit (RAM); swap is not allowed beyond it.
    pub memory: Option<ByteSize>,
    /// CPU limit in cores (e.g. 0.5, 2).
    pub cpus: Option<f64>,
    pub pids: Option<u64>,
    /// Size of the writable layer (overlay upper + /tmp).
    pub disk: Option<ByteSize>,
    /// Wall-clock limit in milliseconds.
    pub timeout_ms: Option<u64>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<MountSpec>,
    /// Volumes mounted into the sandbox (they outlive it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    /// The workspace (its id) the sandbox was made in: its files are one
    /// of `volumes`, at `/workspace`. Set by the server, never from a
    /// request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    pub workdir: String,
    pub user: User,
    pub require_isolation: Option<IsolationLevel>,
    /// The isolation backend; None: the server's default (namespaces for
    /// the CLI without a server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendKind>,
    pub network: NetworkMode,
    /// Egress rules, in order (see `egress`); only with `allowlist`/`full`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network_rules: Vec<crate::egress::Rule>,
    /// How egress must be enforced; None: the best the host offers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_enforcement: Option<crate::egress::Enforcement>,
    pub hostname: Option<String>,
    /// Start from this snapshot's filesystem (restore, fork).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// A template build step: root's commands keep the capabilities an
    /// image build needs (chown, setuid... see `BUILD_CAPS`), all of them
    /// confined to the sandbox's own user namespace. Set by the runtime's
    /// builder only, never from a request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub build_caps: bool,
}

impl Default for SandboxSpec {
    fn default() -> Self {
        SandboxSpec {
            template: "host".into(),
            memory: None,
            cpus: None,
            pids: None,
            disk: None,
            timeout_ms: None,
            env: Vec::new(),
            mounts: Vec::new(),
            volumes: Vec::new(),
            workspace: None,
            workdir: DEFAULT_WORKDIR.into(),
            user: User::User,
            require_isolation: None,
            backend: None,
            network: NetworkMode::None,
            network_rules: Vec::new(),
            network_enforcement: None,
            hostname: None,
            snapshot: None,
            build_caps: false,
        }
    }
}

/// The capabilities a build step's root keeps (inside its user namespace):
/// CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID,
/// NET_BIND_SERVICE, SYS_CHROOT — what package managers and `useradd` use.
pub const BUILD_CAPS: [u32; 9] = [0, 1, 3, 4, 5, 6, 7, 10, 18];

/// Default limits applied when the caller gives none.
pub const DEFAULT_MEMORY: u64 = 1 << 30;
pub const DEFAULT_PIDS: u64 = 1024;
pub const DEFAULT_DISK: u64 = 1 << 30;
/// Most volumes one sandbox mounts.
pub const MAX_VOLUMES_PER_SANDBOX: usize = 16;

impl SandboxSpec {
    pub fn memory_bytes(&self) -> u64 {
        self.memory.map_or(DEFAULT_MEMORY, |b| b.0)
    }
    pub fn pids_limit(&self) -> u64 {
        self.pids.unwrap_or(DEFAULT_PIDS)
    }
    pub fn disk_bytes(&self) -> u64 {
        self.disk.map_or(DEFAULT_DISK, |b| b.0)
    }

    /// Reject values that cannot work, with a message naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.template.is_empty() {
            return Err("template must not be empty".into());
        }
        if let Some(m) = self.memory {
            if m.0 < 4 << 20 {
                return Err(format!("memory {m} is too small: the minimum is 4m"));
            }
        }
        if let Some(c) = self.cpus {
            if !c.is_finite() || !(0.01..=1024.0).contains(&c) {
                return Err(format!(
                    "cpus {c} is out of range: use a value between 0.01 and 1024"
                ));
            }
        }
        if let Some(p) = self.pids {
            if !(1..=4_194_304).contains(&p) {
                return Err(format!(
                    "pids {p} is out of range: use a value between 1 and 4194304"
                ));
            }
        }
        if let Some(d) = self.disk {
            if d.0 < 1 << 20 {
                return Err(format!("disk {d} is too small: the minimum is 1m"));
            }
        }
        if self.network == NetworkMode::None && !self.network_rules.is_empty() {
            return Err("network rules need network mode allowlist or full".into());
        }
        if self.network_rules.len() > 1000 {
            return Err("at most 1000 network rules".into());
        }
        if let Some(s) = &self.snapshot {
            if !crate::validate_id(s) {
                return Err(format!("{s:?} is not a snapshot id"));
            }
        }
        if self.timeout_ms == Some(0) {
            return Err("timeout must be greater than zero".into());
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(format!("invalid environment variable name {k:?}"));
            }
        }
        for m in &self.mounts {
            m.validate()?;
        }
        for v in &self.volumes {
            if !crate::validate_id(&v.id) {
                return Err(format!("volume {:?} is not resolved to an id", v.name));
            }
            check_target(&v.path)?;
        }
        let mut targets: Vec<PathBuf> = self
            .mounts
            .iter()
            .map(|m| &m.guest)
            .chain(self.volumes.iter().map(|v| &v.path))
            .map(|p| p.components().collect())
            .collect();
        targets.sort();
        if let Some(w) = targets.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("two mounts target {}", w[0].display()));
        }
        if self.volumes.len() > MAX_VOLUMES_PER_SANDBOX {
            return Err(format!(
                "at most {MAX_VOLUMES_PER_SANDBOX} volumes per sandbox"
            ));
        }
        if !self.workdir.starts_with('/') || self.workdir.contains('\0') {
            return Err(format!(
                "workdir {:?} must be an absolute path",
                self.workdir
            ));
        }
        if let Some(h) = &self.hostname {
            if h.is_empty()
                || h.len() > 63
                || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(format!("invalid hostname {h:?}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_targets_are_reserved_by_their_components() {
        for guest in [
            "/proc/x",
            "/./proc/self/root/x",
            "//proc/x",
            "/dev",
            "/usr/./lib",
            "/",
            "/.",
        ] {
            let m = MountSpec {
                host: "/srv/data".into(),
                guest: guest.into(),
                read_only: true,
                within: None,
            };
            let e = m.validate().unwrap_err();
            assert!(e.contains("reserved"), "{guest}: {e}");
        }
    }

    #[test]
    fn mount_specs() {
        let m: MountSpec = "/data:/mnt/data:ro".parse().unwrap();
        assert!(m.read_only);
        let m: MountSpec = "/data:/mnt/data".parse().unwrap();
        assert!(!m.read_only);
        for bad in [
            "data:/x",
            "/data:x",
            "/a:/b:rx",
            "/a",
            "/a:/b:ro:x",
            "/a:/proc/x",
            "/a:/",
            "/../etc:/x",
        ] {
            assert!(bad.parse::<MountSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn spec_validation_names_the_field() {
        let mut s = SandboxSpec {
            memory: Some(ByteSize(1)),
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().contains("memory"));
        s.memory = None;
        s.cpus = Some(f64::NAN);
        assert!(s.validate().unwrap_err().contains("cpus"));
        s.cpus = None;
        s.env.push(("A=B".into(), "x".into()));
        assert!(s.validate().unwrap_err().contains("environment"));
        assert!(SandboxSpec::default().validate().is_ok());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(serde_json::from_str::<SandboxSpec>(r#"{"memroy": 5}"#).is_err());
        let s: SandboxSpec = serde_json::from_str(r#"{"memory": "512m"}"#).unwrap();
        assert_eq!(s.memory_bytes(), 512 << 20);
    }

    #[test]
    fn users_parse_serialize_and_name_themselves() {
        for (text, user) in [
            ("user", User::User),
            ("root", User::Root),
            ("0", User::Root),
            ("1000", User::User),
            ("1001", User::Id(1001)),
            ("65534:65534", User::Id(65534)),
        ] {
            assert_eq!(text.parse::<User>().unwrap(), user, "{text}");
            let json = serde_json::to_string(&user).unwrap();
            assert_eq!(serde_json::from_str::<User>(&json).unwrap(), user);
        }
        assert_eq!(
            serde_json::from_str::<User>("1001").unwrap(),
            User::Id(1001)
        );
        for bad in [
            "",
            "admin",
            "-1",
            "+5",
            "65535",
            "99999999999",
            "1001:1002",
            "1:x",
        ] {
            assert!(bad.parse::<User>().is_err(), "{bad}");
        }
        let passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1001:1001::/srv/app:/bin/sh\nbroken\n";
        assert_eq!(
            User::Id(1001).identity(Some(passwd)),
            ("app".to_string(), "/srv/app".to_string())
        );
        assert_eq!(
            User::Id(42).identity(Some(passwd)),
            ("42".to_string(), "/".to_string())
        );
        assert_eq!(passwd_entry(passwd, |n, _| n == "app").unwrap().uid, 1001);
    }
}
