//! The escape corpus: a probe runs inside a sandbox and tries to break out in
//! every way we know; each attempt must fail. Resource bombs run separately
//! with small limits. Runs as root in CI and again rootless.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{stderr, stdout, Env};
use std::io::Write;
use std::process::Stdio;

const PROBE: &str = include_str!("escape_probe.py");

#[test]
fn escape_corpus_everything_is_blocked() {
    require_sandboxes!();
    let env = Env::new("escape");
    // A TCP server on the host's loopback the sandbox must not reach.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let marker = env
        .dirs
        .run
        .parent()
        .unwrap()
        .join(format!("secret-{}", aibox_runtime::random_id()));
    std::fs::write(&marker, "host secret").unwrap();
    let host_pid = std::process::id().to_string();
    let mut child = env
        .aibox(&[
            "run",
            "-i",
            "--",
            "python3",
            "-",
            &port,
            &host_pid,
            marker.to_str().unwrap(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(PROBE.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    std::fs::remove_file(&marker).unwrap();
    let out = stdout(&o);
    assert!(
        out.contains("DONE"),
        "probe did not finish:\n{out}\n{}",
        stderr(&o)
    );
    let escaped: Vec<&str> = out.lines().filter(|l| l.contains(" ESCAPED")).collect();
    assert!(escaped.is_empty(), "escapes:\n{}", escaped.join("\n"));
    let blocked = out.lines().filter(|l| l.contains(" BLOCKED")).count();
    assert!(blocked >= 55, "only {blocked} probes ran:\n{out}");
    assert!(
        listener.accept().is_err(),
        "the host listener saw a connection"
    );
    eprintln!("{blocked} escape attempts, all blocked");
}

#[test]
fn fork_bomb_is_stopped_by_the_pids_limit() {
    require_sandboxes!();
    require_root!(); // rootless hosts without cgroup delegation cannot limit pids
    let env = Env::new("forkbomb");
    let script = "import os,time\nn=0\ntry:\n    while True:\n        if os.fork()==0:\n            time.sleep(30); os._exit(0)\n        n+=1\nexcept OSError as e:\n    print('stopped', n, e.errno)\n";
    let o = env.run(&[
        "run",
        "--pids",
        "32",
        "--timeout",
        "60s",
        "--",
        "python3",
        "-c",
        script,
    ]);
    let out = stdout(&o);
    assert!(out.starts_with("stopped"), "{out} {}", stderr(&o));
    let n: u32 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(n < 32, "{n} forks");
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn memory_bomb_is_oom_killed_inside_only() {
    require_sandboxes!();
    require_root!();
    let env = Env::new("membomb");
    let o = env.run(&[
        "run",
        "--memory",
        "64m",
        "--",
        "python3",
        "-c",
        "x = bytearray(512 << 20); print('survived')",
    ]);
    assert_eq!(o.status.code(), Some(137), "{} {}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("out of memory"), "{}", stderr(&o));
    // The host (this test) is fine, and the next sandbox works.
    assert_eq!(stdout(&env.run(&["run", "--", "echo", "ok"])), "ok\n");
    // One-shot runs reuse their slot's cgroup: the next run gets its own
    // limits (a bigger one, though memsw was left at 64m) and its own OOM
    // count (a SIGKILL is not reported as an OOM kill).
    for _ in 0..3 {
        let big = env.run(&[
            "run",
            "--",
            "python3",
            "-c",
            "x = bytearray(256 << 20); print('survived')",
        ]);
        assert_eq!(stdout(&big), "survived\n", "{}", stderr(&big));
        let killed = env.run(&["run", "--", "sh", "-c", "kill -9 $$"]);
        assert_eq!(killed.status.code(), Some(137));
        assert!(
            !stderr(&killed).contains("out of memory"),
            "{}",
            stderr(&killed)
        );
        let bomb = env.run(&[
            "run",
            "--memory",
            "64m",
            "--",
            "python3",
            "-c",
            "x = bytearray(512 << 20)",
        ]);
        assert!(stderr(&bomb).contains("out of memory"), "{}", stderr(&bomb));
    }
}

#[test]
fn disk_fill_is_stopped_by_the_quota() {
    require_sandboxes!();
    let env = Env::new("diskfill");
    let script = "dd if=/dev/zero of=/workspace/fill bs=1M count=64 2>/dev/null; echo rc=$?; dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>/dev/null; echo rc=$?; du -sm /workspace/fill | cut -f1";
    let o = env.run(&["run", "--disk", "16m", "--", "sh", "-c", script]);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"rc=1"), "{out} {}", stderr(&o));
    assert_eq!(lines.get(1), Some(&"rc=1"), "/tmp shares the quota: {out}");
    let mb: u64 = lines[2].parse().unwrap();
    assert!(mb <= 16, "{mb} MiB written");
}

#[test]
fn sandboxes_cannot_see_each_other() {
    require_sandboxes!();
    require_root!();
    let env = Env::new("neighbours");
    let rt = env.runtime();
    let a = rt.create(&Default::default()).unwrap();
    let b = rt.create(&Default::default()).unwrap();
    let ua = &a.isolation().uid_map[0];
    let ub = &b.isolation().uid_map[0];
    assert!(
        ua.outside + ua.count <= ub.outside || ub.outside + ub.count <= ua.outside,
        "uid ranges overlap: {ua:?} {ub:?}"
    );
    let (ca, cb) = (a.client(), b.client());
    ca.write_file("/workspace/mine", &mut &b"a"[..], None, None, false)
        .unwrap();
    let o = cb
        .exec(
            aibox_protocol::ExecRequest {
                shell: Some("ls -A /workspace | wc -l; ls /proc | grep -c '^[0-9]'".into()),
                ..Default::default()
            },
            None,
        )
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "b sees a's files: {out}");
    let procs: u32 = lines[1].parse().unwrap();
    assert!(
        procs <= 5,
        "b sees {procs} processes (its agent, sh, ls, grep)"
    );
    a.destroy().unwrap();
    b.destroy().unwrap();
}

#[test]
fn cpu_limit_is_enforced() {
    require_sandboxes!();
    require_root!();
    let env = Env::new("cpulimit");
    let spin = "import os, time\nt = time.time()\nwhile time.time() - t < 1: pass\nprint(os.times().user + os.times().system)";
    let o = env.run(&["run", "--cpus", "0.2", "--", "python3", "-c", spin]);
    let used: f64 = stdout(&o)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{} {}", stdout(&o), stderr(&o)));
    // 0.2 cores over one second, with slack for a busy CI machine.
    assert!(used < 0.45, "used {used} s of CPU in 1 s with --cpus 0.2");
}
