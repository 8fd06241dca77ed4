//! WebSocket streams: exec with live output and stdin (optionally on a
//! PTY with resize), and re-attaching to a background process.
//!
//! Frames, server → client: binary frames whose first byte says the stream
//! (1 stdout, 2 stderr) followed by the bytes; text frames with JSON events
//! `{"type":"started","id","pid"}`, `{"type":"exit","exit_code",...}` and
//! `{"type":"error","code","message"}`. Client → server: binary frames are
//! stdin; text frames are JSON: the first one starts the exec (same fields
//! as the synchronous exec plus `pty: {rows, cols}`), later ones are
//! `{"type":"resize","rows","cols"}`, `{"type":"signal","signal"}` or
//! `{"type":"stdin_close"}`. Closing the socket kills a foreground command.

use crate::auth::Principal;
use crate::control::access::running;
use crate::error::{ApiError, ApiResult};
use crate::fairness::Share;
use crate::AppState;
use aibox_protocol::{read_frame, write_frame, AgentMsg, ClientMsg, ExecRequest, Kind, PtySize};
use aibox_types::api::Cmd;
use aibox_types::User;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Start {
    cmd: Cmd,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    user: Option<User>,
    timeout_ms: Option<u64>,
    /// Per-stream cap in bytes (the server's `max_exec_output` at most).
    max_output: Option<u64>,
    pty: Option<PtySize>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Control {
    Resize { rows: u16, cols: u16 },
    Signal { signal: i32 },
    StdinClose,
}

enum Event {
    Out(u8, Vec<u8>),
    Exit(Value),
    Error(ApiError),
}

enum ToAgent {
    Stdin(Vec<u8>),
    Control(ClientMsg),
}

/// Stdin messages queued for the agent before the session is refused
/// more (the process is not reading its input).
const STDIN_BACKLOG: usize = 16;

pub async fn exec(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Extension(share): Extension<Share>,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    let row = running(&state, &who, &id)?;
    Ok(ws
        .max_message_size(crate::fairness::MAX_WS_MESSAGE)
        .on_upgrade(move |socket| async move {
            // The key's share is held for the whole session.
            let _share = share;
            exec_session(state, who, row.id, socket).await
        }))
}

pub async fn attach(
    State(state): State<AppState>,
    who: Principal,
    Path((id, pid)): Path<(String, u64)>,
    Extension(share): Extension<Share>,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    let row = running(&state, &who, &id)?;
    Ok(ws
        .max_message_size(crate::fairness::MAX_WS_MESSAGE)
        .on_upgrade(move |mut socket| async move {
            let _share = share;
            let engine = state.engine();
            let sid = row.id.clone();
            let stream = tokio::task::spawn_blocking(move || -> ApiResult<UnixStream> {
                Ok(engine.agent(&sid)?.proc_attach(pid)?)
            })
            .await
            .map_err(|e| ApiError::internal("attach task", e))
            .and_then(|r| r);
            match stream {
                Ok(s) => relay(s, socket, false).await,
                Err(e) => {
                    let _ = socket.send(error_msg(&e)).await;
                }
            }
        }))
}

fn error_msg(e: &ApiError) -> Message {
    Message::Text(
        json!({"type": "error", "code": e.code, "message": e.message})
            .to_string()
            .into(),
    )
}

async fn exec_session(state: AppState, who: Principal, id: String, mut socket: WebSocket) {
    // The first text message says what to run.
    let start = loop {
        match socket.recv().await {
            Some(Ok(Message::Text(t))) => match crate::error::parse_json::<Start>(t.as_bytes()) {
                Ok(s) => break s,
                Err(e) => {
                    let e = ApiError::invalid(format!("bad start message: {}", e.message));
                    let _ = socket.send(error_msg(&e)).await;
                    return;
                }
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return,
        }
    };
    let (argv, shell) = match start.cmd.split() {
        Ok(v) => v,
        Err(e) => {
            let _ = socket.send(error_msg(&ApiError::from(e))).await;
            return;
        }
    };
    let req = ExecRequest {
        stdin: true,
        max_output: start
            .max_output
            .map(|m| m.min(state.config().max_exec_output)),
        pty: start.pty,
        ..ExecRequest::command(
            argv.clone(),
            shell.clone(),
            start.env,
            start.cwd,
            start.user,
            start.timeout_ms,
        )
    };
    let engine = state.engine();
    let sid = id.clone();
    let started = tokio::task::spawn_blocking(move || -> ApiResult<(UnixStream, u64, i32)> {
        Ok(engine.agent(&sid)?.exec_start(req)?)
    })
    .await
    .map_err(|e| ApiError::internal("exec task", e))
    .and_then(|r| r);
    let (stream, pid_id, pid) = match started {
        Ok(v) => v,
        Err(e) => {
            let _ = socket.send(error_msg(&e)).await;
            return;
        }
    };
    state.metrics().count_exec();
    state.audit(
        &who.id,
        "sandbox.exec_stream",
        Some(&id),
        json!({"argv": argv, "shell": shell, "user": start.user, "pty": start.pty.is_some()}),
    );
    let started = json!({"type": "started", "id": pid_id, "pid": pid}).to_string();
    if socket.send(Message::Text(started.into())).await.is_err() {
        return;
    }
    relay(stream, socket, true).await;
}

/// Pump agent frames to the socket and (when `input`) the socket's input
/// to the agent, until the process exits or either side goes away.
async fn relay(stream: UnixStream, mut socket: WebSocket, input: bool) {
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::channel::<Event>(64);
    let Ok(mut reader) = stream.try_clone() else {
        return;
    };
    // However the session ends, the agent stream is shut down both ways,
    // so the two threads below end with it (the writer may be blocked on
    // an agent that stopped reading) and hold nothing after the key's
    // share is given back.
    struct Closer(Option<UnixStream>);
    impl Drop for Closer {
        fn drop(&mut self) {
            if let Some(s) = &self.0 {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
    let _closer = Closer(stream.try_clone().ok());
    let _ = reader.set_read_timeout(None);
    std::thread::spawn(move || loop {
        let ev = match read_frame(&mut reader) {
            Ok(f) => match f.kind {
                Kind::Stdout => Event::Out(1, f.payload),
                Kind::Stderr => Event::Out(2, f.payload),
                Kind::Control => match serde_json::from_slice::<AgentMsg>(&f.payload) {
                    Ok(AgentMsg::Exit(e)) => Event::Exit(json!({
                        "type": "exit",
                        "exit_code": e.status(),
                        "signal": e.signal,
                        "timed_out": e.timed_out,
                        "duration_ms": e.duration_ms,
                    })),
                    Ok(AgentMsg::Error { code, message }) => {
                        Event::Error(ApiError::new(code, message))
                    }
                    _ => continue,
                },
                _ => continue,
            },
            Err(e) => Event::Error(ApiError::internal("agent stream", e)),
        };
        let last = !matches!(ev, Event::Out(..));
        if ev_tx.blocking_send(ev).is_err() || last {
            return;
        }
    });
    let (to_tx, to_rx) = std::sync::mpsc::sync_channel::<ToAgent>(STDIN_BACKLOG);
    let mut writer = stream;
    std::thread::spawn(move || {
        for m in to_rx {
            let ok = match m {
                ToAgent::Stdin(d) => write_frame(&mut writer, Kind::Stdin, &d).is_ok(),
                ToAgent::Control(c) => c.send(&mut writer).is_ok(),
            };
            if !ok {
                return;
            }
        }
        // Socket gone: end our half of the stream, so the agent reads EOF
        // and knows its client left (the reader thread still holds a clone,
        // so dropping this one alone would not close it).
        let _ = writer.shutdown(std::net::Shutdown::Write);
    });
    loop {
        tokio::select! {
            ev = ev_rx.recv() => match ev {
                Some(Event::Out(k, d)) => {
                    let mut b = Vec::with_capacity(d.len() + 1);
                    b.push(k);
                    b.extend_from_slice(&d);
                    if socket.send(Message::Binary(b.into())).await.is_err() {
                        return;
                    }
                }
                Some(Event::Exit(v)) => {
                    let _ = socket.send(Message::Text(v.to_string().into())).await;
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                Some(Event::Error(e)) => {
                    let _ = socket.send(error_msg(&e)).await;
                    return;
                }
                None => return,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(d))) if input => {
                    if d.is_empty() { continue; }
                    // Never waits: a process that does not read its input
                    // ends the session rather than growing the server.
                    if to_tx.try_send(ToAgent::Stdin(d.to_vec())).is_err() {
                        let _ = socket.send(error_msg(&ApiError::new(
                            aibox_types::ErrorCode::ResourceExhausted,
                            format!("more than {STDIN_BACKLOG} stdin messages are waiting for the process to read them"),
                        ))).await;
                        return;
                    }
                }
                Some(Ok(Message::Text(t))) if input => match serde_json::from_str::<Control>(&t) {
                    Ok(Control::Resize { rows, cols }) => {
                        let _ = to_tx.try_send(ToAgent::Control(ClientMsg::Resize(PtySize { rows, cols })));
                    }
                    Ok(Control::Signal { signal }) => {
                        let _ = to_tx.try_send(ToAgent::Control(ClientMsg::Signal { signal }));
                    }
                    Ok(Control::StdinClose) => {
                        let _ = to_tx.try_send(ToAgent::Stdin(Vec::new()));
                    }
                    Err(e) => {
                        let _ = socket.send(error_msg(&ApiError::invalid(format!("bad control message: {e}")))).await;
                    }
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
