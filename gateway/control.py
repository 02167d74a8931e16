"""The control socket: a unix socket (mode 0660) over which the ``kotihub`` CLI asks the daemon things.

One JSON request per connection, one JSON reply: ``{"cmd": "status", "args": {...}}`` →
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``. Requests are bounded in size.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class ControlError(Exception):
    """A request the daemon refuses, with a message for the person at the CLI."""


class DaemonUnreachable(Exception):
    """The daemon is not running, or this user may not use its socket."""


class ControlServer:
    def __init__(self, path: Path, handlers: dict[str, Handler], *, group: str = "") -> None:
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
            writer.write(json.dumps(reply, default=str).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=10)
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                raise ValueError("a request is {'cmd': str, 'args': {...}}")
        except (ValueError, asyncio.LimitOverrunError, TimeoutError) as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        handler = self.handlers.get(request["cmd"])
        if handler is None:
            return {"ok": False, "error": f"unknown command {request['cmd']!r}"}
        args = request.get("args") or {}
        try:
            return {"ok": True, "result": await handler(args)}
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # the CLI gets a message; the daemon keeps serving
            log.exception("control command %s failed", request["cmd"])
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def call(path: Path, cmd: str, args: dict[str, Any] | None = None, *, timeout: float = 60.0) -> Any:
    """Sends one request to the daemon and returns its result; raises DaemonUnreachable or ControlError."""
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
        sock.sendall(json.dumps({"cmd": cmd, "args": args or {}}).encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    reply = json.loads(b"".join(chunks) or b"{}")
    if not reply.get("ok"):
        raise ControlError(reply.get("error", "the daemon closed the connection without a reply"))
    return reply["result"]
