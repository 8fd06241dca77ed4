//! The egress proxy: HTTP forward and CONNECT, one sandbox's policy per
//! connection (issue: network allowlists). Every destination goes through
//! [`aibox_types::egress::Policy::decide`] twice: by name first (a name no
//! rule allows is never even resolved, so DNS cannot carry data out), then
//! with the addresses the host resolved, and the proxy connects only to
//! addresses the decision returned (no second lookup: no rebinding).
//!
//! * `CONNECT host:port`: after the tunnel is up, a TLS ClientHello must
//!   name the same host (SNI), so an allowed name cannot front for another
//!   on a shared address; a tunnel that does not start with TLS is plain
//!   TCP to the allowed destination.
//! * `GET http://host/...` (absolute form): the `Host` header must agree
//!   with the URL; the request goes upstream in origin form with
//!   `Connection: close`, one request per connection.
//! * A refusal is `403` with a short plain-text body a model can read
//!   (the decision's reason) and the deciding rule in `X-Aibox-Rule`.
//!
//! Transport-agnostic: the server feeds it the connections that arrive
//! from a sandbox; the tests feed it TCP.

use crate::wire::{find, split_authority, Request, MAX_HEAD};
use aibox_types::egress::{Decision, Host, Policy};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub use crate::resolver::{Event, HostResolver, Lookup, Resolve, SystemResolver};

/// Serve one client connection. `report` is called once per decision.
pub async fn serve<S>(
    client: S,
    policy: &Policy,
    resolver: &dyn Resolve,
    report: &(dyn Fn(Event) + Send + Sync),
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    serve_with(client, policy, resolver, report, None).await
}

/// [`serve`], and when `l4` is given (the sandbox has per-connection
/// checks through its agent), also the agent's `AIBOX-TCP ip:port` and
/// `AIBOX-DNS length` requests (see `l4`).
pub async fn serve_with<S>(
    mut client: S,
    policy: &Policy,
    resolver: &dyn Resolve,
    report: &(dyn Fn(Event) + Send + Sync),
    l4: Option<&crate::l4::Names>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (head, extra) = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
            return refuse(&mut client, 400, "Bad Request", &format!("{e}\n"), None).await;
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => return Ok(()),
    };
    if let Some(rest) = head.strip_prefix("AIBOX-") {
        let Some(names) = l4 else {
            // Not a sandbox with per-connection checks: nothing but HTTP.
            return refuse(
                &mut client,
                403,
                "Forbidden",
                "this sandbox's egress is HTTP(S) through the proxy only\n",
                None,
            )
            .await;
        };
        let line = rest.lines().next().unwrap_or("");
        return crate::l4::agent_request(client, line, extra, policy, names, resolver, report)
            .await;
    }
    let Some(req) = Request::parse(&head) else {
        return refuse(&mut client, 400, "Bad Request", "malformed request\n", None).await;
    };
    if req.method == "CONNECT" {
        let Some((host, port)) = split_authority(&req.target) else {
            return refuse(
                &mut client,
                400,
                "Bad Request",
                "CONNECT needs host:port\n",
                None,
            )
            .await;
        };
        let Some((upstream, decision, host)) =
            open_upstream(&mut client, policy, resolver, report, &host, port).await?
        else {
            return Ok(());
        };
        client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await?;
        // What the tunnel carries must name the host that was allowed
        // (crate::tunnel), unless an address or a rule with its ports
        // allowed it.
        let expect = match &host {
            Host::Name { name, .. } => crate::tunnel::Expect::for_name(policy, &decision, name),
            Host::Ip(_) => crate::tunnel::Expect::Any,
        };
        let start = crate::tunnel::Start::Inspect(extra, expect, port);
        if let crate::tunnel::Outcome::Refused(reason) =
            crate::tunnel::splice(client, upstream, start).await?
        {
            report(Event {
                destination: format!("{host}:{port}"),
                allowed: false,
                rule: decision.rule.clone(),
                reason: format!("Tunnel to {host}:{port} refused: {reason}."),
            });
        }
        return Ok(());
    }
    // Plain HTTP through the proxy: absolute-form URL.
    let Some(rest) = req.target.strip_prefix("http://") else {
        return refuse(
            &mut client,
            400,
            "Bad Request",
            "this is an egress proxy: send absolute http:// URLs, or CONNECT for https\n",
            None,
        )
        .await;
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host_text, port) = match split_authority(authority) {
        Some(v) => v,
        None => (authority.to_string(), 80),
    };
    if req.headers_named("host").count() > 1 {
        return refuse(
            &mut client,
            400,
            "Bad Request",
            "a request needs exactly one Host header\n",
            None,
        )
        .await;
    }
    if let Some(h) = req.header("host") {
        let (hh, hp) = split_authority(h).unwrap_or((h.to_string(), 80));
        if !hh
            .trim_end_matches('.')
            .eq_ignore_ascii_case(host_text.trim_end_matches('.'))
            || hp != port
        {
            let msg = format!(
                "Request refused: the Host header ({h}) does not match the URL's host ({authority}).\n"
            );
            report(Event {
                destination: format!("{host_text}:{port}"),
                allowed: false,
                rule: None,
                reason: msg.trim().to_string(),
            });
            return refuse(&mut client, 403, "Forbidden", &msg, None).await;
        }
    }
    let Some((upstream, _, _)) =
        open_upstream(&mut client, policy, resolver, report, &host_text, port).await?
    else {
        return Ok(());
    };
    // One request per connection, its body framed here: nothing the
    // client pipelines after it reaches the server.
    let path = path.to_string();
    let start = crate::tunnel::Start::Request(req, path, extra);
    crate::tunnel::splice(client, upstream, start).await?;
    Ok(())
}

