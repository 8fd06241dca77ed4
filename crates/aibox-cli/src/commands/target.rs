//! Where the sandbox verbs act: through the aibox server (the default:
//! `AIBOX_URL`/`AIBOX_KEY`, else the local server), or on this host's
//! runtime (`--local` or `AIBOX_LOCAL=1`: daemonless). Each verb is
//! written once over [`Sandboxes`]; what one side cannot honour is refused
//! there, by name.

use crate::args::Target;
use aibox_client::{sandbox_path, Body, Client, Method};
use aibox_protocol::{read_frame, write_frame, AgentMsg, ClientMsg, ExecRequest, Kind, PtySize};
use aibox_runtime::{ClientError, Runtime};
use aibox_types::api::{
    CloneRequest, CreateRequest, Limits, SandboxState, SandboxView, SnapshotView, VolumeRequest,
    VolumeSnapshotRequest, VolumeView,
};
use aibox_types::{SandboxSpec, User};
use serde_json::{json, Map, Value};
use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;

/// A command to run in a sandbox, as the flags of `aibox exec` give it.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub user: Option<User>,
    pub timeout_ms: Option<u64>,
    pub max_output: Option<u64>,
    /// Pass our stdin to the command (`-i`; a tty implies it).
    pub stdin: bool,
    /// A pseudo-terminal, when our stdin is one (`-t`).
    pub tty: bool,
    /// Start it in the background and print its process id (`-d`).
    pub detach: bool,
}

/// The sandboxes a verb acts on.
pub trait Sandboxes {
    fn create(&self, req: &CreateRequest) -> anyhow::Result<SandboxView>;
    fn list(&self) -> anyhow::Result<Vec<SandboxView>>;
    /// One sandbox, with its live usage.
    fn get(&self, id: &str) -> anyhow::Result<SandboxView>;
    fn remove(&self, id: &str) -> anyhow::Result<()>;
    fn pause(&self, id: &str, pause: bool) -> anyhow::Result<()>;
    /// Run `run` to its end (or start it, detached); the exit code to
    /// leave with: the command's, 124 when it ran out of time.
    fn exec(&self, id: &str, run: &Run) -> anyhow::Result<u8>;
    fn snapshot(&self, id: &str, name: Option<String>) -> anyhow::Result<SnapshotView>;
    fn snapshots(&self) -> anyhow::Result<Vec<SnapshotView>>;
    fn delete_snapshot(&self, id: &str) -> anyhow::Result<()>;
    /// `count` sandboxes from a snapshot (the request's fields over its
    /// spec), all or none.
    fn fork(
        &self,
        snapshot: &str,
        req: &CreateRequest,
        count: u64,
    ) -> anyhow::Result<Vec<SandboxView>>;
}

/// The side `target` names.
pub fn open(target: &Target) -> anyhow::Result<Box<dyn Sandboxes>> {
    Ok(if target.is_local() {
        Box::new(Local { rt: Runtime::new() })
    } else {
        Box::new(Server {
            client: Client::from_env()?,
        })
    })
}

/// Through the aibox server's REST API.
pub struct Server {
    client: Client,
}

impl Sandboxes for Server {
    fn create(&self, req: &CreateRequest) -> anyhow::Result<SandboxView> {
        Ok(self.client.create_sandbox(req, None)?)
    }

    fn list(&self) -> anyhow::Result<Vec<SandboxView>> {
        let api = self.client.async_client();
        let mut all = Vec::new();
        let mut q = aibox_types::api::ListQuery {
            limit: Some(1000),
            ..Default::default()
        };
        loop {
            let page = self.client.wait(api.sandboxes(&q))?;
            all.extend(page.sandboxes);
            match page.next {
                Some(n) => q.cursor = Some(n),
                None => return Ok(all),
            }
        }
    }

    fn get(&self, id: &str) -> anyhow::Result<SandboxView> {
        Ok(self.client.sandbox(id)?)
    }

    fn remove(&self, id: &str) -> anyhow::Result<()> {
        let api = self.client.async_client();
        Ok(self.client.wait(api.delete_sandbox(id))?)
    }

