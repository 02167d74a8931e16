"""Each lane's sequence counter and synced cursor (``lanes``).

The writer thread allocates sequences and moves cursors inside a batch; what moved is written at the batch's end, in
the same transaction, and reloaded from the table after a rollback, so a failed batch leaves no trace. Other threads
only read them (a plain dict read of an int).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.model import Lane
from gateway.store import schema

_l = schema.lanes


class LaneCursors:
    def __init__(self) -> None:
        self.next: dict[str, int] = {}
        """The next sequence each lane gives out."""
        self.synced: dict[str, int] = {}
        """The highest sequence the register acknowledged, per lane."""
        self._dirty: set[str] = set()
        self._grown: set[str] = set()

    def alloc(self, lane: str, count: int) -> int:
        """``count`` sequences of ``lane``; returns the first."""
        first = self.next[lane]
        self.next[lane] = first + count
        self._dirty.add(lane)
        self._grown.add(lane)
        return first

    def sync(self, lane: str, upto: int) -> bool:
        """Moves ``lane``'s synced cursor forward to ``upto`` (never back); True if it moved."""
        if upto <= self.synced[lane]:
            return False
        self.synced[lane] = upto
        self._dirty.add(lane)
        return True

    def settle(self) -> None:
        """Every lane synced up to its last sequence."""
        for lane, nxt in self.next.items():
            self.synced[lane] = nxt - 1
            self._dirty.add(lane)

    def take_grown(self) -> set[str]:
        """The lanes that got new items since the last call (their waiters are woken after the commit)."""
        grown, self._grown = self._grown, set()
        return grown

    def write(self, conn: Connection) -> None:
        """Writes what moved in this batch (at its end, in its transaction)."""
        for lane in self._dirty:
            conn.execute(
                sa.update(_l).where(_l.c.lane == lane).values(next_seq=self.next[lane], synced_seq=self.synced[lane])
            )
        self._dirty.clear()

    def reload(self, conn: Connection) -> None:
        """What the database holds (in a transaction); a lane the table lacks starts at 1."""
        existing = {row.lane: row for row in conn.execute(sa.select(_l))}
        missing = [lane.value for lane in Lane if lane.value not in existing]
        if missing:
            conn.execute(sa.insert(_l), [{"lane": n, "next_seq": 1, "synced_seq": 0} for n in missing])
            existing = {row.lane: row for row in conn.execute(sa.select(_l))}
        self.next = {lane: int(row.next_seq) for lane, row in existing.items()}
        self.synced = {lane: int(row.synced_seq) for lane, row in existing.items()}
        self._dirty.clear()
        self._grown.clear()

    @staticmethod
    def stamp_sync(conn: Connection, lane: str, at: float) -> None:
        """When ``lane`` last synced (for ``kotihub status``)."""
        conn.execute(sa.update(_l).where(_l.c.lane == lane).values(last_sync=at))
