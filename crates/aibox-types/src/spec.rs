//! What a caller asks for when creating a sandbox.

use crate::{ByteSize, IsolationLevel};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub const DEFAULT_WORKDIR: &str = "/workspace";

/// Identity commands run as inside the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum User {
    /// uid/gid 1000, named `user`, home /home/user.
    #[default]
    User,
    /// uid 0 inside the sandbox (no capabilities, and not root on the host).
    Root,
}

impl User {
    pub fn uid(self) -> u32 {
        match self {
            User::User => 1000,
            User::Root => 0,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            User::User => "user",
            User::Root => "root",
        }
    }
    pub fn home(self) -> &'static str {
        match self {
            User::User => "/home/user",
            User::Root => "/root",
        }
    }
}

impl std::str::FromStr for User {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" | "1000" => Ok(User::User),
            "root" | "0" => Ok(User::Root),
            other => Err(format!(
                "unknown user {other:?}: expected \"user\" or \"root\""
            )),
        }
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub host: PathBuf,
    pub guest: PathBuf,
    #[serde(default)]
    pub read_only: bool,
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
        if !self.guest.is_absolute() {
            return Err(format!(
                "mount target {:?} must be an absolute path",
                self.guest
            ));
        }
        let bad = |p: &std::path::Path| {
            p.components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
                || p.as_os_str().as_encoded_bytes().contains(&0)
        };
        if bad(&self.host) || bad(&self.guest) {
            return Err(format!(
                "mount paths may not contain '..' or NUL: {:?}:{:?}",
                self.host, self.guest
            ));
        }
        let g = self.guest.to_string_lossy();
        for reserved in ["/", "/proc", "/dev", "/usr", "/sys"] {
            if g == reserved || (reserved != "/" && g.starts_with(&format!("{reserved}/"))) {
                return Err(format!("mount target {g:?} is reserved by the sandbox"));
            }
        }
        Ok(())
    }
}

/// Everything needed to create a sandbox. Defaults are the safe choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub workdir: String,
    pub user: User,
    pub require_isolation: Option<IsolationLevel>,
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
            workdir: DEFAULT_WORKDIR.into(),
            user: User::User,
            require_isolation: None,
            network: NetworkMode::None,
            network_rules: Vec::new(),
            network_enforcement: None,
            hostname: None,
            snapshot: None,
        }
    }
}

/// Default limits applied when the caller gives none.
pub const DEFAULT_MEMORY: u64 = 1 << 30;
pub const DEFAULT_PIDS: u64 = 1024;
pub const DEFAULT_DISK: u64 = 1 << 30;

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
}
