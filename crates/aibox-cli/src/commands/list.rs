//! `aibox ls`, `inspect`, `rm`, `pause`, `resume`: through the server or
//! (`--local`) on this host's runtime, the same way.

use super::target;
use crate::args::{ListArgs, Target};

pub fn list(a: ListArgs) -> anyhow::Result<u8> {
    let all = target::open(&a.target)?.list()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(0);
    }
    if a.quiet {
        for s in &all {
            println!("{}", s.id);
        }
        return Ok(0);
    }
    let now = aibox_types::now_ms();
    let secs = |ms: u64| format!("{}s", ms / 1000);
    println!(
        "{:<14} {:<9} {:<10} {:<10} {:>8} {:>10}",
        "ID", "STATE", "ISOLATION", "TEMPLATE", "AGE", "EXPIRES IN"
    );
    for s in &all {
        println!(
            "{:<14} {:<9} {:<10} {:<10} {:>8} {:>10}",
            s.id,
            s.state.as_str(),
            s.isolation["level"].as_str().unwrap_or("-"),
            s.spec["template"].as_str().unwrap_or("-"),
            secs(now.saturating_sub(s.created_at_ms)),
            s.expires_at_ms
                .map(|e| secs(e.saturating_sub(now)))
                .unwrap_or_else(|| "-".into()),
        );
    }
    Ok(0)
}

pub fn inspect(id: &str, target: &Target) -> anyhow::Result<u8> {
    let v = target::open(target)?.get(id)?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}

pub fn rm(ids: Vec<String>, all: bool, target: &Target) -> anyhow::Result<u8> {
    let sandboxes = target::open(target)?;
    let ids: Vec<String> = if all {
        sandboxes.list()?.into_iter().map(|s| s.id).collect()
    } else {
        ids
    };
    if ids.is_empty() && !all {
        anyhow::bail!(aibox_runtime::Error::InvalidSpec(
            "give at least one sandbox id, or --all".into()
        ));
    }
    let mut failed = 0u8;
    for id in ids {
        match sandboxes.remove(&id) {
            Ok(()) => println!("{id}"),
            Err(e) => {
                eprintln!("aibox: {id}: {e}");
                failed = 1;
            }
        }
    }
    Ok(failed)
}

pub fn pause(id: &str, pause: bool, target: &Target) -> anyhow::Result<u8> {
    target::open(target)?.pause(id, pause)?;
    Ok(0)
}
