//! One connection: handshake, one operation, done.

use crate::procs::{self, Event};
use crate::Agent;
use aibox_protocol::{
    read_frame, recv, write_frame, AgentMsg, ClientMsg, ExitInfo, FrameError, Kind, Op,
    PROTOCOL_VERSION,
};
use aibox_types::{ErrorCode, User};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

/// Time a client has to complete the handshake and send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on bytes forwarded per output stream of one exec.
const DEFAULT_MAX_OUTPUT: u64 = 64 << 20;

pub(crate) struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
    pub fn io(what: &str, e: &std::io::Error) -> Failure {
        let code = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorCode::NotFound,
            std::io::ErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
            std::io::ErrorKind::AlreadyExists => ErrorCode::AlreadyExists,
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
                ErrorCode::InvalidArgument
            }
            _ if e.raw_os_error() == Some(libc::ENOSPC)
                || e.raw_os_error() == Some(libc::EDQUOT) =>
            {
                ErrorCode::ResourceExhausted
            }
            _ if e.raw_os_error() == Some(libc::ENOTDIR)
                || e.raw_os_error() == Some(libc::EISDIR)
                || e.raw_os_error() == Some(libc::ENOTEMPTY) =>
            {
                ErrorCode::InvalidArgument
            }
            _ => ErrorCode::Internal,
        };
        Failure {
            code,
            message: format!("{what}: {e}"),
        }
    }
}

impl From<FrameError> for Failure {
    fn from(e: FrameError) -> Failure {
        let code = match e {
            FrameError::TooLarge(_) => ErrorCode::FrameTooLarge,
            _ => ErrorCode::ProtocolError,
        };
        Failure::new(code, e.to_string())
    }
}

pub(crate) type OpResult = Result<(), Failure>;

pub(crate) fn handle(agent: &Arc<Agent>, mut stream: UnixStream) {
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let result = (|| -> OpResult {
        match recv::<_, ClientMsg>(&mut stream)? {
            ClientMsg::Hello { protocol, .. } if protocol == PROTOCOL_VERSION => {}
            ClientMsg::Hello { protocol, .. } => {
                return Err(Failure::new(
                    ErrorCode::VersionMismatch,
                    format!(
                        "client speaks protocol {protocol}, this agent speaks {PROTOCOL_VERSION}"
                    ),
                ))
            }
            _ => return Err(Failure::new(ErrorCode::ProtocolError, "expected hello")),
        }
        AgentMsg::Hello {
            protocol: PROTOCOL_VERSION,
            agent: format!("aibox/{}", env!("CARGO_PKG_VERSION")),
        }
        .send(&mut stream)?;
        let op = match recv::<_, ClientMsg>(&mut stream)? {
            ClientMsg::Request(op) => op,
            _ => return Err(Failure::new(ErrorCode::ProtocolError, "expected a request")),
        };
        dispatch(agent, &mut stream, op)
    })();
    if let Err(f) = result {
        let _ = AgentMsg::error(f.code, f.message).send(&mut stream);
    }
}

pub(crate) fn ok(stream: &mut UnixStream, value: serde_json::Value) -> OpResult {
    AgentMsg::Ok { value }.send(stream).map_err(Failure::from)
}

/// Resolve the uid a request runs as, enforcing rootless constraints.
pub(crate) fn uid_for(agent: &Agent, user: Option<User>) -> Result<Option<u32>, Failure> {
    match (agent.cfg.fixed_uid, user) {
        (Some(fixed), Some(u)) if u.uid() != fixed => Err(Failure::new(
            ErrorCode::InvalidArgument,
            format!("this rootless sandbox has a single identity (uid {fixed}); user {:?} is not available", u.name()),
        )),
        (Some(_), _) => Ok(None),
        (None, Some(u)) => Ok(Some(u.uid())),
        (None, None) => Ok(agent.cfg.default_user.map(|u| u.uid())),
    }
}

