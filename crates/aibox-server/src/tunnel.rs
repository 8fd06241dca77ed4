//! What a connection allowed *by name* may carry (the review's M2a).
//!
//! A name rule is a promise about a name, but a connection goes to an
//! address, and addresses are shared: a CDN serves thousands of names on
//! the same few. So once the egress proxy (a CONNECT tunnel) or the L4
//! path (a TCP connection to an address the sandbox resolved) has allowed
//! a destination by a name rule, the traffic must itself name an allowed
//! name before any byte of it goes upstream:
//!
//! * TLS: the ClientHello's server name (SNI), the whole first record read;
//! * HTTP/1: the request's `Host`; exactly one request is relayed, its
//!   head re-emitted and its body framed by this module (`Content-Length`
//!   or chunked, never both), with `Connection: close`, so no second
//!   request can follow it on the connection;
//! * anything else (another protocol, HTTP/2 in clear, a client that waits
//!   for the server to speak first) only when the rule that allowed the
//!   name names its ports (`git.example:22`: the operator opted that port
//!   in for protocols that carry no name); otherwise it is refused, as no
//!   name can be checked in it.
//!
//! Connections allowed by an address rule carry anything. The server's
//! side flows back from the start, so protocols where the server speaks
//! first work wherever they are allowed. What stays possible is fronting
//! *inside* TLS (a Host header the proxy cannot read, or Encrypted Client
//! Hello) on CDNs that allow it.

use crate::wire::{client_hello_sni, split_authority, Request};
use aibox_types::egress::{Decision, Policy};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where a splice starts.
pub enum Start {
    /// Look at what the client sends (after these bytes, which arrived
    /// already) against what the destination `port` expects.
    Inspect(Vec<u8>, Expect, u16),
    /// Relay this request (already checked) with this target in its
    /// request line, and what followed its head.
    Request(Request, String, Vec<u8>),
}

/// How a splice ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Relayed,
    /// Nothing went upstream; the reason, for the audit log.
    Refused(String),
}

/// Relay between a client and its (allowed, connected) destination. The
/// server's bytes flow back from the start; the client's go upstream only
/// as [`Start`] allows: raw, or one request. A refused HTTP request is
/// answered 403 (400 for a framing the proxy cannot be sure of), with the
/// reason.
pub async fn splice<C, U>(client: C, upstream: U, start: Start) -> io::Result<Outcome>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (client_r, mut client_w) = tokio::io::split(client);
    let (mut up_r, mut up_w) = tokio::io::split(upstream);
    let mut client_r = client_r;
    let refusal = {
        let send = async {
            let (req, target, rest) = match start {
                Start::Request(req, target, rest) => (req, target, rest),
                Start::Inspect(first, expect, port) => {
                    match inspect(&mut client_r, first, &expect, port).await? {
                        Verdict::Raw(first) => {
                            up_w.write_all(&first).await?;
                            tokio::io::copy(&mut client_r, &mut up_w).await?;
                            up_w.shutdown().await?;
                            return Ok(None);
                        }
                        Verdict::Request(req, rest) => {
                            let target = req.target.clone();
                            (req, target, rest)
                        }
                        Verdict::Refused { reason, http } => {
                            return Ok(Some((reason, http.then_some(403))));
                        }
                    }
                }
            };
            let body = match framing(&req) {
                Ok(b) => b,
                Err(why) => return Ok(Some((why, Some(400)))),
            };
            let mut from_client =
                tokio::io::BufReader::new(std::io::Cursor::new(rest).chain(&mut client_r));
            send_request(&req, &target, body, &mut from_client, &mut up_w).await?;
            Ok::<_, io::Error>(None)
        };
        let recv = async {
            let _ = tokio::io::copy(&mut up_r, &mut client_w).await;
            let _ = client_w.shutdown().await;
        };
        tokio::pin!(send, recv);
        let (mut sent, mut received) = (false, false);
        let mut refusal = None;
        while !(sent && received) {
            tokio::select! {
                r = &mut send, if !sent => {
                    sent = true;
                    match r {
                        Ok(Some(refused)) => {
                            refusal = Some(refused);
                            break;
                        }
                        Ok(None) => {}
                        // The client's side broke (or lied about its
                        // framing): nothing more goes up; the answer may
                        // still come down.
                        Err(_) => {}
                    }
                }
                _ = &mut recv, if !received => received = true,
            }
        }
        refusal
    };
    let Some((reason, status)) = refusal else {
        return Ok(Outcome::Relayed);
    };
    if let Some(status) = status {
        let (code, text) = if status == 400 {
            (400, "Bad Request")
        } else {
            (403, "Forbidden")
        };
        let body = format!("Request refused: {reason}.\n");
        let resp = format!(
            "HTTP/1.1 {code} {text}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        client_w.write_all(resp.as_bytes()).await?;
    }
    let _ = client_w.shutdown().await;
    Ok(Outcome::Refused(reason))
}