/// Decide, report, and connect; or answer the client (400, 403 or 502)
/// and return None.
async fn open_upstream<S: AsyncWrite + Unpin>(
    client: &mut S,
    policy: &Policy,
    resolver: &dyn Resolve,
    report: &(dyn Fn(Event) + Send + Sync),
    host: &str,
    port: u16,
) -> io::Result<Option<(TcpStream, Decision, Host)>> {
    let (decision, host) = match decide(policy, resolver, host, port).await {
        Ok(v) => v,
        Err(msg) => {
            refuse(client, 400, "Bad Request", &msg, None).await?;
            return Ok(None);
        }
    };
    report(event(&host, port, &decision));
    if !decision.allowed {
        forbidden(client, &decision).await?;
        return Ok(None);
    }
    match connect(&decision.addrs, port).await {
        Ok(s) => Ok(Some((s, decision, host))),
        Err(e) => {
            let msg = format!("Connection to {host}:{port} failed: {e}.\n");
            refuse(client, 502, "Bad Gateway", &msg, None).await?;
            Ok(None)
        }
    }
}

fn event(host: &Host, port: u16, d: &Decision) -> Event {
    Event {
        destination: format!("{host}:{port}"),
        allowed: d.allowed,
        rule: d.rule.clone(),
        reason: d.reason.clone(),
    }
}

/// Decide by name (or address) first; resolve only names the rules allow;
/// then decide again with the addresses.
async fn decide(
    policy: &Policy,
    resolver: &dyn Resolve,
    host: &str,
    port: u16,
) -> Result<(Decision, Host), String> {
    let Some(parsed) = Host::parse(host) else {
        return Err(format!("{host:?} is not a valid host name or address\n"));
    };
    let Host::Name { name, .. } = &parsed else {
        let d = policy.decide(&parsed, port);
        return Ok((d, parsed));
    };
    if let Some(refused) = policy.precheck_name(&parsed, port) {
        return Ok((refused, parsed));
    }
    let resolved = resolver.lookup(name).await.unwrap_or_default();
    let host = Host::Name {
        name: name.clone(),
        resolved,
    };
    Ok((policy.decide(&host, port), host))
}

async fn connect(addrs: &[IpAddr], port: u16) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for ip in addrs {
        match tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect(SocketAddr::new(*ip, port)),
        )
        .await
        {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, "timed out"),
        }
    }
    Err(last)
}

async fn forbidden<S: AsyncWrite + Unpin>(client: &mut S, d: &Decision) -> io::Result<()> {
    refuse(
        client,
        403,
        "Forbidden",
        &format!("{}\n", d.reason),
        d.rule.as_deref(),
    )
    .await
}

async fn refuse<S: AsyncWrite + Unpin>(
    client: &mut S,
    code: u16,
    text: &str,
    body: &str,
    rule: Option<&str>,
) -> io::Result<()> {
    let rule = rule
        .map(|r| format!("X-Aibox-Rule: {r}\r\n"))
        .unwrap_or_default();
    let resp = format!(
        "HTTP/1.1 {code} {text}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{rule}Connection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(resp.as_bytes()).await?;
    client.shutdown().await
}

/// The request head and whatever arrived after it.
async fn read_head<S: AsyncRead + Unpin>(client: &mut S) -> io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end].to_vec()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, "request head is not UTF-8")
            })?;
            return Ok((head, buf[end + 4..].to_vec()));
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the request",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
