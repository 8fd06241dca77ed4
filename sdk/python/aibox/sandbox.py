"""The synchronous client."""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import httpx

from ._core import (
    extract_tar, port_url, ports_body, processes, tar_dir,
    CommandResult, ConnectionError, EntryInfo, Endpoint, InvalidArgumentError, Mount, Network,
    VolumeMount,
    clone_body, create_body, error_from, exec_body, q, resolve, split_ws_message, new_volume_body,
    new_workspace_body,
)

OutputCallback = Callable[[str], None]


class _Http:
    """One connection pool to the server."""

    def __init__(self, endpoint: Endpoint, request_timeout: float = 300.0):
        self.endpoint = endpoint
        transport = httpx.HTTPTransport(uds=endpoint.uds) if endpoint.uds else None
        self.client = httpx.Client(base_url=endpoint.base_url, transport=transport,
                                   headers=endpoint.headers(), timeout=request_timeout)

    def request(self, method: str, path: str, *, json_body: Any = None, content: Optional[bytes] = None,
                params: Optional[Mapping[str, Any]] = None) -> httpx.Response:
        try:
            r = self.client.request(method, path, json=json_body, content=content, params=params)
        except httpx.TransportError as e:
            raise ConnectionError(
                f"no aibox server is reachable at {self.endpoint.uds or self.endpoint.base_url} ({e}); "
                "start one with `aibox serve`, or set AIBOX_URL") from e
        if r.status_code >= 300:
            raise error_from(r.status_code, r.content, r.headers)
        return r

    def json(self, method: str, path: str, **kw: Any) -> Any:
        r = self.request(method, path, **kw)
        return r.json() if r.content else None

    def websocket(self, path: str):
        from websockets.sync.client import connect, unix_connect
        uri = self.endpoint.ws_base + path
        headers = self.endpoint.headers()
        if self.endpoint.uds:
            return unix_connect(self.endpoint.uds, uri, additional_headers=headers, max_size=None)
        return connect(uri, additional_headers=headers, max_size=None)

    def close(self) -> None:
        self.client.close()


def _stream(ws, start: Optional[Dict[str, Any]], on_stdout: Optional[OutputCallback],
            on_stderr: Optional[OutputCallback], stdin: Optional[bytes] = None) -> CommandResult:
    """Run an exec (or attach) WebSocket to its exit, collecting output."""
    out, err = [], []
    decoders = {"stdout": _Decoder(), "stderr": _Decoder()}
    with ws:
        if start is not None:
            ws.send(json.dumps(start))
            # The command's stdin: what was given, then end-of-file.
            if stdin:
                ws.send(stdin)
            ws.send(json.dumps({"type": "stdin_close"}))
        for msg in ws:
            kind, data = split_ws_message(msg)
            if kind == "event":
                if data.get("type") == "exit":
                    return CommandResult.from_json(data, "".join(out), "".join(err))
                if data.get("type") == "error":
                    raise error_from(500, json.dumps({"error": data}).encode(), {})
                continue
            text = decoders[kind].feed(data)
            (out if kind == "stdout" else err).append(text)
            cb = on_stdout if kind == "stdout" else on_stderr
            if cb and text:
                cb(text)
    raise ConnectionError("the command's stream ended without its exit status")


class _Decoder:
    """UTF-8 across chunk boundaries."""

    def __init__(self) -> None:
        import codecs
        self.d = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, b: bytes) -> str:
        return self.d.decode(b)


