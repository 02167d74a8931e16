"""Regenerates ``vectors.json``: a short member-list history signed with fixed keys (Ed25519 signatures are
deterministic, RFC 8032), made with ``cloud_sync.memberlist`` when the format was defined.

Run from the repository root: ``.venv/bin/python tests/vectors/memberlist/generate.py``. The output is committed and
must never change without a new format version: ``tests/property/test_memberlist.py`` recomputes every byte from
the keys below and compares.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync import memberlist as ml

OUT = Path(__file__).with_name("vectors.json")
HOUSEHOLD = "hh_golden"
# Ed25519 private keys (32-byte seeds) and age recipients, chosen once; no identity is needed to check signatures.
MEMBERS = {
    "m_aino": ("11" * 32, "age14s584atzajrfyr6vcz6aex3xu00zdjcz572u6d8ze5cn93j8fqdswqvq4v"),
    "m_eero": ("22" * 32, "age175vg9dnn0tdl0taqnws4y25wwqda89jcxdej5m4kdj4thkfa2d5qj5yu9d"),
    "m_eero2": ("33" * 32, "age144rh5pf6ve7pgkq7w975matecthgedyhmf5nhh4qmf3j7k8ea9cqeh06gd"),
}


def key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(MEMBERS[name][0]))


def entry(member_id: str, keyname: str) -> ml.Entry:
    return ml.Entry(id=member_id, age=MEMBERS[keyname][1], ed25519=ml.public_hex(key(keyname)))


def history() -> list[tuple[str, ml.SignedList]]:
    """(what changed, signed version) for versions 1..4: genesis, add, rotate, remove."""
    out: list[tuple[str, ml.SignedList]] = []

    def step(what: str, members: list[ml.Entry], signer: str, keyname: str) -> None:
        prev = ml.body_digest(ml.open_signed(out[-1][1])[1]) if out else ""
        body = ml.make_body(HOUSEHOLD, len(out) + 1, prev, members)
        out.append((what, ml.sign(body, signer, key(keyname))))

    step("genesis: Aino alone, self-signed", [entry("m_aino", "m_aino")], "m_aino", "m_aino")
    step("Aino adds Eero", [entry("m_aino", "m_aino"), entry("m_eero", "m_eero")], "m_aino", "m_aino")
    step("Eero rotates his keys (signed with the old key)", [entry("m_aino", "m_aino"), entry("m_eero", "m_eero2")],
         "m_eero", "m_eero")  # fmt: skip
    step("Eero removes Aino", [entry("m_eero", "m_eero2")], "m_eero", "m_eero2")
    return out


def main() -> None:
    cases = []
    for what, signed in history():
        data = base64.b64decode(signed.body)
        cases.append(
            {
                "what": what,
                "body_utf8": data.decode(),
                "digest": ml.body_digest(data),
                "signed": json.loads(ml.encode_signed(signed)),
            }
        )
    codes = {name: ml.pairing_code(ml.public_hex(key(name))) for name in MEMBERS}
    OUT.write_text(json.dumps({"household": HOUSEHOLD, "pairing_codes": codes, "versions": cases}, indent=1) + "\n")


if __name__ == "__main__":
    main()
