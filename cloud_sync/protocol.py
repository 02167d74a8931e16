"""The hub ↔ register wire contract, version 1: message schemas, limits and the ingest codec.

Both ends import this module and nothing else of each other, so it depends only on msgspec and zstandard. Lane
names are plain strings here (the hub's ``gateway.model.Lane`` has the same values) to keep the register free of
``gateway``.

Transport, in short:

* every hub endpoint is under ``/v1`` over HTTPS; the hub authenticates with an mTLS client certificate issued
  at enrollment whose subject carries its hub id (CN) and household id (O), and the SAN URI :func:`hub_uri`;
* ``POST /v1/ingest/{lane}`` takes an :class:`IngestBatch` as msgpack compressed with zstd
  (``Content-Type: application/msgpack``, ``Content-Encoding: zstd``; see :func:`encode_batch`) and answers an
  :class:`IngestAck` as JSON, sent only after the batch is committed; the readings lane also takes
  :class:`ReadingColumns` (:data:`READING_COLUMNS_CONTENT_TYPE`) from a hub the register told it does;
* everything else is JSON; errors are :class:`ErrorBody` with a 4xx/5xx status.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Final, Literal, get_args

import msgspec
import zstandard

PROTOCOL_VERSION: Final = 1
API_PREFIX: Final = "/v1"

LANES: Final[tuple[str, ...]] = ("alarm", "events", "readings", "clips", "diagnostics")
LaneName = Literal["alarm", "events", "readings", "clips", "diagnostics"]

MSGPACK_CONTENT_TYPE: Final = "application/msgpack"
ZSTD_ENCODING: Final = "zstd"
ALARM_URL_HEADER: Final = "Kotihub-Alarm-Url"
"""On the main port's ``/v1/`` replies of a register with an alarm listener (``serve --alarm-port``): where a hub
sends its alarm lane, ``https://<the host it asked for>:<port>``. A hub that ignores it sends alarms to the main
port, as before; a hub that gets none (an older register) does too."""
ALARM_PING_PATH: Final = "/v1/alarm/ping"
"""``GET`` with the hub's certificate, on the connection its alarms go over: 204, nothing read or written. It keeps
that connection open (the register holds a connection whose last request was an alarm or a ping for
``alarm_keep_alive_s``, and says so in a ``Keep-Alive: timeout=N`` header), so a smoke alarm goes without a TCP
connect and a TLS handshake first (cloud_sync.uplink.alarmroute)."""

LIVE_HEADER: Final = "Kotihub-Live"
"""On the command long-poll's answer while a member has the household's app open: the seconds it stays so (a
number, at most :data:`MAX_LIVE_S`). Meanwhile the hub sends readings within seconds instead of lingering. A hub
says what it last heard with ``live=0|1`` on the poll, and the register answers at once when that is no longer so
(cloud_sync.register.watching); a hub that does not say is never answered early."""
MAX_LIVE_S: Final = 3600.0

# Limits the register enforces; the hub sizes its batches to stay under them.
MAX_BATCH_ITEMS: Final = 20_000
MAX_INGEST_COMPRESSED_BYTES: Final = 16 * 1024 * 1024
MAX_INGEST_DECOMPRESSED_BYTES: Final = 64 * 1024 * 1024
"""Decompression-bomb limit: a batch that inflates beyond this is refused (413)."""
MAX_JSON_BODY_BYTES: Final = 1024 * 1024
MAX_CLIP_CHUNK_BYTES: Final = 8 * 1024 * 1024
MAX_CLIP_SIZE_BYTES: Final = 2 * 1024 * 1024 * 1024
MAX_COMMAND_WAIT_S: Final = 55.0
"""The longest command long-poll (``wait``) this register accepts, said in :data:`WAIT_MAX_HEADER` on each answer.
Under the 60 s idle timeout common to proxies and load balancers; an idle hub's long-poll is most of what it costs
the register, so the longer the better."""
LEGACY_COMMAND_WAIT_S: Final = 30.0
"""What a register that does not send :data:`WAIT_MAX_HEADER` accepts (releases before it): a hub waits no longer
until it is told more."""
WAIT_MAX_HEADER: Final = "Kotihub-Wait-Max"
MAX_HELD_COMMANDS: Final = 100
"""How many command ids a hub may name in ``GET /v1/commands?held=...`` (those it runs now); more is 422."""
COMMAND_ID_PATTERN: Final = "^cmd_[0-9a-f]{1,60}$"

_ID_RULE: Final = msgspec.Meta(min_length=1, max_length=128, pattern="^[^\x00-\x1f\x7f]+\\Z")
"""Device and hub ids (``driver:native-id``): any text without control characters."""
_NAME_RULE: Final = msgspec.Meta(min_length=1, max_length=32, pattern="^[a-z0-9_]+\\Z")
"""Quantity and event-kind names: lower-case identifiers, as in ``gateway.model``."""
_CHANNEL_RULE: Final = msgspec.Meta(max_length=16, pattern="^[A-Za-z0-9_.-]*\\Z")
_Id = Annotated[str, _ID_RULE]
_Name = Annotated[str, _NAME_RULE]
_Channel = Annotated[str, _CHANNEL_RULE]
_Text = Annotated[str, msgspec.Meta(max_length=256, pattern="^[^\x00-\x1f]*\\Z")]
_Finite = Annotated[float, msgspec.Meta(ge=-1e300, le=1e300)]
"""Rejects NaN and infinities, which no database column should hold."""
_Seq = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
_Ts = Annotated[float, msgspec.Meta(ge=0.0, le=2.0**40)]
_Sha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}\\Z")]
_ClipId = Annotated[str, msgspec.Meta(pattern="^(?=.*[A-Za-z0-9])[A-Za-z0-9_.-]{1,128}\\Z")]
"""Safe as a file name: at least one letter or digit, so never ``.`` or ``..``."""
_AgeRecipient = Annotated[str, msgspec.Meta(pattern="^age1[02-9ac-hj-np-z]{58}\\Z")]
_Scalar = Annotated[str, msgspec.Meta(max_length=1024)] | _Finite | int | bool
_Attrs = Annotated[dict[Annotated[str, msgspec.Meta(max_length=64)], _Scalar], msgspec.Meta(max_length=64)]


class ProtocolError(ValueError):
    """A message does not follow this contract; ``status`` is the HTTP status the register answers with."""

    def __init__(self, message: str, *, status: int = 400, code: str = "bad_request") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


# --------------------------------------------------------------------------------------------------- identity


_HUB_URI = re.compile(r"^urn:kotihub:household:([A-Za-z0-9_-]{1,64}):hub:([A-Za-z0-9_-]{1,64})$")


def hub_uri(household_id: str, hub_id: str) -> str:
    """The SAN URI the register puts in a hub certificate."""
    return f"urn:kotihub:household:{household_id}:hub:{hub_id}"


def parse_hub_uri(uri: str) -> tuple[str, str] | None:
    """``(household_id, hub_id)`` from a SAN URI made by :func:`hub_uri`, or None if it is not one."""
    m = _HUB_URI.fullmatch(uri)
    return (m.group(1), m.group(2)) if m else None


# -------------------------------------------------------------------------------------------------- enrollment


class EnrollRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/enroll`` (no client certificate): a one-time token and the hub's CSR (PEM, EC P-256)."""

    token: Annotated[str, msgspec.Meta(min_length=16, max_length=256)]
    csr_pem: Annotated[str, msgspec.Meta(min_length=64, max_length=16_384)]
    hub_name: Annotated[str, msgspec.Meta(max_length=128, pattern="^[^\x00-\x1f]*\\Z")] = ""


