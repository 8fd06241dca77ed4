"""The asynchronous client (asyncio): the same surface as `Sandbox`, awaited."""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import httpx

from ._core import (
    extract_tar, port_url, ports_body, processes, tar_dir,
    CommandResult, ConnectionError, EntryInfo, Endpoint, InvalidArgumentError, Mount, Network,
    VolumeMount,
    NotFoundError, clone_body, create_body, error_from, exec_body, q, resolve, split_ws_message,
    new_volume_body,
)
from .sandbox import _Decoder

OutputCallback = Callable[[str], Any]


class _AsyncHttp:
    def __init__(self, endpoint: Endpoint, request_timeout: float = 300.0):
        self.endpoint = endpoint
        transport = httpx.AsyncHTTPTransport(uds=endpoint.uds) if endpoint.uds else None
        self.client = httpx.AsyncClient(base_url=endpoint.base_url, transport=transport,
                                        headers=endpoint.headers(), timeout=request_timeout)

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      content: Optional[bytes] = None, params: Optional[Mapping[str, Any]] = None) -> httpx.Response:
        try:
            r = await self.client.request(method, path, json=json_body, content=content, params=params)
        except httpx.TransportError as e:
            raise ConnectionError(
                f"no aibox server is reachable at {self.endpoint.uds or self.endpoint.base_url} ({e}); "
                "start one with `aibox serve`, or set AIBOX_URL") from e
        if r.status_code >= 300:
            raise error_from(r.status_code, r.content, r.headers)
        return r

    async def json(self, method: str, path: str, **kw: Any) -> Any:
        r = await self.request(method, path, **kw)
        return r.json() if r.content else None

    def websocket(self, path: str):
        from websockets.asyncio.client import connect, unix_connect
        uri = self.endpoint.ws_base + path
        headers = self.endpoint.headers()
        if self.endpoint.uds:
            return unix_connect(self.endpoint.uds, uri, additional_headers=headers, max_size=None)
        return connect(uri, additional_headers=headers, max_size=None)

    async def aclose(self) -> None:
        await self.client.aclose()


async def _call(cb: Optional[OutputCallback], text: str) -> None:
    if cb and text:
        r = cb(text)
        if hasattr(r, "__await__"):
            await r


async def _stream(ws_cm, start: Optional[Dict[str, Any]], on_stdout: Optional[OutputCallback],
                  on_stderr: Optional[OutputCallback], stdin: Optional[bytes] = None) -> CommandResult:
    out, err = [], []
    dec = {"stdout": _Decoder(), "stderr": _Decoder()}
    async with ws_cm as ws:
        if start is not None:
            await ws.send(json.dumps(start))
            if stdin:
                await ws.send(stdin)
            await ws.send(json.dumps({"type": "stdin_close"}))
        async for msg in ws:
            kind, data = split_ws_message(msg)
            if kind == "event":
                if data.get("type") == "exit":
                    return CommandResult.from_json(data, "".join(out), "".join(err))
                if data.get("type") == "error":
                    raise error_from(500, json.dumps({"error": data}).encode(), {})
                continue
            text = dec[kind].feed(data)
            (out if kind == "stdout" else err).append(text)
            await _call(on_stdout if kind == "stdout" else on_stderr, text)
    raise ConnectionError("the command's stream ended without its exit status")


class AsyncCommandHandle:
    def __init__(self, sandbox: "AsyncSandbox", pid: int):
        self.sandbox = sandbox
        self.pid = pid

    def _path(self) -> str:
        return f"/v1/sandboxes/{self.sandbox.id}/processes/{self.pid}"

    async def wait(self, on_stdout: Optional[OutputCallback] = None,
                   on_stderr: Optional[OutputCallback] = None) -> CommandResult:
        return await _stream(self.sandbox._http.websocket(self._path() + "/attach"), None, on_stdout, on_stderr)

    async def kill(self, signal: int = 15) -> None:
        await self.sandbox._http.request("POST", self._path() + "/kill", json_body={"signal": signal})

    async def send_stdin(self, data: Union[str, bytes], close: bool = False) -> None:
        raw = data.encode() if isinstance(data, str) else data
        await self.sandbox._http.request("POST", self._path() + "/stdin", content=raw,
                                         params={"close": "true"} if close else None)

    async def wait_exit(self, timeout: Optional[float] = None) -> CommandResult:
        params = {"timeout_ms": str(int(timeout * 1000))} if timeout is not None else None
        return CommandResult.from_json(await self.sandbox._http.json("POST", self._path() + "/wait", params=params))

    async def info(self) -> Dict[str, Any]:
        return await self.sandbox._http.json("GET", self._path())


