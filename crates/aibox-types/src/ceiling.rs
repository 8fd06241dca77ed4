//! Operator ceilings: what one API key may ask for at most. The operator
//! sets a default for user keys (the server's config file) and may set a
//! key's own (the admin API); admin keys have none. A request beyond its
//! key's ceiling is refused with `permission_denied` and a message naming
//! the ceiling, never quietly reduced.
//!
//! Threat: a tenant's request is attacker input. Without a ceiling a user
//! key could give its own sandbox an egress rule to the host's loopback
//! services, the cloud metadata address or the private network (the
//! review's H2), mount any allowed host path read-write, or take a whole
//! host's memory in one sandbox.

use crate::egress::{Action, Cidr, Rule, Target};
use crate::{BackendKind, ByteSize, MountSpec, SandboxSpec};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// What a key may ask for. Every field left out is not limited by the
/// ceiling (the server's own limits still apply), except `egress_local`,
/// whose absence means no local address at all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ceiling {
    /// Address blocks of the local classes (loopback, private, link-local,
    /// carrier-grade NAT, cloud metadata, multicast …) this key's egress
    /// rules may reach, e.g. `["10.20.0.0/16"]`. Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress_local: Vec<String>,
    /// Host paths this key may mount, and below them: `PATH` read-only,
    /// `PATH:rw` read-write too. Absent: what the server allows anyone
    /// (`allowed_mounts`), either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<String>>,
    /// Largest memory limit of one sandbox (`"4g"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<ByteSize>,
    /// Largest disk (writable layer) of one sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_disk: Option<ByteSize>,
    /// Most CPU cores of one sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpus: Option<f64>,
    /// Most processes of one sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pids: Option<u64>,
    /// Longest lifetime of one sandbox, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ttl_seconds: Option<u64>,
    /// The backends this key may use. Absent: every backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<BackendKind>>,
    /// May this key make its published ports public (no token)? Absent: yes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ports: Option<bool>,
    /// Most volumes this key may keep at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_volumes: Option<u64>,
    /// Most bytes of volume quota this key may hold in all (`"100g"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_volume_bytes: Option<ByteSize>,
}

/// A request beyond a ceiling: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (the operator's ceiling `{ceiling}` for this key)")]
pub struct Beyond {
    /// The ceiling's field name.
    pub ceiling: &'static str,
    pub message: String,
}

fn beyond(ceiling: &'static str, message: String) -> Beyond {
    Beyond { ceiling, message }
}

/// A mount grant: a host path, and whether read-write is allowed below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountGrant {
    pub path: PathBuf,
    pub rw: bool,
}

impl std::str::FromStr for MountGrant {
    type Err = String;
    fn from_str(s: &str) -> Result<MountGrant, String> {
        let (path, rw) = match s.rsplit_once(':') {
            Some((p, "rw")) => (p, true),
            Some((p, "ro")) => (p, false),
            _ => (s, false),
        };
        let path = PathBuf::from(path);
        if !path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!(
                "mount grant {s:?}: expected an absolute path without '..', then :ro or :rw"
            ));
        }
        Ok(MountGrant { path, rw })
    }
}

impl Ceiling {
    /// Refuse a ceiling that cannot be read (at start, or from the admin
    /// API), naming the field.
    pub fn validate(&self) -> Result<(), String> {
        for b in &self.egress_local {
            cidr(b).map_err(|e| format!("egress_local: {e}"))?;
        }
        for g in self.mounts.iter().flatten() {
            g.parse::<MountGrant>()?;
        }
        if let Some(c) = self.max_cpus {
            if !c.is_finite() || c <= 0.0 {
                return Err(format!("max_cpus {c} must be a positive number"));
            }
        }
        Ok(())
    }

    fn grants(&self) -> Option<Vec<MountGrant>> {
        self.mounts
            .as_ref()
            .map(|m| m.iter().filter_map(|g| g.parse().ok()).collect())
    }

    fn local_blocks(&self) -> Vec<Cidr> {
        self.egress_local
            .iter()
            .filter_map(|b| cidr(b).ok())
            .collect()
    }

