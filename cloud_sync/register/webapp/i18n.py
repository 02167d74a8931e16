"""Finnish and English texts. Each page module registers its own catalogue with :func:`register_texts`, so no
two engineers edit one shared file; a unit test fails when a key lacks either language."""

from __future__ import annotations

from typing import Final

from starlette.requests import Request

LANGS: Final = ("fi", "en")
DEFAULT_LANG: Final = "fi"

_TEXTS: dict[str, dict[str, str]] = {lang: {} for lang in LANGS}


def register_texts(texts: dict[str, dict[str, str]]) -> None:
    """Adds ``{"fi": {key: text}, "en": {key: text}}``; a key already registered with another text is an error
    (two pages would otherwise silently share or override each other's words)."""
    unknown = set(texts) - set(LANGS)
    if unknown:
        raise ValueError(f"unknown languages {sorted(unknown)}")
    for lang, entries in texts.items():
        for key, text in entries.items():
            old = _TEXTS[lang].get(key)
            if old is not None and old != text:
                raise ValueError(f"text {key!r} ({lang}) is already registered with another wording")
            _TEXTS[lang][key] = text


def missing() -> dict[str, set[str]]:
    """Keys registered in one language but not in the other, per language lacking them."""
    every = set().union(*(set(d) for d in _TEXTS.values()))
    return {lang: every - set(_TEXTS[lang]) for lang in LANGS if every - set(_TEXTS[lang])}


def t(key: str, lang: str) -> str:
    """The text for ``key`` in ``lang``; an unknown key raises KeyError (a page test finds it)."""
    return _TEXTS[lang if lang in _TEXTS else DEFAULT_LANG][key]


def pick_lang(request: Request) -> str:
    """The ``lang`` cookie if set to a known language, else the first known language of Accept-Language (by
    q-value), else Finnish."""
    cookie = request.cookies.get("lang", "")
    if cookie in LANGS:
        return cookie
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(request.headers.get("accept-language", "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGS and q > 0:
            ranked.append((-q, i, primary))
    return min(ranked)[2] if ranked else DEFAULT_LANG


register_texts(
    {
        "fi": {
            "app.name": "Kotihub",
            "nav.home": "Koti",
            "nav.alarms": "Hälytykset",
            "nav.signout": "Kirjaudu ulos",
            "nav.main": "Päävalikko",
            "nav.skip": "Siirry sisältöön",
            "nav.lang": "Kieli",
            "nav.lang.fi": "Suomeksi",
            "nav.lang.en": "In English",
        },
        "en": {
            "app.name": "Kotihub",
            "nav.home": "Home",
            "nav.alarms": "Alarms",
            "nav.signout": "Sign out",
            "nav.main": "Main menu",
            "nav.skip": "Skip to content",
            "nav.lang": "Language",
            "nav.lang.fi": "Suomeksi",
            "nav.lang.en": "In English",
        },
    }
)
