//! Processes started by the agent: spawning, output fan-out, exit, reaping.
//!
//! PID 1 must reap every child, including orphans it never started, so a
//! single reaper thread owns `waitpid(-1)`; processes we started register
//! their pid and receive their status from it. Output of each process goes
//! through a hub: live subscribers (exec and attach connections) and, for
//! background processes, a bounded replay buffer.

use aibox_protocol::{ExecRequest, ExitInfo, Kind, ProcInfo};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;

/// Find `name` on `PATH` like execvp does (inside the sandbox). A command
/// given as a path is used as is. Resolving here, instead of letting libc
/// search with *our* PATH, lets std use posix_spawn (vfork) rather than a
/// full fork of the spawning process.
pub fn resolve_program(name: &str, env: &[(String, String)]) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') {
        return name.into();
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or("/usr/bin:/bin", |(_, v)| v.as_str());
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = std::path::Path::new(dir).join(name);
        if let Ok(md) = std::fs::metadata(&candidate) {
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                return candidate;
            }
        }
    }
    name.into()
}
use std::process::{ChildStdin, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Bytes of output kept per background process for attach replay.
const REPLAY_BYTES: usize = 1 << 20;
/// Finished processes kept in the table for `proc_wait`/`proc_list`.
const KEEP_FINISHED: usize = 256;

pub enum Event {
    Out(Kind, Vec<u8>),
    Exit(ExitInfo),
}

#[derive(Default)]
struct Hub {
    replay: VecDeque<(Kind, Vec<u8>)>,
    replay_bytes: usize,
    subscribers: Vec<Sender<Event>>,
    exit: Option<ExitInfo>,
}

pub enum Input {
    Pipe(ChildStdin),
    Pty(File),
}

pub struct Proc {
    pub id: u64,
    pub pid: i32,
    pub argv: Vec<String>,
    pub background: bool,
    pub stdin: Mutex<Option<Input>>,
    pub pty: Option<File>,
    hub: Mutex<Hub>,
    cv: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock must not take the whole agent down.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Proc {
    /// Subscribe to output (after replaying the buffer when `replay`).
    pub fn subscribe(&self, replay: bool) -> Receiver<Event> {
        let (tx, rx) = channel();
        let mut hub = lock(&self.hub);
        if replay {
            for (k, b) in &hub.replay {
                let _ = tx.send(Event::Out(*k, b.clone()));
            }
        }
        match &hub.exit {
            Some(e) => {
                let _ = tx.send(Event::Exit(e.clone()));
            }
            None => hub.subscribers.push(tx),
        }
        rx
    }

    fn publish(&self, kind: Kind, data: Vec<u8>) {
        let mut hub = lock(&self.hub);
        if self.background {
            hub.replay_bytes += data.len();
            hub.replay.push_back((kind, data.clone()));
            while hub.replay_bytes > REPLAY_BYTES {
                match hub.replay.pop_front() {
                    Some((_, b)) => hub.replay_bytes -= b.len(),
                    None => break,
                }
            }
        }
        hub.subscribers
            .retain(|s| s.send(Event::Out(kind, data.clone())).is_ok());
    }

    fn finish(&self, info: ExitInfo) {
        let mut hub = lock(&self.hub);
        for s in hub.subscribers.drain(..) {
            let _ = s.send(Event::Exit(info.clone()));
        }
        hub.exit = Some(info);
        self.cv.notify_all();
    }

    pub fn exit(&self) -> Option<ExitInfo> {
        lock(&self.hub).exit.clone()
    }

    /// Wait for the exit, up to `timeout` (forever when None).
    pub fn wait(&self, timeout: Option<Duration>) -> Option<ExitInfo> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut hub = lock(&self.hub);
        loop {
            if let Some(e) = &hub.exit {
                return Some(e.clone());
            }
            match deadline {
                None => hub = self.cv.wait(hub).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    hub = self
                        .cv
                        .wait_timeout(hub, left)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
            }
        }
    }

    /// Signal the whole process group (every command leads its own session).
    pub fn signal(&self, sig: i32) -> std::io::Result<()> {
        if self.exit().is_some() {
            return Ok(());
        }
        aibox_sys::kill(-self.pid, sig).or_else(|_| aibox_sys::kill(self.pid, sig))
    }

    pub fn info(&self) -> ProcInfo {
        let exit = self.exit();
        ProcInfo {
            id: self.id,
            pid: self.pid,
            argv: self.argv.clone(),
            background: self.background,
            running: exit.is_none(),
            exit,
        }
    }
}

/// Statuses from the reaper, delivered to whoever registered the pid.
#[derive(Default)]
pub struct Reaper {
    inner: Mutex<ReaperState>,
    cv: Condvar,
}

#[derive(Default)]
struct ReaperState {
    waiting: HashMap<i32, Sender<aibox_sys::WaitStatus>>,
    unclaimed: HashMap<i32, aibox_sys::WaitStatus>,
    children: usize,
}

impl Reaper {
    /// Call right after spawning `pid` (before anything can wait for it).
    fn register(&self, pid: i32) -> Receiver<aibox_sys::WaitStatus> {
        let (tx, rx) = channel();
        let mut st = lock(&self.inner);
        match st.unclaimed.remove(&pid) {
            Some(status) => {
                let _ = tx.send(status);
            }
            None => {
                st.waiting.insert(pid, tx);
            }
        }
        st.children += 1;
        self.cv.notify_all();
        rx
    }
}

pub fn start_reaper(reaper: Arc<Reaper>) {
    let _ = std::thread::Builder::new()
        .name("reaper".into())
        .stack_size(64 * 1024)
        .spawn(move || loop {
            match aibox_sys::wait_any(true) {
                Ok(Some((pid, status))) => {
                    let mut st = lock(&reaper.inner);
                    match st.waiting.remove(&pid) {
                        Some(tx) => {
                            let _ = tx.send(status);
                        }
                        // An orphan we never started, or a child that exited
                        // before its spawner registered it.
                        None => {
                            if st.unclaimed.len() < 4096 {
                                st.unclaimed.insert(pid, status);
                            }
                        }
                    }
                }
                Ok(None) => {}
                Err(_) => {
                    // ECHILD: nothing to reap; sleep until something is spawned.
                    let st = lock(&reaper.inner);
                    let _ = reaper.cv.wait_timeout(st, Duration::from_millis(500));
                }
            }
        });
}

pub struct Table {
    next: AtomicU64,
    procs: Mutex<Vec<Arc<Proc>>>,
    reaper: Arc<Reaper>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{0}")]
    Invalid(String),
    #[error("{msg}")]
    Start { msg: String, status: i32 },
}

impl Table {
    pub fn new() -> Table {
        Table {
            next: AtomicU64::new(1),
            procs: Mutex::new(Vec::new()),
            reaper: Arc::new(Reaper::default()),
        }
    }

    pub fn reaper(&self) -> Arc<Reaper> {
        self.reaper.clone()
    }

    pub fn get(&self, id: u64) -> Option<Arc<Proc>> {
        lock(&self.procs).iter().find(|p| p.id == id).cloned()
    }

    pub fn list(&self) -> Vec<ProcInfo> {
        lock(&self.procs).iter().map(|p| p.info()).collect()
    }

    pub fn len(&self) -> usize {
        lock(&self.procs).len()
    }

    /// Start a process per `req`, running as `uid` (None: our own uid).
    pub fn spawn(
        &self,
        req: &ExecRequest,
        env: &[(String, String)],
        cwd: &str,
        uid: Option<u32>,
    ) -> Result<(Arc<Proc>, Option<Watcher>), SpawnError> {
        let argv: Vec<String> = match (&req.shell, req.argv.is_empty()) {
            (Some(s), true) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            (None, false) => req.argv.clone(),
            (Some(_), false) => {
                return Err(SpawnError::Invalid(
                    "give either argv or shell, not both".into(),
                ))
            }
            (None, true) => {
                return Err(SpawnError::Invalid(
                    "missing command: argv is empty and no shell string".into(),
                ))
            }
        };
        if argv.iter().any(|a| a.contains('\0')) {
            return Err(SpawnError::Invalid(
                "arguments may not contain NUL bytes".into(),
            ));
        }
        for (k, v) in &req.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(SpawnError::Invalid(format!(
                    "invalid environment variable {k:?}"
                )));
            }
        }
        let full_env: Vec<(String, String)> = env.iter().chain(req.env.iter()).cloned().collect();
        let mut cmd = std::process::Command::new(resolve_program(&argv[0], &full_env));
        cmd.arg0(&argv[0])
            .args(&argv[1..])
            .env_clear()
            .current_dir(cwd);
        for (k, v) in &full_env {
            cmd.env(k, v);
        }
        let switch_uid = uid.filter(|u| *u != aibox_sys::geteuid());
        let mut pty_master = None;
        if let Some(size) = req.pty {
            let (m, s) = aibox_sys::openpty().map_err(|e| SpawnError::Start {
                msg: format!("cannot allocate a pty: {e}"),
                status: 126,
            })?;
            let _ = aibox_sys::set_winsize(m.as_fd(), size.rows, size.cols);
            let clone = |s: &std::os::fd::OwnedFd| {
                s.try_clone().map_err(|e| SpawnError::Start {
                    msg: format!("pty: {e}"),
                    status: 126,
                })
            };
            cmd.stdin(Stdio::from(clone(&s)?))
                .stdout(Stdio::from(clone(&s)?))
                .stderr(Stdio::from(s));
            if !req.env.iter().any(|(k, _)| k == "TERM") {
                cmd.env("TERM", "xterm-256color");
            }
            aibox_sys::spawn_with_controlling_tty(&mut cmd);
            if let Some(u) = switch_uid {
                cmd.uid(u).gid(u);
            }
            pty_master = Some(File::from(m));
        } else {
            cmd.stdin(if req.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            // Its own process group (the agent has no controlling terminal,
            // so neither does the command), so signals reach all of it.
            cmd.process_group(0);
        }
        let started = Instant::now();
        // Without a pty, spawn with this thread temporarily holding the
        // command's identity: std can then use posix_spawn (vfork) instead of
        // forking the agent, which is what `Command::uid` would force.
        let identity = match (switch_uid, req.pty) {
            (Some(u), None) => {
                Some(
                    aibox_sys::thread_identity(u, u).map_err(|e| SpawnError::Start {
                        msg: format!("cannot switch to uid {u}: {e}"),
                        status: 126,
                    })?,
                )
            }
            _ => None,
        };
        let spawned = cmd.spawn();
        drop(identity);
        let mut child = spawned.map_err(|e| {
            let (status, msg) = match e.kind() {
                std::io::ErrorKind::NotFound => (127, format!("{}: command not found", argv[0])),
                std::io::ErrorKind::PermissionDenied => {
                    (126, format!("{}: permission denied", argv[0]))
                }
                _ => (126, format!("{}: {e}", argv[0])),
            };
            SpawnError::Start { msg, status }
        })?;
        drop(cmd);
        let pid = child.id() as i32;
        let status_rx = self.reaper.register(pid);
        let input = match (&pty_master, child.stdin.take()) {
            (Some(m), _) => m.try_clone().ok().map(Input::Pty),
            (None, Some(s)) => Some(Input::Pipe(s)),
            (None, None) => None,
        };
        let mut streams: Vec<(Kind, File)> = Vec::new();
        if let Some(m) = &pty_master {
            if let Ok(r) = m.try_clone() {
                streams.push((Kind::Stdout, r));
            }
        } else {
            if let Some(o) = child.stdout.take() {
                streams.push((Kind::Stdout, File::from(std::os::fd::OwnedFd::from(o))));
            }
            if let Some(e) = child.stderr.take() {
                streams.push((Kind::Stderr, File::from(std::os::fd::OwnedFd::from(e))));
            }
        }
        let proc_ = Arc::new(Proc {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            pid,
            argv,
            background: req.background,
            stdin: Mutex::new(input),
            pty: pty_master,
            hub: Mutex::new(Hub::default()),
            cv: Condvar::new(),
        });
        let watcher = Watcher {
            streams,
            pidfd: aibox_sys::pidfd_open(pid).ok(),
            status_rx,
            started,
            timeout: req.timeout_ms.map(Duration::from_millis),
        };
        // A foreground exec is watched by the connection's own thread (see
        // `Watcher::run`); a background one gets a thread of its own.
        let foreground = if req.background {
            let p = proc_.clone();
            let _ = std::thread::Builder::new()
                .name("proc".into())
                .stack_size(128 * 1024)
                .spawn(move || watcher.run(&p, None));
            None
        } else {
            Some(watcher)
        };
        let mut procs = lock(&self.procs);
        // Forget the oldest finished processes beyond the limit.
        let finished = procs.iter().filter(|p| p.exit().is_some()).count();
        if finished > KEEP_FINISHED {
            let mut drop_n = finished - KEEP_FINISHED;
            procs.retain(|p| {
                if drop_n > 0 && p.exit().is_some() {
                    drop_n -= 1;
                    false
                } else {
                    true
                }
            });
        }
        procs.push(proc_.clone());
        Ok((proc_, foreground))
    }
}

