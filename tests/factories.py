"""Small factories for test data, made through the API the way a user would."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pyotp
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable

from conduit.clock import new_id, now
from conduit.storage.database import Database
from conduit.storage.interfaces import new_job

PASSWORD = "correct horse battery"
_counter = itertools.count(1)


@dataclass
class User:
    email: str
    password: str
    id: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def new_email() -> str:
    return f"user{next(_counter)}@example.com"


async def sign_up(client: httpx.AsyncClient, email: str | None = None, password: str = PASSWORD) -> dict:
    response = await client.post("/accounts", json={"email": email or new_email(), "password": password})
    assert response.status_code == 201, response.text
    return response.json()


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict:
    response = await client.post("/sessions", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


async def user(client: httpx.AsyncClient, email: str | None = None, password: str = PASSWORD) -> User:
    """A signed-up, signed-in user."""
    account = await sign_up(client, email, password)
    tokens = await sign_in(client, account["email"], password)
    return User(email=account["email"], password=password, id=account["id"],
                access_token=tokens["access_token"], refresh_token=tokens["refresh_token"])


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    """The response has ``status`` and exactly the spec's Error body (optionally with this code);
    a request validation error adds ``details``, one ``{field, error}`` per problem."""
    assert response.status_code == status, response.text
    body = response.json()
    if body.get("code") == "validation_error" and "details" in body:
        assert status == 422, body
        assert body["details"] and all(
            set(d) == {"field", "error"} and all(isinstance(v, str) and v for v in d.values())
            for d in body["details"]), body
        body = {k: v for k, v in body.items() if k != "details"}
    assert set(body) == {"code", "error"}, body
    assert isinstance(body["code"], str) and body["code"], body
    assert isinstance(body["error"], str) and body["error"], body
    if code is not None:
        assert body["code"] == code, body
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def audit_actions(client: httpx.AsyncClient, headers: dict[str, str], limit: int = 200) -> list[str]:
    """The actions of the caller's audit log, newest first."""
    response = await client.get("/accounts/me/audit-log", params={"limit": limit}, headers=headers)
    assert response.status_code == 200, response.text
    return [entry["action"] for entry in response.json()]


