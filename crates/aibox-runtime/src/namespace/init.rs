//! PID 1 of a one-shot sandbox (`aibox run`): start the command with the
//! caller's stdio, forward signals to it, reap every orphan, relay a PTY when
//! asked for one, and exit with the command's status. When PID 1 exits the
//! kernel kills everything else in the sandbox's pid namespace.

use aibox_types::{SandboxSpec, User};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

pub struct OneShot {
    pub argv: Vec<String>,
    /// Allocate a PTY inside the sandbox and relay the caller's terminal.
    pub tty: bool,
    /// Pass the caller's stdin (otherwise /dev/null).
    pub stdin: bool,
}

/// A user's name and home, from the sandbox's /etc/passwd for a uid
/// other than `user` and `root` (read from inside the sandbox).
pub fn identity(user: User) -> (String, String) {
    let passwd = matches!(user, User::Id(_))
        .then(|| std::fs::read_to_string("/etc/passwd").ok())
        .flatten();
    user.identity(passwd.as_deref())
}

/// The environment every command starts with (the host's is never inherited).
pub fn base_env(spec: &SandboxSpec, user: User) -> Vec<(String, String)> {
    let (name, home) = identity(user);
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("HOME".into(), home),
        ("USER".into(), name.clone()),
        ("LOGNAME".into(), name),
        ("SHELL".into(), "/bin/sh".into()),
        ("LANG".into(), "C.UTF-8".into()),
    ];
    if spec.network != aibox_types::NetworkMode::None {
        // Every process finds the egress proxy the agent relays to.
        let proxy = format!("http://127.0.0.1:{}", aibox_types::EGRESS_PROXY_PORT);
        for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            env.push((k.into(), proxy.clone()));
        }
        for k in ["NO_PROXY", "no_proxy"] {
            env.push((k.into(), "localhost,127.0.0.1,::1".into()));
        }
    }
    for (k, v) in &spec.env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// Exit status for a command that could not be started (shell convention).
pub fn spawn_error_status(argv0: &str, e: &std::io::Error) -> (i32, String) {
    match e.kind() {
        std::io::ErrorKind::NotFound => (127, format!("aibox: {argv0}: command not found")),
        std::io::ErrorKind::PermissionDenied => (126, format!("aibox: {argv0}: permission denied")),
        _ => (126, format!("aibox: {argv0}: {e}")),
    }
}

