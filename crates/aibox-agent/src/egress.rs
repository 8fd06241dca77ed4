//! The egress relay: connections to 127.0.0.1:EGRESS_PROXY_PORT inside the
//! sandbox go to the host's egress proxy, which listens on a Unix socket
//! in the sandbox's host directory. The sandbox's network namespace has no
//! route out, so this relay is its only way to the proxy; the proxy knows
//! the sandbox by the socket a connection arrives on.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;

/// Start the relay threads (for each port that can be bound): the proxy
/// port, and the two ports nftables inside sends raw TCP and DNS to when
/// the server set up per-connection checks in this namespace (rootless
/// L4). Without those rules nothing reaches the latter two but what a
/// process sends there itself, which the server judges the same way.
pub fn start(dir_fd: i32) {
    start_proxy_relay(Upstream::Dir(dir_fd));
    start_tcp_relay(dir_fd);
    start_dns_relay(dir_fd);
}

/// In a microVM: the proxy port relays to where the VMM carries
/// connections to the host's egress proxy.
pub fn start_vm(to: crate::VmEgress) {
    start_proxy_relay(Upstream::Vm(to));
}

/// Where the proxy relay sends connections.
#[derive(Clone, Copy)]
enum Upstream {
    /// `egress.sock` in the host directory this descriptor holds.
    Dir(i32),
    Vm(crate::VmEgress),
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    let _ = std::thread::Builder::new()
        .name(name.into())
        .stack_size(128 * 1024)
        .spawn(f);
}

fn upstream(dir_fd: i32) -> std::io::Result<UnixStream> {
    UnixStream::connect(format!("/proc/self/fd/{dir_fd}/egress.sock"))
}

/// TCP connections nftables redirected here: ask the server about the
/// original destination, then carry the bytes or reset the connection.
fn start_tcp_relay(dir_fd: i32) {
    let Ok(listener) = TcpListener::bind(("127.0.0.1", aibox_types::L4_TCP_PORT)) else {
        return;
    };
    spawn("l4-tcp", move || {
        for conn in listener.incoming().flatten() {
            spawn("l4-conn", move || tcp_conn(conn, dir_fd));
        }
    });
}

fn tcp_conn(client: TcpStream, dir_fd: i32) {
    use std::io::BufRead;
    use std::os::fd::AsFd;
    let reset = |c: &TcpStream| {
        let _ = aibox_sys::set_linger_zero(c.as_fd());
    };
    let Ok(dst) = aibox_sys::original_dst(client.as_fd()) else {
        reset(&client);
        return;
    };
    let Ok(mut up) = upstream(dir_fd) else {
        reset(&client);
        return;
    };
    if up
        .write_all(format!("AIBOX-TCP {dst}\r\n\r\n").as_bytes())
        .is_err()
    {
        reset(&client);
        return;
    }
    // One line back: "OK" or "DENY <reason>".
    let mut line = String::new();
    let Ok(reader) = up.try_clone() else {
        reset(&client);
        return;
    };
    let mut reader = std::io::BufReader::new(reader);
    if reader.read_line(&mut line).is_err() || line.trim_end() != "OK" {
        reset(&client);
        return;
    }
    let _ = client.set_nodelay(true);
    let (Ok(c2), Ok(u2)) = (client.try_clone(), up.try_clone()) else {
        return;
    };
    // Bytes the server sent after its line are already in the reader.
    let buffered = reader.buffer().to_vec();
    let back = std::thread::Builder::new()
        .name("l4-back".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            let mut c2 = c2;
            if c2.write_all(&buffered).is_ok() {
                pump(u2, c2);
            }
        });
    pump(client, up);
    if let Ok(t) = back {
        let _ = t.join();
    }
}

/// DNS queries nftables redirected here: each goes to the server, whose
/// answer goes back from where the query was sent.
fn start_dns_relay(dir_fd: i32) {
    let Ok(sock) = std::net::UdpSocket::bind(("127.0.0.1", aibox_types::L4_DNS_PORT)) else {
        return;
    };
    spawn("l4-dns", move || {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let (msg, Ok(sock)) = (buf[..n].to_vec(), sock.try_clone()) else {
                continue;
            };
            spawn("l4-query", move || {
                if let Some(answer) = dns_query(&msg, dir_fd) {
                    let _ = sock.send_to(&answer, peer);
                }
            });
        }
    });
}