class SignedMemberList(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One version of the household's signed member list (see :mod:`cloud_sync.memberlist` for its bytes and
    rules): the exact body bytes in base64, the signing member's id and the Ed25519 signature in hex."""

    body: Annotated[str, msgspec.Meta(min_length=1, max_length=24 * 1024)]
    signer: Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_-]{1,64}\\Z")]
    sig: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{128}\\Z")]


class MemberLogEntry(msgspec.Struct, frozen=True):
    """A version as the register's append-only log holds it: ``digest`` is the SHA-256 of the body, ``prev`` the
    digest of the version before (empty for version 1), so a member can check the whole chain."""

    version: int
    digest: str
    prev: str
    signed: SignedMemberList
    created_at: float


class MemberRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST .../member-requests`` (operator) — a proposal that a member must sign into the list to take effect."""

    member_id: Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_-]{1,64}\\Z")]
    recipient: _AgeRecipient
    ed25519: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}\\Z")]
    note: Annotated[str, msgspec.Meta(max_length=256, pattern="^[^\x00-\x1f]*\\Z")] = ""


class MemberRequestRecord(msgspec.Struct, frozen=True):
    id: str
    member_id: str
    recipient: str
    ed25519: str
    note: str
    requested_by: str
    created_at: float


class RenewRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/renew`` (client certificate): a CSR for a fresh key, before the current certificate expires."""

    csr_pem: Annotated[str, msgspec.Meta(min_length=64, max_length=16_384)]


class RenewResponse(msgspec.Struct, frozen=True):
    cert_pem: str
    ca_pem: str
    not_after: float


class EnrollResponse(msgspec.Struct, frozen=True):
    hub_id: str
    household_id: str
    cert_pem: str
    ca_pem: str
    member_log: list[SignedMemberList]
    """Every version of the household's signed member list, oldest first; the hub trusts none of it until it is
    anchored in the pairing code confirmed at installation."""


