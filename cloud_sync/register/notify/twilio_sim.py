"""A local Twilio simulator for tests, benchmarks and ``kotihub demo`` (never production): the documented REST
resources the register uses, and callbacks posted as Twilio does.

Speaks ``/2010-04-01/Accounts/{AccountSid}/Messages.json`` and ``Calls.json`` (create: form-encoded POST with HTTP
basic auth ``AccountSid:AuthToken``, 201 with the resource as JSON; list: GET with ``To``, ``From``, ``DateSent>``
/ ``StartTime>`` filters and Twilio's paging envelope; errors as Twilio's ``{code, message, more_info, status}``).
After accepting a message it posts ``StatusCallback`` (``MessageStatus=sent``, then ``delivered``) form-encoded
and signed with ``X-Twilio-Signature`` (HMAC-SHA1 of URL + sorted params with the auth token, Twilio's documented
scheme, computed with the twilio library's own validator). A call answers at once; :meth:`TwilioSimulator.press`
posts the digit to the call's ``<Gather action=…>`` as the caller pressing it would.

Fault injection: :meth:`fail_next` (answer 5xx/429 without accepting), :meth:`stall_next` (accept, then answer
only after the client gave up: an ambiguous outcome). Everything accepted is counted in :attr:`accepted`.
"""

from __future__ import annotations

import base64
import calendar
import email.utils
import json
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from twilio.request_validator import RequestValidator

_PATH = re.compile(
    r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-f]{32})/(?P<res>Messages|Calls)(/(?P<one>CA[0-9a-f]{32}))?\.json$"
)
_GATHER = re.compile(r'<Gather[^>]*action="(?P<action>[^"]+)"')


def _rfc2822(t: float) -> str:
    return email.utils.formatdate(t, usegmt=False).replace("-0000", "+0000")


@dataclass
class Accepted:
    sid: str
    kind: str  # "sms" or "call"
    to: str
    from_: str
    body: str
    created: float
    status_callback: str
    twiml: str = ""
    callbacks: list[str] = field(default_factory=list)
    ended_by_api: bool = False