class CommandHandle:
    """A command running in the background."""

    def __init__(self, sandbox: "Sandbox", pid: int):
        self.sandbox = sandbox
        self.pid = pid

    def _path(self) -> str:
        return f"/v1/sandboxes/{self.sandbox.id}/processes/{self.pid}"

    def wait(self, on_stdout: Optional[OutputCallback] = None,
             on_stderr: Optional[OutputCallback] = None) -> CommandResult:
        """Wait for the exit; its whole output (buffered from the start) comes too."""
        ws = self.sandbox._http.websocket(self._path() + "/attach")
        return _stream(ws, None, on_stdout, on_stderr)

    def kill(self, signal: int = 15) -> None:
        self.sandbox._http.request("POST", self._path() + "/kill", json_body={"signal": signal})

    def send_stdin(self, data: Union[str, bytes], close: bool = False) -> None:
        raw = data.encode() if isinstance(data, str) else data
        self.sandbox._http.request("POST", self._path() + "/stdin", content=raw,
                                   params={"close": "true"} if close else None)

    def info(self) -> Dict[str, Any]:
        return self.sandbox._http.json("GET", self._path())

    def wait_exit(self, timeout: Optional[float] = None) -> CommandResult:
        """Wait for the exit status only (no output); `timeout` seconds at most."""
        params = {"timeout_ms": str(int(timeout * 1000))} if timeout is not None else None
        return CommandResult.from_json(self.sandbox._http.json("POST", self._path() + "/wait", params=params))


class Commands:
    def __init__(self, sandbox: "Sandbox"):
        self._sb = sandbox

    def run(self, cmd: Union[str, List[str]], *, env: Optional[Mapping[str, str]] = None,
            cwd: Optional[str] = None, user: Optional[str] = None, timeout: Optional[float] = None,
            stdin: Union[None, str, bytes] = None, on_stdout: Optional[OutputCallback] = None,
            on_stderr: Optional[OutputCallback] = None, background: bool = False,
            max_output: Optional[int] = None
            ) -> Union[CommandResult, CommandHandle]:
        """Run `cmd` (a shell line, or an argv list). Waits and returns a
        `CommandResult`; with `on_stdout`/`on_stderr` the output streams as it
        comes; with `background=True` returns a `CommandHandle` at once."""
        body = exec_body(cmd, env, cwd, user, timeout, max_output)
        base = f"/v1/sandboxes/{self._sb.id}"
        if background:
            if stdin is not None:
                body["stdin"] = True
            v = self._sb._http.json("POST", base + "/processes", json_body=body)
            h = CommandHandle(self._sb, int(v["id"]))
            if stdin is not None:
                h.send_stdin(stdin, close=True)
            return h
        raw = stdin.encode() if isinstance(stdin, str) else stdin
        if on_stdout or on_stderr:
            ws = self._sb._http.websocket(base + "/exec/ws")
            return _stream(ws, body, on_stdout, on_stderr, raw)
        if raw is not None:
            body["stdin"] = raw.decode("utf-8", "surrogateescape")
        return CommandResult.from_json(self._sb._http.json("POST", base + "/exec", json_body=body))

    def list(self) -> List[Dict[str, Any]]:
        v = self._sb._http.json("GET", f"/v1/sandboxes/{self._sb.id}/processes")
        return processes(v)

    def connect(self, pid: int) -> CommandHandle:
        return CommandHandle(self._sb, pid)