fn dispatch(agent: &Arc<Agent>, s: &mut UnixStream, op: Op) -> OpResult {
    match op {
        Op::Ping => ok(s, "pong".into()),
        Op::Info => ok(
            s,
            serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "protocol": PROTOCOL_VERSION,
                "pid": aibox_sys::getpid(),
                "uptime_ms": agent.started.elapsed().as_millis() as u64,
                "processes": agent.procs.len(),
                "workdir": agent.cfg.workdir,
            }),
        ),
        Op::Exec(req) => {
            let uid = uid_for(agent, req.user)?;
            let cwd = req.cwd.clone().unwrap_or_else(|| agent.cfg.workdir.clone());
            let mut env = agent.cfg.env.clone();
            if let Some(u) = req.user {
                for (k, v) in [
                    ("HOME", u.home()),
                    ("USER", u.name()),
                    ("LOGNAME", u.name()),
                ] {
                    env.retain(|(ek, _)| ek != k);
                    env.push((k.into(), v.into()));
                }
            }
            let (p, events) = agent
                .procs
                .spawn(&req, &env, &cwd, uid)
                .map_err(|e| match e {
                    procs::SpawnError::Invalid(m) => Failure::new(ErrorCode::InvalidArgument, m),
                    procs::SpawnError::Start { msg, status } => Failure::new(
                        if status == 127 {
                            ErrorCode::NotFound
                        } else {
                            ErrorCode::PermissionDenied
                        },
                        msg,
                    ),
                })?;
            AgentMsg::Started {
                id: p.id,
                pid: p.pid,
            }
            .send(s)?;
            let Some(events) = events else {
                return Ok(()); // background
            };
            stream_process(
                s,
                &p,
                events,
                req.stdin || req.pty.is_some(),
                true,
                req.max_output.unwrap_or(DEFAULT_MAX_OUTPUT),
            )
        }
        Op::ProcList => ok(
            s,
            serde_json::to_value(agent.procs.list()).unwrap_or_default(),
        ),
        Op::ProcWait { id, timeout_ms } => {
            let p = find(agent, id)?;
            match p.wait(timeout_ms.map(Duration::from_millis)) {
                Some(exit) => AgentMsg::Exit(exit).send(s).map_err(Failure::from),
                None => Err(Failure::new(
                    ErrorCode::Timeout,
                    format!("process {id} is still running"),
                )),
            }
        }
        Op::ProcKill { id, signal } => {
            if !(1..=64).contains(&signal) {
                return Err(Failure::new(
                    ErrorCode::InvalidArgument,
                    format!("invalid signal {signal}"),
                ));
            }
            let p = find(agent, id)?;
            p.signal(signal).map_err(|e| Failure::io("kill", &e))?;
            ok(s, serde_json::Value::Null)
        }
        Op::ProcAttach { id, stdin } => {
            let p = find(agent, id)?;
            AgentMsg::Started {
                id: p.id,
                pid: p.pid,
            }
            .send(s)?;
            stream_process(s, &p, p.subscribe(true), stdin, false, DEFAULT_MAX_OUTPUT)
        }
        Op::ProcStdin { id, close } => {
            let p = find(agent, id)?;
            loop {
                let f = read_frame(s)?;
                if f.kind != Kind::Stdin {
                    return Err(Failure::new(
                        ErrorCode::ProtocolError,
                        "expected stdin frames",
                    ));
                }
                if f.payload.is_empty() {
                    if close {
                        procs::write_stdin(&p, &[]).map_err(|e| Failure::io("stdin", &e))?;
                    }
                    break;
                }
                procs::write_stdin(&p, &f.payload).map_err(|e| Failure::io("stdin", &e))?;
            }
            ok(s, serde_json::Value::Null)
        }
        Op::PortForward { port } => port_forward(s, port),
        file_op => crate::files::handle(agent, s, file_op),
    }
}

