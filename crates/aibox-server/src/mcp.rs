//! `/mcp`: aibox's MCP server over streamable HTTP. Requests need an API
//! key, a dashboard session, or the local socket, like any other; the
//! principal resolved from them rides in the request, and each tool call
//! goes to the control layer *as that principal*, typed, so scopes,
//! ownership, quotas, fair shares and the audit log apply unchanged. A
//! call without a principal carries no credentials at all and is refused
//! (the review's C1: it used to mean the local admin).

use crate::auth::Principal;
use crate::control;
use crate::error::{ApiError, ApiResult};
use crate::fairness::within_share;
use crate::AppState;
use aibox_mcp::{Api, Caller, Failure};
use aibox_types::api::{
    CreateRequest, ErrorDetail, ExecRequest, ExecResult, FileList, FileStat, ListQuery,
    MkdirRequest, PortsPatch, PortsView, SandboxView, SnapshotRequest, SnapshotView, VolumeList,
    VolumeQuery, VolumeRequest, VolumeView, WorkspaceList, Written,
};
use aibox_types::ErrorCode;
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Refuse `/mcp` requests without valid credentials (as the REST API
/// would), and put the resolved principal in the request for the tools.
pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    if let Err(e) = Principal::from_request_parts(&mut parts, &state).await {
        return e.into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

/// The control layer, as the MCP tools call it.
pub struct ControlApi {
    state: AppState,
}

impl ControlApi {
    pub fn new(state: AppState) -> ControlApi {
        ControlApi { state }
    }

    /// The caller's principal: only it speaks for the call, nothing else
    /// of the outer request.
    fn who(caller: &Caller) -> Result<&Principal, Failure> {
        caller.0.get::<Principal>().ok_or_else(|| ErrorDetail {
            code: ErrorCode::Unauthenticated,
            message: "no credentials came with this MCP request".into(),
        })
    }
}

fn failed(e: ApiError) -> Failure {
    ErrorDetail {
        code: e.code,
        message: e.message,
    }
}

/// `r`'s result, or its failure in the API's terms.
fn out<T>(r: ApiResult<T>) -> Result<T, Failure> {
    r.map_err(failed)
}

#[async_trait::async_trait]
impl Api for ControlApi {
    async fn default_ttl(&self, _caller: &Caller) -> Option<u64> {
        Some(self.state.config().default_ttl.as_secs())
    }

    async fn create_sandbox(
        &self,
        caller: &Caller,
        req: CreateRequest,
    ) -> Result<SandboxView, Failure> {
        let who = Self::who(caller)?;
        out(control::sandboxes::create(&self.state, who, req, None).await).map(|(_, v)| v)
    }

    async fn sandboxes(&self, caller: &Caller) -> Result<Vec<SandboxView>, Failure> {
        let who = Self::who(caller)?;
        let q = ListQuery {
            limit: Some(1000),
            ..Default::default()
        };
        out(control::sandboxes::list(&self.state, who, q)).map(|l| l.sandboxes)
    }

    async fn sandbox(&self, caller: &Caller, id: &str) -> Result<SandboxView, Failure> {
        out(control::sandboxes::get(&self.state, Self::who(caller)?, id).await)
    }

    async fn delete_sandbox(&self, caller: &Caller, id: &str) -> Result<(), Failure> {
        out(control::sandboxes::delete(&self.state, Self::who(caller)?, id).await)
    }

    async fn exec(
        &self,
        caller: &Caller,
        id: &str,
        req: ExecRequest,
    ) -> Result<ExecResult, Failure> {
        let (s, who) = (&self.state, Self::who(caller)?);
        out(within_share(s, who, control::sandboxes::exec(s, who, id, req)).await)
    }

    async fn read_file(
        &self,
        caller: &Caller,
        id: &str,
        path: &str,
        cap: usize,
    ) -> Result<(Vec<u8>, bool), Failure> {
        let (s, who) = (&self.state, Self::who(caller)?);
        out(within_share(s, who, control::files::read(s, who, id, path, cap)).await)
    }

    async fn write_file(
        &self,
        caller: &Caller,
        id: &str,
        path: &str,
        data: Vec<u8>,
    ) -> Result<Written, Failure> {
        let (s, who) = (&self.state, Self::who(caller)?);
        out(within_share(s, who, control::files::write(s, who, id, path, data, None)).await)
    }

    async fn mkdir(
        &self,
        caller: &Caller,
        id: &str,
        req: MkdirRequest,
    ) -> Result<FileStat, Failure> {
        let (s, who) = (&self.state, Self::who(caller)?);
        out(within_share(s, who, control::files::mkdir(s, who, id, req)).await)
    }

    async fn list_files(
        &self,
        caller: &Caller,
        id: &str,
        path: &str,
        recursive: bool,
    ) -> Result<FileList, Failure> {
        let (s, who) = (&self.state, Self::who(caller)?);
        out(within_share(s, who, control::files::list(s, who, id, path, recursive)).await)
    }

    async fn snapshot(
        &self,
        caller: &Caller,
        id: &str,
        req: SnapshotRequest,
    ) -> Result<SnapshotView, Failure> {
        let (s, who) = (&self.state, Self::who(caller)?);
        out(within_share(s, who, control::snapshots::create(s, who, id, req)).await)
    }

    async fn restore(
        &self,
        caller: &Caller,
        snapshot: &str,
        req: CreateRequest,
    ) -> Result<SandboxView, Failure> {
        let who = Self::who(caller)?;
        out(control::snapshots::restore(&self.state, who, snapshot, req, None).await)
            .map(|(_, v)| v)
    }

    async fn ports(&self, caller: &Caller, id: &str) -> Result<PortsView, Failure> {
        out(control::ports::get(&self.state, Self::who(caller)?, id).await)
    }

    async fn set_ports(
        &self,
        caller: &Caller,
        id: &str,
        patch: PortsPatch,
    ) -> Result<PortsView, Failure> {
        out(control::ports::update(&self.state, Self::who(caller)?, id, patch).await)
    }

    async fn snapshot_info(&self, caller: &Caller, id: &str) -> Result<SnapshotView, Failure> {
        out(control::snapshots::get(&self.state, Self::who(caller)?, id))
    }

    async fn workspaces(&self, caller: &Caller) -> Result<WorkspaceList, Failure> {
        out(control::workspaces::list(&self.state, Self::who(caller)?).await)
    }

    async fn volumes(&self, caller: &Caller) -> Result<VolumeList, Failure> {
        out(control::volumes::list(&self.state, Self::who(caller)?, VolumeQuery::default()).await)
    }

    async fn create_volume(
        &self,
        caller: &Caller,
        req: VolumeRequest,
    ) -> Result<VolumeView, Failure> {
        let (s, who) = (&self.state, Self::who(caller)?);
        out(within_share(s, who, control::volumes::create(s, who, req)).await)
    }
}
