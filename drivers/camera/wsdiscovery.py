"""ONVIF WS-Discovery: the Probe we send and a hardened, total parser for the ProbeMatches cameras send back.

Cameras answer a multicast Probe (239.255.255.250:3702) by unicast to the probe's source address. The replies are
untrusted XML from the LAN, so they go through ``defusedxml`` (no DTDs, no entity expansion, no external entities)
after a size bound, and the parser matches elements by local name because vendors use ``d:``, ``wsdd:`` or ``tns:``
prefixes. Parsing never raises: bad input gives ``None`` or an empty list.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import uuid
from collections.abc import Iterable, Iterator
from typing import Final
from urllib.parse import unquote, urlsplit, urlunsplit
from xml.etree.ElementTree import Element  # only the type; parsing goes through defusedxml

import msgspec
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from gateway.model import device_id

log = logging.getLogger(__name__)

MULTICAST_GROUP: Final = "239.255.255.250"
PORT: Final = 3702
MAX_DATAGRAM: Final = 64 * 1024
"""A reply larger than this is not parsed; real ProbeMatches are a few KiB."""

NS_SOAP: Final = "http://www.w3.org/2003/05/soap-envelope"
NS_ADDRESSING: Final = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_DISCOVERY: Final = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
NS_NETWORK: Final = "http://www.onvif.org/ver10/network/wsdl"
ACTION_PROBE: Final = f"{NS_DISCOVERY}/Probe"
ACTION_PROBE_MATCHES: Final = f"{NS_DISCOVERY}/ProbeMatches"


class ProbeMatch(msgspec.Struct, frozen=True, kw_only=True):
    """One device from a ProbeMatches reply."""

    endpoint: str
    """The device's stable endpoint address, usually ``urn:uuid:...``."""
    types: tuple[str, ...]
    scopes: tuple[str, ...]
    xaddrs: tuple[str, ...]
    """Device-service URLs; ``0.0.0.0`` hosts already replaced by the reply's source address."""
    relates_to: str = ""
    hardware: str = ""
    name: str = ""

    @property
    def native_id(self) -> str:
        """The endpoint's UUID when it has one (the ONVIF norm), else the endpoint string itself."""
        return endpoint_uuid(self.endpoint) or self.endpoint.strip().lower()

    @property
    def device_id(self) -> str:
        return device_id("camera", self.native_id)

    @property
    def is_video(self) -> bool:
        # Printers answer probes too (``wsdp:Device``): like go2rtc, require ONVIF in a type, scope or address.
        if any(t.rsplit(":", 1)[-1].lower() == "networkvideotransmitter" for t in self.types):
            return True
        return any("onvif" in s.lower() for s in (*self.scopes, *self.xaddrs))


def new_message_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def build_probe(message_id: str, *, typed: bool = False) -> bytes:
    """A SOAP 1.2 Probe. Untyped by default so every device answers (go2rtc's choice); we filter afterwards.

    A typed probe carries exactly one type, with its prefix declared on the element itself, because some cameras
    ignore a probe whose namespace declarations sit elsewhere and matching requires all listed types.
    """
    types = (
        f'<d:Types xmlns:dn="{NS_NETWORK}">dn:NetworkVideoTransmitter</d:Types>' if typed else "<d:Types /><d:Scopes />"
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{NS_SOAP}" xmlns:a="{NS_ADDRESSING}" xmlns:d="{NS_DISCOVERY}">'
        "<s:Header>"
        f"<a:Action>{ACTION_PROBE}</a:Action>"
        f"<a:MessageID>{message_id}</a:MessageID>"
        "<a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>"
        "</s:Header>"
        f"<s:Body><d:Probe>{types}</d:Probe></s:Body>"
        "</s:Envelope>"
    ).encode()


def _local(tag: object) -> str:
    if not isinstance(tag, str):
        return ""  # comments and processing instructions have callables as tags
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def _children(element: Element, name: str) -> Iterator[Element]:
    return (child for child in element if _local(child.tag) == name)


def _first(element: Element, name: str) -> Element | None:
    return next(_children(element, name), None)


def _find_path(element: Element, *names: str) -> Element | None:
    current: Element | None = element
    for name in names:
        if current is None:
            return None
        current = _first(current, name)
    return current


def _text(element: Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def parse_xml(data: bytes) -> Element | None:
    """Parses untrusted XML: bounded size, no DTD, no entities. ``None`` for anything refused or malformed."""
    if not data or len(data) > MAX_DATAGRAM:
        return None
    try:
        return fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, SyntaxError, ValueError, UnicodeError):
        # xml.etree.ElementTree.ParseError is a SyntaxError subclass.
        return None


