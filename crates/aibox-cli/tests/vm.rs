//! MicroVM guest artifacts, built from Debian's kernel package, and a boot
//! of them under QEMU TCG to the guest's ready line. Skips, with the reason
//! printed, without QEMU, apt or a reachable Debian mirror.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{stderr, stdout};
use std::path::Path;
use std::process::Command;

fn tool(p: &str) -> bool {
    Path::new(p).exists()
}

fn sha256(p: &Path) -> String {
    let o = Command::new("sha256sum").arg(p).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn guest_artifacts_build_from_packages_and_boot_under_tcg() {
    for t in [
        "/usr/bin/qemu-system-x86_64",
        "/usr/bin/apt-get",
        "/usr/bin/dpkg-deb",
    ] {
        if !tool(t) {
            eprintln!("SKIP guest_artifacts_build_from_packages_and_boot_under_tcg: {t} is missing (scripts/setup.sh installs qemu-system-x86 as root)");
            return;
        }
    }
    let dir = std::env::temp_dir().join(format!("aibox-vm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let aibox = |args: &[&str]| {
        Command::new(common::bin())
            .args(args)
            .env("AIBOX_BIN", common::bin())
            .output()
            .unwrap()
    };
    let d = dir.to_str().unwrap();
    let o = aibox(&["vm", "artifacts", "--dir", d, "--json"]);
    if !o.status.success() && stderr(&o).contains("apt-get download failed") {
        eprintln!(
            "SKIP guest_artifacts_build_from_packages_and_boot_under_tcg: no Debian mirror reachable: {}",
            stderr(&o)
        );
        return;
    }
    assert!(o.status.success(), "{}", stderr(&o));
    let m: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(m["cached"], false);
    assert!(m["kernel_package"]
        .as_str()
        .unwrap()
        .starts_with("linux-image-"));
    for f in ["kernel", "initramfs"] {
        let file = dir.join(m[f]["file"].as_str().unwrap());
        assert_eq!(sha256(&file), m[f]["sha256"], "{f}");
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            m[f]["bytes"].as_u64().unwrap()
        );
    }
    assert_eq!(m["init_sha256"], sha256(&common::bin()));
    // The kernel ELF taken out of the bzImage: a PVH boot, no firmware.
    assert_eq!(m["kernel_format"], "elf");
    let kernel = std::fs::read(dir.join(m["kernel"]["file"].as_str().unwrap())).unwrap();
    assert_eq!(&kernel[..4], b"\x7fELF");
    let modules: Vec<&str> = m["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let pos = |n: &str| modules.iter().position(|m| *m == n).unwrap();
    assert!(pos("virtio") < pos("virtio_mmio") && pos("virtio_ring") < pos("virtio_blk"));
    assert!(modules.contains(&"vmw_vsock_virtio_transport"));

    // Unchanged kernel and binary: reused as they are.
    let o = aibox(&["vm", "artifacts", "--dir", d, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let again: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (again["cached"].as_bool(), &again["initramfs"]),
        (Some(true), &m["initramfs"])
    );

    // Boot: the aibox binary is init, loads every module, says ready.
    let o = aibox(&["vm", "probe", "--dir", d, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let p: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    eprintln!("boot under TCG: {p}");
    assert_eq!(p["accel"], "tcg");
    assert_eq!(
        p["modules_loaded"].as_u64().unwrap() as usize,
        modules.len(),
        "{p}"
    );
    assert!(p["ready_ms"].as_u64().unwrap() > 0);

    // Bad input and damaged artifacts are clear errors.
    let o = aibox(&["vm", "probe", "--dir", d, "--accel", "warp"]);
    assert!(
        !o.status.success() && stderr(&o).contains("tcg or kvm"),
        "{}",
        stderr(&o)
    );
    let initramfs = dir.join(m["initramfs"]["file"].as_str().unwrap());
    std::fs::OpenOptions::new()
        .append(true)
        .open(&initramfs)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"))
        .unwrap();
    let o = aibox(&["vm", "probe", "--dir", d]);
    assert!(
        !o.status.success() && stderr(&o).contains("does not match its manifest"),
        "{}",
        stderr(&o)
    );
    let empty = dir.join("empty");
    let o = aibox(&["vm", "probe", "--dir", empty.to_str().unwrap()]);
    assert!(
        !o.status.success() && stderr(&o).contains("aibox vm artifacts"),
        "{}",
        stderr(&o)
    );
    // A rebuild repairs them.
    let o = aibox(&["vm", "artifacts", "--dir", d, "--rebuild", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["cached"], false);
    assert_eq!(sha256(&initramfs), m["initramfs"]["sha256"]);
    let _ = std::fs::remove_dir_all(&dir);
}
