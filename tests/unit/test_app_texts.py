"""The app's words: every key in Finnish and English, every key a template uses registered, the language picked
from the cookie, then Accept-Language, then Finnish."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.requests import Request

from cloud_sync.register import webapp
from cloud_sync.register.webapp import i18n

TEMPLATES = Path(webapp.__file__).parent / "templates"


@pytest.fixture(scope="module", autouse=True)
def _all_pages() -> None:
    """Every page module registers its texts on import."""
    import importlib

    for name in webapp.page_modules():
        importlib.import_module(name)


def test_every_key_has_finnish_and_english() -> None:
    assert i18n.missing() == {}
    assert all(text.strip() for lang in i18n.LANGS for text in i18n._TEXTS[lang].values())


def test_every_key_a_template_uses_is_registered() -> None:
    used = set()
    for tpl in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z0-9_.]+)["']\s*\)""", tpl.read_text()))
    assert used, "no t('...') calls found: the pattern is stale"
    assert used - set(i18n._TEXTS["fi"]) == set()


def test_a_key_cannot_be_registered_twice_with_other_words() -> None:
    i18n.register_texts({"fi": {"test.same": "Sama"}, "en": {"test.same": "Same"}})
    i18n.register_texts({"fi": {"test.same": "Sama"}})  # the same words again: fine
    with pytest.raises(ValueError, match="already registered"):
        i18n.register_texts({"en": {"test.same": "Other"}})
    with pytest.raises(ValueError, match="unknown languages"):
        i18n.register_texts({"sv": {"test.same": "Samma"}})


def _request(cookie: str = "", accept: str = "") -> Request:
    headers = []
    if cookie:
        headers.append((b"cookie", f"lang={cookie}".encode()))
    if accept:
        headers.append((b"accept-language", accept.encode()))
    return Request({"type": "http", "method": "GET", "path": "/app/home", "headers": headers})


@pytest.mark.parametrize(
    ("cookie", "accept", "lang"),
    [
        ("", "", "fi"),
        ("en", "fi-FI", "en"),
        ("sv", "en-GB,en;q=0.9", "en"),  # an unknown cookie value is ignored
        ("", "sv-SE, en;q=0.8, fi;q=0.9", "fi"),
        ("", "de, en-US;q=0.5", "en"),
        ("", "en;q=0, fi;q=0.1", "fi"),
        ("", "en;q=bogus, fi", "fi"),
        ("", "de, sv", "fi"),
    ],
)
def test_pick_lang(cookie: str, accept: str, lang: str) -> None:
    assert i18n.pick_lang(_request(cookie, accept)) == lang
