//! Host side of the agent protocol: one connection per operation.

use aibox_protocol::{
    read_frame, write_frame, AgentMsg, ClientMsg, ExecRequest, ExitInfo, FileStat, FrameError,
    Kind, Op, ProcInfo, PtySize, PROTOCOL_VERSION,
};
use aibox_types::{ErrorCode, User};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the sandbox agent at {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("protocol error talking to the sandbox agent")]
    Protocol(#[from] FrameError),
    #[error("{message}")]
    Agent { code: ErrorCode, message: String },
    #[error("unexpected reply from the agent: {0}")]
    Unexpected(String),
}

impl ClientError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ClientError::Agent { code, .. } => *code,
            ClientError::Connect { .. } => ErrorCode::SandboxGone,
            _ => ErrorCode::ProtocolError,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AgentClient {
    path: PathBuf,
}

/// Collected output of a synchronous exec.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: ExitInfo,
}

fn expect_ok(msg: AgentMsg) -> Result<serde_json::Value, ClientError> {
    match msg {
        AgentMsg::Ok { value } => Ok(value),
        AgentMsg::Error { code, message } => Err(ClientError::Agent { code, message }),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}

fn from_value<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, ClientError> {
    serde_json::from_value(v).map_err(|e| ClientError::Unexpected(e.to_string()))
}

impl AgentClient {
    pub fn new(path: impl Into<PathBuf>) -> AgentClient {
        AgentClient { path: path.into() }
    }

    pub fn socket(&self) -> &Path {
        &self.path
    }

    /// Connect, handshake and send `op`. The stream is ready for the reply.
    /// The request is pipelined right behind the hello (one round trip
    /// fewer); an agent that rejects the hello never reads it.
    pub fn request(&self, op: Op) -> Result<UnixStream, ClientError> {
        self.request_checked(op, Duration::from_secs(30), &|| None)
    }

    /// Like [`request`](Self::request), but when the agent has not answered
    /// after `stall`, ask `on_stall` whether that means an error (e.g. the
    /// sandbox is paused); if not, keep waiting up to the usual 30 s.
    pub fn request_checked(
        &self,
        op: Op,
        stall: Duration,
        on_stall: &dyn Fn() -> Option<ClientError>,
    ) -> Result<UnixStream, ClientError> {
        let mut s = UnixStream::connect(&self.path).map_err(|source| ClientError::Connect {
            path: self.path.clone(),
            source,
        })?;
        let _ = s.set_read_timeout(Some(stall.min(Duration::from_secs(30))));
        let mut buf = Vec::with_capacity(256);
        ClientMsg::Hello {
            protocol: PROTOCOL_VERSION,
            client: format!("aibox/{}", env!("CARGO_PKG_VERSION")),
        }
        .send(&mut buf)?;
        ClientMsg::Request(op).send(&mut buf)?;
        if let Err(e) = s.write_all(&buf) {
            // Closed before it read a word (a paused microVM's relay does
            // that): ask why.
            return Err(on_stall().unwrap_or_else(|| FrameError::Io(e).into()));
        }
        let hello = match AgentMsg::recv(&mut s) {
            Err(FrameError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if let Some(err) = on_stall() {
                    return Err(err);
                }
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                AgentMsg::recv(&mut s)?
            }
            // Closed before a word: ask why too.
            Err(e) => return Err(on_stall().unwrap_or_else(|| e.into())),
            Ok(m) => m,
        };
        match hello {
            AgentMsg::Hello { .. } => {}
            AgentMsg::Error { code, message } => return Err(ClientError::Agent { code, message }),
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        }
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        Ok(s)
    }

    fn simple(&self, op: Op) -> Result<serde_json::Value, ClientError> {
        let mut s = self.request(op)?;
        expect_ok(AgentMsg::recv(&mut s)?)
    }

    pub fn ping(&self) -> Result<(), ClientError> {
        self.simple(Op::Ping).map(drop)
    }

    pub fn info(&self) -> Result<serde_json::Value, ClientError> {
        self.simple(Op::Info)
    }

    /// Start an exec and return the stream after `Started` (id, pid).
    pub fn exec_start(&self, req: ExecRequest) -> Result<(UnixStream, u64, i32), ClientError> {
        self.exec_start_checked(req, Duration::from_secs(30), &|| None)
    }

    /// [`exec_start`](Self::exec_start) with a stall check (see [`request_checked`](Self::request_checked)).
    pub fn exec_start_checked(
        &self,
        req: ExecRequest,
        stall: Duration,
        on_stall: &dyn Fn() -> Option<ClientError>,
    ) -> Result<(UnixStream, u64, i32), ClientError> {
        let mut s = self.request_checked(Op::Exec(req), stall, on_stall)?;
        match AgentMsg::recv(&mut s)? {
            AgentMsg::Started { id, pid } => {
                let _ = s.set_read_timeout(None);
                Ok((s, id, pid))
            }
            AgentMsg::Error { code, message } => Err(ClientError::Agent { code, message }),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Run to completion, feeding `stdin` (if any) and collecting output.
    pub fn exec(&self, mut req: ExecRequest, stdin: Option<&[u8]>) -> Result<Output, ClientError> {
        req.stdin = stdin.is_some();
        req.background = false;
        let (mut s, _, _) = self.exec_start(req)?;
        if let Some(data) = stdin {
            // A command may exit (and the agent close its side) before it
            // read all its input: that is its business, not an error; the
            // outcome still comes from the output and exit frames below.
            let _ = data
                .chunks(64 * 1024)
                .try_for_each(|chunk| write_frame(&mut s, Kind::Stdin, chunk))
                .and_then(|()| write_frame(&mut s, Kind::Stdin, &[]));
        }
        let mut out = Output::default();
        pump(&mut s, |k, d| match k {
            Kind::Stderr => out.stderr.extend_from_slice(d),
            _ => out.stdout.extend_from_slice(d),
        })
        .map(|exit| {
            out.exit = exit;
            out
        })
    }

    pub fn proc_list(&self) -> Result<Vec<ProcInfo>, ClientError> {
        from_value(self.simple(Op::ProcList)?)
    }

    pub fn proc_wait(&self, id: u64, timeout: Option<Duration>) -> Result<ExitInfo, ClientError> {
        let mut s = self.request(Op::ProcWait {
            id,
            timeout_ms: timeout.map(|t| t.as_millis() as u64),
        })?;
        let _ = s.set_read_timeout(None);
        match AgentMsg::recv(&mut s)? {
            AgentMsg::Exit(e) => Ok(e),
            other => expect_ok(other).and_then(|v| Err(ClientError::Unexpected(v.to_string()))),
        }
    }

    pub fn proc_kill(&self, id: u64, signal: i32) -> Result<(), ClientError> {
        self.simple(Op::ProcKill { id, signal }).map(drop)
    }

    pub fn proc_attach(&self, id: u64) -> Result<UnixStream, ClientError> {
        let mut s = self.request(Op::ProcAttach { id, stdin: false })?;
        match AgentMsg::recv(&mut s)? {
            AgentMsg::Started { .. } => {
                let _ = s.set_read_timeout(None);
                Ok(s)
            }
            other => expect_ok(other).and_then(|v| Err(ClientError::Unexpected(v.to_string()))),
        }
    }

    /// Send bytes to a background process's stdin; `close` closes it after.
    pub fn proc_stdin(&self, id: u64, data: &[u8], close: bool) -> Result<(), ClientError> {
        let mut s = self.request(Op::ProcStdin { id, close })?;
        // If the agent refuses midway (say the process has no stdin), it
        // answers and hangs up: the answer, not our broken pipe, is the result.
        let sent = data
            .chunks(64 * 1024)
            .filter(|c| !c.is_empty())
            .try_for_each(|chunk| write_frame(&mut s, Kind::Stdin, chunk))
            .and_then(|()| write_frame(&mut s, Kind::Stdin, &[]));
        match AgentMsg::recv(&mut s) {
            Ok(msg) => expect_ok(msg).map(drop),
            Err(e) => Err(sent.err().map_or(e.into(), Into::into)),
        }
    }

    /// Stream a file into `out`; `on_stat` runs once the file is open (so a
    /// caller can start its own reply), before any byte is written.
    pub fn read_file_to(
        &self,
        path: &str,
        user: Option<User>,
        on_stat: &mut dyn FnMut(&FileStat),
        out: &mut dyn Write,
    ) -> Result<(), ClientError> {
        let mut s = self.request(Op::FileRead {
            path: path.into(),
            user,
        })?;
        let st: FileStat = from_value(expect_ok(AgentMsg::recv(&mut s)?)?)?;
        on_stat(&st);
        copy_data(&mut s, out)
    }

    /// [`tar_download`](Self::tar_download) with a callback once the agent
    /// has accepted the request (before any byte is written).
    pub fn tar_download_to(
        &self,
        path: &str,
        user: Option<User>,
        on_start: &mut dyn FnMut(),
        out: &mut dyn Write,
    ) -> Result<(), ClientError> {
        let mut s = self.request(Op::TarDownload {
            path: path.into(),
            user,
        })?;
        expect_ok(AgentMsg::recv(&mut s)?)?;
        on_start();
        copy_data(&mut s, out)
    }

    pub fn read_file(
        &self,
        path: &str,
        user: Option<User>,
    ) -> Result<(FileStat, Vec<u8>), ClientError> {
        let mut s = self.request(Op::FileRead {
            path: path.into(),
            user,
        })?;
        let st: FileStat = from_value(expect_ok(AgentMsg::recv(&mut s)?)?)?;
        let mut data = Vec::with_capacity(st.size as usize);
        read_data(&mut s, |d| data.extend_from_slice(d))?;
        Ok((st, data))
    }

    pub fn write_file(
        &self,
        path: &str,
        data: &mut dyn Read,
        mode: Option<u32>,
        user: Option<User>,
        parents: bool,
    ) -> Result<FileStat, ClientError> {
        let mut s = self.request(Op::FileWrite {
            path: path.into(),
            mode,
            user,
            parents,
        })?;
        send_data(&mut s, data)?;
        from_value(expect_ok(AgentMsg::recv(&mut s)?)?)
    }

    pub fn stat(&self, path: &str, user: Option<User>) -> Result<FileStat, ClientError> {
        from_value(self.simple(Op::FileStat {
            path: path.into(),
            user,
        })?)
    }

    pub fn list(
        &self,
        path: &str,
        recursive: bool,
        user: Option<User>,
    ) -> Result<Vec<FileStat>, ClientError> {
        from_value(self.simple(Op::FileList {
            path: path.into(),
            recursive,
            user,
        })?)
    }

    pub fn mkdir(
        &self,
        path: &str,
        mode: Option<u32>,
        user: Option<User>,
    ) -> Result<FileStat, ClientError> {
        from_value(self.simple(Op::Mkdir {
            path: path.into(),
            mode,
            user,
        })?)
    }

    pub fn remove(
        &self,
        path: &str,
        recursive: bool,
        user: Option<User>,
    ) -> Result<(), ClientError> {
        self.simple(Op::Remove {
            path: path.into(),
            recursive,
            user,
        })
        .map(drop)
    }

    pub fn rename(&self, from: &str, to: &str, user: Option<User>) -> Result<(), ClientError> {
        self.simple(Op::Rename {
            from: from.into(),
            to: to.into(),
            user,
        })
        .map(drop)
    }

    pub fn tar_upload(
        &self,
        path: &str,
        tar: &mut dyn Read,
        user: Option<User>,
    ) -> Result<(), ClientError> {
        let mut s = self.request(Op::TarUpload {
            path: path.into(),
            user,
        })?;
        send_data(&mut s, tar)?;
        expect_ok(AgentMsg::recv(&mut s)?).map(drop)
    }

    pub fn tar_download(
        &self,
        path: &str,
        out: &mut dyn Write,
        user: Option<User>,
    ) -> Result<(), ClientError> {
        let mut s = self.request(Op::TarDownload {
            path: path.into(),
            user,
        })?;
        expect_ok(AgentMsg::recv(&mut s)?)?;
        let mut err = None;
        read_data(&mut s, |d| {
            if err.is_none() {
                err = out.write_all(d).err();
            }
        })?;
        match err {
            Some(e) => Err(ClientError::Protocol(FrameError::Io(e))),
            None => Ok(()),
        }
    }

    /// A raw byte stream to 127.0.0.1:`port` inside the sandbox.
    pub fn port_forward(&self, port: u16) -> Result<UnixStream, ClientError> {
        let mut s = self.request(Op::PortForward { port })?;
        expect_ok(AgentMsg::recv(&mut s)?)?;
        let _ = s.set_read_timeout(None);
        Ok(s)
    }
}

/// Read output frames until the exit message.
pub fn pump(
    s: &mut UnixStream,
    mut on_data: impl FnMut(Kind, &[u8]),
) -> Result<ExitInfo, ClientError> {
    loop {
        let f = read_frame(s)?;
        match f.kind {
            Kind::Stdout | Kind::Stderr => on_data(f.kind, &f.payload),
            Kind::Control => {
                let msg: AgentMsg =
                    serde_json::from_slice(&f.payload).map_err(FrameError::BadJson)?;
                return match msg {
                    AgentMsg::Exit(e) => Ok(e),
                    AgentMsg::Error { code, message } => Err(ClientError::Agent { code, message }),
                    other => Err(ClientError::Unexpected(format!("{other:?}"))),
                };
            }
            k => return Err(ClientError::Protocol(FrameError::Unexpected(k))),
        }
    }
}

/// Send a resize for a PTY exec.
pub fn resize(s: &mut UnixStream, rows: u16, cols: u16) -> Result<(), ClientError> {
    ClientMsg::Resize(PtySize { rows, cols })
        .send(s)
        .map_err(Into::into)
}

fn send_data(s: &mut UnixStream, r: &mut dyn Read) -> Result<(), ClientError> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).map_err(FrameError::Io)?;
        if n == 0 {
            write_frame(s, Kind::Data, &[])?;
            return Ok(());
        }
        write_frame(s, Kind::Data, &buf[..n])?;
    }
}