const FORWARDED: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Runs as PID 1; returns the exit code for PID 1.
pub fn run(one: OneShot, spec: &SandboxSpec, parent_link: OwnedFd) -> i32 {
    let mut signals = vec![libc::SIGCHLD, libc::SIGWINCH];
    signals.extend(FORWARDED);
    // A self-pipe, not signalfd: a blocked mask would be inherited by the
    // command (posix_spawn keeps it), leaving it deaf to signals.
    let Ok(sigfd) = aibox_sys::signal_pipe(&signals) else {
        return 125;
    };
    // PID 1 leads its own session with no controlling terminal: terminal
    // signals reach only the aibox CLI (which forwards them once), and no
    // process in here can use job control on the caller's terminal.
    let _ = aibox_sys::new_session();
    // PID 1 needs no privilege to wait and forward signals, so it takes the
    // command's identity itself; the spawn can then be a vfork
    // (aibox_sys::spawn_clean) instead of a full fork of this process.
    if aibox_sys::geteuid() == 0 && spec.user.uid() != 0 {
        let uid = spec.user.uid();
        let dropped = aibox_sys::setresgid(uid)
            .and_then(|_| aibox_sys::clear_groups())
            .and_then(|_| aibox_sys::setresuid(uid));
        if dropped.is_err() {
            eprintln!("aibox: cannot switch to uid {uid}");
            return 125;
        }
    }
    let env = base_env(spec, spec.user);
    let program = aibox_agent::resolve_program(&one.argv[0], &env);
    let host_in = std::io::stdin();
    let host_fd = |fd: BorrowedFd<'_>| -> Option<std::fs::File> {
        fd.try_clone_to_owned().ok().map(std::fs::File::from)
    };
    // What PID 1 copies between the caller's stdio and the command.
    let mut relays: Vec<Relay> = Vec::new();
    let mut master: Option<std::fs::File> = None;
    let spawned = if one.tty {
        let Ok((m, slave)) = aibox_sys::openpty() else {
            eprintln!("aibox: cannot allocate a pseudo-terminal");
            return 125;
        };
        if let Ok((rows, cols)) = aibox_sys::get_winsize(host_in.as_fd()) {
            let _ = aibox_sys::set_winsize(m.as_fd(), rows, cols);
        }
        let (Ok(s1), Ok(s2)) = (slave.try_clone(), slave.try_clone()) else {
            return 125;
        };
        let m = std::fs::File::from(m);
        let (Ok(m_in), Some(from_host)) = (m.try_clone(), host_fd(host_in.as_fd())) else {
            return 125;
        };
        relays.push(Relay::input(from_host, m_in));
        relays.push(Relay::output(m.try_clone().ok(), Sink::Out));
        master = Some(m);
        // A controlling terminal needs code between fork and exec.
        let mut cmd = Command::new(&program);
        cmd.arg0(&one.argv[0])
            .args(&one.argv[1..])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(&spec.workdir)
            .stdin(Stdio::from(slave))
            .stdout(Stdio::from(s1))
            .stderr(Stdio::from(s2));
        aibox_sys::spawn_with_controlling_tty(&mut cmd);
        cmd.spawn().map(|c| c.id() as i32)
        // `cmd` drops here, closing our copies of the slave side.
    } else {
        // The caller's terminal is never handed to the command: where our
        // stdin, stdout or stderr is one, the command gets a pipe that PID 1
        // copies (review L3: with the terminal itself it could change its
        // modes, or its line discipline, under the caller's shell).
        let mut stdio: [Option<OwnedFd>; 3] = [None, None, None];
        let terminal = |fd: i32| match fd {
            0 => aibox_sys::is_terminal(std::io::stdin().as_fd()),
            1 => aibox_sys::is_terminal(std::io::stdout().as_fd()),
            _ => aibox_sys::is_terminal(std::io::stderr().as_fd()),
        };
        if one.stdin && terminal(0) {
            let (Ok((r, w)), Some(from_host)) = (aibox_sys::pipe(), host_fd(host_in.as_fd()))
            else {
                return 125;
            };
            // A thread of its own: a write into a full pipe must not stop
            // PID 1 from draining the command's output.
            let mut to = std::fs::File::from(w);
            let mut from_host = from_host;
            let copier = std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let _ = std::io::copy(&mut from_host, &mut to);
                });
            if copier.is_err() {
                return 125;
            }
            stdio[0] = Some(r);
        }
        for (fd, sink) in [(1, Sink::Out), (2, Sink::Err)] {
            if terminal(fd) {
                let Ok((r, w)) = aibox_sys::pipe() else {
                    return 125;
                };
                relays.push(Relay::output(Some(std::fs::File::from(r)), sink));
                stdio[fd as usize] = Some(w);
            }
        }
        use std::os::fd::AsRawFd;
        let spawned = aibox_sys::spawn_clean(&aibox_sys::CleanSpawn {
            path: &program,
            argv: &one.argv,
            env: &env,
            cwd: std::path::Path::new(&spec.workdir),
            stdin_null: !one.stdin,
            // Its own process group, so signals reach all of it at once.
            new_process_group: true,
            stdio: [0, 1, 2].map(|i| stdio[i].as_ref().map(|f| f.as_raw_fd())),
        });
        // Our copies of the command's ends go: its exit ends the relays.
        drop(stdio);
        spawned
    };
    let wpid = match spawned {
        Ok(pid) => pid,
        Err(e) => {
            let (code, msg) = spawn_error_status(&one.argv[0], &e);
            eprintln!("{msg}");
            return code;
        }
    };
    let mut status: Option<i32> = None;
    // The network helper (setup::NetHelper) may have exited before the
    // signal pipe existed, so its SIGCHLD is not in there.
    reap(wpid, &mut status);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let outputs_open = relays.iter().any(|r| r.output && r.open);
        if status.is_some() && !outputs_open {
            break;
        }
        let mut fds: Vec<BorrowedFd<'_>> = vec![sigfd.as_fd(), parent_link.as_fd()];
        let polled: Vec<usize> = (0..relays.len())
            .filter(|&i| relays[i].open && !(relays[i].is_input() && status.is_some()))
            .collect();
        for &i in &polled {
            if let Some(f) = &relays[i].from {
                fds.push(f.as_fd());
            }
        }
        let timeout = status
            .is_some()
            .then(|| std::time::Duration::from_millis(200));
        let Ok(ready) = aibox_sys::poll_readable(&fds, timeout) else {
            return 125;
        };
        if status.is_some() && !ready.iter().any(|r| *r) {
            break; // output drained (or a grandchild holds it open)
        }
        if ready[1] {
            // Parent (the aibox CLI) is gone: take everything down.
            return 137;
        }
        if ready[0] {
            for sig in aibox_sys::read_signals(sigfd.as_fd()) {
                match sig {
                    libc::SIGCHLD => reap(wpid, &mut status),
                    libc::SIGWINCH => {
                        if let (Some(m), Ok((r, c))) =
                            (&master, aibox_sys::get_winsize(host_in.as_fd()))
                        {
                            let _ = aibox_sys::set_winsize(m.as_fd(), r, c);
                        }
                    }
                    s if status.is_none() => {
                        let _ = aibox_sys::kill(-wpid, s);
                    }
                    _ => {}
                }
            }
        }
        for (k, &i) in polled.iter().enumerate() {
            if ready[2 + k] {
                relays[i].pump(&mut buf);
            }
        }
    }
    status.unwrap_or(125)
}

