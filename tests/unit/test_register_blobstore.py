"""The filesystem blob store: offsets, durability of the size, and keys that cannot escape the root."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from cloud_sync.register.blobstore import FileBlobStore, OffsetMismatch


def test_append_at_offset_and_digest(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    assert store.size("hh_1", "c1") == 0
    assert store.append("hh_1", "c1", 0, b"abc") == 3
    assert store.append("hh_1", "c1", 3, b"def") == 6
    with pytest.raises(OffsetMismatch) as err:
        store.append("hh_1", "c1", 3, b"xyz")
    assert err.value.current == 6
    assert b"".join(store.read("hh_1", "c1", chunk=4)) == b"abcdef"
    assert store.sha256("hh_1", "c1") == hashlib.sha256(b"abcdef").hexdigest()
    path = tmp_path / "blobs" / "hh_1" / "c1.age"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store.delete("hh_1", "c1")
    assert store.size("hh_1", "c1") == 0


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".", "..", "x\n", "a" * 129])
def test_unsafe_keys_refused(tmp_path: Path, bad: str) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    with pytest.raises(ValueError, match="unsafe"):
        store.append("hh_1", bad, 0, b"x")
    with pytest.raises(ValueError, match="unsafe"):
        store.append(bad, "c1", 0, b"x")
    assert not any((tmp_path).rglob("*.age"))


def test_delete_household(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    for clip in ("a", "b"):
        store.append("hh_1", clip, 0, b"1")
    store.append("hh_2", "a", 0, b"2")
    assert store.delete_household("hh_1") == 2
    assert store.delete_household("hh_1") == 0
    assert store.size("hh_2", "a") == 1
