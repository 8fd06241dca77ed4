//! The REST API's routes, one async method each, with the API's own
//! types (`aibox_types::api`) in and out. The blocking [`crate::Client`]
//! waits for these; `aibox mcp` calls them directly.

use crate::{check, query_escape, sandbox_path, send_async, Body, ClientError, Endpoint, Method};
use aibox_types::api::{
    CreateRequest, ExecRequest, ExecResult, FileList, FileStat, Forked, Health, ListQuery,
    MkdirRequest, NetworkRequest, PortsPatch, PortsView, SandboxList, SandboxView, SnapshotList,
    SnapshotRequest, SnapshotView, TimeoutRequest, VolumeList, VolumeRequest,
    VolumeSnapshotRequest, VolumeView, WorkspaceList, WorkspaceRequest, WorkspaceSnapshotRequest,
    WorkspaceView, Written,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// A snapshot id the server could have made (anything else is refused
/// here rather than sent).
fn snapshot_id(id: &str) -> Result<&str, ClientError> {
    if aibox_types::validate_id(id) {
        Ok(id)
    } else {
        Err(ClientError::Api {
            status: 400,
            code: aibox_types::ErrorCode::InvalidArgument,
            message: format!("{id:?} is not a snapshot id"),
        })
    }
}

/// A volume's path: named by its name or id (anything else is refused
/// here rather than sent).
fn volume_path(volume: &str) -> Result<String, ClientError> {
    if aibox_types::api::valid_volume_name(volume) || aibox_types::validate_id(volume) {
        Ok(format!("/v1/volumes/{volume}"))
    } else {
        Err(ClientError::Api {
            status: 400,
            code: aibox_types::ErrorCode::InvalidArgument,
            message: format!("{volume:?} is not a volume name"),
        })
    }
}

/// A workspace's path: named by its name or id.
fn workspace_path(workspace: &str) -> Result<String, ClientError> {
    if aibox_types::api::valid_workspace_name(workspace) || aibox_types::validate_id(workspace) {
        Ok(format!("/v1/workspaces/{workspace}"))
    } else {
        Err(ClientError::Api {
            status: 400,
            code: aibox_types::ErrorCode::InvalidArgument,
            message: format!("{workspace:?} is not a workspace name"),
        })
    }
}

/// A client of one server, with one key; cheap to clone.
#[derive(Debug, Clone)]
pub struct AsyncClient {
    endpoint: Endpoint,
    key: Option<String>,
}

fn json_of<T: Serialize>(v: &T) -> Body {
    // A request type always serializes (plain data, string keys).
    Body::Json(serde_json::to_value(v).unwrap_or(Value::Null))
}

impl AsyncClient {
    pub fn new(endpoint: Endpoint, key: Option<String>) -> AsyncClient {
        AsyncClient { endpoint, key }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// One request; an error reply becomes [`ClientError::Api`].
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Result<crate::Response, ClientError> {
        let r = send_async(
            &self.endpoint,
            self.key.as_deref(),
            method,
            path,
            body,
            headers,
            None,
        )
        .await?;
        check(r)
    }

    /// One request whose reply is a JSON body of type `T`.
    async fn typed<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let what = format!("{method} {path}");
        let r = self.call(method, path, body, headers).await?;
        serde_json::from_slice(&r.body).map_err(|e| ClientError::BadReply {
            endpoint: self.endpoint.clone(),
            what,
            reason: e.to_string(),
        })
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.typed(Method::GET, "/v1/health", Body::Empty, &[])
            .await
    }

    /// `POST /v1/sandboxes`; with `idempotency_key`, a retry returns the
    /// sandbox the first try made.
    pub async fn create_sandbox(
        &self,
        req: &CreateRequest,
        idempotency_key: Option<&str>,
    ) -> Result<SandboxView, ClientError> {
        let headers: Vec<(&str, &str)> = idempotency_key
            .map(|k| ("idempotency-key", k))
            .into_iter()
            .collect();
        self.typed(Method::POST, "/v1/sandboxes", json_of(req), &headers)
            .await
    }

    pub async fn sandbox(&self, id: &str) -> Result<SandboxView, ClientError> {
        self.typed(Method::GET, &sandbox_path(id)?, Body::Empty, &[])
            .await
    }

    /// One page of sandboxes.
    pub async fn sandboxes(&self, q: &ListQuery) -> Result<SandboxList, ClientError> {
        let mut parts = Vec::new();
        if let Some(s) = q.state {
            parts.push(format!("state={}", s.as_str()));
        }
        for (k, v) in [
            ("label", &q.label),
            ("cursor", &q.cursor),
            ("view", &q.view),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={}", query_escape(v)));
            }
        }
        if let Some(l) = q.limit {
            parts.push(format!("limit={l}"));
        }
        let path = if parts.is_empty() {
            "/v1/sandboxes".to_string()
        } else {
            format!("/v1/sandboxes?{}", parts.join("&"))
        };
        self.typed(Method::GET, &path, Body::Empty, &[]).await
    }

    pub async fn delete_sandbox(&self, id: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &sandbox_path(id)?, Body::Empty, &[])
            .await
            .map(drop)
    }

    pub async fn pause_sandbox(&self, id: &str) -> Result<SandboxView, ClientError> {
        let path = format!("{}/pause", sandbox_path(id)?);
        self.typed(Method::POST, &path, Body::Empty, &[]).await
    }

    pub async fn resume_sandbox(&self, id: &str) -> Result<SandboxView, ClientError> {
        let path = format!("{}/resume", sandbox_path(id)?);
        self.typed(Method::POST, &path, Body::Empty, &[]).await
    }

    pub async fn set_timeout(
        &self,
        id: &str,
        req: &TimeoutRequest,
    ) -> Result<SandboxView, ClientError> {
        let path = format!("{}/timeout", sandbox_path(id)?);
        self.typed(Method::POST, &path, json_of(req), &[]).await
    }

    pub async fn set_network(
        &self,
        id: &str,
        req: &NetworkRequest,
    ) -> Result<SandboxView, ClientError> {
        let path = format!("{}/network", sandbox_path(id)?);
        self.typed(Method::PATCH, &path, json_of(req), &[]).await
    }

    /// Run a command to completion.
    pub async fn exec(&self, id: &str, req: &ExecRequest) -> Result<ExecResult, ClientError> {
        let path = format!("{}/exec", sandbox_path(id)?);
        self.typed(Method::POST, &path, json_of(req), &[]).await
    }

    /// A file's first `cap` bytes, and whether it has more.
    pub async fn read_file(
        &self,
        id: &str,
        path: &str,
        cap: usize,
    ) -> Result<(Vec<u8>, bool), ClientError> {
        let url = format!("{}/files?path={}", sandbox_path(id)?, query_escape(path));
        let r = self.call(Method::GET, &url, Body::Empty, &[]).await?;
        let mut data = r.body.to_vec();
        let more = data.len() > cap;
        data.truncate(cap);
        Ok((data, more))
    }

    /// Write a whole file (atomically).
    pub async fn write_file(
        &self,
        id: &str,
        path: &str,
        data: Vec<u8>,
    ) -> Result<Written, ClientError> {
        let url = format!("{}/files?path={}", sandbox_path(id)?, query_escape(path));
        self.typed(Method::PUT, &url, Body::Raw(data), &[]).await
    }

    /// `mkdir -p`.
    pub async fn mkdir(&self, id: &str, req: &MkdirRequest) -> Result<FileStat, ClientError> {
        let path = format!("{}/files/mkdir", sandbox_path(id)?);
        self.typed(Method::POST, &path, json_of(req), &[]).await
    }

    pub async fn list_files(
        &self,
        id: &str,
        path: &str,
        recursive: bool,
    ) -> Result<FileList, ClientError> {
        let url = format!(
            "{}/files/list?path={}&recursive={recursive}",
            sandbox_path(id)?,
            query_escape(path)
        );
        self.typed(Method::GET, &url, Body::Empty, &[]).await
    }

    pub async fn snapshot(
        &self,
        id: &str,
        req: &SnapshotRequest,
    ) -> Result<SnapshotView, ClientError> {
        let path = format!("{}/snapshots", sandbox_path(id)?);
        self.typed(Method::POST, &path, json_of(req), &[]).await
    }

    /// A new sandbox from snapshot `snapshot` (the request's fields over
    /// its spec; `snapshot` itself is the path's).
    pub async fn restore(
        &self,
        snapshot: &str,
        req: &CreateRequest,
    ) -> Result<SandboxView, ClientError> {
        let path = format!("/v1/snapshots/{}/restore", snapshot_id(snapshot)?);
        self.typed(Method::POST, &path, json_of(req), &[]).await
    }

    pub async fn snapshot_info(&self, id: &str) -> Result<SnapshotView, ClientError> {
        let path = format!("/v1/snapshots/{}", snapshot_id(id)?);
        self.typed(Method::GET, &path, Body::Empty, &[]).await
    }

    pub async fn snapshots(&self) -> Result<SnapshotList, ClientError> {
        self.typed(Method::GET, "/v1/snapshots", Body::Empty, &[])
            .await
    }

    pub async fn delete_snapshot(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/v1/snapshots/{}", snapshot_id(id)?);
        self.call(Method::DELETE, &path, Body::Empty, &[])
            .await
            .map(drop)
    }

    /// `count` sandboxes from snapshot `snapshot`, all or none.
    pub async fn fork(
        &self,
        snapshot: &str,
        req: &CreateRequest,
        count: u64,
    ) -> Result<Forked, ClientError> {
        let mut body = serde_json::to_value(req).unwrap_or(Value::Null);
        body["count"] = serde_json::json!(count);
        let path = format!("/v1/snapshots/{}/fork", snapshot_id(snapshot)?);
        self.typed(Method::POST, &path, Body::Json(body), &[]).await
    }

    pub async fn ports(&self, id: &str) -> Result<PortsView, ClientError> {
        let path = format!("{}/ports", sandbox_path(id)?);
        self.typed(Method::GET, &path, Body::Empty, &[]).await
    }

    pub async fn set_ports(&self, id: &str, patch: &PortsPatch) -> Result<PortsView, ClientError> {
        let path = format!("{}/ports", sandbox_path(id)?);
        self.typed(Method::PATCH, &path, json_of(patch), &[]).await
    }

    pub async fn create_volume(&self, req: &VolumeRequest) -> Result<VolumeView, ClientError> {
        self.typed(Method::POST, "/v1/volumes", json_of(req), &[])
            .await
    }

    /// The caller's volumes; `label` (`K=V`) filters.
    pub async fn volumes(&self, label: Option<&str>) -> Result<VolumeList, ClientError> {
        let path = match label {
            Some(l) => format!("/v1/volumes?label={}", query_escape(l)),
            None => "/v1/volumes".to_string(),
        };
        self.typed(Method::GET, &path, Body::Empty, &[]).await
    }

    pub async fn volume(&self, volume: &str) -> Result<VolumeView, ClientError> {
        self.typed(Method::GET, &volume_path(volume)?, Body::Empty, &[])
            .await
    }

    pub async fn delete_volume(&self, volume: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &volume_path(volume)?, Body::Empty, &[])
            .await
            .map(drop)
    }

    pub async fn snapshot_volume(
        &self,
        volume: &str,
        req: &VolumeSnapshotRequest,
    ) -> Result<VolumeView, ClientError> {
        let path = format!("{}/snapshots", volume_path(volume)?);
        self.typed(Method::POST, &path, json_of(req), &[]).await
    }

    pub async fn delete_volume_snapshot(
        &self,
        volume: &str,
        snapshot: &str,
    ) -> Result<(), ClientError> {
        let path = format!(
            "{}/snapshots/{}",
            volume_path(volume)?,
            query_escape(snapshot)
        );
        self.call(Method::DELETE, &path, Body::Empty, &[])
            .await
            .map(drop)
    }

    pub async fn clone_volume(
        &self,
        volume: &str,
        req: &aibox_types::api::CloneRequest,
    ) -> Result<VolumeView, ClientError> {
        let path = format!("{}/clone", volume_path(volume)?);
        self.typed(Method::POST, &path, json_of(req), &[]).await
    }

    pub async fn create_workspace(
        &self,
        req: &WorkspaceRequest,
    ) -> Result<WorkspaceView, ClientError> {
        self.typed(Method::POST, "/v1/workspaces", json_of(req), &[])
            .await
    }

    pub async fn workspaces(&self) -> Result<WorkspaceList, ClientError> {
        self.typed(Method::GET, "/v1/workspaces", Body::Empty, &[])
            .await
    }

    pub async fn workspace(&self, workspace: &str) -> Result<WorkspaceView, ClientError> {
        self.typed(Method::GET, &workspace_path(workspace)?, Body::Empty, &[])
            .await
    }

    pub async fn delete_workspace(&self, workspace: &str) -> Result<(), ClientError> {
        self.call(
            Method::DELETE,
            &workspace_path(workspace)?,
            Body::Empty,
            &[],
        )
        .await
        .map(drop)
    }

    pub async fn snapshot_workspace(
        &self,
        workspace: &str,
        req: &WorkspaceSnapshotRequest,
    ) -> Result<WorkspaceView, ClientError> {
        let path = format!("{}/snapshots", workspace_path(workspace)?);
        self.typed(Method::POST, &path, json_of(req), &[]).await
    }
}
