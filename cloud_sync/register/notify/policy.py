"""A household's escalation policy: what is sent, to whom and when, with the defaults a smoke service ships.

Smoke, by default: at once an SMS to every member and an e-mail; after 60 s unacknowledged, voice calls to the
members in their call order (45 s apart); the calls again every 5 minutes, three rounds in all; after 10 minutes
unacknowledged the alarm shows on the operator's alarm desk. Health alerts: an SMS and an e-mail, held back during
quiet hours (never smoke). Every number is the household's to change.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

Channel = Literal["sms", "voice", "email"]
CHANNELS: Final = ("sms", "voice", "email")

HEALTH_CATEGORIES: Final[tuple[str, ...]] = (
    "hub_silent",
    "device_offline",
    "battery_low",
    "detector_fault",
    "tamper",
    "test",
    "end_of_life",
    "storage_full",
)
CATEGORIES: Final[tuple[str, ...]] = ("smoke", *HEALTH_CATEGORIES)

_Seconds = Annotated[int, msgspec.Meta(ge=0, le=86_400)]
_HHMM = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]\Z")]


class Step(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One escalation step: ``channels`` to the members ``after_s`` seconds after the alarm.

    ``in_order``: one member after another, ``gap_s`` apart, in their call order (voice calls); otherwise every
    member at once. ``repeat`` more rounds of the step follow, ``repeat_every_s`` apart.
    """

    after_s: _Seconds
    channels: Annotated[tuple[Channel, ...], msgspec.Meta(min_length=1, max_length=3)]
    in_order: bool = False
    gap_s: _Seconds = 45
    repeat: Annotated[int, msgspec.Meta(ge=0, le=10)] = 0
    repeat_every_s: Annotated[int, msgspec.Meta(ge=30, le=86_400)] = 300


MIN_HUB_SILENT_S: Final = 300
"""The shortest silence a household's policy may ask to be told of (``Policy.hub_silent_after_s``)."""


class Policy(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    smoke: Annotated[tuple[Step, ...], msgspec.Meta(min_length=1, max_length=10)] = (
        Step(after_s=0, channels=("sms", "email")),
        Step(after_s=60, channels=("voice",), in_order=True, gap_s=45, repeat=2, repeat_every_s=300),
    )
    desk_after_s: Annotated[int, msgspec.Meta(ge=0, le=86_400)] = 600
    """Unacknowledged this long, a smoke alarm shows on the operator's alarm desk."""
    health: Annotated[tuple[Channel, ...], msgspec.Meta(max_length=3)] = ("sms", "email")
    quiet_start: _HHMM = "22:00"
    quiet_end: _HHMM = "07:00"
    """Health alerts raised in quiet hours wait for their end; smoke never waits."""
    timezone: str = "Europe/Helsinki"
    restricted: tuple[str, ...] = ()
    """Categories the household asked not to be told about (nothing is sent about them)."""
    offline_debounce_s: Annotated[dict[str, int], msgspec.Meta(max_length=16)] = msgspec.field(
        default_factory=lambda: {"smoke_detector": 600, "gateway": 300, "other": 1800}
    )
    """A device offline this long (per kind) before anyone is told, so a flapping device pages nobody."""
    hub_silent_after_s: Annotated[int, msgspec.Meta(ge=MIN_HUB_SILENT_S, le=7 * 86_400)] = 1800
    battery_low_percent: Annotated[float, msgspec.Meta(ge=0, le=50)] = 15.0
    """A battery reading below this (%) raises ``battery_low``, at most once per device a week."""

    def __post_init__(self) -> None:
        unknown = set(self.restricted) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown categories in restricted: {', '.join(sorted(unknown))}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r}") from None

    def offline_debounce(self, kind: str) -> int:
        return self.offline_debounce_s.get(kind, self.offline_debounce_s.get("other", 1800))

    def after_quiet_hours(self, t: float) -> float:
        """``t``, or the end of the quiet hours if ``t`` falls in them."""
        tz = ZoneInfo(self.timezone)
        local = dt.datetime.fromtimestamp(t, tz)
        start, end = (dt.time.fromisoformat(x) for x in (self.quiet_start, self.quiet_end))
        now = local.time()
        if start == end:
            return t
        inside = (start <= now or now < end) if start > end else (start <= now < end)
        if not inside:
            return t
        end_day = local.date() if now < end else local.date() + dt.timedelta(days=1)
        return dt.datetime.combine(end_day, end, tz).timestamp()


DEFAULT_POLICY: Final = Policy()


def decode_policy(obj: object) -> Policy:
    """A policy from stored or submitted JSON; raises ``msgspec.ValidationError`` naming the bad field."""
    return msgspec.convert(obj, Policy)


def policy_json(policy: Policy) -> dict[str, object]:
    return msgspec.to_builtins(policy)  # type: ignore[no-any-return]
