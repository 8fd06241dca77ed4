//! The isolation report: what a sandbox *actually* got, and the levels a
//! caller can require. Creation fails closed when a required level is not met.

use serde::{Deserialize, Serialize};

/// Levels a caller can require with `--require-isolation` / `require_isolation`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum IsolationLevel {
    /// Nothing was confirmed (never satisfied by a real sandbox report check).
    None,
    /// user + mount + pid namespaces, no capabilities, no_new_privs, seccomp.
    Basic,
    /// basic + net/ipc/uts/cgroup namespaces, overlay rootfs, masked /proc.
    Standard,
    /// standard + Landlock, a dedicated host uid range, cgroup memory and pids
    /// limits (and cpu when requested), and a disk quota.
    Strict,
    /// A hardware-virtualization boundary: the sandbox is a microVM with
    /// its own kernel, a memory size and a disk size, and a VMM with no way
    /// to the host's network.
    Vm,
}

impl std::str::FromStr for IsolationLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "basic" => Ok(IsolationLevel::Basic),
            "standard" => Ok(IsolationLevel::Standard),
            "strict" => Ok(IsolationLevel::Strict),
            "vm" => Ok(IsolationLevel::Vm),
            other => Err(format!(
                "unknown isolation level {other:?}: expected basic, standard, strict or vm"
            )),
        }
    }
}

impl std::fmt::Display for IsolationLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IsolationLevel::None => "none",
            IsolationLevel::Basic => "basic",
            IsolationLevel::Standard => "standard",
            IsolationLevel::Strict => "strict",
            IsolationLevel::Vm => "vm",
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NamespaceReport {
    pub user: bool,
    pub mount: bool,
    pub pid: bool,
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    pub cgroup: bool,
}