# ------------------------------------------------------------------------------------------------------ ingest


class Item(msgspec.Struct, frozen=True):
    """One outbox item; ``(hub, lane, seq)`` identifies it forever, so a resend is recognised as a duplicate."""

    seq: _Seq
    ts: _Ts
    body: dict[str, Any]


INGEST_HEADERS: Final = {"Content-Type": MSGPACK_CONTENT_TYPE, "Content-Encoding": ZSTD_ENCODING}


class IngestBatch(msgspec.Struct, frozen=True):
    """What the hub sends; ``items`` in strictly ascending ``seq``."""

    hub_id: _Id
    lane: LaneName
    items: list[Item]


class IngestAck(msgspec.Struct, frozen=True):
    """Sent only after commit. ``acked_seq`` is the highest seq of the batch now durably held by the register."""

    lane: str
    acked_seq: int
    stored: int
    duplicates: int


# Typed bodies: the register decodes a batch straight into these, so validation is msgspec's typed decode.


class ReadingBody(
    msgspec.Struct,
    frozen=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
    gc=False,  # holds no containers
):
    """A reading. Its strings are decoded unchecked and then checked once per *distinct* value of the batch by
    :func:`decode_batch` (:data:`READING_STRING_RULES`, the same rules as ``_Id``, ``_Name`` and ``_Channel``): a
    batch of 5,000 readings has a few dozen distinct ones, and a regex per item was most of the register's decode."""

    device_id: str
    quantity: str
    value: _Finite
    ts: _Ts
    channel: str = ""
    """Which of several values of one quantity from one device (``1``, ``2``); absent from hubs that predate it."""


READING_STRING_RULES: Final[dict[str, msgspec.Meta]] = {
    "device_id": _ID_RULE,
    "quantity": _NAME_RULE,
    "channel": _CHANNEL_RULE,
}


class EventBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Events and alarms (smoke-detector states ride the alarm lane)."""

    device_id: _Id
    kind: _Name
    state: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern="^[\x21-\x7e]+\\Z")]
    ts: _Ts
    attrs: _Attrs = msgspec.field(default_factory=dict)


class ClipRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A clip's index record (clips lane, and the body of ``PUT /v1/clips/{clip_id}``); ``sha256`` of the
    ciphertext, so the register checks an upload without being able to read it."""

    clip_id: _ClipId
    device_id: _Id
    started: _Ts
    duration_s: Annotated[float, msgspec.Meta(ge=0.0, le=86_400.0)]
    size: Annotated[int, msgspec.Meta(ge=0, le=MAX_CLIP_SIZE_BYTES)]
    sha256: _Sha256
    reason: Annotated[str, msgspec.Meta(max_length=64, pattern="^[\x21-\x7e]*\\Z")] = ""


_Key = Annotated[str, msgspec.Meta(max_length=64)]
_DiagValue = (
    _Scalar
    | None
    | Annotated[list[_Scalar], msgspec.Meta(max_length=256)]
    | Annotated[dict[_Key, _Scalar], msgspec.Meta(max_length=64)]
)
DiagnosticsBody = Annotated[dict[_Key, _DiagValue], msgspec.Meta(max_length=256)]
"""Free-form but bounded: up to 256 keys of scalars, short lists or flat maps; no deeper nesting."""


class ReadingItem(msgspec.Struct, frozen=True, gc=False):
    seq: _Seq
    ts: _Ts
    body: ReadingBody


class EventItem(msgspec.Struct, frozen=True):
    seq: _Seq
    ts: _Ts
    body: EventBody


class ClipItem(msgspec.Struct, frozen=True):
    seq: _Seq
    ts: _Ts
    body: ClipRecord


class DiagnosticsItem(msgspec.Struct, frozen=True):
    seq: _Seq
    ts: _Ts
    body: DiagnosticsBody


class ReadingsBatch(msgspec.Struct, frozen=True):
    hub_id: _Id
    lane: LaneName
    items: Annotated[list[ReadingItem], msgspec.Meta(max_length=MAX_BATCH_ITEMS)]


class EventsBatch(msgspec.Struct, frozen=True):
    hub_id: _Id
    lane: LaneName
    items: Annotated[list[EventItem], msgspec.Meta(max_length=MAX_BATCH_ITEMS)]


class ClipsBatch(msgspec.Struct, frozen=True):
    hub_id: _Id
    lane: LaneName
    items: Annotated[list[ClipItem], msgspec.Meta(max_length=MAX_BATCH_ITEMS)]


class DiagnosticsBatch(msgspec.Struct, frozen=True):
    hub_id: _Id
    lane: LaneName
    items: Annotated[list[DiagnosticsItem], msgspec.Meta(max_length=MAX_BATCH_ITEMS)]


