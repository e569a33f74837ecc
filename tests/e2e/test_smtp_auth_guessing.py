"""SMTP AUTH against guessing, over real SMTP sessions from several loopback addresses (each
127.0.0.x is a client IP of its own): failures are counted per client IP and per login in the
database (conduit/services/policies.py: 10 per login, 30 per IP, in 15 minutes), a session
is closed with 421 at its third failure, and an unknown login costs the same Argon2
verification as a known one."""

from __future__ import annotations

import asyncio
import base64
import statistics
import time

import pytest

from conduit.services.policies import (
    SMTP_AUTH_FAILURES_PER_SESSION,
    SMTP_AUTH_PER_IP,
    SMTP_AUTH_PER_LOGIN,
)
from tests.factories import create_policy
from tests.support.pipeline import free_port, running

FAILED = "535 5.7.8 Authentication credentials invalid"
THROTTLED = "454 4.7.0 Too many authentication failures, try later"
CLOSED = "421 4.7.0 Too many authentication failures, closing connection"
SUCCESS = "235 2.7.0 Authentication successful"


@pytest.fixture
def settings_overrides() -> dict:
    return {"smtp_port": free_port(), "smtp_auth_insecure": True, "inbound_auth_checks": False}


@pytest.fixture
async def relay(client, alice) -> None:
    await create_policy(client, alice, name="relay", require_smtp_auth=True, smtp_credentials="relay:s3cret-passphrase")
    await create_policy(client, alice, name="other", require_smtp_auth=True,
                        smtp_credentials="other:0ther-secret-phrase")


class Session:
    """An SMTP session from a loopback address of the test's choosing."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, source: str) -> Session:
        session = cls(*await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)))
        assert (await session.reply()).startswith("220")
        assert (await session.command("EHLO client.example")).startswith("250 ")
        return session

    async def reply(self) -> str:
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 30)
            assert line.endswith(b"\r\n"), f"closed: {line!r}"
            if line[3:4] != b"-":
                return line.decode()[:-2]

    async def command(self, line: str) -> str:
        self.writer.write(line.encode() + b"\r\n")
        return await self.reply()

    async def auth(self, login: str, password: str) -> str:
        blob = base64.b64encode(f"\0{login}\0{password}".encode()).decode()
        return await self.command(f"AUTH PLAIN {blob}")

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 30) == b""

    def close(self) -> None:
        self.writer.close()


async def _attempts(port: int, source: str, credentials: list[tuple[str, str]]) -> list[str]:
    """Each AUTH in turn, a new session whenever the server closed the last one."""
    answers: list[str] = []
    session = await Session.open(port, source)
    try:
        for login, password in credentials:
            answers.append(await session.auth(login, password))
            if answers[-1].startswith("421"):
                assert await session.closed()
                session.close()
                session = await Session.open(port, source)
    finally:
        session.close()
    return answers


def test_the_limits_are_those_the_docs_state():
    assert (SMTP_AUTH_PER_LOGIN.limit, SMTP_AUTH_PER_IP.limit, SMTP_AUTH_FAILURES_PER_SESSION) == (10, 30, 3)
    assert SMTP_AUTH_PER_LOGIN.window.total_seconds() == SMTP_AUTH_PER_IP.window.total_seconds() == 15 * 60


async def test_the_41st_attempt_is_refused_even_with_the_right_password(settings, relay):
    async with running(settings, frozenset({"smtp"})):
        answers = await _attempts(settings.smtp_port, "127.0.0.1", [("relay", f"guess-{i}") for i in range(40)])
        # Three failures per session (the third closes it), ten in all for the login, then 454.
        assert answers[:10] == [FAILED, FAILED, CLOSED] * 3 + [FAILED]
        assert answers[10:] == [THROTTLED] * 30
        assert await _attempts(settings.smtp_port, "127.0.0.1", [("relay", "s3cret-passphrase")]) == [THROTTLED]
        # The login is throttled from any address; another login from this address is not.
        assert await _attempts(settings.smtp_port, "127.0.0.2", [("relay", "s3cret-passphrase")]) == [THROTTLED]
        assert await _attempts(settings.smtp_port, "127.0.0.1", [("other", "0ther-secret-phrase")]) == [SUCCESS]


async def test_failures_from_one_address_throttle_it_for_every_login(settings, relay):
    async with running(settings, frozenset({"smtp"})):
        guesses = [(f"user{i}", "guess") for i in range(30)]  # unknown logins, each under its own limit
        answers = await _attempts(settings.smtp_port, "127.0.0.3", guesses)
        assert THROTTLED not in answers and answers.count(CLOSED) == 10
        assert await _attempts(settings.smtp_port, "127.0.0.3", [("relay", "s3cret-passphrase")]) == [THROTTLED]
        assert await _attempts(settings.smtp_port, "127.0.0.4", [("relay", "s3cret-passphrase")]) == [SUCCESS]


async def test_known_and_unknown_logins_take_about_the_same_time(settings, relay):
    """Both cost one Argon2 verification. The bound is generous (a loaded machine's noise); a
    lookup that skipped the verification for an unknown login was about a hundred times faster."""
    async def timed(login: str) -> float:
        session = await Session.open(settings.smtp_port, "127.0.0.5")
        try:
            started = time.perf_counter()
            assert await session.auth(login, "wrong password") == FAILED
            return time.perf_counter() - started
        finally:
            session.close()

    async with running(settings, frozenset({"smtp"})):
        known, unknown = [], []
        for i in range(7):  # interleaved, so that a busy moment slows both
            known.append(await timed("relay"))
            unknown.append(await timed(f"nobody{i}"))
    ratio = statistics.median(known) / statistics.median(unknown)
    assert 0.4 < ratio < 2.5, (known, unknown)
