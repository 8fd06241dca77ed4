//! `aibox volume create|ls|inspect|rm|snapshot|clone`: through the server
//! (the caller's own volumes), or with `--local` on this host's runtime.

use super::target;
use crate::args::VolumeCmd;
use aibox_types::api::{CloneRequest, Size, VolumeRequest, VolumeView};

/// `NAME@SNAPSHOT` → (NAME, Some(SNAPSHOT)).
fn split_at(s: &str) -> (&str, Option<&str>) {
    match s.split_once('@') {
        Some((v, snap)) => (v, Some(snap)),
        None => (s, None),
    }
}

fn print_table(all: &[VolumeView]) {
    println!(
        "{:<24} {:>9} {:>9} {:<8} {:<6} SNAPSHOTS",
        "NAME", "USED", "QUOTA", "ENFORCED", "IN USE"
    );
    for v in all {
        println!(
            "{:<24} {:>9} {:>9} {:<8} {:<6} {}",
            v.name,
            super::human(v.used_bytes),
            super::human(v.quota.bytes),
            if v.quota.enforced { "yes" } else { "no" },
            v.in_use_by.len(),
            v.snapshots.len(),
        );
    }
}

pub fn volume(cmd: VolumeCmd) -> anyhow::Result<u8> {
    match cmd {
        VolumeCmd::Create {
            name,
            size,
            uid,
            labels,
            json,
            target,
        } => {
            let req = VolumeRequest {
                name,
                size: size.map(Size::from),
                uid,
                labels: super::parse_labels(&labels)?,
            };
            let v = target::volumes(&target)?.create(&req)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}", v.name);
                if !v.quota.enforced {
                    eprintln!("aibox: the quota of {} is {}", v.name, v.quota.how);
                }
            }
            Ok(0)
        }
        VolumeCmd::Ls {
            label,
            json,
            quiet,
            target,
        } => {
            let all = target::volumes(&target)?.list(label.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if quiet {
                for v in &all {
                    println!("{}", v.name);
                }
            } else {
                print_table(&all);
            }
            Ok(0)
        }
        VolumeCmd::Inspect { name, target } => {
            let v = target::volumes(&target)?.get(&name)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
        VolumeCmd::Rm { names, target } => {
            if names.is_empty() {
                anyhow::bail!(aibox_runtime::Error::InvalidSpec(
                    "give at least one volume name".into()
                ));
            }
            let volumes = target::volumes(&target)?;
            let mut failed = 0u8;
            for n in names {
                let r = match split_at(&n) {
                    (v, Some(snap)) => volumes.remove_snapshot(v, snap),
                    (v, None) => volumes.remove(v),
                };
                match r {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        eprintln!("aibox: {n}: {e}");
                        failed = 1;
                    }
                }
            }
            Ok(failed)
        }
        VolumeCmd::Snapshot {
            name,
            snapshot,
            target,
        } => {
            target::volumes(&target)?.snapshot(&name, &snapshot)?;
            println!("{name}@{snapshot}");
            Ok(0)
        }
        VolumeCmd::Clone {
            source,
            name,
            labels,
            target,
        } => {
            let (from, snapshot) = split_at(&source);
            let req = CloneRequest {
                name,
                snapshot: snapshot.map(str::to_string),
                labels: super::parse_labels(&labels)?,
            };
            let v = target::volumes(&target)?.clone(from, &req)?;
            println!("{}", v.name);
            Ok(0)
        }
    }
}
