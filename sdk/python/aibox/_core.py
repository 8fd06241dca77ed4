"""What the sync and async clients share: finding the server, errors, results."""
from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import quote


class AiboxError(Exception):
    """An error from aibox. `code` is the API's stable error code."""

    code: str = "internal"

    def __init__(self, message: str, code: Optional[str] = None, status: Optional[int] = None,
                 retry_after: Optional[float] = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.status = status
        self.retry_after = retry_after


class InvalidArgumentError(AiboxError):
    code = "invalid_argument"


class AuthenticationError(AiboxError):
    code = "unauthenticated"


class PermissionDeniedError(AiboxError):
    code = "permission_denied"


class NotFoundError(AiboxError):
    code = "not_found"


class TemplateNotFoundError(NotFoundError):
    code = "template_not_found"


class SandboxGoneError(NotFoundError):
    code = "sandbox_gone"


class ConflictError(AiboxError):
    code = "conflict"


class IsolationUnavailableError(AiboxError):
    code = "isolation_unavailable"


class RateLimitError(AiboxError):
    code = "rate_limited"


class CapacityError(AiboxError):
    """The server (or this key's quota) is full; retry after `retry_after` seconds."""
    code = "resource_exhausted"


class PayloadTooLargeError(AiboxError):
    code = "payload_too_large"


class TimeoutError(AiboxError):  # noqa: A001 - the API's own name
    code = "timeout"


class UnavailableError(AiboxError):
    code = "unavailable"


class BuildFailedError(AiboxError):
    code = "build_failed"


class ServerError(AiboxError):
    code = "internal"


class ConnectionError(AiboxError):  # noqa: A001
    """No aibox server answers where the client looked."""
    code = "connection"


class CommandExitError(AiboxError):
    """A command exited non-zero (raised by `CommandResult.check()`)."""
    code = "command_failed"

    def __init__(self, result: "CommandResult"):
        super().__init__(f"command exited with {result.exit_code}: {result.stderr[-500:]}")
        self.result = result


ERRORS = {c.code: c for c in [
    InvalidArgumentError, AuthenticationError, PermissionDeniedError, NotFoundError,
    TemplateNotFoundError, SandboxGoneError, ConflictError, IsolationUnavailableError,
    RateLimitError, CapacityError, PayloadTooLargeError, TimeoutError, UnavailableError,
    BuildFailedError, ServerError,
]}
ERRORS["protocol_error"] = ServerError
ERRORS["version_mismatch"] = ServerError
ERRORS["frame_too_large"] = PayloadTooLargeError


def error_from(status: int, body: bytes, headers: Mapping[str, str]) -> AiboxError:
    """The typed exception for an error reply."""
    try:
        err = json.loads(body)["error"]
        code, message = err["code"], err["message"]
    except (ValueError, KeyError, TypeError):
        code, message = ("not_found" if status == 404 else "internal"), body.decode("utf-8", "replace")[:500] or f"HTTP {status}"
    retry = headers.get("retry-after")
    cls = ERRORS.get(code, AiboxError)
    return cls(message, code=code, status=status, retry_after=float(retry) if retry else None)


def data_dir() -> str:
    """The aibox data directory, as the CLI finds it."""
    env = os.environ.get("AIBOX_DATA_DIR")
    if env:
        return env
    if os.geteuid() == 0:
        return "/var/lib/aibox"
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg:
        return os.path.join(xdg, "aibox")
    home = os.environ.get("HOME")
    if home:
        return os.path.join(home, ".local/share/aibox")
    return f"/tmp/aibox-{os.geteuid()}/data"


@dataclass
class Endpoint:
    """Where the server is: `base_url` (http://host:port) or a Unix socket."""
    base_url: str
    uds: Optional[str]
    key: Optional[str]

    @property
    def ws_base(self) -> str:
        return "ws://localhost" if self.uds else "ws" + self.base_url[len("http"):]

    def headers(self) -> Dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}


def resolve(url: Optional[str] = None, key: Optional[str] = None) -> Endpoint:
    """`url`/`key`, else `AIBOX_URL`/`AIBOX_KEY`, else the local server: the data
    directory's socket when it answers, else http://127.0.0.1:7878 with the local
    admin key."""
    url = url or os.environ.get("AIBOX_URL") or None
    key = key or os.environ.get("AIBOX_KEY") or None
    data = data_dir()
    if url is None:
        sock = os.path.join(data, "aibox.sock")
        if _answers(sock):
            return Endpoint("http://localhost", sock, key)
        url = "http://127.0.0.1:7878"
    if url.startswith("unix:"):
        return Endpoint("http://localhost", url[len("unix:"):], key)
    if not url.startswith(("http://", "https://")):
        raise InvalidArgumentError(f"invalid aibox URL {url!r}: expected http://HOST:PORT or unix:/path")
    url = url.rstrip("/")
    if key is None and url.split("://", 1)[1].startswith(("127.0.0.1:", "localhost:", "[::1]:")):
        try:
            key = open(os.path.join(data, "admin.key")).read().strip() or None
        except OSError:
            pass
    return Endpoint(url, None, key)


