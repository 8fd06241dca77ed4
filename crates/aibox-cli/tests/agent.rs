//! Persistent sandboxes through the runtime API and the agent protocol:
//! exec (argv, shell, stdin, env, cwd, user, timeout, output caps), background
//! processes, PTY, files, tar, port forwarding, pause/resume, re-attach.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use aibox_protocol::{read_frame, write_frame, ExecRequest, Kind, PtySize};
use aibox_types::{ErrorCode, SandboxSpec, User};
use common::Env;
use std::io::{Read, Write};
use std::time::Duration;

fn sh(cmd: &str) -> ExecRequest {
    ExecRequest {
        shell: Some(cmd.into()),
        ..Default::default()
    }
}

#[test]
fn exec_variants() {
    require_sandboxes!();
    let env = Env::new("exec");
    let sb = env.runtime().create(&SandboxSpec::default()).unwrap();
    let c = sb.client();
    c.ping().unwrap();
    let o = c
        .exec(
            ExecRequest {
                argv: vec!["echo".into(), "a b".into()],
                ..Default::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(o.stdout, b"a b\n");
    assert_eq!(o.exit.code, Some(0));
    let o = c.exec(sh("echo out; echo err >&2; exit 7"), None).unwrap();
    assert_eq!(
        (o.stdout.as_slice(), o.stderr.as_slice(), o.exit.code),
        (&b"out\n"[..], &b"err\n"[..], Some(7))
    );
    let o = c.exec(sh("kill -TERM $$"), None).unwrap();
    assert_eq!(
        (o.exit.code, o.exit.signal, o.exit.status()),
        (None, Some(15), 143)
    );
    let o = c.exec(sh("wc -c"), Some(&vec![b'x'; 300_000])).unwrap();
    assert_eq!(o.stdout, b"300000\n");
    let o = c
        .exec(
            ExecRequest {
                env: vec![("A".into(), "1".into())],
                cwd: Some("/tmp".into()),
                ..sh("echo $A; pwd; id -u")
            },
            None,
        )
        .unwrap();
    assert_eq!(o.stdout, b"1\n/tmp\n1000\n");
    if common::is_root() {
        let o = c
            .exec(
                ExecRequest {
                    user: Some(User::Root),
                    ..sh("id -u; echo $HOME")
                },
                None,
            )
            .unwrap();
        assert_eq!(o.stdout, b"0\n/root\n");
    }
    // Every id is the user's and no capability survives the exec.
    let o = c
        .exec(
            sh("grep -E '^(Uid|Gid|CapPrm|CapEff|CapBnd|NoNewPrivs|SigBlk|SigIgn)' /proc/self/status"),
            None,
        )
        .unwrap();
    let status = String::from_utf8_lossy(&o.stdout).replace('\t', " ");
    if common::is_root() {
        assert!(
            status.contains("Uid: 1000 1000 1000 1000")
                && status.contains("Gid: 1000 1000 1000 1000"),
            "{status}"
        );
    }
    for cap in [
        "CapPrm: 0000000000000000",
        "CapEff: 0000000000000000",
        "CapBnd: 0000000000000000",
        "NoNewPrivs: 1",
        "SigBlk: 0000000000000000",
        "SigIgn: 0000000000000000",
    ] {
        assert!(status.contains(cap), "{status}");
    }
    let o = c
        .exec(
            ExecRequest {
                timeout_ms: Some(300),
                ..sh("sleep 20")
            },
            None,
        )
        .unwrap();
    assert!(o.exit.timed_out && o.exit.signal == Some(9), "{:?}", o.exit);
    let o = c
        .exec(
            ExecRequest {
                max_output: Some(1000),
                ..sh("head -c 100000 /dev/zero")
            },
            None,
        )
        .unwrap();
    assert_eq!(o.stdout.len(), 1000);
    assert!(o.exit.stdout_truncated && !o.exit.stderr_truncated);
    // Errors with stable codes.
    let e = c
        .exec(
            ExecRequest {
                argv: vec!["/nope".into()],
                ..Default::default()
            },
            None,
        )
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound, "{e}");
    let e = c.exec(ExecRequest::default(), None).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    let e = c
        .exec(
            ExecRequest {
                argv: vec!["a\0b".into()],
                ..Default::default()
            },
            None,
        )
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    sb.destroy().unwrap();
}

#[test]
fn background_processes() {
    require_sandboxes!();
    let env = Env::new("bg");
    let sb = env.runtime().create(&SandboxSpec::default()).unwrap();
    let c = sb.client();
    let (_, id, pid) = c
        .exec_start(ExecRequest {
            background: true,
            stdin: true,
            ..sh("echo started; while read l; do echo got $l; done; echo bye")
        })
        .unwrap();
    assert!(pid > 1);
    let list = c.proc_list().unwrap();
    assert!(list.iter().any(|p| p.id == id && p.running && p.background));
    c.proc_stdin(id, b"one\n", false).unwrap();
    c.proc_stdin(id, b"two\n", true).unwrap();
    let exit = c.proc_wait(id, Some(Duration::from_secs(10))).unwrap();
    assert_eq!(exit.code, Some(0));
    // Attach after the fact replays the buffered output and the exit.
    let mut s = c.proc_attach(id).unwrap();
    let mut out = Vec::new();
    let exit =
        aibox_runtime::sandbox::client::pump(&mut s, |_, d| out.extend_from_slice(d)).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out),
        "started\ngot one\ngot two\nbye\n"
    );
    assert_eq!(exit.code, Some(0));
    // Kill a running one; waiting with a short timeout reports a timeout first.
    let (_, id2, _) = c
        .exec_start(ExecRequest {
            background: true,
            ..sh("sleep 60")
        })
        .unwrap();
    assert_eq!(
        c.proc_wait(id2, Some(Duration::from_millis(100)))
            .unwrap_err()
            .code(),
        ErrorCode::Timeout
    );
    c.proc_kill(id2, 9).unwrap();
    assert_eq!(
        c.proc_wait(id2, Some(Duration::from_secs(5)))
            .unwrap()
            .signal,
        Some(9)
    );
    // A foreground exec whose client hangs up is killed.
    let (s3, id3, _) = c.exec_start(sh("sleep 60")).unwrap();
    drop(s3);
    let exit = c.proc_wait(id3, Some(Duration::from_secs(5))).unwrap();
    assert_eq!(exit.signal, Some(9), "{exit:?}");
    assert_eq!(c.proc_kill(999, 9).unwrap_err().code(), ErrorCode::NotFound);
    assert_eq!(
        c.proc_kill(id2, 0).unwrap_err().code(),
        ErrorCode::InvalidArgument
    );
    sb.destroy().unwrap();
}