class AsyncCommands:
    def __init__(self, sandbox: "AsyncSandbox"):
        self._sb = sandbox

    async def run(self, cmd: Union[str, List[str]], *, env: Optional[Mapping[str, str]] = None,
                  cwd: Optional[str] = None, user: Optional[str] = None, timeout: Optional[float] = None,
                  stdin: Union[None, str, bytes] = None, on_stdout: Optional[OutputCallback] = None,
                  on_stderr: Optional[OutputCallback] = None, background: bool = False,
                  max_output: Optional[int] = None
                  ) -> Union[CommandResult, AsyncCommandHandle]:
        body = exec_body(cmd, env, cwd, user, timeout, max_output)
        base = f"/v1/sandboxes/{self._sb.id}"
        if background:
            if stdin is not None:
                body["stdin"] = True
            v = await self._sb._http.json("POST", base + "/processes", json_body=body)
            h = AsyncCommandHandle(self._sb, int(v["id"]))
            if stdin is not None:
                await h.send_stdin(stdin, close=True)
            return h
        raw = stdin.encode() if isinstance(stdin, str) else stdin
        if on_stdout or on_stderr:
            return await _stream(self._sb._http.websocket(base + "/exec/ws"), body, on_stdout, on_stderr, raw)
        if raw is not None:
            body["stdin"] = raw.decode("utf-8", "surrogateescape")
        return CommandResult.from_json(await self._sb._http.json("POST", base + "/exec", json_body=body))

    def connect(self, pid: int) -> AsyncCommandHandle:
        return AsyncCommandHandle(self._sb, pid)

    async def list(self) -> List[Dict[str, Any]]:
        v = await self._sb._http.json("GET", f"/v1/sandboxes/{self._sb.id}/processes")
        return processes(v)


class AsyncFiles:
    def __init__(self, sandbox: "AsyncSandbox"):
        self._sb = sandbox

    def _base(self) -> str:
        return f"/v1/sandboxes/{self._sb.id}/files"

    async def read(self, path: str, format: str = "text") -> Union[str, bytes]:
        if format not in ("text", "bytes"):
            raise InvalidArgumentError(f"format {format!r}: expected 'text' or 'bytes'")
        r = await self._sb._http.request("GET", self._base(), params={"path": path})
        return r.content if format == "bytes" else r.content.decode("utf-8")

    async def write(self, path: str, data: Union[str, bytes], mode: Optional[int] = None) -> None:
        parent = os.path.dirname(path)
        if parent and parent != "/":
            await self.make_dir(parent)
        params: Dict[str, str] = {"path": path}
        if mode is not None:
            params["mode"] = format(mode, "o")
        await self._sb._http.request("PUT", self._base(), content=data.encode() if isinstance(data, str) else data,
                                     params=params)

    async def list(self, path: str = "/workspace", recursive: bool = False) -> List[EntryInfo]:
        v = await self._sb._http.json("GET", self._base() + "/list",
                                      params={"path": path, "recursive": str(recursive).lower()})
        return [EntryInfo.from_json(e) for e in v.get("entries", [])]

    async def stat(self, path: str) -> EntryInfo:
        return EntryInfo.from_json(await self._sb._http.json("GET", self._base() + "/stat", params={"path": path}))

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
            return True
        except NotFoundError:
            return False

    async def remove(self, path: str, recursive: bool = False) -> None:
        params = {"path": path}
        if recursive:
            params["recursive"] = "true"
        await self._sb._http.request("DELETE", self._base(), params=params)

    async def rename(self, src: str, dst: str) -> None:
        await self._sb._http.request("POST", self._base() + "/rename", json_body={"from": src, "to": dst})

    async def make_dir(self, path: str) -> None:
        await self._sb._http.request("POST", self._base() + "/mkdir", json_body={"path": path})

    async def upload_dir(self, local: str, remote: str) -> None:
        """Copy a local directory's contents into `remote` (created)."""
        await self.make_dir(remote)
        await self._sb._http.request("PUT", f"/v1/sandboxes/{self._sb.id}/tar", content=tar_dir(local),
                               params={"path": remote})

    async def download_dir(self, remote: str, local: str) -> None:
        """Copy `remote`'s contents into the local directory `local` (created)."""
        r = await self._sb._http.request("GET", f"/v1/sandboxes/{self._sb.id}/tar", params={"path": remote})
        extract_tar(r.content, local)