/// How long a client has to show what it carries.
const SNIFF_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest first TLS record or HTTP head read.
const MAX_FIRST: usize = 16 << 10;
/// The longest chunk-size or trailer line of a chunked body.
const MAX_LINE: usize = 4096;

/// What the traffic of an allowed connection must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Anything (an address rule, or a name rule with its ports).
    Any,
    /// TLS or HTTP/1 naming one of these names; anything else only with
    /// `other` (a name rule that names its ports allowed it).
    Names { names: Vec<String>, other: bool },
}

impl Expect {
    /// For a destination allowed as `name` (a CONNECT to a name).
    pub fn for_name(policy: &Policy, decision: &Decision, name: &str) -> Expect {
        Expect::Names {
            names: vec![name.to_string()],
            other: policy
                .rule_of(decision)
                .is_some_and(|r| r.trusts_any_traffic()),
        }
    }

    /// For a TCP connection to `ip:port` (L4): anything when the address
    /// itself is allowed, else one of the names the sandbox resolved to
    /// it that the policy allows there.
    pub fn for_address(
        policy: &Policy,
        names: &[String],
        ip: std::net::IpAddr,
        port: u16,
    ) -> Expect {
        use aibox_types::egress::Host;
        let by_address = policy.decide(&Host::Ip(ip), port);
        if by_address.allowed {
            return Expect::Any;
        }
        let mut allowed = Vec::new();
        let mut other = false;
        for n in names {
            let d = policy.decide(
                &Host::Name {
                    name: n.clone(),
                    resolved: vec![ip],
                },
                port,
            );
            if !d.allowed {
                continue;
            }
            other |= policy.rule_of(&d).is_some_and(|r| r.trusts_any_traffic());
            allowed.push(n.clone());
        }
        Expect::Names {
            names: allowed,
            other,
        }
    }
}

/// What [`inspect`] found.
#[derive(Debug)]
enum Verdict {
    /// Relay these bytes, then the rest both ways.
    Raw(Vec<u8>),
    /// Relay this one request (and what followed its head) with [`relay_request`].
    Request(Request, Vec<u8>),
    /// Refused, with a reason for the audit log (and, for HTTP, the client).
    Refused { reason: String, http: bool },
}

