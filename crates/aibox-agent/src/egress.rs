//! The egress relay: connections to 127.0.0.1:EGRESS_PROXY_PORT inside the
//! sandbox go to the host's egress proxy, which listens on a Unix socket
//! in the sandbox's host directory. The sandbox's network namespace has no
//! route out, so this relay is its only way to the proxy; the proxy knows
//! the sandbox by the socket a connection arrives on.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;

/// Start the relay thread (if the port can be bound).
pub fn start(dir_fd: i32) {
    let addr = ("127.0.0.1", aibox_types::EGRESS_PROXY_PORT);
    let Ok(listener) = TcpListener::bind(addr) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("egress".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = std::thread::Builder::new()
                    .name("egress-conn".into())
                    .stack_size(128 * 1024)
                    .spawn(move || relay(conn, dir_fd));
            }
        });
}

fn relay(client: TcpStream, dir_fd: i32) {
    let path = format!("/proc/self/fd/{dir_fd}/egress.sock");
    let Ok(upstream) = UnixStream::connect(&path) else {
        // No proxy on the host (no server, or it is restarting): the
        // client sees the connection closed at once.
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let back = std::thread::Builder::new()
        .name("egress-back".into())
        .stack_size(128 * 1024)
        .spawn(move || pump(u2, c2));
    pump(client, upstream);
    if let Ok(t) = back {
        let _ = t.join();
    }
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

trait ShutdownWrite {
    fn shutdown_write(&self);
}

impl ShutdownWrite for TcpStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl ShutdownWrite for UnixStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}