/// Where a relay writes.
enum Sink {
    Out,
    Err,
    /// The command's side (a pipe, or the PTY's master).
    To(std::fs::File),
}

/// One direction PID 1 copies.
struct Relay {
    from: Option<std::fs::File>,
    to: Sink,
    open: bool,
    /// The command's output (drained before PID 1 exits).
    output: bool,
}

impl Relay {
    fn input(from: std::fs::File, to: std::fs::File) -> Relay {
        Relay {
            from: Some(from),
            to: Sink::To(to),
            open: true,
            output: false,
        }
    }

    fn output(from: Option<std::fs::File>, to: Sink) -> Relay {
        Relay {
            open: from.is_some(),
            from,
            to,
            output: true,
        }
    }

    fn is_input(&self) -> bool {
        !self.output
    }

    /// Copy what is there; at the end (EOF, or EIO once a PTY's last
    /// slave is closed) stop.
    fn pump(&mut self, buf: &mut [u8]) {
        let Some(from) = self.from.as_mut() else {
            self.open = false;
            return;
        };
        match from.read(buf) {
            Ok(0) | Err(_) => self.open = false,
            Ok(n) => {
                let _ = match &mut self.to {
                    Sink::Out => {
                        let mut out = std::io::stdout().lock();
                        out.write_all(&buf[..n]).and_then(|_| out.flush())
                    }
                    Sink::Err => std::io::stderr().lock().write_all(&buf[..n]),
                    Sink::To(f) => f.write_all(&buf[..n]),
                };
            }
        }
    }
}

/// Reap every exited child; the command's status goes to `status`.
fn reap(command: i32, status: &mut Option<i32>) {
    while let Ok(Some((pid, st))) = aibox_sys::wait_any(false) {
        if pid == command {
            *status = Some(st.code());
        }
    }
}
