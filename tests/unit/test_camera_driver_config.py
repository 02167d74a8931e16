"""The camera driver's config table and the small API the daemon calls, without running cameras."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import msgspec
import pytest

from drivers import driver_class
from drivers.base import Restrictable
from drivers.camera.driver import (
    CameraConfig,
    CameraDriver,
    CameraDriverConfig,
    camera_device_id,
    parse_target,
    stream_url_with_credentials,
)
from gateway.errors import ClipAborted, ConfigError, PermanentError
from gateway.model import Category
from gateway.store.clips import RecipientError
from tests.support.camera import Member, spool_context

TOML = """
[drivers.camera]
mdns = true
wsdiscovery = true
wsdiscovery_target = "239.255.255.250:3702"
max_clip_s = 60

[[drivers.camera.cameras]]
name = "hall"
stream_url = "rtsp://192.168.1.27:554/axis-media/media.amp"
username = "viewer"
native_id = "00408C123456"
pre_roll_s = 4
post_roll_s = 8
segment_s = 2
"""


class NoCredentials:
    def get(self, name: str) -> bytes | None:
        return None


def _config(text: str = TOML) -> CameraDriverConfig:
    table = tomllib.loads(text)["drivers"]["camera"]
    return msgspec.convert(table, CameraDriverConfig)


def test_registry_resolves_the_camera_driver() -> None:
    assert driver_class("camera") is CameraDriver
    assert CameraDriver.Config is CameraDriverConfig


def test_toml_table_decodes_into_the_config() -> None:
    config = _config()
    (camera,) = config.cameras
    assert (camera.name, camera.pre_roll_s, camera.post_roll_s, camera.segment_s) == ("hall", 4.0, 8.0, 2.0)
    assert config.max_clip_s == 60
    assert camera_device_id(camera) == "camera:00:40:8c:12:34:56"


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match="pasword"):
        _config(TOML + 'pasword = "oops"\n')


def test_credentials_in_the_stream_url_are_refused() -> None:
    config = CameraDriverConfig(cameras=[CameraConfig(name="x", stream_url="rtsp://admin:pw@cam/live")])
    with pytest.raises(ConfigError, match="credentials"):
        CameraDriver(config, NoCredentials())


def test_device_ids_are_stable_and_validated() -> None:
    by_uuid = CameraConfig(name="a", stream_url="rtsp://c/", native_id="urn:uuid:A50D18FF-A8B9-4533-BDFC-8CB1ABEA0C8F")
    assert camera_device_id(by_uuid) == "camera:a50d18ff-a8b9-4533-bdfc-8cb1abea0c8f"
    unnamed = CameraConfig(name="porch", stream_url="rtsp://c/")
    assert camera_device_id(unnamed) == camera_device_id(CameraConfig(name="porch", stream_url="rtsp://other/"))
    assert camera_device_id(unnamed) != camera_device_id(CameraConfig(name="garage", stream_url="rtsp://c/"))
    with pytest.raises(ConfigError):
        camera_device_id(CameraConfig(name="b", stream_url="rtsp://c/", native_id="not-an-id"))


def test_stream_url_with_credentials_quotes_them() -> None:
    url = stream_url_with_credentials("rtsp://192.168.1.27:554/live?x=1", "vie wer", "p@ss:w/rd")
    assert url == "rtsp://vie%20wer:p%40ss%3Aw%2Frd@192.168.1.27:554/live?x=1"
    assert stream_url_with_credentials("rtsp://[fe80::1]/live", "u", "") == "rtsp://u@[fe80::1]/live"
    assert stream_url_with_credentials("rtsp://cam/live", "", "ignored") == "rtsp://cam/live"


def test_wsdiscovery_target() -> None:
    assert parse_target("239.255.255.250:3702") == ("239.255.255.250", 3702)
    for bad in ("239.255.255.250", ":3702", "host:0", "host:http"):
        with pytest.raises(ConfigError):
            parse_target(bad)


def test_record_clip_needs_recipients_spool_and_no_restriction(tmp_path: Path, member: Member) -> None:
    with pytest.raises(PermanentError, match="spool"):
        asyncio.run(CameraDriver(_config(), NoCredentials()).record_clip("camera:00:40:8c:12:34:56", "manual"))
    spool = tmp_path / "spool"
    recipients: list[str] = ["AGE-SECRET-KEY-1QQQ"]
    driver = CameraDriver(_config(), NoCredentials(), spool_context(spool, recipients))
    with pytest.raises(RecipientError, match="secret key"):
        asyncio.run(driver.record_clip("camera:00:40:8c:12:34:56", "manual"))
    recipients[:] = []
    with pytest.raises(RecipientError):
        asyncio.run(driver.record_clip("camera:00:40:8c:12:34:56", "manual"))
    recipients[:] = [member.recipient]
    assert isinstance(driver, Restrictable)
    driver.restriction_changed(frozenset({Category.CAMERA}))
    with pytest.raises(ClipAborted):
        asyncio.run(driver.record_clip("camera:00:40:8c:12:34:56", "manual"))
    assert driver.health().restricted is True
    assert driver.health().recipients == 1
    driver.restriction_changed(frozenset({Category.SENSORS}))
    assert driver.health().restricted is False
    assert not spool.exists()


def test_duplicate_cameras_are_refused() -> None:
    twice = [CameraConfig(name="a", stream_url="rtsp://c/", native_id="00408C123456")] * 2
    with pytest.raises(ConfigError, match="own name"):
        CameraDriver(CameraDriverConfig(cameras=twice), NoCredentials())
    same_id = [
        CameraConfig(name="a", stream_url="rtsp://c/", native_id="00408C123456"),
        CameraConfig(name="b", stream_url="rtsp://d/", native_id="00:40:8c:12:34:56"),
    ]
    with pytest.raises(ConfigError):
        CameraDriver(CameraDriverConfig(cameras=same_id), NoCredentials())


def test_shipped_example_config_decodes() -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "examples" / "camera.toml"
    table = tomllib.loads(example.read_text())["drivers"]["camera"]
    table.pop("enabled")
    config = msgspec.convert(table, CameraDriverConfig)
    driver = CameraDriver(config, NoCredentials())
    assert [c.name for c in config.cameras] == ["hall"]
    assert driver.health().restricted is False
    assert camera_device_id(config.cameras[0]) == "camera:00:40:8c:12:34:56"