/// How long output is still read after the process exited, for a
/// grandchild that keeps the pipes open.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// The caller of a foreground exec: output goes straight to its socket,
/// and its frames (stdin, resize, signal) straight to the process, all from
/// the one thread that also watches the process.
pub struct Foreground<'a> {
    pub sock: &'a mut std::os::unix::net::UnixStream,
    pub max_output: u64,
    pub forward_input: bool,
    sent: [u64; 2],
    truncated: [bool; 2],
}

impl<'a> Foreground<'a> {
    pub fn new(
        sock: &'a mut std::os::unix::net::UnixStream,
        max_output: u64,
        forward_input: bool,
    ) -> Self {
        Foreground {
            sock,
            max_output,
            forward_input,
            sent: [0; 2],
            truncated: [false; 2],
        }
    }

    /// Forward output within the cap; false when the client is gone.
    pub fn output(&mut self, kind: Kind, data: &[u8]) -> bool {
        let i = usize::from(kind == Kind::Stderr);
        let room = self.max_output.saturating_sub(self.sent[i]) as usize;
        let chunk = &data[..data.len().min(room)];
        if chunk.len() < data.len() {
            self.truncated[i] = true;
        }
        if chunk.is_empty() {
            return true;
        }
        self.sent[i] += chunk.len() as u64;
        aibox_protocol::write_frame(self.sock, kind, chunk).is_ok()
    }

