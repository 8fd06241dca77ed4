//! Published ports: whatever listens on a TCP port inside a sandbox is
//! reachable through the server, at `http://{port}-{id}.{port_domain}:{listen
//! port}/` (host routing: the app sees itself at the root of its own host)
//! and at `/v1/sandboxes/{id}/ports/{port}/` (path routing: one host, for
//! setups without wildcard DNS). Both carry any HTTP/1.1 traffic,
//! WebSocket upgrades included, over the agent's `port_forward` stream.
//!
//! Access needs the sandbox's port token (`X-Aibox-Token` header,
//! `aibox_token` cookie or `?aibox_token=` query) unless the sandbox's
//! ports are public. A browser that opens a URL with the token in its
//! query is sent on to the same URL without it, the token moved into an
//! httpOnly cookie for that host or path. The token never reaches the app.
//!
//! Raw TCP (databases, SSH) goes through `GET /v1/sandboxes/{id}/forward/
//! {port}`, a WebSocket carrying the bytes, authenticated with an API key:
//! that is what `aibox port-forward` uses.

use crate::auth::Principal;
use crate::control::access::running;
use crate::error::{ApiError, ApiResult};
use crate::{now_ms, ApiJson, AppState};
use aibox_types::api::{PortsPatch, PortsView};
use aibox_types::ErrorCode;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hyper_util::rt::TokioIo;

pub const TOKEN_HEADER: &str = "x-aibox-token";
pub const TOKEN_COOKIE: &str = "aibox_token";
pub const TOKEN_QUERY: &str = "aibox_token";

/// Idle keep-alive connections to apps in sandboxes, by (sandbox, port).
#[derive(Default)]
pub struct Pool(std::sync::Mutex<PoolMap>);

type PoolMap = std::collections::HashMap<
    (String, u16),
    Vec<(
        hyper::client::conn::http1::SendRequest<Body>,
        std::time::Instant,
    )>,
>;

/// Idle connections kept per port.
const POOL_IDLE: usize = 8;
/// An idle connection is used again only this soon: apps close idle
/// keep-alive connections after a while (gunicorn after 2 s), and one
/// closed just as a request goes out would fail that request.
const POOL_FRESH: std::time::Duration = std::time::Duration::from_secs(1);

impl Pool {
    fn take(&self, id: &str, port: u16) -> Option<hyper::client::conn::http1::SendRequest<Body>> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let v = m.get_mut(&(id.to_string(), port))?;
        while let Some((s, since)) = v.pop() {
            if since.elapsed() < POOL_FRESH && s.is_ready() && !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put(&self, id: &str, port: u16, s: hyper::client::conn::http1::SendRequest<Body>) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let v = m.entry((id.to_string(), port)).or_default();
        v.retain(|(_, since)| since.elapsed() < POOL_FRESH);
        if v.len() < POOL_IDLE {
            v.push((s, std::time::Instant::now()));
        }
    }

    /// Drop the connections of a sandbox that is going away.
    pub fn forget(&self, id: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|(sid, _), _| sid != id);
    }
}

/// Marks a response that came from inside a sandbox: it leaves as it is.
#[derive(Debug, Clone, Copy)]
pub struct Proxied;

// ---- the API: GET and PATCH /v1/sandboxes/{id}/ports

/// `GET /v1/sandboxes/{id}/ports`: the listening ports, their URLs and
/// the token.
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<PortsView>> {
    crate::control::ports::get(&state, &who, &id)
        .await
        .map(Json)
}

/// `PATCH /v1/sandboxes/{id}/ports`: make the ports public or private,
/// or rotate the token.
pub async fn update(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<PortsPatch>,
) -> ApiResult<Json<PortsView>> {
    crate::control::ports::update(&state, &who, &id, patch)
        .await
        .map(Json)
}

// ---- raw TCP: GET /v1/sandboxes/{id}/forward/{port} (WebSocket)

pub async fn forward(
    State(state): State<AppState>,
    who: Principal,
    Path((id, port)): Path<(String, u16)>,
    axum::Extension(share): axum::Extension<crate::fairness::Share>,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    let row = running(&state, &who, &id)?;
    // Connect before upgrading, so a closed port is a plain HTTP error.
    let stream = open(&state, &row.id, port).await?;
    Ok(ws
        .max_message_size(crate::fairness::MAX_WS_MESSAGE)
        .on_upgrade(move |socket| async move {
            // The key's share is held for the whole session.
            let _share = share;
            pipe_ws(socket, stream).await
        }))
}

