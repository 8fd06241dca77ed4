//! One connection: handshake, one operation, done.

use crate::op::{ok, uid_for, Failure, OpResult};
use crate::procs::{self, Event};
use crate::Agent;
use aibox_protocol::{read_frame, recv, AgentMsg, ClientMsg, ExitInfo, Kind, Op, PROTOCOL_VERSION};
use aibox_types::{ErrorCode, User};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

/// Time a client has to complete the handshake and send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on bytes forwarded per output stream of one exec.
const DEFAULT_MAX_OUTPUT: u64 = 64 << 20;

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
        // A client may pipeline its request and then give up before we read
        // it (e.g. it found the sandbox paused): do not act on it then.
        {
            use std::os::fd::AsFd;
            if aibox_sys::peer_closed(stream.as_fd()) {
                return Ok(());
            }
        }
        dispatch(agent, &mut stream, op)
    })();
    if let Err(f) = result {
        let _ = AgentMsg::error(f.code, f.message).send(&mut stream);
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
                let passwd = matches!(u, User::Id(_))
                    .then(|| std::fs::read_to_string("/etc/passwd").ok())
                    .flatten();
                let (name, home) = u.identity(passwd.as_deref());
                for (k, v) in [("HOME", home), ("USER", name.clone()), ("LOGNAME", name)] {
                    env.retain(|(ek, _)| ek != k);
                    env.push((k.into(), v));
                }
            }
            let (p, watcher) = agent
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
            let Some(watcher) = watcher else {
                return Ok(()); // background: its own thread watches it
            };
            let _ = s.set_read_timeout(None);
            let fg = procs::Foreground::new(
                s,
                req.max_output.unwrap_or(DEFAULT_MAX_OUTPUT),
                req.stdin || req.pty.is_some(),
            );
            watcher.run(&p, Some(fg));
            Ok(())
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
            attach(s, &p, stdin)
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

/// Attach: replay and forward a process's output and exit to the client
/// (through a `Foreground` for the output cap), and apply its frames from a
/// reader thread. The process is not killed when an attached client leaves.
fn attach(s: &mut UnixStream, p: &Arc<procs::Proc>, forward_input: bool) -> OpResult {
    let _ = s.set_read_timeout(None);
    let events = p.subscribe(true);
    if let Ok(mut rd) = s.try_clone() {
        let p2 = p.clone();
        let _ = std::thread::Builder::new()
            .name("input".into())
            .stack_size(64 * 1024)
            .spawn(move || while procs::client_frame(&mut rd, &p2, forward_input) {});
    }
    let mut fg = procs::Foreground::new(s, DEFAULT_MAX_OUTPUT, forward_input);
    for ev in events {
        match ev {
            Event::Out(kind, data) => {
                if !fg.output(kind, &data) {
                    return Ok(());
                }
            }
            Event::Exit(info) => {
                fg.exit(info);
                return Ok(());
            }
        }
    }
    // The hub went away without an exit (cannot happen unless its watcher died).
    fg.exit(ExitInfo::default());
    Ok(())
}

fn port_forward(s: &mut UnixStream, port: u16) -> OpResult {
    if port == 0 {
        return Err(Failure::new(
            ErrorCode::InvalidArgument,
            "port must be between 1 and 65535",
        ));
    }
    // IPv4 loopback first; a server bound to ::1 only (some resolve
    // "localhost" that way) is found on the second try.
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    let timeout = Duration::from_secs(5);
    let tcp = std::net::TcpStream::connect_timeout(&v4, timeout)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                std::net::TcpStream::connect_timeout(&v6, timeout).map_err(|_| e)
            }
            _ => Err(e),
        })
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Failure::new(
                ErrorCode::Unavailable,
                format!("nothing listens on port {port} inside the sandbox"),
            ),
            _ => Failure::io(&format!("connect to port {port} in the sandbox"), &e),
        })?;
    let _ = tcp.set_nodelay(true);
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
