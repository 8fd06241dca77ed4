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

use aibox_types::egress::{Decision, Host, Policy};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest request head read from a client.
const MAX_HEAD: usize = 16 << 10;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub type Lookup<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Name resolution on the host side.
pub trait Resolve: Send + Sync {
    fn lookup<'a>(&'a self, name: &'a str) -> Lookup<'a>;
}

/// The host's resolver.
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup<'a>(&'a self, name: &'a str) -> Lookup<'a> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((name, 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// The host's resolver, with operator-set answers for some names
/// (`egress_hosts`).
pub struct HostResolver {
    pub overrides: std::collections::HashMap<String, Vec<IpAddr>>,
}

impl Resolve for HostResolver {
    fn lookup<'a>(&'a self, name: &'a str) -> Lookup<'a> {
        match self.overrides.get(name) {
            Some(ips) => Box::pin(std::future::ready(Ok(ips.clone()))),
            None => SystemResolver.lookup(name),
        }
    }
}

/// One decision the proxy made, for the audit log and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub destination: String,
    pub allowed: bool,
    pub rule: Option<String>,
    pub reason: String,
}

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

/// The method and target of a request head (up to the blank line), as
/// the proxy reads it; None when the proxy would refuse it. For fuzzing
/// and tests: the proxy itself reads from its socket.
pub fn parse_request_head(data: &[u8]) -> Option<(String, String)> {
    let end = find(data, b"\r\n\r\n")?;
    if end > MAX_HEAD {
        return None;
    }
    let head = std::str::from_utf8(&data[..end]).ok()?;
    let r = Request::parse(head)?;
    let _ = r.header("host");
    let _ = split_authority(&r.target);
    Some((r.method, r.target))
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An HTTP/1 request head as the proxy reads it.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The head up to (not including) the blank line; None when the proxy
    /// refuses it.
    pub fn parse(head: &str) -> Option<Request> {
        let mut lines = head.split("\r\n");
        let mut first = lines.next()?.split(' ');
        let (method, target, version) = (first.next()?, first.next()?, first.next()?);
        if first.next().is_some()
            || !version.starts_with("HTTP/1.")
            || method.is_empty()
            || !method.bytes().all(|b| b.is_ascii_uppercase())
        {
            return None;
        }
        let mut headers = Vec::new();
        for l in lines {
            // A bare CR or LF inside a line would be a header boundary to
            // the upstream server but not to this check (the review's
            // M2a: `X: a\nHost: other` smuggled a second Host).
            if l.contains(['\r', '\n']) {
                return None;
            }
            let (k, v) = l.split_once(':')?;
            if k.is_empty() || k.contains(char::is_whitespace) {
                return None;
            }
            headers.push((k.to_string(), v.trim().to_string()));
        }
        Some(Request {
            method: method.into(),
            target: target.into(),
            version: version.into(),
            headers,
        })
    }

    fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.headers_named(name).next()
    }

    /// Every value of the header `name`.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `host:port`, `[v6]:port` → (host, port).
pub(crate) fn split_authority(a: &str) -> Option<(String, u16)> {
    let (h, p) = if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        (h, after.strip_prefix(':')?)
    } else {
        a.rsplit_once(':')?
    };
    let port: u16 = p.parse().ok().filter(|p| *p > 0)?;
    if h.is_empty() {
        return None;
    }
    Some((h.to_string(), port))
}