class TotpCodes:
    """Hands out TOTP codes the way an authenticator app would, each 30-second step once only.

    The server accepts the previous, current and next step, and refuses a step that is not newer
    than the last one it accepted. ``next()`` returns the code of the oldest step that is newer
    than the last one handed out and that the server will still accept ``LATENCY`` seconds from
    now (so a step boundary passing between computing and checking cannot make it stale). In any
    one 30-second step two or three fresh codes are available; a test that needs more waits for
    the clock (up to one step), so tests should need at most three.
    """

    STEP = 30
    LATENCY = 2.0

    def __init__(self, secret: str) -> None:
        self.totp = pyotp.TOTP(secret)
        self.last_step = 0

    def _step(self, at: float) -> int:
        return int(at // self.STEP)

    def next(self) -> str:
        while True:
            at = time.time()
            lowest = self._step(at + self.LATENCY) - 1  # still inside the server's window then
            highest = self._step(at) + 1
            step = max(self.last_step + 1, lowest)
            if step <= highest:
                self.last_step = step
                return self.totp.generate_otp(step)
            time.sleep(self.STEP - at % self.STEP + 0.05)  # all fresh steps used: wait for the next

    def wrong(self) -> str:
        """A six-digit code that is valid for none of the steps the server accepts now."""
        step = self._step(time.time())
        valid = {self.totp.generate_otp(s) for s in range(step - 2, step + 3)}
        return next(c for c in (f"{n:06d}" for n in range(1000000)) if c not in valid)


async def execute(engine: AsyncEngine, statement: Executable) -> None:
    """Run one statement on the test's database in its own transaction (to age rows, say)."""
    async with engine.begin() as connection:
        await connection.execute(statement)


async def users(client: httpx.AsyncClient, count: int) -> list[User]:
    """``count`` signed-in users, made concurrently (each costs two Argon2 computations)."""
    return list(await asyncio.gather(*(user(client) for _ in range(count))))


async def check_each(cases: Iterable, check: Callable[[Any], Awaitable[None]]) -> None:
    """Await ``check(case)`` for every case and report every failing case at once.

    For tables of inputs that share one setup (one account, one webhook): one test instead
    of one per case saves an account's Argon2 hashing per case.
    """
    failures = []
    for case in cases:
        try:
            await check(case)
        except AssertionError as exc:
            failures.append(f"{case!r}: {exc}")
    assert not failures, f"{len(failures)} case(s) failed:\n" + "\n".join(failures)


# Domains, SMTP policies, webhooks --------------------------------------------------------

DEFAULT_MX_HOST = "mx.conduit.email"


async def claim_domain(client: httpx.AsyncClient, owner: User, name: str) -> dict:
    """POST /domains as ``owner``; the 201 body."""
    response = await client.post("/domains", json={"name": name}, headers=owner.headers)
    assert response.status_code == 201, response.text
    return response.json()


def publish_verification_records(dns, domain: dict, mx_host: str = DEFAULT_MX_HOST) -> None:
    """Publish on the loopback DNS server (tests.support.dns_server.LoopbackDNS) what the
    verify endpoint looks for: the claim's token at _conduit-verify.<name> and MX 10 <mx_host>."""
    dns.add(f"_conduit-verify.{domain['name']}", "TXT", domain["verification_token"])
    dns.add(domain["name"], "MX", f"10 {mx_host}")


async def verified_domain(client: httpx.AsyncClient, owner: User, dns, name: str,
                          mx_host: str = DEFAULT_MX_HOST) -> dict:
    """Claim ``name``, publish its TXT and MX records on the loopback DNS server, verify it."""
    domain = await claim_domain(client, owner, name)
    publish_verification_records(dns, domain, mx_host)
    response = await client.post(f"/domains/{domain['id']}/verify", headers=owner.headers)
    assert response.status_code == 200, response.text
    assert response.json()["verified"] is True
    return response.json()


async def create_policy(client: httpx.AsyncClient, owner: User, **fields) -> dict:
    """POST /smtp-policies as ``owner`` (a unique name unless given); the 201 body."""
    body = {"name": f"policy {next(_counter)}", **fields}
    response = await client.post("/smtp-policies", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def create_webhook(client: httpx.AsyncClient, owner: User, address: str,
                         target_url: str = "https://hooks.example.net/inbound", **fields) -> dict:
    """POST /webhooks as ``owner``; the 201 body."""
    body = {"address": address, "target_url": target_url, **fields}
    response = await client.post("/webhooks", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    return response.json()


MULTIPART_RAW = (b"From: someone@example.org\r\nTo: {to}\r\nSubject: private\r\nContent-Type: multipart/mixed; "
                 b"boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: "
                 b"application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\n%PDF\r\n--b--\r\n")


def message_row(to: str, *, received_at: datetime | None = None, raw: bytes | None = None) -> dict:
    """A messages row (every column), as the SMTP server stores one: by default a small message
    with one PDF attachment."""
    raw = raw if raw is not None else MULTIPART_RAW.replace(b"{to}", to.encode())
    return {"id": new_id("msg"), "received_at": received_at or now(), "mail_from": "someone@example.org",
            "rcpt_to": [to], "remote_ip": "192.0.2.1", "helo": "client.example", "tls": False, "auth_user": None,
            "size": len(raw), "auth_results": {}, "spam": None, "raw": raw, "subject": "private"}


async def store_message(database: Database, webhook_id: str, to: str, *, received_at: datetime | None = None,
                        status: str = "queued") -> str:
    """A message accepted for one webhook, its delivery job in ``status``; the message's id."""
    message = message_row(to, received_at=received_at)
    job = {**new_job(message["id"], webhook_id, [to], message["received_at"]), "status": status}
    await database.run(database.queue.accept, messages=[message], jobs=[job])
    return message["id"]