    /// Check a whole sandbox specification (a create, a restore).
    pub fn check_spec(&self, spec: &SandboxSpec) -> Result<(), Beyond> {
        let over = |what: &str, asked: String, max: String| {
            format!("{what} {asked} is above the largest this key may ask for ({max})")
        };
        let size = |ceiling, what: &str, asked: u64, max: Option<ByteSize>| match max {
            Some(max) if asked > max.0 => Err(beyond(
                ceiling,
                over(what, ByteSize(asked).to_string(), max.to_string()),
            )),
            _ => Ok(()),
        };
        size("max_memory", "memory", spec.memory_bytes(), self.max_memory)?;
        size("max_disk", "disk", spec.disk_bytes(), self.max_disk)?;
        if let Some(max) = self.max_cpus {
            // No limit at all is more than any number.
            let asked = spec.cpus.unwrap_or(f64::INFINITY);
            if asked > max {
                return Err(beyond(
                    "max_cpus",
                    match spec.cpus {
                        Some(c) => over("cpus", c.to_string(), max.to_string()),
                        None => {
                            format!("a sandbox of this key needs a cpus limit of at most {max}")
                        }
                    },
                ));
            }
        }
        if let Some(max) = self.max_pids {
            if spec.pids_limit() > max {
                return Err(beyond(
                    "max_pids",
                    over("pids", spec.pids_limit().to_string(), max.to_string()),
                ));
            }
        }
        if let (Some(allowed), Some(b)) = (&self.backends, spec.backend) {
            if !allowed.contains(&b) {
                return Err(beyond(
                    "backends",
                    format!("the {b} backend is not open to this key"),
                ));
            }
        }
        for m in &spec.mounts {
            self.check_mount(m)?;
        }
        self.check_rules(&spec.network_rules)
    }

    /// Check a host mount against the key's grants (None: no grants set).
    pub fn check_mount(&self, m: &MountSpec) -> Result<(), Beyond> {
        let Some(grants) = self.grants() else {
            return Ok(());
        };
        let under: Vec<&MountGrant> = grants
            .iter()
            .filter(|g| m.host.starts_with(&g.path))
            .collect();
        if under.is_empty() {
            return Err(beyond(
                "mounts",
                format!(
                    "host path {} is not one this key may mount",
                    m.host.display()
                ),
            ));
        }
        if !m.read_only && !under.iter().any(|g| g.rw) {
            return Err(beyond(
                "mounts",
                format!(
                    "host path {} may only be mounted read-only by this key (add :ro)",
                    m.host.display()
                ),
            ));
        }
        Ok(())
    }