/// Read the start of what `client` sends (after `first`, what arrived
/// already) far enough to tell whether it names an allowed name.
async fn inspect<C: AsyncRead + Unpin>(
    client: &mut C,
    first: Vec<u8>,
    expect: &Expect,
    port: u16,
) -> io::Result<Verdict> {
    let Expect::Names {
        names,
        other: other_ok,
    } = expect
    else {
        return Ok(Verdict::Raw(first));
    };
    let names_matching = |n: &str| {
        let n = n.trim_end_matches('.');
        names.iter().any(|a| a.eq_ignore_ascii_case(n))
    };
    let shown = names.join(", ");
    let mut buf = first;
    let read = tokio::time::timeout(SNIFF_TIMEOUT, async {
        loop {
            match classify(&buf) {
                Some(_) => return Ok::<(), io::Error>(()),
                None if buf.len() > MAX_FIRST => return Ok(()),
                None => {}
            }
            let mut chunk = [0u8; 4096];
            let n = client.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    match read {
        Ok(r) => r?,
        // A client that waits for the server to speak first.
        // A client that waits for the server to speak first, having sent
        // nothing. (One that sent the start of a TLS record or an HTTP
        // head and paused must not slip past the check.)
        Err(_) if *other_ok && buf.is_empty() => return Ok(Verdict::Raw(buf)),
        Err(_) => {
            return Ok(Verdict::Refused {
                reason: format!(
                    "the connection sent nothing within {}s: a destination allowed by name ({shown}) needs TLS or HTTP naming it first (a server that speaks first needs a rule with its port)",
                    SNIFF_TIMEOUT.as_secs()
                ),
                http: false,
            })
        }
    }
    let other = |what: &str| {
        Verdict::Refused {
        reason: format!(
            "{what}: a destination allowed by name ({shown}) carries only TLS or HTTP/1 that names it; for other protocols allow the port explicitly (NAME:PORT) or the address"
        ),
        http: false,
    }
    };
    match classify(&buf) {
        Some(First::Tls) => match client_hello_sni(&buf) {
            Some(sni) if names_matching(&sni) => Ok(Verdict::Raw(buf)),
            sni => Ok(Verdict::Refused {
                reason: format!(
                    "TLS refused: the handshake names {} instead of {shown}",
                    sni.as_deref().unwrap_or("no server")
                ),
                http: false,
            }),
        },
        Some(First::Http(end)) => {
            let Some(req) = std::str::from_utf8(&buf[..end])
                .ok()
                .and_then(Request::parse)
            else {
                return Ok(Verdict::Refused {
                    reason: "malformed HTTP request".into(),
                    http: true,
                });
            };
            let hosts: Vec<&str> = req.headers_named("host").collect();
            let host = match hosts.as_slice() {
                [h] => *h,
                _ => {
                    return Ok(Verdict::Refused {
                        reason: "an HTTP request needs exactly one Host header".into(),
                        http: true,
                    })
                }
            };
            let (h, p) = split_authority(host).unwrap_or((host.to_string(), port));
            if !names_matching(&h) || p != port {
                return Ok(Verdict::Refused {
                    reason: format!("HTTP refused: the request names {host} instead of {shown}"),
                    http: true,
                });
            }
            // The target names only a path: an absolute one (`http://other/`)
            // or an authority (`other:443`) would name the server instead
            // of Host, and servers follow the target.
            if !(req.target.starts_with('/') || (req.target == "*" && req.method == "OPTIONS")) {
                return Ok(Verdict::Refused {
                    reason: format!(
                        "HTTP refused: through a tunnel a request names its path only ({} names more)",
                        req.target
                    ),
                    http: true,
                });
            }
            Ok(Verdict::Request(req, buf[end + 4..].to_vec()))
        }
        // Clearly neither TLS nor HTTP, under a rule that names its port.
        Some(First::Other) if *other_ok => Ok(Verdict::Raw(buf)),
        None if buf.is_empty() => Ok(other("the connection closed before sending anything")),
        _ => Ok(other("neither TLS nor an HTTP/1 request")),
    }
}

enum First {
    Tls,
    /// The head ends at this offset (before the blank line).
    Http(usize),
    /// Neither.
    Other,
}

/// What `b` starts with, once that is certain: a whole first TLS record,
/// a whole HTTP/1 head, or neither. None: more bytes are needed.
fn classify(b: &[u8]) -> Option<First> {
    match b.first()? {
        0x16 => {
            let len = usize::from(u16::from_be_bytes([*b.get(3)?, *b.get(4)?]));
            (b.len() >= 5 + len).then_some(First::Tls)
        }
        // An HTTP/1 request line starts with an upper-case method and a space.
        _ => {
            let method = b.iter().take_while(|c| c.is_ascii_uppercase()).count();
            match b.get(method) {
                None => None,
                Some(b' ') if method > 0 => crate::wire::find(b, b"\r\n\r\n").map(First::Http),
                Some(_) => Some(First::Other),
            }
        }
    }
}

/// Send one request upstream: its head re-emitted (`target` in the
/// request line, no hop-by-hop headers, `Connection: close`), then its
/// body as [`framing`] found it. Nothing after it is read from the client.
async fn send_request<R, W>(
    req: &Request,
    target: &str,
    body: Body,
    from: &mut R,
    to: &mut W,
) -> io::Result<()>
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut head = format!("{} {} {}\r\n", req.method, target, req.version);
    for (k, v) in &req.headers {
        let lk = k.to_ascii_lowercase();
        if lk.starts_with("proxy-") || lk == "connection" || lk == "keep-alive" {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    to.write_all(head.as_bytes()).await?;
    match body {
        Body::None => {}
        Body::Length(n) => {
            let copied = tokio::io::copy(&mut (&mut *from).take(n), to).await?;
            if copied != n {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "body cut short",
                ));
            }
        }
        Body::Chunked => relay_chunked(from, to).await?,
    }
    to.flush().await
}

enum Body {
    None,
    Length(u64),
    Chunked,
}

fn framing(req: &Request) -> Result<Body, String> {
    let te: Vec<&str> = req.headers_named("transfer-encoding").collect();
    let cl: Vec<&str> = req.headers_named("content-length").collect();
    match (te.as_slice(), cl.as_slice()) {
        ([], []) => Ok(Body::None),
        ([], [n]) if !n.is_empty() && n.len() <= 19 && n.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Body::Length(n.parse().map_err(|_| "bad Content-Length")?))
        }
        ([], _) => Err("one Content-Length of digits only, please".into()),
        ([t], []) if t.eq_ignore_ascii_case("chunked") => Ok(Body::Chunked),
        (_, []) => Err("the only Transfer-Encoding relayed is a single `chunked`".into()),
        (_, _) => Err("Transfer-Encoding and Content-Length together are refused".into()),
    }
}