    fn pause(&self, id: &str, pause: bool) -> anyhow::Result<()> {
        let api = self.client.async_client();
        if pause {
            self.client.wait(api.pause_sandbox(id))?;
        } else {
            self.client.wait(api.resume_sandbox(id))?;
        }
        Ok(())
    }

    fn snapshot(&self, id: &str, name: Option<String>) -> anyhow::Result<SnapshotView> {
        let req = aibox_types::api::SnapshotRequest { name };
        Ok(self.client.wait(self.snapshot_ops().snapshot(id, &req))?)
    }

    fn snapshots(&self) -> anyhow::Result<Vec<SnapshotView>> {
        Ok(self.client.wait(self.snapshot_ops().snapshots())?.snapshots)
    }

    fn delete_snapshot(&self, id: &str) -> anyhow::Result<()> {
        Ok(self.client.wait(self.snapshot_ops().delete_snapshot(id))?)
    }

    fn fork(
        &self,
        snapshot: &str,
        req: &CreateRequest,
        count: u64,
    ) -> anyhow::Result<Vec<SandboxView>> {
        let api = self.snapshot_ops();
        if count == 1 {
            return Ok(vec![self.client.wait(api.restore(snapshot, req))?]);
        }
        Ok(self.client.wait(api.fork(snapshot, req, count))?.sandboxes)
    }

