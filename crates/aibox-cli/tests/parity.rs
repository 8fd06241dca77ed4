//! Every field of the create request reaches every front end.
//!
//! The fields come from the served OpenAPI document (derived from
//! `aibox_types::api::CreateRequest`), not from a list kept here: a field
//! added to the request without a case below fails this test, and so does
//! a front end that drops one. Each front end creates a sandbox with every
//! field set to a value unlike the server's default (the server's default
//! backend is `microvm`, the request's `namespaces`), and the view each
//! sandbox gets is checked field by field: the REST API, the CLI through
//! the server, the MCP tool, and the CLI's `--local` mode, which either
//! honours a field or refuses it by name.
//!
//! The SDKs and the dashboard hold the same line in their own suites,
//! also against the served document: `sdk/python/tests/test_parity.py`
//! (`CREATE_FIELDS`, `EXEC_FIELDS`, a create with every parameter),
//! `sdk/typescript/test/sdk.test.mjs` (the same, with the compiler holding
//! `CREATE_FIELDS` to the options type), and `ui/tests/dashboard.test.mjs`
//! (a form control for every field, and a create with all of them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aibox_client::{Body, Method};
use common::mcp::Mcp;
use common::server::{data_dir, Server};
use serde_json::{json, Value};
use std::path::Path;

