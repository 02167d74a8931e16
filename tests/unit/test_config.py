"""Config: typed, validated, every problem named by its key path; the shipped file is valid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway import config
from gateway.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "kotihub.toml"


def problems(raw: dict[str, object]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        config.parse(raw)
    return info.value.problems


def test_defaults_are_the_privacy_notice_promises() -> None:
    cfg = config.load(None)
    assert cfg.retention.days == 183
    assert cfg.store.commit_interval == 1.0


def test_shipped_config_is_valid_and_matches_defaults() -> None:
    cfg = config.load(SHIPPED)
    defaults = config.load(None)
    assert cfg.store == defaults.store
    assert cfg.retention == defaults.retention
    assert cfg.uplink == defaults.uplink


def test_unknown_keys_are_named_with_their_path() -> None:
    assert problems({"store": {"commit_intervall": 1}}) == [("store.commit_intervall", "unknown key")]
    assert problems({"bogus": 1}) == [("bogus", "unknown key")]


def test_wrong_types_and_impossible_values_name_the_key_and_reason() -> None:
    assert problems({"store": {"commit_interval": "soon"}}) == [
        ("store.commit_interval", "Expected `float`, got `str`")
    ]
    [(key, reason)] = problems({"retention": {"days": 0}})
    assert key == "retention.days" and ">= 1" in reason
    [(key, reason)] = problems({"crypto": {"cipher": "rot13"}})
    assert key == "crypto.cipher" and "Invalid enum value 'rot13'" in reason


def test_uplink_needs_an_https_register_url() -> None:
    [(key, reason)] = problems({"uplink": {"enabled": True, "register_url": "http://register"}})
    assert key == "uplink" and "https://" in reason


def test_secrets_in_the_config_are_refused() -> None:
    found = problems({"uplink": {"token": "abc"}})
    assert ("uplink.token", "secrets do not belong in the config file; put them in credentials") in found


def test_unknown_driver_is_refused() -> None:
    [(key, reason)] = problems({"drivers": {"zwave": {}}})
    assert key == "drivers.zwave" and "unknown driver" in reason


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[store\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.problems[0][0] == str(path)


def test_config_check_command_exit_status(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[store]\ncommit_interval = -1\n")
    run = [sys.executable, "-m", "gateway.cli", "config", "check"]
    ok = subprocess.run([*run, str(SHIPPED)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    failed = subprocess.run([*run, str(bad)], capture_output=True, text=True)
    assert failed.returncode == 1
    assert "store.commit_interval" in failed.stderr
