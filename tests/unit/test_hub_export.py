"""The hub's sealed copy: the archive of ``kotihub export``, age ciphertext to the members only, never a plaintext
file, and never a truncated copy when the archive fails half-way."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pyrage
import pytest

from gateway.hub_export import NoRecipients, ciphertext_path, seal_export
from gateway.privacy import ExportProgress, export_archive
from gateway.store.clips import RecipientError
from tests.support.stores import open_store
from tests.unit.test_privacy import populate


async def test_the_sealed_copy_opens_to_the_hubs_export_for_a_member_only(tmp_path: Path) -> None:
    spool, exports = tmp_path / "spool", tmp_path / "exports"
    exports.mkdir()
    member, other = pyrage.x25519.Identity.generate(), pyrage.x25519.Identity.generate()
    async with open_store(tmp_path / "hub") as store:
        await populate(store, spool)
        await store.flush()
        out = ciphertext_path(exports, "cmd_0123abcd")
        sealed = seal_export(store, out, recipients=[str(member.to_public())], hub_name="koti", spool_dir=spool)
        plain = tmp_path / "plain.zip"
        export_archive(store, plain, hub_name="koti", spool_dir=spool, progress=ExportProgress())
    assert [p.name for p in exports.iterdir()] == ["kotihub-export-cmd_0123abcd.age"]  # ciphertext only
    assert out.stat().st_mode & 0o777 == 0o600
    ciphertext = out.read_bytes()
    assert (len(ciphertext), sealed["counts"]["readings"]) == (sealed["size"], 60)
    assert b"mqtt:a" not in ciphertext
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(ciphertext, [other])
    opened = zipfile.ZipFile(io.BytesIO(pyrage.decrypt(ciphertext, [member])))
    with zipfile.ZipFile(plain) as local:
        assert sorted(opened.namelist()) == sorted(local.namelist())
        for name in local.namelist():
            if name != "manifest.json":  # it says when it was made
                assert opened.read(name) == local.read(name), name


async def test_a_failed_archive_leaves_no_copy_and_no_recipients_no_copy(tmp_path: Path) -> None:
    spool, exports = tmp_path / "spool", tmp_path / "exports"
    exports.mkdir()
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    async with open_store(tmp_path / "hub") as store:
        await populate(store, spool)
        await store.flush()
        # The clip's spool file cannot be read half-way through the archive: age would have sealed a truncated zip.
        (spool / "clip1.age").unlink()
        (spool / "clip1.age").mkdir()
        out = ciphertext_path(exports, "cmd_1")
        with pytest.raises(IsADirectoryError):
            seal_export(store, out, recipients=[recipient], hub_name="koti", spool_dir=spool)
        assert list(exports.iterdir()) == []
        with pytest.raises(NoRecipients):
            seal_export(store, out, recipients=[], hub_name="koti", spool_dir=spool)
        secret = str(pyrage.x25519.Identity.generate())
        with pytest.raises(RecipientError):
            seal_export(store, out, recipients=[secret], hub_name="koti", spool_dir=spool)
    assert list(exports.iterdir()) == []


def test_an_export_id_never_leaves_the_exports_directory(tmp_path: Path) -> None:
    for bad in ("../x", "a/b", "", "x" * 65, "."):
        with pytest.raises(Exception, match="invalid export id"):
            ciphertext_path(tmp_path, bad)