def _answers(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.settimeout(1)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def q(s: str) -> str:
    return quote(s, safe="/")


@dataclass
class CommandResult:
    """A finished command."""
    stdout: str
    stderr: str
    exit_code: Optional[int]
    signal: Optional[int] = None
    timed_out: bool = False
    duration_ms: int = 0
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def check(self) -> "CommandResult":
        """Raise `CommandExitError` unless the command exited 0."""
        if not self.ok:
            raise CommandExitError(self)
        return self

    @classmethod
    def from_json(cls, v: Mapping[str, Any], stdout: str = "", stderr: str = "") -> "CommandResult":
        return cls(
            stdout=v.get("stdout", stdout), stderr=v.get("stderr", stderr),
            exit_code=v.get("exit_code"), signal=v.get("signal"),
            timed_out=bool(v.get("timed_out")), duration_ms=int(v.get("duration_ms") or 0),
            stdout_truncated=bool(v.get("stdout_truncated")), stderr_truncated=bool(v.get("stderr_truncated")),
        )


@dataclass
class EntryInfo:
    """A file or directory in a sandbox."""
    path: str
    name: str
    kind: str
    size: int
    mode: int
    mtime: Optional[float] = None
    target: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, v: Mapping[str, Any]) -> "EntryInfo":
        path = v.get("path", "")
        return cls(path=path, name=v.get("name") or os.path.basename(path), kind=v.get("kind", ""),
                   size=int(v.get("size") or 0), mode=int(v.get("mode") or 0), mtime=v.get("mtime"),
                   target=v.get("target"), raw=dict(v))


Network = Union[None, List[str], Mapping[str, Any]]


#: Each parameter of ``Sandbox.create`` and the create request's field it
#: fills (the server's OpenAPI schema ``CreateSandbox``; the SDK's tests
#: hold the two to each other, so a field the server adds fails them
#: until it is here).
CREATE_FIELDS: Dict[str, str] = {
    "template": "template", "memory": "memory", "cpus": "cpus", "pids": "pids", "disk": "disk",
    "env": "env", "workdir": "workdir", "user": "user", "timeout": "ttl_seconds",
    "idle_timeout": "idle_timeout_seconds", "hostname": "hostname", "labels": "labels",
    "require_isolation": "require_isolation", "backend": "backend", "mounts": "mounts",
    "volumes": "volumes", "workspace": "workspace", "snapshot": "snapshot", "network": "network",
    "public": "public",
}

Mount = Union[str, Mapping[str, Any]]


def mount_body(m: Mount) -> Dict[str, Any]:
    """``"HOST:GUEST[:ro|rw]"`` or ``{"host", "guest", "read_only"}`` as the API takes it."""
    if not isinstance(m, str):
        return dict(m)
    parts = m.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise ValueError(f"mount {m!r}: expected HOST:GUEST[:ro|rw]")
    return {"host": parts[0], "guest": parts[1], "read_only": len(parts) == 3 and parts[2] == "ro"}


VolumeMount = Union[str, Mapping[str, Any]]


def volume_body(v: VolumeMount) -> Dict[str, Any]:
    """``"NAME:/PATH[:ro|rw]"`` or ``{"name", "path", "read_only"}`` as the API takes it."""
    if not isinstance(v, str):
        return dict(v)
    parts = v.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise ValueError(f"volume {v!r}: expected NAME:/PATH[:ro|rw]")
    body: Dict[str, Any] = {"name": parts[0], "path": parts[1]}
    if len(parts) == 3 and parts[2] == "ro":
        body["read_only"] = True
    return body


