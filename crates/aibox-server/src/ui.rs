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
use std::time::{Duration, Instant};

pub const SESSION_COOKIE: &str = "aibox_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session ends after this long without a request...
const IDLE: Duration = Duration::from_secs(8 * 3600);
/// ... and after this long in any case.
const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

struct Session {
    key_id: String,
    csrf: String,
    created: Instant,
    last: Instant,
}

/// Live browser sessions, by the SHA-256 of their cookie (a leaked
/// memory dump does not give usable cookies). Sessions live in memory: a
/// restarted server asks browsers to log in again.
#[derive(Default)]
pub struct Sessions(std::sync::Mutex<HashMap<String, Session>>);

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session for a key: (cookie value, CSRF token).
    fn open(&self, key_id: &str) -> (String, String) {
        let cookie = crate::auth::new_secret();
        let csrf = crate::auth::new_secret();
        let now = Instant::now();
        let mut m = self.lock();
        m.retain(|_, s| fresh(s, now));
        m.insert(
            sha256_hex(cookie.as_bytes()),
            Session {
                key_id: key_id.to_string(),
                csrf: csrf.clone(),
                created: now,
                last: now,
            },
        );
        (cookie, csrf)
    }

    /// The session's (key id, CSRF token), marking it used.
    fn touch(&self, cookie: &str) -> Option<(String, String)> {
        let now = Instant::now();
        let mut m = self.lock();
        let h = sha256_hex(cookie.as_bytes());
        let s = m.get_mut(&h)?;
        if !fresh(s, now) {
            m.remove(&h);
            return None;
        }
        s.last = now;
        Some((s.key_id.clone(), s.csrf.clone()))
    }

    fn close(&self, cookie: &str) {
        self.lock().remove(&sha256_hex(cookie.as_bytes()));
    }

    /// End every session of a key (it was revoked).
    pub fn close_key(&self, key_id: &str) {
        self.lock().retain(|_, s| s.key_id != key_id);
    }
}

fn fresh(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last) < IDLE && now.duration_since(s.created) < MAX_AGE
}

/// The value of one cookie in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Compare secrets in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// An `Origin` header, when present, names this server: a page elsewhere
/// cannot use the session (browsers send Origin on WebSocket handshakes
/// and on cross-origin requests).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let bare = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    !host.is_empty() && bare.is_some_and(|o| o.eq_ignore_ascii_case(host))
}

/// The key behind the request's session cookie, if it has one. `Err` when
/// it has one that cannot be used (expired, revoked key, missing CSRF
/// token, foreign origin).
pub fn session_key(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Option<Result<(KeyInfo, String), ApiError>> {
    let cookie = cookie(headers, SESSION_COOKIE)?;
    let unauth = |m: &str| ApiError::new(ErrorCode::Unauthenticated, m.to_string());
    let Some((key_id, csrf)) = state.sessions().touch(cookie) else {
        return Some(Err(unauth("the dashboard session has ended: log in again")));
    };
    if !same_origin(headers) {
        return Some(Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "a dashboard session is only usable from the dashboard's own origin",
        )));
    }
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let token = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    if !safe && !token.is_some_and(|t| same(t, &csrf)) {
        return Some(Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "missing or wrong X-CSRF-Token for this dashboard session",
        )));
    }
    match state.store().key_by_id(&key_id) {
        Ok(Some(k)) => Some(Ok((k, csrf))),
        Ok(None) => {
            state.sessions().close_key(&key_id);
            Some(Err(unauth("the session's API key was revoked")))
        }
        Err(e) => Some(Err(ApiError::internal("key lookup", e))),
    }
}

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
    fn cookies_are_found_by_exact_name() {
        let m = h(&[
            ("cookie", "a=1; aibox_session_x=2"),
            ("cookie", "aibox_session=3"),
        ]);
        assert_eq!(cookie(&m, "aibox_session"), Some("3"));
        assert_eq!(cookie(&m, "a"), Some("1"));
        assert_eq!(cookie(&m, "b"), None);
    }

    #[test]
    fn origins_must_be_this_host() {
        assert!(same_origin(&h(&[("host", "127.0.0.1:7878")])));
        assert!(same_origin(&h(&[
            ("host", "127.0.0.1:7878"),
            ("origin", "http://127.0.0.1:7878")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "127.0.0.1:7878"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "127.0.0.1:7878"),
            ("origin", "http://8000-abc.localhost:7878")
        ])));
        assert!(!same_origin(&h(&[("origin", "null"), ("host", "x")])));
    }

    #[test]
    fn sessions_expire_and_close_by_key() {
        let s = Sessions::default();
        let (c1, csrf) = s.open("k1");
        let (c2, _) = s.open("k2");
        assert_eq!(s.touch(&c1), Some(("k1".into(), csrf)));
        s.close_key("k1");
        assert_eq!(s.touch(&c1), None);
        assert!(s.touch(&c2).is_some());
        s.lock().values_mut().for_each(|x| {
            x.last = Instant::now().checked_sub(IDLE).unwrap();
        });
        assert_eq!(s.touch(&c2), None);
        assert!(s.touch("nonsense").is_none());
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
