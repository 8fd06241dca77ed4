//! `aibox exec`: run a command in a persistent sandbox through its agent.

use crate::args::ExecArgs;
use aibox_protocol::{read_frame, write_frame, AgentMsg, ClientMsg, ExecRequest, Kind, PtySize};
use aibox_runtime::{ClientError, Runtime};
use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;

pub fn exec(a: ExecArgs) -> anyhow::Result<u8> {
    if a.command.is_empty() {
        anyhow::bail!(aibox_runtime::Error::InvalidSpec(
            "missing command: usage is `aibox exec ID -- CMD [ARGS...]`".into()
        ));
    }
    let rt = Runtime::new();
    let client = rt.agent_client(&a.id)?;
    let stdin = std::io::stdin();
    let tty = a.tty && stdin.is_terminal();
    let pty = if tty {
        let (rows, cols) = aibox_sys::get_winsize(stdin.as_fd()).unwrap_or((24, 80));
        Some(PtySize { rows, cols })
    } else {
        None
    };
    let mut env = super::parse_env(&a.env)?;
    if tty && !env.iter().any(|(k, _)| k == "TERM") {
        env.push((
            "TERM".into(),
            std::env::var("TERM").unwrap_or_else(|_| "xterm".into()),
        ));
    }
    let req = ExecRequest {
        argv: a.command.clone(),
        env,
        cwd: a.workdir.clone(),
        user: a.user,
        stdin: a.interactive || tty,
        timeout_ms: a.timeout.map(|t| t.as_millis() as u64),
        max_output: a.max_output.map(|m| m.0),
        pty,
        background: a.detach,
        ..Default::default()
    };
    // A paused sandbox's agent cannot answer: say so instead of hanging.
    let paused = || {
        let paused = rt.get(&a.id).map(|sb| sb.paused()).unwrap_or(false);
        paused.then(|| aibox_runtime::ClientError::Agent {
            code: aibox_types::ErrorCode::Conflict,
            message: format!("sandbox {} is paused: `aibox resume {}` first", a.id, a.id),
        })
    };
    let (mut s, id, _pid) = client
        .exec_start_checked(req, std::time::Duration::from_millis(500), &paused)
        .map_err(aibox_runtime::Error::from)?;
    if a.detach {
        println!("{id}");
        return Ok(0);
    }
    let saved = if tty {
        aibox_sys::make_raw(stdin.as_fd()).ok()
    } else {
        None
    };
    let r = relay(&mut s, a.interactive || tty, tty);
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
