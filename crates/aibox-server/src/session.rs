//! Dashboard sessions: a browser that logged in with an API key holds an
//! httpOnly, `SameSite=Strict` cookie naming a session kept here, which
//! remembers the key's id, never the key. Every request on a session
//! re-reads the key, so revoking it ends its sessions; a request that
//! changes anything carries the session's CSRF token, and one that says
//! where it comes from must come from this server's own origin. `auth`
//! accepts a session beside bearer keys; `ui` opens and closes them.

use crate::error::ApiError;
use crate::store::{sha256_hex, KeyInfo};
use crate::AppState;
use aibox_types::ErrorCode;
use axum::http::{header, HeaderMap, Method};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const SESSION_COOKIE: &str = "aibox_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session ends after this long without a request...
pub(crate) const IDLE: Duration = Duration::from_secs(8 * 3600);
/// ... and after this long in any case.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

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
    pub(crate) fn open(&self, key_id: &str) -> (String, String) {
        let cookie = aibox_runtime::new_secret();
        let csrf = aibox_runtime::new_secret();
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

    pub(crate) fn close(&self, cookie: &str) {
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
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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
}
