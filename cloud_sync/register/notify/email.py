"""SMTP e-mail adapter (stdlib ``smtplib``; STARTTLS when configured). SMTP cannot tell what it accepted, so a
send interrupted by a crash is sent again (counted) with the same Message-ID, which mail clients de-duplicate."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from cloud_sync.register.notify.providers import Ambiguous, CannotCheck, Outgoing, Permanent, Transient


class SmtpProvider:
    channels = ("email",)

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str = "",
        password: str = "",
        starttls: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._username, self._password, self._starttls = username, password, starttls
        self._timeout = timeout

    @staticmethod
    def message_id(job_id: str) -> str:
        return f"<{job_id}@kotihub.invalid>"

    def send(self, msg: Outgoing) -> str:
        mail = EmailMessage()
        mail["From"] = self._sender
        mail["To"] = msg.to
        mail["Subject"] = msg.subject or msg.text.split("\n", 1)[0]
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = self.message_id(msg.job_id)
        mail["Auto-Submitted"] = "auto-generated"
        mail.set_content(msg.text)
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                if self._starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._username:
                    smtp.login(self._username, self._password)
                refused = smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            raise Permanent("the mail server refused the recipient") from exc
        except smtplib.SMTPResponseException as exc:
            if 500 <= exc.smtp_code < 600:
                raise Permanent(f"the mail server refused the message ({exc.smtp_code})") from exc
            raise Transient(f"the mail server deferred the message ({exc.smtp_code})") from exc
        except (TimeoutError, smtplib.SMTPServerDisconnected) as exc:
            raise Ambiguous(f"the mail server did not answer ({type(exc).__name__})") from exc
        except OSError as exc:
            raise Transient(f"cannot reach the mail server ({type(exc).__name__})") from exc
        if refused:
            raise Permanent("the mail server refused the recipient")
        return self.message_id(msg.job_id)

    def lookup(self, msg: Outgoing) -> str | None:
        raise CannotCheck("SMTP cannot say what it accepted")

    def hang_up(self, ref: str) -> None:
        """An e-mail cannot be recalled."""
