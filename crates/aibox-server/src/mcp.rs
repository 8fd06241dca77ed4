//! `/mcp`: aibox's MCP server over streamable HTTP. Requests need an API
//! key, a dashboard session, or the local socket, like any other; the
//! principal resolved from them rides in the request, and each tool call
//! runs through the REST API in-process *as that principal*, so scopes,
//! ownership, quotas and the audit log apply unchanged. An in-process call
//! without a principal carries no credentials at all and is refused (the
//! review's C1: it used to mean the local admin).

use crate::auth::Principal;
use crate::AppState;
use aibox_mcp::{Api, Body, Caller, Reply};
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

/// Refuse `/mcp` requests without valid credentials (as the REST API
/// would), and put the resolved principal in the request for the tools.
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
        caller: &Caller,
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
        // Only the principal crosses over: nothing else of the outer
        // request (its headers, its transport) speaks for the caller.
        if let Some(p) = caller.0.get::<Principal>() {
            b = b.extension(p.clone());
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
        // Read at most MAX_REPLY bytes: a tool never needs more (it shows
        // a model 256 KiB), and a sandbox's file may be endless
        // (`/dev/zero`) or huge (the review's H5). Dropping the body
        // stops the read.
        let mut body = resp.into_body();
        let mut out = Vec::new();
        let mut truncated = false;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Ok(data) = frame.into_data() {
                let room = MAX_REPLY - out.len();
                if data.len() > room {
                    out.extend_from_slice(&data[..room]);
                    truncated = true;
                    break;
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(Reply {
            status,
            body: out,
            truncated,
        })
    }
}

/// Most bytes of one in-process reply an MCP tool reads.
pub const MAX_REPLY: usize = 8 << 20;
