"""One SMTP transaction step by step, keeping every reply: fault tests assert on the exact code
(451 4.3.0, never 250) and on which command got it."""

from __future__ import annotations

import asyncio
import smtplib
from email import policy
from email.message import EmailMessage

Replies = list[tuple[str, int, str]]


async def attempt(port: int, message: EmailMessage, rcpt: str, sender: str = "ann@sender.example") -> Replies:
    """MAIL, RCPT, DATA on a fresh connection (in a thread: the server may share this loop);
    every (command, code, text) answered, stopping at the first refusal."""
    def talk() -> Replies:
        replies: Replies = []
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.ehlo("client.example")
            code, text = smtp.mail(sender)
            replies.append(("MAIL", code, text.decode()))
            if code != 250:
                return replies
            code, text = smtp.rcpt(rcpt)
            replies.append(("RCPT", code, text.decode()))
            if code not in (250, 251):
                return replies
            try:
                code, text = smtp.data(message.as_bytes(policy=policy.SMTP))  # CRLF line ends
            except smtplib.SMTPDataError as exc:
                code, text = exc.smtp_code, exc.smtp_error
            replies.append(("DATA", code, text.decode()))
        return replies
    return await asyncio.to_thread(talk)


def final(replies: Replies) -> tuple[str, int, str]:
    return replies[-1]


def queued_id(replies: Replies) -> str:
    """The id in "250 2.0.0 Ok: queued as <id>"; fails unless the message was accepted."""
    command, code, text = final(replies)
    assert (command, code) == ("DATA", 250), replies
    return text.rsplit(" ", 1)[1]


def assert_temporary_failure(replies: Replies) -> None:
    """Refused with 451 4.3.0 at RCPT or DATA (the sender keeps the mail and retries); DATA never got 250."""
    command, code, text = final(replies)
    assert command in ("RCPT", "DATA"), replies
    assert (code, text.split(" ", 1)[0]) == (451, "4.3.0"), replies
    assert all(c != 250 for step, c, _ in replies if step == "DATA"), replies
