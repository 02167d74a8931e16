"""Clips exactly once under chaos: the hub killed at random and the instant a clip is indexed, the register killed at
random and left with every byte of a clip but no completion, uploads cut by a TCP proxy. At the end every clip the
hub's store knows is in the register once, complete, digest-true and decryptable by a member; the spool holds
exactly those clips."""

from __future__ import annotations

import asyncio
import io
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyrage
import pytest
import requests

from cloud_sync.enroll import enroll
from cloud_sync.register import clips, ingest
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings
from gateway import crypto
from gateway.store import Store
from gateway.store.clips import decrypt_clip
from gateway.store.clipspool import known_clips
from tests.support.clip_chaos_child import plaintext
from tests.support.postgres import free_port
from tests.support.tcpproxy import fault_proxy

HUB_KILLS = int(os.environ.get("KOTIHUB_CLIP_KILLS", "10"))
REPO = Path(__file__).resolve().parents[2]


class Lines:
    """A child's stdout, read by a thread, so the test can wait for a line with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.indexed: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._reader.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.queue.put(line.strip())

    def wait(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {prefix!r} line within {timeout} s") from None
            if line.startswith("INDEXED "):
                self.indexed.append(line.split()[1])
            if line.startswith(prefix):
                return line

    def finish(self) -> None:
        """After the child has exited: takes in every line it printed before it died."""
        self._reader.join(10)
        while not self.queue.empty():
            line = self.queue.get_nowait()
            if line.startswith("INDEXED "):
                self.indexed.append(line.split()[1])


class RegisterProcess:
    """``kotihub-register serve`` as a process that the test can SIGKILL and start again on the same port."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        command = ["-m", "cloud_sync.register.cli", "--state", str(self.state), "serve", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [sys.executable, *command],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if "register listening" in line:
                break
        else:
            raise AssertionError("the register did not start")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # drain

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def ensure_up(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.start()


def hub_child(state: Path, url: str, recipient: str, round_no: int, n: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.clip_chaos_child",
            str(state),
            url,
            recipient,
            str(round_no),
            str(n),
            *extra,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def complete_without_completion(registry: Registry, household: str, spool: Path) -> int:
    """The state a register killed between a clip's last chunk and its completion leaves: every byte appended and
    fsynced, the completion never committed. Made here, with the register down, for every partial upload."""
    made = 0
    for row in clips.list_clips(registry, household):
        path = spool / f"{row['clip_id']}.age"
        if row["complete"] or not path.exists():
            continue
        data = path.read_bytes()
        held = registry.blobs.size(household, row["clip_id"])
        if held < len(data) and registry.blobs.read_range(household, row["clip_id"], 0, held) == data[:held]:
            registry.blobs.append(household, row["clip_id"], held, data[held:])
            made += 1
    return made


def whole_but_incomplete(
    state: Path, register: RegisterProcess, registry: Registry, household: str, recipient: str, round_no: int
) -> None:
    """Exactly the state of a register killed between a clip's last chunk and its completion: the hub (here, the
    test on its behalf) created the upload, every byte is appended and fsynced, the completion never committed."""
    proc = hub_child(state, "https://unused.invalid", recipient, 100 + round_no, 1, "--no-uplink")
    lines = Lines(proc)
    _, clip_id, record = lines.wait("INDEXED", 60).split(" ", 2)
    assert proc.wait(60) == 0
    session = requests.Session()
    session.trust_env = False
    session.cert = (str(state / "hub.crt"), str(state / "hub.key"))
    session.verify = str(state / "register-ca.crt")
    created = session.put(f"https://127.0.0.1:{register.port}/v1/clips/{clip_id}", data=record, timeout=30)
    assert created.json() == {"offset": 0, "complete": False, "sha256": ""}
    register.kill()
    registry.blobs.append(household, clip_id, 0, (state / "spool" / f"{clip_id}.age").read_bytes())


@pytest.mark.slow
def test_every_clip_arrives_exactly_once_whatever_is_killed(tmp_path: Path) -> None:
    rng = random.Random(1212)
    register = RegisterProcess(tmp_path / "register")
    register.start()
    registry = Registry(Settings(state_dir=register.state))
    member = pyrage.x25519.Identity.generate()
    identity_file = tmp_path / "aino.key"
    identity_file.write_text(f"# Aino\n{member}\n")
    state = tmp_path / "hub"
    spool = state / "spool"
    indexed: set[str] = set()
    try:
        household = registry.create_household("Virtanen", actor="test")
        registry.add_member(household, "Aino", str(member.to_public()), actor="test")
        token = registry.create_enroll_token(household, ttl_s=600, actor="test")
        enroll(f"https://127.0.0.1:{register.port}", token, state, ca_file=register.state / "ca.crt")
        recipient = str(member.to_public())
        with fault_proxy(register.port) as proxy:
            for round_no in range(HUB_KILLS):
                register.ensure_up()
                proxy.cut_replies = rng.randint(0, 2)  # replies lost after the register acted on the request
                proc = hub_child(state, proxy.url, recipient, round_no, 3)
                lines = Lines(proc)
                lines.wait("READY", 60)
                killer = None
                if round_no % 3 == 2:  # the register dies at a random moment of this round
                    killer = threading.Timer(rng.uniform(0.2, 2.5), register.kill)
                    killer.start()
                if round_no % 2 == 0:
                    # The instant of sealing: killed as soon as the k-th clip's index commits (around the rename).
                    lines.wait("INDEXED", 60)
                    for _ in range(rng.randint(0, 2)):
                        lines.wait("INDEXED", 60)
                else:
                    time.sleep(rng.uniform(0.5, 3.0))  # the fault itself: a kill somewhere in sealing or uploading
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                if killer is not None:
                    killer.join()
                lines.finish()
                indexed.update(lines.indexed)
                if round_no % 4 == 3:
                    register.ensure_up()
                    whole_but_incomplete(state, register, registry, household, recipient, round_no)
                    complete_without_completion(registry, household, spool)  # and any partial upload the kill left
            register.ensure_up()
            proxy.cut_replies = 0
            final = hub_child(state, proxy.url, recipient, HUB_KILLS, 1, "--until-synced")
            lines = Lines(final)
            lines.wait("SYNCED", 240)
            final.wait(60)
            lines.finish()
            indexed.update(lines.indexed)
            assert proxy.cut_count > 0, "the proxy never cut an upload's reply"

        key = crypto.load_master_key(state, create=False)
        store = Store.open(state, key, crypto.Algorithm.CHACHA20_POLY1305)
        try:
            known = asyncio.run(known_clips(store))
            records = {i.body["clip_id"]: i.body for i in store.iter_items("clips")}
        finally:
            asyncio.run(store.close())
        assert indexed <= known and len(known) >= HUB_KILLS
        # The spool holds exactly what the store knows: nothing orphaned, nothing half-done.
        assert sorted(p.name for p in spool.iterdir()) == sorted(f"{c}.age" for c in known)
        rows = clips.list_clips(registry, household)
        assert sorted(r["clip_id"] for r in rows) == sorted(known), "a clip missing from the register, or extra"
        hub_id = rows[0]["hub_id"]
        ingested = [b["clip_id"] for _, b in ingest.items(registry, hub_id, "clips")]
        assert sorted(ingested) == sorted(known), "each clip's record exactly once"
        for row in rows:
            assert row["complete"], f"{row['clip_id']} incomplete"
            assert row["sha256"] == records[row["clip_id"]]["sha256"]
            blob = b"".join(registry.blobs.read(household, row["clip_id"]))
            assert len(blob) == row["size"]
            sealed = tmp_path / "download.age"
            sealed.write_bytes(blob)
            out = io.BytesIO()
            decrypt_clip(identity_file, sealed, out, expected_sha256=row["sha256"])
            assert out.getvalue() == plaintext(row["clip_id"])
    finally:
        register.kill()
        registry.close()
