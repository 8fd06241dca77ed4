//! aibox's MCP server: sandboxes as tools, resources and prompts for any
//! MCP client. Every operation goes through the typed API ([`Api`]): the
//! REST API over HTTP for `aibox mcp` (stdio), the server's control layer
//! for `/mcp` on `aibox serve` (as the principal the server resolved for
//! the request), so keys, quotas, audit and limits apply to an agent
//! exactly as to any other client.
//!
//! Each MCP session has a default sandbox, created on first use, so an
//! agent need not pass ids; sandboxes a session created are destroyed when
//! it ends, unless kept (`keep: true`, or the `keep_sandbox` tool).

#![forbid(unsafe_code)]

mod tools;

use aibox_types::api::{
    CreateRequest, ErrorDetail, ExecRequest, ExecResult, FileList, FileStat, MkdirRequest,
    PortsPatch, PortsView, SandboxView, SnapshotRequest, SnapshotView, VolumeList, VolumeRequest,
    VolumeView, WorkspaceList, Written,
};
use async_trait::async_trait;
use std::sync::{Arc, Mutex};

pub use tools::AiboxMcp;

/// Who a tool call acts for: the extensions of the HTTP request that
/// carried it, where the server put the principal it resolved from that
/// request's credentials (streamable HTTP); empty over stdio, where the API
/// client sends its own key. Opaque to this crate: only the [`Api`]
/// implementation knows what to look for, and finding nothing must never
/// mean more rights.
#[derive(Clone, Default)]
pub struct Caller(pub http::Extensions);

/// A call that failed: the API's stable code and its message.
pub type Failure = ErrorDetail;

/// The aibox API as the tools use it, typed: over HTTP for `aibox mcp`
/// ([`HttpApi`]), and in the server for `/mcp`, where each call goes
/// straight to the control layer as the caller's principal.
#[async_trait]
pub trait Api: Send + Sync + 'static {
    /// The server's default lifetime of a sandbox, in seconds.
    async fn default_ttl(&self, caller: &Caller) -> Option<u64>;
    async fn create_sandbox(
        &self,
        caller: &Caller,
        req: CreateRequest,
    ) -> Result<SandboxView, Failure>;
    /// The caller's sandboxes (the first thousand).
    async fn sandboxes(&self, caller: &Caller) -> Result<Vec<SandboxView>, Failure>;
    async fn sandbox(&self, caller: &Caller, id: &str) -> Result<SandboxView, Failure>;
    async fn delete_sandbox(&self, caller: &Caller, id: &str) -> Result<(), Failure>;
    async fn exec(
        &self,
        caller: &Caller,
        id: &str,
        req: ExecRequest,
    ) -> Result<ExecResult, Failure>;
    /// A file's first `cap` bytes, and whether it has more: a file may be
    /// endless (`/dev/zero`) or huge, and is never held whole.
    async fn read_file(
        &self,
        caller: &Caller,
        id: &str,
        path: &str,
        cap: usize,
    ) -> Result<(Vec<u8>, bool), Failure>;
    async fn write_file(
        &self,
        caller: &Caller,
        id: &str,
        path: &str,
        data: Vec<u8>,
    ) -> Result<Written, Failure>;
    async fn mkdir(
        &self,
        caller: &Caller,
        id: &str,
        req: MkdirRequest,
    ) -> Result<FileStat, Failure>;
    async fn list_files(
        &self,
        caller: &Caller,
        id: &str,
        path: &str,
        recursive: bool,
    ) -> Result<FileList, Failure>;
    async fn snapshot(
        &self,
        caller: &Caller,
        id: &str,
        req: SnapshotRequest,
    ) -> Result<SnapshotView, Failure>;
    async fn restore(
        &self,
        caller: &Caller,
        snapshot: &str,
        req: CreateRequest,
    ) -> Result<SandboxView, Failure>;
    async fn snapshot_info(&self, caller: &Caller, id: &str) -> Result<SnapshotView, Failure>;
    async fn ports(&self, caller: &Caller, id: &str) -> Result<PortsView, Failure>;
    async fn set_ports(
        &self,
        caller: &Caller,
        id: &str,
        patch: PortsPatch,
    ) -> Result<PortsView, Failure>;
    /// The caller's volumes.
    async fn volumes(&self, caller: &Caller) -> Result<VolumeList, Failure>;
    /// The caller's workspaces.
    async fn workspaces(&self, caller: &Caller) -> Result<WorkspaceList, Failure>;
    async fn create_volume(
        &self,
        caller: &Caller,
        req: VolumeRequest,
    ) -> Result<VolumeView, Failure>;
}

/// The API over HTTP (or the server's Unix socket): `aibox mcp`.
pub struct HttpApi {
    client: aibox_client::AsyncClient,
}

fn failed(e: aibox_client::ClientError) -> Failure {
    ErrorDetail {
        code: e.code(),
        message: e.to_string(),
    }
}