    /// Handle one frame from the client; false when the client is gone.
    fn input(&mut self, p: &Proc) -> bool {
        client_frame(self.sock, p, self.forward_input)
    }

    /// The exit message with this client's truncation flags.
    pub fn exit(self, mut info: ExitInfo) {
        info.stdout_truncated = self.truncated[0];
        info.stderr_truncated = self.truncated[1];
        let _ = aibox_protocol::AgentMsg::Exit(info).send(self.sock);
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }
}

/// Read and apply one frame from a client following a process: stdin data
/// (when allowed), a resize or a signal. False when the client is gone.
pub fn client_frame(
    sock: &mut std::os::unix::net::UnixStream,
    p: &Proc,
    forward_input: bool,
) -> bool {
    match aibox_protocol::read_frame(sock) {
        Ok(f) if f.kind == Kind::Stdin && forward_input => {
            let _ = write_stdin(p, &f.payload);
            true
        }
        Ok(f) if f.kind == Kind::Control => {
            match serde_json::from_slice::<aibox_protocol::ClientMsg>(&f.payload) {
                Ok(aibox_protocol::ClientMsg::Resize(sz)) => {
                    if let Some(m) = &p.pty {
                        let _ = aibox_sys::set_winsize(m.as_fd(), sz.rows, sz.cols);
                    }
                }
                Ok(aibox_protocol::ClientMsg::Signal { signal }) if (1..=64).contains(&signal) => {
                    let _ = p.signal(signal);
                }
                _ => {}
            }
            true
        }
        Ok(_) => true,
        Err(_) => false,
    }
}

