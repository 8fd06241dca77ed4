//! Firecracker, driven through its API socket (HTTP/1.1 on a Unix socket).
//!
//! A Firecracker microVM boots from a configuration file (`--config-file`,
//! the API's `FullVmConfiguration`) whose paths are all relative to the
//! VMM's working directory: the sandbox's VM root (or, under the jailer,
//! the chroot). A snapshot records those same relative paths, so a restore
//! in another sandbox's VM root finds that sandbox's own disk and vsock
//! socket under the same names.
//!
//! The guest has no network device: the host reaches its agent through
//! Firecracker's hybrid vsock ([`VSOCK`], `CONNECT <port>`), and its egress
//! relay reaches the host's proxy at `VSOCK_<port>`.

use crate::Error;
use aibox_types::ErrorCode;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Names inside the VM root.
pub const API: &str = "fc.sock";
pub const CONFIG: &str = "vm-config.json";
pub const VSOCK: &str = "v.sock";
pub const KERNEL: &str = "vmlinux";
pub const INITRAMFS: &str = "initramfs";
pub const UPPER: &str = "disk.ext4";
pub const STATE: &str = "snap.state";
pub const MEMORY: &str = "snap.mem";
/// The guest's vsock CID (any value from 3 up; each VM has its own device).
pub const GUEST_CID: u32 = 3;

/// Layer `i`'s image in the VM root.
pub fn layer_name(i: usize) -> String {
    format!("l{i}.ext4")
}

/// What a Firecracker microVM boots with.
pub struct Machine<'a> {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub boot_args: &'a str,
    /// The ext4 labels the guest finds each layer by; the images are
    /// [`layer_name`]`(i)`.
    pub layers: usize,
}

/// The `--config-file` document.
pub fn config(m: &Machine<'_>) -> serde_json::Value {
    let mut drives: Vec<serde_json::Value> = (0..m.layers)
        .map(|i| {
            serde_json::json!({
                "drive_id": format!("l{i}"),
                "path_on_host": layer_name(i),
                "is_root_device": false,
                "is_read_only": true,
            })
        })
        .collect();
    drives.push(serde_json::json!({
        "drive_id": "upper",
        "path_on_host": UPPER,
        "is_root_device": false,
        "is_read_only": false,
        // The guest's flushes reach the host file.
        "cache_type": "Writeback",
    }));
    serde_json::json!({
        "boot-source": {
            "kernel_image_path": KERNEL,
            "initrd_path": INITRAMFS,
            "boot_args": m.boot_args,
        },
        "drives": drives,
        "machine-config": {
            "vcpu_count": m.vcpus,
            "mem_size_mib": m.memory_mib,
            "smt": false,
        },
        "vsock": {
            "guest_cid": GUEST_CID,
            "uds_path": VSOCK,
        },
    })
}

fn failed(msg: impl Into<String>) -> Error {
    Error::Reported {
        code: ErrorCode::Internal,
        message: msg.into(),
    }
}

/// One API request; the response's JSON body (`Null` for 204).
pub fn api(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value, Error> {
    let err = |e: std::io::Error| failed(format!("Firecracker's API ({}): {e}", sock.display()));
    let mut s = UnixStream::connect(sock).map_err(err)?;
    // A full snapshot writes the whole guest memory before answering.
    s.set_read_timeout(Some(Duration::from_secs(300)))
        .map_err(err)?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n");
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).map_err(err)?;
    let (status, text) = read_response(&mut BufReader::new(s)).map_err(err)?;
    let value = if text.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    if (200..300).contains(&status) {
        return Ok(value);
    }
    let why = value
        .get("fault_message")
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| value.to_string());
    Err(failed(format!(
        "Firecracker refused {method} {path} ({status}): {why}"
    )))
}