class AsyncSandbox:
    """`async with await AsyncSandbox.create() as sb: ...`"""

    def __init__(self, info: Dict[str, Any], http: _AsyncHttp, owns_http: bool = True):
        self.info = info
        self.id: str = info["id"]
        self._http = http
        self._owns_http = owns_http
        self.commands = AsyncCommands(self)
        self.files = AsyncFiles(self)

    @classmethod
    async def create(cls, template: Optional[str] = None, *, memory: Union[None, int, str] = None,
               cpus: Optional[float] = None, pids: Optional[int] = None, disk: Union[None, int, str] = None,
               env: Optional[Mapping[str, str]] = None, workdir: Optional[str] = None,
               user: Optional[str] = None, timeout: Optional[int] = None,
               idle_timeout: Optional[int] = None, hostname: Optional[str] = None,
               labels: Optional[Mapping[str, str]] = None, require_isolation: Optional[str] = None,
               backend: Optional[str] = None, mounts: Optional[List[Mount]] = None,
               volumes: Optional[List[VolumeMount]] = None, workspace: Optional[str] = None,
               snapshot: Optional[str] = None,
               network: Network = None, public: bool = False,
               url: Optional[str] = None, key: Optional[str] = None, request_timeout: float = 300.0) -> "AsyncSandbox":
        """Create a sandbox. `timeout` is its lifetime in seconds (TTL);
        `network` a list of egress rules to allow (or `{"mode", "rules",
        "enforcement"}`); `backend` "namespaces" or "microvm" (default: the
        server's); `mounts` "HOST:GUEST[:ro]" strings (under the server's
        allowed_mounts); `volumes` "NAME:/PATH[:ro]" strings naming this
        key's volumes (`Volume.create`); `workspace` a workspace of this key's
        to make it in (`Workspace.create`); `snapshot` a snapshot to start from."""
        http = _AsyncHttp(resolve(url, key), request_timeout)
        try:
            v = await http.json("POST", "/v1/sandboxes", json_body=create_body(
                template=template, memory=memory, cpus=cpus, pids=pids, disk=disk, env=env, workdir=workdir,
                user=user, timeout=timeout, idle_timeout=idle_timeout, hostname=hostname, labels=labels,
                require_isolation=require_isolation, backend=backend, mounts=mounts, volumes=volumes,
                workspace=workspace, snapshot=snapshot, network=network, public=public))
        except BaseException:
            await http.aclose()
            raise
        return cls(v, http)

    @classmethod
    async def connect(cls, sandbox_id: str, *, url: Optional[str] = None, key: Optional[str] = None) -> "AsyncSandbox":
        http = _AsyncHttp(resolve(url, key))
        try:
            return cls(await http.json("GET", f"/v1/sandboxes/{sandbox_id}"), http)
        except BaseException:
            await http.aclose()
            raise

    async def refresh(self) -> Dict[str, Any]:
        self.info = await self._http.json("GET", f"/v1/sandboxes/{self.id}")
        return self.info

    async def pause(self) -> None:
        self.info = await self._http.json("POST", f"/v1/sandboxes/{self.id}/pause")

    async def resume(self) -> None:
        self.info = await self._http.json("POST", f"/v1/sandboxes/{self.id}/resume")

    async def set_timeout(self, seconds: int) -> None:
        self.info = await self._http.json("POST", f"/v1/sandboxes/{self.id}/timeout", json_body={"ttl_seconds": seconds})

    async def snapshot(self, name: Optional[str] = None) -> Dict[str, Any]:
        return await self._http.json("POST", f"/v1/sandboxes/{self.id}/snapshots", json_body={"name": name} if name else {})

    async def fork(self, count: int = 1) -> List["AsyncSandbox"]:
        """`count` new sandboxes with this one's files as they are now."""
        snap = await self.snapshot()
        v = await self._http.json("POST", f"/v1/snapshots/{snap['id']}/fork", json_body={"count": count})
        return [AsyncSandbox(s, self._http, owns_http=False) for s in v["sandboxes"]]

    async def set_network(self, mode: str, rules: Optional[List[str]] = None) -> None:
        self.info = await self._http.json("PATCH", f"/v1/sandboxes/{self.id}/network",
                                          json_body={"mode": mode, "rules": list(rules or [])})

    async def ports(self) -> Dict[str, Any]:
        return await self._http.json("GET", f"/v1/sandboxes/{self.id}/ports")

    async def set_ports(self, *, public: Optional[bool] = None, rotate_token: bool = False) -> Dict[str, Any]:
        return await self._http.json("PATCH", f"/v1/sandboxes/{self.id}/ports", json_body=ports_body(public, rotate_token))

    async def get_url(self, port: int) -> str:
        v = await self.ports()
        return port_url(v, port)

    @staticmethod
    async def list(*, url: Optional[str] = None, key: Optional[str] = None) -> List[Dict[str, Any]]:
        http = _AsyncHttp(resolve(url, key))
        try:
            out: List[Dict[str, Any]] = []
            params: Dict[str, str] = {"limit": "1000"}
            while True:
                page = await http.json("GET", "/v1/sandboxes", params=params)
                out.extend(page["sandboxes"])
                if not page.get("next"):
                    return out
                params["cursor"] = page["next"]
        finally:
            await http.aclose()

    async def kill(self) -> None:
        try:
            await self._http.request("DELETE", f"/v1/sandboxes/{self.id}")
        except NotFoundError:
            pass

    async def close(self) -> None:
        try:
            await self.kill()
        finally:
            if self._owns_http:
                await self._http.aclose()

    async def __aenter__(self) -> "AsyncSandbox":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncSandbox(id={self.id!r})"