class SensorReadings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):  # numbers only: no cycles
    """One sensor's readings of a :class:`ReadingColumns` batch, in ascending seq: ``seqs[i]``, ``ts[i]`` and
    ``values[i]`` are one reading (its outbox seq, reading time and value). The strings follow
    :data:`READING_STRING_RULES`, checked once per distinct combination as in a :class:`ReadingsBatch`. The schema
    as the hub sends it; :func:`decode_columns` checks the arrays' lengths before it decodes them with these types."""

    device_id: str
    quantity: str
    channel: str
    seqs: Annotated[list[_Seq], msgspec.Meta(min_length=1, max_length=MAX_BATCH_ITEMS)]
    ts: Annotated[list[_Ts], msgspec.Meta(max_length=MAX_BATCH_ITEMS)]
    values: Annotated[list[_Finite], msgspec.Meta(max_length=MAX_BATCH_ITEMS)]


class ReadingColumns(msgspec.Struct, frozen=True):
    """A readings batch as columns (``Content-Type`` :data:`READING_COLUMNS_CONTENT_TYPE`, zstd as every batch):
    each sensor's readings as three arrays, sent by a hub once the register has said it takes them
    (:data:`READING_COLUMNS_HEADER`). Holds what a :class:`ReadingsBatch` holds but the outbox time of each item,
    which the register does not keep for readings. The register decodes the arrays in C and packs a sensor's readings
    into a chunk without a Python step per reading (docs/scale.md, "Readings as columns")."""

    hub_id: _Id
    lane: LaneName
    sensors: Annotated[list[SensorReadings], msgspec.Meta(max_length=MAX_BATCH_ITEMS)]

    def items(self) -> list[ReadingItem]:
        """The readings as the items of a :class:`ReadingsBatch`, in ascending seq (an item's outbox time is its
        reading time: not sent, and not kept for readings)."""
        out = [
            ReadingItem(seq, ts, ReadingBody(s.device_id, s.quantity, value, ts, s.channel))
            for s in self.sensors
            for seq, ts, value in zip(s.seqs, s.ts, s.values, strict=True)
        ]
        out.sort(key=_SEQ)
        return out

    def as_batch(self) -> ReadingsBatch:
        return ReadingsBatch(hub_id=self.hub_id, lane=self.lane, items=self.items())

    @property
    def last_seq(self) -> int:
        return max((s.seqs[-1] for s in self.sensors), default=-1)

    def __len__(self) -> int:
        return sum(len(s.seqs) for s in self.sensors)


COLUMNS_FROM: Final = 5
"""A hub sends a readings batch as columns when a sensor has at least this many readings in it (a hub catching up):
a steady batch, one reading a sensor, costs the register less as items (bench/chunk_ingest.py)."""


def columns_pay(columns: ReadingColumns) -> bool:
    return any(len(s.seqs) >= COLUMNS_FROM for s in columns.sensors)


READING_COLUMNS_CONTENT_TYPE: Final = "application/vnd.kotihub.reading-columns+msgpack"
READING_COLUMNS_HEADER: Final = "Kotihub-Reading-Columns"
"""On an ingest ack of a register that takes :class:`ReadingColumns` on the readings lane: ``1``. A hub sends its
readings as columns only after it has heard this (a register before it answers 415), and as items otherwise."""

TypedBatch = ReadingsBatch | EventsBatch | ClipsBatch | DiagnosticsBatch

_BATCH_TYPES: Final[dict[str, type[TypedBatch]]] = {
    "alarm": EventsBatch,
    "events": EventsBatch,
    "readings": ReadingsBatch,
    "clips": ClipsBatch,
    "diagnostics": DiagnosticsBatch,
}
_DECODERS: Final[dict[str, msgspec.msgpack.Decoder[Any]]] = {
    lane: msgspec.msgpack.Decoder(t) for lane, t in _BATCH_TYPES.items()
}
_ENCODER: Final = msgspec.msgpack.Encoder()


def encode_batch(batch: IngestBatch | ReadingColumns, *, level: int = 3) -> bytes:
    """The ingest request body: msgpack of ``batch``, zstd-compressed (with the content size in the frame)."""
    return zstandard.ZstdCompressor(level=level).compress(_ENCODER.encode(batch))


def reading_columns(hub_id: str, items: Sequence[Item]) -> ReadingColumns:
    """A readings batch's items (bodies as :class:`ReadingBody` fields) as columns, each sensor's in the items'
    order (the hub's side of :class:`ReadingColumns`)."""
    groups: dict[tuple[str, str, str], tuple[list[int], list[float], list[float]]] = {}
    for it in items:
        b = it.body
        key = (b["device_id"], b["quantity"], b.get("channel", ""))
        cols = groups.get(key)
        if cols is None:
            cols = groups[key] = ([], [], [])
        cols[0].append(it.seq)
        cols[1].append(b["ts"])
        cols[2].append(b["value"])
    return ReadingColumns(
        hub_id=hub_id,
        lane="readings",
        sensors=[SensorReadings(d, q, c, seqs, ts, values) for (d, q, c), (seqs, ts, values) in groups.items()],
    )


