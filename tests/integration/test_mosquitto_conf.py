"""The broker settings scripts/install gives mosquitto: a stopped hub's backlog stays queued, across a restart."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import aiomqtt

from kotihub_tools.broker import start_mosquitto
from tests.integration.test_install import REPO, run

CONF = REPO / "config" / "mosquitto" / "kotihub.conf"
BACKLOG = 5_000  # five times mosquitto's default max_queued_messages


async def _session(host: str, port: int, *, expect: int = 0) -> list[bytes]:
    """Connects as the hub would (persistent session, QoS 1); returns what was queued for it."""
    received: list[bytes] = []
    async with aiomqtt.Client(host, port, identifier="kotihub", clean_session=False) as client:
        await client.subscribe("zigbee2mqtt/#", qos=1)
        if expect:
            async with asyncio.timeout(60):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    received.append(message.payload)
                    if len(received) == expect:
                        break
    return received


async def _publish(host: str, port: int) -> None:
    async with aiomqtt.Client(host, port, identifier="device") as client:
        for i in range(BACKLOG):
            await client.publish("zigbee2mqtt/weather", b"%d" % i, qos=1)


def test_a_stopped_hubs_backlog_stays_queued_across_a_broker_restart(tmp_path: Path) -> None:
    store = tmp_path / "persist"
    store.mkdir()
    # The installed file as it is, plus what Debian's mosquitto.conf and the test broker add around it.
    config = CONF.read_text() + f"persistence_location {store}/\nallow_anonymous true\n"
    with start_mosquitto(tmp_path / "broker", extra_config=config) as broker:
        asyncio.run(_session(broker.host, broker.port))  # the hub's session exists; the hub is now "down"
        asyncio.run(_publish(broker.host, broker.port))
        broker.restart()  # a clean restart: the queue is saved and loaded again
        received = asyncio.run(_session(broker.host, broker.port, expect=BACKLOG))
    assert received == [b"%d" % i for i in range(BACKLOG)]


def test_install_with_mosquitto_installs_the_settings(tmp_path: Path) -> None:
    root = tmp_path / "root"
    output = run(REPO / "scripts/install", "--root", root, "--mosquitto", "--dry-run")
    assert "mosquitto settings /etc/mosquitto/conf.d/kotihub.conf" in output
    assert f"install -D -m 0644 {CONF} {root}/etc/mosquitto/conf.d/kotihub.conf" in output
    syntax = subprocess.run(["bash", "-n", str(REPO / "scripts/install")], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
