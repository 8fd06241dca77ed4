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
mod files;
mod procs;
mod stream;

pub use procs::resolve_program;

use aibox_types::User;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::sync::Arc;
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
    // Idle memory: keep only the code the serving loop touches.
    let _ = aibox_sys::release_code_pages();
    let mut failures = 0;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                failures = 0;
                let a = agent.clone();
                let spawned = std::thread::Builder::new()
                    .name("conn".into())
                    .stack_size(256 * 1024)
                    .spawn(move || conn::handle(&a, stream));
                if spawned.is_err() {
                    // Out of threads (pids limit): drop this connection, keep serving.
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
            Err(_) => {
                failures += 1;
                if failures > 1000 {
                    return 1;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}