def decompress_bounded(data: bytes, limit: int = MAX_INGEST_DECOMPRESSED_BYTES) -> bytes:
    """Inflate a zstd body, refusing (413) anything that would exceed ``limit`` bytes — whatever the frame
    header claims — so a decompression bomb costs at most ``limit`` bytes of memory. A frame that declares its
    size (as :func:`encode_batch` writes) is inflated into a buffer of exactly that size; otherwise the buffer
    grows, which may briefly need twice the output (see :func:`inflate_cost`)."""
    declared = declared_size(data)
    exact = 0 <= declared <= limit
    buf = bytearray(declared + 1) if exact else bytearray()
    size = 0
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
        if exact:
            with memoryview(buf) as view:
                while size <= declared and (got := reader.readinto(view[size:])):
                    size += got
            del buf[size:]
        else:
            while len(buf) <= limit and (chunk := reader.read(min(1 << 20, limit + 1 - len(buf)))):
                buf += chunk
            size = len(buf)
    except zstandard.ZstdError as exc:
        raise ProtocolError(f"body is not valid zstd: {exc}", code="bad_encoding") from exc
    if size > limit or (exact and size > declared):
        raise ProtocolError(f"decompressed body exceeds {min(limit, size - 1)} bytes", status=413, code="too_large")
    return buf  # type: ignore[return-value]  # a bytearray serves every reader of bytes here (msgspec, len)


def declared_size(data: bytes) -> int:
    """The content size the first zstd frame declares, or -1 if it declares none (or is not zstd)."""
    try:
        return int(zstandard.frame_content_size(data))
    except zstandard.ZstdError:
        return -1


def inflate_cost(data: bytes, limit: int = MAX_INGEST_DECOMPRESSED_BYTES) -> int:
    """Bytes of memory :func:`decompress_bounded` may need for ``data`` at most."""
    declared = declared_size(data)
    return declared + 1 if 0 <= declared <= limit else 2 * (limit + 1)


def decode_batch(lane: str, payload: bytes) -> TypedBatch:
    """Decode an uncompressed msgpack batch for ``lane`` into its typed form, or raise :class:`ProtocolError`
    (422) naming the offending field. Checks that the batch's lane matches and seqs strictly ascend."""
    decoder = _DECODERS.get(lane)
    if decoder is None:
        raise ProtocolError(f"unknown lane {lane!r}; expected one of {', '.join(LANES)}", status=404, code="no_lane")
    batch: TypedBatch = _decoded(decoder, payload, lane)
    if isinstance(batch, ReadingsBatch):
        _check_reading_strings(batch.items)
    items: Sequence[ReadingItem | EventItem | ClipItem | DiagnosticsItem] = batch.items
    seqs = list(map(_SEQ, items))
    if seqs == sorted(set(seqs)):  # strictly ascending, checked in C; the loop below only names the culprit
        return batch
    prev = -1
    for i, item in enumerate(items):
        if item.seq <= prev:
            raise ProtocolError(
                f"items[{i}].seq {item.seq} is not greater than the previous seq {prev}", status=422, code="invalid"
            )
        prev = item.seq
    raise AssertionError("unreachable: the seqs were not strictly ascending")


