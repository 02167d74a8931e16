"""Twilio adapter: SMS and voice calls through the official ``twilio`` library.

Every request carries the job id in its status-callback URL, which is how callbacks find their job. Twilio has no
idempotency key, so after a crash or a timeout :meth:`TwilioProvider.lookup` lists what Twilio accepted for the
same number since the job's intent and takes the one not attributed to another job (same text for SMS).
``api_url`` points the library at another base URL (the local simulator in tests); production leaves it unset.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from cloud_sync.register.notify.providers import Ambiguous, Outgoing, Permanent, Transient

log = logging.getLogger(__name__)

TWILIO_API = "https://api.twilio.com"
VOICES = {"fi": "fi-FI", "en": "en-GB"}


class _Rebased(TwilioHttpClient):  # type: ignore[misc]
    """The library's HTTP client sending to ``base`` instead of api.twilio.com."""

    def __init__(self, base: str, timeout: float, verify: str | bool) -> None:
        super().__init__(timeout=timeout)
        self._base = base.rstrip("/")
        self.session.verify = verify
        self.session.trust_env = False

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if url.startswith(TWILIO_API):
            url = self._base + url[len(TWILIO_API) :]
        return super().request(method, url, *args, **kwargs)


class TwilioProvider:
    channels = ("sms", "voice")

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        *,
        api_url: str | None = None,
        timeout: float = 10.0,
        verify: str | bool = True,
    ) -> None:
        http = _Rebased(api_url, timeout, verify) if api_url else TwilioHttpClient(timeout=timeout)
        self._client = Client(account_sid, auth_token, http_client=http)
        self._from = from_number
        self.validator = RequestValidator(auth_token)

    def send(self, msg: Outgoing) -> str:
        try:
            if msg.channel == "sms":
                m = self._client.messages.create(
                    to=msg.to, from_=self._from, body=msg.text, status_callback=msg.status_url
                )
                return str(m.sid)
            call = self._client.calls.create(
                to=msg.to, from_=self._from, twiml=str(self.twiml(msg)), status_callback=msg.status_url
            )
            return str(call.sid)
        except TwilioRestException as exc:
            if exc.status == 429 or exc.status >= 500:
                raise Transient(f"Twilio answered {exc.status}") from exc
            raise Permanent(f"Twilio refused the request ({exc.status}, code {exc.code})") from exc
        except (requests.Timeout, requests.ConnectionError) as exc:
            # The request may have reached Twilio: ask before sending again.
            raise Ambiguous(f"no answer from Twilio ({type(exc).__name__})") from exc
        except (TwilioException, requests.RequestException) as exc:
            raise Transient(f"Twilio request failed ({type(exc).__name__})") from exc

    @staticmethod
    def twiml(msg: Outgoing) -> VoiceResponse:
        """Says the alarm and asks for 1 (``<Gather>``); says it twice so a sleeper hears it."""
        resp = VoiceResponse()
        gather = resp.gather(num_digits=1, action=msg.gather_url, method="POST", timeout=10)
        voice = VOICES.get(msg.language, "fi-FI")
        gather.say(msg.text, language=voice)
        gather.say(msg.text, language=voice)
        return resp

    def hang_up(self, ref: str) -> None:
        """Ends the call (``Status=completed``: Twilio hangs up a call in progress and cancels a ringing one)."""
        if not ref.startswith("CA"):
            return
        try:
            self._client.calls(ref).update(status="completed")
        except TwilioRestException as exc:
            # 4xx: the call is over already (or unknown): nothing left to end.
            if exc.status >= 500 or exc.status == 429:
                raise Transient(f"Twilio could not end the call now ({exc.status})") from exc
        except (TwilioException, requests.RequestException) as exc:
            raise Transient(f"cannot reach Twilio to end the call ({type(exc).__name__})") from exc

    def lookup(self, msg: Outgoing) -> str | None:
        since = dt.datetime.fromtimestamp(msg.not_before - 2, dt.UTC)
        try:
            if msg.channel == "sms":
                found = self._client.messages.list(to=msg.to, from_=self._from, date_sent_after=since, limit=50)
                for m in found:
                    created = m.date_created
                    if (
                        m.sid not in msg.known_refs
                        and m.body == msg.text
                        and (created is None or created >= since.replace(microsecond=0))
                    ):
                        return str(m.sid)
                return None
            calls = self._client.calls.list(to=msg.to, from_=self._from, start_time_after=since, limit=50)
            for c in calls:
                if c.sid not in msg.known_refs:
                    return str(c.sid)
            return None
        except (TwilioException, requests.RequestException) as exc:
            raise Transient(f"cannot ask Twilio what it accepted ({type(exc).__name__})") from exc