class Files:
    def __init__(self, sandbox: "Sandbox"):
        self._sb = sandbox

    def _base(self) -> str:
        return f"/v1/sandboxes/{self._sb.id}/files"

    def read(self, path: str, format: str = "text") -> Union[str, bytes]:
        """The file's content: `format="text"` (UTF-8) or `"bytes"`."""
        r = self._sb._http.request("GET", self._base(), params={"path": path})
        if format == "bytes":
            return r.content
        if format != "text":
            raise InvalidArgumentError(f"format {format!r}: expected 'text' or 'bytes'")
        return r.content.decode("utf-8")

    def write(self, path: str, data: Union[str, bytes], mode: Optional[int] = None) -> None:
        """Write the whole file atomically (parents are created)."""
        parent = os.path.dirname(path)
        if parent and parent != "/":
            self.make_dir(parent)
        params: Dict[str, str] = {"path": path}
        if mode is not None:
            params["mode"] = format(mode, "o")
        self._sb._http.request("PUT", self._base(), content=data.encode() if isinstance(data, str) else data,
                               params=params)

    def list(self, path: str = "/workspace", recursive: bool = False) -> List[EntryInfo]:
        v = self._sb._http.json("GET", self._base() + "/list",
                                params={"path": path, "recursive": str(recursive).lower()})
        return [EntryInfo.from_json(e) for e in v.get("entries", [])]

    def stat(self, path: str) -> EntryInfo:
        return EntryInfo.from_json(self._sb._http.json("GET", self._base() + "/stat", params={"path": path}))

    def exists(self, path: str) -> bool:
        from ._core import NotFoundError
        try:
            self.stat(path)
            return True
        except NotFoundError:
            return False

    def remove(self, path: str, recursive: bool = False) -> None:
        params = {"path": path}
        if recursive:
            params["recursive"] = "true"
        self._sb._http.request("DELETE", self._base(), params=params)

    def rename(self, src: str, dst: str) -> None:
        self._sb._http.request("POST", self._base() + "/rename", json_body={"from": src, "to": dst})

    def make_dir(self, path: str) -> None:
        self._sb._http.request("POST", self._base() + "/mkdir", json_body={"path": path})

    def upload_dir(self, local: str, remote: str) -> None:
        """Copy a local directory's contents into `remote` (created)."""
        self.make_dir(remote)
        self._sb._http.request("PUT", f"/v1/sandboxes/{self._sb.id}/tar", content=tar_dir(local),
                               params={"path": remote})

    def download_dir(self, remote: str, local: str) -> None:
        """Copy `remote`'s contents into the local directory `local` (created)."""
        r = self._sb._http.request("GET", f"/v1/sandboxes/{self._sb.id}/tar", params={"path": remote})
        extract_tar(r.content, local)


class Snapshot:
    """A sandbox's filesystem saved to disk."""

    def __init__(self, info: Dict[str, Any], http: _Http):
        self.info = info
        self.id: str = info["id"]
        self._http = http

    def restore(self, **create: Any) -> "Sandbox":
        v = self._http.json("POST", f"/v1/snapshots/{self.id}/restore", json_body=create or {})
        return Sandbox(v, self._http, owns_http=False)

    def fork(self, count: int, **create: Any) -> List["Sandbox"]:
        v = self._http.json("POST", f"/v1/snapshots/{self.id}/fork", json_body={"count": count, **create})
        return [Sandbox(s, self._http, owns_http=False) for s in v["sandboxes"]]

    def delete(self) -> None:
        self._http.request("DELETE", f"/v1/snapshots/{self.id}")

    def to_template(self, name: str) -> Dict[str, Any]:
        """Make this snapshot a template named `name` (admin key)."""
        return self._http.json("POST", f"/v1/snapshots/{self.id}/template", json_body={"name": name})

    @staticmethod
    def list(*, sandbox_id: Optional[str] = None, name: Optional[str] = None,
             url: Optional[str] = None, key: Optional[str] = None) -> List["Snapshot"]:
        http = _Http(resolve(url, key))
        params = {k: v for k, v in [("sandbox", sandbox_id), ("name", name)] if v}
        return [Snapshot(s, http) for s in http.json("GET", "/v1/snapshots", params=params)["snapshots"]]

    @staticmethod
    def get(snapshot_id: str, *, url: Optional[str] = None, key: Optional[str] = None) -> "Snapshot":
        http = _Http(resolve(url, key))
        return Snapshot(http.json("GET", f"/v1/snapshots/{snapshot_id}"), http)


