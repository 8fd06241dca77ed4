//! What a client sends down the egress paths, as the proxy and the tunnel
//! read it: HTTP/1 request heads and TLS ClientHellos. Parsers of
//! untrusted input, fuzzed (`crates/aibox-fuzz`).

/// Largest request head read from a client.
pub const MAX_HEAD: usize = 16 << 10;

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

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
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
        // A control character (a bare CR or LF above all) inside a line
        // would be a line boundary to the upstream server but not to this
        // check: `X: a\nHost: other`, or a version `HTTP/1.1\nHost: other`,
        // smuggled a second Host (the review's M2a). Tabs may separate a
        // header's value.
        let control = |l: &str| l.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f);
        let mut lines = head.split("\r\n");
        let request_line = lines.next()?;
        if control(request_line) {
            return None;
        }
        let mut first = request_line.split(' ');
        let (method, target, version) = (first.next()?, first.next()?, first.next()?);
        if first.next().is_some()
            || !matches!(version, "HTTP/1.0" | "HTTP/1.1")
            || method.is_empty()
            || !method.bytes().all(|b| b.is_ascii_uppercase())
            || target.is_empty()
            || target.contains('\t')
        {
            return None;
        }
        let mut headers = Vec::new();
        for l in lines {
            if control(l) {
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

    pub fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
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
pub fn split_authority(a: &str) -> Option<(String, u16)> {
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
        // ... nor in the request line (the target, the version).
        for smuggled in [
            &b"GET http://a.example/ HTTP/1.1\nHost:b.example\r\n\r\n"[..],
            b"GET http://a.example/\nHost:b HTTP/1.1\r\nHost: a.example\r\n\r\n",
            b"GET / HTTP/1.1\x00\r\nHost: a.example\r\n\r\n",
            b"GET / HTTP/1.2\r\nHost: a.example\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.example\x0b\r\n\r\n",
        ] {
            assert!(parse_request_head(smuggled).is_none(), "{smuggled:?}");
        }
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
