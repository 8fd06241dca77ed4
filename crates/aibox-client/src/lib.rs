//! A small blocking client of the aibox REST API, over TCP or the server's
//! Unix socket. Finds the server like every local tool does: `AIBOX_URL`
//! (`http://HOST:PORT` or `unix:/path`) and `AIBOX_KEY`, else the local
//! server's socket, else `http://127.0.0.1:7878` with the admin key file.

#![forbid(unsafe_code)]

mod routes;

pub use routes::AsyncClient;

use aibox_types::api::{CreateRequest, NetworkRequest, SandboxView};
use aibox_types::ErrorCode;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
pub use hyper::Method;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(String),
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "http://{a}"),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no aibox server is reachable at {endpoint} ({reason}); start one with `aibox serve`, or point AIBOX_URL at one")]
    NotRunning { endpoint: Endpoint, reason: String },
    #[error("{message}")]
    Api {
        status: u16,
        /// The server's stable code (`internal` for one this client does
        /// not know, from a newer server).
        code: ErrorCode,
        message: String,
    },
    /// A success whose body is not what the API promises.
    #[error("the aibox server at {endpoint} answered {what} with an unexpected body: {reason}")]
    BadReply {
        endpoint: Endpoint,
        what: String,
        reason: String,
    },
    #[error("invalid AIBOX_URL {0:?}: expected http://HOST:PORT or unix:/path/to.sock")]
    BadUrl(String),
    #[error("talking to the aibox server at {endpoint}: {reason}")]
    Transport { endpoint: Endpoint, reason: String },
}

impl ClientError {
    /// The stable code of this error: the server's, or the one that says
    /// what went wrong on the way to it.
    pub fn code(&self) -> ErrorCode {
        match self {
            ClientError::Api { code, .. } => *code,
            ClientError::NotRunning { .. } | ClientError::Transport { .. } => {
                ErrorCode::Unavailable
            }
            ClientError::BadUrl(_) => ErrorCode::InvalidArgument,
            ClientError::BadReply { .. } => ErrorCode::ProtocolError,
        }
    }
}

pub struct Client {
    endpoint: Endpoint,
    key: Option<String>,
    rt: tokio::runtime::Runtime,
}

/// The parsed response: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

pub fn parse_url(url: &str) -> Result<Endpoint, ClientError> {
    if let Some(p) = url.strip_prefix("unix:") {
        let p = p.trim_start_matches("//");
        if p.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(p)));
        }
    } else if let Some(rest) = url.strip_prefix("http://") {
        let host = rest.trim_end_matches('/');
        if !host.is_empty() && !host.contains('/') {
            return Ok(Endpoint::Tcp(host.to_string()));
        }
    }
    Err(ClientError::BadUrl(url.to_string()))
}

impl Client {
    pub fn new(endpoint: Endpoint, key: Option<String>) -> Result<Client, ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Transport {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })?;
        Ok(Client { endpoint, key, rt })
    }

    /// The server named by the environment, or the local one.
    pub fn from_env() -> Result<Client, ClientError> {
        let (endpoint, key) = endpoint_from_env()?;
        Client::new(endpoint, key)
    }
}

/// The server `AIBOX_URL` names (else the local one: the data dir's socket
/// when it answers, else 127.0.0.1:7878) and its key (`AIBOX_KEY`, else
/// the local admin key for a local server).
pub fn endpoint_from_env() -> Result<(Endpoint, Option<String>), ClientError> {
    {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (_, data) =
            aibox_types::paths::default_dirs(aibox_sys::geteuid(), |k| std::env::var(k).ok());
        let admin_key = || {
            std::fs::read_to_string(data.join("admin.key"))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let key = env("AIBOX_KEY");
        let endpoint = match env("AIBOX_URL") {
            Some(u) => parse_url(&u)?,
            None => {
                let sock = data.join("aibox.sock");
                if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
                    Endpoint::Unix(sock)
                } else {
                    Endpoint::Tcp("127.0.0.1:7878".into())
                }
            }
        };
        let key = match (&endpoint, key) {
            (_, Some(k)) => Some(k),
            (Endpoint::Unix(_), None) => None,
            (Endpoint::Tcp(a), None)
                if a.starts_with("127.0.0.1:")
                    || a.starts_with("localhost:")
                    || a.starts_with("[::1]:") =>
            {
                admin_key()
            }
            _ => None,
        };
        Ok((endpoint, key))
    }
}