class Sandbox:
    """An aibox sandbox. `Sandbox.create()` starts one; as a context manager it
    is destroyed on exit."""

    def __init__(self, info: Dict[str, Any], http: _Http, owns_http: bool = True):
        self.info = info
        self.id: str = info["id"]
        self._http = http
        self._owns_http = owns_http
        self.commands = Commands(self)
        self.files = Files(self)

    @classmethod
    def create(cls, template: Optional[str] = None, *, memory: Union[None, int, str] = None,
               cpus: Optional[float] = None, pids: Optional[int] = None, disk: Union[None, int, str] = None,
               env: Optional[Mapping[str, str]] = None, workdir: Optional[str] = None,
               user: Optional[str] = None, timeout: Optional[int] = None,
               idle_timeout: Optional[int] = None, hostname: Optional[str] = None,
               labels: Optional[Mapping[str, str]] = None, require_isolation: Optional[str] = None,
               backend: Optional[str] = None, mounts: Optional[List[Mount]] = None,
               volumes: Optional[List[VolumeMount]] = None, workspace: Optional[str] = None,
               snapshot: Optional[str] = None,
               network: Network = None, public: bool = False,
               url: Optional[str] = None, key: Optional[str] = None, request_timeout: float = 300.0) -> "Sandbox":
        """Create a sandbox. `timeout` is its lifetime in seconds (TTL);
        `network` a list of egress rules to allow (or `{"mode", "rules",
        "enforcement"}`); `backend` "namespaces" or "microvm" (default: the
        server's); `mounts` "HOST:GUEST[:ro]" strings (under the server's
        allowed_mounts); `volumes` "NAME:/PATH[:ro]" strings naming this
        key's volumes (`Volume.create`); `workspace` a workspace of this key's
        to make it in (`Workspace.create`); `snapshot` a snapshot to start from."""
        http = _Http(resolve(url, key), request_timeout)
        try:
            v = http.json("POST", "/v1/sandboxes", json_body=create_body(
                template=template, memory=memory, cpus=cpus, pids=pids, disk=disk, env=env, workdir=workdir,
                user=user, timeout=timeout, idle_timeout=idle_timeout, hostname=hostname, labels=labels,
                require_isolation=require_isolation, backend=backend, mounts=mounts, volumes=volumes,
                workspace=workspace, snapshot=snapshot, network=network, public=public))
        except BaseException:
            http.close()
            raise
        return cls(v, http)

    @classmethod
    def connect(cls, sandbox_id: str, *, url: Optional[str] = None, key: Optional[str] = None) -> "Sandbox":
        http = _Http(resolve(url, key))
        try:
            return cls(http.json("GET", f"/v1/sandboxes/{sandbox_id}"), http)
        except BaseException:
            http.close()
            raise

    @staticmethod
    def list(*, url: Optional[str] = None, key: Optional[str] = None,
             labels: Optional[Mapping[str, str]] = None) -> List[Dict[str, Any]]:
        http = _Http(resolve(url, key))
        try:
            out: List[Dict[str, Any]] = []
            params: Dict[str, str] = {"limit": "1000"}
            if labels:
                k, v = next(iter(labels.items()))
                params["label"] = f"{k}={v}"
            while True:
                page = http.json("GET", "/v1/sandboxes", params=params)
                out.extend(page["sandboxes"])
                if not page.get("next"):
                    return out
                params["cursor"] = page["next"]
        finally:
            http.close()

    def refresh(self) -> Dict[str, Any]:
        self.info = self._http.json("GET", f"/v1/sandboxes/{self.id}")
        return self.info

    def is_running(self) -> bool:
        from ._core import NotFoundError
        try:
            return self.refresh()["state"] == "running"
        except NotFoundError:
            return False

    def pause(self) -> None:
        self.info = self._http.json("POST", f"/v1/sandboxes/{self.id}/pause")

    def resume(self) -> None:
        self.info = self._http.json("POST", f"/v1/sandboxes/{self.id}/resume")

    def set_timeout(self, seconds: int) -> None:
        """The sandbox now lives `seconds` more."""
        self.info = self._http.json("POST", f"/v1/sandboxes/{self.id}/timeout", json_body={"ttl_seconds": seconds})

    def snapshot(self, name: Optional[str] = None) -> Snapshot:
        v = self._http.json("POST", f"/v1/sandboxes/{self.id}/snapshots", json_body={"name": name} if name else {})
        return Snapshot(v, self._http)

    def fork(self, count: int = 1) -> List["Sandbox"]:
        """`count` new sandboxes with this one's files as they are now."""
        snap = self.snapshot()
        return snap.fork(count)

    def set_network(self, mode: str, rules: Optional[List[str]] = None) -> None:
        """Change the egress policy (`none`, `allowlist`, `full`) for new connections."""
        self.info = self._http.json("PATCH", f"/v1/sandboxes/{self.id}/network",
                                    json_body={"mode": mode, "rules": list(rules or [])})

    def ports(self) -> Dict[str, Any]:
        """What listens inside, with URLs and the access token."""
        return self._http.json("GET", f"/v1/sandboxes/{self.id}/ports")

    def set_ports(self, *, public: Optional[bool] = None, rotate_token: bool = False) -> Dict[str, Any]:
        return self._http.json("PATCH", f"/v1/sandboxes/{self.id}/ports", json_body=ports_body(public, rotate_token))

    def get_url(self, port: int) -> str:
        """The URL of `port` inside the sandbox (with its access token unless public)."""
        v = self._http.json("GET", f"/v1/sandboxes/{self.id}/ports")
        return port_url(v, port)

    def kill(self) -> None:
        """Destroy the sandbox (idempotent)."""
        from ._core import NotFoundError
        try:
            self._http.request("DELETE", f"/v1/sandboxes/{self.id}")
        except NotFoundError:
            pass

    def close(self) -> None:
        """Destroy the sandbox and close the connection."""
        try:
            self.kill()
        finally:
            if self._owns_http:
                self._http.close()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Sandbox(id={self.id!r})"


