"""One advertisement in, every format it carries decoded: the single entry point the driver and benchmarks use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from drivers.ble import atc, bthome, mibeacon, ruuvi
from drivers.ble.common import Decoded, Reason, Rejected, ReplayState
from drivers.ranges import plausible

SERVICE_UUIDS: Final = frozenset({bthome.SERVICE_UUID, atc.SERVICE_UUID, mibeacon.SERVICE_UUID})
COMPANY_IDS: Final = frozenset({ruuvi.COMPANY_ID})


def is_relevant(service_data: Mapping[str, bytes], manufacturer_data: Mapping[int, bytes]) -> bool:
    """True if the advertisement carries any format we decode; the cheap test run on every advertisement heard."""
    return any(uuid in SERVICE_UUIDS for uuid in service_data) or any(c in COMPANY_IDS for c in manufacturer_data)


def decode_advertisement(
    address: str,
    service_data: Mapping[str, bytes],
    manufacturer_data: Mapping[int, bytes],
    *,
    bindkey: bytes | None = None,
    state: ReplayState | None = None,
    ts: float = 0.0,
) -> list[Decoded | Rejected]:
    """Every result from one advertisement (usually one). Never raises. A result with any value outside its
    quantity's physical range is refused whole (:data:`Reason.BAD_VALUE`): the packet is corrupt or forged."""
    results = _decode(address, service_data, manufacturer_data, bindkey=bindkey, state=state, ts=ts)
    for i, r in enumerate(results):
        if isinstance(r, Decoded) and not all(plausible(x.quantity, x.value) for x in r.readings):
            results[i] = Rejected(r.fmt, Reason.BAD_VALUE)
    return results


def _decode(
    address: str,
    service_data: Mapping[str, bytes],
    manufacturer_data: Mapping[int, bytes],
    *,
    bindkey: bytes | None,
    state: ReplayState | None,
    ts: float,
) -> list[Decoded | Rejected]:
    results: list[Decoded | Rejected] = []
    if service_data:
        if (r := bthome.decode(address, service_data, bindkey=bindkey, state=state, ts=ts)) is not None:
            results.append(r)
        if (r := mibeacon.decode(address, service_data, bindkey=bindkey, state=state, ts=ts)) is not None:
            results.append(r)
        if (r := atc.decode(address, service_data, ts=ts)) is not None:
            results.append(r)
    if manufacturer_data and (r := ruuvi.decode(address, manufacturer_data, ts=ts)) is not None:
        results.append(r)
    return results
