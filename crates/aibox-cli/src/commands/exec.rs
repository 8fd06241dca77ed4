//! `aibox exec`: run a command in a persistent sandbox, through the server
//! or (`--local`) its agent; the relay of a local one's streams.

use super::target::Run;
use crate::args::ExecArgs;
use aibox_protocol::{read_frame, write_frame, AgentMsg, ClientMsg, Kind, PtySize};
use aibox_runtime::ClientError;
use std::io::{Read, Write};
use std::os::fd::AsFd;

pub fn exec(a: ExecArgs) -> anyhow::Result<u8> {
    if a.command.is_empty() {
        anyhow::bail!(aibox_runtime::Error::InvalidSpec(
            "missing command: usage is `aibox exec ID -- CMD [ARGS...]`".into()
        ));
    }
    let run = Run {
        argv: a.command.clone(),
        env: super::parse_env(&a.env)?,
        cwd: a.workdir.clone(),
        user: a.user,
        timeout_ms: a.timeout.map(|t| t.as_millis() as u64),
        max_output: a.max_output.map(|m| m.0),
        stdin: a.interactive,
        tty: a.tty,
        detach: a.detach,
    };
    super::target::open(&a.target)?.exec(&a.id, &run)
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
