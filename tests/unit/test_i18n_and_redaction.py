"""Language choice and the support bundle's redaction rules."""

from __future__ import annotations

from gateway import i18n
from gateway.diag import Redactor, _config_view
from gateway.selftest import card_wear


def test_language_from_flag_then_locale() -> None:
    assert i18n.choose_language("fi", {}) == "fi"
    assert i18n.choose_language(None, {"LANG": "fi_FI.UTF-8"}) == "fi"
    assert i18n.choose_language(None, {"LC_ALL": "en_GB.UTF-8", "LANG": "fi_FI.UTF-8"}) == "en"
    assert i18n.choose_language(None, {}) == "en"


def test_every_message_has_both_languages() -> None:
    for message_id, texts in i18n.MESSAGES.items():
        assert set(texts) == {"en", "fi"}, message_id
        assert texts["fi"], message_id


def test_text_fills_parameters_and_survives_missing_ones() -> None:
    assert i18n.text("disk.ok", "fi", free="3.0 GB") == "levy: 3.0 GB vapaana"
    assert i18n.text("disk.ok", "en") == "disk: {free} free"
    assert i18n.text("no.such.id", "fi") == "no.such.id"


def test_redactor_hashes_known_strings_and_address_shapes() -> None:
    r = Redactor(b"k" * 32, {"ble:a4:c1:38:00:11:22": "device", "Olohuone": "room"})
    out = r.text("ble:a4:c1:38:00:11:22 in Olohuone via 192.168.1.20, other aa:bb:cc:dd:ee:ff, mail a@b.fi")
    for secret in ("a4:c1:38", "Olohuone", "192.168.1.20", "aa:bb:cc:dd:ee:ff", "a@b.fi"):
        assert secret not in out
    assert out.count("<device:") == 1
    assert r.text("aa:bb:cc:dd:ee:ff") == r.text("AA:BB:CC:DD:EE:FF")  # stable, case-insensitive hashes


def test_config_view_keeps_numbers_and_drops_free_text() -> None:
    view = _config_view(
        {"drivers": {"mqtt": {"host": "10.0.0.5", "port": 1883, "tls": True}}, "hub": {"log_level": "info"}}
    )
    assert view == {
        "drivers": {"mqtt": {"host": "<redacted>", "port": 1883, "tls": True}},
        "hub": {"log_level": "info"},
    }


def test_card_wear_reads_emmc_life_time(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dev = tmp_path / "mmcblk0" / "device"
    dev.mkdir(parents=True)
    (dev / "life_time").write_text("0x02 0x03\n")
    assert card_wear(tmp_path) == "20-30% used"
    (dev / "life_time").write_text("0x0B 0x01\n")
    assert card_wear(tmp_path) == "exceeded"
    assert card_wear(tmp_path / "none") is None