    fn exec(&self, id: &str, run: &Run) -> anyhow::Result<u8> {
        use aibox_client::{StreamEvent, StreamInput};
        use std::io::Write;
        if run.detach {
            return self.exec_detached(id, run);
        }
        let stdin = std::io::stdin();
        let tty = run.tty && stdin.is_terminal();
        let mut env: Map<String, Value> =
            run.env.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let mut start = json!({"cmd": run.argv});
        if tty {
            let (rows, cols) = aibox_sys::get_winsize(stdin.as_fd()).unwrap_or((24, 80));
            start["pty"] = json!({"rows": rows, "cols": cols});
            env.entry("TERM")
                .or_insert_with(|| json!(std::env::var("TERM").unwrap_or_else(|_| "xterm".into())));
        }
        start["env"] = Value::Object(env);
        if let Some(w) = &run.cwd {
            start["cwd"] = json!(w);
        }
        if let Some(u) = run.user {
            start["user"] = json!(u);
        }
        if let Some(t) = run.timeout_ms {
            start["timeout_ms"] = json!(t);
        }
        if let Some(m) = run.max_output {
            start["max_output"] = json!(m);
        }
        let c = &self.client;
        let (tx, rx) = std::sync::mpsc::channel::<StreamInput>();
        if run.stdin || tty {
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
        let path = format!("{}/exec/ws", sandbox_path(id)?);
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
}

impl Server {
    fn snapshot_ops(&self) -> aibox_client::AsyncClient {
        self.client.async_client()
    }

    /// A background process (`aibox exec -d`): its id.
    fn exec_detached(&self, id: &str, run: &Run) -> anyhow::Result<u8> {
        let req = aibox_types::api::StartRequest {
            cmd: aibox_types::api::Cmd::Argv(run.argv.clone()),
            env: run.env.iter().cloned().collect(),
            cwd: run.cwd.clone(),
            user: run.user,
            timeout_ms: run.timeout_ms,
            stdin: false,
        };
        let v = self.client.json(
            Method::POST,
            &format!("{}/processes", sandbox_path(id)?),
            Body::Json(serde_json::to_value(&req)?),
        )?;
        println!("{}", v["id"]);
        Ok(0)
    }
}

/// On this host's runtime, no server.
pub struct Local {
    rt: Runtime,
}

/// A local sandbox's record as the API shows a sandbox.
fn view_of(sb: &aibox_runtime::Sandbox) -> SandboxView {
    let r = sb.record();
    let now = aibox_types::now_ms();
    let expires = r.spec.timeout_ms.map(|t| r.created_unix_ms + t);
    SandboxView {
        id: r.id.clone(),
        state: if sb.paused() {
            SandboxState::Paused
        } else {
            SandboxState::Running
        },
        created_at_ms: r.created_unix_ms,
        expires_at_ms: expires,
        remaining_ms: expires.map(|e| e.saturating_sub(now)),
        idle_timeout_seconds: None,
        labels: Default::default(),
        spec: serde_json::to_value(&r.spec).unwrap_or(Value::Null),
        limits: Some(Limits::of(&r.spec)),
        isolation: serde_json::to_value(&r.isolation).unwrap_or(Value::Null),
        public_ports: false,
        usage: serde_json::to_value(sb.stats()).ok(),
    }
}

impl Sandboxes for Local {
    fn create(&self, req: &CreateRequest) -> anyhow::Result<SandboxView> {
        let sb = self.rt.create(&local_spec(req)?)?;
        Ok(view_of(&sb))
    }

    fn list(&self) -> anyhow::Result<Vec<SandboxView>> {
        self.rt.gc();
        Ok(self
            .rt
            .list()
            .iter()
            .filter_map(|r| self.rt.get(&r.id).ok())
            .map(|sb| view_of(&sb))
            .collect())
    }

    fn get(&self, id: &str) -> anyhow::Result<SandboxView> {
        Ok(view_of(&self.rt.get(id)?))
    }

    fn remove(&self, id: &str) -> anyhow::Result<()> {
        Ok(self.rt.get(id)?.destroy()?)
    }

    fn pause(&self, id: &str, pause: bool) -> anyhow::Result<()> {
        let sb = self.rt.get(id)?;
        if pause {
            sb.pause()?;
        } else {
            sb.resume()?;
        }
        Ok(())
    }

    fn snapshot(&self, id: &str, name: Option<String>) -> anyhow::Result<SnapshotView> {
        Ok(snapshot_view(&self.rt.snapshot(id, name.as_deref())?))
    }

    fn snapshots(&self) -> anyhow::Result<Vec<SnapshotView>> {
        Ok(self.rt.snapshots().iter().map(snapshot_view).collect())
    }

    fn delete_snapshot(&self, id: &str) -> anyhow::Result<()> {
        Ok(self.rt.delete_snapshot(id)?)
    }

    fn fork(
        &self,
        snapshot: &str,
        req: &CreateRequest,
        count: u64,
    ) -> anyhow::Result<Vec<SandboxView>> {
        let meta = self.rt.snapshot_info(snapshot)?;
        let mut spec = meta.spec.clone();
        refuse_server_only(req)?;
        req.apply(&mut spec)
            .map_err(|e| aibox_runtime::Error::InvalidSpec(e.to_string()))?;
        spec.snapshot = Some(meta.id.clone());
        spec.timeout_ms = req.ttl_seconds.map(|s| s * 1000);
        let mut made: Vec<SandboxView> = Vec::new();
        for i in 0..count {
            match self.rt.create(&spec) {
                Ok(sb) => {
                    made.push(view_of(&sb));
                    if count > 1 && std::io::stderr().is_terminal() {
                        eprint!("\rforked {}/{count} ", i + 1);
                    }
                }
                Err(e) => {
                    // All or none.
                    for v in &made {
                        if let Ok(sb) = self.rt.get(&v.id) {
                            let _ = sb.destroy();
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

    fn exec(&self, id: &str, run: &Run) -> anyhow::Result<u8> {
        let rt = &self.rt;
        let client = rt.agent_client(id)?;
        let stdin = std::io::stdin();
        let tty = run.tty && stdin.is_terminal();
        let pty = if tty {
            let (rows, cols) = aibox_sys::get_winsize(stdin.as_fd()).unwrap_or((24, 80));
            Some(PtySize { rows, cols })
        } else {
            None
        };
        let mut env = run.env.clone();
        if tty && !env.iter().any(|(k, _)| k == "TERM") {
            env.push((
                "TERM".into(),
                std::env::var("TERM").unwrap_or_else(|_| "xterm".into()),
            ));
        }
        let req = ExecRequest {
            argv: run.argv.clone(),
            env,
            cwd: run.cwd.clone(),
            user: run.user,
            stdin: run.stdin || tty,
            timeout_ms: run.timeout_ms,
            max_output: run.max_output,
            pty,
            background: run.detach,
            ..Default::default()
        };
        // A paused sandbox's agent cannot answer: say so instead of hanging.
        let paused = || {
            let paused = rt.get(id).map(|sb| sb.paused()).unwrap_or(false);
            paused.then(|| aibox_runtime::ClientError::Agent {
                code: aibox_types::ErrorCode::Conflict,
                message: format!("sandbox {id} is paused: `aibox resume {id}` first"),
            })
        };
        let (mut s, id, _pid) = client
            .exec_start_checked(req, std::time::Duration::from_millis(500), &paused)
            .map_err(aibox_runtime::Error::from)?;
        if run.detach {
            println!("{id}");
            return Ok(0);
        }
        let saved = if tty {
            aibox_sys::make_raw(stdin.as_fd()).ok()
        } else {
            None
        };
        let r = relay(&mut s, run.stdin || tty, tty);
        if let Some(t) = saved {
            let _ = aibox_sys::restore_termios(stdin.as_fd(), &t);
        }
        let exit = r?;
        if exit.timed_out {
            eprintln!("aibox: command timed out");
            return Ok(124);
        }
        Ok(exit.status().clamp(0, 255) as u8)
    }
}

/// A local snapshot as the API shows one.
fn snapshot_view(m: &aibox_runtime::SnapshotMeta) -> SnapshotView {
    SnapshotView {
        id: m.id.clone(),
        name: m.name.clone(),
        source_sandbox: m.source.clone(),
        created_at_ms: m.created_unix_ms,
        template: m.template.clone(),
        size_bytes: m.size_bytes,
        entries: m.entries,
        consistent: m.consistent,
        memory: m.memory,
        volumes: aibox_types::api::SnapshotVolume::of(
            &serde_json::to_value(&m.spec).unwrap_or(Value::Null),
        ),
        spec: serde_json::to_value(&m.spec).unwrap_or(Value::Null),
    }
}

/// The spec `--local` creates: the request over the defaults, with the
/// fields only the server can honour refused by name.
fn local_spec(req: &CreateRequest) -> anyhow::Result<SandboxSpec> {
    refuse_server_only(req)?;
    let mut spec = SandboxSpec::default();
    req.apply(&mut spec)
        .map_err(|e| aibox_runtime::Error::InvalidSpec(e.to_string()))?;
    spec.timeout_ms = req.ttl_seconds.map(|s| s * 1000);
    Ok(spec)
}

/// A request field only the server can honour, refused by name.
fn refuse_server_only(req: &CreateRequest) -> anyhow::Result<()> {
    let server_only = [
        (req.network.is_some(), "network egress goes through the aibox server's proxy (--network, --allow, --deny, --enforcement)"),
        (req.public, "published ports are served by the aibox server (--public; `aibox port-forward --local` reaches a port without it)"),
        (!req.labels.is_empty(), "labels are kept by the aibox server (--label)"),
        (req.idle_timeout_seconds.is_some(), "the idle timeout is the aibox server's (--idle-timeout)"),
        (req.snapshot.is_some(), "a create from a snapshot is the server's (--snapshot; `aibox restore --local SNAPSHOT` starts one from a local snapshot)"),
        (req.workspace.is_some(), "workspaces and their history are kept by the aibox server (--workspace)"),
    ];
    if let Some((_, what)) = server_only.iter().find(|(set, _)| *set) {
        anyhow::bail!(aibox_runtime::Error::Unsupported(format!(
            "{what}: drop --local"
        )));
    }
    Ok(())
}

/// Copy our stdin to the process and its output to our stdout/stderr until
/// it exits. Forwards SIGINT/SIGTERM (non-tty) and window resizes (tty).
pub(crate) fn relay(
    s: &mut std::os::unix::net::UnixStream,
    forward_stdin: bool,
    tty: bool,
) -> Result<aibox_protocol::ExitInfo, aibox_runtime::Error> {
    let sigs: &[i32] = if tty {
        &[libc::SIGWINCH, libc::SIGTERM, libc::SIGHUP]
    } else {
        &[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT]
    };
    let sigfd =
        aibox_sys::signalfd(sigs).map_err(|e| aibox_runtime::Error::Helper(e.to_string()))?;
    let stdin = std::io::stdin();
    let mut stdin_open = forward_stdin;
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let mut buf = vec![0u8; 32 * 1024];
    let proto = |e| aibox_runtime::Error::Agent(ClientError::Protocol(e));
    loop {
        let sock = s
            .try_clone()
            .map_err(|e| proto(aibox_protocol::FrameError::Io(e)))?;
        let mut fds = vec![sock.as_fd(), sigfd.as_fd()];
        if stdin_open {
            fds.push(stdin.as_fd());
        }
        let ready = aibox_sys::poll_readable(&fds, None)
            .map_err(|e| proto(aibox_protocol::FrameError::Io(e)))?;
        if ready[0] {
            let f = read_frame(s).map_err(proto)?;
            match f.kind {
                Kind::Stdout => {
                    let _ = out.write_all(&f.payload);
                    let _ = out.flush();
                }
                Kind::Stderr => {
                    let _ = err.write_all(&f.payload);
                }
                Kind::Control => {
                    let msg: AgentMsg = serde_json::from_slice(&f.payload)
                        .map_err(|e| proto(aibox_protocol::FrameError::BadJson(e)))?;
                    match msg {
                        AgentMsg::Exit(e) => return Ok(e),
                        AgentMsg::Error { code, message } => {
                            return Err(aibox_runtime::Error::Agent(ClientError::Agent {
                                code,
                                message,
                            }))
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if ready[1] {
            if let Ok(sig) = aibox_sys::read_signal(sigfd.as_fd()) {
                if sig == libc::SIGWINCH {
                    if let Ok((rows, cols)) = aibox_sys::get_winsize(stdin.as_fd()) {
                        let _ = ClientMsg::Resize(PtySize { rows, cols }).send(s);
                    }
                } else {
                    let _ = ClientMsg::Signal { signal: sig }.send(s);
                }
            }
        }
        if stdin_open && ready.get(2) == Some(&true) {
            match stdin.lock().read(&mut buf) {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    let _ = write_frame(s, Kind::Stdin, &[]);
                }
                Ok(n) => {
                    if write_frame(s, Kind::Stdin, &buf[..n]).is_err() {
                        stdin_open = false;
                    }
                }
            }
        }
    }
}

/// The volumes a `aibox volume` verb acts on: the server's (the caller's
/// own), or without one this host's (names are the host's then).
pub trait Volumes {
    fn create(&self, req: &VolumeRequest) -> anyhow::Result<VolumeView>;
    fn list(&self, label: Option<&str>) -> anyhow::Result<Vec<VolumeView>>;
    fn get(&self, name: &str) -> anyhow::Result<VolumeView>;
    fn remove(&self, name: &str) -> anyhow::Result<()>;
    fn snapshot(&self, name: &str, snapshot: &str) -> anyhow::Result<VolumeView>;
    fn remove_snapshot(&self, name: &str, snapshot: &str) -> anyhow::Result<()>;
    fn clone(&self, name: &str, req: &CloneRequest) -> anyhow::Result<VolumeView>;
}

/// The side `target` names.
pub fn volumes(target: &Target) -> anyhow::Result<Box<dyn Volumes>> {
    Ok(if target.is_local() {
        Box::new(Local { rt: Runtime::new() })
    } else {
        Box::new(Server {
            client: Client::from_env()?,
        })
    })
}

impl Volumes for Server {
    fn create(&self, req: &VolumeRequest) -> anyhow::Result<VolumeView> {
        let api = self.client.async_client();
        Ok(self.client.wait(api.create_volume(req))?)
    }

    fn list(&self, label: Option<&str>) -> anyhow::Result<Vec<VolumeView>> {
        let api = self.client.async_client();
        Ok(self.client.wait(api.volumes(label))?.volumes)
    }

    fn get(&self, name: &str) -> anyhow::Result<VolumeView> {
        let api = self.client.async_client();
        Ok(self.client.wait(api.volume(name))?)
    }

    fn remove(&self, name: &str) -> anyhow::Result<()> {
        let api = self.client.async_client();
        Ok(self.client.wait(api.delete_volume(name))?)
    }

    fn snapshot(&self, name: &str, snapshot: &str) -> anyhow::Result<VolumeView> {
        let api = self.client.async_client();
        let req = VolumeSnapshotRequest {
            name: snapshot.to_string(),
        };
        Ok(self.client.wait(api.snapshot_volume(name, &req))?)
    }

    fn remove_snapshot(&self, name: &str, snapshot: &str) -> anyhow::Result<()> {
        let api = self.client.async_client();
        Ok(self
            .client
            .wait(api.delete_volume_snapshot(name, snapshot))?)
    }

    fn clone(&self, name: &str, req: &CloneRequest) -> anyhow::Result<VolumeView> {
        let api = self.client.async_client();
        Ok(self.client.wait(api.clone_volume(name, req))?)
    }
}

impl Volumes for Local {
    fn create(&self, req: &VolumeRequest) -> anyhow::Result<VolumeView> {
        if let Err(e) = aibox_types::api::check_labels(&req.labels) {
            anyhow::bail!(aibox_runtime::Error::InvalidSpec(format!("labels: {e}")));
        }
        if self.rt.volumes().iter().any(|v| v.name == req.name) {
            anyhow::bail!(aibox_runtime::Error::Conflict(format!(
                "a volume named {:?} exists already",
                req.name
            )));
        }
        let size = match &req.size {
            Some(s) => {
                s.bytes()
                    .map_err(|e| aibox_runtime::Error::InvalidSpec(format!("--size: {e}")))?
                    .0
            }
            None => 1 << 30,
        };
        let meta = self.rt.create_volume(&aibox_runtime::volume::NewVolume {
            name: req.name.clone(),
            size_bytes: size,
            uid: req.uid.unwrap_or(1000),
            labels: req.labels.clone(),
            owner: None,
        })?;
        Ok(self.rt.volume_view(&meta))
    }

    fn list(&self, label: Option<&str>) -> anyhow::Result<Vec<VolumeView>> {
        let want = match label {
            None => None,
            Some(l) => match l.split_once('=') {
                Some((k, v)) if !k.is_empty() => Some((k, v)),
                _ => anyhow::bail!(aibox_runtime::Error::InvalidSpec(
                    "label filter must be K=V".into()
                )),
            },
        };
        let metas: Vec<_> = self
            .rt
            .volumes()
            .into_iter()
            .filter(|m| want.is_none_or(|(k, v)| m.labels.get(k).map(String::as_str) == Some(v)))
            .collect();
        Ok(self.rt.volume_views(&metas))
    }

    fn get(&self, name: &str) -> anyhow::Result<VolumeView> {
        Ok(self.rt.volume_view(&self.rt.find_volume(name)?))
    }

    fn remove(&self, name: &str) -> anyhow::Result<()> {
        Ok(self.rt.remove_volume(&self.rt.find_volume(name)?.id)?)
    }

    fn snapshot(&self, name: &str, snapshot: &str) -> anyhow::Result<VolumeView> {
        let meta = self.rt.find_volume(name)?;
        self.rt.snapshot_volume(&meta.id, snapshot)?;
        Ok(self.rt.volume_view(&meta))
    }

    fn remove_snapshot(&self, name: &str, snapshot: &str) -> anyhow::Result<()> {
        let meta = self.rt.find_volume(name)?;
        Ok(self.rt.remove_volume_snapshot(&meta.id, snapshot)?)
    }

    fn clone(&self, name: &str, req: &CloneRequest) -> anyhow::Result<VolumeView> {
        if self.rt.volumes().iter().any(|v| v.name == req.name) {
            anyhow::bail!(aibox_runtime::Error::Conflict(format!(
                "a volume named {:?} exists already",
                req.name
            )));
        }
        let meta = self.rt.find_volume(name)?;
        let made = self.rt.clone_volume(
            &meta.id,
            req.snapshot.as_deref(),
            &req.name,
            req.labels.clone(),
            None,
        )?;
        Ok(self.rt.volume_view(&made))
    }
}
