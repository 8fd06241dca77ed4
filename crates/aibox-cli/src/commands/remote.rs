//! The verbs only the aibox server has: network policy, files copied in
//! and out, usage, keys and the audit log.

use crate::args::{AuditCmd, ExecArgs, KeysCmd, Target};
use aibox_client::{query_escape, Body, Client, ClientError, Method};
use serde_json::{json, Value};

pub(crate) fn client() -> Result<Client, ClientError> {
    Client::from_env()
}

pub(crate) fn sandbox_path(id: &str) -> anyhow::Result<String> {
    if !aibox_types::validate_id(id) {
        anyhow::bail!(aibox_runtime::Error::InvalidSpec(format!(
            "{id:?} is not a sandbox id"
        )));
    }
    Ok(format!("/v1/sandboxes/{id}"))
}

pub fn network(cmd: crate::args::NetworkCmd) -> anyhow::Result<u8> {
    use crate::args::NetworkCmd;
    let c = client()?;
    let (id, v) = match cmd {
        NetworkCmd::Show { id } => {
            let v = c.sandbox(&id)?;
            (id, v)
        }
        NetworkCmd::Set {
            id,
            mode,
            allow,
            deny,
            clear,
        } => {
            let cur = c.sandbox(&id)?.typed_spec().unwrap_or_default();
            let kept = if clear { vec![] } else { cur.network_rules };
            let mode = match mode {
                None => cur.network,
                Some(m) => serde_json::from_value(json!(m)).map_err(|_| {
                    aibox_runtime::Error::InvalidSpec(format!(
                        "--mode {m:?}: expected none, allowlist or full"
                    ))
                })?,
            };
            let req = aibox_types::api::NetworkRequest {
                mode,
                rules: super::rules_of(&kept, &allow, &deny)?,
                enforcement: None,
            };
            let v = c.set_network(&id, &req)?;
            (id, v)
        }
    };
    let spec = v.typed_spec().unwrap_or_default();
    println!("{id}: network {}", spec.network);
    for r in &spec.network_rules {
        println!("  {r}");
    }
    Ok(0)
}

/// `aibox shell`: an interactive login shell through exec.
pub fn shell_args(id: &str, shell: &str, target: Target) -> ExecArgs {
    ExecArgs {
        id: id.to_string(),
        interactive: true,
        tty: true,
        env: vec![],
        workdir: None,
        user: None,
        timeout: None,
        max_output: None,
        detach: false,
        target,
        command: vec![shell.to_string(), "-l".into()],
    }
}

/// `ID:PATH` → (id, path).
fn remote_path(s: &str) -> Option<(&str, &str)> {
    let (id, path) = s.split_once(':')?;
    (aibox_types::validate_id(id) && path.starts_with('/')).then_some((id, path))
}

pub fn cp(src: &str, dest: &str) -> anyhow::Result<u8> {
    let c = client()?;
    let _p = super::progress::Progress::start(format!("copying {src} to {dest}"));
    match (remote_path(src), remote_path(dest)) {
        (None, Some((id, path))) => {
            let local = std::path::Path::new(src);
            let md = std::fs::metadata(local)?;
            if md.is_dir() {
                let mut tar = tar::Builder::new(Vec::new());
                tar.append_dir_all(".", local)?;
                let data = tar.into_inner()?;
                c.call(
                    Method::PUT,
                    &format!("{}/tar?path={}", sandbox_path(id)?, query_escape(path)),
                    Body::Raw(data),
                )?;
            } else {
                use std::os::unix::fs::PermissionsExt;
                let mode = md.permissions().mode() & 0o7777;
                c.call(
                    Method::PUT,
                    &format!(
                        "{}/files?path={}&mode={mode:o}",
                        sandbox_path(id)?,
                        query_escape(path)
                    ),
                    Body::Raw(std::fs::read(local)?),
                )?;
            }
        }
        (Some((id, path)), None) => {
            let st = c.json(
                Method::GET,
                &format!(
                    "{}/files/stat?path={}",
                    sandbox_path(id)?,
                    query_escape(path)
                ),
                Body::Empty,
            )?;
            if st["kind"] == "dir" {
                let r = c.call(
                    Method::GET,
                    &format!("{}/tar?path={}", sandbox_path(id)?, query_escape(path)),
                    Body::Empty,
                )?;
                std::fs::create_dir_all(dest)?;
                tar::Archive::new(r.body.as_ref()).unpack(dest)?;
            } else {
                let r = c.call(
                    Method::GET,
                    &format!("{}/files?path={}", sandbox_path(id)?, query_escape(path)),
                    Body::Empty,
                )?;
                let target = match std::fs::metadata(dest) {
                    Ok(m) if m.is_dir() => std::path::Path::new(dest).join(
                        std::path::Path::new(path)
                            .file_name()
                            .unwrap_or_else(|| std::ffi::OsStr::new("file")),
                    ),
                    _ => std::path::PathBuf::from(dest),
                };
                std::fs::write(target, &r.body)?;
            }
        }
        _ => anyhow::bail!(aibox_runtime::Error::InvalidSpec(
            "usage: aibox cp SRC ID:/DEST or aibox cp ID:/SRC DEST (sandbox paths are absolute)"
                .into()
        )),
    }
    Ok(0)
}

