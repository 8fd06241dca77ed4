//! The sandbox verbs through the aibox server (the default; `--local` acts
//! on this host's runtime directly).

use crate::args::{AuditCmd, ExecArgs, KeysCmd, ListArgs, Target};
use aibox_client::{query_escape, Body, Client, ClientError, Method};
use serde_json::{json, Map, Value};
use std::io::Read;

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
    let now = aibox_types::now_ms();
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
    use aibox_client::{StreamEvent, StreamInput};
    use std::io::{IsTerminal, Write};
    use std::os::fd::AsFd;
    if a.command.is_empty() {
        anyhow::bail!(aibox_runtime::Error::InvalidSpec(
            "missing command: usage is `aibox exec ID -- CMD [ARGS...]`".into()
        ));
    }
    let path = format!("{}/exec/ws", sandbox_path(&a.id)?);
    if a.detach {
        return exec_detached(&a);
    }
    let stdin = std::io::stdin();
    let tty = a.tty && stdin.is_terminal();
    let mut env: Map<String, Value> = super::parse_env(&a.env)?
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    let mut start = json!({"cmd": a.command});
    if tty {
        let (rows, cols) = aibox_sys::get_winsize(stdin.as_fd()).unwrap_or((24, 80));
        start["pty"] = json!({"rows": rows, "cols": cols});
        env.entry("TERM")
            .or_insert_with(|| json!(std::env::var("TERM").unwrap_or_else(|_| "xterm".into())));
    }
    start["env"] = Value::Object(env);
    if let Some(w) = &a.workdir {
        start["cwd"] = json!(w);
    }
    if let Some(u) = a.user {
        start["user"] = json!(u);
    }
    if let Some(t) = a.timeout {
        start["timeout_ms"] = json!(t.as_millis() as u64);
    }
    if let Some(m) = a.max_output {
        start["max_output"] = json!(m.0);
    }
    let c = client()?;
    let (tx, rx) = std::sync::mpsc::channel::<StreamInput>();
    if a.interactive || tty {
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            let mut input = std::io::stdin().lock();
            loop {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx2.send(StreamInput::Control(json!({"type": "stdin_close"})));
                        return;
                    }
                    Ok(n) => {
                        if tx2.send(StreamInput::Stdin(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    } else {
        let _ = tx.send(StreamInput::Control(json!({"type": "stdin_close"})));
    }
    if tty {
        // Follow the terminal's size (polling: no signal handler needed).
        let tx3 = tx.clone();
        std::thread::spawn(move || {
            let mut last = aibox_sys::get_winsize(std::io::stdin().as_fd()).ok();
            loop {
                std::thread::sleep(std::time::Duration::from_millis(250));
                let now = aibox_sys::get_winsize(std::io::stdin().as_fd()).ok();
                if now != last {
                    if let Some((rows, cols)) = now {
                        let m = json!({"type": "resize", "rows": rows, "cols": cols});
                        if tx3.send(StreamInput::Control(m)).is_err() {
                            return;
                        }
                    }
                    last = now;
                }
            }
        });
    }
    drop(tx);
    let saved = if tty {
        aibox_sys::make_raw(stdin.as_fd()).ok()
    } else {
        None
    };
    let mut failure: Option<String> = None;
    let result = c.stream(&path, Some(start), rx, |ev| match ev {
        StreamEvent::Stdout(d) => {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(&d);
            let _ = o.flush();
        }
        StreamEvent::Stderr(d) => {
            let _ = std::io::stderr().write_all(&d);
        }
        StreamEvent::Json(v) if v["type"] == "error" => {
            failure = Some(format!(
                "{} ({})",
                v["message"].as_str().unwrap_or("error"),
                v["code"].as_str().unwrap_or("error")
            ));
        }
        StreamEvent::Json(_) => {}
    });
    if let Some(t) = saved {
        let _ = aibox_sys::restore_termios(stdin.as_fd(), &t);
    }
    let exit = result?;
    if let Some(f) = failure {
        anyhow::bail!("{f}");
    }
    let Some(exit) = exit else {
        anyhow::bail!("the server closed the stream before the command exited");
    };
    // As `--local` and `timeout(1)` do: 124 for a command that ran out
    // of time.
    if exit["timed_out"].as_bool() == Some(true) {
        eprintln!("aibox: command timed out");
        return Ok(124);
    }
    Ok(exit["exit_code"].as_i64().unwrap_or(1).clamp(0, 255) as u8)
}

fn exec_detached(a: &ExecArgs) -> anyhow::Result<u8> {
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
    let v = client()?.json(
        Method::POST,
        &format!("{}/processes", sandbox_path(&a.id)?),
        Body::Json(body),
    )?;
    println!("{}", v["id"]);
    Ok(0)
}

pub fn shell(id: &str, shell: &str) -> anyhow::Result<u8> {
    exec(shell_args(id, shell, Target::default()))
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