async fn pipe_ws(mut socket: WebSocket, stream: tokio::net::UnixStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; 32 * 1024];
    let mut upstream_open = true;
    loop {
        tokio::select! {
            n = rd.read(&mut buf), if upstream_open => match n {
                Ok(0) | Err(_) => {
                    upstream_open = false;
                    let _ = socket.send(Message::Close(None)).await;
                }
                Ok(n) => {
                    if socket.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        return;
                    }
                }
            },
            m = socket.recv() => match m {
                Some(Ok(Message::Binary(b))) => {
                    if wr.write_all(&b).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    if wr.write_all(t.as_bytes()).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    let _ = wr.shutdown().await;
                    if !upstream_open {
                        return;
                    }
                    // Drain what the service still sends, then stop.
                    loop {
                        match rd.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if socket.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            },
        }
    }
}

/// A byte stream to `port` inside sandbox `id`.
async fn open(state: &AppState, id: &str, port: u16) -> ApiResult<tokio::net::UnixStream> {
    if port == 0 {
        return Err(ApiError::invalid("port must be between 1 and 65535"));
    }
    let engine = state.engine();
    let sid = id.to_string();
    let std = tokio::task::spawn_blocking(move || -> ApiResult<_> {
        Ok(engine.agent(&sid)?.port_forward(port)?)
    })
    .await
    .map_err(|e| ApiError::internal("port forward task", e))?
    .map_err(|e| match e.code {
        ErrorCode::Unavailable => ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "nothing listens on port {port} inside sandbox {id}: start the server there, bound to 127.0.0.1 or 0.0.0.0"
            ),
        ),
        _ => e,
    })?;
    std.set_nonblocking(true)
        .map_err(|e| ApiError::internal("port forward socket", e))?;
    tokio::net::UnixStream::from_std(std).map_err(|e| ApiError::internal("port forward socket", e))
}

// ---- HTTP: host and path routing

/// Middleware in front of the API: requests for `{port}-{id}.{domain}`
/// go to the sandbox; everything else on to the API.
pub async fn host_route(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("");
    match port_host(host, &state.config().port_domain) {
        Some(Ok((port, id))) => proxy(state, id, port, None, req).await,
        Some(Err(e)) => e.into_response(),
        None => next.run(req).await,
    }
}

/// `{port}-{id}.{domain}[:p]` → (port, id); None when the host is not
/// one of ours; an error when it is but its label is malformed.
fn port_host(host: &str, domain: &str) -> Option<ApiResult<(u16, String)>> {
    let host = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
    .to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    let label = host.strip_suffix(domain)?.strip_suffix('.')?;
    let parsed = label.split_once('-').and_then(|(port, id)| {
        let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
        aibox_types::validate_id(id).then(|| (port, id.to_string()))
    });
    Some(parsed.ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("{label:?} is not PORT-SANDBOXID: published ports answer at http://PORT-SANDBOXID.{domain}/"),
        )
    }))
}

/// `/v1/sandboxes/{id}/ports/{port}[/{*rest}]`.
pub async fn path_route(State(state): State<AppState>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let parsed = path
        .strip_prefix("/v1/sandboxes/")
        .and_then(|r| r.split_once("/ports/"))
        .and_then(|(id, rest)| {
            let (port, tail) = match rest.split_once('/') {
                Some((p, t)) => (p, Some(t)),
                None => (rest, None),
            };
            Some((id.to_string(), port.parse::<u16>().ok()?, tail))
        });
    let Some((id, port, tail)) = parsed else {
        return ApiError::invalid("expected /v1/sandboxes/ID/ports/PORT/PATH").into_response();
    };
    if !aibox_types::validate_id(&id) {
        return ApiError::invalid(format!("{id:?} is not a sandbox id")).into_response();
    }
    let prefix = format!("/v1/sandboxes/{id}/ports/{port}");
    if tail.is_none() {
        // Relative links resolve against a directory: add the slash.
        let q = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        return (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, format!("{prefix}/{q}"))],
        )
            .into_response();
    }
    proxy(state, id, port, Some(prefix), req).await
}

