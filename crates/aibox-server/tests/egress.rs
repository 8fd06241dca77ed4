//! The egress proxy against servers on this host's loopback, with test
//! names mapped by a resolver override.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aibox_server::egress::{self, Event, Lookup, Resolve};
use aibox_types::egress::{Mode, Policy};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Fixed answers, and a list of every name asked for.
#[derive(Default)]
struct Names {
    map: HashMap<String, Vec<IpAddr>>,
    asked: Mutex<Vec<String>>,
}

impl Resolve for Names {
    fn lookup<'a>(&'a self, name: &'a str) -> Lookup<'a> {
        Box::pin(async move {
            self.asked.lock().unwrap().push(name.to_string());
            self.map
                .get(name)
                .cloned()
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "nx"))
        })
    }
}

/// An upstream that answers HTTP with what it was asked, or echoes bytes
/// that are not HTTP.
async fn upstream() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let got = &buf[..n];
                if got.starts_with(b"GET ") {
                    let head = String::from_utf8_lossy(got).to_string();
                    let body = head.lines().next().unwrap_or("").to_string();
                    let host = head
                        .lines()
                        .find(|l| l.to_ascii_lowercase().starts_with("host:"))
                        .unwrap_or("")
                        .to_string();
                    let body = format!("{body}|{host}");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                } else {
                    let _ = s.write_all(got).await;
                }
            });
        }
    });
    port
}

struct Proxy {
    port: u16,
    events: Arc<Mutex<Vec<Event>>>,
    names: Arc<Names>,
}

async fn proxy(policy: Policy, map: &[(&str, &str)]) -> Proxy {
    let names = Arc::new(Names {
        map: map
            .iter()
            .map(|(n, ip)| (n.to_string(), vec![ip.parse().unwrap()]))
            .collect(),
        ..Default::default()
    });
    let events = Arc::new(Mutex::new(Vec::new()));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let policy = Arc::new(policy);
    let (n2, e2) = (names.clone(), events.clone());
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                return;
            };
            let (policy, names, events) = (policy.clone(), n2.clone(), e2.clone());
            tokio::spawn(async move {
                let report = move |e: Event| events.lock().unwrap().push(e);
                let _ = egress::serve(s, &policy, names.as_ref(), &report).await;
            });
        }
    });
    Proxy {
        port,
        events,
        names,
    }
}

fn rules(mode: Mode, r: &[String]) -> Policy {
    Policy {
        mode,
        rules: r.iter().map(|x| x.parse().unwrap()).collect(),
    }
}