def new_volume_body(name: str, size: Union[None, int, str] = None, uid: Optional[int] = None,
                    labels: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """The request of ``Volume.create``: what is None or empty is left to the server."""
    body: Dict[str, Any] = {"name": name}
    if size is not None:
        body["size"] = size
    if uid is not None:
        body["uid"] = uid
    if labels:
        body["labels"] = dict(labels)
    return body


def new_workspace_body(name: str, size: Union[None, int, str] = None,
                       env: Optional[Mapping[str, str]] = None,
                       labels: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """The request of ``Workspace.create``."""
    body: Dict[str, Any] = {"name": name}
    if size is not None:
        body["size"] = size
    if env:
        body["env"] = dict(env)
    if labels:
        body["labels"] = dict(labels)
    return body


def clone_body(name: str, snapshot: Optional[str] = None,
               labels: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """The request of ``Volume.clone``."""
    body: Dict[str, Any] = {"name": name}
    if snapshot:
        body["snapshot"] = snapshot
    if labels:
        body["labels"] = dict(labels)
    return body


def create_body(**given: Any) -> Dict[str, Any]:
    """The create request of ``Sandbox.create``'s parameters (see
    ``CREATE_FIELDS``); what is None, empty or False is left to the server."""
    body: Dict[str, Any] = {}
    for param, value in given.items():
        field_name = CREATE_FIELDS[param]
        if value is None or value is False or (isinstance(value, (dict, list, tuple)) and not value):
            continue
        if param == "network" and isinstance(value, (list, tuple)):
            value = {"mode": "allowlist", "rules": list(value)}
        elif param == "mounts":
            value = [mount_body(m) for m in value]
        elif param == "volumes":
            value = [volume_body(v) for v in value]
        elif isinstance(value, Mapping):
            value = dict(value)
        body[field_name] = value
    return body


#: Each parameter of ``Commands.run`` and the exec request's field it fills
#: (the server's OpenAPI schema ``Exec``).
EXEC_FIELDS: Dict[str, str] = {
    "cmd": "cmd", "env": "env", "cwd": "cwd", "user": "user", "timeout": "timeout_ms",
    "stdin": "stdin", "max_output": "max_output",
}


def exec_body(cmd: Union[str, List[str]], env: Optional[Mapping[str, str]], cwd: Optional[str],
              user: Optional[str], timeout: Optional[float], max_output: Optional[int] = None) -> Dict[str, Any]:
    body: Dict[str, Any] = {"cmd": cmd}
    if env:
        body["env"] = dict(env)
    if cwd:
        body["cwd"] = cwd
    if user:
        body["user"] = user
    if timeout is not None:
        body["timeout_ms"] = max(1, int(timeout * 1000))
    if max_output is not None:
        body["max_output"] = int(max_output)
    return body


def split_ws_message(msg: Union[str, bytes]) -> Tuple[str, Any]:
    """A WebSocket message of an exec stream: ("stdout"|"stderr", bytes) or ("event", dict)."""
    if isinstance(msg, (bytes, bytearray)):
        if not msg:
            return "stdout", b""
        return ("stderr" if msg[0] == 2 else "stdout"), bytes(msg[1:])
    return "event", json.loads(msg)


def tar_dir(local: str) -> bytes:
    """A local directory's contents as a tar archive."""
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name in sorted(os.listdir(local)):
            t.add(os.path.join(local, name), arcname=name)
    return buf.getvalue()


def extract_tar(data: bytes, local: str) -> None:
    """Unpack a tar archive into `local` (created); nothing may land outside it.

    The archive comes from a sandbox, so every entry is checked before it
    is written, on every Python: no absolute or `..` names, no device or
    hard-link tricks, no symlink whose target is absolute or leads outside,
    and nothing written under (or through) a symlink (the security
    review's M11: without tarfile's data filter, `a -> ~/.ssh` then
    `a/authorized_keys` was written through the link).
    """
    import io
    import tarfile
    os.makedirs(local, exist_ok=True)
    root = os.path.realpath(local)

    def inside(p: str) -> bool:
        return p == root or p.startswith(root + os.sep)

    def refuse(name: str, why: str) -> None:
        raise InvalidArgumentError(f"the archive's entry {name!r} {why}")

    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as t:
        for m in t:
            name = m.name[2:] if m.name.startswith("./") else m.name
            if not name or name == ".":
                continue
            if os.path.isabs(name) or ".." in name.split("/"):
                refuse(m.name, f"leads outside {local}")
            target = os.path.join(root, name)
            # No component below the root may be a symlink, nor the entry's
            # own path (a write would follow it).
            parent = os.path.dirname(target)
            while inside(parent) and parent != root:
                if os.path.islink(parent):
                    refuse(m.name, "lies under a symlink")
                parent = os.path.dirname(parent)
            if os.path.islink(target):
                refuse(m.name, "would be written through a symlink")
            if m.issym():
                if os.path.isabs(m.linkname) or not inside(
                        os.path.normpath(os.path.join(os.path.dirname(target), m.linkname))):
                    refuse(m.name, f"is a symlink to {m.linkname!r}, outside {local}")
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.symlink(m.linkname, target)
            elif m.isdir():
                os.makedirs(target, exist_ok=True)
            elif m.isfile():
                os.makedirs(os.path.dirname(target), exist_ok=True)
                src = t.extractfile(m)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                             m.mode & 0o777)
                with os.fdopen(fd, "wb") as f:
                    if src is not None:
                        f.write(src.read())
            # Hard links, devices and fifos are not written.


def port_url(ports: Mapping[str, Any], port: int) -> str:
    """The URL of `port` from a `GET .../ports` reply, with the token unless public."""
    url = next((p["url"] for p in ports.get("ports", []) if p["port"] == port), None)
    if url is None:
        url = ports["url_template"].replace("{port}", str(port))
    if not ports.get("public") and ports.get("token") and "aibox_token=" not in url:
        url += ("&" if "?" in url else "?") + f"aibox_token={ports['token']}"
    return url


def ports_body(public: Optional[bool], rotate_token: bool) -> Dict[str, Any]:
    body: Dict[str, Any] = {"rotate_token": rotate_token}
    if public is not None:
        body["public"] = public
    return body


def processes(v: Any) -> List[Dict[str, Any]]:
    return list(v.get("processes", v) if isinstance(v, dict) else v)