fn find(agent: &Agent, id: u64) -> Result<Arc<procs::Proc>, Failure> {
    agent
        .procs
        .get(id)
        .ok_or_else(|| Failure::new(ErrorCode::NotFound, format!("no process with id {id}")))
}

/// Forward a process's output and exit to the client, and the client's
/// stdin/resize/signal frames to the process. `owned`: kill the process when
/// the client goes away (a foreground exec).
fn stream_process(
    s: &mut UnixStream,
    p: &Arc<procs::Proc>,
    events: std::sync::mpsc::Receiver<Event>,
    forward_input: bool,
    owned: bool,
    max_output: u64,
) -> OpResult {
    let _ = s.set_read_timeout(None);
    // Input side: a thread reads client frames until EOF.
    if let Ok(mut rd) = s.try_clone() {
        let p2 = p.clone();
        let _ = std::thread::Builder::new()
            .name("input".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                loop {
                    match read_frame(&mut rd) {
                        Ok(f) if f.kind == Kind::Stdin && forward_input => {
                            let _ = procs::write_stdin(&p2, &f.payload);
                        }
                        Ok(f) if f.kind == Kind::Control => {
                            match serde_json::from_slice::<ClientMsg>(&f.payload) {
                                Ok(ClientMsg::Resize(sz)) => {
                                    if let Some(m) = &p2.pty {
                                        use std::os::fd::AsFd;
                                        let _ = aibox_sys::set_winsize(m.as_fd(), sz.rows, sz.cols);
                                    }
                                }
                                Ok(ClientMsg::Signal { signal }) if (1..=64).contains(&signal) => {
                                    let _ = p2.signal(signal);
                                }
                                _ => {}
                            }
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                if owned {
                    let _ = p2.signal(libc::SIGKILL);
                }
            });
    }
    let mut sent = [0u64; 2];
    let mut truncated = [false; 2];
    for ev in events {
        match ev {
            Event::Out(kind, data) => {
                let i = usize::from(kind == Kind::Stderr);
                if sent[i] >= max_output {
                    truncated[i] = true;
                    continue;
                }
                let room = (max_output - sent[i]) as usize;
                let chunk = if data.len() > room {
                    truncated[i] = true;
                    &data[..room]
                } else {
                    &data[..]
                };
                sent[i] += chunk.len() as u64;
                if write_frame(s, kind, chunk).is_err() {
                    if owned {
                        let _ = p.signal(libc::SIGKILL);
                    }
                    return Ok(());
                }
            }
            Event::Exit(mut info) => {
                info.stdout_truncated = truncated[0];
                info.stderr_truncated = truncated[1];
                let _ = AgentMsg::Exit(info).send(s);
                let _ = s.flush();
                let _ = s.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
        }
    }
    // The hub went away without an exit (cannot happen unless the wait thread died).
    let _ = AgentMsg::Exit(ExitInfo::default()).send(s);
    Ok(())
}

fn port_forward(s: &mut UnixStream, port: u16) -> OpResult {
    if port == 0 {
        return Err(Failure::new(
            ErrorCode::InvalidArgument,
            "port must be between 1 and 65535",
        ));
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| Failure::io(&format!("connect to 127.0.0.1:{port} in the sandbox"), &e))?;
    ok(s, serde_json::json!({ "port": port }))?;
    let _ = s.set_read_timeout(None);
    let (Ok(mut s_rd), Ok(mut tcp_wr)) = (s.try_clone(), tcp.try_clone()) else {
        return Ok(());
    };
    let up = std::thread::Builder::new()
        .name("fwd".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let _ = std::io::copy(&mut s_rd, &mut tcp_wr);
            let _ = tcp_wr.shutdown(std::net::Shutdown::Write);
        });
    let mut tcp_rd = tcp;
    let _ = std::io::copy(&mut tcp_rd, s);
    let _ = s.shutdown(std::net::Shutdown::Write);
    if let Ok(h) = up {
        let _ = h.join();
    }
    Ok(())
}
