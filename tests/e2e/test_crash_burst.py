"""SIGKILL in the middle of a burst: 1,000 messages over 20 concurrent SMTP connections, the real
`conduit serve` killed once 400 have been accepted, then started again. Every message that got 250
reaches the receiver; no message refused (or never sent) reaches it or the database.

A message whose connection died while its sender waited for the answer to DATA may or may not
have been stored: RFC 5321 6.1 accepts that (the sender retries; a duplicate, never a loss), so
those may appear but need not.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage

import aiosmtplib
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.conduit_process import PUBLIC, Conduit, Mailbox
from tests.support.receiver import Receiver

MESSAGES = 1000
CONNECTIONS = 20
KILL_AT = 400  # accepted messages
RCPT = f"box@{PUBLIC}"


@dataclass
class Burst:
    """What each sender learnt, by subject: accepted (with its queued-as id), refused, or unknown."""

    accepted: dict[str, str] = field(default_factory=dict)  # subject -> queued-as id
    refused: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)
    enough: asyncio.Event = field(default_factory=asyncio.Event)


def _message(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Ann <ann@sender.example>"
    message["To"] = RCPT
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@sender.example>"
    message.set_content(f"{subject}\n")
    return message


async def _sender(port: int, subjects: list[str], burst: Burst) -> None:
    """One sending server: one connection, a new one after any failure (refused while Conduit is down)."""
    smtp: aiosmtplib.SMTP | None = None
    for subject in subjects:
        try:
            if smtp is None:
                smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=20, start_tls=False)
                await smtp.connect()
            await smtp.mail("ann@sender.example")
            await smtp.rcpt(RCPT)
        except (aiosmtplib.SMTPException, OSError):
            burst.refused.add(subject)  # nothing was sent to store
            smtp = await _drop(smtp)
            continue
        try:
            reply = await smtp.data(_message(subject).as_bytes())
        except aiosmtplib.SMTPResponseException:
            burst.refused.add(subject)  # an explicit 4xx/5xx
            smtp = await _drop(smtp)
        except (aiosmtplib.SMTPException, OSError):
            burst.unknown.add(subject)  # the connection died while the answer was pending
            smtp = await _drop(smtp)
        else:
            burst.accepted[subject] = reply.message.rsplit(" ", 1)[1]
            if len(burst.accepted) >= KILL_AT:
                burst.enough.set()
    await _drop(smtp)


async def _drop(smtp: aiosmtplib.SMTP | None) -> None:
    if smtp is not None and smtp.is_connected:
        smtp.close()
    return None


async def _send_burst(conduit: Conduit) -> Burst:
    burst = Burst()
    subjects = [f"burst {n}" for n in range(MESSAGES)]
    senders = asyncio.gather(*(_sender(conduit.smtp_port, subjects[i::CONNECTIONS], burst)
                               for i in range(CONNECTIONS)))
    enough = asyncio.create_task(burst.enough.wait())
    await asyncio.wait([enough, senders], timeout=60, return_when=asyncio.FIRST_COMPLETED)
    enough.cancel()
    conduit.kill()
    if not burst.enough.is_set():
        senders.cancel()
        raise AssertionError(f"{len(burst.accepted)} accepted before the kill, {KILL_AT} needed "
                             f"({len(burst.refused)} refused, {len(burst.unknown)} unknown); "
                             f"log:\n{conduit.log_text()[-3000:]}")
    await asyncio.wait_for(senders, 60)  # refused at once from here on: nothing listens
    return burst


async def _stored(database_url: str) -> tuple[set[str], int]:
    """Message ids in the database, and how many delivery jobs are still queued."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            ids = set((await connection.scalars(text("SELECT id FROM messages"))).all())
            queued = await connection.scalar(text("SELECT count(*) FROM delivery_jobs WHERE status = 'queued'"))
    finally:
        await engine.dispose()
    return ids, queued


async def _wait_until_drained(receiver: Receiver, database_url: str, accepted: set[str]) -> set[str]:
    """Every accepted id has reached the receiver and no job is left queued; the stored ids."""
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        received = {r.json()["id"] for r in receiver.received}
        stored, queued = await _stored(database_url)
        if received >= accepted and queued == 0:
            return stored
        assert asyncio.get_running_loop().time() < deadline, (
            f"{len(accepted - received)} accepted messages not delivered, {queued} jobs queued")
        await asyncio.sleep(0.2)


@pytest.mark.timeout(200)  # above the phases' own bounds (60 s each), so those fail first, saying why
async def test_sigkill_during_a_burst_delivers_every_250_and_nothing_else(tmp_path, database_url, receiver):
    # Raw messages kept a day after delivery, so the database still shows which messages it took.
    conduit = Conduit(tmp_path, database_url, keep_raw_days="1", log_level="INFO")
    await conduit.start()
    box = await Mailbox.create(conduit, receiver.url)
    try:
        burst = await _send_burst(conduit)
        assert len(burst.accepted) < MESSAGES, "the kill came after the burst: it proves nothing"
        await conduit.start()
        accepted = set(burst.accepted.values())
        stored = await _wait_until_drained(receiver, database_url, accepted)
        delivered_log = Counter(log["smtp_message_id"] for log in await box.logs("delivered"))
    finally:
        conduit.stop()
        await box.aclose()

    assert len(accepted) == len(burst.accepted), "a queued-as id was handed out twice"
    assert len(burst.accepted) + len(burst.refused) + len(burst.unknown) == MESSAGES
    payloads = {r.json()["id"]: r.json()["subject"] for r in receiver.received}
    assert all(payloads[id_] == subject for subject, id_ in burst.accepted.items())  # the right content
    assert not set(payloads.values()) & burst.refused, "a refused message was delivered"
    assert set(payloads.values()) <= set(burst.accepted) | burst.unknown
    assert accepted <= stored <= set(payloads), "the database holds a message nobody accepted or delivered"
    assert set(delivered_log) == set(payloads) and max(delivered_log.values()) == 1
    print(f"burst: {len(burst.accepted)} accepted, {len(burst.refused)} refused, {len(burst.unknown)} unknown "
          f"({len(set(payloads)) - len(accepted)} of those stored and delivered)")