#[test]
fn pty_with_resize() {
    require_sandboxes!();
    let env = Env::new("pty");
    let sb = env.runtime().create(&SandboxSpec::default()).unwrap();
    let c = sb.client();
    let req = ExecRequest {
        pty: Some(PtySize { rows: 24, cols: 80 }),
        stdin: true,
        ..sh("tty; stty size; read x; stty size; echo done $x")
    };
    let (mut s, _, _) = c.exec_start(req).unwrap();
    let mut out = Vec::new();
    while !String::from_utf8_lossy(&out).contains("24 80") {
        out.extend(read_frame(&mut s).unwrap().payload);
    }
    aibox_runtime::sandbox::client::resize(&mut s, 50, 132).unwrap();
    write_frame(&mut s, Kind::Stdin, b"hello\r").unwrap();
    let exit =
        aibox_runtime::sandbox::client::pump(&mut s, |_, d| out.extend_from_slice(d)).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("24 80"), "{text}");
    assert!(text.contains("50 132"), "{text}");
    assert!(text.contains("done hello"), "{text}");
    assert_eq!(exit.code, Some(0));
    sb.destroy().unwrap();
}

#[test]
fn files() {
    require_sandboxes!();
    let env = Env::new("files");
    let sb = env.runtime().create(&SandboxSpec::default()).unwrap();
    let c = sb.client();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let st = c
        .write_file(
            "/workspace/dir/a.bin",
            &mut &data[..],
            Some(0o640),
            None,
            true,
        )
        .unwrap();
    assert_eq!((st.size, st.mode, st.uid), (300_000, 0o640, 1000));
    let (st2, back) = c.read_file("/workspace/dir/a.bin", None).unwrap();
    assert_eq!(back, data);
    assert_eq!(st2.size, 300_000);
    // Relative paths are from the workdir; overwriting is atomic and keeps the mode.
    c.write_file("dir/a.bin", &mut &b"small"[..], None, None, false)
        .unwrap();
    let (st3, back) = c.read_file("/workspace/dir/a.bin", None).unwrap();
    assert_eq!((back.as_slice(), st3.mode), (&b"small"[..], 0o640));
    c.mkdir("/workspace/x/y/z", None, None).unwrap();
    c.rename("/workspace/dir/a.bin", "/workspace/x/b.bin", None)
        .unwrap();
    let names: Vec<String> = c
        .list("/workspace", true, None)
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert!(
        names.contains(&"/workspace/x/b.bin".to_string())
            && names.contains(&"/workspace/x/y/z".to_string()),
        "{names:?}"
    );
    assert_eq!(
        c.stat("/workspace/dir/a.bin", None).unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        c.remove("/workspace/x", false, None).unwrap_err().code(),
        ErrorCode::InvalidArgument
    );
    c.remove("/workspace/x", true, None).unwrap();
    // Permissions are the user's: /etc is root's (rootless sandboxes have a
    // single uid that owns the overlay), /usr is read-only.
    if common::is_root() {
        assert_eq!(
            c.write_file("/etc/evil", &mut &b"x"[..], None, None, false)
                .unwrap_err()
                .code(),
            ErrorCode::PermissionDenied
        );
    }
    assert!(c
        .write_file("/usr/evil", &mut &b"x"[..], None, Some(User::Root), false)
        .is_err());
    assert_eq!(
        c.read_file("/workspace", None).unwrap_err().code(),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        c.remove("/", true, None).unwrap_err().code(),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        c.read_file("", None).unwrap_err().code(),
        ErrorCode::InvalidArgument
    );
    // The connection is still usable after errors mid-stream: a failed write
    // drained its data frames.
    c.write_file("/workspace/ok", &mut &b"fine"[..], None, None, false)
        .unwrap();
    // Tar round trip of a directory.
    c.exec(
        sh("mkdir -p src/sub && echo 1 > src/a && echo 2 > src/sub/b && ln -s a src/link"),
        None,
    )
    .unwrap();
    let mut tar = Vec::new();
    c.tar_download("/workspace/src", &mut tar, None).unwrap();
    c.tar_upload("/tmp/copy", &mut &tar[..], None).unwrap();
    let o = c
        .exec(
            sh("cat /tmp/copy/a /tmp/copy/sub/b; readlink /tmp/copy/link"),
            None,
        )
        .unwrap();
    assert_eq!(o.stdout, b"1\n2\na\n");
    // A tar that tries to escape its directory is refused.
    let mut evil = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_link_name("/etc").unwrap();
    h.set_size(0);
    evil.append_data(&mut h, "escape", &b""[..]).unwrap();
    let mut h2 = tar::Header::new_gnu();
    h2.set_size(1);
    h2.set_mode(0o644);
    evil.append_data(&mut h2, "escape/passwd", &b"x"[..])
        .unwrap();
    let evil = evil.into_inner().unwrap();
    assert!(c.tar_upload("/workspace/t", &mut &evil[..], None).is_err());
    let (_, passwd) = c.read_file("/etc/passwd", None).unwrap();
    assert!(String::from_utf8_lossy(&passwd).contains("user:x:1000"));
    sb.destroy().unwrap();
}