def endpoint_uuid(endpoint: str) -> str | None:
    """The UUID inside ``urn:uuid:...`` / ``uuid:...`` / a bare UUID, lower-cased; ``None`` if there is none."""
    text = endpoint.strip().lower()
    for prefix in ("urn:uuid:", "uuid:"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _fix_xaddr(xaddr: str, source_ip: str | None) -> str | None:
    """Keeps http(s) URLs; replaces an unspecified host (``0.0.0.0``) with the reply's source, as go2rtc does."""
    try:
        parts = urlsplit(xaddr)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    try:
        unspecified = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        unspecified = False
    if unspecified:
        if source_ip is None:
            return None
        netloc = f"[{source_ip}]" if ":" in source_ip else source_ip
        if port is not None:
            netloc = f"{netloc}:{port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return xaddr


def _scope_value(scopes: Iterable[str], key: str) -> str:
    prefix = f"onvif://www.onvif.org/{key}/"
    for scope in scopes:
        if scope.lower().startswith(prefix):
            return unquote(scope[len(prefix) :]).strip()
    return ""


def parse_probe_matches(data: bytes, source_ip: str | None = None) -> list[ProbeMatch]:
    """Every ProbeMatch in a reply; empty for faults, other messages, malformed or hostile XML. Never raises."""
    root = parse_xml(data)
    if root is None or _local(root.tag) != "Envelope":
        return []
    relates_to = _text(_find_path(root, "Header", "RelatesTo"))
    matches_el = _find_path(root, "Body", "ProbeMatches")
    if matches_el is None:
        return []
    found: list[ProbeMatch] = []
    for match_el in _children(matches_el, "ProbeMatch"):
        endpoint = _text(_find_path(match_el, "EndpointReference", "Address"))
        if not endpoint:
            continue
        scopes = tuple(_text(_first(match_el, "Scopes")).split())
        xaddrs = tuple(
            fixed for raw in _text(_first(match_el, "XAddrs")).split() if (fixed := _fix_xaddr(raw, source_ip))
        )
        found.append(
            ProbeMatch(
                endpoint=endpoint,
                types=tuple(_text(_first(match_el, "Types")).split()),
                scopes=scopes,
                xaddrs=xaddrs,
                relates_to=relates_to,
                hardware=_scope_value(scopes, "hardware"),
                name=_scope_value(scopes, "name"),
            )
        )
    return found


def relates_to_probe(match: ProbeMatch, message_id: str) -> bool:
    """Whether a match answers our probe: ``RelatesTo`` echoes the MessageID, with or without ``urn:``."""

    def bare(text: str) -> str:
        text = text.strip().lower()
        return text[4:] if text.startswith("urn:") else text

    return not match.relates_to or bare(match.relates_to) == bare(message_id)


def parse_probe(data: bytes) -> str | None:
    """The MessageID of a Probe (what a simulated camera answers to); ``None`` if ``data`` is not a Probe."""
    root = parse_xml(data)
    if root is None or _local(root.tag) != "Envelope":
        return None
    if _find_path(root, "Body", "Probe") is None:
        return None
    return _text(_find_path(root, "Header", "MessageID")) or None


class _Collector(asyncio.DatagramProtocol):
    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.matches: dict[str, ProbeMatch] = {}
        self.ignored = 0

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        source = addr[0] if addr and isinstance(addr[0], str) else None
        got = [m for m in parse_probe_matches(data, source) if m.is_video and relates_to_probe(m, self.message_id)]
        if not got:
            self.ignored += 1
            return
        for match in got:
            self.matches.setdefault(match.native_id, match)

    def error_received(self, exc: Exception) -> None:
        log.debug("WS-Discovery socket error: %s", exc)


def _probe_socket(interface: str | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        if interface is not None:
            # Pin multicast to one interface (loopback in tests) instead of the default route.
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
            sock.bind((interface, 0))
        else:
            sock.bind(("", 0))
    except BaseException:
        sock.close()  # a retry loop must not leak a descriptor per failed attempt
        raise
    return sock


async def probe(
    *,
    target: tuple[str, int] = (MULTICAST_GROUP, PORT),
    interface: str | None = None,
    timeout: float = 3.0,
    repeats: int = 3,
) -> list[ProbeMatch]:
    """Sends a Probe (``repeats`` times, UDP being lossy) and collects video devices' matches for ``timeout`` s."""
    loop = asyncio.get_running_loop()
    message_id = new_message_id()
    payload = build_probe(message_id)
    transport, collector = await loop.create_datagram_endpoint(
        lambda: _Collector(message_id), sock=_probe_socket(interface)
    )
    try:
        deadline = loop.time() + timeout
        for attempt in range(max(1, repeats)):
            with contextlib.suppress(OSError):
                transport.sendto(payload, target)
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            # Spread the repeats over the first part of the window; the rest is for late replies.
            await asyncio.sleep(min(remaining, timeout / (2 * max(1, repeats))) if attempt < repeats - 1 else 0)
        remaining = deadline - loop.time()
        if remaining > 0:
            await asyncio.sleep(remaining)
    finally:
        transport.close()
    if collector.ignored:
        log.debug("WS-Discovery ignored %d replies that were not video devices or not ours", collector.ignored)
    return list(collector.matches.values())