/// Copy a chunked body, checking its framing as it goes: size lines of
/// hex digits (an extension after `;` allowed), CRLF after each chunk,
/// trailers up to the blank line. Lines end in CRLF only.
async fn relay_chunked<R, W>(from: &mut R, to: &mut W) -> io::Result<()>
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    loop {
        let line = read_crlf_line(from).await?;
        let size = line[..line.len() - 2]
            .split(|b| *b == b';')
            .next()
            .unwrap_or_default();
        if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
            return Err(bad("bad chunk size"));
        }
        let size = u64::from_str_radix(std::str::from_utf8(size).unwrap_or("x"), 16)
            .map_err(|_| bad("bad chunk size"))?;
        to.write_all(&line).await?;
        if size == 0 {
            loop {
                let trailer = read_crlf_line(from).await?;
                to.write_all(&trailer).await?;
                if trailer == b"\r\n" {
                    return Ok(());
                }
            }
        }
        let copied = tokio::io::copy(&mut (&mut *from).take(size), to).await?;
        if copied != size {
            return Err(bad("chunk cut short"));
        }
        let mut end = [0u8; 2];
        from.read_exact(&mut end).await?;
        if &end != b"\r\n" {
            return Err(bad("a chunk must end in CRLF"));
        }
        to.write_all(&end).await?;
    }
}

/// One line ending in CRLF (returned with it), with no other CR or LF.
async fn read_crlf_line<R: tokio::io::AsyncBufRead + Unpin>(from: &mut R) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    (&mut *from)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await?;
    let ok = line.ends_with(b"\r\n")
        && !line[..line.len() - 2]
            .iter()
            .any(|b| *b == b'\r' || *b == b'\n');
    if !ok {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a chunked body line must end in CRLF",
        ));
    }
    Ok(line)
}