/// The server name of a TLS ClientHello at the start of `b` (one record).
pub fn client_hello_sni(b: &[u8]) -> Option<String> {
    // Record: type(1)=22, version(2), length(2); handshake: type(1)=1, length(3).
    if b.len() < 9 || b[0] != 0x16 || b[5] != 1 {
        return None;
    }
    let rec_len = usize::from(u16::from_be_bytes([b[3], b[4]]));
    let body = b.get(5..5 + rec_len)?;
    let mut p = 4 + 2 + 32; // handshake header, client version, random
    let take = |p: &mut usize, n: usize| -> Option<&[u8]> {
        let s = body.get(*p..*p + n)?;
        *p += n;
        Some(s)
    };
    let sid = usize::from(*take(&mut p, 1)?.first()?);
    take(&mut p, sid)?;
    let cs = take(&mut p, 2)?;
    take(&mut p, usize::from(u16::from_be_bytes([cs[0], cs[1]])))?;
    let comp = usize::from(*take(&mut p, 1)?.first()?);
    take(&mut p, comp)?;
    let el = take(&mut p, 2)?;
    let ext = take(&mut p, usize::from(u16::from_be_bytes([el[0], el[1]])))?;
    let mut q = 0;
    while q + 4 <= ext.len() {
        let ty = u16::from_be_bytes([ext[q], ext[q + 1]]);
        let len = usize::from(u16::from_be_bytes([ext[q + 2], ext[q + 3]]));
        let data = ext.get(q + 4..q + 4 + len)?;
        if ty == 0 {
            // server_name_list: length(2), then entries type(1) len(2) name.
            let mut r = 2;
            while r + 3 <= data.len() {
                let nt = data[r];
                let nl = usize::from(u16::from_be_bytes([data[r + 1], data[r + 2]]));
                let name = data.get(r + 3..r + 3 + nl)?;
                if nt == 0 {
                    return String::from_utf8(name.to_vec()).ok();
                }
                r += 3 + nl;
            }
            return None;
        }
        q += 4 + len;
    }
    None
}

/// A minimal TLS ClientHello naming `sni` (for tests and benchmarks of
/// the SNI check).
pub fn minimal_client_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut sn = Vec::new();
    sn.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sn.push(0);
    sn.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sn.extend_from_slice(name);
    let mut ext = Vec::new();
    ext.extend_from_slice(&0u16.to_be_bytes());
    ext.extend_from_slice(&(sn.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sn);
    let mut hello = vec![3, 3];
    hello.extend_from_slice(&[7u8; 32]);
    hello.push(0); // session id
    hello.extend_from_slice(&[0, 2, 0x13, 0x01]); // one cipher suite
    hello.extend_from_slice(&[1, 0]); // null compression
    hello.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    hello.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&hello);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn m2a_a_bare_line_feed_cannot_smuggle_a_header() {
        assert!(
            parse_request_head(b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n")
                .is_some()
        );
        assert!(parse_request_head(
            b"GET http://a.example/ HTTP/1.1\r\nX: a\nHost: b.example\r\n\r\n"
        )
        .is_none());
        assert!(
            parse_request_head(b"GET http://a.example/ HTTP/1.1\r\nX: a\rHost: b\r\n\r\n")
                .is_none()
        );
    }

    #[test]
    fn sni_is_read_from_a_client_hello() {
        assert_eq!(
            client_hello_sni(&minimal_client_hello("Example.COM")).as_deref(),
            Some("Example.COM")
        );
        assert_eq!(client_hello_sni(b"GET / HTTP/1.1\r\n"), None);
        let mut cut = minimal_client_hello("example.com");
        cut.truncate(30);
        assert_eq!(client_hello_sni(&cut), None);
    }

    #[test]
    fn authorities_and_request_heads() {
        assert_eq!(split_authority("a.com:443"), Some(("a.com".into(), 443)));
        assert_eq!(split_authority("[::1]:22"), Some(("::1".into(), 22)));
        assert_eq!(split_authority("a.com"), None);
        assert_eq!(split_authority("a.com:0"), None);
        assert_eq!(split_authority(":80"), None);
        assert!(Request::parse("GET http://a/ HTTP/1.1\r\nHost: a").is_some());
        assert!(Request::parse("GET http://a/ HTTP/2\r\nHost: a").is_none());
        assert!(Request::parse("get / HTTP/1.1").is_none());
        assert!(Request::parse("GET / HTTP/1.1\r\nbad header").is_none());
    }
}
