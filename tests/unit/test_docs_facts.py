"""The guides stand on their own in a clone and say what the code does (issue 15, "docs that disagree")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_no_page_points_outside_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"\.\./|/work/|shared/DESIGN", text)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_guide_a_page_names_exists(page: Path) -> None:
    names = set(re.findall(r"\b([a-z_]+\.md)\b", page.read_text(encoding="utf-8"))) - {"README.md"}
    assert sorted(n for n in names if not (REPO / "docs" / n).is_file()) == []


def test_the_readme_links_the_architecture() -> None:
    assert "(docs/architecture.md)" in (REPO / "README.md").read_text(encoding="utf-8")


def test_install_copies_every_guide() -> None:
    """The guides refer to each other (operator.md to register.md, …): a hub or register host gets all of them."""
    script = (REPO / "scripts" / "install").read_text(encoding="utf-8")
    assert 'for doc in "$SRC"/docs/*.md; do' in script


def test_the_export_location_is_the_one_the_daemon_uses() -> None:
    daemon = (REPO / "gateway" / "daemon.py").read_text(encoding="utf-8")
    assert 'Path(self.config.hub.runtime_dir) / "exports"' in daemon
    technician = (REPO / "docs" / "technician.md").read_text(encoding="utf-8")
    assert "`<runtime_dir>/exports`" in technician
    assert "into its own state directory" not in technician


def test_master_key_created_outside_systemd_is_said_where_technicians_read() -> None:
    text = (REPO / "docs" / "technician.md").read_text(encoding="utf-8")
    assert "**Outside systemd**" in text and "<state_dir>/master.key" in text


def test_the_operator_guide_says_what_the_cli_does_with_members() -> None:
    """The guide once talked about removing members, which the CLI could not do."""
    from cloud_sync.register.cli import _parser

    commands = _parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    member = next(a for a in commands["member"]._actions if a.dest == "sub")
    text = (REPO / "docs" / "operator.md").read_text(encoding="utf-8")
    for sub in member.choices:
        assert f"kotihub-register member {sub} " in text, sub
    if set(member.choices) == {"add"}:
        assert "The CLI can only add members" in text
