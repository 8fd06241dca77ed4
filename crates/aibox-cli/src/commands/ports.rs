//! `aibox port` (published ports and their URLs) and `aibox port-forward`
//! (a local TCP port carried to a port inside a sandbox).

use super::remote::{client, sandbox_path};
use crate::args::{PortArgs, PortForwardArgs};
use aibox_client::{Body, Method};
use serde_json::{json, Value};
use std::io::Write;
use std::net::{TcpListener, TcpStream};

pub fn port(a: PortArgs) -> anyhow::Result<u8> {
    let c = client()?;
    let path = format!("{}/ports", sandbox_path(&a.id)?);
    let v = if a.public || a.private || a.rotate_token {
        let mut body = json!({"rotate_token": a.rotate_token});
        if a.public || a.private {
            body["public"] = json!(a.public);
        }
        c.json(Method::PATCH, &path, Body::Json(body))?
    } else {
        c.json(Method::GET, &path, Body::Empty)?
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    print!("{}", render(&v));
    Ok(0)
}

/// The human form: one line per listening port with its browser URL
/// (token included unless the ports are public).
fn render(v: &Value) -> String {
    let public = v["public"].as_bool().unwrap_or(false);
    let token = v["token"].as_str().unwrap_or_default();
    let with_token = |u: &str| {
        if public {
            u.to_string()
        } else {
            format!("{u}?aibox_token={token}")
        }
    };
    let mut out = String::new();
    let ports = v["ports"].as_array().cloned().unwrap_or_default();
    if ports.is_empty() {
        out.push_str("no process listens on a TCP port in this sandbox\n");
    }
    for p in &ports {
        let port = p["port"].as_u64().unwrap_or(0);
        let url = p["url"].as_str().map(with_token).unwrap_or_default();
        let note = if p["reachable"].as_bool() == Some(false) {
            format!(
                "  (bound to {} only: bind 127.0.0.1 or 0.0.0.0 to publish it)",
                p["address"].as_str().unwrap_or("?")
            )
        } else {
            String::new()
        };
        out.push_str(&format!("{port:>5}  {url}{note}\n"));
    }
    if public {
        out.push_str("ports are public: anyone who reaches the server can open them\n");
    } else {
        out.push_str(&format!(
            "token: {token} (header X-Aibox-Token, or ?aibox_token= once in a browser)\n"
        ));
    }
    out
}

/// `PORT` or `LOCAL:PORT`.
fn parse_ports(s: &str) -> anyhow::Result<(u16, u16)> {
    let bad = || {
        aibox_runtime::Error::InvalidSpec(format!(
            "invalid port {s:?}: expected PORT or LOCAL:PORT, PORT between 1 and 65535"
        ))
    };
    let (local, remote) = match s.split_once(':') {
        Some((l, r)) => (l.parse::<u16>().map_err(|_| bad())?, r),
        None => (u16::MAX, s),
    };
    let remote: u16 = remote.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    // Without LOCAL, the same port number locally.
    Ok((if local == u16::MAX { remote } else { local }, remote))
}

pub fn forward(a: PortForwardArgs) -> anyhow::Result<u8> {
    let (local, remote) = parse_ports(&a.ports)?;
    if !aibox_types::validate_id(&a.id) {
        anyhow::bail!(aibox_runtime::Error::InvalidSpec(format!(
            "{:?} is not a sandbox id",
            a.id
        )));
    }
    let listener = TcpListener::bind((a.address, local))
        .map_err(|e| anyhow::anyhow!("cannot listen on {}:{local}: {e}", a.address))?;
    let bound = listener.local_addr()?;
    // Fail early (no sandbox, no access) instead of at the first connection.
    let via: Box<dyn Fn(TcpStream) + Send + Sync> = if a.target.is_local() {
        let rt = aibox_runtime::Runtime::new();
        rt.get(&a.id)?;
        let id = a.id.clone();
        Box::new(move |conn| {
            if let Err(e) = local_pipe(&rt, &id, remote, conn) {
                eprintln!("aibox: port {remote}: {e}");
            }
        })
    } else {
        let c = client()?;
        c.json(Method::GET, &sandbox_path(&a.id)?, Body::Empty)?;
        let path = format!("{}/forward/{remote}", sandbox_path(&a.id)?);
        Box::new(move |conn| {
            let r = c.duplicate().and_then(|c| c.tunnel(&path, conn));
            if let Err(e) = r {
                eprintln!("aibox: port {remote}: {e}");
            }
        })
    };
    println!("forwarding {bound} -> sandbox {} port {remote}", a.id);
    let _ = std::io::stdout().flush();
    let via = std::sync::Arc::new(via);
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let via = via.clone();
        std::thread::spawn(move || via(conn));
    }
    Ok(0)
}

/// `--local`: straight to the sandbox's agent, no server.
fn local_pipe(
    rt: &aibox_runtime::Runtime,
    id: &str,
    port: u16,
    conn: TcpStream,
) -> anyhow::Result<()> {
    let upstream = rt.agent_client(id)?.port_forward(port)?;
    let _ = conn.set_nodelay(true);
    let (mut c_rd, mut u_wr) = (conn.try_clone()?, upstream.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_rd, &mut u_wr);
        let _ = u_wr.shutdown(std::net::Shutdown::Write);
    });
    let (mut u_rd, mut c_wr) = (upstream, conn);
    let _ = std::io::copy(&mut u_rd, &mut c_wr);
    let _ = c_wr.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        assert_eq!(parse_ports("8000").unwrap(), (8000, 8000));
        assert_eq!(parse_ports("9000:8000").unwrap(), (9000, 8000));
        assert_eq!(parse_ports("0:22").unwrap(), (0, 22));
        for bad in ["", "0", "x", "1:", ":1", "70000", "1:70000", "-1"] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn renders_urls_with_the_token() {
        let v = json!({"public": false, "token": "t0k", "ports": [
            {"port": 8000, "address": "0.0.0.0", "reachable": true, "url": "http://8000-abc.localhost:7878/"},
            {"port": 9000, "address": "10.0.0.2", "reachable": false, "url": "http://9000-abc.localhost:7878/"}
        ]});
        let text = render(&v);
        assert!(
            text.contains(" 8000  http://8000-abc.localhost:7878/?aibox_token=t0k\n"),
            "{text}"
        );
        assert!(text.contains("bound to 10.0.0.2 only"), "{text}");
        assert!(text.contains("token: t0k"), "{text}");
        let text = render(&json!({"public": true, "token": "t0k", "ports": []}));
        assert!(
            text.contains("no process listens") && !text.contains("t0k"),
            "{text}"
        );
    }
}