impl Client {
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Send a request; bodies of `json` go as JSON, `raw` as bytes.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Result<Response, ClientError> {
        self.send_inner(method, path, body, headers, None)
    }

    /// Like [`send`](Self::send), but a successful response's body goes
    /// to `on_chunk` as it arrives (for streamed replies such as a
    /// build's log); an error response is collected as usual.
    pub fn send_streaming(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: &[(&str, &str)],
        on_chunk: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<Response, ClientError> {
        self.send_inner(method, path, body, headers, Some(on_chunk))
    }

    fn send_inner(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: &[(&str, &str)],
        on_chunk: Option<OnChunk<'_>>,
    ) -> Result<Response, ClientError> {
        self.rt.block_on(send_async(
            &self.endpoint,
            self.key.as_deref(),
            method,
            path,
            body,
            headers,
            on_chunk,
        ))
    }

    /// Send and turn an error envelope into [`ClientError::Api`].
    pub fn call(&self, method: Method, path: &str, body: Body) -> Result<Response, ClientError> {
        let r = self.send(method, path, body, &[])?;
        check(r)
    }

    pub fn json(&self, method: Method, path: &str, body: Body) -> Result<Value, ClientError> {
        Ok(self.call(method, path, body)?.json())
    }
}

/// `/v1/sandboxes/{id}`, for an id the server could have made (anything
/// else is refused here rather than sent).
pub fn sandbox_path(id: &str) -> Result<String, ClientError> {
    if !aibox_types::validate_id(id) {
        return Err(ClientError::Api {
            status: 400,
            code: ErrorCode::InvalidArgument,
            message: format!("{id:?} is not a sandbox id"),
        });
    }
    Ok(format!("/v1/sandboxes/{id}"))
}

/// The typed routes, blocking: each waits for [`AsyncClient`]'s.
impl Client {
    /// The same server and key, for async callers.
    pub fn async_client(&self) -> AsyncClient {
        AsyncClient::new(self.endpoint.clone(), self.key.clone())
    }

    /// Run one of [`AsyncClient`]'s calls to its end.
    pub fn wait<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(call)
    }

    /// `POST /v1/sandboxes`; with `idempotency_key`, a retry returns the
    /// sandbox the first try made.
    pub fn create_sandbox(
        &self,
        req: &CreateRequest,
        idempotency_key: Option<&str>,
    ) -> Result<SandboxView, ClientError> {
        self.wait(self.async_client().create_sandbox(req, idempotency_key))
    }

    pub fn sandbox(&self, id: &str) -> Result<SandboxView, ClientError> {
        self.wait(self.async_client().sandbox(id))
    }

    pub fn set_network(&self, id: &str, req: &NetworkRequest) -> Result<SandboxView, ClientError> {
        self.wait(self.async_client().set_network(id, req))
    }
}

/// Percent-encode a query value (`/` kept).
pub fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where a streamed response's body goes.
type OnChunk<'a> = &'a mut (dyn FnMut(&[u8]) + Send);

/// One request on a connection of its own (the async core of [`Client`],
/// for callers that already run in a tokio runtime); a successful
/// response's body goes to `on_chunk` when one is given.
pub async fn send_async(
    endpoint: &Endpoint,
    key: Option<&str>,
    method: Method,
    path: &str,
    body: Body,
    headers: &[(&str, &str)],
    on_chunk: Option<OnChunk<'_>>,
) -> Result<Response, ClientError> {
    let transport = |reason: String| ClientError::Transport {
        endpoint: endpoint.clone(),
        reason,
    };
    let host = match endpoint {
        Endpoint::Tcp(a) => a.clone(),
        Endpoint::Unix(_) => "localhost".into(),
    };
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, host);
    if let Some(k) = key {
        b = b.header(hyper::header::AUTHORIZATION, format!("Bearer {k}"));
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Json(v) => {
            b = b.header(hyper::header::CONTENT_TYPE, "application/json");
            Bytes::from(v.to_string())
        }
        Body::Raw(d) => {
            b = b.header(hyper::header::CONTENT_TYPE, "application/octet-stream");
            Bytes::from(d)
        }
    };
    let req = b
        .body(Full::new(bytes))
        .map_err(|e| transport(e.to_string()))?;
    let (status, body) = match endpoint {
        Endpoint::Tcp(addr) => {
            let s = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::TcpStream::connect(addr.as_str()),
            )
            .await
            .map_err(|_| not_running(endpoint, "connection timed out"))?
            .map_err(|e| not_running(endpoint, &e.to_string()))?;
            roundtrip(TokioIo::new(s), req, on_chunk).await
        }
        Endpoint::Unix(p) => {
            let s = tokio::net::UnixStream::connect(p)
                .await
                .map_err(|e| not_running(endpoint, &e.to_string()))?;
            roundtrip(TokioIo::new(s), req, on_chunk).await
        }
    }
    .map_err(transport)?;
    Ok(Response { status, body })
}

