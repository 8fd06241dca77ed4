//! OCI templates end to end: an image built here (around a static busybox)
//! imported with the CLI, then used by one-shot and persistent sandboxes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{stderr, stdout, Env};
use std::path::Path;

fn image(dir: &Path) -> bool {
    if !Path::new("/bin/busybox").exists() {
        eprintln!("SKIP OCI template tests: /bin/busybox is missing (scripts/setup.sh installs busybox-static)");
        return false;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/make_image.py");
    let ok = std::process::Command::new("python3")
        .arg(script)
        .arg(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "make_image.py failed");
    true
}

#[test]
fn imported_images_run_with_their_layers_and_config() {
    require_sandboxes!();
    let env = Env::new("oci");
    let src = env.dirs.run.with_extension("image");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src).unwrap();
    if !image(&src) {
        return;
    }
    let name = format!("test/busybox:{}", aibox_runtime::random_id());
    let o = env.run(&["template", "import", src.to_str().unwrap(), "--name", &name]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with(&format!("{name} (2 layers")),
        "{}",
        stdout(&o)
    );
    let ls = stdout(&env.run(&["template", "ls"]));
    assert!(ls.contains(&name) && ls.contains("host"), "{ls}");

    // Layers, whiteouts, opaque directories, Env and WorkingDir took effect.
    let o = env.run(&[
        "run",
        "--template",
        &name,
        "--",
        "sh",
        "-c",
        "cat /etc/motd; ls /etc; ls /opq; echo $IMG_VAR; pwd; id -u",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "hello from layer 2\ngroup\nhostname\nhosts\nmotd\npasswd\nnew\nfrom-image\n/data\n1000\n"
    );
    // The caller's settings win over the image's.
    let o = env.run(&[
        "run",
        "--template",
        &name,
        "-e",
        "IMG_VAR=mine",
        "--workdir",
        "/tmp",
        "--",
        "sh",
        "-c",
        "echo $IMG_VAR; pwd",
    ]);
    assert_eq!(stdout(&o), "mine\n/tmp\n", "{}", stderr(&o));

    // A persistent sandbox keeps its writes in its own layer; the template
    // cannot be removed while it runs.
    let o = env.run(&["create", "--template", &name]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    let o = env.run(&[
        "exec",
        &id,
        "--",
        "sh",
        "-c",
        "echo mine > /data/note; cat /data/note",
    ]);
    assert_eq!(stdout(&o), "mine\n", "{}", stderr(&o));
    let o = env.run(&["template", "rm", &name]);
    assert!(
        !o.status.success() && stderr(&o).contains(&id),
        "{}",
        stderr(&o)
    );
    let o = env.run(&["run", "--template", &name, "--", "ls", "/data"]);
    assert_eq!(stdout(&o), "", "the image itself is unchanged");
    assert!(env.run(&["rm", &id]).status.success());

    // Export and import again: the same result from the copy.
    let out = env.dirs.run.with_extension("export");
    let _ = std::fs::remove_dir_all(&out);
    let o = env.run(&["template", "export", &name, out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let copy = format!("{name}-copy");
    let o = env.run(&["template", "import", out.to_str().unwrap(), "--name", &copy]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = env.run(&[
        "run",
        "--template",
        &copy,
        "--",
        "sh",
        "-c",
        "cat /etc/motd; ls /opq",
    ]);
    assert_eq!(stdout(&o), "hello from layer 2\nnew\n", "{}", stderr(&o));

    // Unknown templates and bad names get clear errors.
    let o = env.run(&["run", "--template", "no/such:1", "--", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("template_not_found"), "{}", stderr(&o));
    let o = env.run(&[
        "template",
        "import",
        src.to_str().unwrap(),
        "--name",
        "../bad",
    ]);
    assert!(!o.status.success() && stderr(&o).contains("not a valid template name"));

    // A snapshot becomes a template: its layer on top of the image's.
    let o = env.run(&["create", "--template", &name]);
    let id = stdout(&o).trim().to_string();
    let o = env.run(&["exec", &id, "--", "sh", "-c", "echo kept > /data/note"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let snap = stdout(&env.run(&["snapshot", "create", &id]))
        .trim()
        .to_string();
    let promoted = format!("{name}-promoted");
    let o = env.run(&["template", "promote", &snap, &promoted]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("(3 layers)"), "{}", stdout(&o));
    let o = env.run(&[
        "run",
        "--template",
        &promoted,
        "--",
        "sh",
        "-c",
        "cat /data/note /etc/motd",
    ]);
    assert_eq!(stdout(&o), "kept\nhello from layer 2\n", "{}", stderr(&o));
    assert!(env.run(&["rm", &id]).status.success());
    assert!(env.run(&["snapshot", "rm", &snap]).status.success());
    // One taken from the host template sits on the host template.
    let o = env.run(&["create"]);
    let hid = stdout(&o).trim().to_string();
    env.run(&[
        "exec",
        &hid,
        "--",
        "sh",
        "-c",
        "echo host-kept > /workspace/note",
    ]);
    let hsnap = stdout(&env.run(&["snapshot", "create", &hid]))
        .trim()
        .to_string();
    let on_host = format!("{name}-onhost");
    let o = env.run(&["template", "promote", &hsnap, &on_host]);
    assert!(
        stdout(&o).contains("on host"),
        "{} {}",
        stdout(&o),
        stderr(&o)
    );
    let o = env.run(&[
        "run",
        "--template",
        &on_host,
        "--",
        "sh",
        "-c",
        "cat /workspace/note; python3 -c 'print(7)'",
    ]);
    assert_eq!(stdout(&o), "host-kept\n7\n", "{}", stderr(&o));
    let o = env.run(&[
        "template",
        "export",
        &on_host,
        out.with_extension("x").to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("cannot be exported"),
        "{}",
        stderr(&o)
    );
    assert!(env.run(&["rm", &hid]).status.success());
    assert!(env.run(&["snapshot", "rm", &hsnap]).status.success());

    for n in [&name, &copy, &promoted, &on_host] {
        assert!(env.run(&["template", "rm", n]).status.success());
    }
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&out);
}

/// A child process killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `skopeo copy SRC DEST` (to a loopback registry, over plain HTTP), with
/// its own (empty) credentials file under `base`: the default one under
/// /run/containers may be another user's.
fn skopeo_copy(base: &Path, src: &str, dest: &str) {
    let o = std::process::Command::new("skopeo")
        .env("REGISTRY_AUTH_FILE", base.join("auth.json"))
        .args(["copy", "--dest-tls-verify=false", src, dest])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Debian's docker-registry on a free loopback port, storing under
/// `base`: the process (killed when dropped), its port, its storage.
fn start_registry(base: &Path) -> (Child, u16, std::path::PathBuf) {
    let port = free_port();
    let storage = base.join("storage");
    let config = base.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        ),
    )
    .unwrap();
    let registry = Child(
        std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the registry did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (registry, port, storage)
}

#[test]
fn pulls_from_a_registry_on_loopback() {
    require_sandboxes!();
    for tool in ["/usr/bin/docker-registry", "/usr/bin/skopeo"] {
        if !Path::new(tool).exists() {
            eprintln!("SKIP pulls_from_a_registry_on_loopback: {tool} is missing (scripts/setup.sh installs docker-registry and skopeo as root)");
            return;
        }
    }
    let env = Env::new("pull");
    let base = env.dirs.run.with_extension("registry");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let layout = base.join("layout");
    if !image(&layout) {
        return;
    }
    // Debian's docker-registry on a free loopback port, filled by skopeo.
    let (_registry, port, storage) = start_registry(&base);
    let tag = format!("t{}", aibox_runtime::random_id());
    let reference = format!("127.0.0.1:{port}/test/busybox:{tag}");
    skopeo_copy(
        &base,
        &format!("oci:{}:1", layout.display()),
        &format!("docker://{reference}"),
    );

    let o = env.run(&["template", "pull", &reference]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with(&format!("{reference} (2 layers")),
        "{}",
        stdout(&o)
    );
    let o = env.run(&[
        "run",
        "--template",
        &reference,
        "--",
        "sh",
        "-c",
        "cat /etc/motd; ls /opq; pwd",
    ]);
    assert_eq!(
        stdout(&o),
        "hello from layer 2\nnew\n/data\n",
        "{}",
        stderr(&o)
    );
    // Pulled again: every layer is already here.
    let o = env.run(&[
        "template",
        "pull",
        &reference,
        "--name",
        &format!("again:{tag}"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o).matches("(present)").count(), 2, "{}", stderr(&o));
    // Missing tags and unreachable registries are clear errors.
    let o = env.run(&[
        "template",
        "pull",
        &format!("127.0.0.1:{port}/test/busybox:nope"),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("has no image"),
        "{}",
        stderr(&o)
    );
    let o = env.run(&[
        "template",
        "pull",
        &format!("127.0.0.1:{}/x:1", free_port()),
    ]);
    assert!(stderr(&o).contains("[unavailable]"), "{}", stderr(&o));
    // A registry that serves a layer not matching its digest is refused,
    // and nothing of it is kept.
    for n in [reference.as_str(), &format!("again:{tag}")] {
        assert!(env.run(&["template", "rm", n]).status.success());
    }
    let tampered = format!("127.0.0.1:{port}/test/tampered:{tag}");
    skopeo_copy(
        &base,
        &format!("oci:{}:1", layout.display()),
        &format!("docker://{tampered}"),
    );
    // skopeo pushes both layers gzipped: the small one's blob is made the
    // big one's bytes (a valid layer, under the wrong digest).
    let blobs = storage.join("docker/registry/v2/blobs/sha256");
    let mut layers: Vec<(u64, std::path::PathBuf)> = Vec::new();
    for d in std::fs::read_dir(&blobs).unwrap().flatten() {
        for b in std::fs::read_dir(d.path()).unwrap().flatten() {
            let data = b.path().join("data");
            let bytes = std::fs::read(&data).unwrap();
            if bytes.starts_with(&[0x1f, 0x8b]) {
                layers.push((bytes.len() as u64, data));
            }
        }
    }
    layers.sort();
    assert_eq!(layers.len(), 2, "{layers:?}");
    std::fs::copy(&layers[1].1, &layers[0].1).unwrap();
    let o = env.run(&["template", "prune"]);
    assert!(o.status.success());
    let o = env.run(&["template", "pull", &tampered]);
    assert!(
        !o.status.success() && stderr(&o).contains("digest mismatch"),
        "{}",
        stderr(&o)
    );
    let ls = stdout(&env.run(&["template", "ls"]));
    assert!(!ls.contains("tampered"), "{ls}");
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn pulls_through_token_authentication() {
    require_sandboxes!();
    let env = Env::new("token");
    let base = env.dirs.run.with_extension("token");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    if !image(&base) {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_registry.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .arg(&base)
        .args(["alice", "s3cret"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _registry = Child(child);
    let reference = format!("127.0.0.1:{}/private/bb:1", line.trim());
    let name = format!("private:{}", aibox_runtime::random_id());
    // No credentials, wrong ones: refused, and the error says what to do.
    let o = env.run(&["template", "pull", &reference, "--name", &name]);
    assert!(stderr(&o).contains("[permission_denied]"), "{}", stderr(&o));
    let o = env
        .aibox(&["template", "pull", &reference, "--name", &name])
        .env("AIBOX_REGISTRY_USER", "alice")
        .env("AIBOX_REGISTRY_PASSWORD", "wrong")
        .env("AIBOX_REGISTRY", reference.split('/').next().unwrap())
        .output()
        .unwrap();
    assert!(stderr(&o).contains("[permission_denied]"), "{}", stderr(&o));
    // The right ones, but for another registry (or for none): never sent
    // (the security review's M5); for this one: pulled.
    for scope in [None, Some("elsewhere.example:5000")] {
        let mut c = env.aibox(&["template", "pull", &reference, "--name", &name]);
        c.env("AIBOX_REGISTRY_USER", "alice")
            .env("AIBOX_REGISTRY_PASSWORD", "s3cret");
        match scope {
            Some(r) => c.env("AIBOX_REGISTRY", r),
            None => c.env_remove("AIBOX_REGISTRY"),
        };
        let o = c.output().unwrap();
        assert!(
            stderr(&o).contains("[permission_denied]"),
            "{scope:?}: {}",
            stderr(&o)
        );
    }
    let o = env
        .aibox(&["template", "pull", &reference, "--name", &name])
        .env("AIBOX_REGISTRY_USER", "alice")
        .env("AIBOX_REGISTRY_PASSWORD", "s3cret")
        .env("AIBOX_REGISTRY", reference.split('/').next().unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(env.run(&["template", "rm", &name]).status.success());
    // From a docker config file, as `docker login` leaves it.
    let home = base.join("home");
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    let registry = reference.split('/').next().unwrap();
    std::fs::write(
        home.join(".docker/config.json"),
        format!(r#"{{"auths": {{"{registry}": {{"auth": "YWxpY2U6czNjcmV0"}}}}}}"#),
    )
    .unwrap();
    let o = env
        .aibox(&["template", "pull", &reference, "--name", &name])
        .env("HOME", &home)
        .env_remove("DOCKER_CONFIG")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = env.run(&["run", "--template", &name, "--", "cat", "/etc/motd"]);
    assert_eq!(stdout(&o), "hello from layer 2\n", "{}", stderr(&o));
    assert!(env.run(&["template", "rm", &name]).status.success());
    let _ = std::fs::remove_dir_all(&base);
}

/// Import the busybox test image as a fresh template; its name.
fn busybox_template(env: &Env, what: &str) -> Option<String> {
    let src = env.dirs.run.with_extension(format!("{what}-image"));
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src).unwrap();
    if !image(&src) {
        return None;
    }
    let name = format!("test/{what}:{}", aibox_runtime::random_id());
    let o = env.run(&["template", "import", src.to_str().unwrap(), "--name", &name]);
    assert!(o.status.success(), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&src);
    Some(name)
}

#[test]
fn builds_run_steps_in_sandboxes_and_reuse_the_cache() {
    require_sandboxes!();
    let env = Env::new("build");
    let Some(base) = busybox_template(&env, "buildbase") else {
        return;
    };
    let ctx = env.dirs.run.with_extension("ctx");
    let _ = std::fs::remove_dir_all(&ctx);
    std::fs::create_dir_all(ctx.join("app/sub")).unwrap();
    std::fs::write(ctx.join("app/hello.txt"), "hello v1\n").unwrap();
    std::fs::write(ctx.join("app/sub/deep.txt"), "deep\n").unwrap();
    std::fs::write(ctx.join("app/debug.log"), "ignored\n").unwrap();
    std::fs::write(
        ctx.join(".dockerignore"),
        "# not for the image\napp/*.log\n",
    )
    .unwrap();
    // A token of this run's own: the cache (in the shared data dir)
    // starts without its steps.
    let token = aibox_runtime::random_id();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "# a comment\nFROM {base}\nRUN echo built > /etc/built && rm /etc/motd # {token}\nCOPY app /srv/app/\nENV STAGE=two \\\n    OTHER=\"x y\"\nWORKDIR /srv/app\nUSER user\nRUN id -u > /tmp/uid && echo \"$STAGE\" > /tmp/stage\nCMD [\"sh\"]\n"
        ),
    )
    .unwrap();
    let name = format!("test/built:{}", aibox_runtime::random_id());
    let build = |extra: &[&str]| {
        let mut args = vec!["template", "build", "-t", &name];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        env.run(&args)
    };
    let o = build(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = stderr(&o);
    assert!(
        log.contains("[1/8] FROM") && log.contains("[8/8] CMD"),
        "{log}"
    );
    assert!(log.contains("-> layer sha256:"), "{log}");
    assert!(!log.contains("(cached)"), "{log}");
    assert!(
        stdout(&o).starts_with(&format!("{name} (5 layers")),
        "{}",
        stdout(&o)
    );

    // Layers (a whiteout too), COPY, ENV, WORKDIR and USER took effect.
    let o = env.run(&[
        "run",
        "--template",
        &name,
        "--",
        "sh",
        "-c",
        "cat /etc/built /srv/app/hello.txt /srv/app/sub/deep.txt /tmp/uid /tmp/stage; ls /etc/motd /srv/app/debug.log 2>&1 | wc -l; echo \"$STAGE|$OTHER\"; pwd; id -u",
    ]);
    assert_eq!(
        stdout(&o),
        "built\nhello v1\ndeep\n1000\ntwo\n2\ntwo|x y\n/srv/app\n1000\n",
        "{}",
        stderr(&o)
    );
    let info: serde_json::Value =
        serde_json::from_str(&stdout(&env.run(&["template", "inspect", &name]))).unwrap();
    assert_eq!(info["config"]["user"], "user");
    assert_eq!(info["config"]["cmd"], serde_json::json!(["sh"]));
    assert!(info["source"].as_str().unwrap().starts_with("build of"));
    // The build cache is not a template.
    let ls = stdout(&env.run(&["template", "ls"]));
    assert!(ls.contains(&name) && !ls.contains(".build/"), "{ls}");

    // Again: every step from the cache, the same digest.
    let o = build(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o).matches("(cached)").count(), 7, "{}", stderr(&o));
    let digest = info["digest"].as_str().unwrap().to_string();
    assert!(stdout(&o).contains(&digest), "{}", stdout(&o));
    // A changed file reruns its COPY and what follows, not what precedes.
    std::fs::write(ctx.join("app/hello.txt"), "hello v2\n").unwrap();
    let o = build(&[]);
    let log = stderr(&o);
    assert!(
        log.contains(&format!("rm /etc/motd # {token}  (cached)")),
        "{log}"
    );
    assert!(!log.contains("COPY app /srv/app/  (cached)"), "{log}");
    assert!(!log.contains("/tmp/stage  (cached)"), "{log}");
    let o = env.run(&[
        "run",
        "--template",
        &name,
        "--",
        "cat",
        "/srv/app/hello.txt",
    ]);
    assert_eq!(stdout(&o), "hello v2\n");
    // A changed ignored file changes nothing.
    std::fs::write(ctx.join("app/debug.log"), "other\n").unwrap();
    let o = build(&[]);
    assert_eq!(stderr(&o).matches("(cached)").count(), 7, "{}", stderr(&o));
    // --no-cache runs everything.
    let o = build(&["--no-cache"]);
    assert!(
        o.status.success() && !stderr(&o).contains("(cached)"),
        "{}",
        stderr(&o)
    );

    // A failing step names itself and its exit code; --keep-failed keeps
    // its sandbox, with what the step wrote.
    std::fs::write(
        ctx.join("Dockerfile.fail"),
        format!("FROM {base}\nRUN echo partial > /partial; echo to-stderr >&2; exit 7\n"),
    )
    .unwrap();
    let recipe = ctx.join("Dockerfile.fail");
    let fail = |extra: &[&str]| {
        let mut args = vec!["template", "build", "-f", recipe.to_str().unwrap()];
        args.extend_from_slice(&["-t", "test/failed:1"]);
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        env.run(&args)
    };
    let o = fail(&[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("to-stderr"), "{err}");
    assert!(
        err.contains("step 2/2 `RUN echo partial > /partial; echo to-stderr >&2; exit 7` failed: exit code 7"),
        "{err}"
    );
    assert!(!err.contains("kept"), "{err}");
    assert!(
        env.runtime().list().is_empty(),
        "a failed step's sandbox is gone"
    );
    let o = fail(&["--keep-failed"]);
    let err = stderr(&o);
    let id = err
        .split("aibox shell --local ")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .unwrap_or_else(|| panic!("{err}"))
        .to_string();
    let o = env.run(&["exec", &id, "--", "cat", "/partial"]);
    assert_eq!(stdout(&o), "partial\n", "{}", stderr(&o));
    assert!(env.run(&["rm", &id]).status.success());
    let ls = stdout(&env.run(&["template", "ls"]));
    assert!(!ls.contains("test/failed"), "{ls}");

    // Bad recipes and contexts: clear errors, nothing built.
    std::fs::write(ctx.parent().unwrap().join("secret-outside"), "s").unwrap();
    let _ = std::fs::remove_file(ctx.join("escape"));
    std::os::unix::fs::symlink(ctx.parent().unwrap(), ctx.join("escape")).unwrap();
    for (recipe, want) in [
        (
            format!("FROM {base}\nADD x /y\n"),
            "Dockerfile.bad:2: ADD is not supported",
        ),
        (
            format!("FROM {base}\nARG V=1\n"),
            "Dockerfile.bad:2: ARG is not supported",
        ),
        (
            format!("FROM {base}\nCOPY ../secret-outside /x\n"),
            "outside the build context",
        ),
        (
            format!("FROM {base}\nCOPY escape/secret-outside /x\n"),
            "leads outside the build context",
        ),
        (
            format!("FROM {base}\nCOPY nothing-here /x\n"),
            "no such file in the build context",
        ),
        (
            format!("FROM {base}\nUSER nobody-here\n"),
            "is not in its /etc/passwd",
        ),
        ("FROM no/such:1\nRUN true\n".to_string(), "no/such:1"),
        (
            "RUN true\n".to_string(),
            "the first instruction must be FROM",
        ),
    ] {
        std::fs::write(ctx.join("Dockerfile.bad"), &recipe).unwrap();
        let f = ctx.join("Dockerfile.bad");
        let o = env.run(&[
            "template",
            "build",
            "-f",
            f.to_str().unwrap(),
            "-t",
            "test/bad:1",
            ctx.to_str().unwrap(),
        ]);
        assert!(!o.status.success(), "{recipe}");
        assert!(stderr(&o).contains(want), "{recipe}: {}", stderr(&o));
    }
    let o = env.run(&["template", "build", "-t", "../bad", ctx.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("not a valid template name"),
        "{}",
        stderr(&o)
    );
    let o = env.run(&[
        "template",
        "build",
        "--allow",
        "example.com",
        "-t",
        "x:1",
        ctx.to_str().unwrap(),
    ]);
    assert!(
        stderr(&o).contains("needs the aibox server"),
        "{}",
        stderr(&o)
    );

    // prune --build-cache drops the cache's layers, never a template's.
    let o = env.run(&["template", "prune", "--build-cache"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = env.run(&["run", "--template", &name, "--", "cat", "/etc/built"]);
    assert_eq!(stdout(&o), "built\n", "{}", stderr(&o));
    let o = build(&[]);
    assert!(!stderr(&o).contains("(cached)"), "{}", stderr(&o));

    for n in [&name, &base] {
        assert!(env.run(&["template", "rm", n]).status.success());
    }
    let _ = std::fs::remove_file(ctx.parent().unwrap().join("secret-outside"));
    let _ = std::fs::remove_dir_all(&ctx);
}

#[test]
fn debian_from_debootstrap_goes_through_a_registry() {
    require_sandboxes!();
    let env = Env::new("debian");
    let ctx = env.dirs.run.with_extension("debian");
    let _ = std::fs::remove_dir_all(&ctx);
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("aibox.toml"),
        "from = \"debootstrap:bookworm\"\nuser = \"app\"\nworkdir = \"/home/app\"\n[[step]]\nrun = \"useradd -m -u 1001 app && rm /etc/debian_version && echo debian-test > /etc/marker\"\n[[step]]\nenv = { APP_MODE = \"test\" }\n",
    )
    .unwrap();
    let tag = format!("t{}", aibox_runtime::random_id());
    let name = format!("test/debian:{tag}");
    let build = env.run(&["template", "build", "-t", &name, ctx.to_str().unwrap()]);
    if !common::is_root() {
        // debootstrap creates files as root: refused clearly without it.
        assert!(
            stderr(&build).contains("FROM debootstrap: needs root"),
            "{}",
            stderr(&build)
        );
        eprintln!("SKIP debian_from_debootstrap_goes_through_a_registry: debootstrap needs root");
        let _ = std::fs::remove_dir_all(&ctx);
        return;
    }
    for tool in [
        "/usr/sbin/debootstrap",
        "/usr/bin/docker-registry",
        "/usr/bin/skopeo",
    ] {
        if !Path::new(tool).exists() {
            eprintln!("SKIP debian_from_debootstrap_goes_through_a_registry: {tool} is missing (scripts/setup.sh installs it as root)");
            let _ = std::fs::remove_dir_all(&ctx);
            return;
        }
    }
    let err = stderr(&build);
    if !build.status.success()
        && (err.contains("Failed getting release file") || err.contains("Couldn't download"))
    {
        eprintln!("SKIP debian_from_debootstrap_goes_through_a_registry: the Debian mirror is unreachable: {err}");
        let _ = std::fs::remove_dir_all(&ctx);
        return;
    }
    assert!(build.status.success(), "{err}");
    // Exported, pushed by skopeo to a registry, pulled back by aibox.
    let base = env.dirs.run.with_extension("debian-registry");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let layout = base.join("layout");
    let o = env.run(&["template", "export", &name, layout.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (_registry, port, _) = start_registry(&base);
    let reference = format!("127.0.0.1:{port}/test/debian:{tag}");
    skopeo_copy(
        &base,
        &format!("oci:{}", layout.display()),
        &format!("docker://{reference}"),
    );
    assert!(env.run(&["template", "rm", &name]).status.success());
    let o = env.run(&["template", "pull", &reference]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Layers, the whiteout, env, workdir and the image's user (by name).
    let o = env.run(&[
        "run",
        "--template",
        &reference,
        "--",
        "sh",
        "-c",
        "id -un; id -u; pwd; echo $APP_MODE; cat /etc/marker; test -e /etc/debian_version || echo whited-out; . /etc/os-release; echo $VERSION_CODENAME; dpkg-query -W -f='${Package}\\n' dpkg",
    ]);
    assert_eq!(
        stdout(&o),
        "app\n1001\n/home/app\ntest\ndebian-test\nwhited-out\nbookworm\ndpkg\n",
        "{}",
        stderr(&o)
    );
    // The caller can still ask for root.
    let o = env.run(&[
        "run",
        "--template",
        &reference,
        "--user",
        "root",
        "--",
        "id",
        "-u",
    ]);
    assert_eq!(stdout(&o), "0\n", "{}", stderr(&o));
    assert!(env.run(&["template", "rm", &reference]).status.success());
    let _ = std::fs::remove_dir_all(&base);
    let _ = std::fs::remove_dir_all(&ctx);
}

#[test]
fn file_count_bombs_hit_the_entry_limit() {
    if !Path::new("/bin/busybox").exists() {
        eprintln!("SKIP file_count_bombs_hit_the_entry_limit: /bin/busybox is missing (scripts/setup.sh installs busybox-static)");
        return;
    }
    let env = Env::new("bomb");
    let src = env.dirs.run.with_extension("bomb");
    let _ = std::fs::remove_dir_all(&src);
    let many = src.join("many");
    std::fs::create_dir_all(&many).unwrap();
    for i in 0..3000 {
        std::fs::write(many.join(format!("f{i}")), "").unwrap();
    }
    // A layer of this run's own (the store dedupes layers across runs).
    std::fs::write(many.join(aibox_runtime::random_id()), "").unwrap();
    let layout = src.join("layout");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/make_image.py");
    assert!(std::process::Command::new("python3")
        .arg(script)
        .arg(&layout)
        .args(["1", "--extra"])
        .arg(&many)
        .status()
        .unwrap()
        .success());
    let name = format!("test/bomb:{}", aibox_runtime::random_id());
    let o = env
        .aibox(&[
            "template",
            "import",
            layout.to_str().unwrap(),
            "--name",
            &name,
        ])
        .env("AIBOX_MAX_LAYER_ENTRIES", "2000")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("more than 2000 entries"),
        "{}",
        stderr(&o)
    );
    let ls = stdout(&env.run(&["template", "ls"]));
    assert!(!ls.contains(&name), "{ls}");
    // Nothing of the bomb layer stays behind, half-unpacked or whole.
    let blob = |d: &str| -> serde_json::Value {
        let hex = d.trim_start_matches("sha256:");
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap())
            .unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = blob(index["manifests"][0]["digest"].as_str().unwrap());
    let bomb = manifest["layers"][2]["digest"].as_str().unwrap();
    let hex = bomb.trim_start_matches("sha256:");
    let layers = env.dirs.data.join("templates/oci/layers");
    let leftovers: Vec<_> = std::fs::read_dir(&layers)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(hex))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Under the limit, the same image imports.
    let o = env.run(&[
        "template",
        "import",
        layout.to_str().unwrap(),
        "--name",
        &name,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(env.run(&["template", "rm", &name]).status.success());
    assert!(env.run(&["template", "prune"]).status.success());
    let _ = std::fs::remove_dir_all(&src);
}
