"""Every operation of the served OpenAPI spec is covered by this SDK, or
listed here as not applicable with the reason."""
import httpx

import aibox

COVERAGE = {
    "GET /v1/health": "n/a: server liveness, for operators and probes",
    "GET /v1/audit": "n/a: the audit log is an operator's (aibox audit)",
    "GET /v1/audit/verify": "n/a: the audit log is an operator's (aibox audit verify)",
    "GET /v1/keys": "n/a: key management is an operator's (aibox keys)",
    "POST /v1/keys": "n/a: key management is an operator's (aibox keys)",
    "DELETE /v1/keys/{id}": "n/a: key management is an operator's (aibox keys)",
    "PATCH /v1/keys/{id}": "n/a: key ceilings are an operator's (aibox keys ceiling)",
    "GET /v1/sandboxes": "Sandbox.list",
    "POST /v1/sandboxes": "Sandbox.create",
    "DELETE /v1/sandboxes/{id}": "Sandbox.kill",
    "GET /v1/sandboxes/{id}": "Sandbox.refresh",
    "POST /v1/sandboxes/{id}/exec": "Commands.run",
    "DELETE /v1/sandboxes/{id}/files": "Files.remove",
    "GET /v1/sandboxes/{id}/files": "Files.read",
    "PUT /v1/sandboxes/{id}/files": "Files.write",
    "GET /v1/sandboxes/{id}/files/list": "Files.list",
    "POST /v1/sandboxes/{id}/files/mkdir": "Files.make_dir",
    "POST /v1/sandboxes/{id}/files/rename": "Files.rename",
    "GET /v1/sandboxes/{id}/files/stat": "Files.stat",
    "PATCH /v1/sandboxes/{id}/network": "Sandbox.set_network",
    "POST /v1/sandboxes/{id}/pause": "Sandbox.pause",
    "POST /v1/sandboxes/{id}/resume": "Sandbox.resume",
    "GET /v1/sandboxes/{id}/ports": "Sandbox.ports",
    "PATCH /v1/sandboxes/{id}/ports": "Sandbox.set_ports",
    "GET /v1/sandboxes/{id}/processes": "Commands.list",
    "POST /v1/sandboxes/{id}/processes": "Commands.run",
    "GET /v1/sandboxes/{id}/processes/{pid}": "CommandHandle.info",
    "POST /v1/sandboxes/{id}/processes/{pid}/kill": "CommandHandle.kill",
    "POST /v1/sandboxes/{id}/processes/{pid}/stdin": "CommandHandle.send_stdin",
    "POST /v1/sandboxes/{id}/processes/{pid}/wait": "CommandHandle.wait_exit",
    "POST /v1/sandboxes/{id}/snapshots": "Sandbox.snapshot",
    "GET /v1/sandboxes/{id}/tar": "Files.download_dir",
    "PUT /v1/sandboxes/{id}/tar": "Files.upload_dir",
    "POST /v1/sandboxes/{id}/timeout": "Sandbox.set_timeout",
    "GET /v1/snapshots": "Snapshot.list",
    "GET /v1/snapshots/{id}": "Snapshot.get",
    "DELETE /v1/snapshots/{id}": "Snapshot.delete",
    "POST /v1/snapshots/{id}/fork": "Snapshot.fork",
    "POST /v1/snapshots/{id}/restore": "Snapshot.restore",
    "POST /v1/snapshots/{id}/template": "Snapshot.to_template",
    "GET /v1/templates": "Templates.list",
    "POST /v1/templates/build": "Templates.build",
    "POST /v1/templates/import": "Templates.import_archive",
    "POST /v1/templates/prune": "Templates.prune",
    "POST /v1/templates/pull": "Templates.pull",
    "GET /v1/templates/{name}": "Templates.get",
    "DELETE /v1/templates/{name}": "Templates.delete",
    "GET /v1/volumes": "Volume.list",
    "POST /v1/volumes": "Volume.create",
    "GET /v1/volumes/{volume}": "Volume.get",
    "DELETE /v1/volumes/{volume}": "Volume.delete",
    "POST /v1/volumes/{volume}/snapshots": "Volume.snapshot",
    "DELETE /v1/volumes/{volume}/snapshots/{snapshot}": "Volume.delete_snapshot",
    "POST /v1/volumes/{volume}/clone": "Volume.clone",
    "GET /v1/workspaces": "Workspace.list",
    "POST /v1/workspaces": "Workspace.create",
    "GET /v1/workspaces/{workspace}": "Workspace.get",
    "DELETE /v1/workspaces/{workspace}": "Workspace.delete",
    "POST /v1/workspaces/{workspace}/snapshots": "Workspace.snapshot",
}


def test_every_operation_is_covered(server):
    spec = httpx.get(server["url"] + "/v1/openapi.json").json()
    ops = {f"{m.upper()} {p}" for p, o in spec["paths"].items() for m in o
           if m in ("get", "post", "put", "patch", "delete")}
    assert not ops - COVERAGE.keys(), f"not covered by the Python SDK: {sorted(ops - COVERAGE.keys())}"
    assert not COVERAGE.keys() - ops, f"listed but not served: {sorted(COVERAGE.keys() - ops)}"
    for op, target in COVERAGE.items():
        if target.startswith("n/a: "):
            continue
        cls, meth = target.split(".")
        assert callable(getattr(getattr(aibox.sandbox, cls), meth, None)), f"{op}: {target} is missing"


def _schema(server, name):
    spec = httpx.get(server["url"] + "/v1/openapi.json").json()
    return spec["components"]["schemas"][name]