/// For fuzzing: a client that sends `data` and closes, through a tunnel to
/// `a.example:80` allowed by a name rule, to a server that reads what comes
/// and answers nothing. Returns how it ended and what reached the server.
/// Whatever `data` is, it must end without a panic, and a refusal must
/// leave the server with nothing.
pub fn replay(data: &[u8]) -> (Outcome, Vec<u8>) {
    thread_local! {
        static RT: Option<tokio::runtime::Runtime> = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .ok();
    }
    RT.with(|rt| {
        let Some(rt) = rt else {
            return (Outcome::Refused("no runtime".into()), Vec::new());
        };
        rt.block_on(async {
            let (client, mut far) = tokio::io::duplex(1 << 16);
            let (upstream, mut server) = tokio::io::duplex(1 << 16);
            let data = data.to_vec();
            let writer = async move {
                let _ = far.write_all(&data).await;
                let _ = far.shutdown().await;
                let mut sink = Vec::new();
                let _ = far.read_to_end(&mut sink).await;
            };
            let reader = async move {
                let mut got = Vec::new();
                let _ = server.read_to_end(&mut got).await;
                got
            };
            let expect = Expect::Names {
                names: vec!["a.example".into()],
                other: false,
            };
            let start = Start::Inspect(Vec::new(), expect, 80);
            let (outcome, _, got) = tokio::join!(
                async {
                    let r = splice(client, upstream, start).await;
                    r.unwrap_or(Outcome::Refused("i/o".into()))
                },
                writer,
                reader
            );
            (outcome, got)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    fn names(n: &[&str], other: bool) -> Expect {
        Expect::Names {
            names: n.iter().map(|s| s.to_string()).collect(),
            other,
        }
    }

    /// Splice `sent` (then EOF) to a server that answers `answer` to
    /// whatever it gets; returns what the server got, what the client got
    /// back, and the outcome.
    async fn run(start: Start, sent: &[u8], answer: &[u8]) -> (String, String, Outcome) {
        let (client, mut client_far) = duplex(1 << 16);
        let (upstream, mut server) = duplex(1 << 16);
        client_far.write_all(sent).await.unwrap();
        client_far.shutdown().await.unwrap();
        let answer = answer.to_vec();
        let server = tokio::spawn(async move {
            let mut got = vec![0u8; 1 << 16];
            let mut seen = Vec::new();
            // The server reads what arrives within a moment, answers, closes.
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(200), server.read(&mut got)).await
            {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&got[..n]);
            }
            let _ = server.write_all(&answer).await;
            drop(server);
            String::from_utf8_lossy(&seen).to_string()
        });
        let outcome = splice(client, upstream, start).await.unwrap();
        let got = server.await.unwrap();
        let mut back = String::new();
        client_far.read_to_string(&mut back).await.unwrap();
        (got, back, outcome)
    }

    fn inspect_start(expect: Expect) -> Start {
        Start::Inspect(Vec::new(), expect, 80)
    }

    #[tokio::test]
    async fn a_name_tunnel_carries_tls_or_http_naming_it() {
        let ok = names(&["allowed.example"], false);
        let hello = crate::wire::minimal_client_hello("allowed.example");
        let (got, back, outcome) = run(inspect_start(ok.clone()), &hello, b"server hello").await;
        assert_eq!(outcome, Outcome::Relayed);
        assert_eq!(got.as_bytes(), &hello[..]);
        assert_eq!(back, "server hello");
        let other = crate::wire::minimal_client_hello("other.example");
        let (got, _, outcome) = run(inspect_start(ok.clone()), &other, b"").await;
        assert!(matches!(outcome, Outcome::Refused(r) if r.contains("other.example")));
        assert!(got.is_empty());
        let (got, back, outcome) = run(
            inspect_start(ok.clone()),
            b"GET / HTTP/1.1\r\nHost: allowed.example\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\n",
        )
        .await;
        assert_eq!(outcome, Outcome::Relayed);
        assert_eq!(
            got,
            "GET / HTTP/1.1\r\nHost: allowed.example\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(back, "HTTP/1.1 200 OK\r\n\r\n");
    }

    #[tokio::test]
    async fn what_names_nothing_allowed_never_goes_upstream() {
        let ok = names(&["allowed.example"], false);
        for (sent, http) in [
            (&b"GET / HTTP/1.1\r\nHost: other.example\r\n\r\n"[..], true),
            (
                b"GET / HTTP/1.1\r\nHost: allowed.example\r\nHost: other.example\r\n\r\n",
                true,
            ),
            (b"GET / HTTP/1.1\r\n\r\n", true),
            (
                b"GET / HTTP/1.1\r\nHost: allowed.example:8080\r\n\r\n",
                true,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: allowed.example\r\nX: a\nHost: b\r\n\r\n",
                true,
            ),
            (
                b"GET http://other.example/ HTTP/1.1\r\nHost: allowed.example\r\n\r\n",
                true,
            ),
            (
                b"CONNECT other.example:443 HTTP/1.1\r\nHost: allowed.example\r\n\r\n",
                true,
            ),
            (
                b"GET / HTTP/1.1\nHost:other.example\n\nX\r\nHost: allowed.example\r\n\r\n",
                true,
            ),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", true),
            (b"SSH-2.0-OpenSSH_9.2\r\n", false),
            (
                b"\r\nGET / HTTP/1.1\r\nHost: allowed.example\r\n\r\n",
                false,
            ),
            (b"", false),
        ] {
            let (got, back, outcome) = run(inspect_start(ok.clone()), sent, b"").await;
            let shown = String::from_utf8_lossy(sent);
            assert!(matches!(outcome, Outcome::Refused(_)), "{shown}");
            assert!(got.is_empty(), "{shown} reached the server: {got}");
            assert_eq!(back.starts_with("HTTP/1.1 403"), http, "{shown}: {back}");
        }
        // A rule with its port lets other protocols through, and the
        // server may speak first; TLS and HTTP are still checked.
        let ported = names(&["allowed.example"], true);
        let (got, back, outcome) = run(
            inspect_start(ported.clone()),
            b"SSH-2.0-OpenSSH_9.2\r\n",
            b"SSH-2.0-server\r\n",
        )
        .await;
        assert_eq!(outcome, Outcome::Relayed);
        assert_eq!(
            (got.as_str(), back.as_str()),
            ("SSH-2.0-OpenSSH_9.2\r\n", "SSH-2.0-server\r\n")
        );
        let other = crate::wire::minimal_client_hello("other.example");
        let (_, _, outcome) = run(inspect_start(ported.clone()), &other, b"").await;
        assert!(matches!(outcome, Outcome::Refused(_)));
        // The start of a ClientHello, then a pause: still checked (the
        // sniff waits; the client here closes, leaving it incomplete).
        let (got, _, outcome) = run(inspect_start(ported), &other[..4], b"").await;
        assert!(matches!(outcome, Outcome::Refused(_)) && got.is_empty());
        let (got, _, outcome) = run(inspect_start(Expect::Any), b"anything", b"").await;
        assert_eq!((got.as_str(), outcome), ("anything", Outcome::Relayed));
    }

    /// The review's probe: after the checked request, a pipelined second
    /// one for another virtual host never reaches the server.
    #[tokio::test]
    async fn only_one_request_is_relayed() {
        let smuggled = "GET / HTTP/1.1\r\nHost: other.example\r\n\r\n";
        for (head, body) in [
            (
                "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nConnection: keep-alive",
                "hello",
            ),
            (
                "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked",
                "5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n",
            ),
            ("GET / HTTP/1.1\r\nHost: a.example", ""),
        ] {
            let sent = format!("{head}\r\n\r\n{body}{smuggled}");
            let (got, back, outcome) = run(
                inspect_start(names(&["a.example"], false)),
                sent.as_bytes(),
                b"HTTP/1.1 200 OK\r\n\r\nok",
            )
            .await;
            assert_eq!(outcome, Outcome::Relayed);
            assert!(
                got.ends_with(&format!("Connection: close\r\n\r\n{body}")),
                "{got}"
            );
            assert!(
                !got.contains("other.example") && !got.contains("keep-alive"),
                "{got}"
            );
            assert_eq!(back, "HTTP/1.1 200 OK\r\n\r\nok");
        }
    }

    #[tokio::test]
    async fn ambiguous_framing_is_refused() {
        for head in [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5",
        ] {
            let req = Request::parse(head).unwrap();
            let (got, back, outcome) =
                run(Start::Request(req, "/".into(), Vec::new()), b"hello", b"").await;
            assert!(matches!(outcome, Outcome::Refused(_)), "{head}");
            assert!(got.is_empty(), "{head}: {got}");
            assert!(back.starts_with("HTTP/1.1 400"), "{head}: {back}");
        }
        // A chunked body whose lines lie about their ends stops the relay.
        let (mut from, mut to) = (
            tokio::io::BufReader::new(&b"5\nhello\r\n0\r\n\r\n"[..]),
            Vec::new(),
        );
        assert!(relay_chunked(&mut from, &mut to).await.is_err());
    }
}
