"""The hub carries out the register's ``rename`` (a member rectified a device's name and room in the app): the
hub's registry and its store take the new name, the store's audit says so, and an unknown device fails the
command (the uplink reports it as failed) without touching anything."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from cloud_sync import protocol as p
from gateway import register_commands
from gateway.hub import Hub
from gateway.model import DeviceInfo, DeviceKind
from tests.support.stores import open_store


async def test_rename_from_the_register_reaches_the_hub_and_its_store(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        hub = Hub(store, offline_after={})
        await hub.device_seen(DeviceInfo(device_id="mqtt:0x1", driver="mqtt", kind=DeviceKind.SENSOR, name="x"))
        # The eraser is never reached by rename; the table only needs one to exist.
        handlers = register_commands.table(SimpleNamespace(hub=hub, eraser=object()))  # type: ignore[arg-type]
        args = {"device_id": "mqtt:0x1", "name": "Eteisen palovaroitin", "room": "Eteinen"}
        out = await handlers["rename"](p.Command(id="cmd_1", kind="rename", args=args, issued_at=0.0))
        assert out == {"device_id": "mqtt:0x1"}
        assert (hub.devices["mqtt:0x1"].info.name, hub.devices["mqtt:0x1"].info.room) == (
            "Eteisen palovaroitin",
            "Eteinen",
        )
        await store.flush()
        (record,) = await store.devices()
        assert (record.info.name, record.info.room) == ("Eteisen palovaroitin", "Eteinen")
        with pytest.raises(KeyError):
            await handlers["rename"](
                p.Command(id="cmd_2", kind="rename", args={"device_id": "mqtt:0x2"}, issued_at=0.0)
            )