class _SensorRaw(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A :class:`SensorReadings` with its arrays not yet decoded (their lengths are checked first)."""

    device_id: str
    quantity: str
    channel: str
    seqs: msgspec.Raw
    ts: msgspec.Raw
    values: msgspec.Raw


class _ColumnsRaw(msgspec.Struct, frozen=True):
    hub_id: _Id
    lane: LaneName
    sensors: Annotated[list[_SensorRaw], msgspec.Meta(max_length=MAX_BATCH_ITEMS)]


_COLUMNS_DECODER: Final = msgspec.msgpack.Decoder(_ColumnsRaw)
_ARRAY_DECODERS: Final[dict[str, msgspec.msgpack.Decoder[Any]]] = {
    "seqs": msgspec.msgpack.Decoder(list[_Seq]),
    "ts": msgspec.msgpack.Decoder(list[_Ts]),
    "values": msgspec.msgpack.Decoder(list[_Finite]),
}


def _array_length(raw: bytes) -> int:
    """The element count a msgpack array's header says, or -1 if ``raw`` is not an array."""
    head = raw[0] if raw else 0
    if 0x90 <= head <= 0x9F:
        return head & 0x0F
    if head == 0xDC and len(raw) >= 3:
        return int.from_bytes(raw[1:3], "big")
    if head == 0xDD and len(raw) >= 5:
        return int.from_bytes(raw[1:5], "big")
    return -1


def decode_columns(lane: str, payload: bytes) -> ReadingColumns:
    """Decode an uncompressed :class:`ReadingColumns` batch, or raise :class:`ProtocolError` (422 naming the
    offending field, as :func:`decode_batch`): the readings lane only; each sensor's three arrays of one length and
    its seqs strictly ascending; no seq twice in the batch; at most :data:`MAX_BATCH_ITEMS` readings.

    The arrays' lengths are read from their headers and checked before any is decoded, so a body claiming more
    readings than a batch may hold costs no memory for them (a 64 MiB body of floats would be some 7 million Python
    objects)."""
    if lane != "readings":
        raise ProtocolError(
            f"only the readings lane takes {READING_COLUMNS_CONTENT_TYPE}", status=415, code="content_type"
        )
    raw: _ColumnsRaw = _decoded(_COLUMNS_DECODER, payload, lane)
    total = 0
    for i, s in enumerate(raw.sensors):
        lengths = [_array_length(bytes(memoryview(getattr(s, field))[:5])) for field in _ARRAY_DECODERS]
        if min(lengths) < 0 or len(set(lengths)) != 1 or not lengths[0]:
            raise ProtocolError(
                f"invalid batch: sensors[{i}] has {lengths[0]} seqs, {lengths[1]} ts and {lengths[2]} values"
                " (-1: not an array); each must have as many, at least one",
                status=422,
                code="invalid",
            )
        total += lengths[0]
    if total > MAX_BATCH_ITEMS:
        raise ProtocolError(f"invalid batch: {total} readings, more than {MAX_BATCH_ITEMS}", status=422, code="invalid")
    sensors = []
    for i, s in enumerate(raw.sensors):
        arrays = []
        for field, decoder in _ARRAY_DECODERS.items():
            try:
                arrays.append(decoder.decode(getattr(s, field)))
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                where = str(exc).replace("`$", f"`$.sensors[{i}].{field}")
                raise ProtocolError(f"invalid batch: {where}", status=422, code="invalid") from exc
        seqs, ts, values = arrays
        if seqs != sorted(set(seqs)):
            raise ProtocolError(f"invalid batch: sensors[{i}].seqs do not strictly ascend", status=422, code="invalid")
        sensors.append(SensorReadings(s.device_id, s.quantity, s.channel, seqs, ts, values))
    if len(set().union(*(s.seqs for s in sensors))) != total:
        raise ProtocolError("invalid batch: a seq appears under two sensors", status=422, code="invalid")
    _check_strings([(s.device_id, s.quantity, s.channel) for s in sensors], lambda i, field: f"$.sensors[{i}].{field}")
    return ReadingColumns(hub_id=raw.hub_id, lane=raw.lane, sensors=sensors)


def _decoded(decoder: msgspec.msgpack.Decoder[Any], payload: bytes, lane: str) -> Any:
    """``payload`` decoded, for the URL's ``lane``, or :class:`ProtocolError`: 422 naming the field msgspec refused,
    or a batch saying another lane; 400 for bytes that are not msgpack."""
    try:
        batch = decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"invalid batch: {exc}", status=422, code="invalid") from exc
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"body is not msgpack: {exc}", status=400, code="bad_encoding") from exc
    if batch.lane != lane:
        raise ProtocolError(f"batch lane {batch.lane!r} does not match URL lane {lane!r}", status=422, code="invalid")
    return batch


_RULE_CHECKS: Final[list[tuple[str, re.Pattern[str], int, int]]] = [
    (field, re.compile(str(rule.pattern)), rule.min_length or 0, rule.max_length or 0)
    for field, rule in READING_STRING_RULES.items()
]
_SEQ: Final = operator.attrgetter("seq")
_READING_STRINGS: Final = operator.attrgetter(*(f"body.{field}" for field in READING_STRING_RULES))


_ACCEPTED_MAX: Final = 65_536
"""Combinations of reading strings remembered as accepted (a hub's few dozen sensors each, over the hubs a register
process serves), so a steady hub's next batch checks none again. Cleared whole when full: a bound (some 15 MB of
short ids), not an LRU."""
_accepted: set[tuple[str, ...]] = set()


def _check_reading_strings(items: list[ReadingItem]) -> None:
    """Applies :data:`READING_STRING_RULES` to each distinct combination of the batch's strings once (one C-level
    pass collects them), and not again to a combination an earlier batch passed; the first item holding a refused
    one is named, as msgspec names a field (``$.items[i].body.device_id``)."""
    _check_strings(list(map(_READING_STRINGS, items)), lambda i, field: f"$.items[{i}].body.{field}")