pub enum Body {
    Empty,
    Json(Value),
    Raw(Vec<u8>),
}

pub fn check(r: Response) -> Result<Response, ClientError> {
    if r.status < 300 {
        return Ok(r);
    }
    let v = r.json();
    Err(ClientError::Api {
        status: r.status,
        code: serde_json::from_value(v["error"]["code"].clone()).unwrap_or(ErrorCode::Internal),
        message: v["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                StatusCode::from_u16(r.status)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            }),
    })
}

fn not_running(endpoint: &Endpoint, reason: &str) -> ClientError {
    ClientError::NotRunning {
        endpoint: endpoint.clone(),
        reason: reason.to_string(),
    }
}

async fn roundtrip<IO>(
    io: IO,
    req: Request<Full<Bytes>>,
    on_chunk: Option<OnChunk<'_>>,
) -> Result<(u16, Bytes), String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    if let (Some(f), true) = (on_chunk, status < 300) {
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            if let Ok(d) = frame.map_err(|e| e.to_string())?.into_data() {
                f(&d);
            }
        }
        return Ok((status, Bytes::new()));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:7878").unwrap(),
            Endpoint::Tcp("127.0.0.1:7878".into())
        );
        assert_eq!(
            parse_url("http://127.0.0.1:7878/").unwrap(),
            Endpoint::Tcp("127.0.0.1:7878".into())
        );
        assert_eq!(
            parse_url("unix:/run/x.sock").unwrap(),
            Endpoint::Unix("/run/x.sock".into())
        );
        assert_eq!(
            parse_url("unix:///run/x.sock").unwrap(),
            Endpoint::Unix("/run/x.sock".into())
        );
        for bad in ["https://x", "127.0.0.1:1", "unix:rel", "http://a/b"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}

/// One event of a streamed exec.
#[derive(Debug)]
pub enum StreamEvent {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// `started`, `exit` and `error` events, as sent by the server.
    Json(Value),
}

/// What the caller sends into a streamed exec.
#[derive(Debug)]
pub enum StreamInput {
    Stdin(Vec<u8>),
    /// A JSON control message (`resize`, `signal`, `stdin_close`).
    Control(Value),
}

impl Client {
    /// Open a WebSocket on `path`, send `start` (if any) as the first text
    /// message, then feed `input` to it and every event to `on_event` until
    /// the server closes the stream. Returns the `exit` event, if one came.
    pub fn stream(
        &self,
        path: &str,
        start: Option<Value>,
        input: std::sync::mpsc::Receiver<StreamInput>,
        mut on_event: impl FnMut(StreamEvent),
    ) -> Result<Option<Value>, ClientError> {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let endpoint = self.endpoint.clone();
        let transport = move |reason: String| ClientError::Transport {
            endpoint: endpoint.clone(),
            reason,
        };
        self.rt.block_on(async {
            let mut ws = self.websocket(path).await?;
            if let Some(s) = start {
                ws.send(Message::Text(s.to_string().into()))
                    .await
                    .map_err(|e| transport(e.to_string()))?;
            }
            // Input comes from a blocking producer (a stdin thread): bridge it.
            let (tx, mut rx) = tokio::sync::mpsc::channel::<StreamInput>(16);
            std::thread::spawn(move || {
                for m in input {
                    if tx.blocking_send(m).is_err() {
                        return;
                    }
                }
            });
            let mut exit = None;
            let mut input_open = true;
            loop {
                tokio::select! {
                    m = rx.recv(), if input_open => match m {
                        Some(StreamInput::Stdin(d)) => {
                            ws.send(Message::Binary(d.into())).await.map_err(|e| transport(e.to_string()))?;
                        }
                        Some(StreamInput::Control(v)) => {
                            ws.send(Message::Text(v.to_string().into())).await.map_err(|e| transport(e.to_string()))?;
                        }
                        None => input_open = false,
                    },
                    m = ws.next() => match m {
                        Some(Ok(Message::Binary(b))) if !b.is_empty() => {
                            let data = b[1..].to_vec();
                            on_event(if b[0] == 2 { StreamEvent::Stderr(data) } else { StreamEvent::Stdout(data) });
                        }
                        Some(Ok(Message::Text(t))) => {
                            let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                            if v["type"] == "exit" {
                                exit = Some(v.clone());
                            }
                            on_event(StreamEvent::Json(v));
                        }
                        Some(Ok(Message::Close(_))) | None => return Ok(exit),
                        Some(Err(e)) => return Err(transport(e.to_string())),
                        Some(Ok(_)) => {}
                    },
                }
            }
        })
    }
}