/// One create field as each front end spells it, and how to see it in a
/// sandbox's view.
struct Case {
    field: &'static str,
    rest: Value,
    cli: Vec<String>,
    /// MCP's argument, when it differs from the REST one.
    mcp: Option<(&'static str, Value)>,
    /// For a field the MCP tool asks the user about: what its request for
    /// approval must name (this test's MCP client cannot answer one, so
    /// the refusal shows the field reached the tool with its value).
    gated: Option<&'static str>,
    /// Whether `--local` honours the field (else it must refuse it).
    local: bool,
    check: fn(&Value) -> Result<(), String>,
}

fn expect(what: &str, got: &Value, want: Value) -> Result<(), String> {
    if *got == want {
        Ok(())
    } else {
        Err(format!("{what} is {got}, not {want}"))
    }
}

fn cases(mounted: &Path, snapshot: &str) -> Vec<Case> {
    let m = mounted.display().to_string();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        Case {
            field: "template",
            rest: json!("host"),
            cli: s(&["--template", "host"]),
            mcp: None,
            gated: None,
            local: true,
            check: |v| expect("spec.template", &v["spec"]["template"], json!("host")),
        },
        Case {
            field: "cpus",
            rest: json!(0.5),
            cli: s(&["--cpus", "0.5"]),
            mcp: None,
            gated: None,
            local: true,
            check: |v| expect("spec.cpus", &v["spec"]["cpus"], json!(0.5)),
        },
        Case {
            field: "memory",
            rest: json!("200m"),
            cli: s(&["--memory", "200m"]),
            mcp: None,
            gated: None,
            local: true,
            check: |v| expect("spec.memory", &v["spec"]["memory"], json!(200u64 << 20)),
        },
        Case {
            field: "pids",
            rest: json!(321),
            cli: s(&["--pids", "321"]),
            mcp: None,
            gated: None,
            local: true,
            check: |v| expect("spec.pids", &v["spec"]["pids"], json!(321)),
        },
        Case {
            field: "disk",
            rest: json!("300m"),
            cli: s(&["--disk", "300m"]),
            mcp: None,
            gated: None,
            local: true,
            check: |v| expect("spec.disk", &v["spec"]["disk"], json!(300u64 << 20)),
        },
        Case {
            field: "env",
            rest: json!({"PARITY": "yes"}),
            cli: s(&["-e", "PARITY=yes"]),
            mcp: None,
            gated: None,
            local: true,
            check: |v| {
                let env = v["spec"]["env"].as_array().cloned().unwrap_or_default();
                if env.contains(&json!(["PARITY", "yes"])) {
                    Ok(())
                } else {
                    Err(format!("spec.env {env:?} lacks PARITY=yes"))
                }
            },
        },
        Case {
            field: "workdir",
            rest: json!("/tmp"),
            cli: s(&["--workdir", "/tmp"]),
            mcp: None,
            gated: None,
            local: true,
            check: |v| expect("spec.workdir", &v["spec"]["workdir"], json!("/tmp")),
        },
        Case {
            field: "user",
            rest: json!("root"),
            cli: s(&["--user", "root"]),
            mcp: None,
            gated: None,
            local: true,
            check: |v| expect("spec.user", &v["spec"]["user"], json!("root")),
        },
        Case {
            field: "ttl_seconds",
            rest: json!(4321),
            cli: s(&["--timeout", "4321s"]),
            mcp: None,
            gated: Some("4321 s"),
            local: true,
            check: |v| {
                let left = v["remaining_ms"].as_u64().unwrap_or(0);
                // Through the server the TTL; --local, the runtime's own
                // lifetime.
                let local = v["spec"]["timeout_ms"] == json!(4_321_000);
                if local || (left > 4_000_000 && left <= 4_321_000) {
                    Ok(())
                } else {
                    Err(format!("remaining_ms is {left}, not about 4321 s"))
                }
            },
        },
        Case {
            field: "idle_timeout_seconds",
            rest: json!(777),
            cli: s(&["--idle-timeout", "777s"]),
            mcp: None,
            gated: None,
            local: false,
            check: |v| {
                expect(
                    "idle_timeout_seconds",
                    &v["idle_timeout_seconds"],
                    json!(777),
                )
            },
        },
        Case {
            field: "hostname",
            rest: json!("parity"),
            cli: s(&["--hostname", "parity"]),
            mcp: None,
            gated: None,
            local: true,
            check: |v| expect("spec.hostname", &v["spec"]["hostname"], json!("parity")),
        },
        Case {
            field: "labels",
            rest: json!({"parity": "yes"}),
            cli: s(&["--label", "parity=yes"]),
            mcp: None,
            gated: None,
            local: false,
            check: |v| expect("labels.parity", &v["labels"]["parity"], json!("yes")),
        },
        Case {
            field: "require_isolation",
            rest: json!("basic"),
            cli: s(&["--require-isolation", "basic"]),
            mcp: None,
            gated: None,
            local: true,
            check: |v| {
                expect(
                    "spec.require_isolation",
                    &v["spec"]["require_isolation"],
                    json!("basic"),
                )
            },
        },
        Case {
            field: "backend",
            rest: json!("namespaces"),
            cli: s(&["--backend", "namespaces"]),
            mcp: None,
            gated: None,
            local: true,
            check: |v| expect("spec.backend", &v["spec"]["backend"], json!("namespaces")),
        },
        Case {
            field: "mounts",
            rest: json!([{"host": m, "guest": "/parity", "read_only": true}]),
            cli: vec!["--mount".into(), format!("{m}:/parity:ro")],
            mcp: Some(("mounts", json!([format!("{m}:/parity:ro")]))),
            gated: Some(":/parity:ro"),
            local: true,
            check: |v| {
                expect(
                    "spec.mounts[0].guest",
                    &v["spec"]["mounts"][0]["guest"],
                    json!("/parity"),
                )
            },
        },
        Case {
            field: "volumes",
            rest: json!([{"name": "parity-vol", "path": "/pvol", "read_only": true}]),
            cli: s(&["--volume", "parity-vol:/pvol:ro"]),
            mcp: Some(("volumes", json!(["parity-vol:/pvol:ro"]))),
            gated: None,
            local: true,
            check: |v| {
                expect(
                    "spec.volumes[0]",
                    &json!([
                        &v["spec"]["volumes"][0]["name"],
                        &v["spec"]["volumes"][0]["path"],
                        &v["spec"]["volumes"][0]["read_only"]
                    ]),
                    json!(["parity-vol", "/pvol", true]),
                )
            },
        },
        Case {
            field: "workspace",
            rest: json!("parity-ws"),
            cli: s(&["--workspace", "parity-ws"]),
            mcp: None,
            gated: Some("workspace parity-ws"),
            local: false,
            check: |v| {
                if !v["spec"]["workspace"].is_string() {
                    return Err(format!("spec.workspace is {}", v["spec"]["workspace"]));
                }
                let at = v["spec"]["volumes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|m| m["path"] == "/workspace");
                match at {
                    Some(m) if m["name"] == "workspace.parity-ws" => Ok(()),
                    _ => Err(format!(
                        "no workspace files at /workspace: {}",
                        v["spec"]["volumes"]
                    )),
                }
            },
        },
        Case {
            field: "snapshot",
            rest: json!(snapshot),
            cli: s(&["--snapshot", snapshot]),
            mcp: None,
            gated: None,
            local: false,
            check: |v| {
                if v["spec"]["snapshot"].is_string() {
                    Ok(())
                } else {
                    Err("spec.snapshot is not set".into())
                }
            },
        },
        Case {
            field: "network",
            rest: json!({"mode": "allowlist", "rules": ["allow parity.example"], "enforcement": "proxy"}),
            cli: s(&[
                "--network",
                "allowlist",
                "--allow",
                "parity.example",
                "--enforcement",
                "proxy",
            ]),
            mcp: None,
            gated: Some("allow parity.example"),
            local: false,
            check: |v| {
                expect("spec.network", &v["spec"]["network"], json!("allowlist"))?;
                expect(
                    "spec.network_rules",
                    &v["spec"]["network_rules"],
                    json!(["allow parity.example"]),
                )?;
                expect(
                    "spec.network_enforcement",
                    &v["spec"]["network_enforcement"],
                    json!("proxy"),
                )
            },
        },
        Case {
            field: "public",
            rest: json!(true),
            cli: s(&["--public"]),
            mcp: None,
            gated: Some("published ports public"),
            local: false,
            check: |v| expect("public_ports", &v["public_ports"], json!(true)),
        },
    ]
}

/// The creates each front end makes: every field at once, except a
/// snapshot, whose spec would lend the others its values (its backend
/// among them), so it goes alone.
fn groups(cases: &[Case]) -> Vec<Vec<&Case>> {
    let alone = |c: &&Case| c.field == "snapshot";
    let mut g = vec![cases.iter().filter(|c| !alone(c)).collect::<Vec<_>>()];
    g.extend(cases.iter().filter(alone).map(|c| vec![c]));
    g
}

/// Every case's failures, by front end.
fn check_all(front: &str, cases: &[&Case], view: &Value, failures: &mut Vec<String>) {
    for c in cases {
        if let Err(e) = (c.check)(view) {
            failures.push(format!("{front}: {}: {e}", c.field));
        }
    }
}

fn created_id(text: &str) -> Option<String> {
    text.split_whitespace()
        .skip_while(|w| *w != "sandbox")
        .nth(1)
        .map(str::to_string)
}

#[test]
fn every_create_field_reaches_every_front_end() {
    if !common::sandboxes_supported() {
        eprintln!("SKIP every_create_field_reaches_every_front_end: sandboxes are not supported on this host");
        return;
    }
    let data = data_dir("parity");
    let mounted = data.with_extension("mounted");
    std::fs::create_dir_all(&mounted).unwrap();
    common::give_to_user(&mounted);
    let s = Server::start_env(
        &data,
        &[
            ("AIBOX_DEFAULT_BACKEND", "microvm"),
            ("AIBOX_ALLOWED_MOUNTS", mounted.to_str().unwrap()),
        ],
    );
    let c = s.admin();

    // The fields, from the schema the server serves.
    let doc = c
        .json(Method::GET, "/v1/openapi.json", Body::Empty)
        .unwrap();
    let fields: Vec<String> = doc["components"]["schemas"]["CreateSandbox"]["properties"]
        .as_object()
        .expect("CreateSandbox has properties")
        .keys()
        .cloned()
        .collect();

    // A snapshot to start from (of a namespace sandbox on the host template).
    let base = c
        .json(
            Method::POST,
            "/v1/sandboxes",
            Body::Json(json!({"backend": "namespaces"})),
        )
        .unwrap();
    let base_id = base["id"].as_str().unwrap().to_string();
    let snap = c
        .json(
            Method::POST,
            &format!("/v1/sandboxes/{base_id}/snapshots"),
            Body::Empty,
        )
        .unwrap();
    let snapshot = snap["id"].as_str().unwrap().to_string();

    // A volume to mount (the server's, and one of the same name for
    // `--local` below).
    c.json(
        Method::POST,
        "/v1/volumes",
        Body::Json(json!({"name": "parity-vol", "size": "16m"})),
    )
    .unwrap();
    c.json(
        Method::POST,
        "/v1/workspaces",
        Body::Json(json!({"name": "parity-ws", "size": "16m"})),
    )
    .unwrap();

    let mut cases = cases(&mounted, &snapshot);
    let known: Vec<&str> = cases.iter().map(|c| c.field).collect();
    let missing: Vec<&String> = fields
        .iter()
        .filter(|f| !known.contains(&f.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "create fields with no parity case: {missing:?} (give every front end the field, then add its case here)"
    );
    let stale: Vec<&&str> = known
        .iter()
        .filter(|k| !fields.iter().any(|f| f == *k))
        .collect();
    assert!(
        stale.is_empty(),
        "cases for fields the API no longer has: {stale:?}"
    );

    // Rootless on a host that delegates no cgroups, an explicit limit
    // fails the create (fail closed); the root run drives these fields.
    if !common::is_root() {
        let limits = ["cpus", "memory", "pids"];
        eprintln!("   SKIP parity of {limits:?}: rootless, limits need a delegated cgroup (the root run covers them)");
        cases.retain(|c| !limits.contains(&c.field));
    }

    let mut failures = Vec::new();
    let view_of = |id: &str| {
        c.json(Method::GET, &format!("/v1/sandboxes/{id}"), Body::Empty)
            .unwrap()
    };

    for group in groups(&cases) {
        // REST, as the SDKs and the dashboard send it.
        let body: serde_json::Map<String, Value> = group
            .iter()
            .map(|c| (c.field.to_string(), c.rest.clone()))
            .collect();
        match c.json(
            Method::POST,
            "/v1/sandboxes",
            Body::Json(Value::Object(body)),
        ) {
            Ok(v) => check_all(
                "REST",
                &group,
                &view_of(v["id"].as_str().unwrap()),
                &mut failures,
            ),
            Err(e) => failures.push(format!("REST: the create failed: {e}")),
        }

        // The CLI through the server.
        let mut args = vec!["create".to_string()];
        for c in &group {
            args.extend(c.cli.iter().cloned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = s.cli(&args);
        if out.status.success() {
            let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
            check_all("CLI", &group, &view_of(&id), &mut failures);
        } else {
            failures.push(format!(
                "CLI: the create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }

    // The MCP tool (as the server's own /mcp serves it).
    let mut mcp = Mcp::connect(&s.addr, &[("authorization", &format!("Bearer {}", s.key))])
        .expect("MCP connects");
    for group in groups(&cases) {
        let group: Vec<&Case> = group.into_iter().filter(|c| c.gated.is_none()).collect();
        let mut margs = serde_json::Map::new();
        for c in &group {
            let (k, v) = c.mcp.clone().unwrap_or((c.field, c.rest.clone()));
            margs.insert(k.to_string(), v);
        }
        margs.insert("keep".into(), json!(true));
        let (failed, text) = mcp.tool("create_sandbox", Value::Object(margs));
        match created_id(&text).filter(|_| !failed) {
            Some(id) => check_all("MCP", &group, &view_of(&id), &mut failures),
            None => failures.push(format!("MCP: the create failed: {text}")),
        }
    }
    // A read-write volume asks first; read-only (above) does not.
    let (failed, text) = mcp.tool("create_sandbox", json!({"volumes": ["parity-vol:/pvol"]}));
    if !failed || !text.contains("needs the user's approval") || !text.contains("parity-vol:/pvol")
    {
        failures.push(format!(
            "MCP: a read-write volume should ask the user, got: {text}"
        ));
    }
    for c in cases.iter().filter(|c| c.gated.is_some()) {
        let (k, v) = c.mcp.clone().unwrap_or((c.field, c.rest.clone()));
        let (failed, text) = mcp.tool("create_sandbox", json!({ k: v }));
        let want = c.gated.unwrap_or_default();
        if !failed || !text.contains("needs the user's approval") || !text.contains(want) {
            failures.push(format!(
                "MCP: {}: should ask the user about {want:?}, got: {text}",
                c.field
            ));
        }
    }

    // The CLI's --local mode: the fields it honours, in one sandbox; each
    // of the others refused by name.
    let local_env = [
        ("AIBOX_RUN_DIR", data.join("local-run")),
        ("AIBOX_DATA_DIR", data.join("local-data")),
    ];
    let local = |extra: &[String]| {
        let mut cmd = std::process::Command::new(common::bin());
        cmd.args(["create", "--local", "--json"]).args(extra);
        for (k, v) in &local_env {
            cmd.env(k, v);
        }
        cmd.env_remove("AIBOX_URL").output().unwrap()
    };
    let mut vol = std::process::Command::new(common::bin());
    vol.args(["volume", "create", "--local", "parity-vol", "--size", "16m"]);
    for (k, v) in &local_env {
        vol.env(k, v);
    }
    let made = vol.output().unwrap();
    assert!(made.status.success(), "{}", common::stderr(&made));
    let honoured: Vec<&Case> = cases.iter().filter(|c| c.local).collect();
    let args: Vec<String> = honoured.iter().flat_map(|c| c.cli.clone()).collect();
    let out = local(&args);
    if out.status.success() {
        let record: Value = serde_json::from_slice(&out.stdout).unwrap();
        for c in &honoured {
            if let Err(e) = (c.check)(&record) {
                failures.push(format!("CLI --local: {}: {e}", c.field));
            }
        }
        let id = record["id"].as_str().unwrap_or_default().to_string();
        let mut rm = std::process::Command::new(common::bin());
        rm.args(["rm", "--local", &id]);
        for (k, v) in &local_env {
            rm.env(k, v);
        }
        let _ = rm.output();
    } else {
        failures.push(format!(
            "CLI --local: the create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut vrm = std::process::Command::new(common::bin());
    vrm.args(["volume", "rm", "--local", "parity-vol"]);
    for (k, v) in &local_env {
        vrm.env(k, v);
    }
    let gone = vrm.output().unwrap();
    if !gone.status.success() {
        failures.push(format!(
            "CLI --local: volume rm failed: {}",
            common::stderr(&gone)
        ));
    }
    for c in cases.iter().filter(|c| !c.local) {
        let out = local(&c.cli);
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !err.contains("drop --local") || !err.contains(&c.cli[0]) {
            failures.push(format!(
                "CLI --local: {} should be refused naming {}, got: {err}",
                c.field, c.cli[0]
            ));
        }
    }

    let _ = std::fs::remove_dir_all(&mounted);
    assert!(
        failures.is_empty(),
        "front ends that lose a field:\n{}",
        failures.join("\n")
    );
}

/// The shell line every exec front end runs: it shows the environment,
/// the working directory, the user and the standard input it got.
const SHOW: &str = r#"printf '%s|%s|%s|' "$PARITY" "$(pwd)" "$(id -u)"; cat"#;

/// What [`SHOW`] printed is what was asked: `PARITY=yes`, cwd `/tmp`, uid
/// 0 when `root` was asked, stdin `fed`.
fn shows_all(front: &str, out: &str, root: bool, failures: &mut Vec<String>) {
    let want_uid = if root { "0" } else { "" };
    let parts: Vec<&str> = out.trim_end().split('|').collect();
    let ok = parts.len() == 4
        && parts[0] == "yes"
        && parts[1] == "/tmp"
        && (want_uid.is_empty() || parts[2] == want_uid)
        && parts[3] == "fed";
    if !ok {
        failures.push(format!(
            "{front}: exec printed {out:?}, not env PARITY=yes, cwd /tmp, uid {want_uid}, stdin fed"
        ));
    }
}

#[test]
fn every_exec_field_reaches_every_front_end() {
    if !common::sandboxes_supported() {
        eprintln!("SKIP every_exec_field_reaches_every_front_end: sandboxes are not supported on this host");
        return;
    }
    let root = common::is_root();
    if !root {
        eprintln!("   SKIP parity of exec's user: a rootless sandbox has one identity (the root run covers it)");
    }
    let data = data_dir("parity-exec");
    let s = Server::start(&data);
    let c = s.admin();
    let doc = c
        .json(Method::GET, "/v1/openapi.json", Body::Empty)
        .unwrap();
    let mut fields: Vec<String> = doc["components"]["schemas"]["Exec"]["properties"]
        .as_object()
        .expect("Exec has properties")
        .keys()
        .cloned()
        .collect();
    fields.sort();
    // Each field below, as every front end spells it.
    let known = [
        "cmd",
        "cwd",
        "env",
        "max_output",
        "stdin",
        "timeout_ms",
        "user",
    ];
    assert_eq!(
        fields, known,
        "the exec request's fields changed: give every front end the new one, then cover it here"
    );
    let sb = c
        .json(Method::POST, "/v1/sandboxes", Body::Json(json!({})))
        .unwrap();
    let id = sb["id"].as_str().unwrap().to_string();
    let user = if root { "root" } else { "user" };
    let mut failures = Vec::new();

    // REST (as the SDKs and the dashboard's terminal-less calls send it).
    let mut body = json!({"cmd": SHOW, "env": {"PARITY": "yes"}, "cwd": "/tmp",
        "timeout_ms": 20000, "stdin": "fed", "max_output": 4096});
    if root {
        body["user"] = json!(user);
    }
    let exec = |body: Value| {
        c.json(
            Method::POST,
            &format!("/v1/sandboxes/{id}/exec"),
            Body::Json(body),
        )
        .unwrap()
    };
    let v = exec(body);
    shows_all(
        "REST",
        v["stdout"].as_str().unwrap_or_default(),
        root,
        &mut failures,
    );
    let v = exec(json!({"cmd": "head -c 5000 /dev/zero | tr '\\0' x", "max_output": 100}));
    if v["stdout"].as_str().map(str::len) != Some(100) || v["stdout_truncated"] != true {
        failures.push(format!("REST: max_output 100 gave {v}"));
    }
    let v = exec(json!({"cmd": "sleep 10", "timeout_ms": 500}));
    if v["timed_out"] != true {
        failures.push(format!("REST: timeout_ms 500 gave {v}"));
    }

    // The CLI, through the server and --local (against a local sandbox).
    let local_env = [
        ("AIBOX_RUN_DIR", data.join("local-run")),
        ("AIBOX_DATA_DIR", data.join("local-data")),
    ];
    let cli = |local: bool, args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut cmd = std::process::Command::new(common::bin());
        // `--local` goes before a command's `--`.
        cmd.arg(args[0])
            .args(local.then_some("--local"))
            .args(&args[1..])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if local {
            cmd.env_remove("AIBOX_URL");
            for (k, v) in &local_env {
                cmd.env(k, v);
            }
        } else {
            cmd.env("AIBOX_URL", format!("http://{}", s.addr))
                .env("AIBOX_KEY", &s.key);
        }
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    };
    let made = cli(true, &["create"], "");
    let local_id = String::from_utf8_lossy(&made.stdout).trim().to_string();
    assert!(
        made.status.success(),
        "create --local: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    for (front, local, target) in [
        ("CLI", false, id.as_str()),
        ("CLI --local", true, local_id.as_str()),
    ] {
        let mut args = vec![
            "exec",
            target,
            "-i",
            "-e",
            "PARITY=yes",
            "-w",
            "/tmp",
            "--timeout",
            "20s",
            "--max-output",
            "4k",
        ];
        if root {
            args.extend(["-u", user]);
        }
        args.extend(["--", "sh", "-c", SHOW]);
        let out = cli(local, &args, "fed");
        shows_all(
            front,
            &String::from_utf8_lossy(&out.stdout),
            root,
            &mut failures,
        );
        let out = cli(
            local,
            &[
                "exec",
                target,
                "--max-output",
                "100",
                "--",
                "sh",
                "-c",
                "head -c 5000 /dev/zero | tr '\\0' x",
            ],
            "",
        );
        if out.stdout.len() != 100 {
            failures.push(format!(
                "{front}: --max-output 100 gave {} bytes",
                out.stdout.len()
            ));
        }
        let out = cli(
            local,
            &["exec", target, "--timeout", "500ms", "--", "sleep", "10"],
            "",
        );
        if out.status.code() != Some(124) {
            failures.push(format!(
                "{front}: --timeout 500ms exited {:?}",
                out.status.code()
            ));
        }
    }
    let _ = cli(true, &["rm", &local_id], "");

    // The MCP tool.
    let mut mcp = Mcp::connect(&s.addr, &[("authorization", &format!("Bearer {}", s.key))])
        .expect("MCP connects");
    let mut args = json!({"sandbox_id": id, "command": SHOW, "env": {"PARITY": "yes"},
        "workdir": "/tmp", "timeout_seconds": 20, "stdin": "fed", "max_output": 4096});
    if root {
        args["user"] = json!(user);
    }
    let (failed, text) = mcp.tool("run_command", args);
    let out = text
        .split_once("--- stdout ---\n")
        .map(|(_, o)| o.lines().next().unwrap_or_default())
        .unwrap_or_default();
    if failed {
        failures.push(format!("MCP: run_command failed: {text}"));
    } else {
        shows_all("MCP", out, root, &mut failures);
    }
    let (_, text) = mcp.tool(
        "run_command",
        json!({"sandbox_id": id, "command": "head -c 5000 /dev/zero | tr '\\0' x", "max_output": 100}),
    );
    if !text.contains("[stdout truncated]") {
        failures.push(format!("MCP: max_output 100 gave {text}"));
    }
    let (_, text) = mcp.tool(
        "run_command",
        json!({"sandbox_id": id, "command": "sleep 10", "timeout_seconds": 1}),
    );
    if !text.contains("timed out") {
        failures.push(format!("MCP: timeout_seconds 1 gave {text}"));
    }
    assert!(
        failures.is_empty(),
        "front ends that lose an exec field:\n{}",
        failures.join("\n")
    );
}
