//! The microvm backend end to end under QEMU TCG, through the CLI and the
//! runtime: create from an image template, exec, files, layers (whiteouts
//! and opaque directories through the ext4 images), limits, listeners and
//! a port forward through the agent, pause/resume, the escape probes that
//! make sense in a VM (no host filesystem, no host network, no way to the
//! agent without the token), bad input, a crashed supervisor cleaned by
//! gc. One boot (a few seconds under TCG). Skips, printing the reason,
//! without QEMU, mkfs.ext4, busybox or a Debian mirror for the kernel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{stderr, stdout, Env};
use std::io::{Read, Write};
use std::path::Path;

/// The busybox test image (two layers: a whiteout and an opaque dir) as
/// a template of `env`.
fn busybox_template(env: &Env) -> String {
    let src = env.dirs.run.with_extension("vm-image");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src).unwrap();
    common::busybox_image(&src);
    let name = format!("test/vm:{}", aibox_runtime::random_id());
    let o = env.run(&["template", "import", src.to_str().unwrap(), "--name", &name]);
    assert!(o.status.success(), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&src);
    name
}

fn sh(env: &Env, id: &str, user: &str, script: &str) -> std::process::Output {
    env.run(&["exec", id, "-u", user, "--", "sh", "-c", script])
}

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "stdout {} stderr {}",
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

fn refused(o: &std::process::Output, needle: &str) {
    assert!(
        !o.status.success() && stderr(o).contains(needle),
        "expected a refusal with {needle:?}: {} {}",
        stdout(o),
        stderr(o)
    );
}