def test_every_create_field_is_a_parameter(server):
    """A field the server's create request has is a parameter of
    Sandbox.create and AsyncSandbox.create (CREATE_FIELDS), and back."""
    import inspect
    from aibox._core import CREATE_FIELDS
    fields = set(_schema(server, "CreateSandbox")["properties"])
    assert fields == set(CREATE_FIELDS.values()), (
        f"the server's create fields {sorted(fields)} and the SDK's {sorted(CREATE_FIELDS.values())} differ")
    for create in (aibox.Sandbox.create, aibox.AsyncSandbox.create):
        params = set(inspect.signature(create).parameters)
        assert set(CREATE_FIELDS) <= params, f"{create.__qualname__} lacks {set(CREATE_FIELDS) - params}"


def test_every_exec_field_is_a_parameter(server):
    import inspect
    from aibox._core import EXEC_FIELDS
    fields = set(_schema(server, "Exec")["properties"])
    assert fields == set(EXEC_FIELDS.values()), (
        f"the server's exec fields {sorted(fields)} and the SDK's {sorted(EXEC_FIELDS.values())} differ")
    for run in (aibox.sandbox.Commands.run, aibox.async_sandbox.AsyncCommands.run):
        params = set(inspect.signature(run).parameters)
        assert set(EXEC_FIELDS) <= params, f"{run.__qualname__} lacks {set(EXEC_FIELDS) - params}"


def test_create_body_sends_each_field_under_its_name():
    from aibox._core import CREATE_FIELDS, create_body
    sample = {"template": "host", "memory": "1g", "cpus": 1.5, "pids": 9, "disk": "2g", "env": {"A": "1"},
              "workdir": "/w", "user": "root", "timeout": 60, "idle_timeout": 30, "hostname": "h",
              "labels": {"k": "v"}, "require_isolation": "basic", "backend": "namespaces",
              "mounts": ["/a:/b:ro"], "volumes": ["cache:/c:ro"], "workspace": "w", "snapshot": "abc",
              "network": ["pypi.org"],
              "public": True}
    assert set(sample) == set(CREATE_FIELDS)
    body = create_body(**sample)
    assert set(body) == set(CREATE_FIELDS.values())
    assert body["mounts"] == [{"host": "/a", "guest": "/b", "read_only": True}]
    assert body["volumes"] == [{"name": "cache", "path": "/c", "read_only": True}]
    assert body["network"] == {"mode": "allowlist", "rules": ["pypi.org"]}
    assert body["ttl_seconds"] == 60


def test_every_create_field_reaches_the_server(server):
    """Sandbox.create with every parameter set; the sandbox shows each."""
    import os
    from aibox._core import CREATE_FIELDS
    shared = os.path.join(server["data"], "shared")
    sample = {"template": "host", "memory": "200m", "cpus": 0.5, "pids": 321, "disk": "300m",
              "env": {"PARITY": "yes"}, "workdir": "/tmp", "user": "root", "timeout": 4321, "idle_timeout": 777,
              "hostname": "parity", "labels": {"parity": "sdk"}, "require_isolation": "basic",
              "backend": "namespaces", "mounts": [f"{shared}:/parity:ro"], "volumes": ["parity-vol:/pvol"],
              "workspace": "parity-ws",
              "network": {"mode": "allowlist", "rules": ["parity.example"], "enforcement": "proxy"},
              "public": True}
    if os.geteuid() != 0:
        # Rootless without a delegated cgroup, an explicit limit fails closed.
        for k in ("memory", "cpus", "pids"):
            sample.pop(k)
    assert set(sample) | {"snapshot", "memory", "cpus", "pids"} == set(CREATE_FIELDS)
    vol = aibox.Volume.create("parity-vol", size="16m")
    ws = aibox.Workspace.create("parity-ws", size="16m")
    sb = aibox.Sandbox.create(**sample)
    try:
        v = sb.refresh()
        spec = v["spec"]
        assert spec["template"] == "host" and spec["workdir"] == "/tmp" and spec["user"] == "root"
        if "memory" in sample:
            assert (spec["memory"], spec["cpus"], spec["pids"]) == (200 << 20, 0.5, 321)
        assert spec["disk"] == 300 << 20
        assert ["PARITY", "yes"] in spec["env"]
        assert 4_000_000 < v["remaining_ms"] <= 4_321_000
        assert v["idle_timeout_seconds"] == 777
        assert spec["hostname"] == "parity" and v["labels"]["parity"] == "sdk"
        assert spec["require_isolation"] == "basic" and spec["backend"] == "namespaces"
        assert spec["mounts"][0]["guest"] == "/parity"
        assert (spec["network"], spec["network_rules"], spec["network_enforcement"]) == (
            "allowlist", ["allow parity.example"], "proxy")
        assert v["public_ports"] is True
        assert [(m["name"], m["path"]) for m in spec["volumes"]] == [
            ("parity-vol", "/pvol"), ("workspace.parity-ws", "/workspace")]
        assert vol.refresh()["in_use_by"] == [sb.id]
        assert ws.refresh()["sandboxes"] == [sb.id]
    finally:
        sb.kill()
        vol.delete()
        ws.delete()
    base = aibox.Sandbox.create()
    try:
        snap = base.snapshot()
        restored = aibox.Sandbox.create(snapshot=snap.id)
        try:
            assert restored.refresh()["spec"]["snapshot"] == snap.id
        finally:
            restored.kill()
        snap.delete()
    finally:
        base.kill()
