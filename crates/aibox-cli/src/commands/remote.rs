//! The sandbox verbs through the aibox server (the default; `--local` acts
//! on this host's runtime directly).

use crate::args::{CreateArgs, ExecArgs, ListArgs};
use aibox_client::{Body, Client, ClientError, Method};
use serde_json::{json, Map, Value};
use std::io::Read;

fn client() -> Result<Client, ClientError> {
    Client::from_env()
}

fn sandbox_path(id: &str) -> anyhow::Result<String> {
    if !aibox_types::validate_id(id) {
        anyhow::bail!(aibox_runtime::Error::InvalidSpec(format!(
            "{id:?} is not a sandbox id"
        )));
    }
    Ok(format!("/v1/sandboxes/{id}"))
}

pub fn create(a: CreateArgs) -> anyhow::Result<u8> {
    let spec = super::spec_from(&a.spec)?;
    let mut body = Map::new();
    body.insert("template".into(), json!(spec.template));
    if let Some(m) = spec.memory {
        body.insert("memory".into(), json!(m.0));
    }
    if let Some(d) = spec.disk {
        body.insert("disk".into(), json!(d.0));
    }
    if let Some(c) = spec.cpus {
        body.insert("cpus".into(), json!(c));
    }
    if let Some(p) = spec.pids {
        body.insert("pids".into(), json!(p));
    }
    if let Some(t) = spec.timeout_ms {
        body.insert("ttl_seconds".into(), json!(t.div_ceil(1000)));
    }
    let env: Map<String, Value> = spec
        .env
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    body.insert("env".into(), Value::Object(env));
    body.insert("workdir".into(), json!(spec.workdir));
    body.insert("user".into(), json!(spec.user));
    if let Some(l) = spec.require_isolation {
        body.insert("require_isolation".into(), json!(l));
    }
    if let Some(h) = &spec.hostname {
        body.insert("hostname".into(), json!(h));
    }
    body.insert("mounts".into(), json!(spec.mounts));
    let mut labels = Map::new();
    for l in &a.labels {
        let Some((k, v)) = l.split_once('=') else {
            anyhow::bail!(aibox_runtime::Error::InvalidSpec(format!(
                "invalid label {l:?}: expected K=V"
            )));
        };
        labels.insert(k.to_string(), json!(v));
    }
    body.insert("labels".into(), Value::Object(labels));
    let v = client()?.json(
        Method::POST,
        "/v1/sandboxes",
        Body::Json(Value::Object(body)),
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", v["id"].as_str().unwrap_or_default());
    }
    Ok(0)
}

pub fn list(a: ListArgs) -> anyhow::Result<u8> {
    let c = client()?;
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(n) => format!("/v1/sandboxes?limit=1000&cursor={n}"),
            None => "/v1/sandboxes?limit=1000".to_string(),
        };
        let v = c.json(Method::GET, &path, Body::Empty)?;
        all.extend(v["sandboxes"].as_array().cloned().unwrap_or_default());
        match v["next"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(0);
    }
    if a.quiet {
        for s in &all {
            println!("{}", s["id"].as_str().unwrap_or_default());
        }
        return Ok(0);
    }
    let now = aibox_server::now_ms();
    println!(
        "{:<14} {:<9} {:<10} {:<10} {:>8} {:>10}",
        "ID", "STATE", "ISOLATION", "TEMPLATE", "AGE", "EXPIRES IN"
    );
    for s in &all {
        let secs = |ms: u64| format!("{}s", ms / 1000);
        println!(
            "{:<14} {:<9} {:<10} {:<10} {:>8} {:>10}",
            s["id"].as_str().unwrap_or("-"),
            s["state"].as_str().unwrap_or("-"),
            s["isolation"]["level"].as_str().unwrap_or("-"),
            s["spec"]["template"].as_str().unwrap_or("-"),
            secs(now.saturating_sub(s["created_at_ms"].as_u64().unwrap_or(now))),
            s["expires_at_ms"]
                .as_u64()
                .map(|e| secs(e.saturating_sub(now)))
                .unwrap_or_else(|| "-".into()),
        );
    }
    Ok(0)
}

pub fn inspect(id: &str) -> anyhow::Result<u8> {
    let v = client()?.json(Method::GET, &sandbox_path(id)?, Body::Empty)?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}

pub fn rm(ids: Vec<String>, all: bool) -> anyhow::Result<u8> {
    let c = client()?;
    let ids: Vec<String> = if all {
        let v = c.json(Method::GET, "/v1/sandboxes?limit=1000", Body::Empty)?;
        v["sandboxes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["id"].as_str().map(str::to_string))
            .collect()
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
        let r = sandbox_path(&id).and_then(|p| Ok(c.call(Method::DELETE, &p, Body::Empty)?));
        match r {
            Ok(_) => println!("{id}"),
            Err(e) => {
                eprintln!("aibox: {id}: {e}");
                failed = 1;
            }
        }
    }
    Ok(failed)
}

pub fn pause(id: &str, pause: bool) -> anyhow::Result<u8> {
    let verb = if pause { "pause" } else { "resume" };
    client()?.call(
        Method::POST,
        &format!("{}/{verb}", sandbox_path(id)?),
        Body::Empty,
    )?;
    Ok(0)
}

pub fn exec(a: ExecArgs) -> anyhow::Result<u8> {
    if a.command.is_empty() {
        anyhow::bail!(aibox_runtime::Error::InvalidSpec(
            "missing command: usage is `aibox exec ID -- CMD [ARGS...]`".into()
        ));
    }
    if a.tty || a.detach {
        anyhow::bail!(aibox_runtime::Error::Unsupported(
            "-t and -d are not available through the server yet: use `aibox exec --local`".into()
        ));
    }
    let env: Map<String, Value> = super::parse_env(&a.env)?
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    let mut body = json!({"cmd": a.command, "env": env});
    if let Some(w) = &a.workdir {
        body["cwd"] = json!(w);
    }
    if let Some(u) = a.user {
        body["user"] = json!(u);
    }
    if let Some(t) = a.timeout {
        body["timeout_ms"] = json!(t.as_millis() as u64);
    }
    if a.interactive {
        let mut input = String::new();
        std::io::stdin().read_to_string(&mut input)?;
        body["stdin"] = json!(input);
    }
    let v = client()?.json(
        Method::POST,
        &format!("{}/exec", sandbox_path(&a.id)?),
        Body::Json(body),
    )?;
    use std::io::Write;
    std::io::stdout().write_all(v["stdout"].as_str().unwrap_or_default().as_bytes())?;
    std::io::stderr().write_all(v["stderr"].as_str().unwrap_or_default().as_bytes())?;
    if v["timed_out"].as_bool() == Some(true) {
        eprintln!("aibox: command timed out");
    }
    Ok(v["exit_code"].as_i64().unwrap_or(1).clamp(0, 255) as u8)
}