#[test]
fn microvm_sandboxes_under_tcg() {
    if let Some(t) = common::microvm_missing_tool() {
        eprintln!("SKIP microvm_sandboxes_under_tcg: {t} is missing (scripts/setup.sh installs qemu-system-x86, e2fsprogs and busybox-static as root)");
        return;
    }
    let env = Env::new("microvm");
    let template = busybox_template(&env);

    // Bad input is refused before anything boots.
    refused(
        &env.run(&["create", "--backend", "warp"]),
        "namespaces or microvm",
    );

    refused(
        &env.run(&[
            "create",
            "--backend",
            "microvm",
            "--template",
            &template,
            "--mount",
            "/tmp:/mnt",
        ]),
        "host mounts",
    );

    let o = env.run(&[
        "create",
        "--backend",
        "microvm",
        "--template",
        &template,
        "--memory",
        "150m",
    ]);
    if !o.status.success() && stderr(&o).contains("artifacts could not be built") {
        eprintln!(
            "SKIP microvm_sandboxes_under_tcg: no guest kernel: {}",
            stderr(&o)
        );
        return;
    }
    refused(&o, "too small for a microVM");
    assert!(
        env.runtime().list().is_empty(),
        "a refused create left a sandbox"
    );

    let o = env.run(&[
        "create",
        "--backend",
        "microvm",
        "--template",
        &template,
        "--memory",
        "512m",
        "--disk",
        "48m",
        "--cpus",
        "2",
        "--require-isolation",
        "vm",
        "--json",
    ]);
    // `--json` shows the sandbox as the API does; the VMM's own state is
    // in the runtime's record.
    let view: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    let id = view["id"].as_str().unwrap().to_string();
    let rec = serde_json::to_value(env.runtime().get(&id).unwrap().record()).unwrap();
    let iso = &view["isolation"];
    assert_eq!(iso["backend"], "microvm");
    assert_eq!(iso["level"], "vm");
    assert_eq!(iso["vm"]["vmm"], "qemu");
    assert_eq!(iso["vm"]["accel"], "tcg");
    assert_eq!(iso["vm"]["vcpus"], 2);
    assert_eq!(iso["vm"]["memory_mib"], 512);
    assert!(iso["vm"]["kernel"].as_str().unwrap().contains("amd64"));
    assert!(
        !o.stdout.windows(8).any(|w| w == b"\"token\""),
        "the token leaked into the record"
    );
    // The VMM: as root, a uid of its own (far above any host user's) under
    // QEMU's seccomp sandbox; rootless, the caller.
    let vmm_pid = rec["vm"]["vmm_pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{vmm_pid}/status")).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let uids: Vec<u32> = field("Uid:").iter().map(|u| u.parse().unwrap()).collect();
    // No program it runs gains privileges (set-uid binaries, file caps).
    assert_eq!(field("NoNewPrivs:"), ["1"], "QEMU can gain privileges");
    if common::is_root() {
        assert!(
            uids.iter()
                .all(|&u| u >= aibox_runtime::sandbox::state::SLOT_BASE),
            "QEMU runs as {uids:?}"
        );
        assert_eq!(field("Seccomp:"), ["2"], "QEMU has no seccomp filter");
        assert!(iso["vm"]["vmm_user"].as_str().unwrap().contains("seccomp"));
        // The whole host side is in a cgroup of its own, with a pids cap
        // (M6: a guest's connections to the egress address each made a
        // host process, without bound) and memory for the guest plus the
        // VMM.
        let cgroups = std::fs::read_to_string(format!("/proc/{vmm_pid}/cgroup")).unwrap();
        assert!(cgroups.contains(&format!("aibox-vm-{id}")), "{cgroups}");
        assert_eq!(iso["cgroups"]["pids"]["applied"], true, "{iso}");
        assert_ne!(iso["cgroups"]["version"], "none", "{iso}");
    } else {
        assert!(uids.iter().all(|&u| u == aibox_sys::geteuid()), "{uids:?}");
    }
    let dir = env.dirs.sandbox(&id);
    eprintln!(
        "microVM boot to agent ready: {} ms",
        std::fs::read_to_string(dir.join("boot-ms")).unwrap()
    );

    // Exec, as the default user and as root, in the image's workdir.
    assert_eq!(ok(&sh(&env, &id, "user", "id -u; pwd")), "1000\n/data\n");
    assert_eq!(ok(&sh(&env, &id, "root", "id -u")), "0\n");
    let o = sh(&env, &id, "user", "echo out; echo err >&2; exit 7");
    assert_eq!(
        (o.status.code(), stdout(&o), stderr(&o)),
        (Some(7), "out\n".into(), "err\n".into())
    );
    // Its own kernel, the image's layers: the whiteout and the opaque
    // directory hold through the ext4 images; no lost+found shows.
    let host_release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let guest_release = ok(&sh(&env, &id, "user", "cat /proc/sys/kernel/osrelease"));
    assert_ne!(guest_release, host_release);
    let o = ok(&sh(
        &env,
        &id,
        "user",
        "ls /; test -e /etc/gone-later && echo GONE-VISIBLE; ls /opq",
    ));
    assert!(
        !o.contains("GONE-VISIBLE") && !o.contains("old") && !o.contains("lost+found"),
        "{o}"
    );

    // Files both ways, through the agent.
    let client = env.runtime().get(&id).unwrap().client();
    client
        .write_file(
            "/data/in.txt",
            &mut &b"from the host\n"[..],
            Some(0o644),
            None,
            false,
        )
        .unwrap();
    assert_eq!(
        ok(&sh(&env, &id, "user", "cat /data/in.txt")),
        "from the host\n"
    );
    ok(&sh(
        &env,
        &id,
        "user",
        "echo from the guest > /data/out.txt",
    ));
    let (_, back) = client.read_file("/data/out.txt", None).unwrap();
    assert_eq!(back, b"from the guest\n");
    let e = client.read_file("/data/nope", None).unwrap_err();
    assert_eq!(e.code(), aibox_types::ErrorCode::NotFound);

    // Limits: the guest's RAM is the memory limit, its disk the quota.
    let mem_kb: u64 = ok(&sh(&env, &id, "user", "grep MemTotal /proc/meminfo"))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(mem_kb <= 512 * 1024 && mem_kb > 200 * 1024, "{mem_kb}");
    let o = sh(
        &env,
        &id,
        "user",
        "dd if=/dev/zero of=/data/big bs=1M count=100 2>&1; echo rc=$?",
    );
    let out = ok(&o);
    assert!(
        out.contains("No space left") && !out.contains("rc=0"),
        "{out}"
    );
    ok(&sh(&env, &id, "user", "rm /data/big"));
    assert_eq!(
        ok(&sh(&env, &id, "user", "grep -c processor /proc/cpuinfo")),
        "2\n"
    );

    // Escape probes: no host filesystem, no host network, the agent's port
    // answers nothing without the token.
    let marker = format!("aibox-vm-marker-{}", aibox_runtime::random_id());
    let host_marker = std::env::temp_dir().join(&marker);
    std::fs::write(&host_marker, "secret").unwrap();
    let probe = format!(
        "cat /tmp/{marker} 2>/dev/null && echo HOST-FILE; ls /work /root/.cargo /usr/bin/cargo 2>/dev/null && echo HOST-DIRS; \
         grep -q ' /mnt/' /proc/mounts && echo LAYER-MOUNTS; \
         ls /dev/vd* 2>/dev/null && echo RAW-DISKS; echo done"
    );
    assert_eq!(ok(&sh(&env, &id, "root", &probe)), "done\n");
    let _ = std::fs::remove_file(&host_marker);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let probe = format!(
        "for a in 10.0.2.2:{port} 10.0.2.3:53 127.0.0.1:{port} 1.1.1.1:80; do \
           busybox wget -q -T 3 -O - http://$a/ 2>/dev/null && echo REACHED-$a; done; \
         echo 'x' | busybox nc -w 2 10.0.2.15 1024 | head -c 100; echo; \
         busybox nc -w 2 10.0.2.15 1024 </dev/null | head -c 1 | wc -c"
    );
    let out = ok(&sh(&env, &id, "user", &probe));
    assert!(!out.contains("REACHED"), "{out}");
    assert_eq!(
        out.trim(),
        "0",
        "the agent port answered without the token: {out}"
    );
    assert!(
        listener.accept().is_err(),
        "the guest reached the host's loopback"
    );

    // Listeners and a port forward through the agent.
    start_httpd(&env, &id, 8088, "served-by-vm");
    let rt = env.runtime();
    let sb = rt.get(&id).unwrap();
    let mut ports = vec![];
    for _ in 0..100 {
        ports = sb
            .listeners()
            .unwrap()
            .into_iter()
            .map(|l| l.port)
            .collect();
        if ports.contains(&8088) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(ports.contains(&8088) && !ports.contains(&1024), "{ports:?}");
    let mut s = sb.client().port_forward(8088).unwrap();
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.contains("served-by-vm"), "{body}");

    // Stats come from the VMM; pause and resume are the VMM's.
    let st = sb.stats();
    assert!(
        st.cpu_usec.unwrap() > 0 && st.memory_bytes.unwrap() > 0,
        "{st:?}"
    );
    pause_refuse_resume(&env, &id);
    assert!(!rt.get(&id).unwrap().paused());
    assert_eq!(
        ok(&sh(&env, &id, "user", "cat /data/in.txt")),
        "from the host\n"
    );

    // A snapshot with memory: a process and a file, restored into a new
    // sandbox where the process runs on (its connections do not survive).
    let o = ok(&sh(
        &env,
        &id,
        "user",
        "sleep 1000 >/dev/null 2>&1 & echo $!",
    ));
    let sleeper = o.trim().to_string();
    ok(&sh(
        &env,
        &id,
        "user",
        "echo before-snapshot > /data/state.txt",
    ));
    let t0 = std::time::Instant::now();
    let snap = rt.snapshot(&id, Some("vm-state")).unwrap();
    eprintln!(
        "microVM snapshot with memory: {:?}, {} bytes",
        t0.elapsed(),
        snap.size_bytes
    );
    assert!(snap.memory && snap.consistent);
    // The source runs on.
    assert_eq!(
        ok(&sh(&env, &id, "user", "cat /data/state.txt")),
        "before-snapshot\n"
    );
    ok(&sh(
        &env,
        &id,
        "user",
        "echo after-snapshot > /data/state.txt",
    ));
    let mut spec = snap.spec.clone();
    spec.snapshot = Some(snap.id.clone());
    let t0 = std::time::Instant::now();
    let restored = rt.create(&spec).unwrap();
    eprintln!("microVM restore to agent ready: {:?}", t0.elapsed());
    let rid = restored.id().to_string();
    assert_ne!(rid, id);
    assert_eq!(
        ok(&sh(&env, &rid, "user", "cat /data/state.txt")),
        "before-snapshot\n"
    );
    ok(&sh(&env, &rid, "user", &format!("kill -0 {sleeper}")));
    assert_eq!(
        ok(&sh(&env, &id, "user", "cat /data/state.txt")),
        "after-snapshot\n"
    );
    // In use: not deleted; a namespace restore and a template from it are refused.
    let e = rt.delete_snapshot(&snap.id).unwrap_err();
    assert_eq!(e.code(), aibox_types::ErrorCode::Conflict, "{e}");
    let mut ns = spec.clone();
    ns.backend = None;
    assert!(rt
        .create(&ns)
        .unwrap_err()
        .to_string()
        .contains("backend microvm"));
    assert!(rt.promote_snapshot(&snap.id, "test/from-vm").is_err());
    let mut bigger = spec.clone();
    bigger.memory = Some(aibox_types::ByteSize(1 << 30));
    assert!(rt
        .create(&bigger)
        .unwrap_err()
        .to_string()
        .contains("machine it was saved from"));
    restored.destroy().unwrap();
    rt.delete_snapshot(&snap.id).unwrap();

    // A crashed supervisor takes the VMM with it; gc removes the rest.
    let vm = rec["vm"].clone();
    let (sup, vmm) = (rec_pid(&dir), vm["vmm_pid"].as_i64().unwrap() as i32);
    unsafe_kill(sup);
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{vmm}")).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        !Path::new(&format!("/proc/{vmm}")).exists(),
        "the VMM outlived its supervisor"
    );
    ok(&env.run(&["gc"]));
    assert!(!dir.exists(), "gc left {}", dir.display());

    // `aibox run --backend microvm` on the default template, the host's
    // read-only /usr over virtiofs: a VM for one command, with our stdio
    // and its exit code, gone afterwards. Root in the guest remounts /usr
    // read-write, and the host side still refuses the write.
    // As root it mounts a volume too (over virtiofs, read-write), which a
    // namespace sandbox then reads with the same owner.
    let probe = format!("/usr/aibox-vm-probe-{}", aibox_runtime::random_id());
    let root = common::is_root();
    ok(&env.run(&["volume", "create", "vmvol", "--size", "32m"]));
    let (args, script, want) = if root {
        let script = format!(
            "cat; python3 -c 'print(6*7)'; mount -o remount,rw /usr; touch {probe} 2>/dev/null && echo WROTE-HOST-USR; echo from-vm > /vol/f; exit 3"
        );
        (vec!["--volume", "vmvol:/vol"], script, "piped-in\n42\n")
    } else {
        refused(
            &env.run(&[
                "run",
                "--backend",
                "microvm",
                "--template",
                template.as_str(),
                "--volume",
                "vmvol:/vol",
                "--",
                "true",
            ]),
            "needs root here",
        );
        // Rootless: virtiofsd cannot run in a user namespace, so the host
        // template is refused, clearly; the image template runs.
        refused(
            &env.run(&[
                "run",
                "--backend",
                "microvm",
                "--memory",
                "512m",
                "--",
                "true",
            ]),
            "needs root here",
        );
        eprintln!("microVM host template: refused rootless, as documented");
        (
            vec!["--template", template.as_str()],
            "cat; exit 3".to_string(),
            "piped-in\n",
        )
    };
    let mut argv = vec![
        "run",
        "--backend",
        "microvm",
        "--memory",
        "512m",
        "-u",
        "root",
        "-i",
    ];
    argv.extend(args);
    argv.extend(["--", "sh", "-c", &script]);
    let o = env
        .aibox(&argv)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"piped-in\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(stdout(&o), want);
    assert!(
        !Path::new(&probe).exists(),
        "the guest wrote to the host's /usr"
    );
    assert!(
        env.runtime().list().is_empty(),
        "aibox run left its microVM"
    );
    if root {
        let o = env.run(&[
            "run",
            "--volume",
            "vmvol:/vol",
            "--",
            "stat",
            "-c",
            "%u %s",
            "/vol/f",
        ]);
        assert_eq!(
            ok(&o),
            "0 8\n",
            "the VM's root wrote it as the sandbox's root"
        );
    }
    ok(&env.run(&["volume", "rm", "vmvol"]));
}

