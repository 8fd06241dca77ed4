//! `aibox vm artifacts|probe`.

use crate::args::VmCmd;
use aibox_runtime::microvm::host;
use std::time::Duration;

fn dir_or_default(dir: Option<std::path::PathBuf>) -> std::path::PathBuf {
    dir.unwrap_or_else(|| aibox_runtime::Dirs::from_env().data.join("vm"))
}

pub fn vm(cmd: VmCmd) -> anyhow::Result<u8> {
    match cmd {
        VmCmd::Artifacts {
            dir,
            package,
            rebuild,
            json,
        } => {
            let dir = dir_or_default(dir);
            let init = std::env::var_os("AIBOX_BIN")
                .map(std::path::PathBuf::from)
                .map_or_else(std::env::current_exe, Ok)?;
            let (m, cached) = host::build_artifacts(&dir, &package, &init, rebuild, &mut |l| {
                if !json {
                    eprintln!("{l}");
                }
            })
            .map_err(aibox_runtime::Error::from)?;
            if json {
                let mut v = serde_json::to_value(&m)?;
                v["cached"] = cached.into();
                v["dir"] = dir.to_string_lossy().into_owned().into();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{} ({}{})",
                    dir.display(),
                    if cached { "cached, " } else { "" },
                    m.kernel_release
                );
                println!(
                    "  kernel     {}  {} MiB  sha256:{}  from {} {}",
                    m.kernel.file,
                    m.kernel.bytes >> 20,
                    m.kernel.sha256,
                    m.kernel_package,
                    m.kernel_version
                );
                println!(
                    "  initramfs  {}  {} MiB  sha256:{}  modules: {}",
                    m.initramfs.file,
                    m.initramfs.bytes >> 20,
                    m.initramfs.sha256,
                    m.modules.join(" ")
                );
            }
            Ok(0)
        }
        VmCmd::Probe {
            dir,
            accel,
            timeout,
            json,
        } => {
            let p = host::probe(&dir_or_default(dir), &accel, Duration::from_secs(timeout))
                .map_err(aibox_runtime::Error::from)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                println!(
                    "{} ({}): guest ready after {} ms (kernel uptime {:.2} s, {} modules loaded); powered off after {} ms",
                    p.vmm, p.accel, p.ready_ms, p.guest_uptime_s, p.modules_loaded, p.total_ms
                );
            }
            Ok(0)
        }
    }
}
