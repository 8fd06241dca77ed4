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
    let _registry = Child(
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
    let tag = format!("t{}", aibox_runtime::random_id());
    let reference = format!("127.0.0.1:{port}/test/busybox:{tag}");
    let o = std::process::Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:1", layout.display()))
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

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
    let o = std::process::Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:1", layout.display()))
        .arg(format!("docker://{tampered}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
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
        .output()
        .unwrap();
    assert!(stderr(&o).contains("[permission_denied]"), "{}", stderr(&o));
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
