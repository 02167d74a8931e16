"""Provider credentials come from systemd credentials first, then the environment; never from a config file."""

from __future__ import annotations

from pathlib import Path

from cloud_sync.register.notify.config import NotifyConfig, credential
from cloud_sync.register.notify.email import SmtpProvider
from cloud_sync.register.notify.twilio import TwilioProvider


def test_systemd_credential_wins_over_the_environment(tmp_path: Path) -> None:
    (tmp_path / "twilio.auth_token").write_text("from-systemd\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "TWILIO_AUTH_TOKEN": "from-env"}
    assert credential("twilio.auth_token", "TWILIO_AUTH_TOKEN", env) == "from-systemd"
    assert credential("smtp.password", "KOTIHUB_SMTP_PASSWORD", {"KOTIHUB_SMTP_PASSWORD": "pw"}) == "pw"
    assert credential("smtp.password", "KOTIHUB_SMTP_PASSWORD", {}) == ""


def test_providers_only_for_what_is_configured(tmp_path: Path) -> None:
    assert NotifyConfig.from_env({}).providers == {}
    (tmp_path / "twilio.auth_token").write_text("tok")
    cfg = NotifyConfig.from_env(
        {
            "CREDENTIALS_DIRECTORY": str(tmp_path),
            "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
            "TWILIO_FROM_NUMBER": "+358401234567",
            "KOTIHUB_SMTP_HOST": "127.0.0.1",
            "KOTIHUB_NOTIFY_TIMEOUT_S": "4",
            "KOTIHUB_REGISTER_PUBLIC_URL": "https://register.example/",
        }
    )
    assert isinstance(cfg.providers["sms"], TwilioProvider) and cfg.providers["voice"] is cfg.providers["sms"]
    assert isinstance(cfg.providers["email"], SmtpProvider)
    assert cfg.public_url == "https://register.example"
    assert cfg.lease_s == 11.0
    # Without the auth token Twilio stays off: no half-configured provider.
    assert "sms" not in NotifyConfig.from_env({"TWILIO_ACCOUNT_SID": "AC" + "0" * 32}).providers