/// An HTTP/1.1 response: its status and its body (by Content-Length).
fn read_response(r: &mut impl BufRead) -> std::io::Result<(u16, String)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {:?}", line.trim())))?;
    let mut length = 0usize;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(bad("the response ended in its headers"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().map_err(|_| bad("bad Content-Length"))?;
            }
        }
    }
    if length > 1 << 20 {
        return Err(bad("response body over 1 MiB"));
    }
    let mut body = vec![0u8; length];
    r.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Pause or resume the guest's vCPUs.
pub fn set_paused(sock: &Path, pause: bool) -> Result<(), Error> {
    let state = if pause { "Paused" } else { "Resumed" };
    api(
        sock,
        "PATCH",
        "/vm",
        Some(&serde_json::json!({ "state": state })),
    )
    .map(drop)
}

/// Whether the guest is paused.
pub fn paused(sock: &Path) -> Result<bool, Error> {
    let info = api(sock, "GET", "/", None)?;
    Ok(info.get("state").and_then(|s| s.as_str()) == Some("Paused"))
}

/// Write a full snapshot ([`STATE`] and [`MEMORY`] in the VM root); the
/// guest must be paused.
pub fn snapshot(sock: &Path) -> Result<(), Error> {
    api(
        sock,
        "PUT",
        "/snapshot/create",
        Some(&serde_json::json!({
            "snapshot_type": "Full",
            "snapshot_path": STATE,
            "mem_file_path": MEMORY,
        })),
    )
    .map(drop)
}

/// Load [`STATE`] and [`MEMORY`] from the VM root into a fresh
/// Firecracker and run the guest.
pub fn load(sock: &Path) -> Result<(), Error> {
    api(
        sock,
        "PUT",
        "/snapshot/load",
        Some(&serde_json::json!({
            "snapshot_path": STATE,
            "mem_backend": { "backend_type": "File", "backend_path": MEMORY },
            "resume_vm": true,
        })),
    )
    .map(drop)
}

