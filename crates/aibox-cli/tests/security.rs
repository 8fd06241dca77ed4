//! Regression tests for the findings of the security review
//! (`shared/reviews/security.md`), each named after its finding and run
//! against the real thing: a live `aibox serve`, real sandboxes, the real
//! CLI. Each one is the review's probe, and fails on the code before its
//! fix. The suite runs them as root and again rootless.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aibox_client::{Body, Client, Method};
use common::mcp::Mcp;
use common::server::{create, data_dir, exec, http, new_key, Server};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Log a key in to the dashboard: (cookie header value, CSRF token).
fn dashboard_login(s: &Server, key: &str) -> (String, String) {
    let r = http(
        &s.addr,
        "POST",
        "/ui/login",
        &[("content-type", "application/json")],
        json!({ "key": key }).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    let csrf = r.json()["csrf"].as_str().expect("a CSRF token").to_string();
    (cookie, csrf)
}

/// C1: a user key logged in to the dashboard called `/mcp` with the session
/// cookie, and every tool ran as the local admin (other tenants'
/// sandboxes listed and commands run in them).
#[test]
fn c1_cookie_session_cannot_reach_mcp_as_admin() {
    require_sandboxes!();
    let s = Server::start(&data_dir("c1"));
    let admin = s.admin();
    let (_, alice_key) = new_key(&admin, "alice", "user");
    let (_, bob_key) = new_key(&admin, "bob", "user");
    let alice = s.client(&alice_key);
    let theirs = create(&alice, json!({}));

    let (cookie, csrf) = dashboard_login(&s, &bob_key);
    let mut bob = Mcp::connect(&s.addr, &[("cookie", &cookie), ("x-csrf-token", &csrf)])
        .expect("a dashboard session may use /mcp as its own key");
    let (_, listed) = bob.tool("list_sandboxes", json!({}));
    assert!(
        !listed.contains(&theirs),
        "bob's MCP session lists alice's sandbox: {listed}"
    );
    let (failed, out) = bob.tool(
        "run_command",
        json!({"sandbox_id": theirs, "command": "id"}),
    );
    assert!(failed, "bob ran a command in alice's sandbox: {out}");
    assert!(!out.contains("uid="), "{out}");
    let (failed, out) = bob.tool("destroy_sandbox", json!({"sandbox_id": theirs}));
    assert!(failed, "bob destroyed alice's sandbox: {out}");
    assert!(alice
        .json(Method::GET, &format!("/v1/sandboxes/{theirs}"), Body::Empty)
        .is_ok());

    // What bob makes through MCP is his: alice does not see it, and the
    // server records bob as its owner.
    let (failed, out) = bob.tool("create_sandbox", json!({"keep": true}));
    assert!(!failed, "{out}");
    let v = admin
        .json(Method::GET, "/v1/sandboxes?limit=1000", Body::Empty)
        .unwrap();
    let mine: Vec<&Value> = v["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["id"] != theirs.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{v}");
    assert_ne!(mine[0]["owner"], "local", "{v}");
    let alice_sees = alice
        .json(Method::GET, "/v1/sandboxes", Body::Empty)
        .unwrap();
    assert_eq!(alice_sees["sandboxes"].as_array().unwrap().len(), 1);

    // No credentials at all: refused before any tool runs.
    let e = Mcp::connect(&s.addr, &[]).err().expect("refused");
    assert_eq!(e.0, 401, "{}", e.1);
    // A session cookie without its CSRF token: refused.
    let e = Mcp::connect(&s.addr, &[("cookie", &cookie)])
        .err()
        .expect("refused");
    assert_eq!(e.0, 403, "{}", e.1);
}

/// C2: a tenant with a writable mount under an allowed path planted a
/// symlink to `/etc`; a second sandbox then mounted `allowed/link`, which
/// the root-run mount followed to the host's `/etc`.
#[test]
fn c2_a_planted_symlink_cannot_lead_a_mount_out_of_the_allowed_path() {
    require_sandboxes!();
    let data = data_dir("c2");
    let shared = data.with_extension("shared");
    let outside = data.with_extension("outside");
    std::fs::create_dir_all(shared.join("real")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "host secret").unwrap();
    std::fs::write(shared.join("real/ok"), "shared").unwrap();
    for d in [&shared, &shared.join("real")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    common::give_to_user(&shared);
    let s = Server::start_env(&data, &[("AIBOX_ALLOWED_MOUNTS", shared.to_str().unwrap())]);
    let (_, key) = new_key(&s.admin(), "tenant", "user");
    let c = s.client(&key);
    let shared_s = shared.to_str().unwrap();
    let a = create(
        &c,
        json!({"mounts": [{"host": shared_s, "guest": "/data"}]}),
    );
    let planted = exec(
        &c,
        &a,
        json!([
            "sh",
            "-c",
            format!(
                "ln -s {} /data/link && ln -s real/../../ /data/up && ls -l /data",
                outside.display()
            )
        ]),
    );
    assert_eq!(planted["exit_code"], 0, "{planted}");

    for via in ["link", "up", "link/secret"] {
        let host = shared.join(via);
        let r = c.send(
            Method::POST,
            "/v1/sandboxes",
            Body::Json(json!({"mounts": [{"host": host, "guest": "/hostdir", "read_only": true}]})),
            &[],
        );
        let r = r.unwrap();
        assert!(
            r.status >= 400,
            "mounting {} (a symlink out of the allowed path) was accepted: {}",
            host.display(),
            String::from_utf8_lossy(&r.body)
        );
        let text = String::from_utf8_lossy(&r.body).to_string();
        assert!(text.contains("symlink"), "{text}");
    }
    // `..` never passes the request check either.
    let r = c
        .send(
            Method::POST,
            "/v1/sandboxes",
            Body::Json(
                json!({"mounts": [{"host": format!("{shared_s}/real/../.."), "guest": "/x"}]}),
            ),
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    // A real directory below the allowed path still mounts.
    let b = create(
        &c,
        json!({"mounts": [{"host": shared.join("real"), "guest": "/r", "read_only": true}]}),
    );
    let v = exec(&c, &b, json!(["cat", "/r/ok"]));
    assert_eq!(v["stdout"], "shared", "{v}");
    drop(s);
    let _ = std::fs::remove_dir_all(&shared);
    let _ = std::fs::remove_dir_all(&outside);
}

/// H4: as root, a host mount was idmapped with the sandbox's own map, so
/// sandbox uid k was host uid k there, root included: `cp /bin/sh` +
/// `chmod 4755` left a setuid-root shell on the host. Now the mount's
/// owner (and its group, an ordinary one) are the only ids mapped, to the
/// sandbox user, and a read-write mount of a directory root or a system
/// group owns is refused.
#[test]
fn h4_a_host_mount_acts_as_its_owner_never_as_root() {
    require_sandboxes!();
    if !common::is_root() {
        eprintln!(
            "SKIP h4_a_host_mount_acts_as_its_owner_never_as_root: rootless, a mount acts as the caller (no idmaps); the finding is root mode's"
        );
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = common::Env::new("h4");
    let dir = data_dir("h4");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mine"), "owner's").unwrap();
    std::fs::set_permissions(dir.join("mine"), std::fs::Permissions::from_mode(0o600)).unwrap();
    common::give_to_user(&dir);
    // Root's own file in the owner's directory.
    std::fs::write(dir.join("roots"), "root's").unwrap();
    std::fs::set_permissions(dir.join("roots"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let rw = format!("{}:/data", dir.display());
    let o = env.run(&[
        "run",
        "--user",
        "root",
        "--mount",
        &rw,
        "--",
        "sh",
        "-c",
        "cat /data/mine; echo; cp /bin/sh /data/rsh && chmod 4755 /data/rsh; \
         echo x >> /data/roots 2>/dev/null && echo ROOTS-WRITTEN; \
         chmod 666 /data/roots 2>/dev/null && echo ROOTS-CHMODDED; \
         stat -c '%u %g' /data/roots",
    ]);
    let out = common::stdout(&o);
    assert!(
        out.starts_with("owner's\n"),
        "the owner's file: {out} {}",
        common::stderr(&o)
    );
    assert!(!out.contains("ROOTS-"), "root's file was changed: {out}");
    assert!(
        out.ends_with("65534 65534\n"),
        "root's file shows as nobody's: {out}"
    );
    let rsh = std::fs::metadata(dir.join("rsh")).unwrap();
    assert_eq!(
        rsh.uid(),
        common::MOUNT_OWNER,
        "a file the sandbox's root writes belongs to the directory's owner"
    );
    assert_eq!(
        rsh.gid(),
        common::MOUNT_OWNER,
        "and to the directory's group"
    );
    // A directory of a system group (here 27, Debian's `sudo`): read-write,
    // the sandbox could leave set-gid files of it there: refused.
    std::os::unix::fs::chown(&dir, None, Some(27)).unwrap();
    let o = env.run(&["run", "--mount", &rw, "--", "true"]);
    let err = common::stderr(&o);
    assert!(
        err.contains("system group 27") && err.contains("invalid_argument"),
        "{err}"
    );
    std::os::unix::fs::chown(&dir, None, Some(common::MOUNT_OWNER)).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("roots")).unwrap(),
        "root's"
    );
    assert_eq!(
        std::fs::metadata(dir.join("roots")).unwrap().mode() & 0o777,
        0o644
    );

    // A directory root owns: read-write is refused, read-only shows
    // root's files as nobody's (a 0600 one stays unreadable).
    let rooted = dir.join("rooted");
    std::fs::create_dir(&rooted).unwrap();
    std::os::unix::fs::chown(&rooted, Some(0), Some(0)).unwrap();
    std::fs::write(rooted.join("secret"), "root only").unwrap();
    std::fs::set_permissions(
        rooted.join("secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let o = env.run(&[
        "run",
        "--mount",
        &format!("{}:/r", rooted.display()),
        "--",
        "true",
    ]);
    assert_ne!(o.status.code(), Some(0));
    let err = common::stderr(&o);
    assert!(
        err.contains("owned by root") && err.contains("invalid_argument"),
        "{err}"
    );
    let o = env.run(&[
        "run",
        "--user",
        "root",
        "--mount",
        &format!("{}:/r:ro", rooted.display()),
        "--",
        "sh",
        "-c",
        "cat /r/secret 2>/dev/null || echo unreadable",
    ]);
    assert_eq!(common::stdout(&o), "unreadable\n", "{}", common::stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// C3: snapshotting a restored sandbox whose directory had become a
/// symlink made the server `chmod` the link's target on the host.
#[test]
fn c3_snapshot_of_a_restored_sandbox_never_chmods_through_a_symlink() {
    require_sandboxes!();
    let data = data_dir("c3");
    let canary = data.with_extension("canary");
    std::fs::write(&canary, "canary").unwrap();
    std::fs::set_permissions(&canary, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = Server::start(&data);
    let (_, key) = new_key(&s.admin(), "tenant", "user");
    let c = s.client(&key);
    let sb = create(&c, json!({}));
    let v = exec(
        &c,
        &sb,
        json!([
            "sh",
            "-c",
            "mkdir -p /workspace/x/y && chmod 4777 /workspace/x /workspace/x/y"
        ]),
    );
    assert_eq!(v["exit_code"], 0, "{v}");
    let snap = c
        .json(
            Method::POST,
            &format!("/v1/sandboxes/{sb}/snapshots"),
            Body::Json(json!({})),
        )
        .unwrap();
    let snap = snap["id"].as_str().unwrap();
    let restored = c
        .json(
            Method::POST,
            &format!("/v1/snapshots/{snap}/restore"),
            Body::Json(json!({})),
        )
        .unwrap();
    let restored = restored["id"].as_str().unwrap().to_string();
    let v = exec(
        &c,
        &restored,
        json!([
            "sh",
            "-c",
            format!(
                "rm -rf /workspace/x && ln -s {} /workspace/x",
                canary.display()
            )
        ]),
    );
    assert_eq!(v["exit_code"], 0, "{v}");
    let again = c.json(
        Method::POST,
        &format!("/v1/sandboxes/{restored}/snapshots"),
        Body::Json(json!({})),
    );
    assert!(again.is_ok(), "{again:?}");
    let mode = std::fs::metadata(&canary).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        mode, 0o600,
        "the host file was chmodded through the sandbox's symlink"
    );
    // The second snapshot holds the link, not a directory.
    let back = c
        .json(
            Method::POST,
            &format!(
                "/v1/snapshots/{}/restore",
                again.unwrap()["id"].as_str().unwrap()
            ),
            Body::Json(json!({})),
        )
        .unwrap();
    let v = exec(
        &c,
        back["id"].as_str().unwrap(),
        json!(["sh", "-c", "test -L /workspace/x && echo link"]),
    );
    assert_eq!(v["stdout"], "link\n", "{v}");
    drop(s);
    let _ = std::fs::remove_file(&canary);
}

fn refused(c: &Client, method: Method, path: &str, body: Value) -> (u16, Value) {
    let r = c.send(method, path, Body::Json(body), &[]).unwrap();
    (r.status, r.json())
}

/// H2: a user key gave its own sandbox egress rules to the host's
/// loopback, the cloud metadata address and the private network. Now only
/// what the operator's ceiling opens, for that key, is allowed.
#[test]
fn h2_user_key_cannot_open_host_loopback_or_metadata() {
    require_sandboxes!();
    let s = Server::start(&data_dir("h2"));
    let admin = s.admin();
    let (kid, key) = new_key(&admin, "tenant", "user");
    let c = s.client(&key);
    for rules in [
        json!(["127.0.0.1/32"]),
        json!(["169.254.169.254/32:80"]),
        json!(["10.0.0.0/8"]),
        json!(["0.0.0.0/0"]),
        json!(["[::1]:7878"]),
    ] {
        let (status, v) = refused(
            &c,
            Method::POST,
            "/v1/sandboxes",
            json!({"network": {"mode": "allowlist", "rules": rules}}),
        );
        assert_eq!(status, 403, "{rules}: {v}");
        assert_eq!(v["error"]["code"], "permission_denied", "{v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains("egress_local"), "{m}");
    }
    // Widening an existing sandbox is held to the same ceiling.
    let id = create(
        &c,
        json!({"network": {"mode": "allowlist", "rules": ["pypi.org"]}}),
    );
    let (status, v) = refused(
        &c,
        Method::PATCH,
        &format!("/v1/sandboxes/{id}/network"),
        json!({"mode": "full", "rules": ["127.0.0.1/32:7878"]}),
    );
    assert_eq!(
        (status, &v["error"]["code"]),
        (403, &json!("permission_denied")),
        "{v}"
    );
    // The operator opens one block for this key: that block, no more.
    admin
        .json(
            Method::PATCH,
            &format!("/v1/keys/{kid}"),
            Body::Json(json!({"ceiling": {"egress_local": ["127.0.0.1/32"]}})),
        )
        .unwrap();
    c.json(
        Method::PATCH,
        &format!("/v1/sandboxes/{id}/network"),
        Body::Json(json!({"mode": "allowlist", "rules": ["127.0.0.1/32:7878"]})),
    )
    .unwrap();
    let (status, _) = refused(
        &c,
        Method::PATCH,
        &format!("/v1/sandboxes/{id}/network"),
        json!({"mode": "allowlist", "rules": ["127.0.0.0/8"]}),
    );
    assert_eq!(status, 403);
    // Admin keys have no ceiling.
    let own = create(
        &admin,
        json!({"network": {"mode": "allowlist", "rules": ["127.0.0.1/32"]}}),
    );
    assert!(!own.is_empty());
}

/// M2b: in full mode the proxy connected from the host to the host's own
/// public addresses, where daemons bound to every interface listen. Now
/// they are local like loopback: refused with the reason, and a user key
/// cannot open them without the ceiling's leave.
#[test]
fn m2b_the_hosts_own_addresses_are_local() {
    require_sandboxes!();
    let Some(own) = aibox_sys::interface_addresses()
        .unwrap()
        .into_iter()
        .find(|ip| ip.is_ipv4() && aibox_types::egress::local_address_class(*ip).is_none())
    else {
        eprintln!("SKIP m2b_the_hosts_own_addresses_are_local: this host has no address outside the static local classes");
        return;
    };
    let s = Server::start(&data_dir("m2b"));
    let admin = s.admin();
    let id = create(
        &admin,
        json!({"network": {"mode": "full", "enforcement": "proxy"}}),
    );
    // Nothing listens there: before, the proxy tried it (502); now the
    // policy refuses it (403) without connecting.
    let v = exec(
        &admin,
        &id,
        json!([
            "sh",
            "-c",
            format!("curl -s -m 10 -w '\n%{{http_code}}' http://{own}:9/")
        ]),
    );
    let out = v["stdout"].as_str().unwrap();
    assert!(out.ends_with("\n403"), "{v}");
    assert!(out.contains("this host's own addresses"), "{v}");
    let (_, key) = new_key(&admin, "tenant", "user");
    let (status, v) = refused(
        &s.client(&key),
        Method::POST,
        "/v1/sandboxes",
        json!({"network": {"mode": "allowlist", "rules": [format!("{own}/32")]}}),
    );
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("egress_local"),
        "{v}"
    );
}

/// The rest of the ceiling: limits, backends, mounts and public ports are
/// refused beyond it with `permission_denied` naming the ceiling, and a
/// ceiling an admin sets is validated.
#[test]
fn ceilings_refuse_what_lies_beyond_them() {
    require_sandboxes!();
    let data = data_dir("ceiling");
    let shared = data.with_extension("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let s = Server::start_env(
        &data,
        &[
            ("AIBOX_ALLOWED_MOUNTS", shared.to_str().unwrap()),
            (
                "AIBOX_USER_CEILING",
                &json!({"max_memory": "256m", "max_ttl_seconds": 120, "backends": ["namespaces"],
                    "public_ports": false, "mounts": [shared]})
                .to_string(),
            ),
        ],
    );
    let admin = s.admin();
    let (kid, key) = new_key(&admin, "tenant", "user");
    let c = s.client(&key);
    let denied = |body: Value, ceiling: &str| {
        let (status, v) = refused(&c, Method::POST, "/v1/sandboxes", body.clone());
        assert_eq!(status, 403, "{body}: {v}");
        assert_eq!(v["error"]["code"], "permission_denied");
        let m = v["error"]["message"].as_str().unwrap().to_string();
        assert!(m.contains(ceiling), "{body}: {m}");
    };
    denied(json!({"memory": "1g"}), "max_memory");
    denied(
        json!({"memory": "128m", "ttl_seconds": 3600}),
        "max_ttl_seconds",
    );
    denied(json!({"memory": "128m", "backend": "microvm"}), "backends");
    denied(json!({"memory": "128m", "public": true}), "public_ports");
    denied(
        json!({"memory": "128m", "mounts": [{"host": shared, "guest": "/d"}]}),
        "mounts",
    );
    // Within the ceiling: created (as root; rootless, this host cannot
    // enforce the memory limit the ceiling makes a create ask for, and
    // says so rather than running unlimited).
    let within =
        json!({"memory": "128m", "mounts": [{"host": shared, "guest": "/d", "read_only": true}]});
    if common::is_root() {
        let id = create(&c, within);
        let (status, v) = refused(
            &c,
            Method::PATCH,
            &format!("/v1/sandboxes/{id}/ports"),
            json!({"public": true}),
        );
        assert_eq!(status, 403, "{v}");
        let (status, v) = refused(
            &c,
            Method::POST,
            &format!("/v1/sandboxes/{id}/timeout"),
            json!({"ttl_seconds": 121}),
        );
        assert_eq!(status, 403, "{v}");
    } else {
        let (status, v) = refused(&c, Method::POST, "/v1/sandboxes", within);
        assert_eq!(v["error"]["code"], "isolation_unavailable", "{status} {v}");
    }
    // Bad ceilings are refused by name; admin keys get none.
    for bad in [
        json!({"ceiling": {"egress_local": ["pypi.org"]}}),
        json!({"ceiling": {"mounts": ["relative"]}}),
        json!({"ceiling": {"max_cpus": -1.0}}),
        json!({"ceiling": {"no_such": 1}}),
    ] {
        let (status, v) = refused(
            &admin,
            Method::PATCH,
            &format!("/v1/keys/{kid}"),
            bad.clone(),
        );
        assert_eq!(status, 400, "{bad}: {v}");
    }
    let (status, _) = refused(
        &admin,
        Method::POST,
        "/v1/keys",
        json!({"name": "x", "scope": "admin", "ceiling": {"max_pids": 10}}),
    );
    assert_eq!(status, 400);
    // A key's own ceiling replaces the server's default for it; null
    // puts the default back.
    let o = s.cli(&["keys", "ceiling", &kid, r#"{"max_memory": "2g"}"#]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let o = s.cli(&["keys", "ceiling", &kid, "not json"]);
    assert!(!o.status.success());
    assert!(
        common::stderr(&o).contains("not JSON"),
        "{}",
        common::stderr(&o)
    );
    let keys = admin.json(Method::GET, "/v1/keys", Body::Empty).unwrap();
    let mine = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == kid.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["ceiling"]["max_memory"], 2u64 << 30, "{mine}");
    let (status, v) = refused(
        &c,
        Method::POST,
        "/v1/sandboxes",
        json!({"memory": "1g", "ttl_seconds": 3600}),
    );
    if common::is_root() {
        assert!(status < 300, "{v}");
    } else {
        assert_eq!(v["error"]["code"], "isolation_unavailable", "{status} {v}");
    }
    let o = s.cli(&["keys", "ceiling", &kid, "--clear"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    denied(json!({"memory": "1g"}), "max_memory");
    drop(s);
    let _ = std::fs::remove_dir_all(&shared);
}

/// H1: an image layer with a directory, its whiteout, then a symlink of
/// the same name made the root-run import `chmod` the symlink's target.
#[test]
fn h1_a_hostile_image_cannot_chmod_host_files() {
    let dir = data_dir("h1");
    let canary = dir.join("canary");
    std::fs::write(&canary, "canary").unwrap();
    std::fs::set_permissions(&canary, std::fs::Permissions::from_mode(0o600)).unwrap();
    let image = dir.join("evil-oci.tar");
    let script = format!(
        r#"
import tarfile, io, json, hashlib
def ent(t, name, **k):
    i = tarfile.TarInfo(name)
    for a, v in k.items(): setattr(i, a, v)
    t.addfile(i, io.BytesIO(b'') if i.isreg() else None)
b = io.BytesIO(); t = tarfile.open(fileobj=b, mode='w')
ent(t, 'x', type=tarfile.DIRTYPE, mode=0o6777)
ent(t, '.wh.x', size=0)
ent(t, 'x', type=tarfile.SYMTYPE, linkname={canary:?})
ent(t, 'suid', size=0, mode=0o4755)
t.close()
layer = b.getvalue(); lh = hashlib.sha256(layer).hexdigest()
cfg = json.dumps({{"architecture": "amd64", "os": "linux", "config": {{}}, "rootfs": {{"type": "layers", "diff_ids": ["sha256:" + lh]}}}}).encode()
ch = hashlib.sha256(cfg).hexdigest()
man = json.dumps({{"schemaVersion": 2, "config": {{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + ch, "size": len(cfg)}}, "layers": [{{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + lh, "size": len(layer)}}]}}).encode()
mh = hashlib.sha256(man).hexdigest()
idx = json.dumps({{"schemaVersion": 2, "manifests": [{{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + mh, "size": len(man)}}]}}).encode()
o = tarfile.open({image:?}, 'w')
for n, d in [('oci-layout', b'{{"imageLayoutVersion":"1.0.0"}}'), ('index.json', idx), ('blobs/sha256/' + lh, layer), ('blobs/sha256/' + ch, cfg), ('blobs/sha256/' + mh, man)]:
    i = tarfile.TarInfo(n); i.size = len(d); o.addfile(i, io.BytesIO(d))
o.close()
"#,
        canary = canary.to_str().unwrap(),
        image = image.to_str().unwrap()
    );
    let ok = std::process::Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap()
        .success();
    assert!(ok, "making the hostile image");
    let env = common::Env::new("h1");
    let mut cmd = env.aibox(&[
        "template",
        "import",
        image.to_str().unwrap(),
        "--name",
        "evil:1",
    ]);
    cmd.env("AIBOX_DATA_DIR", dir.join("data"));
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", common::stderr(&o));
    let mode = std::fs::metadata(&canary).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "the import chmodded the symlink's target");
    // No set-id file anywhere in the store.
    let found = std::process::Command::new("find")
        .arg(dir.join("data"))
        .args(["-perm", "/6000", "-type", "f"])
        .output()
        .unwrap();
    assert_eq!(common::stdout(&found), "", "set-id files in the store");
    let _ = aibox_runtime::image::layer::remove_tree(&dir);
}

/// Tenant isolation: a second user key walks every REST route the API
/// describes (and the WebSocket and port routes it does not), every MCP
/// tool and the same routes as a dashboard session, aimed at the first
/// key's sandbox, snapshot, process, port and key, and never sees or
/// touches any of them.
#[test]
fn tenant_isolation_every_route_mcp_tool_and_dashboard_call() {
    require_sandboxes!();
    let s = Server::start(&data_dir("tenancy"));
    let admin = s.admin();
    let (alice_kid, alice_key) = new_key(&admin, "alice", "user");
    let (_, bob_key) = new_key(&admin, "bob", "user");
    let alice = s.client(&alice_key);
    let sb = create(&alice, json!({"labels": {"owner": "alice"}}));
    alice
        .call(
            Method::PUT,
            &format!("/v1/sandboxes/{sb}/files?path=/workspace/secret"),
            Body::Raw(b"alice's secret".to_vec()),
        )
        .unwrap();
    let proc_ = alice
        .json(
            Method::POST,
            &format!("/v1/sandboxes/{sb}/processes"),
            Body::Json(json!({"cmd": ["sleep", "600"]})),
        )
        .unwrap();
    let pid = proc_["pid"].as_u64().or(proc_["id"].as_u64()).unwrap_or(1);
    let snap = alice
        .json(
            Method::POST,
            &format!("/v1/sandboxes/{sb}/snapshots"),
            Body::Json(json!({})),
        )
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Alice's volume, mounted by her sandbox, with a snapshot.
    let vol = alice
        .json(
            Method::POST,
            "/v1/volumes",
            Body::Json(json!({"name": "alice-vol", "size": "16m"})),
        )
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    alice
        .json(
            Method::POST,
            "/v1/volumes/alice-vol/snapshots",
            Body::Json(json!({"name": "s1"})),
        )
        .unwrap();
    let ws = alice
        .json(
            Method::POST,
            "/v1/workspaces",
            Body::Json(json!({"name": "alice-ws", "size": "16m"})),
        )
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let vsb = create(
        &alice,
        json!({"volumes": [{"name": "alice-vol", "path": "/vol"}], "workspace": "alice-ws"}),
    );
    exec(&alice, &vsb, json!("echo alice-volume-secret > /vol/f"));
    let secrets = [
        sb.as_str(),
        snap.as_str(),
        alice_kid.as_str(),
        vol.as_str(),
        "alice-vol",
        ws.as_str(),
        "alice-ws",
        "alice's secret",
        "alice-volume-secret",
    ];

    let spec: Value = http(&s.addr, "GET", "/v1/openapi.json", &[], b"").json();
    let mut routes: Vec<(String, String)> = Vec::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                routes.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(
        routes.len() >= 40,
        "the API describes {} operations",
        routes.len()
    );
    for extra in [
        "/v1/sandboxes/{id}/exec/ws",
        "/v1/sandboxes/{id}/processes/{pid}/attach",
        "/v1/sandboxes/{id}/forward/{port}",
        "/v1/sandboxes/{id}/ports/{port}/",
        "/v1/sandboxes/{id}/ports/{port}/some/page",
    ] {
        routes.push(("GET".into(), extra.into()));
    }
    let fill = |path: &str| {
        let id = if path.starts_with("/v1/snapshots") {
            snap.as_str()
        } else if path.starts_with("/v1/keys") {
            alice_kid.as_str()
        } else {
            sb.as_str()
        };
        path.replace("{id}", id)
            .replace("{pid}", &pid.to_string())
            .replace("{port}", "8000")
            .replace("{name}", "host")
            .replace("{volume}", &vol)
            .replace("{workspace}", &ws)
            .replace("{snapshot}", "s1")
    };
    let (cookie, csrf) = dashboard_login(&s, &bob_key);
    let bearer = format!("Bearer {bob_key}");
    let as_bob: [Vec<(&str, &str)>; 2] = [
        vec![("authorization", bearer.as_str())],
        vec![("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())],
    ];
    let mut walked = 0;
    for (method, path) in &routes {
        let url = fill(path);
        let query = if path.contains("/files") {
            "?path=/workspace/secret"
        } else {
            ""
        };
        let url = format!("{url}{query}");
        for creds in &as_bob {
            let mut h = creds.clone();
            let ws =
                path.ends_with("/ws") || path.ends_with("/attach") || path.contains("/forward/");
            if ws {
                h.extend([
                    ("connection", "Upgrade"),
                    ("upgrade", "websocket"),
                    ("sec-websocket-version", "13"),
                    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ]);
            }
            let octets = path.ends_with("/files")
                || path.ends_with("/tar")
                || path.ends_with("/stdin")
                || path.ends_with("/import")
                || path.ends_with("/build");
            let body: &[u8] = if method == "GET" || method == "DELETE" {
                b""
            } else if octets {
                h.push(("content-type", "application/octet-stream"));
                b"x"
            } else {
                h.push(("content-type", "application/json"));
                b"{}"
            };
            let r = http(&s.addr, method, &url, &h, body);
            walked += 1;
            let text = r.text();
            let lists = !path.contains('{');
            if lists {
                // Lists and server-wide calls: nothing of alice's in them.
                for secret in secrets {
                    assert!(
                        !text.contains(secret),
                        "{method} {url} as bob shows alice's {secret}: {text}"
                    );
                }
            } else {
                assert!(
                    [400, 401, 403, 404, 405, 409, 413, 422].contains(&r.status),
                    "{method} {url} as bob answered {}: {text}",
                    r.status
                );
                if r.status == 409 {
                    // A conflict must not come from alice's sandbox state.
                    assert!(!text.contains(&sb), "{method} {url}: {text}");
                }
                assert!(!text.contains("alice's secret"), "{method} {url}: {text}");
            }
        }
    }
    assert!(walked >= 2 * routes.len());

    // Every MCP tool that takes an id, aimed at alice's.
    let mut bob = Mcp::connect(&s.addr, &[("authorization", &bearer)]).unwrap();
    let r = bob.post(json!({"jsonrpc": "2.0", "id": 900, "method": "tools/list"}));
    let text = r.text();
    let tools: Value = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v["id"] == 900)
        .unwrap();
    let tools = tools["result"]["tools"].as_array().unwrap().clone();
    assert!(tools.len() >= 10, "{tools:?}");
    let mut aimed = 0;
    for t in &tools {
        let name = t["name"].as_str().unwrap();
        let props = t["inputSchema"]["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut args = json!({});
        if props.contains_key("sandbox_id") {
            args["sandbox_id"] = json!(sb);
        } else if props.contains_key("snapshot_id") {
            args["snapshot_id"] = json!(snap);
        } else {
            let (_, out) = bob.tool(name, json!({}));
            for secret in secrets {
                assert!(
                    !out.contains(secret),
                    "{name} shows alice's {secret}: {out}"
                );
            }
            continue;
        }
        for (k, v) in [
            ("command", json!("cat /workspace/secret")),
            ("code", json!("print(open('/workspace/secret').read())")),
            ("path", json!("/workspace/secret")),
            ("content", json!("bob was here")),
            ("port", json!(8000)),
            ("rules", json!(["*"])),
        ] {
            if props.contains_key(k) {
                args[k] = v;
            }
        }
        let (failed, out) = bob.tool(name, args);
        aimed += 1;
        assert!(
            failed,
            "MCP {name} as bob on alice's sandbox succeeded: {out}"
        );
        assert!(!out.contains("alice's secret"), "{name}: {out}");
    }
    assert!(aimed >= 5, "only {aimed} tools take an id");

    // Bob cannot mount alice's volume, by her name for it or by its id.
    for name in ["alice-vol", vol.as_str()] {
        let e = s
            .client(&bob_key)
            .json(
                Method::POST,
                "/v1/sandboxes",
                Body::Json(json!({"volumes": [{"name": name, "path": "/v"}]})),
            )
            .unwrap_err();
        assert!(
            matches!(e, aibox_client::ClientError::Api { status: 404, .. }),
            "{e}"
        );
        let (failed, out) = bob.tool(
            "create_sandbox",
            json!({"volumes": [format!("{name}:/v:ro")]}),
        );
        assert!(failed && !out.contains("alice-volume-secret"), "{out}");
    }
    // Nor make a sandbox in her workspace, by name or id.
    for name in ["alice-ws", ws.as_str()] {
        let e = s
            .client(&bob_key)
            .json(
                Method::POST,
                "/v1/sandboxes",
                Body::Json(json!({"workspace": name})),
            )
            .unwrap_err();
        assert!(
            matches!(e, aibox_client::ClientError::Api { status: 404, .. }),
            "{e}"
        );
    }
    // Nor clone or snapshot it with a well-formed body.
    for (path, body) in [
        (format!("/v1/volumes/{vol}/clone"), json!({"name": "mine"})),
        (
            format!("/v1/volumes/{vol}/snapshots"),
            json!({"name": "s2"}),
        ),
    ] {
        let e = s
            .client(&bob_key)
            .json(Method::POST, &path, Body::Json(body))
            .unwrap_err();
        assert!(
            matches!(e, aibox_client::ClientError::Api { status: 404, .. }),
            "{path}: {e}"
        );
    }
    let v = alice
        .json(Method::GET, "/v1/volumes/alice-vol", Body::Empty)
        .unwrap();
    assert_eq!(v["in_use_by"], json!([vsb]), "{v}");
    assert_eq!(v["snapshots"][0]["name"], "s1", "{v}");

    // Alice's things are all still there and untouched.
    let v = alice
        .json(Method::GET, &format!("/v1/sandboxes/{sb}"), Body::Empty)
        .unwrap();
    assert_eq!(v["state"], "running", "{v}");
    let back = alice
        .call(
            Method::GET,
            &format!("/v1/sandboxes/{sb}/files?path=/workspace/secret"),
            Body::Empty,
        )
        .unwrap();
    assert_eq!(back.body.as_ref(), b"alice's secret");
    alice
        .json(Method::GET, &format!("/v1/snapshots/{snap}"), Body::Empty)
        .unwrap();
    let procs = alice
        .json(
            Method::GET,
            &format!("/v1/sandboxes/{sb}/processes"),
            Body::Empty,
        )
        .unwrap();
    assert!(procs.to_string().contains("sleep"), "{procs}");
    // Bob's view of the audit log: refused.
    let e = s
        .client(&bob_key)
        .json(Method::GET, "/v1/audit", Body::Empty);
    assert!(e.is_err());
}

/// M10: every sandbox process inherited PID 1's `oom_score_adj` of -998,
/// so in a host-wide OOM the kernel killed the host's services first.
#[test]
fn m10_sandbox_processes_are_not_shielded_from_the_oom_killer() {
    require_sandboxes!();
    let env = common::Env::new("m10");
    let user = if common::is_root() { "root" } else { "user" };
    let o = env.run(&[
        "run",
        "--user",
        user,
        "--",
        "sh",
        "-c",
        "cat /proc/self/oom_score_adj; cat /proc/1/oom_score_adj 2>/dev/null || echo hidden; \
         echo -500 > /proc/self/oom_score_adj && echo lowered || echo refused",
    ]);
    let out = common::stdout(&o);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0"), "{out} {}", common::stderr(&o));
    let pid1 = lines.next().unwrap_or_default();
    assert!(pid1 == "0" || pid1 == "hidden", "{out}");
    if common::is_root() {
        // The floor: nothing inside may lower its score.
        assert_eq!(lines.next(), Some("refused"), "{out}");
    }
    // A persistent sandbox too.
    let o = env.run(&["create", "--json"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let id = serde_json::from_slice::<Value>(&o.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = env.run(&["exec", &id, "--", "cat", "/proc/self/oom_score_adj"]);
    assert_eq!(common::stdout(&o), "0\n", "{}", common::stderr(&o));
}

/// M7: every failed authentication wrote an audit row, synchronously,
/// before any limit: anyone who reached the port could grow the database
/// without bound and serialise every request behind it.
#[test]
fn m7_failed_auth_floods_cost_little() {
    let s = Server::start(&data_dir("m7"));
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..300 {
        let r = http(
            &s.addr,
            "GET",
            "/v1/sandboxes",
            &[("authorization", "Bearer aibox_not-a-key")],
            b"",
        );
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    assert!(
        statuses.get(&429).copied().unwrap_or(0) > 200,
        "{statuses:?}"
    );
    assert!(
        statuses.get(&401).copied().unwrap_or(0) >= 1,
        "{statuses:?}"
    );
    // The address is refused for a moment; then the admin reads the log.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let v = s
        .admin()
        .json(
            Method::GET,
            "/v1/audit?action=auth.failure&order=desc",
            Body::Empty,
        )
        .unwrap();
    let failures = v["entries"].as_array().unwrap();
    assert!(
        !failures.is_empty() && failures.len() <= 3,
        "{} auth.failure entries for one flood: {v}",
        failures.len()
    );
    assert!(
        failures.iter().any(|e| e["detail"]["peer"] == "127.0.0.1"),
        "{v}"
    );
    // Each entry is one refusal, or a count of those after it.
    let counted: u64 = failures
        .iter()
        .map(|e| e["detail"]["repeated"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(
        counted, statuses[&401] as u64,
        "every refusal is counted: {v}"
    );
    let ok = s
        .admin()
        .json(Method::GET, "/v1/audit/verify", Body::Empty)
        .unwrap();
    assert_eq!(ok["ok"], true, "{ok}");
}

/// Open a WebSocket handshake and keep the connection: the HTTP status
/// it got, and the stream (open while the session lasts).
fn ws_open(addr: &str, path: &str, key: &str) -> (u16, std::net::TcpStream) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    let status = String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, s)
}

/// H5: one key could take every blocking thread (512 execs of `sleep`),
/// make the server buffer any amount of output (`max_output` unbounded)
/// or hold uploads whole in memory. Now each key has a share of calls and
/// of WebSockets, output is capped by the server, uploads stream.
#[test]
fn h5_one_key_cannot_exhaust_the_server() {
    require_sandboxes!();
    let s = Server::start_env(
        &data_dir("h5"),
        &[
            ("AIBOX_MAX_CALLS_PER_KEY", "3"),
            ("AIBOX_MAX_STREAMS_PER_KEY", "2"),
            ("AIBOX_MAX_EXEC_OUTPUT", "1m"),
            ("AIBOX_MAX_BODY", "1m"),
        ],
    );
    let admin = s.admin();
    let (_, greedy_key) = new_key(&admin, "greedy", "user");
    let (_, other_key) = new_key(&admin, "other", "user");
    let greedy = s.client(&greedy_key);
    let other = s.client(&other_key);
    let g = create(&greedy, json!({}));
    let o = create(&other, json!({}));

    // Three long execs fill the greedy key's share; a fourth is refused at
    // once, and another key is served meanwhile.
    let addr = s.addr.clone();
    let holders: Vec<_> = (0..3)
        .map(|_| {
            let (addr, key, g) = (addr.clone(), greedy_key.clone(), g.clone());
            std::thread::spawn(move || {
                let body = json!({"cmd": ["sleep", "4"]}).to_string();
                http(
                    &addr,
                    "POST",
                    &format!("/v1/sandboxes/{g}/exec"),
                    &[
                        ("authorization", &format!("Bearer {key}")),
                        ("content-type", "application/json"),
                    ],
                    body.as_bytes(),
                )
                .status
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (status, v) = refused(
        &greedy,
        Method::POST,
        &format!("/v1/sandboxes/{g}/exec"),
        json!({"cmd": ["true"]}),
    );
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    let t = std::time::Instant::now();
    let v = exec(&other, &o, json!(["echo", "served"]));
    assert_eq!(v["stdout"], "served\n");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        t.elapsed()
    );
    for h in holders {
        assert_eq!(h.join().unwrap(), 200);
    }
    // The share is back once they are done.
    assert_eq!(exec(&greedy, &g, json!(["true"]))["exit_code"], 0);

    // Output: the server's cap, whatever the request asks.
    let v = greedy
        .json(
            Method::POST,
            &format!("/v1/sandboxes/{g}/exec"),
            Body::Json(json!({"cmd": "head -c 5000000 /dev/zero | tr '\\0' x", "max_output": 1_000_000_000_000u64})),
        )
        .unwrap();
    assert_eq!(v["stdout_truncated"], true, "{}", v["exit_code"]);
    assert!(v["stdout"].as_str().unwrap().len() <= 1 << 20);

    // Uploads: streamed, cut off past max_body with 413, the old file kept.
    greedy
        .call(
            Method::PUT,
            &format!("/v1/sandboxes/{g}/files?path=/workspace/f"),
            Body::Raw(b"old".to_vec()),
        )
        .unwrap();
    let r = greedy
        .send(
            Method::PUT,
            &format!("/v1/sandboxes/{g}/files?path=/workspace/f"),
            Body::Raw(vec![b'y'; 3 << 20]),
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    let back = greedy
        .call(
            Method::GET,
            &format!("/v1/sandboxes/{g}/files?path=/workspace/f"),
            Body::Empty,
        )
        .unwrap();
    assert_eq!(back.body.as_ref(), b"old");
    // A large upload within the limit arrives whole.
    let big: Vec<u8> = (0..(900 << 10)).map(|i| (i % 251) as u8).collect();
    greedy
        .call(
            Method::PUT,
            &format!("/v1/sandboxes/{g}/files?path=/workspace/big"),
            Body::Raw(big.clone()),
        )
        .unwrap();
    let back = greedy
        .call(
            Method::GET,
            &format!("/v1/sandboxes/{g}/files?path=/workspace/big"),
            Body::Empty,
        )
        .unwrap();
    assert_eq!(back.body.as_ref(), big.as_slice());

    // WebSockets: two sessions at once for this key, a third refused.
    let path = format!("/v1/sandboxes/{g}/exec/ws");
    let (a, _keep_a) = ws_open(&s.addr, &path, &greedy_key);
    let (b, _keep_b) = ws_open(&s.addr, &path, &greedy_key);
    let (c, _) = ws_open(&s.addr, &path, &greedy_key);
    assert_eq!((a, b, c), (101, 101, 429));
    let (d, _) = ws_open(&s.addr, &format!("/v1/sandboxes/{o}/exec/ws"), &other_key);
    assert_eq!(d, 101, "another key is not affected");
}

/// M9: rootless, `:ro` made only the top of a bind read-only: submounts
/// under it (`/dev/shm`, a data disk under `$HOME`) stayed writable.
#[test]
fn m9_read_only_mounts_are_read_only_all_the_way_down() {
    require_sandboxes!();
    let env = common::Env::new("m9");
    let name = format!("aibox-m9-{}", aibox_runtime::random_id());
    let o = env.run(&[
        "run",
        "--mount",
        "/dev:/hostdev:ro",
        "--",
        "sh",
        "-c",
        &format!(
            "test -d /hostdev/shm && (touch /hostdev/shm/{name} && echo WRITABLE || echo refused)"
        ),
    ]);
    let leaked = Path::new("/dev/shm").join(&name);
    let escaped = leaked.exists();
    let _ = std::fs::remove_file(&leaked);
    assert!(!escaped, "a file appeared in the host's /dev/shm");
    assert_eq!(common::stdout(&o), "refused\n", "{}", common::stderr(&o));
}

/// L9: a sandbox in full network mode with L4 turned IPv4 forwarding on
/// for the whole host, for good. Now: on only for sandbox links (the
/// fence), and off again with the last link.
#[test]
fn l9_forwarding_is_fenced_and_restored() {
    require_sandboxes!();
    if !common::is_root() || !Path::new("/usr/sbin/nft").exists() {
        eprintln!("SKIP l9_forwarding_is_fenced_and_restored: needs root and nftables (L4 egress)");
        return;
    }
    let fwd = "/proc/sys/net/ipv4/ip_forward";
    let before = std::fs::read_to_string(fwd).unwrap();
    if before.trim() != "0" {
        eprintln!(
            "SKIP l9_forwarding_is_fenced_and_restored: this host forwards already (ip_forward={})",
            before.trim()
        );
        return;
    }
    let s = Server::start(&data_dir("l9"));
    let admin = s.admin();
    let id = create(
        &admin,
        json!({"network": {"mode": "full", "enforcement": "l4"}}),
    );
    assert_eq!(std::fs::read_to_string(fwd).unwrap().trim(), "1");
    let tables = std::process::Command::new("nft")
        .args(["list", "table", "inet", "aibox-fence"])
        .output()
        .unwrap();
    let fence = common::stdout(&tables);
    assert!(fence.contains("abx") && fence.contains("drop"), "{fence}");
    admin
        .call(Method::DELETE, &format!("/v1/sandboxes/{id}"), Body::Empty)
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(fwd).unwrap().trim(),
        "0",
        "forwarding stayed on after the last sandbox link"
    );
    let gone = std::process::Command::new("nft")
        .args(["list", "table", "inet", "aibox-fence"])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "the fence stayed");
}

/// M3: a sandbox's PID 1 is a clone of its creator and kept the creator's
/// environment: rootless, `/proc/1/environ` (through the file API, or from
/// a command) showed the server's secrets.
#[test]
fn m3_the_creators_environment_never_reaches_a_sandbox() {
    require_sandboxes!();
    let secret = format!("hunter2-{}", aibox_runtime::random_id());
    let s = Server::start_env(&data_dir("m3"), &[("AIBOX_TEST_SECRET", &secret)]);
    let (_, key) = new_key(&s.admin(), "tenant", "user");
    let c = s.client(&key);
    let id = create(&c, json!({}));
    let r = c
        .send(
            Method::GET,
            &format!("/v1/sandboxes/{id}/files?path=/proc/1/environ"),
            Body::Empty,
            &[],
        )
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&r.body).contains(&secret),
        "the file API served the server's environment"
    );
    let v = exec(
        &c,
        &id,
        json!(["sh", "-c", "cat /proc/1/environ 2>/dev/null; env"]),
    );
    assert!(!v["stdout"].as_str().unwrap().contains(&secret), "{v}");
    // A one-shot run: the caller's environment stays with the caller.
    let env = common::Env::new("m3");
    let o = env
        .aibox(&[
            "run",
            "--",
            "sh",
            "-c",
            "cat /proc/1/environ 2>/dev/null; env",
        ])
        .env("AIBOX_TEST_SECRET", &secret)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!(
        !common::stdout(&o).contains(&secret),
        "{}",
        common::stdout(&o)
    );
}

/// L1: the agent's file API took paths as given, so `/proc/1/fd/N/..`
/// reached the host directory PID 1 holds a descriptor of (stat as a
/// minimum, read and write where Landlock is absent), and listing
/// `/proc/1/fd` showed host paths. Now it never resolves through a magic
/// link, and in /proc and /sys it only reads files (the host reads a
/// guest's /proc/net/tcp so), also through a link the sandbox planted;
/// the sandbox's own files and links work as before.
#[test]
fn l1_the_file_api_never_passes_through_proc() {
    require_sandboxes!();
    let s = Server::start(&data_dir("l1"));
    let (_, key) = new_key(&s.admin(), "tenant", "user");
    let c = s.client(&key);
    // With network, PID 1 holds the host directory of the egress socket.
    let id = create(
        &c,
        json!({"network": {"mode": "allowlist", "rules": ["pypi.org"]}}),
    );
    let get = |q: String| {
        let r = c
            .send(
                Method::GET,
                &format!("/v1/sandboxes/{id}/files{q}"),
                Body::Empty,
                &[],
            )
            .unwrap();
        (r.status, String::from_utf8_lossy(&r.body).to_string())
    };
    let (status, body) = get("/list?path=/proc/1/fd".into());
    assert!(status >= 400, "/proc/1/fd was listed: {body}");
    assert!(body.contains("/proc"), "{body}");
    for n in 0..16 {
        for q in [
            format!("/stat?path=/proc/1/fd/{n}/.."),
            format!("/list?path=/proc/1/fd/{n}/.."),
            format!("?path=/proc/1/fd/{n}/../egress.sock"),
            format!("/stat?path=/proc/self/root/proc/1/fd/{n}"),
        ] {
            let (status, body) = get(q.clone());
            assert!(status >= 400, "{q}: {body}");
        }
    }
    // A link the sandbox plants to a magic link, or into /proc.
    let v = exec(
        &c,
        &id,
        json!(["sh", "-c", "mkdir -p /workspace/d && echo mine > /workspace/d/f && ln -s /proc/1/fd/3/.. /workspace/up && ln -s /proc/1 /workspace/p1 && ln -s d /workspace/alias"]),
    );
    assert_eq!(v["exit_code"], 0, "{v}");
    for q in [
        "/list?path=/workspace/up",
        "?path=/workspace/up/egress.sock",
        "?path=/workspace/p1/fd/3",
        "/list?path=/workspace/p1/fd",
        "/stat?path=/workspace/p1/fd/3",
        "/stat?path=/workspace/p1/cwd",
    ] {
        let (status, body) = get(q.into());
        assert!(status >= 400, "{q}: {body}");
    }
    // Plain files of /proc can be read; PID 1's environment is zeros
    // where it is readable at all (rootless: as root PID 1 is not dumpable).
    let (status, body) = get("?path=/proc/net/tcp".into());
    assert!(status == 200 && body.contains("local_address"), "{body}");
    let (status, body) = get("?path=/workspace/p1/environ".into());
    assert!(
        status >= 400 || (status == 200 && body.bytes().all(|b| b == 0)),
        "{status} {body}"
    );
    // The sandbox's own files, through its own links, as before.
    let (status, body) = get("?path=/workspace/alias/f".into());
    assert_eq!((status, body.as_str()), (200, "mine\n"));
    let (status, body) = get("/list?path=/workspace".into());
    assert_eq!(status, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    let paths: Vec<&str> = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"/workspace/up") && paths.contains(&"/workspace/d"),
        "{paths:?}"
    );
    let (status, body) = get("/stat?path=/workspace/up".into());
    assert_eq!(status, 200, "the link itself can be looked at: {body}");
}

/// L2: between `pivot_root` and the old root's detach, setup created
/// mount points (and an image's `/etc/hosts`) by path, so a snapshot
/// whose `/workspace` had become a link to `/.aibox-old/…` made
/// directories on the host for a mount below it. Now such a sandbox is
/// refused and nothing appears on the host.
#[test]
fn l2_setup_never_follows_a_link_into_the_host_root() {
    require_sandboxes!();
    let data = data_dir("l2");
    let host = data.with_extension("hostdir");
    let shared = data.with_extension("shared");
    for d in [&host, &shared] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let s = Server::start_env(&data, &[("AIBOX_ALLOWED_MOUNTS", shared.to_str().unwrap())]);
    let c = s.admin();
    let sb = create(&c, json!({}));
    let v = c
        .json(
            Method::POST,
            &format!("/v1/sandboxes/{sb}/exec"),
            // (Rootless, the sandbox's one identity owns its whole tree.)
            Body::Json(json!({
                "cmd": ["sh", "-c", format!("rm -rf /workspace && ln -s /.aibox-old{} /workspace", host.display())],
                "user": if common::is_root() { "root" } else { "user" },
            })),
        )
        .unwrap();
    assert_eq!(v["exit_code"], 0, "{v}");
    let snap = c
        .json(
            Method::POST,
            &format!("/v1/sandboxes/{sb}/snapshots"),
            Body::Json(json!({})),
        )
        .unwrap();
    let snap = snap["id"].as_str().unwrap().to_string();
    let (status, v) = refused(
        &c,
        Method::POST,
        "/v1/sandboxes",
        json!({"snapshot": snap, "workdir": "/",
               "mounts": [{"host": shared, "guest": "/workspace/m/n", "read_only": true}]}),
    );
    let made: Vec<_> = std::fs::read_dir(&host)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(made.is_empty(), "setup created {made:?} on the host");
    assert!(status >= 400, "{v}");
    let m = v["error"]["message"].as_str().unwrap_or_default();
    assert!(m.contains("leads out of the sandbox's root"), "{v}");
    drop(s);
    let _ = std::fs::remove_dir_all(&host);
    let _ = std::fs::remove_dir_all(&shared);
}

/// L3: without `-t`, `aibox run` gave the command the caller's terminal
/// itself as stdin, stdout and stderr, so it could change the terminal's
/// modes or line discipline under the caller's shell. Now a terminal of
/// the caller's is relayed through pipes by PID 1: the command has no
/// terminal, and its output and input still flow.
#[test]
fn l3_the_callers_terminal_is_never_handed_to_the_command() {
    require_sandboxes!();
    use std::io::Read;
    let env = common::Env::new("l3");
    let (master, slave) = aibox_sys::openpty().unwrap();
    let stdio = || std::process::Stdio::from(slave.try_clone().unwrap());
    let mut child = env
        .aibox(&[
            "run",
            "-i",
            "--",
            "sh",
            "-c",
            "for f in 0 1 2; do [ -t $f ] && echo tty$f; done; read line; echo got:$line; echo err >&2",
        ])
        .stdin(stdio())
        .stdout(stdio())
        .stderr(stdio())
        .spawn()
        .unwrap();
    drop(slave);
    let mut m = std::fs::File::from(master);
    use std::io::Write;
    m.write_all(b"typed\n").unwrap();
    let status = child.wait().unwrap();
    let mut out = Vec::new();
    let _ = m.read_to_end(&mut out); // EIO once every slave is closed
    let out = String::from_utf8_lossy(&out).replace('\r', "");
    assert!(status.success(), "{out}");
    assert!(!out.contains("tty"), "the command had the terminal: {out}");
    assert!(out.contains("got:typed") && out.contains("err"), "{out}");
}

/// L4: as root the host's /usr was bound idmapped with the sandbox's own
/// map, so sandbox uid k had host uid k's owner rights there (root's 0600
/// files, a service's 0700 directories). Now it is bound as it is: its
/// files are nobody's to the sandbox and only their "other" bits apply.
#[test]
fn l4_the_hosts_usr_gives_no_owner_rights() {
    require_sandboxes!();
    let env = common::Env::new("l4");
    let o = env.run(&[
        "run",
        "--user",
        "root",
        "--",
        "stat",
        "-c",
        "%u %g",
        "/usr/bin/env",
    ]);
    assert_eq!(
        common::stdout(&o),
        "65534 65534\n",
        "{}",
        common::stderr(&o)
    );
    // A path of the host's /usr that only its owner may read, if there is
    // one: its owner's uid in the sandbox cannot.
    use std::os::unix::fs::MetadataExt;
    let mut private = None;
    let mut stack = vec![(std::path::PathBuf::from("/usr"), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten().take(400) {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.mode() & 0o004 == 0 && m.mode() & 0o400 != 0 && m.uid() < 65534 {
                private = Some((e.path(), m.uid(), m.is_dir()));
                break;
            }
            if m.is_dir() && depth < 4 {
                stack.push((e.path(), depth + 1));
            }
        }
        if private.is_some() {
            break;
        }
    }
    let Some((path, uid, dir)) = private else {
        eprintln!(
            "l4: no owner-only path under this host's /usr to probe beyond the ownership check"
        );
        return;
    };
    let read = if dir { "ls" } else { "cat" };
    let o = env.run(&[
        "run",
        "--user",
        &uid.to_string(),
        "--",
        "sh",
        "-c",
        &format!(
            "{read} {} >/dev/null 2>&1 && echo READ || echo refused",
            path.display()
        ),
    ]);
    assert_eq!(
        common::stdout(&o),
        "refused\n",
        "{}: {}",
        path.display(),
        common::stderr(&o)
    );
}

/// L8: /proc showed the host's users with keys, its loaded modules and its
/// kernel's configuration. Now they read empty (where the kernel has
/// them); what stays visible is written down in docs/threat-model.md.
#[test]
fn l8_proc_does_not_describe_the_host() {
    require_sandboxes!();
    let env = common::Env::new("l8");
    for f in ["key-users", "modules", "config.gz", "keys", "kallsyms"] {
        let o = env.run(&[
            "run",
            "--",
            "sh",
            "-c",
            &format!("cat /proc/{f} 2>/dev/null | wc -c"),
        ]);
        assert_eq!(
            common::stdout(&o).trim(),
            "0",
            "/proc/{f}: {}",
            common::stderr(&o)
        );
    }
}
