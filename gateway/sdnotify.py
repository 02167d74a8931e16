"""systemd's notify protocol (READY, WATCHDOG, STATUS, STOPPING): a datagram to ``$NOTIFY_SOCKET``, nothing more."""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Sends ``message`` (e.g. ``"READY=1"``) to systemd; a no-op returning False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False  # as sd_notify(3): a missing or closed notify socket is not the daemon's failure
    return True


def watchdog_interval() -> float | None:
    """Half the watchdog timeout systemd asked for, in seconds, or None when the watchdog is off."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000
