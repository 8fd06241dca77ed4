//! `aibox snapshot create|ls|rm`, `aibox restore`, `aibox fork`: through
//! the server, or with `--local` on this host's runtime.

use super::progress::Progress;
use crate::args::{OverrideArgs, SnapshotCmd};
use aibox_client::{Body, Client, Method};
use aibox_runtime::{Runtime, SnapshotMeta};
use serde_json::{json, Map, Value};
use std::io::IsTerminal;

fn check_id(id: &str, what: &str) -> anyhow::Result<()> {
    if !aibox_types::validate_id(id) {
        anyhow::bail!(aibox_runtime::Error::InvalidSpec(format!(
            "{id:?} is not a {what} id"
        )));
    }
    Ok(())
}

pub fn snapshot(cmd: SnapshotCmd) -> anyhow::Result<u8> {
    match cmd {
        SnapshotCmd::Create {
            id,
            name,
            json,
            target,
        } => {
            check_id(&id, "sandbox")?;
            let v = if target.is_local() {
                let _p = Progress::start(format!("snapshotting {id}"));
                serde_json::to_value(Runtime::new().snapshot(&id, name.as_deref())?)?
            } else {
                let body = match &name {
                    Some(n) => json!({ "name": n }),
                    None => json!({}),
                };
                let _p = Progress::start(format!("snapshotting {id}"));
                Client::from_env()?.json(
                    Method::POST,
                    &format!("/v1/sandboxes/{id}/snapshots"),
                    Body::Json(body),
                )?
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}", v["id"].as_str().unwrap_or_default());
            }
            Ok(0)
        }
        SnapshotCmd::Ls {
            json,
            quiet,
            target,
        } => {
            let all: Vec<Value> = if target.is_local() {
                Runtime::new().snapshots().iter().map(local_view).collect()
            } else {
                let v = Client::from_env()?.json(Method::GET, "/v1/snapshots", Body::Empty)?;
                v["snapshots"].as_array().cloned().unwrap_or_default()
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(0);
            }
            if quiet {
                for s in &all {
                    println!("{}", s["id"].as_str().unwrap_or_default());
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
                    s["id"].as_str().unwrap_or("-"),
                    s["name"].as_str().unwrap_or("-"),
                    s["source_sandbox"].as_str().unwrap_or("-"),
                    super::human(s["size_bytes"].as_u64().unwrap_or(0)),
                    format!(
                        "{}s",
                        now.saturating_sub(s["created_at_ms"].as_u64().unwrap_or(now)) / 1000
                    ),
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
            let c = if target.is_local() {
                None
            } else {
                Some(Client::from_env()?)
            };
            let mut failed = 0u8;
            for id in ids {
                let r = check_id(&id, "snapshot").and_then(|()| match &c {
                    Some(c) => c
                        .call(Method::DELETE, &format!("/v1/snapshots/{id}"), Body::Empty)
                        .map(drop)
                        .map_err(anyhow::Error::from),
                    None => Runtime::new()
                        .delete_snapshot(&id)
                        .map_err(anyhow::Error::from),
                });
                match r {
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

/// A local snapshot in the server's shape.
fn local_view(m: &SnapshotMeta) -> Value {
    json!({
        "id": m.id,
        "name": m.name,
        "source_sandbox": m.source,
        "created_at_ms": m.created_unix_ms,
        "template": m.template,
        "size_bytes": m.size_bytes,
        "entries": m.entries,
        "consistent": m.consistent,
        "spec": m.spec,
    })
}

/// `restore` (one sandbox, printed as an object) and `fork` (N, printed as
/// a list).
pub fn fork(snapshot: &str, count: u64, o: &OverrideArgs, single: bool) -> anyhow::Result<u8> {
    check_id(snapshot, "snapshot")?;
    if count == 0 {
        anyhow::bail!(aibox_runtime::Error::InvalidSpec(
            "--count must be at least 1".into()
        ));
    }
    let env = super::parse_env(&o.env)?;
    let made: Vec<Value> = if o.target.is_local() {
        fork_local(snapshot, count, o, &env)?
    } else {
        let mut body = super::limits_body(
            o.memory,
            o.disk,
            o.cpus,
            o.pids,
            o.timeout.map(|t| t.as_millis() as u64),
        );
        if !env.is_empty() {
            let m: Map<String, Value> = env.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            body.insert("env".into(), Value::Object(m));
        }
        let labels = super::parse_labels(&o.labels)?;
        if !labels.is_empty() {
            body.insert("labels".into(), json!(labels));
        }
        let c = Client::from_env()?;
        if single {
            let _p = Progress::start(format!("restoring {snapshot}"));
            vec![c.json(
                Method::POST,
                &format!("/v1/snapshots/{snapshot}/restore"),
                Body::Json(Value::Object(body)),
            )?]
        } else {
            body.insert("count".into(), json!(count));
            let _p = Progress::start(format!("forking {count} sandboxes from {snapshot}"));
            let v = c.json(
                Method::POST,
                &format!("/v1/snapshots/{snapshot}/fork"),
                Body::Json(Value::Object(body)),
            )?;
            v["sandboxes"].as_array().cloned().unwrap_or_default()
        }
    };
    if o.json {
        let out = if single {
            made.into_iter().next().unwrap_or(Value::Null)
        } else {
            Value::Array(made)
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for s in &made {
            println!("{}", s["id"].as_str().unwrap_or_default());
        }
    }
    Ok(0)
}

fn fork_local(
    snapshot: &str,
    count: u64,
    o: &OverrideArgs,
    env: &[(String, String)],
) -> anyhow::Result<Vec<Value>> {
    if !o.labels.is_empty() {
        anyhow::bail!(aibox_runtime::Error::InvalidSpec(
            "labels need the server".into()
        ));
    }
    let rt = Runtime::new();
    let meta = rt.snapshot_info(snapshot)?;
    let mut spec = meta.spec.clone();
    spec.snapshot = Some(meta.id.clone());
    spec.memory = o.memory.or(spec.memory);
    spec.disk = o.disk.or(spec.disk);
    spec.cpus = o.cpus.or(spec.cpus);
    spec.pids = o.pids.or(spec.pids);
    for (k, v) in env {
        spec.env.retain(|(old, _)| old != k);
        spec.env.push((k.clone(), v.clone()));
    }
    if o.timeout.is_some() {
        anyhow::bail!(aibox_runtime::Error::InvalidSpec(
            "--timeout (a lifetime) needs the server".into()
        ));
    }
    let mut made = Vec::new();
    for i in 0..count {
        match rt.create(&spec) {
            Ok(sb) => {
                made.push(
                    json!({"id": sb.id(), "spec": sb.record().spec, "isolation": sb.isolation()}),
                );
                if count > 1 && std::io::stderr().is_terminal() {
                    eprint!("\rforked {}/{count} ", i + 1);
                }
            }
            Err(e) => {
                // All or none.
                for m in &made {
                    if let Some(id) = m["id"].as_str() {
                        if let Ok(sb) = rt.get(id) {
                            let _ = sb.destroy();
                        }
                    }
                }
                return Err(e.into());
            }
        }
    }
    if count > 1 && std::io::stderr().is_terminal() {
        eprint!("\r\x1b[K");
    }
    Ok(made)
}
