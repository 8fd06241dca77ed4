//! `aibox snapshot create|ls|rm`, `aibox restore`, `aibox fork`: through
//! the server, or with `--local` on this host's runtime, the same way.

use super::progress::Progress;
use super::target;
use crate::args::{OverrideArgs, SnapshotCmd};
use aibox_types::api::{CreateRequest, Size};

pub fn snapshot(cmd: SnapshotCmd) -> anyhow::Result<u8> {
    match cmd {
        SnapshotCmd::Create {
            id,
            name,
            json,
            target,
        } => {
            let sandboxes = target::open(&target)?;
            let v = {
                let _p = Progress::start(format!("snapshotting {id}"));
                sandboxes.snapshot(&id, name)?
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}", v.id);
            }
            Ok(0)
        }
        SnapshotCmd::Ls {
            json,
            quiet,
            target,
        } => {
            let all = target::open(&target)?.snapshots()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(0);
            }
            if quiet {
                for s in &all {
                    println!("{}", s.id);
                }
                return Ok(0);
            }
            let now = aibox_types::now_ms();
            println!(
                "{:<14} {:<16} {:<14} {:>10} {:>8}",
                "ID", "NAME", "SANDBOX", "SIZE", "AGE"
            );
            for s in &all {
                println!(
                    "{:<14} {:<16} {:<14} {:>10} {:>8}",
                    s.id,
                    s.name.as_deref().unwrap_or("-"),
                    s.source_sandbox,
                    super::human(s.size_bytes),
                    format!("{}s", now.saturating_sub(s.created_at_ms) / 1000),
                );
            }
            Ok(0)
        }
        SnapshotCmd::Rm { ids, target } => {
            if ids.is_empty() {
                anyhow::bail!(aibox_runtime::Error::InvalidSpec(
                    "give at least one snapshot id".into()
                ));
            }
            let sandboxes = target::open(&target)?;
            let mut failed = 0u8;
            for id in ids {
                match sandboxes.delete_snapshot(&id) {
                    Ok(()) => println!("{id}"),
                    Err(e) => {
                        eprintln!("aibox: {id}: {e}");
                        failed = 1;
                    }
                }
            }
            Ok(failed)
        }
    }
}

/// The fields a restore or fork may change, as the API's request.
fn overrides(o: &OverrideArgs) -> anyhow::Result<CreateRequest> {
    let seconds = |d: std::time::Duration| (d.as_millis() as u64).div_ceil(1000);
    Ok(CreateRequest {
        memory: o.memory.map(Size::from),
        cpus: o.cpus,
        pids: o.pids,
        disk: o.disk.map(Size::from),
        ttl_seconds: o.timeout.map(seconds),
        env: super::parse_env(&o.env)?.into_iter().collect(),
        labels: super::parse_labels(&o.labels)?,
        ..Default::default()
    })
}

/// `restore` (one sandbox, printed as an object) and `fork` (N, printed as
/// a list).
pub fn fork(snapshot: &str, count: u64, o: &OverrideArgs, single: bool) -> anyhow::Result<u8> {
    if count == 0 {
        anyhow::bail!(aibox_runtime::Error::InvalidSpec(
            "--count must be at least 1".into()
        ));
    }
    let req = overrides(o)?;
    let sandboxes = target::open(&o.target)?;
    let made = {
        let _p = Progress::start(if single {
            format!("restoring {snapshot}")
        } else {
            format!("forking {count} sandboxes from {snapshot}")
        });
        sandboxes.fork(snapshot, &req, count)?
    };
    if o.json {
        if single {
            println!("{}", serde_json::to_string_pretty(&made.first())?);
        } else {
            println!("{}", serde_json::to_string_pretty(&made)?);
        }
    } else {
        for s in &made {
            println!("{}", s.id);
        }
    }
    Ok(0)
}
