"""Schemathesis against the real register over TLS: every operation of the served OpenAPI document, with every
check, as the hub (client certificate) and as the household and each operator role (bearer tokens). The document
must be true to the service: every status, error body, header and content type the register answers is in it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import requests
import schemathesis
import zstandard
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS

from tests.support.register import HubIdentity, start_register

EXAMPLES = int(os.environ.get("KOTIHUB_OPENAPI_EXAMPLES", "6"))
"""Per operation and phase: enough to reach every status the operation documents, few enough for CI (< 2 min)."""


@schemathesis.serializer("application/msgpack", "application/vnd.kotihub.reading-columns+msgpack")
def _msgpack_zstd(ctx: object, value: object) -> bytes:
    # Ingest bodies are msgpack, sent zstd-compressed (the documented Content-Encoding header says so).
    return zstandard.ZstdCompressor().compress(msgspec.msgpack.encode(_fit(value)))


def _fit(value: object) -> object:
    """msgpack has no integers beyond 64 bits: send those as strings (the register must refuse them either way)."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return str(value)
    if isinstance(value, dict):
        return {k: _fit(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fit(v) for v in value]
    return value


class Live:
    def __init__(self, tmp: Path) -> None:
        # Schemathesis sends requests without credentials on purpose (ignored_auth); the rate limits for failed
        # authentication have their own tests and would only turn its later requests into 429s here.
        self.reg = start_register(tmp / "register", auth_failure_burst=1_000_000, enroll_burst=1_000_000)
        self.hub: HubIdentity = self.reg.enroll()
        self.household = self.hub.household_id
        self.reg.add_member(self.household)
        self.sessions = {"hub": self.hub.session()}
        stranger = self.reg.create_household("Muukalainen")
        for role in ("household", "support", "admin", "stranger"):
            s = requests.Session()
            s.trust_env = False
            s.verify = str(self.reg.ca_file)
            if role == "stranger":
                token = self.reg.api_token("household", stranger)
            else:
                token = self.reg.api_token(role, self.household if role == "household" else None)
            s.headers["Authorization"] = f"Bearer {token}"
            self.sessions[role] = s

    def close(self) -> None:
        self.reg.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    live = Live(tmp_path_factory.mktemp("openapi"))
    try:
        yield live
    finally:
        live.close()


def _call(live: Live, case: schemathesis.Case) -> None:
    security = case.operation.definition.raw.get("security") or [{}]
    kind = next(iter(security[0]), "")
    # Each with its credentials, and without (401) or with another household's token (403): those replies must be
    # in the document too.
    if kind == "hubCertificate":
        roles = ["hub", "anonymous"]
    elif kind:
        roles = ["household", "support", "admin", "stranger", "anonymous"]
    else:
        roles = ["anonymous"]
    if "h" in case.path_parameters and case.meta is not None and case.meta.generation.mode.is_positive:
        case.path_parameters["h"] = live.household  # reach past "no such household" to the operation itself
    for role in roles:
        session = live.sessions.get(role)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            session.verify = str(live.reg.ca_file)
        # requests takes verify/cert per call over the session's, and schemathesis passes its own: give ours.
        tls: dict[str, object] = {"verify": str(live.reg.ca_file)}
        if role == "hub":
            tls["cert"] = (str(live.hub.cert), str(live.hub.key))
        case.call_and_validate(base_url=live.reg.url, session=session, checks=CHECKS.get_all(), **tls)


def test_the_register_matches_its_openapi_document(live: Live) -> None:
    # The document the register serves, fetched over TLS like any client would.
    schema = schemathesis.openapi.from_url(f"{live.reg.url}/v1/openapi.json", verify=str(live.reg.ca_file))
    # Every check there is (the OpenAPI ones register themselves once a schema is loaded, so not at import).
    # 422 is the register's "well formed but not valid": a CSR that does not parse, a cursor naming no command, an
    # update changing nothing; 400 a clip whose bytes contradict its declared size or digest. No schema can say
    # that; every other answer to a valid request must be acceptance.
    acceptance = schema.config.checks.positive_data_acceptance
    acceptance.expected_statuses = [*acceptance.expected_statuses, "400", "422"]
    names = set(CHECKS.get_all_names())
    assert {"status_code_conformance", "response_schema_conformance", "negative_data_rejection"} <= names
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate],  # report the first failing case; shrinking costs minutes
                report_multiple_bugs=False,
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                _call(live, case)

            try:
                run()
            except Unsatisfiable:  # nothing to make negative (an operation without parameters or body)
                pass
            except (
                Exception,
                BaseExceptionGroup,
            ) as exc:  # collected, so that one run shows every operation that disagrees
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert operations >= 25
    assert not failures, "\n\n".join(failures)


def test_405_names_the_allowed_methods(live: Live) -> None:
    s = live.sessions["household"]
    r = s.put(f"{live.reg.url}/v1/households/{live.household}/commands", json={})
    assert r.status_code == 405
    assert set(r.headers["Allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    assert r.json()["error"] == "http_error"


def test_the_document_names_every_error_the_register_answers(live: Live) -> None:
    doc = requests.get(f"{live.reg.url}/v1/openapi.json", verify=str(live.reg.ca_file), timeout=30).json()
    ops = {(m.upper(), path): op for path, item in doc["paths"].items() for m, op in item.items()}
    ingest = ops[("POST", "/v1/ingest/{lane}")]["responses"]
    assert {"400", "401", "403", "404", "409", "413", "415", "422", "429", "503"} <= set(ingest)
    assert ingest["503"]["headers"]["Retry-After"]
    export = ops[("GET", "/v1/households/{h}/export")]["responses"]["200"]["content"]
    assert list(export) == ["application/x-ndjson"]
    assert "Link" in ops[("GET", "/v1/households/{h}/commands")]["responses"]["200"]["headers"]
    for op in ops.values():
        for code, reply in op["responses"].items():
            if code.startswith(("4", "5")):
                assert reply["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in doc["components"]["schemas"]