/// A background busybox httpd in the guest on `port`, serving `body` as
/// `/index.html`.
fn start_httpd(env: &Env, id: &str, port: u16, body: &str) {
    ok(&sh(
        env,
        id,
        "user",
        &format!("mkdir -p /data/www && echo {body} > /data/www/index.html"),
    ));
    let port = port.to_string();
    ok(&env.run(&[
        "exec",
        id,
        "-d",
        "--",
        "busybox",
        "httpd",
        "-f",
        "-p",
        &port,
        "-h",
        "/data/www",
    ]));
}

/// Pause (the VMM's), an exec refused while paused and not run at the
/// resume either, resume.
fn pause_refuse_resume(env: &Env, id: &str) {
    ok(&env.run(&["pause", id]));
    assert!(env.runtime().get(id).unwrap().paused());
    refused(
        &env.run(&["exec", id, "--", "touch", "/data/ran-while-paused"]),
        "paused",
    );
    ok(&env.run(&["resume", id]));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        ok(&sh(
            env,
            id,
            "root",
            "ls /data/ran-while-paused 2>&1 || true"
        )),
        "ls: /data/ran-while-paused: No such file or directory\n"
    );
}

fn rec_pid(dir: &Path) -> i32 {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("sandbox.json")).unwrap()).unwrap();
    v["pid"].as_i64().unwrap() as i32
}

