"""The register's household API as a member's device uses it for the member list (bearer token, HTTPS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import requests

from cloud_sync import memberlist as ml
from cloud_sync import protocol as p

TIMEOUT = (10.0, 30.0)


class RegisterRefused(Exception):
    """The register answered with an error; ``code`` is its machine code (``member_list_stale``, ...)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"register refused ({status} {code}): {detail}")
        self.status, self.code = status, code


class HouseholdClient:
    def __init__(self, url: str, token: str, household: str, *, ca_file: Path | None = None) -> None:
        self.base = f"{url.rstrip('/')}/v1/households/{household}"
        self.household = household
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = str(ca_file) if ca_file is not None else True
        self.session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.session.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> bytes:
        try:
            resp = self.session.request(method, self.base + path, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise RegisterRefused(0, "unreachable", str(exc)) from exc
        if resp.status_code >= 400:
            try:
                err = msgspec.json.decode(resp.content, type=p.ErrorBody)
                raise RegisterRefused(resp.status_code, err.error, err.detail)
            except msgspec.DecodeError:
                raise RegisterRefused(resp.status_code, "http_error", resp.text[:200]) from None
        return resp.content

    def log(self) -> list[p.MemberLogEntry]:
        """Every stored version, oldest first (paged)."""
        out: list[p.MemberLogEntry] = []
        while True:
            page = msgspec.json.decode(
                self._call("GET", "/member-log", params={"after": len(out), "limit": 500}),
                type=list[p.MemberLogEntry],
            )
            out.extend(page)
            if len(page) < 500:
                return out

    def append(self, signed: ml.SignedList) -> p.MemberLogEntry:
        data = msgspec.json.encode(signed)
        headers = {"Content-Type": "application/json"}
        return msgspec.json.decode(self._call("POST", "/member-log", data=data, headers=headers), type=p.MemberLogEntry)

    def requests(self) -> list[p.MemberRequestRecord]:
        return msgspec.json.decode(self._call("GET", "/member-requests"), type=list[p.MemberRequestRecord])