pub fn stats(id: &str, json_out: bool) -> anyhow::Result<u8> {
    let v = client()?.json(Method::GET, &sandbox_path(id)?, Body::Empty)?;
    let u = &v["usage"];
    if json_out {
        println!("{}", serde_json::to_string_pretty(u)?);
        return Ok(0);
    }
    let mib = |k: &str| {
        u[k].as_u64()
            .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
            .unwrap_or_else(|| "-".into())
    };
    println!("state      {}", v["state"].as_str().unwrap_or("-"));
    println!(
        "cpu        {}",
        u["cpu_usec"]
            .as_u64()
            .map(|us| format!("{:.3} s", us as f64 / 1e6))
            .unwrap_or_else(|| "-".into())
    );
    println!(
        "memory     {} (peak {})",
        mib("memory_bytes"),
        mib("memory_peak_bytes")
    );
    println!(
        "pids       {}",
        u["pids"].as_u64().map_or("-".into(), |p| p.to_string())
    );
    Ok(0)
}

pub fn keys(cmd: KeysCmd) -> anyhow::Result<u8> {
    let c = client()?;
    match cmd {
        KeysCmd::Ls { json: as_json } => {
            let v = c.json(Method::GET, "/v1/keys", Body::Empty)?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&v["keys"])?);
                return Ok(0);
            }
            println!("{:<16} {:<20} {:<6} STATE", "ID", "NAME", "SCOPE");
            for k in v["keys"].as_array().into_iter().flatten() {
                println!(
                    "{:<16} {:<20} {:<6} {}",
                    k["id"].as_str().unwrap_or("-"),
                    k["name"].as_str().unwrap_or("-"),
                    k["scope"].as_str().unwrap_or("-"),
                    if k["revoked_ms"].is_null() {
                        "live"
                    } else {
                        "revoked"
                    }
                );
            }
        }
        KeysCmd::Create {
            name,
            admin,
            max_sandboxes,
            max_memory,
            ceiling,
        } => {
            let mut body = json!({"name": name, "scope": if admin { "admin" } else { "user" }});
            if let Some(c) = ceiling {
                body["ceiling"] = parse_ceiling(&c)?;
            }
            if let Some(m) = max_sandboxes {
                body["max_sandboxes"] = json!(m);
            }
            if let Some(m) = max_memory {
                body["max_memory"] = json!(m);
            }
            let v = c.json(Method::POST, "/v1/keys", Body::Json(body))?;
            eprintln!(
                "key {} created; its secret is shown only now:",
                v["id"].as_str().unwrap_or("?")
            );
            println!("{}", v["key"].as_str().unwrap_or_default());
        }
        KeysCmd::Ceiling { id, json, clear } => {
            let ceiling = match (json, clear) {
                (_, true) => Value::Null,
                (Some(j), false) => parse_ceiling(&j)?,
                (None, false) => anyhow::bail!("give the ceiling as JSON, or --clear"),
            };
            let v = c.json(
                Method::PATCH,
                &format!("/v1/keys/{}", query_escape(&id)),
                Body::Json(json!({ "ceiling": ceiling })),
            )?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        KeysCmd::Rm { id } => {
            c.call(
                Method::DELETE,
                &format!("/v1/keys/{}", query_escape(&id)),
                Body::Empty,
            )?;
        }
    }
    Ok(0)
}

/// A ceiling as the operator typed it: a JSON object (the server checks
/// its fields and says which one is wrong).
fn parse_ceiling(text: &str) -> anyhow::Result<Value> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| anyhow::anyhow!("the ceiling is not JSON: {e}"))?;
    anyhow::ensure!(v.is_object(), "the ceiling must be a JSON object");
    Ok(v)
}

pub fn audit(cmd: AuditCmd) -> anyhow::Result<u8> {
    let c = client()?;
    let mut all = Vec::new();
    let mut after = 0u64;
    loop {
        let v = c.json(
            Method::GET,
            &format!("/v1/audit?after={after}"),
            Body::Empty,
        )?;
        let batch = v["entries"].as_array().cloned().unwrap_or_default();
        if batch.is_empty() {
            break;
        }
        after = batch
            .last()
            .and_then(|e| e["seq"].as_u64())
            .unwrap_or(after);
        all.extend(batch);
    }
    match cmd {
        AuditCmd::Export => {
            for e in &all {
                println!("{e}");
            }
        }
        AuditCmd::Ls { limit } => {
            for e in all.iter().skip(all.len().saturating_sub(limit)) {
                println!(
                    "{:>6} {:>14} {:<16} {:<24} {:<14} {}",
                    e["seq"],
                    e["at_ms"],
                    e["actor"].as_str().unwrap_or("-"),
                    e["action"].as_str().unwrap_or("-"),
                    e["sandbox"].as_str().unwrap_or("-"),
                    e["detail"]
                );
            }
        }
        AuditCmd::Verify => {
            let v = c.json(Method::GET, "/v1/audit/verify", Body::Empty)?;
            if v["ok"].as_bool() == Some(true) {
                println!("audit log intact: {} entries", v["entries"]);
            } else {
                println!("audit log broken at entry {}", v["broken_at"]);
                return Ok(1);
            }
        }
    }
    Ok(0)
}
