"""Clip sealing with real age (pyrage) and real X25519 identities: round trip, refusal of tampering, spool hygiene."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ClipAborted, DecryptError, PermanentError, TransientError
from gateway.store import clips
from gateway.store import clipspool as spool_
from tests.support.camera import Member, make_member

CHUNK = 64 * 1024  # age STREAM plaintext chunk size
MARKER = b"KOTIHUB-PLAINTEXT-MARKER"


def _seal(spool: Path, member: Member, plaintext: bytes, clip_id: str = "clip-1") -> Path:
    clip, path = clips.encrypt_clip(
        io.BytesIO(plaintext),
        spool=spool,
        clip_id=clip_id,
        recipients=[member.recipient],
        device_id="camera:00:40:8c:12:34:56",
        started=1_700_000_000.0,
        duration_s=4.0,
        reason="motion",
    )
    assert path == spool / f"{clip_id}.age"
    assert clip.size == path.stat().st_size
    assert clip.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    return path


def _plaintext(n: int) -> bytes:
    # Marker repeated through the data so any leaked chunk would show it.
    return (MARKER + os.urandom(100)) * (n // (len(MARKER) + 100)) + MARKER


def test_round_trip_to_two_members_and_nothing_but_ciphertext_in_the_spool(tmp_path: Path, member: Member) -> None:
    other = make_member(tmp_path / "household", "other")
    spool = tmp_path / "spool"
    plaintext = _plaintext(3 * CHUNK + 1234)
    clip, path = clips.encrypt_clip(
        io.BytesIO(plaintext),
        spool=spool,
        clip_id="c2",
        recipients=[member.recipient, other.recipient],
        device_id="camera:x",
        started=1.0,
        duration_s=2.0,
        reason="smoke",
    )
    assert sorted(p.name for p in spool.iterdir()) == ["c2.age"]
    assert MARKER not in path.read_bytes()
    assert (path.stat().st_mode & 0o777) == 0o600
    for who in (member, other):
        out = io.BytesIO()
        assert clips.decrypt_clip(who.identity_file, path, out, expected_sha256=clip.sha256) == len(plaintext)
        assert out.getvalue() == plaintext


def test_wrong_identity_is_refused(tmp_path: Path, member: Member) -> None:
    path = _seal(tmp_path / "spool", member, _plaintext(10_000))
    stranger = make_member(tmp_path / "elsewhere", "stranger")
    with pytest.raises(DecryptError):
        clips.decrypt_clip(stranger.identity_file, path, io.BytesIO())


@pytest.mark.parametrize("where", ["header", "first-chunk", "middle", "last-byte"])
def test_a_flipped_byte_is_refused(tmp_path: Path, member: Member, where: str) -> None:
    path = _seal(tmp_path / "spool", member, _plaintext(2 * CHUNK + 500))
    data = bytearray(path.read_bytes())
    header_end = data.index(b"\n---") + 1
    offset = {"header": 20, "first-chunk": header_end + 60, "middle": len(data) // 2, "last-byte": len(data) - 1}[where]
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    out = tmp_path / "plain.ts"
    with pytest.raises(DecryptError):
        clips.decrypt_clip(member.identity_file, path, out)
    assert not out.exists(), "no partial plaintext is left behind"
    assert list(out.parent.glob("*.partial")) == []


@pytest.mark.parametrize("cut", [1, 16, CHUNK, CHUNK + 17])
def test_a_truncated_file_is_refused(tmp_path: Path, member: Member, cut: int) -> None:
    path = _seal(tmp_path / "spool", member, _plaintext(3 * CHUNK))
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    with pytest.raises(DecryptError):
        clips.decrypt_clip(member.identity_file, path, io.BytesIO())


def test_reordered_chunks_are_refused(tmp_path: Path, member: Member) -> None:
    path = _seal(tmp_path / "spool", member, _plaintext(4 * CHUNK))
    data = path.read_bytes()
    # Payload = 16-byte nonce, then chunks of 64 KiB + 16-byte tag; swap the first two full chunks.
    body = data.index(b"\n---")
    payload_start = data.index(b"\n", body + 1) + 1 + 16
    size = CHUNK + 16
    a = data[payload_start : payload_start + size]
    b = data[payload_start + size : payload_start + 2 * size]
    assert a != b
    swapped = data[:payload_start] + b + a + data[payload_start + 2 * size :]
    path.write_bytes(swapped)
    with pytest.raises(DecryptError):
        clips.decrypt_clip(member.identity_file, path, io.BytesIO())


def test_sha256_mismatch_is_refused_before_decrypting(tmp_path: Path, member: Member) -> None:
    path = _seal(tmp_path / "spool", member, b"x" * 100)
    with pytest.raises(DecryptError):
        clips.decrypt_clip(member.identity_file, path, io.BytesIO(), expected_sha256="00" * 32)


def test_recipients_are_validated_and_secret_keys_refused(tmp_path: Path, member: Member) -> None:
    with pytest.raises(clips.RecipientError):
        clips.parse_recipients([])
    with pytest.raises(clips.RecipientError):
        clips.parse_recipients(["age1notakey"])
    secret = member.identity_file.read_text().splitlines()[1]
    assert secret.startswith("AGE-SECRET-KEY-")
    with pytest.raises(clips.RecipientError):
        clips.parse_recipients([secret])
    assert len(clips.parse_recipients([member.recipient])) == 1


def test_a_failing_source_leaves_nothing_in_the_spool(tmp_path: Path, member: Member) -> None:
    class Failing(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            if self.sent > 3 * CHUNK:
                raise ClipAborted("camera lost")
            n = len(buffer)
            buffer[:n] = b"\x47" * n
            self.sent += n
            return n

    spool = tmp_path / "spool"
    with pytest.raises(TransientError, match="ClipAborted"):
        clips.seal_stream(Failing(), spool=spool, clip_id="broken", recipients=[member.recipient])
    assert list(spool.iterdir()) == []


@pytest.mark.parametrize("clip_id", ["../escape", "a/b", "", ".", "x" * 200])
def test_clip_ids_cannot_leave_the_spool(tmp_path: Path, member: Member, clip_id: str) -> None:
    with pytest.raises(PermanentError):
        clips.seal_stream(io.BytesIO(b"x"), spool=tmp_path, clip_id=clip_id, recipients=[member.recipient])


def test_an_existing_clip_is_never_overwritten(tmp_path: Path, member: Member) -> None:
    path = _seal(tmp_path / "spool", member, b"first")
    before = path.read_bytes()
    with pytest.raises(PermanentError):
        _seal(tmp_path / "spool", member, b"second")
    assert path.read_bytes() == before


def test_the_spool_is_reconciled_with_the_store_index_at_start_up(tmp_path: Path, member: Member) -> None:
    spool = tmp_path / "spool"
    kept = _seal(spool, member, b"sealed and indexed", clip_id="kept")
    erased = _seal(spool, member, b"rows erased, then killed before the file went", clip_id="erased")
    # Sealed and indexed, killed before the rename:
    sealed, _, _ = clips.seal_stream(
        io.BytesIO(b"indexed"), spool=spool, clip_id="indexed", recipients=[member.recipient], publish=False
    )
    assert sealed.name == "indexed.age.tmp" and not (spool / "indexed.age").exists()
    (spool / "crashed.age.tmp").write_bytes(b"half a ciphertext")  # killed mid-seal, never indexed
    report = spool_.reconcile_spool(spool, {"kept", "indexed"})
    assert report == spool_.SpoolReport(published=1, removed_partials=1, removed_unknown=1)
    assert sorted(p.name for p in spool.iterdir()) == ["indexed.age", "kept.age"]
    assert kept.exists() and not erased.exists()
    out = io.BytesIO()
    clips.decrypt_clip(member.identity_file, spool / "indexed.age", out)
    assert out.getvalue() == b"indexed"
    assert spool_.reconcile_spool(spool, {"kept", "indexed"}) == spool_.SpoolReport()  # idempotent
    assert spool_.reconcile_spool(tmp_path / "missing", set()) == spool_.SpoolReport()


_MP4_HEAD = b"\x00\x00\x00\x1cftypiso5\x00\x00\x02\x00iso5iso6mp41"
_TS_HEAD = (b"\x47\x40\x00\x10" + bytes(184)) * 2
_JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF"


@pytest.mark.parametrize(
    ("plaintext", "media_type", "suffix"),
    [
        (_MP4_HEAD + MARKER * 100, "video/mp4", ".mp4"),
        (_TS_HEAD + MARKER, "video/mp2t", ".ts"),  # sealed by a release before clips became MP4
        (_JPEG_HEAD + MARKER, "image/jpeg", ".jpg"),  # a snapshot
        (MARKER * 10, "application/octet-stream", ".bin"),
    ],
    ids=["mp4", "legacy-ts", "jpeg", "unknown"],
)
def test_decrypt_names_the_plaintext_by_what_it_is(
    tmp_path: Path, member: Member, plaintext: bytes, media_type: str, suffix: str
) -> None:
    sealed = _seal(tmp_path / "spool", member, plaintext, clip_id="c1")
    out, size, found = clips.decrypt_clip_named(member.identity_file, sealed)
    assert (out, size, found) == (sealed.with_suffix(suffix), len(plaintext), media_type)
    assert out.read_bytes() == plaintext
    assert sorted(p.name for p in sealed.parent.iterdir()) == sorted([sealed.name, out.name]), "no partial left"


def test_decrypt_named_leaves_nothing_for_a_truncated_clip(tmp_path: Path, member: Member) -> None:
    sealed = _seal(tmp_path / "spool", member, _MP4_HEAD + _plaintext(3 * CHUNK))
    sealed.write_bytes(sealed.read_bytes()[:-100])
    with pytest.raises(DecryptError):
        clips.decrypt_clip_named(member.identity_file, sealed)
    assert [p.name for p in sealed.parent.iterdir()] == [sealed.name]


@given(st.binary(max_size=clips.SNIFF_BYTES))
def test_media_sniffing_is_total(head: bytes) -> None:
    media_type, suffix = clips.media_of(head)
    assert (media_type, suffix) in (clips.MP4, clips.MPEG_TS, clips.JPEG, clips.UNKNOWN)