impl NamespaceReport {
    /// Every namespace aibox creates.
    pub fn all() -> NamespaceReport {
        NamespaceReport {
            user: true,
            mount: true,
            pid: true,
            net: true,
            ipc: true,
            uts: true,
            cgroup: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UidMapping {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// One resource limit: what was asked and whether the kernel enforces it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LimitReport {
    pub requested: Option<u64>,
    pub applied: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl LimitReport {
    pub fn applied(v: u64) -> Self {
        LimitReport {
            requested: Some(v),
            applied: true,
            reason: None,
        }
    }
    pub fn missing(v: Option<u64>, reason: impl Into<String>) -> Self {
        LimitReport {
            requested: v,
            applied: false,
            reason: Some(reason.into()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CgroupReport {
    /// "v1", "v2" or "none".
    pub version: String,
    pub memory: LimitReport,
    pub swap: LimitReport,
    pub pids: LimitReport,
    /// CPU quota in millicores.
    pub cpu: LimitReport,
    pub freezer: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IsolationReport {
    pub backend: String,
    /// The highest level every check below satisfies.
    pub level: Option<IsolationLevel>,
    pub rootless: bool,
    pub namespaces: NamespaceReport,
    pub uid_map: Vec<UidMapping>,
    pub gid_map: Vec<UidMapping>,
    /// True when the sandbox's host uid range is used by no other sandbox and
    /// by no host user.
    pub dedicated_uid_range: bool,
    pub seccomp: bool,
    /// Number of syscalls the seccomp allowlist lets through.
    pub seccomp_allowed_syscalls: usize,
    pub landlock_abi: Option<u32>,
    pub landlock_enforced: bool,
    pub no_new_privs: bool,
    /// Capabilities left in the bounding set (empty = all dropped).
    pub bounding_caps: Vec<u32>,
    pub cgroups: CgroupReport,
    pub disk_quota: LimitReport,
    /// "tmpfs": the writable layer is a size-limited tmpfs.
    pub disk_quota_mechanism: String,
    pub overlay_rootfs: bool,
    pub template_idmapped: bool,
    pub proc_masked: bool,
    /// "absent" or "read-only".
    pub sys: String,
    /// "none": loopback only; "proxy": HTTP(S) egress through the
    /// server's proxy; "l4": the proxy and checked TCP (see `egress`).
    pub network: String,
    /// How egress is enforced (sandboxes with network only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<crate::egress::EgressReport>,
    /// The microVM (backend `microvm` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmReport>,
}

/// What a microVM sandbox runs on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VmReport {
    /// `qemu` or `firecracker`.
    pub vmm: String,
    /// `kvm` (hardware) or `tcg` (QEMU's emulator).
    pub accel: String,
    /// QEMU's machine type (`microvm`), or the VMM's own.
    pub machine: String,
    /// How the host reaches the guest's agent: `vsock` (hybrid vsock over
    /// a Unix socket; the guest has no network device) or `user-net`
    /// (QEMU's user-mode network, restricted, with one forwarded port).
    #[serde(default)]
    pub transport: String,
    /// `uname -r` of the guest kernel.
    pub kernel: String,
    pub vcpus: u32,
    /// The guest's RAM: the hard memory limit.
    pub memory_mib: u64,
    /// The size of the guest's writable disk: the disk quota.
    pub disk_mib: u64,
    /// The VMM runs in a network namespace of its own, with loopback only.
    pub vmm_netns: bool,
    /// Whom the VMM runs as once started: a uid of its own (root
    /// mode: QEMU's `-runas` with its seccomp sandbox, or Firecracker's
    /// jailer), or the unprivileged caller.
    #[serde(default)]
    pub vmm_user: String,
    /// The guest can open connections to the host or beyond (never: egress
    /// goes through the server's proxy only).
    pub host_network: bool,
    /// Host directories the guest reads (the host template's `/usr`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<String>,
}

impl IsolationReport {
    /// Every property `level` needs that this report lacks, as readable phrases.
    pub fn gaps(&self, level: IsolationLevel) -> Vec<String> {
        let mut gaps = Vec::new();
        let mut need = |ok: bool, what: &str| {
            if !ok {
                gaps.push(what.to_string());
            }
        };
        if let Some(vm) = &self.vm {
            if level >= IsolationLevel::Standard {
                need(
                    self.overlay_rootfs,
                    "read-only template under a writable layer",
                );
                need(!vm.host_network, "no host network for the guest");
            }
            if level >= IsolationLevel::Strict {
                need(vm.vmm_netns, "the VMM in a network namespace of its own");
                need(self.cgroups.memory.applied, "memory limit");
                need(self.disk_quota.applied, "disk quota");
            }
            return gaps;
        }
        let ns = &self.namespaces;
        if level >= IsolationLevel::Basic {
            need(ns.user, "user namespace");
            need(ns.mount, "mount namespace");
            need(ns.pid, "pid namespace");
            need(self.no_new_privs, "no_new_privs");
            need(self.seccomp, "seccomp filter");
            need(
                self.bounding_caps.is_empty(),
                "empty capability bounding set",
            );
        }
        if level >= IsolationLevel::Standard {
            need(ns.net, "network namespace");
            need(ns.ipc, "ipc namespace");
            need(ns.uts, "uts namespace");
            need(ns.cgroup, "cgroup namespace");
            need(self.overlay_rootfs, "overlay root filesystem");
            need(self.proc_masked, "masked /proc");
        }
        if level >= IsolationLevel::Strict {
            need(self.landlock_enforced, "landlock");
            need(
                self.dedicated_uid_range,
                "dedicated host uid range (needs root)",
            );
            let cg = &self.cgroups;
            need(cg.memory.applied, "cgroup memory limit");
            need(cg.pids.applied, "cgroup pids limit");
            need(
                cg.cpu.requested.is_none() || cg.cpu.applied,
                "cgroup cpu limit",
            );
            need(self.disk_quota.applied, "disk quota");
        }
        if level >= IsolationLevel::Vm {
            need(
                false,
                "a hardware-virtualization boundary (the microvm backend)",
            );
        }
        gaps
    }

    /// The highest level with no gaps.
    pub fn achieved_level(&self) -> IsolationLevel {
        [
            IsolationLevel::Vm,
            IsolationLevel::Strict,
            IsolationLevel::Standard,
            IsolationLevel::Basic,
        ]
        .into_iter()
        .find(|l| self.gaps(*l).is_empty())
        .unwrap_or(IsolationLevel::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> IsolationReport {
        IsolationReport {
            namespaces: NamespaceReport::all(),
            no_new_privs: true,
            seccomp: true,
            overlay_rootfs: true,
            proc_masked: true,
            landlock_enforced: true,
            dedicated_uid_range: true,
            cgroups: CgroupReport {
                memory: LimitReport::applied(1),
                pids: LimitReport::applied(1),
                ..Default::default()
            },
            disk_quota: LimitReport::applied(1),
            ..Default::default()
        }
    }

    #[test]
    fn levels_are_ordered_and_checked() {
        assert!(IsolationLevel::Strict > IsolationLevel::Standard);
        assert_eq!(full().achieved_level(), IsolationLevel::Strict);
        let mut r = full();
        r.landlock_enforced = false;
        assert_eq!(r.achieved_level(), IsolationLevel::Standard);
        assert_eq!(r.gaps(IsolationLevel::Strict), vec!["landlock".to_string()]);
        r.namespaces.net = false;
        assert_eq!(r.achieved_level(), IsolationLevel::Basic);
        r.seccomp = false;
        assert_eq!(r.achieved_level(), IsolationLevel::None);
    }

    #[test]
    fn requested_cpu_must_be_applied_for_strict() {
        let mut r = full();
        r.cgroups.cpu = LimitReport::missing(Some(500), "no cpu controller");
        assert!(!r.gaps(IsolationLevel::Strict).is_empty());
    }

    #[test]
    fn level_parsing() {
        assert_eq!(
            "strict".parse::<IsolationLevel>().unwrap(),
            IsolationLevel::Strict
        );
        assert!("paranoid".parse::<IsolationLevel>().is_err());
    }
}