class TwilioSimulator:
    def __init__(self, *, callback_ca: str | None = None, host: str = "127.0.0.1") -> None:
        self.account_sid = "AC" + secrets.token_hex(16)
        self.auth_token = secrets.token_hex(16)
        self.from_number = "+358401234567"
        self.validator = RequestValidator(self.auth_token)
        self.accepted: list[Accepted] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._faults: list[tuple[str, int]] = []
        self._callback_ca = callback_ca
        self._session = requests.Session()
        self._session.trust_env = False
        self._session.verify = callback_ca or True
        self.callback_errors: list[str] = []
        self.on_accept: Callable[[Accepted], None] | None = None
        self.callbacks_enabled = True
        """False: no status callbacks (as when the register cannot be reached), so only a lookup can tell."""
        sim = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                sim._handle(self, "POST")

            def do_GET(self) -> None:
                sim._handle(self, "GET")

        self._host = host
        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="twilio-sim", daemon=True)
        self._thread.start()

    def trust(self, ca_file: str) -> None:
        """Verify the callback server (the register) against this CA."""
        self._session.verify = ca_file

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """The register's environment for this simulator."""
        return {
            "TWILIO_ACCOUNT_SID": self.account_sid,
            "TWILIO_AUTH_TOKEN": self.auth_token,
            "TWILIO_FROM_NUMBER": self.from_number,
            "KOTIHUB_TWILIO_API_URL": self.url,
        }

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --------------------------------------------------------------------------------------- fault injection

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        with self._lock:
            self._faults.extend([("fail", status)] * n)

    def stall_next(self, n: int = 1, seconds: float = 3.0) -> None:
        with self._lock:
            self._faults.extend([("stall", int(seconds * 1000))] * n)

    # ------------------------------------------------------------------------------------------- queries

    def sms(self) -> list[Accepted]:
        with self._lock:
            return [a for a in self.accepted if a.kind == "sms"]

    def calls(self) -> list[Accepted]:
        with self._lock:
            return [a for a in self.accepted if a.kind == "call"]

    def press(self, call_sid: str, digits: str = "1") -> requests.Response:
        """The callee presses ``digits``: POSTs to the call's Gather action, signed, as Twilio does."""
        call = next(a for a in self.calls() if a.sid == call_sid)
        m = _GATHER.search(call.twiml)
        assert m is not None, "the call's TwiML has no <Gather action>"
        action = m.group("action").replace("&amp;", "&")
        params = {
            "AccountSid": self.account_sid,
            "CallSid": call.sid,
            "From": call.from_,
            "To": call.to,
            "Digits": digits,
            "CallStatus": "in-progress",
            "Direction": "outbound-api",
            "ApiVersion": "2010-04-01",
        }
        return self._post_signed(action, params)

    # ----------------------------------------------------------------------------------------- internals

    def _post_signed(self, url: str, params: dict[str, str]) -> requests.Response:
        signature = self.validator.compute_signature(url, params)
        return self._session.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)

    def _callbacks(self, acc: Accepted, statuses: list[str]) -> None:
        for status in statuses:
            key = "MessageStatus" if acc.kind == "sms" else "CallStatus"
            params = {
                "AccountSid": self.account_sid,
                "From": acc.from_,
                "To": acc.to,
                "ApiVersion": "2010-04-01",
                ("MessageSid" if acc.kind == "sms" else "CallSid"): acc.sid,
                key: status,
            }
            if acc.kind == "sms":
                params["SmsSid"] = acc.sid
                params["SmsStatus"] = status
            try:
                r = self._post_signed(acc.status_callback, params)
                acc.callbacks.append(f"{status}:{r.status_code}")
            except requests.RequestException as exc:  # Twilio gives up on an unreachable callback too
                self.callback_errors.append(type(exc).__name__)

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: int, message: str) -> None:
        body = json.dumps(
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            }
        ).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _reply(self, h: BaseHTTPRequestHandler, status: int, obj: Any) -> None:
        body = json.dumps(obj).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except OSError:
            pass  # the client gave up (stall): it never learns of the acceptance

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        with self._lock:
            self.requests += 1
        parsed = urllib.parse.urlsplit(h.path)
        m = _PATH.match(parsed.path)
        if m is None:
            self._error(h, 404, 20404, "The requested resource was not found")
            return
        auth = h.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if auth != expected or m.group("sid") != self.account_sid:
            self._error(h, 401, 20003, "Authenticate")
            return
        kind = "sms" if m.group("res") == "Messages" else "call"
        if method == "GET":
            self._list(h, kind, dict(urllib.parse.parse_qsl(parsed.query)))
            return
        length = int(h.headers.get("Content-Length", "0"))
        form = dict(urllib.parse.parse_qsl(h.rfile.read(length).decode()))
        if m.group("one"):
            self._update_call(h, m.group("one"), form)
            return
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None and fault[0] == "fail":
            self._error(h, fault[1], 20500 if fault[1] >= 500 else 20429, "Simulated failure")
            return
        to = form.get("To", "")
        if not re.fullmatch(r"\+[1-9][0-9]{6,14}", to):
            self._error(h, 400, 21211, f"The 'To' number {to} is not a valid phone number.")
            return
        if kind == "sms" and not form.get("Body"):
            self._error(h, 400, 21602, "Message body is required.")
            return
        if kind == "call" and not (form.get("Twiml") or form.get("Url")):
            self._error(h, 400, 21205, "Url or Twiml is required.")
            return
        now = time.time()
        acc = Accepted(
            sid=("SM" if kind == "sms" else "CA") + secrets.token_hex(16),
            kind=kind,
            to=to,
            from_=form.get("From", ""),
            body=form.get("Body", ""),
            created=now,
            status_callback=form.get("StatusCallback", ""),
            twiml=form.get("Twiml", ""),
        )
        with self._lock:
            self.accepted.append(acc)
        if self.on_accept is not None:
            self.on_accept(acc)
        if fault is not None and fault[0] == "stall":
            time.sleep(fault[1] / 1000)
        self._reply(h, 201, self._resource(acc, "queued"))
        if acc.status_callback and self.callbacks_enabled:
            statuses = ["sent", "delivered"] if kind == "sms" else ["completed"]
            if kind == "call":
                return  # a call's status callback comes when it ends: see end_call
            threading.Thread(target=self._callbacks, args=(acc, statuses), daemon=True).start()

    def _update_call(self, h: BaseHTTPRequestHandler, sid: str, form: dict[str, str]) -> None:
        """``POST /Calls/{Sid}.json`` with ``Status=completed``: hang up (Twilio: 400/21220 if already over)."""
        with self._lock:
            call = next((a for a in self.accepted if a.sid == sid), None)
        if call is None:
            self._error(h, 404, 20404, "The requested resource was not found")
            return
        if form.get("Status") != "completed":
            self._error(h, 400, 21218, "Invalid Status")
            return
        if call.ended_by_api or any(c.startswith("completed") for c in call.callbacks):
            self._error(h, 400, 21220, "Call is not in-progress. Cannot redirect.")
            return
        call.ended_by_api = True
        self._reply(h, 200, self._resource(call, "completed"))

    def end_call(self, call_sid: str) -> None:
        call = next(a for a in self.calls() if a.sid == call_sid)
        self._callbacks(call, ["completed"])

    def _resource(self, acc: Accepted, status: str) -> dict[str, Any]:
        base = f"/2010-04-01/Accounts/{self.account_sid}"
        created = _rfc2822(acc.created)
        if acc.kind == "sms":
            return {
                "sid": acc.sid,
                "account_sid": self.account_sid,
                "to": acc.to,
                "from": acc.from_,
                "body": acc.body,
                "status": status,
                "direction": "outbound-api",
                "num_segments": "1",
                "date_created": created,
                "date_updated": created,
                "date_sent": created,
                "api_version": "2010-04-01",
                "uri": f"{base}/Messages/{acc.sid}.json",
            }
        return {
            "sid": acc.sid,
            "account_sid": self.account_sid,
            "to": acc.to,
            "from": acc.from_,
            "status": status,
            "direction": "outbound-api",
            "date_created": created,
            "date_updated": created,
            "start_time": created,
            "api_version": "2010-04-01",
            "uri": f"{base}/Calls/{acc.sid}.json",
        }

    def _list(self, h: BaseHTTPRequestHandler, kind: str, q: dict[str, str]) -> None:
        after_key = "DateSent>" if kind == "sms" else "StartTime>"
        after = q.get(after_key)
        since = calendar.timegm(time.strptime(after, "%Y-%m-%dT%H:%M:%SZ")) if after else 0.0
        with self._lock:
            found = [
                a
                for a in self.accepted
                if a.kind == kind
                and (not q.get("To") or a.to == q["To"])
                and (not q.get("From") or a.from_ == q["From"])
                and a.created >= since
            ]
        found.reverse()  # newest first, as Twilio lists
        key = "messages" if kind == "sms" else "calls"
        path = f"/2010-04-01/Accounts/{self.account_sid}/{'Messages' if kind == 'sms' else 'Calls'}.json"
        self._reply(
            h,
            200,
            {
                key: [self._resource(a, "sent" if kind == "sms" else "in-progress") for a in found],
                "page": 0,
                "page_size": len(found),
                "first_page_uri": path,
                "next_page_uri": None,
                "previous_page_uri": None,
                "uri": path,
                "start": 0,
                "end": max(0, len(found) - 1),
            },
        )
