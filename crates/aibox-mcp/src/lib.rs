//! aibox's MCP server: sandboxes as tools, resources and prompts for any
//! MCP client. Every operation goes through the REST API ([`Api`]): over
//! HTTP for `aibox mcp` (stdio), in-process for `/mcp` on `aibox serve`
//! (as the principal the server resolved for the request), so keys, quotas, audit and limits apply
//! to an agent exactly as to any other client.
//!
//! Each MCP session has a default sandbox, created on first use, so an
//! agent need not pass ids; sandboxes a session created are destroyed when
//! it ends, unless kept (`keep: true`, or the `keep_sandbox` tool).

#![forbid(unsafe_code)]

mod tools;

use async_trait::async_trait;
use serde_json::Value;
use std::sync::{Arc, Mutex};

pub use tools::AiboxMcp;

/// A request body for [`Api::send`].
pub enum Body {
    Empty,
    Json(Value),
    Bytes(Vec<u8>),
}

/// What the REST API answered.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// The body was longer than the API's cap ([`Api::send`]) and is cut
    /// there.
    pub truncated: bool,
}

/// Who a tool call acts for: the extensions of the HTTP request that
/// carried it, where the server put the principal it resolved from that
/// request's credentials (streamable HTTP); empty over stdio, where the API
/// client sends its own key. Opaque to this crate: only the [`Api`]
/// implementation knows what to look for, and finding nothing must never
/// mean more rights.
#[derive(Clone, Default)]
pub struct Caller(pub http::Extensions);

/// The REST API, as the MCP server reaches it.
#[async_trait]
pub trait Api: Send + Sync + 'static {
    /// Send one request on behalf of `caller`. An implementation may cut
    /// a long body (setting [`Reply::truncated`]) so that no reply, a
    /// sandbox's file above all, is held whole in memory. `Err` is a
    /// transport failure, as a sentence.
    async fn send(
        &self,
        caller: &Caller,
        method: &str,
        path: &str,
        body: Body,
    ) -> Result<Reply, String>;

    /// The base URL published ports are reached through, when the API's
    /// own replies do not say (they do: `url` in `GET .../ports`).
    fn base_url(&self) -> Option<String> {
        None
    }
}

/// The REST API over HTTP (or the server's Unix socket): `aibox mcp`.
pub struct HttpApi {
    endpoint: aibox_client::Endpoint,
    key: Option<String>,
}

impl HttpApi {
    /// The server `AIBOX_URL`/`AIBOX_KEY` name, else the local one (as
    /// the CLI finds it).
    pub fn from_env() -> Result<HttpApi, String> {
        let (endpoint, key) = aibox_client::endpoint_from_env().map_err(|e| e.to_string())?;
        Ok(HttpApi { endpoint, key })
    }

    /// Is a server answering? (a clear error before any MCP traffic).
    pub async fn check(&self) -> Result<(), String> {
        let nobody = Caller::default();
        let r = self.send(&nobody, "GET", "/v1/health", Body::Empty).await?;
        if r.status >= 300 {
            return Err(error_text(&r));
        }
        // With a key, the health reply says whether it was accepted.
        let r = self
            .send(&nobody, "GET", "/v1/sandboxes?limit=1", Body::Empty)
            .await?;
        if r.status == 401 || r.status == 403 {
            return Err(format!(
                "the aibox server at {} refused the key: {} (set AIBOX_KEY)",
                self.endpoint,
                error_text(&r)
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Api for HttpApi {
    async fn send(
        &self,
        _caller: &Caller,
        method: &str,
        path: &str,
        body: Body,
    ) -> Result<Reply, String> {
        let method =
            aibox_client::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let body = match body {
            Body::Empty => aibox_client::Body::Empty,
            Body::Json(v) => aibox_client::Body::Json(v),
            Body::Bytes(b) => aibox_client::Body::Raw(b),
        };
        let r = aibox_client::send_async(
            &self.endpoint,
            self.key.as_deref(),
            method,
            path,
            body,
            &[],
            None,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(Reply {
            status: r.status,
            body: r.body.to_vec(),
            truncated: false,
        })
    }
}

/// `code: message` of an error reply (or its raw text).
pub(crate) fn error_text(r: &Reply) -> String {
    match serde_json::from_slice::<Value>(&r.body) {
        Ok(v) if v["error"]["message"].is_string() => format!(
            "{} ({})",
            v["error"]["message"].as_str().unwrap_or_default(),
            v["error"]["code"].as_str().unwrap_or("error")
        ),
        _ => format!(
            "HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body).trim()
        ),
    }
}

/// What one MCP session owns: its default sandbox and the sandboxes it
/// created (with the credentials that created them), destroyed when the
/// session ends unless kept.
pub(crate) struct Session {
    pub api: Arc<dyn Api>,
    pub default: tokio::sync::Mutex<Option<String>>,
    /// (id, caller, kept)
    pub owned: Mutex<Vec<(String, Caller, bool)>>,
}

impl Session {
    pub fn new(api: Arc<dyn Api>) -> Session {
        Session {
            api,
            default: tokio::sync::Mutex::new(None),
            owned: Mutex::new(Vec::new()),
        }
    }

    /// The session's sandboxes: (id, caller, kept).
    pub fn owned(&self) -> std::sync::MutexGuard<'_, Vec<(String, Caller, bool)>> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sandboxes to destroy now (not kept), forgotten.
    fn take_unkept(&self) -> Vec<(String, Caller)> {
        std::mem::take(&mut *self.owned())
            .into_iter()
            .filter(|(_, _, kept)| !kept)
            .map(|(id, caller, _)| (id, caller))
            .collect()
    }

    /// Destroy the session's sandboxes that were not kept.
    pub async fn cleanup(&self) {
        destroy(self.api.clone(), self.take_unkept()).await;
    }
}

async fn destroy(api: Arc<dyn Api>, sandboxes: Vec<(String, Caller)>) {
    for (id, caller) in sandboxes {
        let path = format!("/v1/sandboxes/{id}");
        let _ = api.send(&caller, "DELETE", &path, Body::Empty).await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let left = self.take_unkept();
        if left.is_empty() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(destroy(self.api.clone(), left));
        }
    }
}

/// `aibox mcp`: serve MCP on stdin/stdout until the client closes it, then
/// destroy the session's sandboxes. Nothing but protocol frames goes to
/// stdout (logs go to stderr).
pub async fn serve_stdio(api: Arc<dyn Api>) -> Result<(), String> {
    use rmcp::ServiceExt;
    let server = AiboxMcp::new(api);
    let session = server.session();
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("MCP initialisation failed: {e}"))?;
    let _ = running.waiting().await;
    session.cleanup().await;
    Ok(())
}

/// The streamable-HTTP MCP service for `/mcp` (one [`AiboxMcp`] per
/// session). Put it behind the server's authentication: each tool call
/// acts as the [`Caller`] of the HTTP request carrying it.
pub fn http_service(
    api: Arc<dyn Api>,
    allowed_hosts: Vec<String>,
) -> rmcp::transport::streamable_http_server::StreamableHttpService<
    AiboxMcp,
    rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
> {
    use rmcp::transport::streamable_http_server::{
        session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
    };
    let mut config = StreamableHttpServerConfig::default();
    if !allowed_hosts.is_empty() {
        config.allowed_hosts = allowed_hosts;
    }
    StreamableHttpService::new(
        move || Ok(AiboxMcp::new(api.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}
