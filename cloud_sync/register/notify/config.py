"""Notification settings from the environment, secrets from systemd credentials (or the environment).

Environment (no secrets): ``KOTIHUB_REGISTER_PUBLIC_URL`` (the base of acknowledgement links and provider
callbacks), ``TWILIO_ACCOUNT_SID``, ``TWILIO_FROM_NUMBER``, ``KOTIHUB_TWILIO_API_URL`` (tests: the simulator),
``KOTIHUB_TWILIO_CA`` (CA file for that URL), ``KOTIHUB_SMTP_HOST``, ``KOTIHUB_SMTP_PORT``, ``KOTIHUB_SMTP_FROM``,
``KOTIHUB_SMTP_USER``, ``KOTIHUB_SMTP_STARTTLS``, ``KOTIHUB_NOTIFY_TIMEOUT_S`` (provider requests, default 10).
Secrets: the credentials ``twilio.auth_token`` and ``smtp.password`` in ``$CREDENTIALS_DIRECTORY`` (systemd
``LoadCredential=``), else ``TWILIO_AUTH_TOKEN`` and ``KOTIHUB_SMTP_PASSWORD``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cloud_sync.register.notify.email import SmtpProvider
from cloud_sync.register.notify.providers import Provider
from cloud_sync.register.notify.twilio import TwilioProvider


def credential(name: str, env_name: str, environ: Mapping[str, str]) -> str:
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        path = Path(directory) / name
        if path.is_file():
            return path.read_text().strip()
    return environ.get(env_name, "")


@dataclass(frozen=True)
class NotifyConfig:
    public_url: str = "https://localhost:8443"
    providers: dict[str, Provider] = field(default_factory=dict)
    """Channel -> provider; a channel without one is never claimed (its jobs wait, and the desk shows them)."""
    twilio: TwilioProvider | None = None
    timeout_s: float = 10.0
    """How long a provider request may take (``KOTIHUB_NOTIFY_TIMEOUT_S``)."""

    @property
    def lease_s(self) -> float:
        """A claimed job is taken over by another worker only after this long: longer than any request can take,
        so a job is never taken from a worker whose request is still in flight (retries stop starting new attempts
        after ``timeout_s``, so a delivery takes less than twice that)."""
        return 2 * self.timeout_s + 3

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NotifyConfig:
        env = os.environ if environ is None else environ
        providers: dict[str, Provider] = {}
        timeout = float(env.get("KOTIHUB_NOTIFY_TIMEOUT_S", "10"))
        twilio: TwilioProvider | None = None
        sid, token = env.get("TWILIO_ACCOUNT_SID", ""), credential("twilio.auth_token", "TWILIO_AUTH_TOKEN", env)
        if sid and token:
            ca = env.get("KOTIHUB_TWILIO_CA", "")
            twilio = TwilioProvider(
                sid,
                token,
                env.get("TWILIO_FROM_NUMBER", ""),
                api_url=env.get("KOTIHUB_TWILIO_API_URL") or None,
                verify=ca or True,
                timeout=timeout,
            )
            providers["sms"] = providers["voice"] = twilio
        host = env.get("KOTIHUB_SMTP_HOST", "")
        if host:
            providers["email"] = SmtpProvider(
                host,
                int(env.get("KOTIHUB_SMTP_PORT", "25")),
                env.get("KOTIHUB_SMTP_FROM", "kotihub@localhost"),
                username=env.get("KOTIHUB_SMTP_USER", ""),
                password=credential("smtp.password", "KOTIHUB_SMTP_PASSWORD", env),
                starttls=env.get("KOTIHUB_SMTP_STARTTLS", "") in ("1", "true", "yes"),
                timeout=timeout,
            )
        return cls(
            public_url=env.get("KOTIHUB_REGISTER_PUBLIC_URL", "https://localhost:8443").rstrip("/"),
            providers=providers,
            twilio=twilio,
            timeout_s=timeout,
        )