class _Named:
    """A named resource of the key's (a volume, a workspace): its API view
    in ``info``, addressed by id (an admin's list holds every key's, whose
    names are unique only per key), refreshed, removed and snapshotted the
    same way."""

    _kind = ""

    def __init__(self, info: Dict[str, Any], http: _Http):
        self.info = info
        self.name: str = info["name"]
        self._http = http

    def _path(self) -> str:
        return f"/v1/{self._kind}/{self.info['id']}"

    def refresh(self) -> Dict[str, Any]:
        self.info = self._http.json("GET", self._path())
        return self.info

    def delete(self) -> None:
        """Remove it (refused while a sandbox uses it)."""
        self._http.request("DELETE", self._path())

    def snapshot(self, name: str) -> Dict[str, Any]:
        """Keep a named copy of its files as they are now."""
        self.info = self._http.json("POST", self._path() + "/snapshots", json_body={"name": name})
        return self.info

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class Volume(_Named):
    """A named filesystem with a quota that outlives sandboxes; mount it with
    ``Sandbox.create(volumes=["NAME:/path"])``. ``info`` is the API's view
    (quota and whether it is enforced, usage, the sandboxes using it, its
    snapshots)."""

    _kind = "volumes"

    @staticmethod
    def create(name: str, *, size: Union[None, int, str] = None, uid: Optional[int] = None,
               labels: Optional[Mapping[str, str]] = None,
               url: Optional[str] = None, key: Optional[str] = None) -> "Volume":
        """Make a volume of `size` (bytes or "10g"; default 1g) whose top
        directory `uid` owns inside sandboxes (default 1000)."""
        http = _Http(resolve(url, key))
        return Volume(http.json("POST", "/v1/volumes", json_body=new_volume_body(name, size, uid, labels)), http)

    @staticmethod
    def get(name: str, *, url: Optional[str] = None, key: Optional[str] = None) -> "Volume":
        http = _Http(resolve(url, key))
        return Volume(http.json("GET", f"/v1/volumes/{q(name)}"), http)

    @staticmethod
    def list(*, label: Optional[str] = None, url: Optional[str] = None,
             key: Optional[str] = None) -> List["Volume"]:
        http = _Http(resolve(url, key))
        params = {"label": label} if label else None
        return [Volume(v, http) for v in http.json("GET", "/v1/volumes", params=params)["volumes"]]

    def delete_snapshot(self, name: str) -> None:
        self._http.request("DELETE", self._path() + f"/snapshots/{q(name)}")

    def clone(self, name: str, *, snapshot: Optional[str] = None,
              labels: Optional[Mapping[str, str]] = None) -> "Volume":
        """A new volume with this one's files (now, or as `snapshot` holds them)."""
        body = clone_body(name, snapshot, labels)
        return Volume(self._http.json("POST", self._path() + "/clone", json_body=body), self._http)


