//! Fair shares of the server per key. Every call that holds server
//! resources for as long as a sandbox wants (an exec, a file or tar
//! transfer, a process wait: a blocking thread each; a WebSocket: two
//! threads and a connection) takes a permit from its key's share first,
//! and gives it back when the response has been sent in full, or when the
//! WebSocket closes. A key at its limit gets 429 `rate_limited` at once,
//! so one key can never take the blocking pool (512 threads) or the
//! server's memory from the others (the review's H5).

use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;
use aibox_types::ErrorCode;
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest WebSocket message a client may send (stdin data, tunnelled
/// bytes, control): with a session's bounded stdin backlog it bounds what
/// one session can make the server hold.
pub const MAX_WS_MESSAGE: usize = 1 << 20;

/// A key's two shares: calls (blocking work) and streams (WebSockets).
type KeyShares = (Arc<Semaphore>, Arc<Semaphore>);

/// Every key's shares.
#[derive(Default)]
pub struct Shares {
    keys: Mutex<HashMap<String, KeyShares>>,
}

/// A permit of a key's share, held by whatever keeps the work going (a
/// response body, a WebSocket session). Cloning shares the one permit.
#[derive(Clone)]
pub struct Share(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

impl Shares {
    fn of(&self, key: &str, calls: usize, streams: usize) -> KeyShares {
        let mut m = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(key.to_string())
            .or_insert_with(|| {
                (
                    Arc::new(Semaphore::new(calls)),
                    Arc::new(Semaphore::new(streams)),
                )
            })
            .clone()
    }
}

tokio::task_local! {
    /// The share of the request being handled (set by [`limit`]).
    static CURRENT: Share;
}

/// `tokio::task::spawn_blocking` for work done on behalf of a request: the
/// request's share (if it has one) stays taken until `f` returns, even if
/// the client has gone and the handler was dropped.
pub fn spawn_blocking<T, F>(f: F) -> tokio::task::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let held = CURRENT.try_with(Share::clone).ok();
    tokio::task::spawn_blocking(move || {
        let _held = held;
        f()
    })
}

/// A key at its limit of calls.
fn too_many_calls(max: usize) -> ApiError {
    ApiError::new(
        ErrorCode::RateLimited,
        format!(
            "this key already has {max} calls into sandboxes (execs, transfers, waits) in progress: wait for one to end"
        ),
    )
    .retry_after(1)
}

/// Run `work` holding a permit of `who`'s share of calls (refused at the
/// limit), as [`limit`] does for a REST request: for callers of the
/// control layer that do not come through the router (the MCP tools).
pub async fn within_share<T>(
    state: &AppState,
    who: &Principal,
    work: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let c = state.config();
    let (calls, _) = state
        .shares()
        .of(&who.id, c.max_calls_per_key, c.max_streams_per_key);
    let permit = calls
        .try_acquire_owned()
        .map_err(|_| too_many_calls(c.max_calls_per_key))?;
    CURRENT.scope(Share(Arc::new(permit)), work).await
}

fn is_websocket(req: &Request) -> bool {
    req.headers()
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Middleware for the routes that hold server resources: resolve the
/// caller, take a permit from its share (refusing at the limit), hand it
/// to the handler (`Extension<Share>`, for WebSocket sessions) and keep it
/// until the response body is done.
pub async fn limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let ws = is_websocket(&req);
    let (mut parts, body) = req.into_parts();
    let who = match Principal::from_request_parts(&mut parts, &state).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let c = state.config();
    let (calls, streams) = state
        .shares()
        .of(&who.id, c.max_calls_per_key, c.max_streams_per_key);
    let (sem, max, what) = if ws {
        (streams, c.max_streams_per_key, "WebSocket sessions")
    } else {
        (
            calls,
            c.max_calls_per_key,
            "calls into sandboxes (execs, transfers, waits)",
        )
    };
    let permit = match sem.try_acquire_owned() {
        Ok(p) => Share(Arc::new(p)),
        Err(_) => {
            return ApiError::new(
                ErrorCode::RateLimited,
                format!("this key already has {max} {what} in progress: wait for one to end"),
            )
            .retry_after(1)
            .into_response()
        }
    };
    parts.extensions.insert(permit.clone());
    // Blocking work started by the handler takes a clone along
    // ([`spawn_blocking`]): a client that goes away does not free the
    // share while its exec still runs.
    let resp = CURRENT
        .scope(permit.clone(), next.run(Request::from_parts(parts, body)))
        .await;
    // The permit goes with the body: a streamed download holds it to its
    // last byte.
    resp.map(|b| {
        use http_body_util::BodyExt;
        axum::body::Body::new(b.map_frame(move |f| {
            let _held = &permit;
            f
        }))
    })
}
