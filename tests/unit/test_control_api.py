"""The control socket's typed contract (issue 15, item 4): every request the CLI sends is a command the daemon
serves, with the argument type the daemon decodes it into; a malformed request is a precise ``bad request``."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway import control_api as api
from gateway.control import Command, ControlError, ControlServer, call
from gateway.control_handlers import ControlHandlers
from gateway.model import Category

REPO = Path(__file__).resolve().parents[2]


def cli_requests() -> dict[str, set[str | None]]:
    """``_ask(args, "cmd", api.XArgs(...))`` calls in gateway/cli.py: command → argument types (None: no arguments)."""
    found: dict[str, set[str | None]] = {}
    for node in ast.walk(ast.parse((REPO / "gateway" / "cli.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_ask":
            cmd = node.args[1]
            assert isinstance(cmd, ast.Constant) and isinstance(cmd.value, str)
            payload = node.args[2] if len(node.args) > 2 else None
            if isinstance(payload, ast.Name):  # built in a variable just above
                payload = _assigned(payload.id)
            kind = None
            if payload is not None:
                assert isinstance(payload, ast.Call) and isinstance(payload.func, ast.Attribute), ast.dump(payload)
                kind = payload.func.attr
            found.setdefault(cmd.value, set()).add(kind)
    return found


def _assigned(name: str) -> ast.expr | None:
    for node in ast.walk(ast.parse((REPO / "gateway" / "cli.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node.value
    return None


def test_every_cli_request_is_served_with_the_type_it_is_sent_as() -> None:
    table = ControlHandlers(None).table()  # type: ignore[arg-type]  # the table only names bound methods
    sent = cli_requests()
    assert len(sent) >= 12, "could not find the CLI's requests: update cli_requests()"
    assert set(sent) <= set(table), f"the CLI asks for commands nobody serves: {sorted(set(sent) - set(table))}"
    for cmd, kinds in sent.items():
        served = table[cmd].args
        for kind in kinds:
            if kind is None:
                msgspec.convert({}, served)  # sent without arguments: every one of them must have a default
            else:
                assert kind == served.__name__, f"the CLI sends {cmd} as {kind}, the daemon decodes {served.__name__}"


async def _serve(tmp_path: Path, table: dict[str, Command[Any]]) -> tuple[Path, ControlServer, asyncio.Task[None]]:
    path = tmp_path / "control.sock"
    server = ControlServer(path, table)
    task = asyncio.create_task(server.serve())
    await asyncio.wait_for(server.listening.wait(), 5)
    return path, server, task


def test_requests_decode_into_their_struct_and_bad_ones_are_refused_precisely(tmp_path: Path) -> None:
    got: list[api.RestrictArgs] = []

    async def restrict(args: api.RestrictArgs) -> list[str]:
        got.append(args)
        return [args.category.value]

    async def main() -> None:
        path, _, task = await _serve(tmp_path, {"restrict": Command(api.RestrictArgs, restrict)})
        try:
            ask = asyncio.to_thread
            typed = api.RestrictArgs(category=Category.CAMERA, on=False, actor="cli")
            assert await ask(call, path, "restrict", typed) == ["camera"]
            assert got == [typed]
            assert await ask(call, path, "restrict", {"category": "sensors"}) == ["sensors"]
            assert got[-1] == api.RestrictArgs(category=Category.SENSORS)
            for bad, says in [
                ({"category": "video"}, "`$.category`"),
                ({"category": "camera", "on": "yes"}, "`$.on`"),
                ({"category": "camera", "colour": "red"}, "unknown field `colour`"),
                ({}, "missing required field `category`"),
                ({"category": "camera", "actor": "x" * 65}, "`$.actor`"),
            ]:
                with pytest.raises(ControlError, match="bad request") as refused:
                    await ask(call, path, "restrict", bad)
                assert says in str(refused.value)
            with pytest.raises(ControlError, match="unknown command 'nothing'"):
                await ask(call, path, "nothing")
            assert len(got) == 2, "no handler ran for a refused request"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_argument_limits_are_in_the_types() -> None:
    with pytest.raises(msgspec.ValidationError, match="<= 120"):
        msgspec.convert({"timeout": 121}, api.DiscoverArgs)
    with pytest.raises(msgspec.ValidationError, match="length <= 64"):
        msgspec.convert({"device_id": "d", "name": "n" * 65}, api.RenameArgs)
    with pytest.raises(msgspec.ValidationError, match="scope"):
        msgspec.convert({"scope": "everything"}, api.EraseArgs)
