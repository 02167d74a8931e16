"""The updater's failures: transient ones are tried again on the next timer run, refusals are reported."""

from __future__ import annotations


class UpdateError(Exception):
    """Base of the updater's errors."""


class TransientUpdateError(UpdateError):
    """The register or the network is not there now; nothing changed on the hub."""


class Refused(UpdateError):
    """The release is not installed: it failed verification (TUF), is older than the running one, or its bundle is
    not what its manifest says. Never retried blindly: the register hears of it as ``refused``."""


class InstallFailed(UpdateError):
    """The bundle was genuine but could not be installed (pip failed, disk full); the running release is untouched."""
