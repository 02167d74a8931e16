"""The plain-language notice of the data page says the same things in Finnish and English, and names no company
(the privacy notice it is written from names real ones; the project keeps them out)."""

from __future__ import annotations

from cloud_sync.register.webapp.notice import NOTICE


def test_both_languages_have_the_same_sections() -> None:
    assert set(NOTICE) == {"fi", "en"}
    fi, en = NOTICE["fi"], NOTICE["en"]
    assert len(fi) == len(en) == 5
    for (h_fi, p_fi), (h_en, p_en) in zip(fi, en, strict=True):
        assert h_fi and h_en and len(p_fi) == len(p_en)
        assert all(p.strip() for p in (*p_fi, *p_en))


def test_the_notice_keeps_its_promises_and_names_no_company() -> None:
    text = " ".join(p for lang in NOTICE.values() for _, ps in lang for p in ps)
    for promise in ("6 kuukautta", "6 months", "EU", "Poista tietoni", "Erase my data"):
        assert promise in text
    for name in ("Lounea", "Viva Labs", "Amazon", "Google", "Twilio", "TrackJS", "Oiva"):
        assert name not in text
