//! `aibox doctor`: what isolation this host can give, and how to fix gaps.
//!
//! Static checks read kernel settings; then a probe sandbox is actually
//! created (running `true`) so the report is what a real sandbox gets.

use aibox_runtime::sandbox::cgroup::Layout;
use aibox_runtime::{OneShot, Runtime};
use aibox_types::{IsolationLevel, SandboxSpec};
use serde::Serialize;

#[derive(Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

fn read(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn userns_works() -> Result<(), String> {
    match aibox_sys::fork() {
        Ok(aibox_sys::Fork::Child) => {
            let ok = aibox_sys::unshare(libc::CLONE_NEWUSER).is_ok();
            aibox_sys::exit_now(if ok { 0 } else { 1 })
        }
        Ok(aibox_sys::Fork::Parent(pid)) => match aibox_sys::waitpid(pid) {
            Ok(aibox_sys::WaitStatus::Exited(0)) => Ok(()),
            _ => Err("unshare(CLONE_NEWUSER) failed".into()),
        },
        Err(e) => Err(format!("fork: {e}")),
    }
}

fn hint(gap: &str, rootless: bool) -> String {
    match gap {
        g if g.contains("user namespace") => "enable user namespaces: `sysctl -w user.max_user_namespaces=15000`; on Ubuntu 23.10+ also `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (or an AppArmor profile allowing userns for aibox)".into(),
        g if g.contains("landlock") => "boot a kernel with CONFIG_SECURITY_LANDLOCK=y and `landlock` in the lsm= list".into(),
        g if g.contains("uid range") => "run aibox as root (e.g. through `aibox serve` under systemd) to give each sandbox its own host uid range".into(),
        g if g.contains("cgroup") && rootless => "delegate a cgroup v2 subtree to this user, e.g. `systemd-run --user --scope -p Delegate=yes aibox ...`, or run as root".into(),
        g if g.contains("cgroup") => "mount the cgroup controllers (memory, pids, cpu): cgroup v2 at /sys/fs/cgroup, or the v1 hierarchies".into(),
        g if g.contains("seccomp") => "use a kernel with CONFIG_SECCOMP_FILTER=y".into(),
        g if g.contains("overlay") => "use a kernel with CONFIG_OVERLAY_FS=y (5.11+ for overlay inside user namespaces)".into(),
        _ => "see docs/threat-model.md".into(),
    }
}

pub fn doctor(json: bool) -> anyhow::Result<u8> {
    let rootless = aibox_sys::geteuid() != 0;
    let mut checks = Vec::new();
    let max_ns = read("/proc/sys/user/max_user_namespaces").and_then(|v| v.parse::<u64>().ok());
    let apparmor = read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    let userns = userns_works();
    checks.push(Check {
        name: "user namespaces",
        ok: userns.is_ok(),
        detail: format!(
            "max_user_namespaces={}{}{}",
            max_ns.map_or("?".into(), |v| v.to_string()),
            apparmor.as_deref().map_or(String::new(), |v| format!(
                ", apparmor_restrict_unprivileged_userns={v}"
            )),
            userns
                .as_ref()
                .err()
                .map_or(String::new(), |e| format!(" ({e})"))
        ),
        fix: userns.is_err().then(|| hint("user namespace", rootless)),
    });
    let fs = read("/proc/filesystems").unwrap_or_default();
    let overlay = fs.lines().any(|l| l.ends_with("overlay"));
    checks.push(Check {
        name: "overlayfs",
        ok: overlay,
        detail: if overlay {
            "available".into()
        } else {
            "missing".into()
        },
        fix: (!overlay).then(|| hint("overlay", rootless)),
    });
    let seccomp = read("/proc/sys/kernel/seccomp/actions_avail");
    checks.push(Check {
        name: "seccomp",
        ok: seccomp.is_some(),
        detail: seccomp
            .clone()
            .unwrap_or_else(|| "no seccomp filter support".into()),
        fix: seccomp.is_none().then(|| hint("seccomp", rootless)),
    });
    let ll = aibox_sys::landlock_abi();
    checks.push(Check {
        name: "landlock",
        ok: ll.is_some(),
        detail: ll.map_or("not available".into(), |v| format!("ABI {v}")),
        fix: ll.is_none().then(|| hint("landlock", rootless)),
    });
    let layout = Layout::detect();
    let ctrls: Vec<&str> = ["memory", "pids", "cpu", "freezer"]
        .into_iter()
        .filter(|c| layout.has(c))
        .collect();
    // Delegation: can we actually create a cgroup where sandboxes would go?
    let delegated = match &layout {
        Layout::V1(dirs) => ["memory", "pids"].iter().all(|c| {
            dirs.iter().find(|(n, _)| n == c).is_some_and(|(_, d)| {
                let probe = d.join(format!("aibox-doctor-{}", aibox_runtime::random_id()));
                let ok = std::fs::create_dir(&probe).is_ok();
                let _ = std::fs::remove_dir(&probe);
                ok
            })
        }),
        Layout::V2 { own, .. } => {
            let probe = own.join(format!("aibox-doctor-{}", aibox_runtime::random_id()));
            let ok = std::fs::create_dir(&probe).is_ok();
            let _ = std::fs::remove_dir(&probe);
            ok
        }
        Layout::None => false,
    };
    let cg_ok = layout.has("memory") && layout.has("pids") && delegated;
    checks.push(Check {
        name: "cgroups",
        ok: cg_ok,
        detail: format!(
            "{} with {}; {}",
            layout.version(),
            if ctrls.is_empty() {
                "no controllers".to_string()
            } else {
                ctrls.join(", ")
            },
            if delegated {
                "writable by this user"
            } else {
                "not delegated to this user"
            }
        ),
        fix: (!cg_ok).then(|| hint("cgroup", rootless)),
    });

    let l4 = aibox_server::l4::support();
    checks.push(Check {
        name: "network egress",
        ok: true,
        detail: match &l4 {
            Ok(aibox_server::l4::Path::Host) => "HTTP(S) through the egress proxy, and any TCP checked per connection with DNS filtered (veth + nftables on the host)".into(),
            Ok(aibox_server::l4::Path::Agent) => "HTTP(S) through the egress proxy, and any TCP checked per connection with DNS filtered (nftables inside each sandbox, through its agent; no UDP without root)".into(),
            Err(why) => format!("HTTP(S) through the egress proxy only ({why})"),
        },
        fix: l4.err().map(|_| {
            "for non-HTTP egress (SSH, databases) run `aibox serve` as root with nftables, iproute2 and util-linux installed".to_string()
        }),
    });

    // MicroVMs: which VMM and accelerator a microVM would get.
    let vmm = aibox_runtime::microvm::host::detect();
    let kvm = match &vmm.kvm {
        Ok(v) => format!("KVM API {v}"),
        Err(e) => format!("no KVM ({e})"),
    };
    checks.push(Check {
        name: "microvm",
        ok: vmm.choice.is_ok(),
        detail: match (&vmm.choice, &vmm.qemu) {
            (Ok((v, accel)), Some((_, version))) if v == "qemu" => format!(
                "{version}, microvm machine, {accel}{}; {kvm}; transport: user-net ({}); guest artifacts: `aibox vm artifacts`, boot check: `aibox vm probe`",
                if accel == "tcg" { " (emulated: KVM is used once AIBOX_VM_ACCEL=kvm and `aibox vm probe --accel kvm` boots)" } else { "" },
                match &vmm.vhost_vsock {
                    Some(p) => format!("vsock with AIBOX_VM_TRANSPORT=vsock, through {}", p.display()),
                    None => "vsock needs vhost-device-vsock".into(),
                }
            ),
            (Ok((v, _)), _) if v == "firecracker" => format!(
                "Firecracker {} with KVM, transport vsock, {}; {kvm}",
                vmm.firecracker.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                match (&vmm.jailer, aibox_sys::geteuid() == 0) {
                    (Some(j), true) => format!("jailed by {} (a uid of its own, in a chroot)", j.display()),
                    (Some(_), false) => "not jailed (the jailer needs root)".into(),
                    (None, _) => "not jailed (no `jailer` on PATH)".into(),
                }
            ),
            (Ok((v, accel)), _) => format!("{v} with {accel}; {kvm}"),
            (Err(why), _) => format!("{why}; {kvm}"),
        },
        fix: vmm.choice.as_ref().err().map(|why| {
            if why.contains("AIBOX_VMM") {
                "install the VMM AIBOX_VMM names (Firecracker and its jailer come from its GitHub releases), or unset AIBOX_VMM".to_string()
            } else {
                "install Debian's qemu-system-x86 (TCG works anywhere; KVM when /dev/kvm boots guests)".to_string()
            }
        }),
    });

    // The probe: a real sandbox with the default isolation.
    let probe = Runtime::new().run(
        &SandboxSpec::default(),
        OneShot {
            argv: vec!["true".into()],
            tty: false,
            stdin: false,
        },
    );
    let (report, probe_err) = match probe {
        Ok(o) => (Some(o.isolation), None),
        Err(e) => (None, Some(format!("{e}"))),
    };
    let level = report
        .as_ref()
        .map_or(IsolationLevel::None, |r| r.achieved_level());
    let gaps = report
        .as_ref()
        .map(|r| r.gaps(IsolationLevel::Strict))
        .unwrap_or_default();
    if json {
        let v = serde_json::json!({
            "rootless": rootless,
            "checks": checks,
            "probe_error": probe_err,
            "isolation": report,
            "level": level,
            "strict_gaps": gaps.iter().map(|g| serde_json::json!({"missing": g, "fix": hint(g, rootless)})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "aibox doctor ({})",
            if rootless { "rootless" } else { "root" }
        );
        for c in &checks {
            println!(
                "  [{}] {:<16} {}",
                if c.ok { " ok " } else { "FAIL" },
                c.name,
                c.detail
            );
            if let Some(f) = &c.fix {
                println!("         fix: {f}");
            }
        }
        if let Some(r) = &report {
            let idmap = if r.template_idmapped {
                "[ ok ] idmapped mounts  template shared through idmapped mounts, never copied"
            } else if rootless {
                "[ -- ] idmapped mounts  need root; rootless sandboxes use the template as it is"
            } else {
                "[FAIL] idmapped mounts  not supported by the data directory's filesystem"
            };
            println!("  {idmap}");
            println!("  [ ok ] probe sandbox    created one and ran `true` in it");
        }
        if let Some(e) = &probe_err {
            println!("  [FAIL] probe sandbox    {e}");
        }
        println!("\nIsolation level this host gives: {level}");
        for g in &gaps {
            println!(
                "  missing for strict: {g}\n         fix: {}",
                hint(g, rootless)
            );
        }
    }
    Ok(if probe_err.is_some() { 1 } else { 0 })
}
