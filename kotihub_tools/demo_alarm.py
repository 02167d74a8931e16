"""The notification part of ``kotihub demo``: a simulated Twilio, the register's dispatcher, a siren relay, and a
narrator that tells the smoke alarm's way to a person ("SMS to Aino accepted by the provider 0.8 s after smoke"),
the siren, and Aino pressing 1 in the call that follows."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from cloud_sync.register.notify import alarms, contacts, dispatch, schema
from cloud_sync.register.notify.config import NotifyConfig
from cloud_sync.register.notify.twilio_sim import TwilioSimulator

SIREN_RELAY = {"family": "tasmota", "topic": "demo-siren", "room": "eteinen"}
"""A Tasmota relay wired to a siren, as a household would list it under ``[[drivers.mqtt.sirens]]``."""
POLICY = {
    "smoke": [{"after_s": 0, "channels": ["sms"]}, {"after_s": 4, "channels": ["voice"], "in_order": True}],
    "desk_after_s": 600,
}


class AlarmDemo:
    def __init__(self) -> None:
        self.sim = TwilioSimulator()
        self._halt: Callable[[], None] | None = None
        self.registry: Any = None
        self.names: dict[str, str] = {}

    def environment(self, public_url: str) -> None:
        """Before the register starts: its provider settings point at the simulator."""
        os.environ.update({**self.sim.env(), "KOTIHUB_REGISTER_PUBLIC_URL": public_url})

    def attach(self, server: Any) -> None:
        """After the register started: the dispatcher runs beside it."""
        self.registry = server.registry
        self.sim.trust(str(server.settings.state_dir / "ca.crt"))
        _, self._halt = dispatch.start(server.registry, NotifyConfig.from_env(), poll_s=0.2)

    def household(self, household_id: str, member_id: str, name: str) -> None:
        contacts.set_contact(self.registry, household_id, member_id, contacts.Contact(phone="+358401110001"),
                             actor="demo")  # fmt: skip
        contacts.set_policy(self.registry, household_id, POLICY, actor="demo")
        self.names["+358401110001"] = name

    async def narrate(self, daemon: Any, say: Callable[[str], None], stop: asyncio.Event) -> None:
        told: set[str] = set()
        siren = False
        while not stop.is_set():
            await asyncio.sleep(0.1)
            sirens = getattr(daemon, "sirens", None)
            if sirens is not None and sirens.sounding != siren:
                siren = sirens.sounding
                say("SIREN       sounding (smoke at a detector: every siren sounds)" if siren else "SIREN       quiet")
            for acc in self.sim.accepted:
                if acc.sid in told:
                    continue
                told.add(acc.sid)
                raised = await asyncio.to_thread(self._raised_at, acc.sid)
                after = f" {acc.created - raised:.1f} s after smoke" if raised else ""
                name = self.names.get(acc.to, "a member")
                if acc.kind == "sms":
                    say(f"NOTIFY      SMS to {name} accepted by the provider{after}: {acc.body.split(' Kuittaa')[0]}")
                else:
                    say(f"NOTIFY      call to {name} accepted by the provider{after}; {name} presses 1 ...")
                    reply = await asyncio.to_thread(self.sim.press, acc.sid, "1")
                    say(f"ACK         {'acknowledged: escalation stopped' if reply.ok else 'not acknowledged'}")

    def _raised_at(self, sid: str) -> float | None:
        with self.registry.engine.connect() as conn:
            job = (
                conn.execute(schema.notify_jobs.select().where(schema.notify_jobs.c.provider_ref == sid))
                .mappings()
                .first()
            )
            if job is None:
                return None
            hist = {a["id"]: a for a in alarms.history(conn, job["household_id"])}
        alarm = hist.get(job["alarm_id"])
        return float(alarm["raised_at"]) if alarm else None

    def close(self) -> None:
        if self._halt is not None:
            self._halt()
        self.sim.close()
