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