impl Client {
    /// A second client to the same server (each has its own runtime, so
    /// threads can use one each).
    pub fn duplicate(&self) -> Result<Client, ClientError> {
        Client::new(self.endpoint.clone(), self.key.clone())
    }

    /// Open the WebSocket at `path`.
    async fn websocket(
        &self,
        path: &str,
    ) -> Result<tokio_tungstenite::WebSocketStream<Box<dyn AsyncStream>>, ClientError> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let transport = |reason: String| ClientError::Transport {
            endpoint: self.endpoint.clone(),
            reason,
        };
        let host = match &self.endpoint {
            Endpoint::Tcp(a) => a.clone(),
            Endpoint::Unix(_) => "localhost".into(),
        };
        let mut req = format!("ws://{host}{path}")
            .into_client_request()
            .map_err(|e| transport(e.to_string()))?;
        if let Some(k) = &self.key {
            let v = format!("Bearer {k}")
                .parse()
                .map_err(|_| transport("bad key".into()))?;
            req.headers_mut().insert("authorization", v);
        }
        // Either transport; boxed so one code path drives both.
        let ws = match &self.endpoint {
            Endpoint::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(|e| not_running(&self.endpoint, &e.to_string()))?;
                let _ = s.set_nodelay(true);
                tokio_tungstenite::client_async(req, Box::new(s) as Box<dyn AsyncStream>).await
            }
            Endpoint::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(|e| not_running(&self.endpoint, &e.to_string()))?;
                tokio_tungstenite::client_async(req, Box::new(s) as Box<dyn AsyncStream>).await
            }
        };
        let (ws, _) = ws.map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) => {
                let body = r.body().clone().unwrap_or_default();
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                ClientError::Api {
                    status: r.status().as_u16(),
                    code: serde_json::from_value(v["error"]["code"].clone())
                        .unwrap_or(ErrorCode::Internal),
                    message: v["error"]["message"].as_str().unwrap_or("").to_string(),
                }
            }
            other => transport(other.to_string()),
        })?;
        Ok(ws)
    }

    /// Carry `conn`'s bytes over the WebSocket at `path` (binary frames,
    /// both ways) until both sides are done.
    pub fn tunnel(&self, path: &str, conn: std::net::TcpStream) -> Result<(), ClientError> {
        use futures_util::{SinkExt, StreamExt};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_tungstenite::tungstenite::Message;
        let transport = |reason: String| ClientError::Transport {
            endpoint: self.endpoint.clone(),
            reason,
        };
        self.rt.block_on(async {
            let ws = self.websocket(path).await?;
            conn.set_nonblocking(true)
                .map_err(|e| transport(e.to_string()))?;
            let conn =
                tokio::net::TcpStream::from_std(conn).map_err(|e| transport(e.to_string()))?;
            let _ = conn.set_nodelay(true);
            let (mut rd, mut wr) = conn.into_split();
            let (mut tx, mut rx) = ws.split();
            let up = async {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tx
                                .send(Message::Binary(buf[..n].to_vec().into()))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                }
                let _ = tx.send(Message::Close(None)).await;
            };
            let down = async {
                while let Some(Ok(m)) = rx.next().await {
                    match m {
                        Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                        Message::Close(_) => break,
                        _ => {}
                    }
                }
                let _ = wr.shutdown().await;
            };
            tokio::join!(up, down);
            Ok(())
        })
    }
}

/// A byte stream tungstenite can run over (TCP or Unix).
trait AsyncStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> AsyncStream for T {}