class AsyncVolume:
    """``Volume`` for asyncio: a named filesystem with a quota that outlives
    sandboxes (mount it with ``AsyncSandbox.create(volumes=["NAME:/path"])``)."""

    def __init__(self, info: Dict[str, Any], http: _AsyncHttp):
        self.info = info
        self.name: str = info["name"]
        self._http = http

    def _path(self) -> str:
        # By id: an admin's list holds every key's volumes, whose names
        # are unique only per key.
        return f"/v1/volumes/{self.info['id']}"

    @staticmethod
    async def create(name: str, *, size: Union[None, int, str] = None, uid: Optional[int] = None,
                     labels: Optional[Mapping[str, str]] = None,
                     url: Optional[str] = None, key: Optional[str] = None) -> "AsyncVolume":
        http = _AsyncHttp(resolve(url, key))
        return AsyncVolume(await http.json("POST", "/v1/volumes", json_body=new_volume_body(name, size, uid, labels)), http)

    @staticmethod
    async def get(name: str, *, url: Optional[str] = None, key: Optional[str] = None) -> "AsyncVolume":
        http = _AsyncHttp(resolve(url, key))
        return AsyncVolume(await http.json("GET", f"/v1/volumes/{q(name)}"), http)

    @staticmethod
    async def list(*, label: Optional[str] = None, url: Optional[str] = None,
                   key: Optional[str] = None) -> List["AsyncVolume"]:
        http = _AsyncHttp(resolve(url, key))
        v = await http.json("GET", "/v1/volumes", params={"label": label} if label else None)
        return [AsyncVolume(x, http) for x in v["volumes"]]

    async def refresh(self) -> Dict[str, Any]:
        self.info = await self._http.json("GET", self._path())
        return self.info

    async def delete(self) -> None:
        await self._http.request("DELETE", self._path())

    async def snapshot(self, name: str) -> Dict[str, Any]:
        self.info = await self._http.json("POST", self._path() + "/snapshots", json_body={"name": name})
        return self.info

    async def delete_snapshot(self, name: str) -> None:
        await self._http.request("DELETE", self._path() + f"/snapshots/{q(name)}")

    async def clone(self, name: str, *, snapshot: Optional[str] = None,
                    labels: Optional[Mapping[str, str]] = None) -> "AsyncVolume":
        v = await self._http.json("POST", self._path() + "/clone", json_body=clone_body(name, snapshot, labels))
        return AsyncVolume(v, self._http)

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"AsyncVolume(name={self.name!r})"
