"""aibox: self-hosted sandboxes for AI agents.

    from aibox import Sandbox
    with Sandbox.create() as sb:
        print(sb.commands.run("echo hi").stdout)
"""
from ._core import (
    AiboxError, AuthenticationError, BuildFailedError, CapacityError, CommandExitError,
    CommandResult, ConflictError, ConnectionError, EntryInfo, InvalidArgumentError,
    IsolationUnavailableError, NotFoundError, PayloadTooLargeError, PermissionDeniedError,
    RateLimitError, SandboxGoneError, ServerError, TemplateNotFoundError, TimeoutError,
    UnavailableError,
)
from .async_sandbox import AsyncCommandHandle, AsyncSandbox, AsyncVolume
from .sandbox import CommandHandle, Sandbox, Snapshot, Templates, Volume, Workspace

__all__ = [
    "Sandbox", "AsyncSandbox", "Snapshot", "Templates", "Volume", "AsyncVolume", "Workspace", "CommandHandle", "AsyncCommandHandle",
    "CommandResult", "EntryInfo", "AiboxError", "AuthenticationError", "BuildFailedError",
    "CapacityError", "CommandExitError", "ConflictError", "ConnectionError", "InvalidArgumentError",
    "IsolationUnavailableError", "NotFoundError", "PayloadTooLargeError", "PermissionDeniedError",
    "RateLimitError", "SandboxGoneError", "ServerError", "TemplateNotFoundError", "TimeoutError",
    "UnavailableError",
]
__version__ = "0.1.0"
