//! `/mcp`: aibox's MCP server over streamable HTTP. Requests need an API
//! key like any other (or come over the local socket); each tool call
//! then runs through the REST API in-process, with the caller's own key,
//! so scopes, quotas, rate limits and the audit log apply unchanged.

use crate::auth::{LocalSocket, Principal};
use crate::AppState;
use aibox_mcp::{Api, Body, Reply};
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

/// Refuse `/mcp` requests without a valid key (as the REST API would).
pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    if let Err(e) = Principal::from_request_parts(&mut parts, &state).await {
        return e.into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

/// The REST router, called in-process.
pub struct InProcess {
    router: Router,
}

impl InProcess {
    pub fn new(router: Router) -> InProcess {
        InProcess { router }
    }
}

#[async_trait::async_trait]
impl Api for InProcess {
    async fn send(
        &self,
        auth: Option<&str>,
        method: &str,
        path: &str,
        body: Body,
    ) -> Result<Reply, String> {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let mut b = axum::http::Request::builder().method(method).uri(path);
        let bytes = match body {
            Body::Empty => Vec::new(),
            Body::Json(v) => {
                b = b.header(axum::http::header::CONTENT_TYPE, "application/json");
                v.to_string().into_bytes()
            }
            Body::Bytes(d) => {
                b = b.header(axum::http::header::CONTENT_TYPE, "application/octet-stream");
                d
            }
        };
        match auth {
            Some(a) => b = b.header(axum::http::header::AUTHORIZATION, a),
            // `authenticate` let a request without a key through only
            // when it came over the local socket.
            None => b = b.extension(LocalSocket),
        }
        let req = b
            .body(axum::body::Body::from(bytes))
            .map_err(|e| e.to_string())?;
        let resp = self
            .router
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes()
            .to_vec();
        Ok(Reply { status, body })
    }
}
