"""Helpers for tests that talk to Conduit's SMTP server and read its delivery logs."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

import aiosmtplib


def _mail(to: str, subject: str = "Hello", body: str = "Hi there\n",
          sender: str = "ann@sender.example") -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Ann <{sender}>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = "<m1@sender.example>"
    message.set_content(body)
    return message


async def _send(settings, message: EmailMessage, rcpts: list[str] | None = None, sender: str = "ann@sender.example"):
    return await aiosmtplib.send(message, hostname="127.0.0.1", port=settings.smtp_port, sender=sender,
                                 recipients=rcpts or [message["To"]], start_tls=False)


async def _logs(client, owner, webhook_id: str, **params) -> list[dict]:
    response = await client.get(f"/webhooks/{webhook_id}/logs", params=params, headers=owner.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _in_smtp_session(settings, talk, *, helo: str | None = None):
    """Run a blocking smtplib conversation in a thread: the server shares this event loop."""
    def run():
        with smtplib.SMTP("127.0.0.1", settings.smtp_port, local_hostname=helo, timeout=30) as smtp:
            return talk(smtp)
    return await asyncio.to_thread(run)


async def _eventually(probe, timeout: float = 10.0):
    """Poll an async probe until it returns something truthy; fail after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await probe()
        if result or asyncio.get_running_loop().time() > deadline:
            assert result, "condition not reached in time"
            return result
        await asyncio.sleep(0.05)
