//! The in-sandbox agent: PID 1 of every persistent sandbox.
//!
//! It serves the host ⇄ agent protocol (see `aibox-protocol` and
//! docs/protocol.md) on a Unix socket that the host created and handed down
//! as a file descriptor; nothing inside the sandbox can reach that socket.
//! One thread per connection, one operation per connection. It also reaps
//! every orphaned process in the sandbox.
//!
//! Invariants: every path is resolved *inside* the sandbox (the agent runs
//! after pivot_root, under the same seccomp filter and Landlock domain as
//! the commands), file operations use the requesting user's fs uid, and
//! malformed input is answered with an error frame — never a panic.
#![forbid(unsafe_code)]

mod conn;
pub mod egress;
mod files;
pub mod guest;
mod op;
mod procs;
mod stream;

pub use egress::join as join_streams;
pub use procs::resolve_program;

use aibox_types::User;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How the agent runs commands.
#[derive(Debug, Clone)]
pub struct Config {
    /// Identity for requests that name none. `None` in rootless sandboxes,
    /// where only one uid exists.
    pub default_user: Option<User>,
    /// Rootless: the only uid that exists; requests for another user fail.
    pub fixed_uid: Option<u32>,
    pub env: Vec<(String, String)>,
    pub workdir: String,
    /// Egress: a descriptor (kept open by PID 1) of the host directory
    /// where the host's egress proxy listens on `egress.sock`. The agent
    /// relays connections to 127.0.0.1:EGRESS_PROXY_PORT there.
    pub egress_dir_fd: Option<i32>,
    /// Egress in a microVM: where the VMM carries connections to the
    /// host's egress proxy.
    pub egress_vm: Option<VmEgress>,
}

/// How a microVM's egress relay reaches the host's proxy.
#[derive(Debug, Clone, Copy)]
pub enum VmEgress {
    /// An address the VMM forwards (QEMU's `guestfwd`).
    Tcp(std::net::SocketAddrV4),
    /// A vsock port of the host, which the VMM hands to the Unix socket
    /// `<uds>_<port>` (hybrid vsock).
    Vsock { cid: u32, port: u32 },
}

pub(crate) struct Agent {
    pub cfg: Config,
    pub procs: procs::Table,
    pub started: Instant,
}

/// Serve forever on `listener`. Returns only if accepting fails for good.
pub fn serve(listener: OwnedFd, cfg: Config) -> i32 {
    aibox_sys::ignore_sigpipe();
    let listener = UnixListener::from(listener);
    let agent = Arc::new(Agent {
        cfg,
        procs: procs::Table::new(),
        started: Instant::now(),
    });
    procs::start_reaper(agent.procs.reaper());
    if let Some(fd) = agent.cfg.egress_dir_fd {
        egress::start(fd);
    }
    if let Some(to) = agent.cfg.egress_vm {
        egress::start_vm(to);
    }
    // Idle memory: keep only the code the serving loop touches.
    let _ = aibox_sys::release_code_pages();
    let pool = Arc::new(Pool {
        listener,
        idle: Mutex::new(0),
    });
    // The main thread is an acceptor too, and never retires.
    acceptor(&pool, &agent, false);
    1
}

/// Threads blocked in accept() serve the connection they accept themselves:
/// no hand-off to another thread (each costs a wake-up on a VM). Before
/// serving, an acceptor makes sure another one is waiting; idle extras retire.
struct Pool {
    listener: UnixListener,
    idle: Mutex<usize>,
}

/// Idle acceptors kept beyond which an acceptor thread exits.
const MAX_IDLE_ACCEPTORS: usize = 2;

fn spawn_acceptor(pool: &Arc<Pool>, agent: &Arc<Agent>) -> bool {
    let (p, a) = (pool.clone(), agent.clone());
    std::thread::Builder::new()
        .name("conn".into())
        .stack_size(256 * 1024)
        .spawn(move || acceptor(&p, &a, true))
        .is_ok()
}

fn acceptor(pool: &Arc<Pool>, agent: &Arc<Agent>, may_retire: bool) {
    let idle = |delta: isize| -> usize {
        let mut n = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_add_signed(delta);
        *n
    };
    let mut failures = 0u32;
    idle(1);
    loop {
        match pool.listener.accept() {
            Ok((stream, _)) => {
                failures = 0;
                if idle(-1) == 0 && !spawn_acceptor(pool, agent) {
                    // Out of threads (pids limit): this one keeps serving.
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                conn::handle(agent, stream);
                if idle(1) > MAX_IDLE_ACCEPTORS && may_retire {
                    idle(-1);
                    return;
                }
            }
            Err(_) => {
                failures += 1;
                if failures > 1000 {
                    idle(-1);
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}
