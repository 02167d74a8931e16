"""Messages the technician sees, in Finnish and English (the service's customers speak both).

The daemon reports checks by message id and parameters; the CLI renders them in the language chosen by ``--lang``,
else by ``LC_ALL`` / ``LC_MESSAGES`` / ``LANG`` (``fi_FI.UTF-8`` → Finnish), else English.
"""

from __future__ import annotations

import os
from typing import Any, Final

LANGUAGES: Final = ("en", "fi")

MESSAGES: Final[dict[str, dict[str, str]]] = {
    "status.ok": {"en": "OK", "fi": "OK"},
    "status.warn": {"en": "WARN", "fi": "VAROITUS"},
    "status.fail": {"en": "FAIL", "fi": "VIRHE"},
    "selftest.title": {"en": "kotihub self-test", "fi": "kotihubin itsetestaus"},
    "selftest.summary": {
        "en": "{ok} OK, {warn} warnings, {fail} failures",
        "fi": "{ok} OK, {warn} varoitusta, {fail} virhettä",
    },
    "daemon.down": {
        "en": "the kotihub service is not running",
        "fi": "kotihub-palvelu ei ole käynnissä",
    },
    "daemon.down.fix": {
        "en": "start it: systemctl start kotihub; see journalctl -u kotihub",
        "fi": "käynnistä: systemctl start kotihub; katso journalctl -u kotihub",
    },
    "clock.trusted": {"en": "clock is trusted ({reason})", "fi": "kello on luotettava ({reason})"},
    "clock.untrusted": {"en": "clock is not trusted: {reason}", "fi": "kelloon ei voi luottaa: {reason}"},
    "clock.fix": {
        "en": "check the network and NTP (timedatectl); retention waits until the time is confirmed",
        "fi": "tarkista verkko ja NTP (timedatectl); säilytysajan poistot odottavat, kunnes aika on vahvistettu",
    },
    "disk.ok": {"en": "disk: {free} free", "fi": "levy: {free} vapaana"},
    "disk.low": {"en": "disk: only {free} free", "fi": "levy: vain {free} vapaana"},
    "disk.fix": {
        "en": "free space or fit a bigger card; below the reserve new readings are refused",
        "fi": "vapauta tilaa tai vaihda isompi kortti; varauksen alittuessa uusia mittauksia ei oteta vastaan",
    },
    "card.wear": {"en": "SD/eMMC wear estimate: {level}", "fi": "SD/eMMC-kulumisarvio: {level}"},
    "card.unknown": {
        "en": "card health: the card does not report wear",
        "fi": "kortin kunto: kortti ei kerro kulumistaan",
    },
    "card.fix": {
        "en": "plan a replacement with a high-endurance card",
        "fi": "vaihda kestävämpään (high endurance) korttiin",
    },
    "key.ok": {"en": "master key present ({where})", "fi": "pääavain löytyy ({where})"},
    "key.bad": {"en": "master key problem: {reason}", "fi": "pääavaimessa vikaa: {reason}"},
    "key.fix": {
        "en": "reinstall with scripts/install (never replace an existing key: stored data would be lost)",
        "fi": "asenna uudelleen scripts/install-komennolla (älä korvaa olemassa olevaa avainta: tiedot menetettäisiin)",
    },
    "driver.ok": {"en": "driver {name}: running", "fi": "ajuri {name}: käynnissä"},
    "driver.restarting": {
        "en": "driver {name}: restarted {restarts} times, last error: {error}",
        "fi": "ajuri {name}: käynnistetty uudelleen {restarts} kertaa, viimeisin virhe: {error}",
    },
    "driver.fix": {
        "en": "see journalctl -u kotihub for the driver's errors",
        "fi": "katso ajurin virheet: journalctl -u kotihub",
    },
    "mqtt.ok": {"en": "MQTT broker reachable", "fi": "MQTT-välittäjä tavoitettavissa"},
    "mqtt.down": {"en": "MQTT broker not reachable: {reason}", "fi": "MQTT-välittäjää ei tavoiteta: {reason}"},
    "mqtt.fix": {
        "en": "check that mosquitto runs and [drivers.mqtt] host/port are right",
        "fi": "tarkista, että mosquitto on käynnissä ja [drivers.mqtt] host/port ovat oikein",
    },
    "ble.ok": {"en": "Bluetooth adapter present and scanning", "fi": "Bluetooth-sovitin löytyy ja kuuntelee"},
    "ble.down": {"en": "no Bluetooth adapter: {reason}", "fi": "Bluetooth-sovitinta ei löydy: {reason}"},
    "ble.fix": {
        "en": "check bluetoothd (systemctl status bluetooth) and the adapter in [drivers.ble]",
        "fi": "tarkista bluetoothd (systemctl status bluetooth) ja sovitin [drivers.ble]-osiossa",
    },
    "register.ok": {
        "en": "register reachable, certificate valid until {until}",
        "fi": "rekisteri tavoitettavissa, varmenne voimassa {until} asti",
    },
    "register.down": {"en": "register not reachable: {error}", "fi": "rekisteriä ei tavoiteta: {error}"},
    "register.fix": {
        "en": "check the network; data is kept on the hub and sent when the register answers",
        "fi": "tarkista verkkoyhteys; tiedot säilyvät keskittimessä ja lähtevät, kun rekisteri vastaa",
    },
    "sirens.fix": {
        "en": "pair a Zigbee siren, or list a siren relay under [[drivers.mqtt.sirens]]; check it has power",
        "fi": "liitä Zigbee-sireeni tai lisää sireenirele kohtaan [[drivers.mqtt.sirens]]; tarkista sen virta",
    },
    "register.expiring": {
        "en": "hub certificate expires {until}",
        "fi": "keskittimen varmenne vanhenee {until}",
    },
    "register.unprovisioned": {
        "en": "not provisioned: the uplink is off",
        "fi": "ei käyttöönotettu: tiedonsiirto on pois päältä",
    },
    "register.unprovisioned.fix": {
        "en": "run kotihub provision --register URL --token T",
        "fi": "aja kotihub provision --register URL --token T",
    },
    "lanes.ok": {"en": "uplink lanes draining ({waiting} waiting)", "fi": "tiedonsiirto etenee ({waiting} jonossa)"},
    "lanes.stuck": {
        "en": "uplink lane {lane}: {waiting} waiting, last error: {error}",
        "fi": "tiedonsiirtojono {lane}: {waiting} jonossa, viimeisin virhe: {error}",
    },
    "alarm.ok": {
        "en": "test alarm acknowledged by the register in {ms} ms",
        "fi": "rekisteri kuittasi testihälytyksen {ms} ms:ssa",
    },
    "alarm.fail": {
        "en": "test alarm not acknowledged within {s} s",
        "fi": "testihälytystä ei kuitattu {s} sekunnissa",
    },
    "sirens.ok": {
        "en": "{total} siren(s) reachable; smoke at any detector sounds them all",
        "fi": "{total} sireeniä tavoitettavissa; savu missä tahansa varoittimessa soittaa ne kaikki",
    },
    "sirens.offline": {
        "en": "{n} of {total} siren(s) cannot be reached",
        "fi": "{n}/{total} sireeniä ei tavoiteta",
    },
    "sirens.none": {
        "en": "no siren known: a smoke alarm is heard only from the detector itself",
        "fi": "sireenejä ei ole: palohälytys kuuluu vain varoittimesta itsestään",
    },
    "alarm.skipped": {
        "en": "test alarm not sent (the uplink is off)",
        "fi": "testihälytystä ei lähetetty (tiedonsiirto pois päältä)",
    },
}


def choose_language(explicit: str | None = None, environ: dict[str, str] | None = None) -> str:
    if explicit in LANGUAGES:
        return explicit
    env = os.environ if environ is None else environ
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(var, "")
        if value:
            return "fi" if value.lower().startswith("fi") else "en"
    return "en"


def text(message_id: str, lang: str, **params: Any) -> str:
    """The message in ``lang`` with its parameters; an unknown id shows itself rather than failing."""
    entry = MESSAGES.get(message_id)
    if entry is None:
        return message_id
    template = entry.get(lang) or entry["en"]
    try:
        return template.format(**params)
    except (KeyError, IndexError):
        return template