    /// A lifetime, in seconds.
    pub fn check_ttl(&self, seconds: u64) -> Result<(), Beyond> {
        match self.max_ttl_seconds {
            Some(max) if seconds > max => Err(beyond(
                "max_ttl_seconds",
                format!(
                    "a lifetime of {seconds} s is above the longest this key may ask for ({max} s)"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// One more volume of `bytes`, the key holding `count` volumes of
    /// `held` bytes already.
    pub fn check_volume(&self, count: u64, held: u64, bytes: u64) -> Result<(), Beyond> {
        if let Some(max) = self.max_volumes {
            if count + 1 > max {
                return Err(beyond(
                    "max_volumes",
                    format!("this key has {count} volumes, the most it may keep is {max}"),
                ));
            }
        }
        if let Some(max) = self.max_volume_bytes {
            if held.saturating_add(bytes) > max.0 {
                return Err(beyond(
                    "max_volume_bytes",
                    format!(
                        "a volume of {} on top of the {} this key's volumes hold is above its {max}",
                        ByteSize(bytes),
                        ByteSize(held)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Making published ports public.
    pub fn check_public_ports(&self) -> Result<(), Beyond> {
        if self.public_ports == Some(false) {
            return Err(beyond(
                "public_ports",
                "this key may not make published ports public".into(),
            ));
        }
        Ok(())
    }

    /// Egress rules: an allow rule whose address block reaches a local
    /// class must lie within a block the ceiling opens (`egress_local`).
    /// Name rules never reach local addresses on their own (the policy
    /// refuses a name that resolves there unless an address rule unlocks
    /// it), and deny rules only narrow.
    pub fn check_rules(&self, rules: &[Rule]) -> Result<(), Beyond> {
        let open = self.local_blocks();
        for r in rules {
            let Target::Cidr(c) = &r.target else { continue };
            if r.action != Action::Allow {
                continue;
            }
            for (block, class) in local_blocks() {
                let Some(part) = intersection(c, &block) else {
                    continue;
                };
                if !open.iter().any(|o| covers(o, &part)) {
                    return Err(beyond(
                        "egress_local",
                        format!(
                            "the egress rule {:?} reaches {part}, {class}, which this key may not open",
                            r.text
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn cidr(s: &str) -> Result<Cidr, String> {
    match s.parse::<Rule>() {
        Ok(Rule {
            target: Target::Cidr(c),
            ..
        }) if !s.contains(' ') && !s.trim_start_matches('[').contains("]:") => Ok(c),
        _ => Err(format!("{s:?} is not an address block such as 10.0.0.0/8")),
    }
}

/// Does `outer` contain all of `inner`?
fn covers(outer: &Cidr, inner: &Cidr) -> bool {
    outer.prefix <= inner.prefix && outer.contains(inner.addr)
}

/// The common part of two blocks (one contains the other, or none).
fn intersection(a: &Cidr, b: &Cidr) -> Option<Cidr> {
    if covers(a, b) {
        Some(*b)
    } else if covers(b, a) {
        Some(*a)
    } else {
        None
    }
}

/// The address blocks of the local classes, as
/// [`crate::egress::local_address_class`] names them: IPv4, then IPv6
/// (with IPv4 carried inside it: NAT64, 6to4 and IPv4-compatible).
fn local_blocks() -> Vec<(Cidr, &'static str)> {
    let mut out: Vec<(Cidr, &'static str)> = Vec::new();
    let mut push = |addr: IpAddr, prefix: u8, class| out.push((Cidr { addr, prefix }, class));
    for (a, p, class) in LOCAL_V4 {
        push(IpAddr::V4(a), p, class);
        // The same block inside 6to4 (2002:AABB:CCDD::/16+p).
        let o = a.octets();
        let six = Ipv6Addr::new(
            0x2002,
            u16::from_be_bytes([o[0], o[1]]),
            u16::from_be_bytes([o[2], o[3]]),
            0,
            0,
            0,
            0,
            0,
        );
        push(IpAddr::V6(six), 16 + p, class);
    }
    for (a, p, class) in LOCAL_V6 {
        push(IpAddr::V6(a), p, class);
    }
    for ip in crate::egress::host_addresses() {
        push(
            ip,
            if ip.is_ipv4() { 32 } else { 128 },
            crate::egress::HOST_ADDRESS,
        );
    }
    out
}

/// The local IPv4 classes: block, prefix length, what it is.
#[rustfmt::skip]
const LOCAL_V4: [(Ipv4Addr, u8, &str); 12] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8, "an unspecified address"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "a private address"),
    (Ipv4Addr::new(100, 64, 0, 0), 10, "a carrier-grade NAT address"),
    (Ipv4Addr::new(100, 100, 100, 200), 32, "a cloud metadata address"),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "a loopback address"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "a link-local address"),
    (Ipv4Addr::new(169, 254, 169, 254), 32, "a cloud metadata address"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "a private address"),
    (Ipv4Addr::new(192, 0, 0, 192), 32, "a cloud metadata address"),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "a private address"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "a multicast address"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "a reserved address"),
];

/// The local IPv6 classes (IPv4 inside IPv6 as NAT64 and ::/96; 6to4 is
/// derived from [`LOCAL_V4`]).
#[rustfmt::skip]
const LOCAL_V6: [(Ipv6Addr, u8, &str); 6] = [
    // ::/96 holds ::, ::1 and the IPv4-compatible addresses.
    (Ipv6Addr::UNSPECIFIED, 96, "a loopback, unspecified or IPv4-compatible address"),
    // All of 64:ff9b::/32, as the policy classes it (the well-known /96
    // and the local-use /48 within it).
    (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 32, "a NAT64 address"),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, "a private address"),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "a link-local address"),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "a site-local address"),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "a multicast address"),
];

/// Where a mount grant lets `host` be mounted from: the grant's path (the
/// longest that contains it), for resolving beneath it.
pub fn grant_root<'a>(roots: &'a [PathBuf], host: &Path) -> Option<&'a Path> {
    roots
        .iter()
        .filter(|r| host.starts_with(r))
        .max_by_key(|r| r.components().count())
        .map(PathBuf::as_path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::local_address_class;

    fn rules(r: &[&str]) -> Vec<Rule> {
        r.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn local_blocks_match_the_policy_classes() {
        // Every block is local for the policy, at both ends.
        for (c, _) in local_blocks() {
            assert!(local_address_class(c.addr).is_some(), "{c}");
        }
        // And the other way: every address the policy calls local lies in
        // a block (a sample across every class and IPv6 embedding).
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.100.100.200",
            "192.0.0.192",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "::7f00:1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "64:ff9b::7f00:1",
            "64:ff9b:0:1::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:101::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(
                local_address_class(ip).is_some(),
                "{ip} is local to the policy"
            );
            assert!(
                local_blocks().iter().any(|(c, _)| c.contains(ip)),
                "{ip} is local to the policy but in no ceiling block"
            );
        }
        for ip in ["8.8.8.8", "2606:4700::1111", "2002:0808:0808::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(
                !local_blocks().iter().any(|(c, _)| c.contains(ip)),
                "{ip} is public"
            );
        }
    }

    #[test]
    fn h2_user_rules_cannot_open_local_addresses_beyond_the_ceiling() {
        let none = Ceiling::default();
        for bad in [
            "127.0.0.1/32",
            "169.254.169.254/32:80",
            "10.0.0.0/8",
            "0.0.0.0/0",
            "::1",
            "::/0",
            "[fd00:ec2::254]:80",
            "2002:7f00:1::/48",
            "64:ff9b::7f00:1",
        ] {
            let e = none.check_rules(&rules(&[bad])).unwrap_err();
            assert_eq!(e.ceiling, "egress_local", "{bad}");
        }
        // Public blocks, names, `*` and deny rules are fine.
        none.check_rules(&rules(&[
            "8.8.8.0/24",
            "pypi.org",
            "*.github.com:443",
            "*",
            "deny 10.0.0.0/8",
            "2606:4700::/32",
        ]))
        .unwrap();
        // What the operator opens, and only that.
        let some = Ceiling {
            egress_local: vec!["10.20.0.0/16".into(), "127.0.0.1/32".into()],
            ..Ceiling::default()
        };
        some.validate().unwrap();
        some.check_rules(&rules(&["10.20.3.0/24:5432", "127.0.0.1:8080"]))
            .unwrap();
        assert!(some.check_rules(&rules(&["10.0.0.0/8"])).is_err());
        assert!(some.check_rules(&rules(&["127.0.0.2"])).is_err());
        let e = some.check_rules(&rules(&["0.0.0.0/0"])).unwrap_err();
        assert!(e.to_string().contains("egress_local"), "{e}");
        assert!(Ceiling {
            egress_local: vec!["pypi.org".into()],
            ..Ceiling::default()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn limits_backends_mounts_and_ports() {
        let c: Ceiling = serde_json::from_value(serde_json::json!({
            "max_memory": "1g", "max_cpus": 2.0, "max_pids": 100, "max_ttl_seconds": 60,
            "backends": ["namespaces"], "mounts": ["/srv/data", "/srv/scratch:rw"],
            "public_ports": false
        }))
        .unwrap();
        c.validate().unwrap();
        let mut spec = SandboxSpec {
            cpus: Some(1.0),
            pids: Some(50),
            ..SandboxSpec::default()
        };
        spec.memory = Some(ByteSize(512 << 20));
        c.check_spec(&spec).unwrap();
        let mut big = spec.clone();
        big.memory = Some(ByteSize(2 << 30));
        assert_eq!(c.check_spec(&big).unwrap_err().ceiling, "max_memory");
        let mut nocpu = spec.clone();
        nocpu.cpus = None;
        assert_eq!(c.check_spec(&nocpu).unwrap_err().ceiling, "max_cpus");
        let mut vm = spec.clone();
        vm.backend = Some(BackendKind::Microvm);
        assert_eq!(c.check_spec(&vm).unwrap_err().ceiling, "backends");
        let mount = |h: &str, ro: bool| MountSpec {
            host: h.into(),
            guest: "/data".into(),
            read_only: ro,
            within: None,
        };
        c.check_mount(&mount("/srv/data/x", true)).unwrap();
        assert!(c.check_mount(&mount("/srv/data/x", false)).is_err());
        c.check_mount(&mount("/srv/scratch/y", false)).unwrap();
        assert!(c.check_mount(&mount("/srv/database", true)).is_err());
        assert!(c.check_ttl(61).is_err());
        c.check_ttl(60).unwrap();
        assert!(c.check_public_ports().is_err());
        assert!(Ceiling::default().check_public_ports().is_ok());
        assert!(serde_json::from_value::<Ceiling>(serde_json::json!({"max_memry": "1g"})).is_err());
    }
}