async fn proxy(
    state: AppState,
    id: String,
    port: u16,
    prefix: Option<String>,
    req: Request,
) -> Response {
    let path_routed = prefix.is_some();
    let mut resp = match proxy_inner(state, id, port, prefix, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if path_routed {
        // The app answers on the dashboard's origin: its pages run in a
        // sandboxed (opaque) origin, so their scripts cannot use the
        // dashboard's session. Host-routed apps have origins of their own.
        resp.headers_mut().append(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads",
            ),
        );
    }
    resp
}

/// The token the request carries, and whether it came in the query.
fn presented_token(req: &Request) -> Vec<(String, bool)> {
    let mut found = Vec::new();
    if let Some(v) = req
        .headers()
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        found.push((v.trim().to_string(), false));
    }
    for c in req.headers().get_all(header::COOKIE) {
        for pair in c.to_str().unwrap_or("").split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if k == TOKEN_COOKIE {
                    found.push((v.to_string(), false));
                }
            }
        }
    }
    for pair in req.uri().query().unwrap_or("").split('&') {
        if let Some(v) = pair
            .strip_prefix(TOKEN_QUERY)
            .and_then(|r| r.strip_prefix('='))
        {
            found.push((v.to_string(), true));
        }
    }
    found
}

/// Compare in time independent of where the first difference is.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The query without our token.
fn clean_query(q: Option<&str>) -> Option<String> {
    let kept: Vec<&str> = q?
        .split('&')
        .filter(|p| {
            !(p.strip_prefix(TOKEN_QUERY)
                .is_some_and(|r| r.is_empty() || r.starts_with('=')))
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
];

fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "upgrade")
        .collect();
    for name in listed {
        h.remove(name.as_str());
    }
    for name in HOP_BY_HOP {
        h.remove(name);
    }
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        h.remove(header::UPGRADE);
    }
}

/// What speaks for the caller to aibox never reaches the app: an API key
/// (`Authorization: Bearer aibox_…`, natural to send when scripting the
/// API at a path-routed port) or a dashboard CSRF token. The app's own
/// `Authorization` (any other value) passes (the review's M1).
fn strip_api_credentials(h: &mut HeaderMap) {
    let api_key = h.get_all(header::AUTHORIZATION).iter().any(|v| {
        v.as_bytes()
            .trim_ascii_start()
            .starts_with(b"Bearer aibox_")
    });
    if api_key {
        h.remove(header::AUTHORIZATION);
    }
    h.remove(crate::session::CSRF_HEADER);
}

/// An app may not set aibox's own cookies: a path-routed port answers on
/// the dashboard's origin, where `Set-Cookie: aibox_session=…` would swap
/// the user's session for the attacker's (session fixation), and a
/// host-routed one could aim `Domain=` at a parent domain (the review's
/// M1). Every other cookie passes.
fn drop_aibox_cookies(h: &mut HeaderMap) {
    let kept: Vec<HeaderValue> = h
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| {
            // The name=value pair: a nameless cookie (`=aibox_session=x`)
            // reaches the server as `aibox_session=x`, so the whole pair
            // is checked, and one without a name is dropped.
            let pair = v
                .to_str()
                .ok()
                .and_then(|c| c.split(';').next())
                .unwrap_or("");
            let Some((name, _)) = pair.split_once('=') else {
                return false;
            };
            !name.trim().is_empty() && !pair.to_ascii_lowercase().contains("aibox_")
        })
        .cloned()
        .collect();
    h.remove(header::SET_COOKIE);
    for v in kept {
        h.append(header::SET_COOKIE, v);
    }
}

fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
}