class Workspace(_Named):
    """A persistent identity for the sandboxes made in it: its files (a volume
    at /workspace), its environment and its history. Make a sandbox in it
    with ``Sandbox.create(workspace="NAME")``. ``info`` is the API's view
    (``files``, ``sandboxes``, ``history``)."""

    _kind = "workspaces"

    @staticmethod
    def create(name: str, *, size: Union[None, int, str] = None, env: Optional[Mapping[str, str]] = None,
               labels: Optional[Mapping[str, str]] = None,
               url: Optional[str] = None, key: Optional[str] = None) -> "Workspace":
        http = _Http(resolve(url, key))
        return Workspace(http.json("POST", "/v1/workspaces", json_body=new_workspace_body(name, size, env, labels)), http)

    @staticmethod
    def get(name: str, *, url: Optional[str] = None, key: Optional[str] = None) -> "Workspace":
        http = _Http(resolve(url, key))
        return Workspace(http.json("GET", f"/v1/workspaces/{q(name)}"), http)

    @staticmethod
    def list(*, url: Optional[str] = None, key: Optional[str] = None) -> List["Workspace"]:
        http = _Http(resolve(url, key))
        return [Workspace(w, http) for w in http.json("GET", "/v1/workspaces")["workspaces"]]


class Templates:
    """The server's templates."""

    def __init__(self, url: Optional[str] = None, key: Optional[str] = None):
        self._http = _Http(resolve(url, key))

    def list(self) -> List[Dict[str, Any]]:
        return self._http.json("GET", "/v1/templates")["templates"]

    def get(self, name: str) -> Dict[str, Any]:
        return self._http.json("GET", f"/v1/templates/{q(name)}")

    def pull(self, reference: str, name: Optional[str] = None, insecure: bool = False) -> Dict[str, Any]:
        body: Dict[str, Any] = {"reference": reference, "insecure": insecure}
        if name:
            body["name"] = name
        return self._http.json("POST", "/v1/templates/pull", json_body=body)

    def delete(self, name: str) -> None:
        self._http.request("DELETE", f"/v1/templates/{q(name)}")

    def prune(self, build_cache: bool = False) -> Dict[str, Any]:
        return self._http.json("POST", "/v1/templates/prune",
                               params={"build_cache": "true"} if build_cache else None)

    def import_archive(self, path: str, name: Optional[str] = None) -> Dict[str, Any]:
        """Import a `docker save`/`podman save` archive or an OCI layout tar."""
        with open(path, "rb") as f:
            data = f.read()
        return self._http.json("POST", "/v1/templates/import", content=data, params={"name": name} if name else None)

    def build(self, context: str, name: str, *, file: Optional[str] = None, no_cache: bool = False,
              allow: Optional[List[str]] = None,
              on_event: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
        """Build a template from a directory holding an aibox.toml or a Dockerfile;
        `on_event` gets each step, output and layer event as it comes."""
        params: Dict[str, str] = {"name": name}
        if file:
            params["file"] = file
        if no_cache:
            params["no_cache"] = "true"
        if allow:
            params["allow"] = ",".join(allow)
        done: Optional[Dict[str, Any]] = None
        with self._http.client.stream("POST", "/v1/templates/build", content=tar_dir(context), params=params) as r:
            if r.status_code >= 300:
                r.read()
                raise error_from(r.status_code, r.content, r.headers)
            for line in r.iter_lines():
                if not line.strip():
                    continue
                ev = json.loads(line)
                if ev.get("type") == "done":
                    done = ev["template"]
                elif ev.get("type") == "error":
                    raise error_from(422, json.dumps({"error": {"code": ev.get("code"), "message": ev.get("message")}}).encode(), {})
                elif on_event:
                    on_event(ev)
        if done is None:
            raise ConnectionError("the build ended without a result")
        return done

    def close(self) -> None:
        self._http.close()
