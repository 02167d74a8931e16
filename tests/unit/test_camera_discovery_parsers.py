"""Golden vectors and hostile input for the camera discovery parsers (WS-Discovery, mDNS)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.camera import mdns, wsdiscovery

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "camera"


def _load(name: str) -> list[dict[str, Any]]:
    data = json.loads((VECTORS / name).read_text())
    vectors: list[dict[str, Any]] = data["vectors"]
    for vector in vectors:
        assert vector["source"], "every vector names its source"
    return vectors


WSD = _load("wsdiscovery.json")
MDNS = _load("mdns.json")


@pytest.mark.parametrize("vector", [v for v in WSD if v["kind"] == "probe_matches"], ids=lambda v: v["file"])
def test_probe_matches_golden(vector: dict[str, Any]) -> None:
    data = (VECTORS / vector["file"]).read_bytes()
    matches = wsdiscovery.parse_probe_matches(data, vector["source_ip"])
    assert len(matches) == len(vector["expected"])
    for match, expected in zip(matches, vector["expected"], strict=True):
        assert match.endpoint == expected["endpoint"]
        assert match.device_id == expected["device_id"]
        assert list(match.types) == expected["types"]
        assert list(match.xaddrs) == expected["xaddrs"]
        assert match.hardware == expected["hardware"]
        assert match.name == expected["name"]
        assert match.relates_to == expected["relates_to"]
        assert match.is_video is expected["is_video"]


def test_probe_vector_is_recognised() -> None:
    (vector,) = [v for v in WSD if v["kind"] == "probe"]
    assert wsdiscovery.parse_probe((VECTORS / vector["file"]).read_bytes()) == vector["expected_message_id"]


def test_our_probe_parses_as_a_probe_with_its_message_id() -> None:
    message_id = wsdiscovery.new_message_id()
    for typed in (False, True):
        assert wsdiscovery.parse_probe(wsdiscovery.build_probe(message_id, typed=typed)) == message_id
    # A probe is not a ProbeMatch.
    assert wsdiscovery.parse_probe_matches(wsdiscovery.build_probe(message_id)) == []


def test_relates_to_accepts_urn_and_bare_forms() -> None:
    data = (VECTORS / "wsd_axis_m1065l_probematch.xml").read_bytes()
    (match,) = wsdiscovery.parse_probe_matches(data)
    assert wsdiscovery.relates_to_probe(match, "urn:uuid:26fc5103-5811-301a-2b13-22f0c3d2dbcc")
    assert wsdiscovery.relates_to_probe(match, "uuid:26fc5103-5811-301a-2b13-22f0c3d2dbcc")
    assert not wsdiscovery.relates_to_probe(match, wsdiscovery.new_message_id())


def test_unspecified_host_is_replaced_by_the_reply_source() -> None:
    data = (VECTORS / "wsd_axis_m1065l_probematch.xml").read_bytes().replace(b"192.168.1.27/", b"0.0.0.0:8080/")
    (match,) = wsdiscovery.parse_probe_matches(data, "10.1.2.3")
    assert match.xaddrs[0] == "http://10.1.2.3:8080/onvif/device_service"
    (no_source,) = wsdiscovery.parse_probe_matches(data, None)
    assert all("0.0.0.0" not in x for x in no_source.xaddrs)


def test_a_printer_is_not_a_camera() -> None:
    data = (VECTORS / "wsd_axis_m1065l_probematch.xml").read_bytes()
    data = data.replace(b"tds:Device dn:NetworkVideoTransmitter", b"wsdp:Device wprt:PrintDeviceType")
    data = data.replace(b"onvif://www.onvif.org/", b"http://printer.example/").replace(b"/onvif/", b"/wsd/")
    (match,) = wsdiscovery.parse_probe_matches(data)
    assert not match.is_video


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Envelope><Body><ProbeMatches><ProbeMatch><EndpointReference><Address>&lol3;</Address></EndpointReference>
</ProbeMatch></ProbeMatches></Body></Envelope>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Envelope><Body><ProbeMatches><ProbeMatch><EndpointReference><Address>&xxe;</Address></EndpointReference>
<Types>dn:NetworkVideoTransmitter</Types></ProbeMatch></ProbeMatches></Body></Envelope>"""


@pytest.mark.parametrize(
    "data",
    [
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        b"",
        b"\x00\xff\xfe garbage",
        b"<Envelope><Body><ProbeMatches>",
        b"<Envelope>" + b"<a>" * 10 + b"</Envelope>",
        (VECTORS / "wsd_axis_m1065l_probematch.xml").read_bytes() + b" " * wsdiscovery.MAX_DATAGRAM,
    ],
    ids=["billion-laughs", "external-entity", "empty", "binary", "unterminated", "mismatched", "oversize"],
)
def test_hostile_or_broken_xml_gives_nothing(data: bytes) -> None:
    assert wsdiscovery.parse_probe_matches(data, "192.0.2.1") == []
    assert wsdiscovery.parse_probe(data) is None


@given(st.binary(max_size=2048))
def test_probe_match_parser_is_total_on_random_bytes(data: bytes) -> None:
    assert isinstance(wsdiscovery.parse_probe_matches(data, "192.0.2.1"), list)


@given(st.text(max_size=400))
def test_probe_match_parser_is_total_inside_a_real_envelope(text: str) -> None:
    data = (VECTORS / "wsd_axis_m1065l_probematch.xml").read_text()
    mutated = data.replace("M1065-L onvif", text + " onvif").replace("192.168.1.27", text)
    assert isinstance(wsdiscovery.parse_probe_matches(mutated.encode("utf-8", "surrogatepass"), None), list)


@pytest.mark.parametrize("vector", MDNS, ids=lambda v: v["name"])
def test_mdns_golden(vector: dict[str, Any]) -> None:
    properties = {k.encode(): v.encode() for k, v in vector["properties"].items()}
    camera = mdns.parse_service(vector["service_type"], vector["name"], properties, vector["addresses"], vector["port"])
    expected = vector["expected"]
    if expected is None:
        assert camera is None
        return
    assert camera is not None
    assert camera.device_id == expected["device_id"]
    assert camera.model == expected["model"]
    assert camera.category == expected["category"]
    assert camera.addresses == tuple(vector["addresses"])
    assert camera.port == vector["port"]


def test_mdns_rtsp_ids_prefer_hardware_ids_and_fall_back_to_the_instance() -> None:
    by_uuid = mdns.parse_service(mdns.RTSP, "Cam._rtsp._tcp.local.", {b"uuid": b"A50D18FF-A8B9-4533-BDFC-8CB1ABEA0C8F"})
    assert by_uuid is not None and by_uuid.device_id == "camera:a50d18ff-a8b9-4533-bdfc-8cb1abea0c8f"
    by_name = mdns.parse_service(mdns.RTSP, "Garage Cam 2._rtsp._tcp.local.", {})
    assert by_name is not None and by_name.device_id == "camera:rtsp-garage-cam-2"


@given(
    st.sampled_from((*mdns.SERVICE_TYPES, "_http._tcp.local.")),
    st.text(max_size=80),
    st.dictionaries(st.binary(max_size=12), st.none() | st.binary(max_size=300), max_size=8),
    st.integers(min_value=-5, max_value=70000),
)
def test_mdns_parser_is_total(service_type: str, name: str, props: dict[bytes, bytes | None], port: int) -> None:
    camera = mdns.parse_service(service_type, name, props, ["192.0.2.7"], port)
    if camera is not None:
        assert camera.device_id.startswith("camera:")
        assert 0 <= camera.port < 65536