async fn proxy_inner(
    state: AppState,
    id: String,
    port: u16,
    prefix: Option<String>,
    mut req: Request,
) -> ApiResult<Response> {
    let row = state
        .store()
        .get(&id)
        .map_err(|e| ApiError::internal("get", e))?
        .ok_or_else(|| ApiError::not_found(&id))?;
    match row.state.as_str() {
        "running" => {}
        "paused" => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("sandbox {id} is paused: resume it to reach its ports"),
            ))
        }
        other => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("sandbox {id} is {other}"),
            ))
        }
    }
    let presented = presented_token(&req);
    let valid = presented
        .iter()
        .find(|(t, _)| same(t, &row.port_token))
        .map(|(_, in_query)| *in_query);
    if !row.public_ports && valid.is_none() {
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            if presented.is_empty() {
                format!("port {port} of sandbox {id} needs the sandbox's port token: send it as the X-Aibox-Token header or add ?aibox_token=TOKEN (`aibox port {id}` prints URLs with it)")
            } else {
                format!("wrong port token for sandbox {id}")
            },
        ));
    }
    let now = now_ms();
    if now.saturating_sub(row.last_active_ms) >= 1000 {
        let _ = state.store().touch(&row.id, now);
    }
    let query = clean_query(req.uri().query());
    let path = match &prefix {
        Some(p) => req.uri().path()[p.len()..].to_string(),
        None => req.uri().path().to_string(),
    };
    // A browser that followed a URL with the token: keep the token in a
    // cookie and show the URL without it (no token in history or Referer).
    let browser = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if valid == Some(true) && req.method() == Method::GET && browser {
        // One leading slash: `//evil.example/` would be a scheme-relative
        // redirect to another site (the review's L10).
        let local = format!("/{}", path.trim_start_matches(['/', '\\']));
        let visible = format!(
            "{}{local}{}",
            prefix.as_deref().unwrap_or(""),
            query.as_ref().map(|q| format!("?{q}")).unwrap_or_default()
        );
        let scope = prefix
            .as_ref()
            .map(|_| format!("/v1/sandboxes/{id}/ports/"))
            .unwrap_or_else(|| "/".into());
        let cookie = format!(
            "{TOKEN_COOKIE}={}; Path={scope}; HttpOnly; SameSite=Lax",
            row.port_token
        );
        return Ok((
            StatusCode::SEE_OTHER,
            [(header::LOCATION, visible), (header::SET_COOKIE, cookie)],
        )
            .into_response());
    }

    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    let original_host = headers.get(header::HOST).cloned();
    strip_hop_by_hop(&mut headers, upgrade);
    headers.remove(TOKEN_HEADER);
    strip_api_credentials(&mut headers);
    let cookies: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|p| {
            let name = p.split_once('=').map(|(k, _)| k);
            // Neither the port token nor a dashboard session reaches the app.
            !p.is_empty()
                && name != Some(TOKEN_COOKIE)
                && name != Some(crate::session::SESSION_COOKIE)
        })
        .map(str::to_string)
        .collect();
    headers.remove(header::COOKIE);
    if !cookies.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&cookies.join("; ")) {
            headers.insert(header::COOKIE, v);
        }
    }
    if let Some(h) = original_host {
        headers.insert(HeaderName::from_static("x-forwarded-host"), h);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    if let Some(p) = &prefix {
        if let Ok(v) = HeaderValue::from_str(p) {
            headers.insert(HeaderName::from_static("x-forwarded-prefix"), v);
        }
    }
    let uri: Uri = format!(
        "{path}{}",
        query.map(|q| format!("?{q}")).unwrap_or_default()
    )
    .parse()
    .map_err(|_| ApiError::invalid("the request path cannot be forwarded"))?;
    let mut out = hyper::Request::new(if upgrade { Body::empty() } else { body });
    *out.method_mut() = parts.method;
    *out.uri_mut() = uri;
    *out.headers_mut() = headers;

    // A keep-alive connection to the app from an earlier request, when one
    // is idle; else a new one through the agent.
    let pooled = if upgrade {
        None
    } else {
        state.port_pool().take(&id, port)
    };
    let mut out = Some(out);
    let mut resp = None;
    let mut sender = None;
    if let Some(mut s) = pooled {
        if let Some(req) = out.take() {
            // A request without a body can go again on a new connection if
            // the app closed this one just as it went out.
            use axum::body::HttpBody as _;
            let again = (matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
                && req.body().is_end_stream())
            .then(|| {
                let mut r = hyper::Request::new(Body::empty());
                *r.method_mut() = req.method().clone();
                *r.uri_mut() = req.uri().clone();
                *r.headers_mut() = req.headers().clone();
                r
            });
            match s.try_send_request(req).await {
                Ok(r) => {
                    resp = Some(r);
                    sender = Some(s);
                }
                // Not sent (the connection had closed), or lost on the way:
                // a new connection below, when the request allows.
                Err(mut e) => out = e.take_message().or(again),
            }
        }
    }
    let mut resp = match (resp, out) {
        (Some(r), _) => r,
        (None, Some(req)) => {
            let stream = open(&state, &id, port).await?;
            let (mut s, conn) = hyper::client::conn::http1::Builder::new()
                .handshake::<_, Body>(TokioIo::new(stream))
                .await
                .map_err(|e| bad_gateway(&id, port, &e))?;
            tokio::spawn(async move {
                let _ = conn.with_upgrades().await;
            });
            let r = s
                .send_request(req)
                .await
                .map_err(|e| bad_gateway(&id, port, &e))?;
            sender = Some(s);
            r
        }
        (None, None) => {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("the connection to port {port} of sandbox {id} closed"),
            ))
        }
    };
    // Back into the pool once the response has been read to its end.
    if let (false, Some(mut s)) = (upgrade, sender) {
        let (state, id) = (state.clone(), id.clone());
        tokio::spawn(async move {
            if s.ready().await.is_ok() {
                state.port_pool().put(&id, port, s);
            }
        });
    }
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                if let (Ok(a), Ok(b)) = (client_upgrade.await, upstream.await) {
                    let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
            });
        }
    } else {
        strip_hop_by_hop(resp.headers_mut(), false);
    }
    drop_aibox_cookies(resp.headers_mut());
    let mut resp = resp.map(Body::new);
    // Our side of the hop speaks HTTP/1.1 whatever the app spoke.
    *resp.version_mut() = axum::http::Version::HTTP_11;
    resp.extensions_mut().insert(Proxied);
    Ok(resp)
}

