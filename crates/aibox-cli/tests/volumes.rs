//! Volumes end to end through a live server: bad input refused with
//! nothing left behind, two sandboxes sharing one, the quota enforced
//! inside (root) or reported as not enforced (rootless), in-use volumes
//! kept, a server SIGKILL and restart survived, snapshots of sandboxes
//! saying their volumes are not included, per-key ceilings, and the CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aibox_client::{Body, Client, ClientError, Method};
use common::mcp::Mcp;
use common::server::{create, data_dir, exec, new_key, Server};
use serde_json::{json, Value};

fn status(c: &Client, method: Method, path: &str, body: Value) -> (u16, Value) {
    match c.json(method, path, Body::Json(body)) {
        Ok(v) => (200, v),
        Err(ClientError::Api {
            status,
            code,
            message,
        }) => (status, json!({"code": code.as_str(), "message": message})),
        Err(e) => panic!("{path}: {e}"),
    }
}

/// The volume directories on disk (what a refused create must not leave).
fn volume_dirs(s: &Server) -> Vec<String> {
    std::fs::read_dir(s.data.join("volumes"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn sh(c: &Client, id: &str, cmd: &str) -> Value {
    exec(c, id, json!(["sh", "-c", cmd]))
}

#[test]
fn volumes_share_keep_their_quota_and_outlive_sandboxes_and_restarts() {
    if !common::sandboxes_supported() {
        eprintln!("SKIP volumes: sandboxes are not supported on this host");
        return;
    }
    let data = data_dir("volumes");
    let mut s = Server::start(&data);
    let c = s.admin();

    // Bad input: each a clear error with a stable code, nothing made.
    for (body, code, says) in [
        (json!({"name": "../x"}), "invalid_argument", "name"),
        (json!({"name": ""}), "invalid_argument", "name"),
        (json!({"name": "-x"}), "invalid_argument", "name"),
        (json!({"name": "a".repeat(64)}), "invalid_argument", "name"),
        (
            json!({"name": "v", "size": "1k"}),
            "invalid_argument",
            "16m",
        ),
        (
            json!({"name": "v", "size": "20t"}),
            "invalid_argument",
            "8t",
        ),
        (
            json!({"name": "v", "size": "lots"}),
            "invalid_argument",
            "size",
        ),
        (
            json!({"name": "v", "uid": 70000}),
            "invalid_argument",
            "uid",
        ),
        (
            json!({"name": "v", "labels": {"": "x"}}),
            "invalid_argument",
            "labels",
        ),
        (
            json!({"name": "v", "colour": "red"}),
            "invalid_argument",
            "colour",
        ),
    ] {
        let (st, e) = status(&c, Method::POST, "/v1/volumes", body.clone());
        assert_eq!(
            (st, e["code"].as_str().unwrap()),
            (400, code),
            "{body}: {e}"
        );
        assert!(e["message"].as_str().unwrap().contains(says), "{body}: {e}");
    }
    assert!(volume_dirs(&s).is_empty(), "{:?}", volume_dirs(&s));

    let (st, v) = status(
        &c,
        Method::POST,
        "/v1/volumes",
        json!({"name": "data", "size": "32m", "labels": {"team": "ml"}}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["quota"]["bytes"], 32 << 20);
    let enforced = common::is_root();
    assert_eq!(v["quota"]["enforced"], enforced, "{v}");
    if !enforced {
        assert!(
            v["quota"]["how"].as_str().unwrap().contains("rootless"),
            "{v}"
        );
    }
    let (st, e) = status(&c, Method::POST, "/v1/volumes", json!({"name": "data"}));
    assert_eq!((st, e["code"].as_str().unwrap()), (409, "already_exists"));
    assert_eq!(volume_dirs(&s).len(), 1);

    // Mounts: bad targets and unknown volumes refused.
    for (vols, st_want) in [
        (json!([{"name": "data", "path": "/proc/x"}]), 400),
        (json!([{"name": "data", "path": "rel"}]), 400),
        (
            json!([{"name": "data", "path": "/a"}, {"name": "data", "path": "/a"}]),
            400,
        ),
        (json!([{"name": "nope", "path": "/a"}]), 404),
    ] {
        let (st, e) = status(&c, Method::POST, "/v1/sandboxes", json!({"volumes": vols}));
        assert_eq!(st, st_want, "{vols}: {e}");
    }

    // Two sandboxes at once, one read-only: they see each other's files,
    // as the same user (ids are the sandbox's own in the volume).
    let a = create(&c, json!({"volumes": [{"name": "data", "path": "/data"}]}));
    let b = create(
        &c,
        json!({"volumes": [{"name": "data", "path": "/data", "read_only": true}]}),
    );
    let r = sh(
        &c,
        &a,
        "echo from-a > /data/shared && stat -c %u /data/shared",
    );
    assert_eq!(r["stdout"], "1000\n", "{r}");
    let r = sh(
        &c,
        &b,
        "cat /data/shared && stat -c %u /data/shared && touch /data/x",
    );
    assert_eq!(r["stdout"], "from-a\n1000\n", "{r}");
    assert_ne!(r["exit_code"], 0, "a read-only mount refuses writes: {r}");
    let v = c
        .json(Method::GET, "/v1/volumes/data", Body::Empty)
        .unwrap();
    let mut users: Vec<&str> = v["in_use_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    users.sort();
    let mut want = vec![a.as_str(), b.as_str()];
    want.sort();
    assert_eq!(users, want);

    // The quota: past it a write fails inside and the host's copy stays
    // within it.
    let r = sh(
        &c,
        &a,
        "dd if=/dev/zero of=/data/big bs=1M count=48 2>&1; echo rc=$?",
    );
    let out = r["stdout"].as_str().unwrap();
    if enforced {
        assert!(
            out.contains("No space left") && !out.contains("rc=0"),
            "{out}"
        );
        let v = c
            .json(Method::GET, "/v1/volumes/data", Body::Empty)
            .unwrap();
        let used = v["used_bytes"].as_u64().unwrap();
        assert!(used <= 32 << 20 && used > 24 << 20, "{v}");
        let id = v["id"].as_str().unwrap();
        let image = std::fs::metadata(s.data.join(format!("volumes/{id}/disk.ext4"))).unwrap();
        use std::os::unix::fs::MetadataExt;
        // The quota, plus ext4's own journal and tables (about a fifth
        // for a volume this small), and nothing more.
        assert!(image.blocks() * 512 < 48 << 20, "{}", image.blocks() * 512);
    } else {
        assert!(out.contains("rc=0"), "{out}");
        eprintln!("   rootless: the quota is reported as not enforced, and is not");
    }
    sh(&c, &a, "rm -f /data/big");

    // In use: not removed.
    let (st, e) = status(&c, Method::DELETE, "/v1/volumes/data", json!(null));
    assert_eq!((st, e["code"].as_str().unwrap()), (409, "conflict"), "{e}");

    // A sandbox's snapshot says its volume is not in it; a restore mounts
    // the volume again.
    let snap = c
        .json(
            Method::POST,
            &format!("/v1/sandboxes/{a}/snapshots"),
            Body::Empty,
        )
        .unwrap();
    assert_eq!(
        snap["volumes"],
        json!([{"name": "data", "path": "/data", "read_only": false, "included": false}]),
        "{snap}"
    );
    let restored = c
        .json(
            Method::POST,
            &format!("/v1/snapshots/{}/restore", snap["id"].as_str().unwrap()),
            Body::Empty,
        )
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sh(&c, &restored, "cat /data/shared")["stdout"], "from-a\n");
    // An agent restoring it through MCP inherits a read-write volume:
    // the user is asked first (this client cannot answer: refused).
    let mut mcp = Mcp::connect(&s.addr, &[("authorization", &format!("Bearer {}", s.key))])
        .expect("MCP connects");
    let (failed, text) = mcp.tool(
        "restore_snapshot",
        json!({"snapshot_id": snap["id"].as_str().unwrap()}),
    );
    assert!(
        failed && text.contains("needs the user's approval") && text.contains("data:/data"),
        "{text}"
    );

    // SIGKILL the server: the volume, its mounts in running sandboxes and
    // its files are all there after a restart.
    s.kill9();
    let s2 = Server::start(&data);
    let c2 = s2.admin();
    assert_eq!(sh(&c2, &a, "cat /data/shared")["stdout"], "from-a\n");
    let v = c2
        .json(Method::GET, "/v1/volumes?label=team=ml", Body::Empty)
        .unwrap();
    assert_eq!(v["volumes"][0]["name"], "data", "{v}");
    for id in [&a, &b, &restored] {
        c2.call(Method::DELETE, &format!("/v1/sandboxes/{id}"), Body::Empty)
            .unwrap();
    }
    c2.call(
        Method::DELETE,
        &format!("/v1/snapshots/{}", snap["id"].as_str().unwrap()),
        Body::Empty,
    )
    .unwrap();
    let later = create(&c2, json!({"volumes": [{"name": "data", "path": "/d"}]}));
    assert_eq!(sh(&c2, &later, "cat /d/shared")["stdout"], "from-a\n");

    // Snapshot and clone: the clone has the files as the snapshot holds
    // them, and is a volume of its own. An image is copied frozen while
    // mounted; a plain volume (rootless) only while nothing mounts it.
    if !enforced {
        let (st, e) = status(
            &c2,
            Method::POST,
            "/v1/volumes/data/snapshots",
            json!({"name": "before"}),
        );
        assert_eq!(st, 409, "{e}");
        assert!(
            e["message"].as_str().unwrap().contains("no enforced quota"),
            "{e}"
        );
        c2.call(
            Method::DELETE,
            &format!("/v1/sandboxes/{later}"),
            Body::Empty,
        )
        .unwrap();
    }
    c2.json(
        Method::POST,
        "/v1/volumes/data/snapshots",
        Body::Json(json!({"name": "before"})),
    )
    .unwrap();
    let later = if enforced {
        later
    } else {
        create(&c2, json!({"volumes": [{"name": "data", "path": "/d"}]}))
    };
    sh(&c2, &later, "echo changed > /d/shared");
    let (st, e) = status(
        &c2,
        Method::POST,
        "/v1/volumes/data/snapshots",
        json!({"name": "before"}),
    );
    assert_eq!(st, 409, "{e}");
    let copy = c2
        .json(
            Method::POST,
            "/v1/volumes/data/clone",
            Body::Json(json!({"name": "copy", "snapshot": "before"})),
        )
        .unwrap();
    assert_eq!(copy["cloned_from"], "data@before");
    let (st, _) = status(
        &c2,
        Method::POST,
        "/v1/volumes/data/clone",
        json!({"name": "copy2", "snapshot": "nope"}),
    );
    assert_eq!(st, 404);
    let reader = create(&c2, json!({"volumes": [{"name": "copy", "path": "/c"}]}));
    assert_eq!(sh(&c2, &reader, "cat /c/shared")["stdout"], "from-a\n");
    for id in [&later, &reader] {
        c2.call(Method::DELETE, &format!("/v1/sandboxes/{id}"), Body::Empty)
            .unwrap();
    }

    // Per-key ceilings: a user key with room for one volume of 20m.
    let (kid, key) = new_key(&c2, "tenant", "user");
    c2.json(
        Method::PATCH,
        &format!("/v1/keys/{kid}"),
        Body::Json(json!({"ceiling": {"max_volumes": 1, "max_volume_bytes": "20m"}})),
    )
    .unwrap();
    let user = s2.client(&key);
    let (st, e) = status(
        &user,
        Method::POST,
        "/v1/volumes",
        json!({"name": "big", "size": "32m"}),
    );
    assert_eq!(
        (st, e["code"].as_str().unwrap()),
        (403, "permission_denied"),
        "{e}"
    );
    assert!(
        e["message"].as_str().unwrap().contains("max_volume_bytes"),
        "{e}"
    );
    let (st, _) = status(
        &user,
        Method::POST,
        "/v1/volumes",
        json!({"name": "mine", "size": "16m"}),
    );
    assert_eq!(st, 200);
    let (st, e) = status(
        &user,
        Method::POST,
        "/v1/volumes",
        json!({"name": "two", "size": "16m"}),
    );
    assert_eq!(
        (st, e["code"].as_str().unwrap()),
        (403, "permission_denied"),
        "{e}"
    );
    // The user's name space is its own: "data" is not the admin's volume.
    let (st, _) = status(&user, Method::GET, "/v1/volumes/data", json!(null));
    assert_eq!(st, 404);

    // The CLI through the server.
    let o = s2.cli(&["volume", "ls"]);
    let out = common::stdout(&o);
    assert!(out.contains("data") && out.contains("copy"), "{out}");
    let o = s2.cli(&["volume", "rm", "copy", "data@before", "data"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let o = s2.cli(&["volume", "inspect", "data"]);
    assert!(!o.status.success());
    assert!(
        common::stderr(&o).contains("not_found"),
        "{}",
        common::stderr(&o)
    );
    let v = c2.json(Method::GET, "/v1/volumes", Body::Empty).unwrap();
    assert_eq!(v["volumes"].as_array().unwrap().len(), 1, "{v}"); // the user's
    drop(s2);
    std::mem::forget(s); // its data dir is gone with s2
}

/// The kinds in a workspace's history, in order.
fn kinds(w: &Value) -> Vec<String> {
    w["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn workspaces_give_files_env_and_history_to_their_sandboxes() {
    if !common::sandboxes_supported() {
        eprintln!("SKIP workspaces: sandboxes are not supported on this host");
        return;
    }
    let s = Server::start(&data_dir("workspaces"));
    let c = s.admin();

    // Bad input, nothing made.
    for (body, st_want) in [
        (json!({"name": "-x"}), 400),
        (json!({"name": "a".repeat(54)}), 400),
        (json!({"name": "w", "env": {"": "x"}}), 400),
        (json!({"name": "w", "size": "1k"}), 400),
    ] {
        let (st, e) = status(&c, Method::POST, "/v1/workspaces", body.clone());
        assert_eq!(st, st_want, "{body}: {e}");
    }
    assert!(volume_dirs(&s).is_empty(), "{:?}", volume_dirs(&s));
    let (st, w) = status(
        &c,
        Method::POST,
        "/v1/workspaces",
        json!({"name": "proj", "size": "32m", "env": {"PROJ": "one", "KEEP": "k"}}),
    );
    assert_eq!(st, 200, "{w}");
    assert_eq!(w["files"]["name"], "workspace.proj");
    let (st, _) = status(&c, Method::POST, "/v1/workspaces", json!({"name": "proj"}));
    assert_eq!(st, 409);

    // A sandbox in it: its files at /workspace, its env under the
    // request's own.
    let a = create(&c, json!({"workspace": "proj", "env": {"PROJ": "mine"}}));
    let r = sh(
        &c,
        &a,
        "echo kept > /workspace/notes.txt && echo $PROJ $KEEP && pwd",
    );
    assert_eq!(r["stdout"], "mine k\n/workspace\n", "{r}");
    if common::is_root() {
        // Pausing loses nothing.
        c.json(
            Method::POST,
            &format!("/v1/sandboxes/{a}/pause"),
            Body::Empty,
        )
        .unwrap();
        c.json(
            Method::POST,
            &format!("/v1/sandboxes/{a}/resume"),
            Body::Empty,
        )
        .unwrap();
    }
    let (st, e) = status(&c, Method::DELETE, "/v1/workspaces/proj", json!(null));
    assert_eq!(st, 409, "in use: {e}");
    let (st, e) = status(
        &c,
        Method::DELETE,
        "/v1/volumes/workspace.proj",
        json!(null),
    );
    assert_eq!(st, 409, "its files: {e}");
    c.call(Method::DELETE, &format!("/v1/sandboxes/{a}"), Body::Empty)
        .unwrap();

    // The next sandbox gets the files back; a snapshot of it and a
    // restore of that are in the history, with the snapshot named.
    let b = create(&c, json!({"workspace": "proj"}));
    assert_eq!(sh(&c, &b, "cat /workspace/notes.txt")["stdout"], "kept\n");
    let snap = c
        .json(
            Method::POST,
            &format!("/v1/sandboxes/{b}/snapshots"),
            Body::Empty,
        )
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let restored = c
        .json(
            Method::POST,
            &format!("/v1/snapshots/{snap}/restore"),
            Body::Empty,
        )
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        sh(&c, &restored, "cat /workspace/notes.txt; echo $PROJ")["stdout"],
        "kept\none\n"
    );
    // Its files' own snapshot: as root (an image, copied frozen) while
    // sandboxes use them; rootless (a plain directory) only once none does.
    let enforced = common::is_root();
    let (st, w) = status(
        &c,
        Method::POST,
        "/v1/workspaces/proj/snapshots",
        json!({"name": "v1"}),
    );
    if enforced {
        assert_eq!(st, 200, "{w}");
        assert_eq!(w["files"]["snapshots"][0]["name"], "v1", "{w}");
    } else {
        assert_eq!(st, 409, "{w}");
    }
    // Another mount at /workspace cannot sit beside the workspace's.
    let (st, _) = status(
        &c,
        Method::POST,
        "/v1/sandboxes",
        json!({"workspace": "proj", "volumes": [{"name": "workspace.proj", "path": "/workspace"}]}),
    );
    assert_eq!(st, 400);
    // A sandbox that expires ends in the history too.
    let short = create(&c, json!({"workspace": "proj", "ttl_seconds": 1}));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while c
        .json(Method::GET, &format!("/v1/sandboxes/{short}"), Body::Empty)
        .is_ok()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{short} did not expire"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let w = c
        .json(Method::GET, "/v1/workspaces/proj", Body::Empty)
        .unwrap();
    let mut want = vec![
        "created",
        "sandbox_created",
        "sandbox_ended",
        "sandbox_created",
        "snapshot",
        "sandbox_created",
    ];
    if enforced {
        want.push("snapshot");
    }
    want.extend(["sandbox_created", "sandbox_ended"]);
    assert_eq!(kinds(&w), want, "{w}");
    let h = &w["history"];
    assert_eq!(h[1]["sandbox"], json!(a));
    assert_eq!(h[2]["sandbox"], json!(a));
    assert_eq!(
        (&h[4]["sandbox"], &h[4]["snapshot"]),
        (&json!(b), &json!(snap))
    );
    assert_eq!(
        (&h[5]["sandbox"], &h[5]["from_snapshot"]),
        (&json!(restored), &json!(snap))
    );
    if enforced {
        assert_eq!(h[6]["snapshot"], "v1");
    }
    assert_eq!(h[want.len() - 1]["sandbox"], json!(short));
    let mut now: Vec<&str> = w["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    now.sort();
    let mut want = vec![b.as_str(), restored.as_str()];
    want.sort();
    assert_eq!(now, want);

    // Another key sees none of it, and cannot make a sandbox in it.
    let (_, key) = new_key(&c, "other", "user");
    let other = s.client(&key);
    let (st, _) = status(&other, Method::GET, "/v1/workspaces/proj", json!(null));
    assert_eq!(st, 404);
    let id = w["id"].as_str().unwrap();
    let (st, _) = status(
        &other,
        Method::GET,
        &format!("/v1/workspaces/{id}"),
        json!(null),
    );
    assert_eq!(st, 404);
    let (st, _) = status(
        &other,
        Method::POST,
        "/v1/sandboxes",
        json!({"workspace": "proj"}),
    );
    assert_eq!(st, 404);
    let l = other
        .json(Method::GET, "/v1/workspaces", Body::Empty)
        .unwrap();
    assert_eq!(l["workspaces"], json!([]));

    // The CLI through the server.
    let o = s.cli(&["workspace", "ls"]);
    assert!(
        common::stdout(&o).contains("proj"),
        "{}",
        common::stderr(&o)
    );
    let o = s.cli(&["create", "--workspace", "proj"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let cli_sb = common::stdout(&o).trim().to_string();
    for id in [&b, &restored, &cli_sb] {
        c.call(Method::DELETE, &format!("/v1/sandboxes/{id}"), Body::Empty)
            .unwrap();
    }
    c.call(
        Method::DELETE,
        &format!("/v1/snapshots/{snap}"),
        Body::Empty,
    )
    .unwrap();
    let o = s.cli(&["workspace", "rm", "proj"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let (st, _) = status(&c, Method::GET, "/v1/volumes/workspace.proj", json!(null));
    assert_eq!(st, 404, "the files went with it");
}
