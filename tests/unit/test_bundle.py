"""Release bundles: the wheel set is complete for the hub's platform, python-miio goes in without the three
requirements it never imports on our path, and a bundle that differs from its manifest is refused."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud_sync import releases as rel
from cloud_sync.register import bundle
from tests.support.releases import fake_bundle

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.network
def test_the_bundle_wheel_set_resolves_completely_for_the_pi() -> None:
    """Raspberry Pi OS bookworm 64-bit, CPython 3.11: every requirement of kotihub[hub,miio] has a binary wheel."""
    pins = bundle.resolve_check(REPO, ("hub", "miio"), rel.HUB_PLATFORM, "cp311")
    names = {p.split("==")[0].lower().replace("_", "-") for p in pins}
    assert {"cryptography", "msgspec", "zstandard", "pyrage", "aiomqtt", "tuf", "python-miio", "construct"} <= names
    assert not names & {"netifaces", "android-backup", "micloud"}


def test_older_glibc_tags_are_offered_to_pip() -> None:
    tags = bundle.platform_tags("manylinux_2_36_aarch64")
    assert tags[0] == "manylinux_2_36_aarch64" and "manylinux_2_17_aarch64" in tags
    assert tags[-1] == "manylinux2014_aarch64"
    assert bundle.platform_tags("linux_x86_64") == ["linux_x86_64"]


def test_the_miio_path_we_use_imports_none_of_the_dropped_requirements() -> None:
    """What the miio driver loads (drivers.miio.poller imports these lazily) needs none of NO_DEPS' drops."""
    dropped = {m.replace("-", "_") for m in bundle.NO_DEPS["python-miio"]}
    code = (
        "import sys\nimport miio.device, miio.gateway.gateway, miio.miioprotocol, miio.exceptions\n"
        "import drivers.miio.driver\nprint(' '.join(sorted(sys.modules)))"
    )
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    assert "miio.device" in loaded  # the probe sees python-miio
    assert not {m for m in loaded if m.split(".")[0] in dropped}


def _retar(src: Path, dst: Path, change: dict[str, bytes | None]) -> Path:
    with tarfile.open(src) as tin, tarfile.open(dst, "w:") as tout:
        for m in tin.getmembers():
            f = tin.extractfile(m)
            assert f is not None
            data = change.pop(m.name, f.read())
            if data is None:
                continue
            m.size = len(data)
            tout.addfile(m, io.BytesIO(data))
        for name, data in change.items():
            assert data is not None
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))
    return dst


def test_a_bundle_must_be_exactly_its_manifest(tmp_path: Path) -> None:
    good = fake_bundle(tmp_path, "1.2.0")
    assert rel.read_manifest(good).version == "1.2.0"
    extra = _retar(good, tmp_path / "extra.tar", {"wheels/evil-1.0-py3-none-any.whl": b"x"})
    missing = _retar(good, tmp_path / "missing.tar", {"wheels/kotihub-1.2.0-py3-none-any.whl": None})
    with tarfile.open(good) as tar:
        bad_version = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    bad_version["version"] = "1.2.0-rc1"
    bad = _retar(good, tmp_path / "bad.tar", {"manifest.json": json.dumps(bad_version).encode()})
    for path, why in ((extra, "differ"), (missing, "differ"), (bad, "not a release bundle")):
        with pytest.raises(rel.BundleError, match=why):
            rel.read_manifest(path)
    (tmp_path / "junk.tar").write_bytes(b"\0" * 100)
    with pytest.raises(rel.BundleError):
        rel.read_manifest(tmp_path / "junk.tar")


def test_a_bundle_with_a_link_is_refused(tmp_path: Path) -> None:
    good = fake_bundle(tmp_path, "1.2.0")
    link = tmp_path / "link.tar"
    with tarfile.open(good) as tin, tarfile.open(link, "w:") as tout:
        for m in tin.getmembers():
            tout.addfile(m, tin.extractfile(m))
        info = tarfile.TarInfo("wheels/x.whl")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tout.addfile(info)
    with pytest.raises(rel.BundleError, match="regular files"):
        rel.read_manifest(link)


_versions = st.lists(st.integers(0, 10_000), min_size=1, max_size=4).map(lambda xs: ".".join(map(str, xs)))


@given(_versions, _versions)
def test_release_numbers_order_numerically(a: str, b: str) -> None:
    ka, kb = rel.version_key(a), rel.version_key(b)
    na, nb = [int(x) for x in a.split(".")], [int(x) for x in b.split(".")]
    width = max(len(na), len(nb))
    pa, pb = na + [0] * (width - len(na)), nb + [0] * (width - len(nb))
    assert (ka < kb) == (pa < pb) and (ka == kb) == (pa == pb)


@pytest.mark.parametrize("bad", ["", "1.0-rc1", "v1", "1..2", "1.2.3.4.5", "01.2 ", "1.0+local"])
def test_anything_else_is_not_a_release_number(bad: str) -> None:
    with pytest.raises(ValueError, match="not a release number"):
        rel.version_key(bad)