fn dns_query(msg: &[u8], dir_fd: i32) -> Option<Vec<u8>> {
    let mut up = upstream(dir_fd).ok()?;
    let _ = up.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    up.write_all(format!("AIBOX-DNS {}\r\n\r\n", msg.len()).as_bytes())
        .ok()?;
    up.write_all(msg).ok()?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).ok()?;
    (!answer.is_empty()).then_some(answer)
}

fn start_proxy_relay(up: Upstream) {
    let addr = ("127.0.0.1", aibox_types::EGRESS_PROXY_PORT);
    let Ok(listener) = TcpListener::bind(addr) else {
        return;
    };
    spawn("egress", move || {
        for conn in listener.incoming().flatten() {
            spawn("egress-conn", move || relay(conn, up));
        }
    });
}

fn relay(client: TcpStream, up: Upstream) {
    let _ = client.set_nodelay(true);
    let connected = match up {
        Upstream::Dir(fd) => upstream(fd).map(|u| join(client.try_clone(), u)),
        Upstream::Vm(crate::VmEgress::Tcp(addr)) => TcpStream::connect(addr).map(|u| {
            let _ = u.set_nodelay(true);
            join(client.try_clone(), u)
        }),
        // A vsock stream held as a `UnixStream`: a plain stream socket.
        Upstream::Vm(crate::VmEgress::Vsock { cid, port }) => aibox_sys::vsock_connect(cid, port)
            .map(|u| join(client.try_clone(), UnixStream::from(u))),
    };
    if connected.is_err() {
        // No proxy on the host (no server, or it is restarting): the
        // client sees the connection closed at once.
        let _ = client.shutdown(Shutdown::Both);
    }
}

/// A stream [`join`] can carry bytes between.
pub trait Duplex: Read + Write + ShutdownWrite + Send + Sized + 'static {
    fn duplicate(&self) -> std::io::Result<Self>;
}

impl Duplex for TcpStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
}

impl Duplex for UnixStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
}

/// Carry bytes both ways between `a` and `b` until both directions end
/// (each EOF is passed on as a half close).
pub fn join<A: Duplex, B: Duplex>(a: std::io::Result<A>, b: B) {
    join_with(a, b, false)
}

/// Like [`join`], but once `b` ends, `a` is closed both ways: over a
/// transport that carries no half-close (hybrid vsock), the far end of
/// `a` learns of the end only from a full close.
pub fn join_closing<A: Duplex, B: Duplex>(a: std::io::Result<A>, b: B) {
    join_with(a, b, true)
}

fn join_with<A: Duplex, B: Duplex>(a: std::io::Result<A>, b: B, close_a: bool) {
    let Ok(a) = a else { return };
    let (Ok(a2), Ok(a3), Ok(b2)) = (a.duplicate(), a.duplicate(), b.duplicate()) else {
        return;
    };
    let back = std::thread::Builder::new()
        .name("relay-back".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            pump(b2, a2);
            if close_a {
                a3.shutdown_all();
            }
        });
    let Ok(back) = back else {
        // No thread to carry the other direction (a process budget spent):
        // a clean close, never a stream that only goes one way.
        a.shutdown_all();
        b.shutdown_all();
        return;
    };
    pump(a, b);
    let _ = back.join();
}

/// Copy until EOF, then pass the EOF on.
fn pump<R: Read, W: Write + ShutdownWrite>(mut from: R, mut to: W) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    to.shutdown_write();
}

pub trait ShutdownWrite {
    fn shutdown_write(&self);
    /// Shut down both directions.
    fn shutdown_all(&self);
}

impl ShutdownWrite for TcpStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
    fn shutdown_all(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

impl ShutdownWrite for UnixStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
    fn shutdown_all(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}
