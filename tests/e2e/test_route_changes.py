"""Changes to routing data made by another Conduit process reach the SMTP server's route cache at
once, however long its entries live (CONDUIT_ROUTE_CACHE_SECONDS is an hour here):

- `conduit serve` with a worker child process: the worker deactivates a webhook whose receiver
  answered 410 Gone and tells the serve process through its routes pipe;
- on PostgreSQL, separate `conduit api`, `conduit smtp` and `conduit worker` processes: the
  transaction that changes routing data sends NOTIFY conduit_routes, which the SMTP process
  LISTENs to.

Either way the very next message to the webhook is refused with 550 5.2.1.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import POSTGRES_URL
from tests.support.conduit_process import PASSWORD, PUBLIC, Conduit, Mailbox
from tests.support.conversation import _eventually, _mail
from tests.support.pipeline import free_port, wait_for_port
from tests.support.receiver import Reply

BOX = f"box@{PUBLIC}"
INACTIVE = "550 5.2.1 Mailbox disabled: this address is not accepting mail"
HOUR = "3600"


def _send(port: int, to: str = BOX) -> str:
    """One message: the reply to RCPT if it refused, else the reply to the end of DATA."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="mta.sender.example", timeout=30) as smtp:
        smtp.ehlo()
        smtp.mail("ann@sender.example")
        code, text = smtp.rcpt(to)
        if code == 250:
            code, text = smtp.data(_mail(to).as_bytes())
        return f"{code} {text.decode()}"


async def _deactivated(mailbox: Mailbox) -> bool:
    response = await mailbox.api.get(f"/webhooks/{mailbox.hook['id']}", headers=mailbox.headers)
    return response.json()["active"] is False


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL: one process per role, below
async def test_serve_refuses_mail_at_once_for_a_webhook_its_worker_process_deactivated(tmp_path, database_url,
                                                                                      receiver):
    conduit = Conduit(tmp_path, database_url, worker_processes="1", route_cache_seconds=HOUR,
                      retry_schedule="0")
    await conduit.start()
    try:
        mailbox = await Mailbox.create(conduit, receiver.url)
        receiver.default = Reply(status=410)
        assert (await asyncio.to_thread(_send, conduit.smtp_port)).startswith("250 2.0.0 Ok: queued")
        await _eventually(lambda: _deactivated(mailbox))  # by the worker process, after the 410
        assert await asyncio.to_thread(_send, conduit.smtp_port) == INACTIVE
        await mailbox.aclose()
        assert conduit.process is not None and _worker_children(conduit.process.pid) == 1
    finally:
        conduit.stop()


def _worker_children(pid: int) -> int:
    """How many `conduit worker` child processes ``pid`` has (from /proc)."""
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if f"\nPPid:\t{pid}\n" in status and b"worker" in command:
            count += 1
    return count


# --- PostgreSQL: one process per role ------------------------------------------------------------

class Roles:
    """`conduit api`, `conduit smtp` and `conduit worker`, each a process of its own."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.http_port, self.smtp_port = free_port(), free_port()
        self.env = {**os.environ, "CONDUIT_DATABASE_URL": database_url, "CONDUIT_SECRET_KEY": "r" * 40,
                    "CONDUIT_PUBLIC_DOMAINS": PUBLIC, "CONDUIT_ALLOW_PRIVATE_TARGETS": "true",
                    "CONDUIT_INBOUND_AUTH_CHECKS": "false", "CONDUIT_RETRY_SCHEDULE": "0",
                    "CONDUIT_ROUTE_CACHE_SECONDS": HOUR, "CONDUIT_HTTP_PORT": str(self.http_port),
                    "CONDUIT_SMTP_PORT": str(self.smtp_port), "CONDUIT_LOG_LEVEL": "WARNING"}
        self.tmp_path = tmp_path
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/api/v1"

    def spawn(self) -> None:
        for role in ("api", "smtp", "worker"):
            with (self.tmp_path / f"{role}.log").open("ab") as log:
                self.processes[role] = subprocess.Popen([sys.executable, "-m", "conduit", role], env=self.env,
                                                        cwd=self.tmp_path, stdout=log, stderr=subprocess.STDOUT)

    async def start(self) -> None:
        self.spawn()
        await wait_for_port(self.http_port, timeout=30)
        await wait_for_port(self.smtp_port, timeout=30)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
async def roles(tmp_path: Path, database_url: str) -> AsyncIterator[Roles]:
    roles = Roles(tmp_path, database_url)
    await roles.start()
    try:
        yield roles
    finally:
        roles.stop()


@pytest.fixture
async def mailbox(roles: Roles, receiver) -> AsyncIterator[Mailbox]:
    api = httpx.AsyncClient(base_url=roles.api_url, timeout=30)
    response = await api.post("/accounts", json={"email": "owner@example.com", "password": PASSWORD})
    assert response.status_code == 201, response.text
    response = await api.post("/sessions", json={"email": "owner@example.com", "password": PASSWORD})
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    response = await api.post("/webhooks", headers=headers, json={"address": BOX, "target_url": receiver.url})
    assert response.status_code == 201, response.text
    box = Mailbox(api=api, headers=headers, hook=response.json())
    yield box
    await box.aclose()


postgres_only = [
    pytest.mark.skipif(not POSTGRES_URL, reason="PostgreSQL only (NOTIFY between processes): "
                                                "set CONDUIT_TEST_POSTGRES_URL"),
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]


@postgres_only[0]
@postgres_only[1]
async def test_the_smtp_process_refuses_mail_at_once_for_a_webhook_the_worker_process_deactivated(
        roles, mailbox, receiver):
    receiver.default = Reply(status=410)
    assert (await asyncio.to_thread(_send, roles.smtp_port)).startswith("250 2.0.0 Ok: queued")
    await _eventually(lambda: _deactivated(mailbox))
    assert await asyncio.to_thread(_send, roles.smtp_port) == INACTIVE


@postgres_only[0]
@postgres_only[1]
async def test_the_smtp_process_sees_changes_made_through_the_api_process_at_once(roles, mailbox):
    assert (await asyncio.to_thread(_send, roles.smtp_port)).startswith("250 2.0.0 Ok: queued")  # cached now
    path = f"/webhooks/{mailbox.hook['id']}"
    response = await mailbox.api.put(path, headers=mailbox.headers, json={"active": False})
    assert response.status_code == 200, response.text
    assert await asyncio.to_thread(_send, roles.smtp_port) == INACTIVE
    response = await mailbox.api.put(path, headers=mailbox.headers, json={"active": True})
    assert response.status_code == 200, response.text
    assert (await asyncio.to_thread(_send, roles.smtp_port)).startswith("250 2.0.0 Ok: queued")
    response = await mailbox.api.post("/smtp-policies", headers=mailbox.headers,
                                      json={"name": "elsewhere", "allowed_source_ips": "192.0.2.1"})
    response = await mailbox.api.put(path, headers=mailbox.headers,
                                     json={"smtp_security_policy_id": response.json()["id"]})
    assert response.status_code == 200, response.text
    assert (await asyncio.to_thread(_send, roles.smtp_port)).startswith("550 5.7.1")
