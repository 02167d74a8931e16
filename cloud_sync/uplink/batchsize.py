"""How many items a bulk lane sends in one request: small at first and after a failure, large while they go through.

A hub catching up after an outage sends its backlog in batches. ``batch_items`` (5,000) keeps an upload cut on a
poor home link cheap to send again, but each request carries the register's fixed costs (TLS, HTTP, a transaction,
a chunk per sensor): batches of 20,000 cost the register 0.65 of the CPU per reading of batches of 5,000 on its
ingest path alone, and a fleet's sustained ingest went from 225,000-275,000 to 295,000-444,000 readings/s
(docs/scale.md, "Catch-up batches that grow").

So a lane's batch doubles, up to ``batch_items_max``, after each full batch the register acknowledged at the first
attempt within a quarter of ``read_timeout`` (so a doubled one, taking twice as long, is still answered well within
it), and falls back to ``batch_items`` at the first failed attempt: a cut upload, a timeout, the register busy or
down. A slow ack alone does not shrink it: a register answering slowly because a region is catching up does the
least work per reading with the largest batches. The byte bound (``batch_bytes``) grows in the same proportion, up to
what the register takes in one body. Nothing else changes: a batch is still a run of the outbox in seq order, and a
batch cut short is sent again whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cloud_sync import protocol as p

GROW_WITHIN = 0.25
"""A full batch acknowledged within this share of ``read_timeout`` (from its first byte sent) lets the next double."""

MAX_BATCH_BYTES = p.MAX_INGEST_COMPRESSED_BYTES
"""The byte bound never grows past what the register takes as one (compressed) body; the estimate is uncompressed,
so a batch at this bound is far under it on the wire."""


@dataclass
class BatchSize:
    """One lane's current batch bounds, :attr:`items` and :attr:`bytes`; ``grow_within_s``: how soon a full batch
    must be acknowledged for the next to double."""

    base_items: int
    max_items: int
    base_bytes: int
    grow_within_s: float
    items: int = field(init=False)
    _failed: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.max_items = max(self.base_items, min(self.max_items, p.MAX_BATCH_ITEMS))
        self.items = self.base_items

    @property
    def bytes(self) -> int:
        """The byte bound, grown as :attr:`items` grew (``batch_bytes`` at ``batch_items``)."""
        return max(self.base_bytes, min(MAX_BATCH_BYTES, self.base_bytes * self.items // self.base_items))

    def sent(self, *, full: bool, took_s: float) -> None:
        """A page of the outbox went, every part of it acknowledged, ``took_s`` after it was first sent; ``full``: it
        held as many items as were asked for (more are waiting). Grows the next, unless an attempt failed since the
        last page (:meth:`failed`)."""
        if self._failed:
            self._failed = False
        elif full and took_s < self.grow_within_s:
            self.items = min(self.max_items, 2 * self.items)

    def failed(self) -> None:
        """An attempt failed: back to ``batch_items``, and the page it was part of does not grow the next."""
        self.items = self.base_items
        self._failed = True
