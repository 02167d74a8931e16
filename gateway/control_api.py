"""The control socket's contract: every request's arguments and the replies with a fixed shape, as msgspec Structs.

The CLI builds a request from these types and the daemon decodes it into the same types before a handler runs, so
an argument the daemon does not know, a wrong type or a value out of range is a ``bad request`` naming the field,
not a ``KeyError`` in a handler; and a new argument is added in one place that both ends import.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from gateway.model import Category

Actor = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Text = Annotated[str, msgspec.Meta(max_length=64)]
"""Names and rooms a person gives a device."""


class Args(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every request's arguments; a command without arguments takes this."""


class Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One request per connection: ``{"cmd": "status", "args": {...}}``."""

    cmd: str
    args: dict[str, Any] = msgspec.field(default_factory=dict)


class Reply(msgspec.Struct, frozen=True, omit_defaults=True):
    """One reply: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``."""

    ok: bool
    result: Any = None
    error: str = ""


class SyncArgs(Args, frozen=True, kw_only=True):
    now: bool = False


class JobArgs(Args, frozen=True, kw_only=True):
    id: str


class RetentionArgs(Args, frozen=True, kw_only=True):
    run: bool = False
    force: bool = False


class EraseArgs(Args, frozen=True, kw_only=True):
    scope: Literal["all", "device", "category"]
    target: str = ""
    confirm: bool = False
    actor: Actor = "household"


class ExportArgs(Args, frozen=True, kw_only=True):
    actor: Actor = "household"


class SelftestArgs(Args, frozen=True, kw_only=True):
    alarm_test: bool = False


class DiscoverArgs(Args, frozen=True, kw_only=True):
    timeout: Annotated[float, msgspec.Meta(gt=0, le=120)] = 5.0


class AdoptArgs(Args, frozen=True, kw_only=True):
    device_id: str
    actor: Actor = "household"


class RestrictArgs(Args, frozen=True, kw_only=True):
    category: Category
    on: bool = True
    actor: Actor = "household"


class RenameArgs(Args, frozen=True, kw_only=True):
    device_id: str
    name: Text | None = None
    room: Text | None = None
    actor: Actor = "household"


class JobStarted(msgspec.Struct, frozen=True, kw_only=True):
    job: str


class DeviceView(msgspec.Struct, frozen=True, kw_only=True):
    """A device as ``kotihub devices`` shows it."""

    device_id: str
    driver: str
    kind: str
    name: str
    room: str
    model: str
    online: bool
    battery: float | None
    first_seen: float
    last_seen: float


class DiscoveredView(msgspec.Struct, frozen=True, kw_only=True):
    """A device an active discovery found, and whether the hub knows it already."""

    device_id: str
    driver: str
    kind: str
    model: str
    address: str
    rssi: float | None
    known: bool


class DiscoveryFailed(msgspec.Struct, frozen=True, kw_only=True):
    """A driver whose discovery failed; the others' results still count."""

    driver: str
    error: str


class Adopted(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    adopted: bool
    new: bool


class Renamed(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    name: str
    room: str