/// Send `req` through the proxy; everything it answers until it closes.
async fn ask(p: &Proxy, req: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn allowed_names_pass_and_everything_else_gets_a_readable_403() {
    let up = upstream().await;
    let policy = rules(
        Mode::Allowlist,
        &[
            format!("allowed.test:{up}"),
            "rebind.test".into(),
            format!("127.0.0.1:{up}"),
        ],
    );
    let p = proxy(
        policy,
        &[
            ("allowed.test", "127.0.0.1"),
            ("rebind.test", "10.0.0.1"),
            ("denied.test", "127.0.0.1"),
        ],
    )
    .await;
    // Plain HTTP: forwarded in origin form, Host kept.
    let r = ask(
        &p,
        format!("GET http://allowed.test:{up}/hello HTTP/1.1\r\nHost: allowed.test:{up}\r\nProxy-Authorization: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        r.contains(&format!("GET /hello HTTP/1.1|Host: allowed.test:{up}")),
        "{r}"
    );
    // A name no rule allows: 403 with the reason, and never looked up.
    let r = ask(
        &p,
        format!("GET http://denied.test:{up}/ HTTP/1.1\r\nHost: denied.test:{up}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    assert!(r.contains(&format!("--allow denied.test:{up}")), "{r}");
    assert!(!p
        .names
        .asked
        .lock()
        .unwrap()
        .contains(&"denied.test".to_string()));
    // Allowed name resolving to a private address (rebinding): refused.
    let r = ask(&p, b"CONNECT rebind.test:443 HTTP/1.1\r\n\r\n").await;
    assert!(
        r.starts_with("HTTP/1.1 403") && r.contains("resolves to 10.0.0.1"),
        "{r}"
    );
    // Loopback and metadata by address, in any spelling, on a port no rule names.
    for target in [
        format!("127.0.0.1:{}", up.wrapping_add(1).max(1)),
        "2130706433:80".into(),
        "[::ffff:127.0.0.1]:80".into(),
        "169.254.169.254:80".into(),
        "0x7f.1:80".into(),
    ] {
        let r = ask(&p, format!("CONNECT {target} HTTP/1.1\r\n\r\n").as_bytes()).await;
        assert!(r.starts_with("HTTP/1.1 403"), "{target}: {r}");
    }
    // Host header that disagrees with the URL.
    let r = ask(
        &p,
        format!("GET http://allowed.test:{up}/ HTTP/1.1\r\nHost: evil.test\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 403") && r.contains("does not match"),
        "{r}"
    );
    // Not a proxy request, and garbage.
    assert!(ask(&p, b"GET /x HTTP/1.1\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 400"));
    assert!(ask(&p, b"\x16\x03\x01garbage\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 400"));
    assert!(ask(&p, b"CONNECT nohost HTTP/1.1\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 400"));
    // Every decision was reported.
    let ev = p.events.lock().unwrap();
    assert!(ev
        .iter()
        .any(|e| e.allowed && e.destination == format!("allowed.test:{up}")));
    assert!(ev
        .iter()
        .any(|e| !e.allowed && e.destination == format!("denied.test:{up}")));
}

#[tokio::test]
async fn connect_tunnels_check_the_tls_server_name() {
    let up = upstream().await;
    let policy = rules(
        Mode::Allowlist,
        &[format!("allowed.test:{up}"), format!("127.0.0.1:{up}")],
    );
    let p = proxy(policy, &[("allowed.test", "127.0.0.1")]).await;
    let hello = aibox_server::wire::minimal_client_hello;
    for (sni, passes) in [
        ("allowed.test", true),
        ("ALLOWED.test", true),
        ("evil.test", false),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
        s.write_all(format!("CONNECT allowed.test:{up} HTTP/1.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut resp = vec![0u8; 39];
        s.read_exact(&mut resp).await.unwrap();
        assert!(
            resp.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&resp)
        );
        let ch = hello(sni);
        s.write_all(&ch).await.unwrap();
        let mut back = vec![0u8; ch.len()];
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_exact(&mut back))
            .await
            .unwrap();
        assert_eq!(got.is_ok() && back == ch, passes, "SNI {sni}");
    }
    // Raw TCP (not TLS) through an allowed tunnel is plain TCP.
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    s.write_all(format!("CONNECT allowed.test:{up} HTTP/1.1\r\n\r\nSSH-2.0-test\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 39 + 14];
    s.read_exact(&mut buf).await.unwrap();
    assert!(
        buf.ends_with(b"SSH-2.0-test\r\n"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    let ev = p.events.lock().unwrap();
    assert!(ev
        .iter()
        .any(|e| !e.allowed && e.reason.contains("names evil.test")));
}

/// The agent's requests (rootless L4): answered only for sandboxes set up
/// for them, and decided by the same rules and names memory.
#[tokio::test]
async fn agent_tcp_and_dns_requests_follow_the_rules() {
    use aibox_server::{dns, l4};
    let up = upstream().await;
    let policy = Arc::new(rules(
        Mode::Allowlist,
        &[format!("db.test:{up}"), format!("127.0.0.1:{up}")],
    ));
    let names = Arc::new(Names {
        map: [("db.test".to_string(), vec!["127.0.0.1".parse().unwrap()])].into(),
        ..Default::default()
    });
    let memory = Arc::new(l4::Names::default());
    let events = Arc::new(Mutex::new(Vec::<Event>::new()));
    let serve = |with_l4: bool| {
        let (policy, names, memory, events) = (
            policy.clone(),
            names.clone(),
            memory.clone(),
            events.clone(),
        );
        async move {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = l.local_addr().unwrap().port();
            tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    let (policy, names, memory, events) = (
                        policy.clone(),
                        names.clone(),
                        memory.clone(),
                        events.clone(),
                    );
                    tokio::spawn(async move {
                        let report = move |e: Event| events.lock().unwrap().push(e);
                        let m = with_l4.then_some(memory.as_ref());
                        let _ = egress::serve_with(s, &policy, names.as_ref(), &report, m).await;
                    });
                }
            });
            port
        }
    };
    let (plain, agent) = (serve(false).await, serve(true).await);
    let talk = |port: u16, req: Vec<u8>| async move {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(&req).await.unwrap();
        let mut out = Vec::new();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
        out
    };
    // A sandbox with the proxy alone gets HTTP only.
    let out = talk(
        plain,
        format!("AIBOX-TCP 127.0.0.1:{up}\r\n\r\n").into_bytes(),
    )
    .await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 403"));
    // DNS: allowed names get their address, others a refusal.
    let query = |name: &str| {
        let mut q = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        let mut req = format!("AIBOX-DNS {}\r\n\r\n", q.len()).into_bytes();
        req.extend_from_slice(&q);
        req
    };
    let a = talk(agent, query("db.test")).await;
    let q = dns::parse_query(&query("db.test")[b"AIBOX-DNS 25\r\n\r\n".len()..]).unwrap();
    assert_eq!(q.name, "db.test");
    assert_eq!(&a[..2], &[0xab, 0xcd]);
    assert_eq!(a[3] & 0xf, dns::NOERROR);
    assert_eq!(&a[a.len() - 4..], &[127, 0, 0, 1]);
    let a = talk(agent, query("evil.test")).await;
    assert_eq!(a[3] & 0xf, dns::REFUSED);
    assert!(!names
        .asked
        .lock()
        .unwrap()
        .contains(&"evil.test".to_string()));
    // TCP: the allowed destination, spliced; another port, refused.
    let mut req = format!("AIBOX-TCP 127.0.0.1:{up}\r\n\r\n").into_bytes();
    req.extend_from_slice(b"ping");
    let out = talk(agent, req).await;
    assert_eq!(String::from_utf8_lossy(&out), "OK\nping");
    let out = talk(agent, b"AIBOX-TCP 127.0.0.1:1\r\n\r\n".to_vec()).await;
    assert_eq!(String::from_utf8_lossy(&out), "DENY\n");
    let out = talk(agent, b"AIBOX-TCP nonsense\r\n\r\n".to_vec()).await;
    assert!(String::from_utf8_lossy(&out).starts_with("DENY"));
    let ev = events.lock().unwrap();
    assert!(ev
        .iter()
        .any(|e| e.destination == "dns:evil.test" && !e.allowed));
    assert!(
        ev.iter()
            .any(|e| e.destination == format!("db.test:{up} (127.0.0.1, tcp)") && e.allowed),
        "{ev:?}"
    );
}

/// An upstream that keeps everything it is sent (until the client stops
/// for a moment), answers a fixed 200 and closes.
async fn recorder() -> (u16, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(Ok(n)) =
                    tokio::time::timeout(std::time::Duration::from_millis(300), s.read(&mut buf))
                        .await
                {
                    if n == 0 {
                        break;
                    }
                    kept.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    (port, seen)
}

/// M2a: a destination allowed by a name rule is only ever reached by
/// traffic that names it. The review's probe (`CONNECT allowed:80` then a
/// request for another virtual host), a pipelined second request, and a
/// protocol that names nothing never reach the server.
#[tokio::test]
async fn m2a_a_name_rule_holds_for_every_request_through_it() {
    let (up, seen) = recorder().await;
    // The address rule only unlocks loopback for the test; the name
    // rule (no port) decides.
    let policy = rules(
        Mode::Allowlist,
        &["allowed.test".into(), format!("127.0.0.1:{up}")],
    );
    let p = proxy(policy, &[("allowed.test", "127.0.0.1")]).await;
    let connect = format!("CONNECT allowed.test:{up} HTTP/1.1\r\nHost: allowed.test:{up}\r\n\r\n");
    let take = || std::mem::take(&mut *seen.lock().unwrap());

    let r = ask(
        &p,
        format!("{connect}GET / HTTP/1.1\r\nHost: www.python.org\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(
        r.contains("HTTP/1.1 403") && r.contains("names www.python.org"),
        "{r}"
    );
    assert!(
        take().is_empty(),
        "the request for another host reached the server"
    );

    let smuggled = "GET / HTTP/1.1\r\nHost: other.test\r\n\r\n";
    for first in [
        format!("{connect}GET / HTTP/1.1\r\nHost: allowed.test:{up}\r\n\r\n"),
        format!("GET http://allowed.test:{up}/ HTTP/1.1\r\nHost: allowed.test:{up}\r\n\r\n"),
        format!(
            "{connect}POST / HTTP/1.1\r\nHost: allowed.test:{up}\r\nContent-Length: 2\r\n\r\nhi"
        ),
    ] {
        let r = ask(&p, format!("{first}{smuggled}").as_bytes()).await;
        assert!(r.ends_with("ok"), "{r}");
        let got = String::from_utf8(take()).unwrap();
        assert!(got.contains("Connection: close\r\n\r\n"), "{got}");
        assert!(
            !got.contains("other.test"),
            "a pipelined request went through: {got}"
        );
    }

    let r = ask(&p, format!("{connect}SSH-2.0-OpenSSH_9.2\r\n").as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(!r.contains("ok"), "{r}");
    assert!(
        take().is_empty(),
        "a protocol naming nothing reached the server"
    );
    let ev = p.events.lock().unwrap();
    assert!(
        ev.iter()
            .any(|e| !e.allowed && e.reason.contains("neither TLS nor an HTTP/1 request")),
        "{ev:?}"
    );
}
