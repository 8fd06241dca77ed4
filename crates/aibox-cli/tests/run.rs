//! `aibox run`: exit statuses, stdio, options, and every bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{stderr, stdout, Env};

#[test]
fn exit_status_is_the_commands() {
    require_sandboxes!();
    let env = Env::new("status");
    assert_eq!(env.run(&["run", "--", "true"]).status.code(), Some(0));
    assert_eq!(
        env.run(&["run", "--", "sh", "-c", "exit 42"]).status.code(),
        Some(42)
    );
    // Killed by SIGKILL: 128 + 9.
    assert_eq!(
        env.run(&["run", "--", "sh", "-c", "kill -9 $$"])
            .status
            .code(),
        Some(137)
    );
    let o = env.run(&["run", "--", "no-such-command-xyz"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(stderr(&o).contains("command not found"));
}

#[test]
fn stdio_passes_through() {
    require_sandboxes!();
    let env = Env::new("stdio");
    let o = env.run(&["run", "--", "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");
    let mut child = env
        .aibox(&["run", "-i", "--", "sh", "-c", "tr a-z A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello sandbox\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(stdout(&o), "HELLO SANDBOX\n");
    // Without -i the command reads /dev/null.
    let o = env.run(&["run", "--", "cat"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "");
}

#[test]
fn python_runs_on_the_host_template() {
    require_sandboxes!();
    let env = Env::new("python");
    let o = env.run(&["run", "--", "python3", "-c", "print(42)"]);
    assert_eq!(stdout(&o), "42\n", "{}", stderr(&o));
}

#[test]
fn identity_env_and_workdir() {
    require_sandboxes!();
    let env = Env::new("ident");
    let o = env.run(&[
        "run",
        "-e",
        "FOO=bar baz",
        "--",
        "sh",
        "-c",
        "id -u; echo $HOME; pwd; echo $FOO; uname -n",
    ]);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000", "{out}");
    assert_eq!(lines[1], "/home/user");
    assert_eq!(lines[2], "/workspace");
    assert_eq!(lines[3], "bar baz");
    assert!(lines[4].starts_with("aibox-"));
    // The host environment never leaks in.
    let o = env
        .aibox(&["run", "--", "sh", "-c", "echo ${SECRET_TOKEN:-none}"])
        .env("SECRET_TOKEN", "hunter2")
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "none\n");
    let o = env.run(&["run", "--workdir", "/srv/app", "--", "pwd"]);
    assert_eq!(stdout(&o), "/srv/app\n", "{}", stderr(&o));
    let o = env.run(&["run", "--hostname", "box1", "--", "uname", "-n"]);
    assert_eq!(stdout(&o), "box1\n");
}

#[test]
fn root_on_request_has_no_capabilities() {
    require_sandboxes!();
    require_root!();
    let env = Env::new("rootuser");
    let o = env.run(&[
        "run",
        "--user",
        "root",
        "--",
        "sh",
        "-c",
        "id -u; grep CapEff /proc/self/status",
    ]);
    assert_eq!(
        stdout(&o),
        "0\nCapEff:\t0000000000000000\n",
        "{}",
        stderr(&o)
    );
}

#[test]
fn workspace_and_tmp_are_writable_usr_is_not() {
    require_sandboxes!();
    let env = Env::new("writable");
    let o = env.run(&["run", "--", "sh", "-c", "echo a > /workspace/f && echo b > /tmp/f && echo c > $HOME/f && cat /workspace/f /tmp/f $HOME/f; echo x > /usr/f 2>/dev/null || echo usr-ro; echo x > /etc/f 2>/dev/null || echo etc-denied"]);
    // Rootless sandboxes have a single uid, which owns the whole overlay (the
    // host is still untouched); with root, /etc belongs to the sandbox's root.
    let etc = if common::is_root() {
        "etc-denied\n"
    } else {
        ""
    };
    assert_eq!(
        stdout(&o),
        format!("a\nb\nc\nusr-ro\n{etc}"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn timeout_kills_and_exits_124() {
    require_sandboxes!();
    let env = Env::new("timeout");
    let t = std::time::Instant::now();
    let o = env.run(&["run", "--timeout", "500ms", "--", "sleep", "30"]);
    assert_eq!(o.status.code(), Some(124), "{}", stderr(&o));
    assert!(stderr(&o).contains("timed out"));
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn host_mounts_read_only_and_read_write() {
    require_sandboxes!();
    let env = Env::new("mounts");
    let host = env
        .dirs
        .run
        .parent()
        .unwrap()
        .join(format!("share-{}", aibox_runtime::random_id()));
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in.txt"), "from host").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o777)).unwrap();
    common::give_to_user(&host);
    let ro = format!("{}:/data:ro", host.display());
    let o = env.run(&[
        "run",
        "--mount",
        &ro,
        "--",
        "sh",
        "-c",
        "cat /data/in.txt; echo x > /data/new 2>/dev/null || echo denied",
    ]);
    assert_eq!(stdout(&o), "from hostdenied\n", "{}", stderr(&o));
    let rw = format!("{}:/data", host.display());
    let o = env.run(&[
        "run",
        "--mount",
        &rw,
        "--",
        "sh",
        "-c",
        "echo hi > /data/out.txt",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(host.join("out.txt")).unwrap(),
        "hi\n"
    );
    // A single file can be mounted too.
    let file = format!("{}:/workspace/in.txt:ro", host.join("in.txt").display());
    let o = env.run(&["run", "--mount", &file, "--", "cat", "/workspace/in.txt"]);
    assert_eq!(stdout(&o), "from host", "{}", stderr(&o));
    std::fs::remove_dir_all(&host).unwrap();
}

#[test]
fn isolation_report_and_required_level() {
    require_sandboxes!();
    let env = Env::new("report");
    let path = env
        .dirs
        .run
        .parent()
        .unwrap()
        .join(format!("report-{}.json", aibox_runtime::random_id()));
    let o = env.run(&["run", "--report", path.to_str().unwrap(), "--", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r: aibox_types::IsolationReport =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(r.backend, "namespaces");
    assert!(r.namespaces.user && r.namespaces.pid && r.namespaces.net && r.namespaces.mount);
    assert!(r.seccomp && r.no_new_privs && r.bounding_caps.is_empty());
    assert_eq!(r.network, "none");
    assert!(r.disk_quota.applied);
    let standard = env.run(&["run", "--require-isolation", "standard", "--", "true"]);
    assert_eq!(standard.status.code(), Some(0), "{}", stderr(&standard));
    let strict = env.run(&["run", "--require-isolation", "strict", "--", "echo", "ran"]);
    if r.achieved_level() == aibox_types::IsolationLevel::Strict {
        assert!(common::is_root());
        assert_eq!(stdout(&strict), "ran\n");
    } else {
        // Fail closed: the command never ran, and the error names the gaps.
        assert_eq!(strict.status.code(), Some(125));
        assert_eq!(stdout(&strict), "");
        assert!(
            stderr(&strict).contains("isolation_unavailable"),
            "{}",
            stderr(&strict)
        );
        assert!(stderr(&strict).contains("missing"));
    }
}

#[test]
fn bad_inputs_get_clear_errors() {
    let env = Env::new("badinput");
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--memory", "lots", "--", "true"], "invalid size"),
        (&["run", "--memory", "1k", "--", "true"], "too small"),
        (&["run", "--disk=-5m", "--", "true"], "invalid size"),
        (&["run", "--cpus", "0", "--", "true"], "cpus"),
        (&["run", "--pids", "0", "--", "true"], "pids"),
        (
            &["run", "--timeout", "soon", "--", "true"],
            "invalid duration",
        ),
        (
            &["run", "--template", "ubuntu:99", "--", "true"],
            "unknown template",
        ),
        (&["run", "--"], "missing command"),
        (&["run", "--mount", "relative:/x", "--", "true"], "absolute"),
        (&["run", "--mount", "/tmp:/proc", "--", "true"], "reserved"),
        (
            &["run", "--mount", "/tmp:/x:rx", "--", "true"],
            "mount mode",
        ),
        (
            &["run", "--mount", "/nonexistent-aibox:/x", "--", "true"],
            "does not exist",
        ),
        (&["run", "--user", "admin", "--", "true"], "unknown user"),
        (
            &["run", "--require-isolation", "paranoid", "--", "true"],
            "unknown isolation level",
        ),
        (&["run", "-e", "=x", "--", "true"], "environment"),
        (&["run", "--workdir", "relative", "--", "true"], "absolute"),
        (
            &["run", "--mount", "/tmp:/etc/passwd:ro", "--", "true"],
            "mount setup failed",
        ),
        (
            &["create", "--mount", "/tmp:/etc/passwd:ro"],
            "mount setup failed",
        ),
        (&["exec", "ffffffffffff", "--", "true"], "no sandbox"),
        (&["exec", "../../etc", "--", "true"], "no sandbox"),
    ];
    for (args, want) in cases {
        let o = env.run(args);
        assert_ne!(o.status.code(), Some(0), "{args:?} should fail");
        let err = stderr(&o);
        assert!(
            err.to_lowercase().contains(want),
            "{args:?}: expected {want:?} in {err:?}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

#[test]
fn tty_mode_gives_the_command_its_own_terminal() {
    require_sandboxes!();
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP tty_mode_gives_the_command_its_own_terminal: `script` (util-linux) is not installed");
        return;
    }
    let env = Env::new("tty");
    // `script` runs aibox on a pseudo-terminal, as an interactive shell would.
    let cmd = format!(
        "{} run -t -- sh -c 'tty; echo $TERM; exit 3'",
        common::bin().display()
    );
    let o = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("AIBOX_RUN_DIR", &env.dirs.run)
        .env("AIBOX_DATA_DIR", &env.dirs.data)
        .env("TERM", "xterm-256color")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(out.contains("/dev/pts/0"), "{out:?} {}", stderr(&o));
    assert!(out.contains("xterm-256color"), "{out:?}");
    assert_eq!(o.status.code(), Some(3));
}

#[test]
fn signals_to_aibox_reach_the_command() {
    require_sandboxes!();
    let env = Env::new("signals");
    for (sig, name) in [
        (libc::SIGTERM, "TERM"),
        (libc::SIGINT, "INT"),
        (libc::SIGHUP, "HUP"),
    ] {
        let script = format!("trap 'echo got-{name}; exit 7' {name}; echo ready; sleep 30 & wait");
        let mut child = env
            .aibox(&["run", "--", "sh", "-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut ready = [0u8; 6];
        std::io::Read::read_exact(&mut out, &mut ready).unwrap();
        aibox_sys::kill(child.id() as i32, sig).unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(rest, format!("got-{name}\n"));
        assert_eq!(status.code(), Some(7), "{name}");
    }
}
