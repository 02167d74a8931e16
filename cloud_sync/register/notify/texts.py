"""Message texts, Finnish and English. As little as possible: what and where, and the acknowledgement link."""

from __future__ import annotations

from typing import Final

WHAT: Final[dict[str, dict[str, str]]] = {
    "fi": {
        "smoke": "Palovaroitin",
        "hub_silent": "Kotihub ei vastaa",
        "device_offline": "Laite ei vastaa",
        "battery_low": "Paristo vähissä",
        "detector_fault": "Palovaroittimen vika",
        "tamper": "Palovaroitinta on käsitelty",
        "test": "Palovaroittimen testi",
        "end_of_life": "Palovaroitin on vaihdettava",
        "storage_full": "Kotihubin tila loppumassa",
    },
    "en": {
        "smoke": "Smoke alarm",
        "hub_silent": "Home hub not responding",
        "device_offline": "Device not responding",
        "battery_low": "Battery low",
        "detector_fault": "Smoke detector fault",
        "tamper": "Smoke detector tampered with",
        "test": "Smoke detector test",
        "end_of_life": "Smoke detector needs replacing",
        "storage_full": "Home hub storage nearly full",
    },
}
LATE: Final = {"fi": "myöhässä", "en": "late"}
ACK: Final = {"fi": "Kuittaa", "en": "Acknowledge"}
PRESS_1: Final = {"fi": "Paina 1 kuitataksesi.", "en": "Press 1 to acknowledge."}


def headline(category: str, place: str, language: str, *, late: bool) -> str:
    lang = language if language in WHAT else "fi"
    text = WHAT[lang].get(category, category)
    if place:
        text += f": {place}"
    if late:
        text += f" ({LATE[lang]})"
    return text


def sms(category: str, place: str, language: str, link: str, *, late: bool) -> str:
    lang = language if language in WHAT else "fi"
    return f"{headline(category, place, lang, late=late)}. {ACK[lang]}: {link}"


def voice(category: str, place: str, language: str, *, late: bool) -> str:
    lang = language if language in WHAT else "fi"
    return f"{headline(category, place, lang, late=late)}. {PRESS_1[lang]}"
