"""The hub's uplink: every lane of the outbox to the register, exactly once in effect, in order per lane.

Each lane has its own task. The alarm lane has its own HTTPS connection, and so does the command long-poll; the
bulk lanes (events, readings, diagnostics, clips), the device list and erasures take turns on one more, so a hub
holds at most three connections to the register however busy it is (plus the heartbeat's and a renewal's, briefly),
and a smoke alarm goes out at once even while a week of readings drains. A batch is sent, the register commits it
and acknowledges the highest sequence it now holds, and
only then does the lane's cursor move. A reply lost after the register committed means a resend, which the register
recognises by ``(hub, lane, seq)``. Retries use the hub's one backoff policy (:mod:`gateway.backoff`, driven by
tenacity), honour ``Retry-After``, and always have connect and read timeouts. A reply of the wrong shape, type or
content type is a :class:`RegisterBadReply`: counted, logged and retried like an outage, never a crash. A batch the
register refuses for good is split until the refused items are isolated; those go to the dead-letter table with the
register's reason.

Every loop runs under the daemon's :class:`~gateway.supervisor.Supervisor`, so a loop that fails for a reason
nobody foresaw restarts alone. Blocking HTTP runs in threads of its own (:func:`in_thread`), never the shared
default executor: a 55 s command long-poll neither delays shutdown nor starves the store's reads.

The parts, one job each: :mod:`.client` (the HTTPS client, the hub's identity, the errors a call ends in),
:mod:`.link` (what every loop shares: status, retry policy), :mod:`.lanes` (the item lanes), :mod:`.clips` (clip
upload), :mod:`.commands` (the command poll), :mod:`.records` (device list, erasures) and :mod:`.service` (the
:class:`Uplink` that runs them all).
"""

from cloud_sync.uplink.client import (
    ClipGone,
    ClipNotReady,
    HubIdentity,
    RegisterBadReply,
    RegisterClient,
    RegisterRejected,
    RegisterUnavailable,
    ReplyStats,
    in_thread,
)
from cloud_sync.uplink.commands import CommandHandler
from cloud_sync.uplink.lanes import ITEM_LANES, split_by_bytes
from cloud_sync.uplink.link import LaneStatus, Link
from cloud_sync.uplink.records import Erasures
from cloud_sync.uplink.service import Uplink

__all__ = [
    "ITEM_LANES",
    "ClipGone",
    "ClipNotReady",
    "CommandHandler",
    "Erasures",
    "HubIdentity",
    "LaneStatus",
    "Link",
    "RegisterBadReply",
    "RegisterClient",
    "RegisterRejected",
    "RegisterUnavailable",
    "ReplyStats",
    "Uplink",
    "in_thread",
    "split_by_bytes",
]
