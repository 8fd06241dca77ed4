//! Control messages (JSON inside `Kind::Control` frames).

use crate::frame::{read_frame, write_frame, FrameError, Kind};
use aibox_types::{ErrorCode, User};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::io::{Read, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtySize {
    pub rows: u16,
    pub cols: u16,
}

/// Start a process. Exactly one of `argv` and `shell` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    /// A command line for `/bin/sh -c`.
    pub shell: Option<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub user: Option<User>,
    /// When false stdin is /dev/null; when true the client sends Stdin frames.
    pub stdin: bool,
    pub timeout_ms: Option<u64>,
    pub pty: Option<PtySize>,
    /// Per-stream cap on bytes forwarded; the rest is drained and counted.
    pub max_output: Option<u64>,
    /// Keep running after the connection closes; output is buffered for attach.
    pub background: bool,
}

impl ExecRequest {
    /// A command as the API gives it (its `cmd` split into an argv or a
    /// shell line), with its environment, directory, user and time limit;
    /// stdin, PTY, output cap and background as the caller then sets.
    pub fn command(
        argv: Vec<String>,
        shell: Option<String>,
        env: std::collections::BTreeMap<String, String>,
        cwd: Option<String>,
        user: Option<User>,
        timeout_ms: Option<u64>,
    ) -> ExecRequest {
        ExecRequest {
            argv,
            shell,
            env: env.into_iter().collect(),
            cwd,
            user,
            timeout_ms,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    Ping,
    Info,
    Exec(ExecRequest),
    ProcList,
    ProcWait {
        id: u64,
        timeout_ms: Option<u64>,
    },
    ProcKill {
        id: u64,
        signal: i32,
    },
    /// Replays buffered output, then streams live output and the exit.
    ProcAttach {
        id: u64,
        stdin: bool,
    },
    /// Followed by Stdin frames, ended by an empty one; `close` then closes
    /// the process's stdin (EOF).
    ProcStdin {
        id: u64,
        #[serde(default)]
        close: bool,
    },
    FileRead {
        path: String,
        user: Option<User>,
    },
    /// Followed by Data frames, ended by an empty one. Atomic: temp file + rename.
    FileWrite {
        path: String,
        mode: Option<u32>,
        user: Option<User>,
        #[serde(default)]
        parents: bool,
    },
    FileList {
        path: String,
        #[serde(default)]
        recursive: bool,
        user: Option<User>,
    },
    FileStat {
        path: String,
        user: Option<User>,
    },
    Mkdir {
        path: String,
        mode: Option<u32>,
        user: Option<User>,
    },
    Remove {
        path: String,
        #[serde(default)]
        recursive: bool,
        user: Option<User>,
    },
    Rename {
        from: String,
        to: String,
        user: Option<User>,
    },
    /// Followed by Data frames holding a tar stream, extracted into `path`.
    TarUpload {
        path: String,
        user: Option<User>,
    },
    /// Answered with Data frames holding a tar of `path`.
    TarDownload {
        path: String,
        user: Option<User>,
    },
    /// After `Ok`, the connection becomes a raw byte pipe to 127.0.0.1:port.
    PortForward {
        port: u16,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    Hello {
        protocol: u32,
        client: String,
    },
    Request(Op),
    /// Resize the PTY of the running exec.
    Resize(PtySize),
    /// Send a signal to the running exec (e.g. on Ctrl-C forwarding).
    Signal {
        signal: i32,
    },
}

pub use aibox_types::api::{ExitInfo, FileKind, FileStat, ProcInfo};

pub type DirEntry = FileStat;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentMsg {
    Hello {
        protocol: u32,
        agent: String,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    /// Generic success, with an operation-specific JSON value.
    Ok {
        value: serde_json::Value,
    },
    /// A process started (exec) or was attached.
    Started {
        id: u64,
        pid: i32,
    },
    Exit(ExitInfo),
}

/// Send a control message.
pub fn send<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let bytes = serde_json::to_vec(msg).map_err(FrameError::BadJson)?;
    write_frame(w, Kind::Control, &bytes)
}

/// Read a frame that must be a control message of type `T`.
pub fn recv<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, FrameError> {
    let f = read_frame(r)?;
    if f.kind != Kind::Control {
        return Err(FrameError::Unexpected(f.kind));
    }
    serde_json::from_slice(&f.payload).map_err(FrameError::BadJson)
}

impl ClientMsg {
    pub fn send<W: Write>(&self, w: &mut W) -> Result<(), FrameError> {
        send(w, self)
    }
}

impl AgentMsg {
    pub fn send<W: Write>(&self, w: &mut W) -> Result<(), FrameError> {
        send(w, self)
    }
    pub fn recv<R: Read>(r: &mut R) -> Result<AgentMsg, FrameError> {
        recv(r)
    }
    pub fn error(code: ErrorCode, message: impl Into<String>) -> AgentMsg {
        AgentMsg::Error {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let msgs = vec![
            ClientMsg::Hello {
                protocol: 1,
                client: "t".into(),
            },
            ClientMsg::Request(Op::Exec(ExecRequest {
                argv: vec!["ls".into()],
                ..Default::default()
            })),
            ClientMsg::Request(Op::FileWrite {
                path: "/x".into(),
                mode: Some(0o600),
                user: None,
                parents: true,
            }),
            ClientMsg::Resize(PtySize { rows: 24, cols: 80 }),
        ];
        for m in msgs {
            let mut buf = Vec::new();
            m.send(&mut buf).unwrap();
            let back: ClientMsg = recv(&mut &buf[..]).unwrap();
            assert_eq!(back, m);
        }
    }

    #[test]
    fn wire_format_is_stable() {
        let m = ClientMsg::Request(Op::ProcKill { id: 3, signal: 9 });
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"request","op":"proc_kill","id":3,"signal":9}"#
        );
        let e = AgentMsg::error(ErrorCode::NotFound, "no such process 3");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"error","code":"not_found","message":"no such process 3"}"#
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        write_frame(&mut buf, Kind::Control, b"{not json").unwrap();
        assert!(matches!(
            recv::<_, ClientMsg>(&mut &buf[..]),
            Err(FrameError::BadJson(_))
        ));
        let mut buf = Vec::new();
        write_frame(&mut buf, Kind::Stdout, b"x").unwrap();
        assert!(matches!(
            recv::<_, ClientMsg>(&mut &buf[..]),
            Err(FrameError::Unexpected(Kind::Stdout))
        ));
        let mut buf = Vec::new();
        write_frame(
            &mut buf,
            Kind::Control,
            br#"{"type":"request","op":"rm_rf"}"#,
        )
        .unwrap();
        assert!(recv::<_, ClientMsg>(&mut &buf[..]).is_err());
    }

    #[test]
    fn exit_status_convention() {
        assert_eq!(
            ExitInfo {
                code: Some(2),
                ..Default::default()
            }
            .status(),
            2
        );
        assert_eq!(
            ExitInfo {
                signal: Some(9),
                ..Default::default()
            }
            .status(),
            137
        );
    }
}

#[cfg(test)]
mod doc_examples {
    use super::*;

    /// Every JSON example in docs/protocol.md parses as a real message.
    #[test]
    fn protocol_doc_examples_parse() {
        let doc = include_str!("../../../docs/protocol.md");
        let mut n = 0;
        for block in doc.split("```json\n").skip(1) {
            let json = block.split("\n```").next().unwrap();
            let client = serde_json::from_str::<ClientMsg>(json);
            let agent = serde_json::from_str::<AgentMsg>(json);
            assert!(
                client.is_ok() || agent.is_ok(),
                "example does not parse: {json}\n{client:?}\n{agent:?}"
            );
            n += 1;
        }
        assert!(n >= 12, "{n} examples");
    }
}
