"""Property: any byte string sealed to a member decrypts to itself, and any single bit flip is refused."""

from __future__ import annotations

import atexit
import io
import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import DecryptError
from gateway.store import clips
from tests.support.camera import make_member

_DIR = Path(tempfile.mkdtemp(prefix="kotihub-clipcrypt-prop-"))
atexit.register(shutil.rmtree, _DIR, True)
_MEMBER = make_member(_DIR / "household", "m")


def _seal(plaintext: bytes, name: str) -> Path:
    path, _, _ = clips.seal_stream(
        io.BytesIO(plaintext), spool=_DIR / "spool", clip_id=name, recipients=[_MEMBER.recipient]
    )
    return path


@settings(max_examples=40, deadline=None)
@given(plaintext=st.binary(max_size=200_000), n=st.integers(min_value=0, max_value=2**31))
def test_round_trip(plaintext: bytes, n: int) -> None:
    path = _seal(plaintext, f"rt-{n}-{len(plaintext)}-{hash(plaintext) & 0xFFFF}")
    try:
        out = io.BytesIO()
        assert clips.decrypt_clip(_MEMBER.identity_file, path, out) == len(plaintext)
        assert out.getvalue() == plaintext
    finally:
        path.unlink()


@settings(max_examples=40, deadline=None)
@given(plaintext=st.binary(min_size=1, max_size=150_000), where=st.floats(0, 1), bit=st.integers(0, 7))
def test_any_bit_flip_is_refused(plaintext: bytes, where: float, bit: int) -> None:
    path = _seal(plaintext, f"flip-{hash((plaintext, where, bit)) & 0xFFFFFFF}")
    try:
        data = bytearray(path.read_bytes())
        data[min(len(data) - 1, int(where * len(data)))] ^= 1 << bit
        path.write_bytes(bytes(data))
        try:
            clips.decrypt_clip(_MEMBER.identity_file, path, io.BytesIO())
        except DecryptError:
            return
        raise AssertionError("a flipped bit decrypted")
    finally:
        path.unlink()
