"""Outbound mail through CONDUIT_SMTP_RELAY_URL; with no relay set, the mail is logged instead.

Only Conduit's own notices (password reset) go out; Conduit never sends bounces.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import unquote, urlsplit

import aiosmtplib

log = logging.getLogger("conduit.mail")


async def send(relay_url: str, *, sender: str, to: str, subject: str, body: str, helo: str) -> None:
    """Send one notice; ``helo`` names this host (aiosmtplib would ask DNS for it, which can stall)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="conduit.local")
    message.set_content(body)
    if not relay_url:
        log.info("event=mail_not_sent reason=no_relay_configured to=%s subject=%r\n%s", to, subject, body)
        return
    url = urlsplit(relay_url)
    implicit_tls = url.scheme == "smtps"
    await aiosmtplib.send(
        message,
        hostname=url.hostname or "127.0.0.1",
        port=url.port or (465 if implicit_tls else 25),
        username=unquote(url.username) if url.username else None,
        password=unquote(url.password) if url.password else None,
        use_tls=implicit_tls,
        start_tls=None,  # STARTTLS when the relay offers it
        local_hostname=helo,
        timeout=30,
    )
    log.info("event=mail_sent to=%s subject=%r", to, subject)
