"""The app's key endpoints over plain HTTPS, on SQLite and PostgreSQL: CSRF on every change, the household of the
session only, a member list signed by someone who is not a member refused, a signature submitted in another
member's session refused, and bad bodies answered with precise 4xx. The browser flows are in
tests/browser/test_app_{clips,members}.py."""

from __future__ import annotations

import base64

import pyrage
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync import memberlist as ml
from cloud_sync.register.webapp import memberchange
from tests.support.appkeys import directory_member, upload_clip
from tests.support.webapp import WebAppServer


def _signed(proposal: dict[str, str], signer: str, key: Ed25519PrivateKey) -> dict[str, str]:
    body = base64.b64decode(proposal["body"])
    return {"body": proposal["body"], "signer": signer, "sig": key.sign(ml.signed_bytes(body)).hex()}


def test_key_endpoints_are_csrf_checked_scoped_and_refuse_forgeries(webapp_server_any: WebAppServer) -> None:
    server = webapp_server_any
    home, other = server.household("Virtanen"), server.household("Korhonen")
    aino = server.member(home, "Aino")  # signs version 1 with keys made in the test (the first member's device)
    aino_key = server.register.members[home][0].signing
    bert = server.member(other, "Bert")
    mallory = directory_member(server, home, "Mallory")  # in the directory, not in the list
    mallory_key = Ed25519PrivateKey.generate()
    mallory_pub = {"age": str(pyrage.x25519.Identity.generate().to_public()), "ed25519": ml.public_hex(mallory_key)}

    with server.signed_in(aino) as a, server.signed_in(bert) as b, server.signed_in(mallory) as m:
        # Every change needs the session's CSRF token.
        for path in ("/app/members/keys", "/app/members/propose", "/app/members/sign"):
            assert a.post(path, json={}).status_code == 403
        assert a.post("/app/members/invite", data={"name": "Eero"}).status_code == 403

        # Each session sees its own household's list only.
        [bert_version] = b.get("/app/members/log").json()
        assert ml.open_signed(ml.SignedList(**bert_version))[0].household == other
        assert aino not in b.get("/app/members").text and bert not in a.get("/app/members").text

        # Mallory posts her keys; a change proposed to her is refused (not a member), and a version she signs
        # herself is refused by the register as the hub would refuse it.
        assert m.post("/app/members/keys", json=mallory_pub, headers={"X-CSRF-Token": m.csrf}).status_code == 201
        r = m.post("/app/members/propose", json={"action": "remove", "member": aino}, headers={"X-CSRF-Token": m.csrf})
        assert (r.status_code, r.json()["error"]) == (403, "not_a_member")
        [req] = memberchange.requests(server.register.reg, home)
        add = a.post(
            "/app/members/propose", json={"action": "add", "request": req.id}, headers={"X-CSRF-Token": a.csrf}
        )
        assert add.status_code == 200
        proposal = add.json()
        r = m.post("/app/members/sign", json=_signed(proposal, mallory, mallory_key), headers={"X-CSRF-Token": m.csrf})
        assert (r.status_code, r.json()["error"]) == (422, "member_list_bad_signature")
        # Aino's genuine signature, submitted in Mallory's session: the signer must be the session's member.
        r = m.post("/app/members/sign", json=_signed(proposal, aino, aino_key), headers={"X-CSRF-Token": m.csrf})
        assert (r.status_code, r.json()["error"]) == (403, "signer_not_session")
        # Bert cannot append this household's version to his own household's list.
        r = b.post("/app/members/sign", json=_signed(proposal, bert, aino_key), headers={"X-CSRF-Token": b.csrf})
        assert (r.status_code, r.json()["error"]) == (409, "member_list_fork")
        assert memberchange.latest(server.register.reg, home).version == 1  # type: ignore[union-attr]

        # Bad bodies: precise 4xx, nothing stored.
        csrf = {"X-CSRF-Token": a.csrf, "Content-Type": "application/json"}
        r = a.post("/app/members/propose", content=b"{not json", headers=csrf)
        assert (r.status_code, r.json()["error"]) == (400, "bad_json")
        r = a.post("/app/members/propose", json={"action": "adopt"}, headers={"X-CSRF-Token": a.csrf})
        assert r.status_code == 422 and "action" in r.json()["detail"]
        r = a.post(
            "/app/members/keys", json={"age": "age1x", "ed25519": "00", "x": 1}, headers={"X-CSRF-Token": a.csrf}
        )
        assert r.status_code == 422
        r = a.post("/app/members/sign", content=b"{" + b" " * 40_000 + b"}", headers=csrf)
        assert r.status_code == 413

        # Clips: listed and served byte for byte to the household's own session only.
        sealed = upload_clip(server.register, server.register.enroll(home), "clip-a", b"clip", [mallory_pub["age"]])
        assert "clip-a" in a.get("/app/clips").text and "clip-a" not in b.get("/app/clips").text
        served = a.get("/app/clips/clip-a/age")
        assert served.status_code == 200 and served.headers["cache-control"] == "no-store"
        assert served.content == sealed
        assert b.get("/app/clips/clip-a/age").status_code == 404
        assert a.get("/app/clips/..%2Fclip-a/age").status_code == 404

        # And the genuine one, signed by Aino as her browser would: stored as version 2.
        r = a.post("/app/members/sign", json=_signed(proposal, aino, aino_key), headers={"X-CSRF-Token": a.csrf})
        assert r.status_code == 201 and r.json()["version"] == 2
