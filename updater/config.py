"""``/etc/kotihub/updater.toml``: where releases live, where the register is, how long a release has to prove
itself. Every key has a default that fits a hub installed by scripts/install."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from cloud_sync.releases import HUB_PLATFORM

DEFAULT_PATH = Path("/etc/kotihub/updater.toml")


class UpdaterConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    root: str = "/opt/kotihub"
    """Holds ``releases/<version>/venv``, and the ``current`` and ``previous`` symlinks."""
    state_dir: str = "/var/lib/kotihub-updater"
    """TUF metadata the hub trusts, downloaded bundles, and ``state.json`` (what is being tried, what was kept)."""
    trusted_root: str = "/etc/kotihub/release-root.json"
    """The TUF root the hub was installed with; used only until the updater has a newer, verified one."""
    register_url: str = ""
    """Empty: the one in the hub's config (``[uplink] register_url``)."""
    hub_config: str = "/etc/kotihub/kotihub.toml"
    hub_state_dir: str = "/var/lib/kotihub"
    """The hub's certificate, key and the register's CA, as ``kotihub provision`` left them."""
    control_socket: str = "/run/kotihub/control.sock"
    platform: str = HUB_PLATFORM
    python: str = "/usr/bin/python3"
    """The interpreter each release's virtualenv is made from."""
    health_window_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 180.0
    """A release that is not healthy this long after its start is rolled back."""
    require_uplink: bool = True
    """Healthy includes "the uplink reached the register" (off for a hub that runs without the register)."""
    restart_command: list[str] = msgspec.field(default_factory=lambda: ["systemctl", "restart", "kotihub.service"])
    active_command: list[str] = msgspec.field(default_factory=lambda: ["systemctl", "is-active", "kotihub.service"])
    keep_releases: Annotated[int, msgspec.Meta(ge=2, le=10)] = 3
    """Release directories kept on the card: current, previous and the newest failed one for the technician."""

    @property
    def root_path(self) -> Path:
        return Path(self.root)

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir)


def load(path: Path = DEFAULT_PATH) -> UpdaterConfig:
    if not path.exists():
        return UpdaterConfig()
    return decode(path.read_bytes())


def decode(data: bytes) -> UpdaterConfig:
    """Settings from the bytes of an updater.toml (msgspec's ``DecodeError``/``ValidationError`` if they are not)."""
    return msgspec.toml.decode(data, type=UpdaterConfig)