def _check_strings(combos: list[tuple[str, ...]], where: Callable[[int, str], str]) -> None:
    """:func:`_check_reading_strings` over ``combos`` (one per reading or sensor); ``where(i, field)`` names the
    path of the ``i``-th one's field."""
    fresh = set(combos) - _accepted
    for strings in fresh:
        for k, ((field, pattern, lo, hi), value) in enumerate(zip(_RULE_CHECKS, strings, strict=True)):
            if lo <= len(value) <= hi and pattern.match(value):
                continue
            i = next(i for i, combo in enumerate(combos) if combo[k] == value)
            raise ProtocolError(
                f"invalid batch: {field} {value!r} is not {lo} to {hi} characters matching {pattern.pattern!r}"
                f" - at `{where(i, field)}`",
                status=422,
                code="invalid",
            )
    if len(_accepted) + len(fresh) > _ACCEPTED_MAX:
        _accepted.clear()
    _accepted.update(fresh)  # only once every one passed: a refused batch teaches nothing


# ----------------------------------------------------------------------------------------------------- devices


class DeviceRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/devices`` takes a JSON list of these (at most :data:`MAX_DEVICES` items)."""

    device_id: _Id
    kind: _Name
    name: _Text = ""
    model: _Text = ""
    room: _Text = ""


MAX_DEVICES: Final = 1000


class DevicesAck(msgspec.Struct, frozen=True):
    upserted: int


# ------------------------------------------------------------------------------------------------------- clips


class ClipUploadStatus(msgspec.Struct, frozen=True):
    """``PUT``/``PATCH /v1/clips/{id}`` and ``GET .../status``: bytes held so far and whether verified."""

    offset: int
    complete: bool = False
    sha256: str = ""
    """Once complete: the SHA-256 the register verified over the bytes it holds (the hub checks it is its own)."""


class ClipAbandoned(msgspec.Struct, frozen=True):
    """``DELETE /v1/clips/{id}``: the hub no longer has the clip (erased or expired while it uploaded)."""

    abandoned: bool
    """True if a partial upload was removed; false if there was none, or the clip was already complete."""


CLIP_CONTENT_TYPE: Final = "application/octet-stream"


MAX_EXPORT_SIZE_BYTES: Final = 4 * 1024 * 1024 * 1024


class ExportRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``PUT /v1/exports/{command_id}``: a hub's sealed copy of the household's data (the answer to an ``export``
    command), uploaded like a clip (``PATCH`` at an offset, replies :class:`ClipUploadStatus`). ``sha256`` is of
    the age ciphertext: the register checks the upload without being able to read it."""

    size: Annotated[int, msgspec.Meta(ge=0, le=MAX_EXPORT_SIZE_BYTES)]
    sha256: _Sha256


# --------------------------------------------------------------------------------------------------- heartbeat


MAX_HEARTBEAT_BYTES: Final = 16 * 1024
_DriverName = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern="^[a-z0-9_]+\\Z")]
_Count = Annotated[int, msgspec.Meta(ge=0, le=2**62)]


class LaneHealth(msgspec.Struct, frozen=True):
    """One outbox lane as the hub sees it: the newest seq it holds (0 when none yet), the highest the register
    acknowledged, and how many items wait."""

    newest_seq: _Count
    acked_seq: _Count
    pending: _Count


class DriverStatus(msgspec.Struct, frozen=True):
    state: Annotated[str, msgspec.Meta(max_length=16, pattern="^[a-z_]*\\Z")]
    restarts: _Count = 0


class AlarmPathHealth(msgspec.Struct, frozen=True):
    """The alarm lane's connection as the hub sees it (``cloud_sync.uplink.alarmroute``): whether it is held open,
    pings since the hub started and how many failed, whether the last one failed, the last answered ping's round trip
    (what an alarm on the kept connection pays on top of the register's own work), and the alarm listener's state
    (``none``: the register announced none; ``resting``: it failed and alarms go to the main URL for now)."""

    kept_open: bool = False
    pings: _Count = 0
    ping_failures: _Count = 0
    failing: bool = False
    ping_ms: Annotated[float, msgspec.Meta(ge=0.0, le=600_000.0)] | None = None
    listener: Literal["none", "serving", "resting"] = "none"


class Heartbeat(msgspec.Struct, frozen=True):
    """``PUT /v1/heartbeat`` (client certificate, JSON, at most :data:`MAX_HEARTBEAT_BYTES`): the hub's health on a
    schedule; the register keeps only the latest per hub. No personal data: no device ids, names or addresses.

    Unknown fields are ignored rather than refused, so a newer hub still reports to an older register."""

    version: Annotated[str, msgspec.Meta(max_length=64, pattern="^[\x21-\x7e]*\\Z")]
    uptime_s: Annotated[float, msgspec.Meta(ge=0.0, le=2.0**40)]
    disk_free_bytes: _Count
    disk_total_bytes: _Count
    store_bytes: _Count
    written_bytes_per_day: _Count | None = None
    """Bytes written to the hub's storage per day (SD-card wear), from ``/sys/block`` or ``/proc/self/io``."""
    written_source: Literal["block", "process", ""] = ""
    drivers: Annotated[dict[_DriverName, DriverStatus], msgspec.Meta(max_length=32)] = msgspec.field(
        default_factory=dict
    )
    lanes: dict[LaneName, LaneHealth] = msgspec.field(default_factory=dict)
    alarm_path: AlarmPathHealth | None = None
    """None from a hub that predates it, or before its alarm lane made its connection."""