/// Open a stream to the guest's vsock `port` through a hybrid vsock
/// socket (Firecracker's, or vhost-device-vsock's: the same protocol):
/// `CONNECT <port>\n`, answered `OK <host port>\n`.
pub fn vsock_connect(uds: &Path, port: u32) -> std::io::Result<UnixStream> {
    let mut s = UnixStream::connect(uds)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("CONNECT {port}\n").as_bytes())?;
    // Byte by byte: whatever follows the line is the guest's.
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 64 {
        if s.read(&mut b)? == 0 {
            break;
        }
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    if !line.starts_with(b"OK ") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!(
                "vsock port {port} refused the connection ({:?})",
                String::from_utf8_lossy(&line)
            ),
        ));
    }
    s.set_read_timeout(None)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    struct TestDir(std::path::PathBuf);

    impl TestDir {
        fn new() -> Self {
            let p = std::env::temp_dir().join(format!("aibox-fc-test-{}", crate::random_id()));
            std::fs::create_dir_all(&p).unwrap();
            TestDir(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A stand-in for Firecracker's API socket (unit tests only): answers
    /// each request with the next canned response and records it.
    fn fake_api(
        dir: &Path,
        answers: Vec<(u16, &'static str)>,
    ) -> (
        std::path::PathBuf,
        std::thread::JoinHandle<Vec<(String, String)>>,
    ) {
        let sock = dir.join(API);
        let l = UnixListener::bind(&sock).unwrap();
        let t = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for (status, body) in answers {
                let (s, _) = l.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut head = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                }
                let mut b = vec![0; length];
                r.read_exact(&mut b).unwrap();
                seen.push((head, String::from_utf8(b).unwrap()));
                let mut w = s;
                write!(
                    w,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
            seen
        });
        (sock, t)
    }

    #[test]
    fn requests_and_answers() {
        let dir = TestDir::new();
        let (sock, t) = fake_api(
            dir.path(),
            vec![
                (204, ""),
                (
                    200,
                    r#"{"id":"x","state":"Paused","vmm_version":"1.10.0","app_name":"Firecracker"}"#,
                ),
                (204, ""),
                (
                    400,
                    r#"{"fault_message":"Cannot create snapshot: not paused"}"#,
                ),
                (204, ""),
            ],
        );
        set_paused(&sock, true).unwrap();
        assert!(paused(&sock).unwrap());
        snapshot(&sock).unwrap();
        let e = snapshot(&sock).unwrap_err().to_string();
        assert!(
            e.contains("(400): Cannot create snapshot: not paused"),
            "{e}"
        );
        load(&sock).unwrap();
        let seen = t.join().unwrap();
        assert!(
            seen[0].0.starts_with("PATCH /vm HTTP/1.1\r\n"),
            "{:?}",
            seen[0]
        );
        assert_eq!(seen[0].1, r#"{"state":"Paused"}"#);
        assert!(seen[1].0.starts_with("GET / HTTP/1.1\r\n"));
        assert_eq!(seen[1].1, "");
        let create: serde_json::Value = serde_json::from_str(&seen[2].1).unwrap();
        assert_eq!(create["snapshot_type"], "Full");
        assert_eq!(create["snapshot_path"], STATE);
        assert_eq!(create["mem_file_path"], MEMORY);
        let load: serde_json::Value = serde_json::from_str(&seen[4].1).unwrap();
        assert!(seen[4].0.starts_with("PUT /snapshot/load "));
        assert_eq!(load["mem_backend"]["backend_type"], "File");
        assert_eq!(load["mem_backend"]["backend_path"], MEMORY);
        assert_eq!(load["resume_vm"], true);
    }

    #[test]
    fn bad_responses_are_errors() {
        let mut r = BufReader::new(&b"garbage\r\n\r\n"[..]);
        assert!(read_response(&mut r).is_err());
        let mut r = BufReader::new(&b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"[..]);
        assert!(read_response(&mut r).is_err());
        let mut r = BufReader::new(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"[..]);
        assert!(read_response(&mut r).is_err());
        let mut r = BufReader::new(&b"HTTP/1.1 204 No Content\r\n\r\n"[..]);
        assert_eq!(read_response(&mut r).unwrap(), (204, String::new()));
    }

    #[test]
    fn the_config_uses_relative_paths_only() {
        let c = config(&Machine {
            vcpus: 2,
            memory_mib: 256,
            boot_args: "console=ttyS0 aibox.vsock",
            layers: 2,
        });
        assert_eq!(c["machine-config"]["vcpu_count"], 2);
        assert_eq!(c["machine-config"]["mem_size_mib"], 256);
        assert_eq!(c["boot-source"]["kernel_image_path"], KERNEL);
        assert_eq!(c["vsock"]["uds_path"], VSOCK);
        let drives = c["drives"].as_array().unwrap();
        assert_eq!(drives.len(), 3);
        assert_eq!(drives[0]["path_on_host"], "l0.ext4");
        assert_eq!(drives[0]["is_read_only"], true);
        assert_eq!(drives[2]["drive_id"], "upper");
        assert_eq!(drives[2]["is_read_only"], false);
        let text = c.to_string();
        assert!(!text.contains("\"/"), "an absolute path in {text}");
    }

    #[test]
    fn hybrid_vsock_handshake() {
        let dir = TestDir::new();
        let uds = dir.path().join(VSOCK);
        let l = UnixListener::bind(&uds).unwrap();
        let t = std::thread::spawn(move || {
            for answer in ["OK 1073741824\nhello", "FAILURE\n"] {
                let (mut s, _) = l.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                assert_eq!(line, "CONNECT 1024\n");
                s.write_all(answer.as_bytes()).unwrap();
            }
        });
        let mut s = vsock_connect(&uds, 1024).unwrap();
        let mut got = [0u8; 5];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        let e = vsock_connect(&uds, 1024).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        t.join().unwrap();
    }
}