/// Copy data frames into `out`, stopping at once (and dropping the agent
/// connection, which ends the transfer) if `out` fails.
fn copy_data(s: &mut UnixStream, out: &mut dyn Write) -> Result<(), ClientError> {
    loop {
        let f = read_frame(s)?;
        match f.kind {
            Kind::Data if f.payload.is_empty() => return Ok(()),
            Kind::Data => out
                .write_all(&f.payload)
                .map_err(|e| ClientError::Protocol(FrameError::Io(e)))?,
            Kind::Control => {
                let msg: AgentMsg =
                    serde_json::from_slice(&f.payload).map_err(FrameError::BadJson)?;
                return expect_ok(msg).map(drop);
            }
            k => return Err(ClientError::Protocol(FrameError::Unexpected(k))),
        }
    }
}

fn read_data(s: &mut UnixStream, mut sink: impl FnMut(&[u8])) -> Result<(), ClientError> {
    loop {
        let f = read_frame(s)?;
        match f.kind {
            Kind::Data if f.payload.is_empty() => return Ok(()),
            Kind::Data => sink(&f.payload),
            Kind::Control => {
                let msg: AgentMsg =
                    serde_json::from_slice(&f.payload).map_err(FrameError::BadJson)?;
                return expect_ok(msg).map(drop);
            }
            k => return Err(ClientError::Protocol(FrameError::Unexpected(k))),
        }
    }
}
