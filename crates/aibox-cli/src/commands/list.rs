//! `aibox ls`, `inspect`, `rm`.

use crate::args::ListArgs;
use aibox_runtime::Runtime;

pub fn list(a: ListArgs) -> anyhow::Result<u8> {
    let rt = Runtime::new();
    rt.gc();
    let recs = rt.list();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&recs)?);
        return Ok(0);
    }
    if a.quiet {
        for r in &recs {
            println!("{}", r.id);
        }
        return Ok(0);
    }
    println!(
        "{:<14} {:<8} {:<8} {:<10} {:<10} {:>10}",
        "ID", "STATE", "PID", "ISOLATION", "TEMPLATE", "MEMORY"
    );
    for r in &recs {
        let state = if !r.alive() {
            "dead"
        } else if r.cgroup.is_frozen() {
            "paused"
        } else {
            "running"
        };
        let mem = r
            .cgroup
            .stats()
            .memory_bytes
            .map(|m| format!("{:.1}M", m as f64 / 1048576.0))
            .unwrap_or_else(|| "-".into());
        let level = r
            .isolation
            .level
            .map(|l| l.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<14} {:<8} {:<8} {:<10} {:<10} {:>10}",
            r.id, state, r.pid, level, r.spec.template, mem
        );
    }
    Ok(0)
}

pub fn inspect(id: &str) -> anyhow::Result<u8> {
    let sb = Runtime::new().get(id)?;
    let v = serde_json::json!({
        "record": sb.record(),
        "alive": sb.alive(),
        "paused": sb.paused(),
        "stats": sb.stats(),
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}

pub fn rm(ids: Vec<String>, all: bool) -> anyhow::Result<u8> {
    let rt = Runtime::new();
    let ids: Vec<String> = if all {
        rt.list().into_iter().map(|r| r.id).collect()
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
        match rt.get(&id).and_then(|sb| sb.destroy()) {
            Ok(()) => println!("{id}"),
            Err(e) => {
                eprintln!("aibox: {id}: {e} [{}]", e.code());
                failed = 1;
            }
        }
    }
    Ok(failed)
}
