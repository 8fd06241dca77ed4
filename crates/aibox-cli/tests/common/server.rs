//! A live `aibox serve` for end-to-end tests: started on a loopback port
//! with a data dir of its own, its admin key read from that dir, every
//! sandbox removed and the dir deleted when dropped.

use aibox_client::{Body, Client, Endpoint, Method};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Server {
    pub child: Child,
    pub addr: String,
    pub data: PathBuf,
    pub key: String,
}

impl Server {
    pub fn start(data: &Path) -> Server {
        Server::start_env(data, &[])
    }

    pub fn start_env(data: &Path, vars: &[(&str, &str)]) -> Server {
        // A budget the test sets wins over the default one here.
        let budget = vars
            .iter()
            .find(|(k, _)| *k == "AIBOX_MEMORY_BUDGET")
            .map_or("128g", |(_, v)| *v);
        let mut child = Command::new(super::bin())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--memory-budget",
                budget,
                "--data-dir",
            ])
            .arg(data)
            .env_remove("AIBOX_URL")
            .env_remove("AIBOX_LOG")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut addr = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(a) = line.strip_prefix("aibox: listening on http://") {
                addr = Some(a.to_string());
                break;
            }
        }
        // Keep draining stderr so the server never blocks on it, into a log
        // kept next to the data dir for failures to point at.
        let log_path = data.with_extension("log");
        std::thread::spawn(move || {
            use std::io::Write;
            let mut log = std::fs::File::create(&log_path).ok();
            for l in lines.map_while(Result::ok) {
                if let Some(f) = log.as_mut() {
                    let _ = writeln!(f, "{l}");
                }
            }
        });
        let key = std::fs::read_to_string(data.join("admin.key"))
            .unwrap()
            .trim()
            .to_string();
        Server {
            child,
            addr: addr.expect("server did not start"),
            data: data.to_path_buf(),
            key,
        }
    }

    pub fn client(&self, key: &str) -> Client {
        Client::new(Endpoint::Tcp(self.addr.clone()), Some(key.to_string())).unwrap()
    }

    pub fn admin(&self) -> Client {
        self.client(&self.key)
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(super::bin())
            .args(args)
            .env("AIBOX_URL", format!("http://{}", self.addr))
            .env("AIBOX_KEY", &self.key)
            .env_remove("AIBOX_LOCAL")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Remove every sandbox through the API, then stop the server.
        if let Ok(v) = self
            .admin()
            .json(Method::GET, "/v1/sandboxes?limit=1000", Body::Empty)
        {
            for s in v["sandboxes"].as_array().into_iter().flatten() {
                let id = s["id"].as_str().unwrap_or_default();
                let _ =
                    self.admin()
                        .call(Method::DELETE, &format!("/v1/sandboxes/{id}"), Body::Empty);
            }
        }
        self.kill9();
        let rt = aibox_runtime::Runtime::with(
            aibox_runtime::Dirs {
                run: self.data.join("run"),
                data: self.data.clone(),
            },
            super::bin(),
        );
        for r in rt.list() {
            if let Ok(sb) = rt.get(&r.id) {
                let _ = sb.destroy();
            }
        }
        rt.gc();
        // Volumes' filesystems are unmounted before their tree goes.
        rt.release_volumes();
        let _ = aibox_runtime::image::layer::remove_tree(&self.data);
    }
}

pub fn data_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "aibox-srv-{}-{name}-{}",
        aibox_sys::geteuid(),
        aibox_runtime::random_id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn create(c: &Client, body: Value) -> String {
    let v = c
        .json(Method::POST, "/v1/sandboxes", Body::Json(body))
        .unwrap();
    v["id"].as_str().unwrap().to_string()
}

pub fn exec(c: &Client, id: &str, cmd: Value) -> Value {
    c.json(
        Method::POST,
        &format!("/v1/sandboxes/{id}/exec"),
        Body::Json(json!({ "cmd": cmd })),
    )
    .unwrap()
}

/// What a raw HTTP exchange returned.
pub struct Raw {
    pub status: u16,
    /// Header names in lower case, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on its own connection (closed after it), with
/// the headers given as they are (cookies, CSRF tokens, MCP's), and the
/// whole reply, chunked bodies decoded.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Raw {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete HTTP head");
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let mut raw_body = resp[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        let mut out = Vec::new();
        let mut rest = &raw_body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..eol])
                    .split(';')
                    .next()
                    .unwrap_or("0")
                    .trim(),
                16,
            )
            .unwrap_or(0);
            rest = &rest[eol + 2..];
            if size == 0 || rest.len() < size {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[(size + 2).min(rest.len())..];
        }
        raw_body = out;
    }
    Raw {
        status,
        headers,
        body: raw_body,
    }
}

/// A new key of this scope (`user` or `admin`): (id, secret).
pub fn new_key(admin: &Client, name: &str, scope: &str) -> (String, String) {
    let v = admin
        .json(
            Method::POST,
            "/v1/keys",
            Body::Json(json!({"name": name, "scope": scope})),
        )
        .unwrap();
    (
        v["id"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    )
}
