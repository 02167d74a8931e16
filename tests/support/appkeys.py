"""Helpers for the app's key tests (clips and members in a real browser): a playable clip made by ffmpeg, its
upload by a real enrolled hub, a member signed in through a one-time link, and what the browser's key store holds.
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pyrage
from playwright.sync_api import Page, Request, expect

from tests.support.browser import add_authenticator
from tests.support.register import ACTOR, HubIdentity, RunningRegister
from tests.support.webapp import WebAppServer

CLIP_SECONDS: Final = 3.0


def make_clip(path: Path, seconds: float = CLIP_SECONDS, *, container: str = "mp4") -> bytes:
    """A small H.264 clip: MP4 (``faststart``, so its duration is known as soon as the header is read), or
    MPEG-TS as the hub's recorder writes it (``container="mpegts"``)."""
    muxing = ["-movflags", "+faststart", "-f", "mp4"] if container == "mp4" else ["-f", "mpegts"]
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-threads", "1",
            *muxing, str(path),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    return path.read_bytes()


def upload_clip(
    register: RunningRegister,
    hub: HubIdentity,
    clip_id: str,
    plaintext: bytes,
    recipients: list[str],
    *,
    started: float = 1_760_000_000.0,
) -> bytes:
    """Encrypts ``plaintext`` to ``recipients`` as the hub does and uploads it through the hub's real API; returns
    the ciphertext."""
    ciphertext = pyrage.encrypt(plaintext, [pyrage.x25519.Recipient.from_str(r) for r in recipients])
    record: dict[str, Any] = {
        "clip_id": clip_id,
        "device_id": "onvif:cam1",
        "started": started,
        "duration_s": CLIP_SECONDS,
        "size": len(ciphertext),
        "sha256": hashlib.sha256(ciphertext).hexdigest(),
        "reason": "motion",
    }
    s = hub.session()
    url = f"{register.url}/v1/clips/{clip_id}"
    assert s.put(url, json=record, timeout=30).status_code == 200
    r = s.patch(url, params={"offset": 0}, data=ciphertext, timeout=30)
    assert r.status_code == 200 and r.json()["complete"] is True, r.text
    return ciphertext


def directory_member(server: WebAppServer, household_id: str, name: str) -> str:
    """A member in the register's directory only: no keys, no member list (the browser makes both)."""
    placeholder = str(pyrage.x25519.Identity.generate().to_public())
    return server.register.reg.add_member(household_id, name, placeholder, actor=ACTOR).member_id


def sign_in(page: Page, link: str) -> None:
    """Enrols this browser context with a passkey through a one-time link (the page's language is Finnish)."""
    add_authenticator(page)
    page.goto(link)
    page.get_by_role("button", name="Luo pääsyavain").click()
    expect(page).to_have_url(re.compile(r"/app/home$"))


CODE = re.compile(r"^([A-Z2-7]{4}-){4}[A-Z2-7]{4}$")


def make_keys(page: Page, base: str) -> str:
    """Keys made on this device on the Members page; returns the pairing code the page shows."""
    page.goto(f"{base}/app/members")
    page.get_by_role("button", name="Luo avaimeni tälle laitteelle").click()
    expect(page.locator("#own-code")).to_have_text(CODE)
    return page.locator("#own-code").inner_text()


def start_member_list(page: Page, base: str) -> str:
    """Keys made on this device, then the household's member list started with them (version 1); returns the
    pairing code (what the technician confirms at the hub's installation)."""
    code = make_keys(page, base)
    page.get_by_role("button", name="Aloita jäsenluettelo").click()
    expect(page.locator("table.members")).to_contain_text("(sinä)")
    return code


@dataclass
class RequestLog:
    """Every request a page sends: URL, headers and body (attach before the first navigation)."""

    entries: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.context.on("request", self._record)

    def _record(self, request: Request) -> None:
        self.entries.append((request.url, request.headers, request.post_data_buffer or b""))

    def containing(self, needles: list[bytes]) -> list[str]:
        hits = []
        for url, headers, body in self.entries:
            blob = url.encode() + b"\n" + repr(sorted(headers.items())).encode() + b"\n" + body
            low = blob.lower()
            hits += [url for n in needles if n.lower() in low]
        return hits


# Reads the key store as a script in the page could, and unseals the identity with the page's own key (which the
# browser lets the page use but never export).
_DUMP_JS = """async (member) => {
  const done = (req) => new Promise((ok, no) => { req.onsuccess = () => ok(req.result); req.onerror = no; });
  const db = await done(indexedDB.open('kotihub-keys'));
  const rec = await done(db.transaction('members').objectStore('members').get(member));
  db.close();
  const dump = JSON.stringify(rec, (k, v) => v instanceof ArrayBuffer || ArrayBuffer.isView(v)
    ? btoa(String.fromCharCode(...new Uint8Array(v.buffer ?? v)))
    : v instanceof CryptoKey ? {type: v.type, algorithm: v.algorithm.name, extractable: v.extractable} : v);
  const identities = [];
  for (const item of rec.identities) {
    const aad = new TextEncoder().encode(`kotihub identity v1\\n${member}\\n${item.recipient}`);
    const params = {name: 'AES-GCM', iv: item.iv, additionalData: aad};
    identities.push(new TextDecoder().decode(await crypto.subtle.decrypt(params, rec.wrap, item.sealed)));
  }
  return {dump, identities};
}"""


def key_store(page: Page, member_id: str) -> dict[str, Any]:
    """``{"dump": JSON of the stored record, "identities": [the unsealed AGE-SECRET-KEY-1… strings]}``."""
    out: dict[str, Any] = page.evaluate(_DUMP_JS, member_id)
    return out


_BECH32: Final = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def identity_bytes(identity: str) -> bytes:
    """The 32-byte X25519 scalar inside ``AGE-SECRET-KEY-1…`` (bech32 data without its 6-character checksum)."""
    data = identity.lower().rpartition("1")[2][:-6]
    bits = "".join(f"{_BECH32.index(c):05b}" for c in data)
    return int(bits[: len(bits) // 8 * 8], 2).to_bytes(len(bits) // 8, "big")


def secret_forms(identity: str) -> list[bytes]:
    """Every way a request might carry the identity: the string, its bech32 data, and its bytes raw, hex and
    base64 (standard and URL-safe, without padding)."""
    raw = identity_bytes(identity)
    assert len(raw) == 32
    return [
        identity.encode(),
        identity.lower().rpartition("1")[2].encode(),
        raw,
        raw.hex().encode(),
        base64.b64encode(raw).rstrip(b"="),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
    ]