fn bad_gateway(id: &str, port: u16, e: &hyper::Error) -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        format!("the server on port {port} of sandbox {id} did not answer over HTTP: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn m1_api_credentials_and_aibox_cookies_never_cross_the_proxy() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer aibox_0123"),
        );
        h.insert(crate::session::CSRF_HEADER, HeaderValue::from_static("t"));
        strip_api_credentials(&mut h);
        assert!(h.is_empty(), "{h:?}");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dTpw"),
        );
        strip_api_credentials(&mut h);
        assert_eq!(
            h[header::AUTHORIZATION],
            "Basic dTpw",
            "the app's own auth passes"
        );

        let mut r = HeaderMap::new();
        for c in [
            "aibox_session=ATTACKER; Path=/; HttpOnly",
            "theme=dark; Path=/",
            "AIBOX_port=x; Domain=example.com",
            " aibox_x =1",
            "=aibox_session=X; Path=/ui",
            "plain",
        ] {
            r.append(header::SET_COOKIE, HeaderValue::from_static(c));
        }
        drop_aibox_cookies(&mut r);
        let left: Vec<_> = r.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(left, ["theme=dark; Path=/"]);
    }

    #[test]
    fn port_hosts() {
        let ok = |h: &str| port_host(h, "localhost").map(|r| r.map_err(|e| e.message));
        assert_eq!(
            ok("8000-0123456789ab.localhost:7878"),
            Some(Ok((8000, "0123456789ab".into())))
        );
        assert_eq!(
            ok("3000-0123456789ab.LOCALHOST."),
            Some(Ok((3000, "0123456789ab".into())))
        );
        assert_eq!(ok("localhost:7878"), None);
        assert_eq!(ok("127.0.0.1:7878"), None);
        assert_eq!(ok("example.com"), None);
        assert_eq!(ok("notlocalhost"), None);
        assert_eq!(
            port_host("80-0123456789ab.box1:99", "box1").map(|r| r.map_err(|e| e.message)),
            Some(Ok((80, "0123456789ab".into())))
        );
        for bad in [
            "0-0123456789ab.localhost",
            "99999-0123456789ab.localhost",
            "x-0123456789ab.localhost",
            "8000-../etc.localhost",
            "8000.localhost",
            "a.b.localhost",
        ] {
            assert!(matches!(ok(bad), Some(Err(_))), "{bad}");
        }
        assert_eq!(
            port_host("80-0123456789ab.sb.example.com", "sb.example.com")
                .map(|r| r.map_err(|e| e.message)),
            Some(Ok((80, "0123456789ab".into())))
        );
    }

    #[test]
    fn query_tokens_are_removed() {
        assert_eq!(clean_query(None), None);
        assert_eq!(clean_query(Some("aibox_token=x")), None);
        assert_eq!(
            clean_query(Some("a=1&aibox_token=x&b=2")),
            Some("a=1&b=2".into())
        );
        assert_eq!(
            clean_query(Some("aibox_tokens=1")),
            Some("aibox_tokens=1".into())
        );
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("5"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-app", HeaderValue::from_static("1"));
        let mut plain = h.clone();
        strip_hop_by_hop(&mut plain, false);
        assert_eq!(plain.len(), 1, "{plain:?}");
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
        assert!(h.contains_key(header::UPGRADE) && h.contains_key("x-app"));
        assert!(!h.contains_key("x-secret"));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
