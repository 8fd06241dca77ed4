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
        "hello from layer 2\ngroup\nmotd\npasswd\nnew\nfrom-image\n/data\n1000\n"
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

    for n in [&name, &copy] {
        assert!(env.run(&["template", "rm", n]).status.success());
    }
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&out);
}
