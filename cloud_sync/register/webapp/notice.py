"""What the "Näytä tietoni" page tells in plain language: what is held, why, for how long and who processes it.

Written from the service's privacy notice (/work/shared/reference/privacy_notice.txt, sections 4, 5, 7, 9, 10),
naming processors by what they do, never by company. Each entry is (heading, paragraphs) per language; the data
page shows them in order. A test checks the two languages have the same sections.
"""

from __future__ import annotations

from typing import Final

Section = tuple[str, tuple[str, ...]]

NOTICE: Final[dict[str, tuple[Section, ...]]] = {
    "fi": (
        (
            "Mitä tietoja pidämme",
            (
                "Kotitaloutesi perustiedot: nimi, jäsenten nimet ja yhteystiedot (puhelin, sähköposti, kieli).",
                "Anturien mittaukset (esim. lämpötila, kosteus, kirkkaus) ja tapahtumat (esim. savuhälytys, "
                "vuoto, liike, ovi).",
                "Kameroiden videot salattuina: vain kotitaloutesi jäsenten avaimet avaavat ne; ylläpito ja "
                "asiakaspalvelu eivät näe videoiden sisältöä.",
                "Keskittimen ja laitteiden diagnostiikka (tila, levytila, yhteydet), markkinointiluvat ja -kiellot, "
                "hälytysten ilmoitukset ja näiden kaikkien muutoshistoria.",
            ),
        ),
        (
            "Miksi",
            (
                "Jotta älykotipalvelu toimii: näet anturit ja hälytykset tässä sovelluksessa, ja savuhälytys "
                "tavoittaa ihmisen tekstiviestillä, sähköpostilla tai puhelulla.",
                "Vikojen selvittämiseen ja palvelun kehittämiseen. Markkinointiin vain, jos olet antanut luvan.",
            ),
        ),
        (
            "Kuinka kauan",
            (
                "Älykotipalvelun tiedot säilytetään 6 kuukautta, minkä jälkeen ne tuhotaan automaattisesti.",
                "Voit poistaa ne milloin tahansa itse: Poista tietoni.",
            ),
        ),
        (
            "Kuka käsittelee",
            (
                "Palveluntarjoaja rekisterinpitäjänä sekä sen alihankkijat sopimusten nojalla: tekninen alusta, "
                "pilvipalvelu, käyttöanalytiikka, tekstiviesti- ja puhelupalvelu sekä virheraportointi.",
                "Tietoja käsitellään EU:ssa ja Yhdysvalloissa EU:n tietosuojasääntöjen mukaisesti.",
            ),
        ),
        (
            "Oikeutesi",
            (
                "Voit katsoa tietosi ja ladata ne koneluettavassa muodossa (tällä sivulla), korjata ne, poistaa "
                "ne, rajoittaa niiden käsittelyä ja tehdä valituksen tietosuojavaltuutetulle.",
            ),
        ),
    ),
    "en": (
        (
            "What we hold",
            (
                "Your household's basic details: its name, its members' names and contact details (phone, e-mail, "
                "language).",
                "Sensor readings (e.g. temperature, humidity, light) and events (e.g. a smoke alarm, a leak, motion, "
                "a door).",
                "Camera videos, encrypted: only your household members' keys open them; administrators and "
                "customer service cannot see their content.",
                "Diagnostics of the hub and its devices (state, disk space, connections), marketing consents and "
                "bans, the notifications of alarms, and the history of changes to all of these.",
            ),
        ),
        (
            "Why",
            (
                "So that the smart-home service works: you see your sensors and alarms in this app, and a smoke "
                "alarm reaches a person by text message, e-mail or a phone call.",
                "To find faults and to develop the service. For marketing only if you have consented.",
            ),
        ),
        (
            "For how long",
            (
                "Smart-home data is kept for 6 months and then destroyed automatically.",
                "You can erase it yourself at any time: Erase my data.",
            ),
        ),
        (
            "Who processes it",
            (
                "The service provider as the controller, and its subcontractors under contract: a technical "
                "platform, a cloud provider, usage analytics, a text message and voice call service, and error "
                "reporting.",
                "The data is processed in the EU and in the USA under the EU's data protection rules.",
            ),
        ),
        (
            "Your rights",
            (
                "You can see your data and download it in a machine-readable form (on this page), have it "
                "corrected, erase it, restrict its processing, and complain to the data protection authority.",
            ),
        ),
    ),
}