impl HttpApi {
    /// The server `AIBOX_URL`/`AIBOX_KEY` name, else the local one (as
    /// the CLI finds it).
    pub fn from_env() -> Result<HttpApi, String> {
        let (endpoint, key) = aibox_client::endpoint_from_env().map_err(|e| e.to_string())?;
        Ok(HttpApi {
            client: aibox_client::AsyncClient::new(endpoint, key),
        })
    }

    /// Is a server answering, and does it take the key? (a clear error
    /// before any MCP traffic).
    pub async fn check(&self) -> Result<(), String> {
        self.client.health().await.map_err(|e| e.to_string())?;
        let one = aibox_types::api::ListQuery {
            limit: Some(1),
            ..Default::default()
        };
        match self.client.sandboxes(&one).await {
            Err(e @ aibox_client::ClientError::Api { .. })
                if matches!(
                    e.code(),
                    aibox_types::ErrorCode::Unauthenticated
                        | aibox_types::ErrorCode::PermissionDenied
                ) =>
            {
                Err(format!(
                    "the aibox server at {} refused the key: {e} (set AIBOX_KEY)",
                    self.client.endpoint()
                ))
            }
            Err(e) => Err(e.to_string()),
            Ok(_) => Ok(()),
        }
    }
}

#[async_trait]
impl Api for HttpApi {
    async fn default_ttl(&self, _caller: &Caller) -> Option<u64> {
        let h = self.client.health().await.ok()?;
        h.limits.map(|l| l.default_ttl_seconds)
    }
    async fn create_sandbox(
        &self,
        _caller: &Caller,
        req: CreateRequest,
    ) -> Result<SandboxView, Failure> {
        self.client.create_sandbox(&req, None).await.map_err(failed)
    }
    async fn sandboxes(&self, _caller: &Caller) -> Result<Vec<SandboxView>, Failure> {
        let q = aibox_types::api::ListQuery {
            limit: Some(1000),
            ..Default::default()
        };
        Ok(self.client.sandboxes(&q).await.map_err(failed)?.sandboxes)
    }
    async fn sandbox(&self, _caller: &Caller, id: &str) -> Result<SandboxView, Failure> {
        self.client.sandbox(id).await.map_err(failed)
    }
    async fn delete_sandbox(&self, _caller: &Caller, id: &str) -> Result<(), Failure> {
        self.client.delete_sandbox(id).await.map_err(failed)
    }
    async fn exec(
        &self,
        _caller: &Caller,
        id: &str,
        req: ExecRequest,
    ) -> Result<ExecResult, Failure> {
        self.client.exec(id, &req).await.map_err(failed)
    }
    async fn read_file(
        &self,
        _caller: &Caller,
        id: &str,
        path: &str,
        cap: usize,
    ) -> Result<(Vec<u8>, bool), Failure> {
        self.client.read_file(id, path, cap).await.map_err(failed)
    }
    async fn write_file(
        &self,
        _caller: &Caller,
        id: &str,
        path: &str,
        data: Vec<u8>,
    ) -> Result<Written, Failure> {
        self.client.write_file(id, path, data).await.map_err(failed)
    }
    async fn mkdir(
        &self,
        _caller: &Caller,
        id: &str,
        req: MkdirRequest,
    ) -> Result<FileStat, Failure> {
        self.client.mkdir(id, &req).await.map_err(failed)
    }
    async fn list_files(
        &self,
        _caller: &Caller,
        id: &str,
        path: &str,
        recursive: bool,
    ) -> Result<FileList, Failure> {
        self.client
            .list_files(id, path, recursive)
            .await
            .map_err(failed)
    }
    async fn snapshot(
        &self,
        _caller: &Caller,
        id: &str,
        req: SnapshotRequest,
    ) -> Result<SnapshotView, Failure> {
        self.client.snapshot(id, &req).await.map_err(failed)
    }
    async fn restore(
        &self,
        _caller: &Caller,
        snapshot: &str,
        req: CreateRequest,
    ) -> Result<SandboxView, Failure> {
        self.client.restore(snapshot, &req).await.map_err(failed)
    }
    async fn ports(&self, _caller: &Caller, id: &str) -> Result<PortsView, Failure> {
        self.client.ports(id).await.map_err(failed)
    }
    async fn set_ports(
        &self,
        _caller: &Caller,
        id: &str,
        patch: PortsPatch,
    ) -> Result<PortsView, Failure> {
        self.client.set_ports(id, &patch).await.map_err(failed)
    }
    async fn snapshot_info(&self, _caller: &Caller, id: &str) -> Result<SnapshotView, Failure> {
        self.client.snapshot_info(id).await.map_err(failed)
    }
    async fn volumes(&self, _caller: &Caller) -> Result<VolumeList, Failure> {
        self.client.volumes(None).await.map_err(failed)
    }
    async fn workspaces(&self, _caller: &Caller) -> Result<WorkspaceList, Failure> {
        self.client.workspaces().await.map_err(failed)
    }
    async fn create_volume(
        &self,
        _caller: &Caller,
        req: VolumeRequest,
    ) -> Result<VolumeView, Failure> {
        self.client.create_volume(&req).await.map_err(failed)
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
        let _ = api.delete_sandbox(&caller, &id).await;
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
