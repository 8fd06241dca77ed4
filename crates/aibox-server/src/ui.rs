//! The web dashboard: its files are compiled into the binary from
//! `crates/aibox-server/ui/` (plain ES modules and CSS, plus xterm.js
//! vendored from npm by `scripts/ui-vendor.sh`), so serving it needs
//! neither Node nor a network.
//!
//! A browser logs in with an API key (`POST /ui/login`) and gets a
//! session: an httpOnly, `SameSite=Strict` cookie naming a server-side
//! session that remembers the key's id, never the key. Every request on a
//! session re-reads the key, so revoking it ends its sessions. Requests
//! that change anything must carry the session's CSRF token in
//! `X-CSRF-Token`, and a request that says where it comes from (`Origin`,
//! as WebSocket handshakes do) must come from this server's own origin.

use crate::error::{ApiError, ApiResult};
use crate::session::{cookie, same_origin, session_key, MAX_AGE, SESSION_COOKIE};
use crate::store::{sha256_hex, KeyInfo};
use crate::AppState;
use aibox_types::ErrorCode;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

fn session_cookie(value: &str, max_age: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub key: String,
}

/// `POST /ui/login` `{"key": "aibox_..."}` (JSON only: a cross-site form
/// cannot send it) → the session cookie, and the session as
/// `GET /ui/session` shows it.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    crate::ApiJson(body): crate::ApiJson<LoginBody>,
) -> ApiResult<Response> {
    if !same_origin(&headers) {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "log in from the dashboard's own origin",
        ));
    }
    // Per client address: one global bucket let anyone keep everyone's
    // logins failing (the review's L5).
    let bucket = match crate::auth::peer(&ext) {
        Some(ip) => format!("ui.login:{ip}"),
        None => "ui.login:local".to_string(),
    };
    if let Err(wait) = state.limiter().check(&bucket, 5) {
        return Err(
            ApiError::new(ErrorCode::RateLimited, "too many login attempts").retry_after(wait),
        );
    }
    let key = state
        .store()
        .find_key(body.key.trim())
        .map_err(|e| ApiError::internal("key lookup", e))?;
    let Some(key) = key else {
        state.audit(
            "anonymous",
            "auth.failure",
            None,
            json!({"reason": "dashboard login with an unknown or revoked key"}),
        );
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "unknown or revoked API key",
        ));
    };
    let (cookie, csrf) = state.sessions().open(&key.id);
    state.audit(&key.id, "ui.login", None, json!({}));
    let mut resp = Json(session_view(&state, &key, &csrf)).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&cookie, MAX_AGE.as_secs()),
    );
    Ok(resp)
}

/// `POST /ui/logout`: ends the session (CSRF token required).
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(k) = session_key(&state, &Method::POST, &headers) {
        let (k, _) = k?;
        if let Some(c) = cookie(&headers, SESSION_COOKIE) {
            state.sessions().close(c);
        }
        state.audit(&k.id, "ui.logout", None, json!({}));
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0));
    Ok(resp)
}

/// `GET /ui/session`: who is logged in, the CSRF token, and the server's
/// settings (limits for every key; paths and listeners for admins).
pub async fn session(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let Some(k) = session_key(&state, &Method::GET, &headers) else {
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "not logged in to the dashboard",
        ));
    };
    let (k, csrf) = k?;
    Ok(Json(session_view(&state, &k, &csrf)))
}

fn session_view(state: &AppState, k: &KeyInfo, csrf: &str) -> Value {
    let c = state.config();
    let mut settings = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "max_sandboxes": c.max_sandboxes,
        "memory_budget": c.memory_budget,
        "default_ttl_seconds": c.default_ttl.as_secs(),
        "max_ttl_seconds": c.max_ttl.as_secs(),
        "rate_limit": c.rate_limit,
        "max_body": c.max_body,
        "max_snapshots": c.max_snapshots,
        "port_domain": c.port_domain,
        "listen": c.listen.map(|a| a.to_string()),
    });
    if k.scope == crate::store::Scope::Admin {
        settings["data_dir"] = json!(c.data_dir);
        settings["socket"] = json!(c.socket);
        settings["allowed_mounts"] = json!(c.allowed_mounts);
        settings["egress_hosts"] = json!(c.egress_hosts);
    }
    json!({
        "key": {"id": k.id, "name": k.name, "scope": k.scope.as_str(),
                "max_sandboxes": k.max_sandboxes, "max_memory": k.max_memory},
        "csrf": csrf,
        "settings": settings,
    })
}

// ---- static files

struct Asset {
    path: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $mime:literal) => {
        Asset {
            path: $path,
            mime: $mime,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/", $path)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("term.js", "text/javascript; charset=utf-8"),
    asset!("vendor/xterm.mjs", "text/javascript; charset=utf-8"),
    asset!("vendor/xterm.css", "text/css; charset=utf-8"),
    asset!("vendor/addon-fit.mjs", "text/javascript; charset=utf-8"),
    asset!("vendor/LICENSE-xterm.txt", "text/plain; charset=utf-8"),
];

/// Scripts from this server only, never inline; no framing; nothing sent
/// elsewhere. Styles may be inline: xterm.js adds `<style>` elements (the
/// end-to-end tests check that no page hits a violation under this policy).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.path == path) else {
        return ApiError::new(ErrorCode::NotFound, "no such dashboard file").into_response();
    };
    static ETAGS: std::sync::OnceLock<HashMap<&'static str, String>> = std::sync::OnceLock::new();
    let etags = ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| (a.path, format!("\"{}\"", &sha256_hex(a.body)[..20])))
            .collect()
    });
    let etag = etags.get(a.path).cloned().unwrap_or_default();
    let mut resp = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, a.mime)], a.body).into_response()
    };
    let h = resp.headers_mut();
    for (k, v) in [
        (header::CACHE_CONTROL, "no-cache"),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn every_asset_is_served_with_its_type_and_headers() {
        for a in ASSETS {
            let r = serve(a.path, &HeaderMap::new());
            assert_eq!(r.status(), StatusCode::OK, "{}", a.path);
            assert!(r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'"));
            let etag = r.headers()[header::ETAG].clone();
            let again = serve(a.path, &h(&[("if-none-match", etag.to_str().unwrap())]));
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        }
        assert_eq!(serve("../Cargo.toml", &HeaderMap::new()).status(), 404);
    }
}
