"""``kotihub adopt``: the household (its technician) says a radio device heard by ``discover`` is theirs.

Only drivers that can hear devices that are not the household's (BLE) can adopt (:class:`drivers.base.Adopts`);
their devices are recorded only once adopted. The adoption is audited and persisted by the driver (erasure removes it).
"""

from __future__ import annotations

from collections.abc import Sequence

from drivers.base import Adopts, Driver
from gateway.control import ControlError
from gateway.control_api import AdoptArgs, Adopted
from gateway.store import Store


async def adopt(drivers: Sequence[Driver], store: Store, args: AdoptArgs) -> Adopted:
    device = args.device_id.strip().lower()
    name = device.partition(":")[0]
    driver = next((d for d in drivers if d.name == name), None)
    if driver is None:
        raise ControlError(f"no running driver for {device or 'an empty device id'} (ids look like ble:a4:c1:38:…)")
    if not isinstance(driver, Adopts):
        raise ControlError(f"the {name} driver records its devices without adoption")
    try:
        new = await driver.adopt(device)
    except ValueError as exc:
        raise ControlError(str(exc)) from None
    if new:
        await store.audit(args.actor, "adopt", device)
    return Adopted(device_id=device, adopted=True, new=new)