# ---------------------------------------------------------------------------------------------------- commands


# No ``config`` kind: a new configuration reaches a hub through its updater, which pulls pushes on its own timer
# (docs/updates.md, "Remote configuration"); the daemon has no business rewriting kotihub.toml or restarting itself.
CommandKind = Literal["erase", "export", "restrict", "member_keys", "alarm_ack", "rename"]
COMMAND_KINDS: Final[tuple[str, ...]] = get_args(CommandKind)


class Command(msgspec.Struct, frozen=True):
    """A command queued for a hub; ``GET /v1/commands?wait=25`` returns a list of these."""

    id: str
    kind: CommandKind
    args: dict[str, Any]
    issued_at: float


class CommandResult(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/commands/{id}/result``."""

    status: Literal["done", "failed"]
    detail: Annotated[dict[str, Any], msgspec.Meta(max_length=256)] = msgspec.field(default_factory=dict)


class CommandRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/households/{h}/commands`` (household app / admin): queue a command for the household's hubs
    (or one hub)."""

    kind: CommandKind
    args: Annotated[dict[str, Any], msgspec.Meta(max_length=64)] = msgspec.field(default_factory=dict)
    hub_id: str | None = None


# ---------------------------------------------------------------------------------------------------- erasure


ERASURE_SCOPES: Final = ("all", "device", "category")
ERASURE_CATEGORIES: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    # What each category of ``kotihub erase --category`` covers, as lanes and event kinds: the register follows
    # this, and the hub's ``gateway.privacy`` agrees (tests/unit/test_privacy.py). ``readings`` is the whole lane.
    "sensors": {"lanes": ("readings",), "event_kinds": ("water_leak", "availability")},
    "alarms": {"lanes": ("alarm",), "event_kinds": ()},
    "camera": {"lanes": ("clips",), "event_kinds": ()},
    "presence": {"lanes": (), "event_kinds": ("motion", "contact")},
    "diagnostics": {"lanes": ("diagnostics",), "event_kinds": ()},
}


class ErasureRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/erasures`` (client certificate): an erasure asked on the hub, carried to the register. The hub
    has already erased its own copy; ``hub_receipt`` is its signed receipt. Resending the same ``receipt_id``
    returns the register's first receipt again. The answer is the register's signed receipt (JSON)."""

    receipt_id: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{32}\\Z")]
    scope: Literal["all", "device", "category"]
    requested_at: _Ts
    hub_receipt: Annotated[dict[str, Any], msgspec.Meta(max_length=16)]
    target: Annotated[str, msgspec.Meta(max_length=128, pattern="^[^\x00-\x1f\x7f]*\\Z")] = ""


# ------------------------------------------------------------------------------------------- household & admin


class MemberCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern="^[^\x00-\x1f]+\\Z")]
    recipient: _AgeRecipient
    email: Annotated[str, msgspec.Meta(max_length=254, pattern="^([^@\\s]+@[^@\\s]+)?\\Z")] = ""
    phone: Annotated[str, msgspec.Meta(max_length=32, pattern="^[+0-9 ()-]*\\Z")] = ""


class MemberUpdate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Rectification of a member's details; fields left out stay as they are."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern="^[^\x00-\x1f]+\\Z")] | None = None
    email: Annotated[str, msgspec.Meta(max_length=254, pattern="^([^@\\s]+@[^@\\s]+)?\\Z")] | None = None
    phone: Annotated[str, msgspec.Meta(max_length=32, pattern="^[+0-9 ()-]*\\Z")] | None = None


class Member(msgspec.Struct, frozen=True):
    member_id: str
    name: str
    recipient: str
    email: str = ""
    phone: str = ""


class ConsentUpdate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Marketing consent and direct-marketing ban of the household (privacy notice)."""

    marketing: bool
    marketing_ban: bool = False


class Consent(msgspec.Struct, frozen=True):
    marketing: bool
    marketing_ban: bool
    updated_at: float


class ErrorBody(msgspec.Struct, frozen=True):
    """Every error reply: a stable machine code and a sentence saying exactly what was wrong."""

    error: str
    detail: str


class Health(msgspec.Struct, frozen=True):
    status: str
    version: int = PROTOCOL_VERSION
