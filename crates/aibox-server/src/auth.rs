//! Bearer API keys. A key is `aibox_` + 32 random bytes in hex: with that
//! much entropy a fast hash (SHA-256) is enough to store it (a slow
//! password hash protects guessable secrets, which these are not).
//! Requests on the Unix socket are local and trusted: its 0600 mode is
//! the boundary.

use crate::error::ApiError;
use crate::store::Scope;
use crate::AppState;
use aibox_types::ErrorCode;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Key id (`local` on the Unix socket).
    pub id: String,
    pub scope: Scope,
    pub max_sandboxes: Option<u64>,
    pub max_memory: Option<u64>,
    /// What this principal may ask for at most; None for admins.
    pub ceiling: Option<std::sync::Arc<aibox_types::ceiling::Ceiling>>,
}

/// Buckets kept before idle ones are dropped.
const MAX_BUCKETS: usize = 10_000;

/// Token buckets per key: `rate` requests per second, bursts of `2 × rate`.
#[derive(Default)]
pub struct RateLimiter {
    buckets: std::sync::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
}

impl RateLimiter {
    /// Ok, or the seconds to wait before the next request can pass.
    pub fn check(&self, key: &str, rate: u64) -> Result<(), u64> {
        if rate == 0 {
            return Ok(());
        }
        let (rate, burst) = (rate as f64, 2.0 * rate as f64);
        let now = std::time::Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() >= MAX_BUCKETS {
            // Buckets idle for a minute are full again: forgetting them
            // changes nothing (many client addresses must not grow this
            // without bound).
            b.retain(|_, (_, last)| now.duration_since(*last).as_secs() < 60);
        }
        let (tokens, last) = b.entry(key.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// Failed authentications a client address may make per second (bursts of
/// twice that) before its failures are answered 429, unaudited.
pub const AUTH_FAILURES_PER_SEC: u64 = 10;

/// The client's address on the TCP listener (None on the Unix socket and
/// in-process).
pub fn peer(ext: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

impl Principal {
    pub fn admin(&self) -> bool {
        self.scope == Scope::Admin
    }

    /// Refuse what lies beyond this principal's ceiling, with
    /// `permission_denied` and the ceiling's name.
    pub fn within(
        &self,
        check: impl FnOnce(&aibox_types::ceiling::Ceiling) -> Result<(), aibox_types::ceiling::Beyond>,
    ) -> Result<(), ApiError> {
        match &self.ceiling {
            None => Ok(()),
            Some(c) => {
                check(c).map_err(|b| ApiError::new(ErrorCode::PermissionDenied, b.to_string()))
            }
        }
    }
}

/// Marks requests that arrived on the Unix socket.
#[derive(Debug, Clone, Copy)]
pub struct LocalSocket;

/// The one place a request's principal is resolved: from the Unix socket
/// it came on, its bearer key, or its dashboard session. The result is
/// kept in the request's extensions, so every later step (a handler, the
/// MCP server's in-process calls) acts as exactly this principal and
/// never resolves anew. No credentials are an error, never a default.
impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let p = resolve(parts, state)?;
        parts.extensions.insert(p.clone());
        Ok(p)
    }
}

fn resolve(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let peer = peer(&parts.extensions);
    let throttle = peer.map(|ip| format!("auth-failures:{ip}"));
    // A refusal: counted against the client's address, audited, and once
    // the address keeps failing, answered 429 without an audit entry (a
    // flood of bad keys costs a lookup each, and never more log; M7).
    // Valid credentials are never throttled here, so clients sharing an
    // address with a bad one (behind NAT, a proxy) are not locked out.
    let failed = |reason: &str, err: ApiError| -> ApiError {
        if let Some(t) = &throttle {
            if state.limiter().check(t, AUTH_FAILURES_PER_SEC).is_err() {
                return ApiError::new(
                    ErrorCode::RateLimited,
                    "too many failed authentications from this address",
                )
                .retry_after(1);
            }
        }
        state.audit(
            "anonymous",
            "auth.failure",
            None,
            serde_json::json!({"reason": reason, "peer": peer.map(|p| p.to_string())}),
        );
        err
    };
    if parts.extensions.get::<LocalSocket>().is_some() {
        return Ok(Principal {
            id: "local".into(),
            scope: Scope::Admin,
            max_sandboxes: None,
            max_memory: None,
            ceiling: None,
        });
    }
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if header.is_none() {
        // A dashboard session (cookie + CSRF token).
        if let Some(found) = crate::session::session_key(state, &parts.method, &parts.headers) {
            let (k, _) = found.map_err(|e| failed(&e.message.clone(), e))?;
            return limited(state, k);
        }
    }
    let Some(secret) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return Err(failed(
            "missing key",
            ApiError::new(
                ErrorCode::Unauthenticated,
                "missing API key: send `Authorization: Bearer <key>`",
            ),
        ));
    };
    let found = state
        .store()
        .find_key(secret.trim())
        .map_err(|e| ApiError::internal("key lookup", e))?;
    match found {
        Some(k) => limited(state, k),
        None => Err(failed(
            "unknown or revoked key",
            ApiError::new(ErrorCode::Unauthenticated, "unknown or revoked API key"),
        )),
    }
}

/// The key's principal, once its rate limit lets the request pass.
fn limited(state: &AppState, k: crate::store::KeyInfo) -> Result<Principal, ApiError> {
    if let Err(wait) = state.limiter().check(&k.id, state.config().rate_limit) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many requests for this key (limit {}/s)",
                state.config().rate_limit
            ),
        )
        .retry_after(wait));
    }
    let ceiling = match k.scope {
        Scope::Admin => None,
        Scope::User => Some(std::sync::Arc::new(
            k.ceiling
                .unwrap_or_else(|| state.config().user_ceiling.clone()),
        )),
    };
    Ok(Principal {
        id: k.id,
        scope: k.scope,
        max_sandboxes: k.max_sandboxes,
        max_memory: k.max_memory,
        ceiling,
    })
}