#[test]
fn port_forward_reaches_a_server_inside() {
    require_sandboxes!();
    let env = Env::new("portfwd");
    let sb = env.runtime().create(&SandboxSpec::default()).unwrap();
    let c = sb.client();
    let server = "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 8123)); s.listen()\nprint('ready', flush=True)\nwhile True:\n    c,_=s.accept(); d=c.recv(100); c.sendall(b'echo:'+d); c.close()\n";
    let (mut s, _, _) = c
        .exec_start(ExecRequest {
            background: false,
            argv: vec!["python3".into(), "-c".into(), server.into()],
            ..Default::default()
        })
        .unwrap();
    let f = read_frame(&mut s).unwrap();
    assert_eq!(f.payload, b"ready\n");
    let mut fwd = c.port_forward(8123).unwrap();
    fwd.write_all(b"ping").unwrap();
    let mut reply = Vec::new();
    fwd.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"echo:ping");
    assert!(c.port_forward(8124).is_err(), "nothing listens there");
    assert_eq!(
        c.port_forward(0).unwrap_err().code(),
        ErrorCode::InvalidArgument
    );
    drop(s); // closing the exec connection kills the server
    sb.destroy().unwrap();
}

#[test]
fn survives_its_creator_and_reattaches_by_id() {
    require_sandboxes!();
    let env = Env::new("reattach");
    // Create from a separate process that exits right away.
    let o = env.run(&["create"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let id = common::stdout(&o).trim().to_string();
    let rt = env.runtime();
    let sb = rt.get(&id).unwrap();
    assert!(sb.alive());
    let o = sb.client().exec(sh("echo $((6*7))"), None).unwrap();
    assert_eq!(o.stdout, b"42\n");
    assert!(rt.list().iter().any(|r| r.id == id));
    let o = env.run(&["exec", &id, "--", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    let o = env.run(&["inspect", &id]);
    assert!(common::stdout(&o).contains("\"isolation\""));
    assert_eq!(
        rt.get("000000000000").unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert_eq!(rt.get("../x").unwrap_err().code(), ErrorCode::NotFound);
    let o = env.run(&["rm", &id]);
    assert!(o.status.success());
    assert_eq!(rt.get(&id).unwrap_err().code(), ErrorCode::NotFound);
}

#[test]
fn pause_resume_and_stats() {
    require_sandboxes!();
    require_root!();
    let env = Env::new("pause");
    let sb = env.runtime().create(&SandboxSpec::default()).unwrap();
    let c = sb.client();
    let (_, id, _) = c
        .exec_start(ExecRequest {
            background: true,
            ..sh("i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done")
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    sb.pause().unwrap();
    assert!(sb.paused());
    let read_n = || -> u64 {
        // The agent is frozen too, so read through the host's view of the sandbox.
        let p = format!("/proc/{}/root/tmp/n", sb.record().pid);
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let before = read_n();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read_n(), before, "counter moved while paused");
    // exec on a paused sandbox fails fast with `conflict`, and the request
    // it already sent is not carried out after the resume.
    let o = env.run(&[
        "exec",
        sb.id(),
        "--",
        "sh",
        "-c",
        "echo ran > /tmp/abandoned",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        common::stderr(&o).contains("[conflict]"),
        "{}",
        common::stderr(&o)
    );
    sb.resume().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(read_n() > before);
    let o = c
        .exec(
            sh("test -e /tmp/abandoned && echo ran || echo not-run"),
            None,
        )
        .unwrap();
    assert_eq!(o.stdout, b"not-run\n");
    let st = sb.stats();
    assert!(
        st.memory_bytes.unwrap_or(0) > 0 && st.pids.unwrap_or(0) >= 2,
        "{st:?}"
    );
    c.proc_kill(id, 9).unwrap();
    sb.destroy().unwrap();
}

#[test]
fn protocol_garbage_gets_errors_and_the_agent_survives() {
    require_sandboxes!();
    let env = Env::new("garbage");
    let sb = env.runtime().create(&SandboxSpec::default()).unwrap();
    let path = sb.record().socket.clone();
    let connect = || std::os::unix::net::UnixStream::connect(&path).unwrap();
    let reply = |s: &mut std::os::unix::net::UnixStream| -> String {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        match read_frame(s) {
            Ok(f) => String::from_utf8_lossy(&f.payload).into_owned(),
            Err(e) => format!("closed: {e}"),
        }
    };
    // Random bytes.
    let mut s = connect();
    s.write_all(b"\x00\x00\x00\x05\x00GARB").unwrap();
    assert!(reply(&mut s).contains("protocol_error"));
    // A frame claiming 4 GiB.
    let mut s = connect();
    s.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    assert!(reply(&mut s).contains("frame_too_large"));
    // Wrong version.
    let mut s = connect();
    aibox_protocol::ClientMsg::Hello {
        protocol: 99,
        client: "t".into(),
    }
    .send(&mut s)
    .unwrap();
    assert!(reply(&mut s).contains("version_mismatch"));
    // Unknown operation after a good handshake.
    let mut s = connect();
    aibox_protocol::ClientMsg::Hello {
        protocol: 1,
        client: "t".into(),
    }
    .send(&mut s)
    .unwrap();
    reply(&mut s);
    write_frame(
        &mut s,
        Kind::Control,
        br#"{"type":"request","op":"format_disk"}"#,
    )
    .unwrap();
    assert!(reply(&mut s).contains("protocol_error"));
    // Data before a handshake, and a client that just hangs up.
    let mut s = connect();
    write_frame(&mut s, Kind::Stdin, b"x").unwrap();
    assert!(reply(&mut s).contains("protocol_error"));
    drop(connect());
    // Still serving.
    sb.client().ping().unwrap();
    sb.destroy().unwrap();
}

/// A sandbox with egress reaches its host's proxy socket only through the
/// agent's relay on 127.0.0.1:3128 (no proxy here: the test stands in).
#[test]
fn egress_relay_reaches_the_host_proxy_socket() {
    require_sandboxes!();
    let env = Env::new("egress");
    let rt = env.runtime();
    let spec = SandboxSpec {
        network: aibox_types::NetworkMode::Allowlist,
        ..Default::default()
    };
    let sb = rt.create(&spec).unwrap();
    let c = sb.client();
    let o = c.exec(sh("echo $HTTP_PROXY $no_proxy"), None).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "http://127.0.0.1:3128 localhost,127.0.0.1,::1\n"
    );
    // No proxy listening yet: the connection is closed at once.
    let o = c
        .exec(
            ExecRequest {
                timeout_ms: Some(20_000),
                ..sh("curl -s -m 10 http://example.test/; echo rc=$?")
            },
            None,
        )
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.starts_with("rc=") && out.trim() != "rc=0", "{out}");
    // The proxy's socket, as the server will make it: owned by the
    // sandbox's root in root mode.
    let sock = rt.dirs().sandbox(sb.id()).join("egress.sock");
    let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    if let Some(uid) = sb.record().uid_base() {
        std::os::unix::fs::chown(&sock, Some(uid), Some(uid)).unwrap();
    }
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap() == 1 {
            head.push(b[0]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
            .unwrap();
        String::from_utf8_lossy(&head).into_owned()
    });
    let o = c
        .exec(sh("curl -s -m 10 http://example.test/path"), None)
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello");
    let head = server.join().unwrap();
    assert!(
        head.starts_with("GET http://example.test/path HTTP/1.1"),
        "{head}"
    );
    // A sandbox without egress has neither the variables nor the relay.
    let plain = rt.create(&SandboxSpec::default()).unwrap();
    let o = plain
        .client()
        .exec(
            sh("echo ${HTTP_PROXY:-none}; curl -s -m 5 http://127.0.0.1:3128/; echo rc=$?"),
            None,
        )
        .unwrap();
    // curl: 7 = could not connect.
    assert_eq!(String::from_utf8_lossy(&o.stdout), "none\nrc=7\n");
    plain.destroy().unwrap();
    sb.destroy().unwrap();
}
