"""scripts/demo sets up only what the demo needs, and says so (issue 15, "the first hour")."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def bash(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_the_demo_needs_only_mosquitto_and_the_hub_register_and_miio_extras() -> None:
    packages = bash('source scripts/lib.sh; echo "${DEMO_PACKAGES[@]}"; echo "${SYSTEM_PACKAGES[@]}"')
    demo, tests = packages.stdout.splitlines()
    assert demo == "mosquitto"
    assert {"ffmpeg", "postgresql"} <= set(tests.split())  # the tests need those, the demo does not
    script = (REPO / "scripts" / "demo").read_text(encoding="utf-8")
    assert 'ensure_system_packages "${DEMO_PACKAGES[@]}"' in script
    assert "ensure_venv hub,register,miio\n" in script


def test_set_up_with_nothing_missing_is_silent_and_says_what_it_checks() -> None:
    """mosquitto is installed here and .venv has everything: nothing to install, nothing to say but the steps."""
    run = bash('source scripts/lib.sh; ensure_system_packages "${DEMO_PACKAGES[@]}" && ensure_venv hub,register,miio')
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    demo = subprocess.run(["scripts/demo", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert demo.returncode == 0, demo.stderr
    assert demo.stdout.startswith("== kotihub demo: checking for mosquitto and the virtualenv .venv\n")
    assert "--no-register" in demo.stdout