/// Everything needed to follow one process until it exits.
pub struct Watcher {
    streams: Vec<(Kind, File)>,
    pidfd: Option<std::os::fd::OwnedFd>,
    status_rx: Receiver<aibox_sys::WaitStatus>,
    started: Instant,
    timeout: Option<Duration>,
}

impl Watcher {
    /// Read the output streams, notice the exit through the pidfd, enforce
    /// the timeout, publish everything to the process's hub (for `proc_*`
    /// operations and attachers) and, for a foreground exec, serve the
    /// client directly. A client that goes away gets its process group killed.
    pub fn run(self, p: &Proc, mut fg: Option<Foreground<'_>>) {
        let Watcher {
            mut streams,
            pidfd,
            status_rx,
            started,
            timeout,
        } = self;
        let deadline = timeout.map(|t| started + t);
        let mut exited_at: Option<Instant> = None;
        let mut timed_out = false;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let now = Instant::now();
            let drain_end = exited_at.map(|t| t + DRAIN_AFTER_EXIT);
            if streams.is_empty() && (exited_at.is_some() || pidfd.is_none()) {
                break;
            }
            if drain_end.is_some_and(|d| now >= d) {
                break;
            }
            if !timed_out && exited_at.is_none() && deadline.is_some_and(|d| now >= d) {
                timed_out = true;
                let _ = aibox_sys::kill(-p.pid, libc::SIGKILL);
                let _ = aibox_sys::kill(p.pid, libc::SIGKILL);
            }
            let wake = [drain_end, if timed_out { None } else { deadline }]
                .into_iter()
                .flatten()
                .min();
            let wait = wake.map(|w| w.saturating_duration_since(now));
            let watch_exit = exited_at.is_none() && pidfd.is_some();
            let ready = {
                let mut fds: Vec<std::os::fd::BorrowedFd<'_>> =
                    streams.iter().map(|(_, f)| f.as_fd()).collect();
                if let (Some(pfd), true) = (&pidfd, watch_exit) {
                    fds.push(pfd.as_fd());
                }
                if let Some(f) = &fg {
                    fds.push(f.sock.as_fd());
                }
                let Ok(ready) = aibox_sys::poll_readable(&fds, wait) else {
                    break;
                };
                ready
            };
            let n = streams.len();
            if watch_exit && ready[n] {
                exited_at = Some(Instant::now());
            }
            if fg.is_some() && ready.last() == Some(&true) {
                let alive = fg.as_mut().is_some_and(|f| f.input(p));
                if !alive {
                    fg = None;
                    let _ = p.signal(libc::SIGKILL);
                }
            }
            let mut i = 0;
            let mut client_gone = false;
            streams.retain_mut(|(kind, f)| {
                let r = ready[i];
                i += 1;
                if !r {
                    return true;
                }
                match f.read(&mut buf) {
                    // EOF, or EIO once a pty's slave side is gone.
                    Ok(0) | Err(_) => false,
                    Ok(n) => {
                        if let Some(c) = fg.as_mut() {
                            client_gone |= !c.output(*kind, &buf[..n]);
                        }
                        p.publish(*kind, buf[..n].to_vec());
                        true
                    }
                }
            });
            if client_gone {
                fg = None;
                let _ = p.signal(libc::SIGKILL);
            }
        }
        // The process is dead (or its streams closed without a pidfd): the reaper
        // has or will shortly have its status. A timeout that is still pending
        // applies here too (a process that closed its output but keeps running).
        let status = match deadline.filter(|_| !timed_out) {
            None => status_rx.recv().ok(),
            Some(d) => match status_rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                Ok(s) => Some(s),
                Err(_) => {
                    timed_out = true;
                    let _ = aibox_sys::kill(-p.pid, libc::SIGKILL);
                    let _ = aibox_sys::kill(p.pid, libc::SIGKILL);
                    status_rx.recv().ok()
                }
            },
        };
        // Close stdin so nothing blocks writing to a dead process.
        lock(&p.stdin).take();
        let (code, signal) = match status {
            Some(aibox_sys::WaitStatus::Exited(c)) => (Some(c), None),
            Some(aibox_sys::WaitStatus::Signaled(s)) => (None, Some(s)),
            None => (None, None),
        };
        p.finish(ExitInfo {
            code,
            signal,
            timed_out,
            duration_ms: started.elapsed().as_millis() as u64,
            ..Default::default()
        });
        if let Some(c) = fg {
            c.exit(p.exit().unwrap_or_default());
        }
    }
}

/// Write to a process's stdin (or its pty). Empty data closes the pipe.
pub fn write_stdin(p: &Proc, data: &[u8]) -> std::io::Result<()> {
    let mut guard = lock(&p.stdin);
    match (guard.as_mut(), data.is_empty()) {
        // Closing what is closed already (the process may have exited
        // right after reading its last input) is done, not an error.
        (None, true) => Ok(()),
        (None, false) => Err(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "stdin is closed",
        )),
        (Some(Input::Pipe(_)), true) => {
            guard.take();
            Ok(())
        }
        (Some(Input::Pty(m)), true) => m.write_all(&[4]), // ^D
        (Some(Input::Pipe(s)), false) => s.write_all(data),
        (Some(Input::Pty(m)), false) => m.write_all(data),
    }
}
