"""The register's SQLite write gate: one writer at a time, and a waiting alarm goes before waiting readings."""

from __future__ import annotations

import threading
import time

from cloud_sync.register.ingest import WriteGate


def _waiters(gate: WriteGate) -> int:
    return len(gate._cond._waiters)  # type: ignore[attr-defined]


def _until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_an_urgent_writer_overtakes_waiting_ones() -> None:
    gate = WriteGate()
    order: list[str] = []
    release = threading.Event()

    def writer(name: str, urgent: bool, hold: threading.Event | None = None) -> None:
        with gate.hold(urgent=urgent):
            order.append(name)
            if hold is not None:
                hold.wait(5)

    first = threading.Thread(target=writer, args=("readings-1", False, release))
    first.start()
    _until(lambda: order == ["readings-1"])
    second = threading.Thread(target=writer, args=("readings-2", False))
    second.start()
    _until(lambda: _waiters(gate) == 1)
    alarm = threading.Thread(target=writer, args=("alarm", True))
    alarm.start()
    _until(lambda: _waiters(gate) == 2)
    release.set()
    for t in (first, second, alarm):
        t.join(5)
    assert order == ["readings-1", "alarm", "readings-2"]


def test_writers_never_overlap() -> None:
    gate = WriteGate()
    inside = 0
    most = 0
    lock = threading.Lock()

    def writer(urgent: bool) -> None:
        nonlocal inside, most
        for _ in range(200):
            with gate.hold(urgent=urgent):
                with lock:
                    inside += 1
                    most = max(most, inside)
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=writer, args=(i % 3 == 0,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert most == 1
