"""The hub must not load python-miio unless [drivers.miio] is enabled: only drivers.miio.driver may import it."""

from __future__ import annotations

import subprocess
import sys

PURE = [
    "drivers",
    "drivers.miio",
    "drivers.miio.packet",
    "drivers.miio.values",
    "drivers.miio.config",
    "drivers.miio.discovery",
    "kotihub_tools.simulators.miio",
]


def _loaded_after(imports: list[str]) -> set[str]:
    code = "import sys\n" + "".join(f"import {m}\n" for m in imports) + "print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_pure_modules_do_not_import_miio() -> None:
    assert not any(m == "miio" or m.startswith("miio.") for m in _loaded_after(PURE))


def test_the_driver_module_does() -> None:
    # The control for the test above: the same probe does see python-miio once the driver is imported.
    assert "miio" in _loaded_after(["drivers.miio.driver"])
