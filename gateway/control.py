"""The control socket: a unix socket (mode 0660) over which the ``kotihub`` CLI asks the daemon things.

One JSON request per connection, one JSON reply: ``{"cmd": "status", "args": {...}}`` →
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``. Requests are bounded in size. Each command
names the Struct its arguments decode into (:mod:`gateway.control_api`), so a handler gets typed, checked values.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec

from gateway.control_api import Args, Reply, Request

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
A = TypeVar("A", bound=Args)


@dataclass(frozen=True, slots=True)
class Command(Generic[A]):
    """A control command: the Struct its arguments decode into and the handler that gets them."""

    args: type[A]
    run: Callable[[A], Awaitable[Any]]


def _as_text(value: Any) -> str:
    return str(value)  # paths, dates and the like in a status reply: shown, not decoded


class ControlError(Exception):
    """A request the daemon refuses, with a message for the person at the CLI."""


class DaemonUnreachable(Exception):
    """The daemon is not running, or this user may not use its socket."""


class ControlServer:
    def __init__(self, path: Path, handlers: dict[str, Command[Any]], *, group: str = "") -> None:
        self.path = path
        self.handlers = handlers
        self.group = group
        self.listening = asyncio.Event()

    async def serve(self) -> None:
        """Serves until cancelled; removes the socket on the way out."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        server = await asyncio.start_unix_server(self._client, path=str(self.path), limit=MAX_REQUEST)
        os.chmod(self.path, 0o660)
        if self.group:
            os.chown(self.path, -1, grp.getgrnam(self.group).gr_gid)
        self.listening.set()
        try:
            async with server:
                await server.serve_forever()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            reply = await self._answer(reader)
            writer.write(msgspec.json.encode(reply, enc_hook=_as_text) + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> Reply:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=10)
            request = msgspec.json.decode(line, type=Request)
        except (msgspec.DecodeError, ValueError, asyncio.LimitOverrunError, TimeoutError) as exc:
            return Reply(False, error=f"bad request: {exc}")
        command = self.handlers.get(request.cmd)
        if command is None:
            return Reply(False, error=f"unknown command {request.cmd!r}")
        try:
            args = msgspec.convert(request.args, command.args)
        except msgspec.ValidationError as exc:
            return Reply(False, error=f"bad request: {exc}")
        try:
            return Reply(True, result=await command.run(args))
        except ControlError as exc:
            return Reply(False, error=str(exc))
        except Exception as exc:  # the CLI gets a message; the daemon keeps serving
            log.exception("control command %s failed", request.cmd)
            return Reply(False, error=f"{type(exc).__name__}: {exc}")


def call(path: Path, cmd: str, args: Args | dict[str, Any] | None = None, *, timeout: float = 60.0) -> Any:
    """Sends one request to the daemon and returns its result (JSON values); raises DaemonUnreachable or
    ControlError. ``args`` is the command's Struct from :mod:`gateway.control_api` (a dict is checked by the daemon
    the same way)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except FileNotFoundError:
        raise DaemonUnreachable(f"the kotihub daemon is not running (no control socket at {path})") from None
    except PermissionError:
        raise DaemonUnreachable(
            f"no permission to use {path}: run as the kotihub user or a member of its group"
        ) from None
    except ConnectionRefusedError:
        raise DaemonUnreachable(f"the kotihub daemon is not running (stale socket at {path})") from None
    with sock:
        body = msgspec.to_builtins(args) if isinstance(args, Args) else dict(args or {})
        sock.sendall(msgspec.json.encode(Request(cmd, body)) + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        raise ControlError("the daemon closed the connection without a reply")
    reply = msgspec.json.decode(data, type=Reply)
    if not reply.ok:
        raise ControlError(reply.error)
    return reply.result
