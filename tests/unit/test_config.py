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
    [(key, reason)] = problems({"store": {"commit_intervall": 1}})
    assert key == "store.commit_intervall"
    assert reason.startswith("unknown key; known keys are commit_interval, commit_max_items")
    [(key, reason)] = problems({"bogus": 1})
    assert key == "bogus" and reason.startswith("unknown key; known keys are hub, store")


def test_wrong_types_and_impossible_values_name_the_key_and_reason() -> None:
    assert problems({"store": {"commit_interval": "soon"}}) == [
        ("store.commit_interval", "Expected `float`, got `str`")
    ]
    [(key, reason)] = problems({"retention": {"days": 0}})
    assert key == "retention.days" and ">= 1" in reason
    [(key, reason)] = problems({"crypto": {"cipher": "rot13"}})
    assert key == "crypto.cipher" and "Invalid enum value 'rot13'" in reason


def test_every_problem_of_a_table_is_reported_not_only_the_first() -> None:
    found = problems(
        {
            "store": {"commit_interval": "soon", "commit_max_items": 0, "bogus": 1},
            "uplink": {"read_timeout": -1, "batch_items": "many"},
        }
    )
    assert [key for key, _ in found] == [
        "store.commit_interval",
        "store.commit_max_items",
        "store.bogus",
        "uplink.read_timeout",
        "uplink.batch_items",
    ]


def test_a_batch_that_would_grow_smaller_is_named() -> None:
    assert problems({"uplink": {"batch_items": 8000, "batch_items_max": 6000}}) == [
        ("uplink", "batch_items_max (6000) is less than batch_items (8000)")
    ]
    assert config.parse({"uplink": {"batch_items": 8000, "batch_items_max": 8000}}).uplink.batch_items_max == 8000


def test_every_problem_inside_a_driver_table_and_its_lists() -> None:
    found = dict(
        problems(
            {
                "drivers": {
                    "mqtt": {"port": "a", "host": 3},
                    "camera": {"cameras": [{"name": "hall"}, {"stream_url": 3}]},
                }
            }
        )
    )
    assert set(found) == {
        "drivers.mqtt.port",
        "drivers.mqtt.host",
        "drivers.camera.cameras[0].stream_url",
        "drivers.camera.cameras[1].stream_url",
        "drivers.camera.cameras[1].name",
    }
    assert found["drivers.camera.cameras[1].name"] == "required key missing"


def test_an_enum_problem_lists_the_allowed_values() -> None:
    [(key, reason)] = problems({"crypto": {"cipher": "rot13"}})
    assert reason.endswith("allowed values: auto, aes-256-gcm, chacha20-poly1305")
    [(key, reason)] = problems({"drivers": {"ble": {"formats": ["bthome", "nope"]}}})
    assert key == "drivers.ble.formats[1]"
    assert reason.endswith("allowed values: bthome, atc, mibeacon, ruuvi")


def test_a_password_key_is_reported_once() -> None:
    assert problems({"drivers": {"mqtt": {"password": "hunter2"}}}) == [
        ("drivers.mqtt.password", "secrets do not belong in the config file; put them in credentials")
    ]


def test_the_obsolete_batch_rows_is_accepted_and_named(tmp_path: Path) -> None:
    old = tmp_path / "old.toml"
    old.write_text("[retention]\ndays = 100\nbatch_rows = 500\n")
    assert config.load(old).retention.days == 100
    check = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "config", "check", str(old)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    assert "note: retention.batch_rows: no longer used" in check.stdout


def test_every_key_of_the_hub_sections_is_read_by_the_code() -> None:
    """A documented key that nothing reads (``retention.batch_rows`` was one) is drift: it fails here."""
    import ast

    import msgspec

    sections = [
        config.HubSection,
        config.StoreSection,
        config.CryptoSection,
        config.RetentionSection,
        config.UplinkSection,
        config.ControlSection,
        config.DeviceSection,
    ]
    root = SHIPPED.parents[1]
    read: set[str] = set()
    for package in ("gateway", "cloud_sync", "drivers"):
        for path in (root / package).rglob("*.py"):
            if path.name == "config.py" and path.parent.name == "gateway":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            read |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    unread = [
        f"{section.__name__}.{field.name}"
        for section in sections
        for field in msgspec.structs.fields(section)
        if field.name not in read
    ]
    assert unread == []


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "is a directory"),
        (b"\xff\xfe[store]\n", "not UTF-8 text (byte 0 is 0xff)"),
        (b"[store\n", "not valid TOML"),
    ],
    ids=["directory", "latin1-bytes", "bad-toml"],
)
def test_config_check_names_an_unreadable_file_without_a_traceback(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    target = tmp_path / "kotihub.toml"
    if content is None:
        target.mkdir()
    else:
        target.write_bytes(content)
    check = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "config", "check", str(target)], capture_output=True, text=True
    )
    assert check.returncode == 1
    assert "Traceback" not in check.stderr
    assert f"{target}: {reason}" in check.stderr


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


def missing_keys(table: dict[str, object], struct: type, prefix: str) -> list[str]:
    """Keys of ``struct`` (and of its sub-tables and arrays of tables) that ``table`` does not show."""
    import typing

    import msgspec

    missing = []
    for field in msgspec.structs.fields(struct):
        path = f"{prefix}.{field.encode_name}"
        if field.encode_name not in table:
            missing.append(path)
            continue
        kind = field.type
        while typing.get_origin(kind) is typing.Annotated:
            kind = typing.get_args(kind)[0]
        value = table[field.encode_name]
        if isinstance(kind, type) and issubclass(kind, msgspec.Struct) and isinstance(value, dict):
            missing += missing_keys(value, kind, path)
        elif typing.get_origin(kind) is list and isinstance(value, list) and value:
            item = typing.get_args(kind)[0]
            if isinstance(item, type) and issubclass(item, msgspec.Struct):
                missing += missing_keys(value[0], item, f"{path}[0]")
    return missing


@pytest.mark.parametrize("name", ["mqtt", "ble", "miio", "camera"])
def test_every_driver_has_an_example_with_every_key(name: str) -> None:
    import tomllib

    from drivers import REGISTRY, driver_class

    assert set(REGISTRY) == {"mqtt", "ble", "miio", "camera"}  # a new driver gets its example and a case here
    example = SHIPPED.parent / "examples" / f"{name}.toml"
    cfg = config.load(example)
    assert set(cfg.drivers) == {name}
    table = tomllib.loads(example.read_text(encoding="utf-8"))["drivers"][name]
    assert missing_keys(table, driver_class(name).Config, f"drivers.{name}") == []


def test_the_readings_linger_is_seconds_from_0_to_600() -> None:
    assert config.load(None).uplink.readings_linger_s == 20.0
    assert config.parse({"uplink": {"readings_linger_s": 0}}).uplink.readings_linger_s == 0.0  # off
    [(key, reason)] = problems({"uplink": {"readings_linger_s": -1}})
    assert key == "uplink.readings_linger_s" and ">= 0" in reason
    [(key, reason)] = problems({"uplink": {"readings_linger_s": 601}})
    assert key == "uplink.readings_linger_s" and "<= 600" in reason