fn unsafe_kill(pid: i32) {
    let _ = aibox_sys::kill(pid, libc::SIGKILL);
}

/// Create a microVM through `aibox internal-create` (the server's way in,
/// which takes a whole spec: here egress on, which the local CLI leaves to
/// the server), with `env`'s variables choosing the VMM and transport.
fn create_spec(env: &Env, spec: &aibox_types::SandboxSpec) -> Result<String, String> {
    let mut c = env
        .aibox(&["internal-create"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(spec).unwrap())
        .unwrap();
    let o = c.wait_with_output().unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("internal-create said {} {}", stdout(&o), stderr(&o)));
    match reply["status"].as_str() {
        Some("ok") => Ok(reply["id"].as_str().unwrap().to_string()),
        _ => Err(reply["message"].as_str().unwrap_or_default().to_string()),
    }
}

/// A microVM the host reaches over hybrid vsock only (QEMU with
/// vhost-device-vsock, or Firecracker): no network device in the guest;
/// exec, files, egress over vsock to the sandbox's egress socket (played
/// here by the test), a port forward, pause/resume, the agent's token,
/// and a snapshot with memory restored into a new VM when `snapshots`
/// (else the refusal).
fn vsock_scenario(name: &str, vars: &[(&str, &str)], vmm: &str, snapshots: bool) {
    let mut env = Env::new(name);
    env.vars = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let template = busybox_template(&env);
    let spec = aibox_types::SandboxSpec {
        template: template.clone(),
        backend: Some(aibox_types::BackendKind::Microvm),
        network: aibox_types::NetworkMode::Full,
        memory: Some("512m".parse().unwrap()),
        disk: Some("64m".parse().unwrap()),
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let id = match create_spec(&env, &spec) {
        Ok(id) => id,
        Err(e) if e.contains("artifacts could not be built") => {
            eprintln!("SKIP {name}: no guest kernel: {e}");
            return;
        }
        Err(e) => panic!("{name}: create failed: {e}"),
    };
    eprintln!("{name}: create to agent ready: {:?}", t0.elapsed());
    let rt = env.runtime();
    let sb = rt.get(&id).unwrap();
    let iso = &sb.record().isolation;
    let vm = iso.vm.as_ref().unwrap();
    assert_eq!((vm.vmm.as_str(), vm.transport.as_str()), (vmm, "vsock"));
    assert_eq!(iso.level, Some(aibox_types::IsolationLevel::Vm));

    // Exec and files through the vsock relay; the guest has loopback only.
    assert_eq!(ok(&sh(&env, &id, "user", "id -u; pwd")), "1000\n/data\n");
    assert_eq!(ok(&sh(&env, &id, "root", "ls /sys/class/net")), "lo\n");
    let client = sb.client();
    client
        .write_file(
            "/data/in.txt",
            &mut &b"over vsock\n"[..],
            Some(0o644),
            None,
            false,
        )
        .unwrap();
    assert_eq!(
        ok(&sh(&env, &id, "user", "cat /data/in.txt")),
        "over vsock\n"
    );

    eprintln!("{name}: egress");
    // Egress: the guest's proxy port reaches the host's vsock port 3128,
    // which the supervisor hands to the sandbox's egress socket.
    let dir = env.dirs.sandbox(&id);
    let proxy = std::os::unix::net::UnixListener::bind(dir.join("egress.sock")).unwrap();
    proxy.set_nonblocking(true).unwrap();
    let served = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut c = loop {
            match proxy.accept() {
                Ok((c, _)) => break c,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(e) => return format!("nothing reached the egress socket: {e}"),
            }
        };
        c.set_nonblocking(false).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && c.read(&mut b).unwrap() == 1 {
            head.push(b[0]);
        }
        c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nvia-vsock\n")
            .unwrap();
        String::from_utf8(head).unwrap()
    });
    let out = ok(&sh(
        &env,
        &id,
        "user",
        "printf 'GET http://example.test/x HTTP/1.0\\r\\nHost: example.test\\r\\n\\r\\n' | busybox nc -w 10 127.0.0.1 3128",
    ));
    assert!(out.ends_with("\r\n\r\nvia-vsock\n"), "{out:?}");
    let head = served.join().unwrap();
    assert!(head.contains("example.test"), "{head}");

    eprintln!("{name}: token");
    // The agent's vsock port answers nothing without the token.
    let vs = sb.record().vm.as_ref().unwrap().vsock.clone().unwrap();
    let mut raw = aibox_runtime::microvm::firecracker::vsock_connect(&vs, 1024).unwrap();
    raw.write_all(&[b'0'; 64]).unwrap();
    raw.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut got = Vec::new();
    let _ = raw.read_to_end(&mut got);
    assert!(got.is_empty(), "answered a wrong token: {got:?}");

    eprintln!("{name}: port forward");
    // A port forward, and pause/resume through the VMM.
    start_httpd(&env, &id, 8089, "by-vsock");
    let mut body = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = sb.client().port_forward(8089) {
            if s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").is_ok() {
                body.clear();
                let _ = s.read_to_string(&mut body);
                if body.contains("by-vsock") {
                    break;
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(body.contains("by-vsock"), "{body}");
    eprintln!("{name}: pause");
    pause_refuse_resume(&env, &id);
    assert_eq!(
        ok(&sh(&env, &id, "user", "cat /data/in.txt")),
        "over vsock\n"
    );

    if snapshots {
        ok(&sh(
            &env,
            &id,
            "user",
            "sleep 1000 >/dev/null 2>&1 & echo $! > /data/pid",
        ));
        let snap = rt.snapshot(&id, Some("vsock-state")).unwrap();
        assert!(snap.memory);
        let mut again = snap.spec.clone();
        again.snapshot = Some(snap.id.clone());
        let restored = rt.create(&again).unwrap();
        let rid = restored.id().to_string();
        assert_eq!(
            ok(&sh(&env, &rid, "user", "cat /data/in.txt")),
            "over vsock\n"
        );
        ok(&sh(&env, &rid, "user", "kill -0 $(cat /data/pid)"));
        restored.destroy().unwrap();
        rt.delete_snapshot(&snap.id).unwrap();
    } else {
        let e = rt.snapshot(&id, None).unwrap_err().to_string();
        assert!(e.contains("cannot save"), "{e}");
    }
    ok(&env.run(&["rm", &id]));
    assert!(!dir.exists());
}

#[test]
fn microvm_over_vsock_under_qemu() {
    if let Some(t) = common::microvm_missing_tool() {
        eprintln!(
            "SKIP microvm_over_vsock_under_qemu: {t} is missing (scripts/setup.sh installs it)"
        );
        return;
    }
    if aibox_runtime::microvm::host::which("vhost-device-vsock").is_none() {
        eprintln!("SKIP microvm_over_vsock_under_qemu: vhost-device-vsock is missing (scripts/setup.sh installs it with cargo install)");
        return;
    }
    // Bad choices are refused before anything boots, with the reason.
    let mut env = Env::new("vmm-choice");
    let template = busybox_template(&env);
    let create = ["create", "--backend", "microvm", "--template", &template];
    for (k, v, needle) in [
        ("AIBOX_VMM", "warp", "must be qemu or firecracker"),
        ("AIBOX_VM_TRANSPORT", "pigeon", "must be net or vsock"),
    ] {
        env.vars = vec![(k.into(), v.into())];
        refused(&env.run(&create), needle);
    }
    if aibox_runtime::microvm::host::detect().firecracker.is_none() {
        env.vars = vec![("AIBOX_VMM".into(), "firecracker".into())];
        refused(&env.run(&create), "no `firecracker` on PATH");
    }
    assert!(env.runtime().list().is_empty());
    drop(env);

    vsock_scenario(
        "microvm_over_vsock_under_qemu",
        &[("AIBOX_VM_TRANSPORT", "vsock"), ("AIBOX_VMM", "qemu")],
        "qemu",
        false,
    );
}

/// The same scenario on Firecracker (with its jailer when it is installed
/// and we are root), snapshots included. Needs the `firecracker` binary
/// and a KVM that boots a stock guest (checked by booting the guest kernel
/// under QEMU with KVM when QEMU is here).
#[test]
fn firecracker_sandboxes() {
    let d = aibox_runtime::microvm::host::detect();
    if d.firecracker.is_none() {
        eprintln!("SKIP firecracker_sandboxes: no `firecracker` binary on PATH (it is not packaged in Debian; install a release from github.com/firecracker-microvm/firecracker)");
        return;
    }
    if let Err(e) = &d.kvm {
        eprintln!("SKIP firecracker_sandboxes: KVM is not usable: {e}");
        return;
    }
    if common::microvm_missing_tool().is_none() {
        let env = Env::new("fc-probe");
        let o = env.run(&["vm", "probe", "--accel", "kvm", "--timeout", "30"]);
        if !o.status.success() {
            eprintln!(
                "SKIP firecracker_sandboxes: KVM here does not boot a stock guest: {}",
                stderr(&o).trim()
            );
            return;
        }
    }
    vsock_scenario(
        "firecracker_sandboxes",
        &[("AIBOX_VMM", "firecracker")],
        "firecracker",
        true,
    );
}

/// M6, the review's probe: the guest's connections to the egress address
/// each start a host process (QEMU's `guestfwd` command), which had no
/// bound. Now the VM's host side is in a cgroup of its own with a pids
/// cap: a guest opening far more connections than that gets no more host
/// processes, and the VM goes on working.
#[test]
fn m6_a_guest_cannot_flood_the_host_with_egress_helpers() {
    if let Some(t) = common::microvm_missing_tool() {
        eprintln!("SKIP m6_a_guest_cannot_flood_the_host_with_egress_helpers: {t} is missing");
        return;
    }
    if !common::is_root() {
        eprintln!("SKIP m6_a_guest_cannot_flood_the_host_with_egress_helpers: the VMM's cgroup needs root (rootless hosts seldom delegate cgroups)");
        return;
    }
    let mut env = Env::new("m6");
    // A small budget, so a light flood meets it (the default is 4096).
    let cap = 256;
    env.vars = vec![("AIBOX_VMM_PIDS".into(), cap.to_string())];
    let template = busybox_template(&env);
    let spec = aibox_types::SandboxSpec {
        template,
        backend: Some(aibox_types::BackendKind::Microvm),
        network: aibox_types::NetworkMode::Full,
        memory: Some("512m".parse().unwrap()),
        disk: Some("64m".parse().unwrap()),
        ..Default::default()
    };
    let id = match create_spec(&env, &spec) {
        Ok(id) => id,
        Err(e) if e.contains("artifacts could not be built") => {
            eprintln!("SKIP m6: no guest kernel: {e}");
            return;
        }
        Err(e) => panic!("create failed: {e}"),
    };
    // The server's proxy, played by the test: it takes every connection
    // and keeps it, so every helper stays alive.
    let dir = env.dirs.sandbox(&id);
    let proxy = std::os::unix::net::UnixListener::bind(dir.join("egress.sock")).unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        while let Ok((c, _)) = proxy.accept() {
            keep.lock().unwrap().push(c);
        }
    });
    let helpers = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| c.windows(16).any(|w| w == b"internal-connect"))
            })
            .count()
    };
    // The flood runs in the background of the guest: while it lasts the
    // VM's own budget is spent (the guest hurts only itself); the host is
    // what must hold.
    let wanted = 300;
    let o = sh(
        &env,
        &id,
        "root",
        &format!(
            "setsid sh -c 'i=0; while [ $i -lt {wanted} ]; do sleep 25 | busybox nc 10.0.2.100 3128 & i=$((i+1)); done' </dev/null >/dev/null 2>&1 & echo started"
        ),
    );
    assert_eq!(stdout(&o).trim(), "started", "{}", stderr(&o));
    std::thread::sleep(std::time::Duration::from_secs(15));
    let (alive, kept) = (helpers(), held.lock().unwrap().len());
    // The cap was what stopped it: forks refused at the cgroup's limit.
    let rec = env.runtime().get(&id).unwrap().record().clone();
    let (_, pids_dir) = rec
        .cgroup
        .dirs
        .iter()
        .find(|(c, _)| c == "pids" || c == "unified")
        .expect("the VM's cgroup has pids");
    let events = std::fs::read_to_string(pids_dir.join("pids.events")).unwrap();
    let refused: u64 = events
        .lines()
        .find_map(|l| l.strip_prefix("max "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    eprintln!(
        "m6: {wanted} guest connections, {alive} host helpers, {kept} reached the proxy, {refused} forks refused at the cap"
    );
    assert!(kept > 10, "the flood never reached the host ({kept})");
    assert!(refused > 0, "the flood never met the cap: {events}");
    assert!(
        alive < cap,
        "{alive} host processes for the guest's connections"
    );
    // The guest hurt only itself: its VMM may even have aborted (QEMU
    // does when it cannot start a thread). Whatever became of it, the
    // sandbox goes cleanly and leaves nothing on the host.
    held.lock().unwrap().clear();
    assert!(env.run(&["rm", &id]).status.success());
    held.lock().unwrap().clear();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while helpers() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(helpers(), 0, "helpers outlived the sandbox");
}
