"""`conduit serve` as a child process on free ports, for tests that kill it, restart it or pull its
storage away: a fault that crashes the process shows as a dead child, not a dead test run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.pipeline import free_port, wait_for_port

PUBLIC = "in.example"
PASSWORD = "correct horse battery"


class Conduit:
    """`conduit serve` (API + SMTP + worker in one process); ``env`` adds or overrides CONDUIT_* settings."""

    def __init__(self, tmp_path: Path, database_url: str, **env: str) -> None:
        self.http_port, self.smtp_port = free_port(), free_port()
        self.env = {**os.environ, "CONDUIT_DATABASE_URL": database_url, "CONDUIT_HTTP_PORT": str(self.http_port),
                    "CONDUIT_SMTP_PORT": str(self.smtp_port), "CONDUIT_SECRET_KEY": "k" * 40,
                    "CONDUIT_PUBLIC_DOMAINS": PUBLIC, "CONDUIT_ALLOW_PRIVATE_TARGETS": "true",
                    "CONDUIT_INBOUND_AUTH_CHECKS": "false", "CONDUIT_RETRY_SCHEDULE": "0,0.5,0.5,0.5",
                    # A short lease: the killed worker's jobs resume soon.
                    "CONDUIT_DELIVERY_TIMEOUT": "1", "CONDUIT_DELIVERY_LEASE": "6",
                    "CONDUIT_LOG_LEVEL": "WARNING",
                    **{f"CONDUIT_{key.upper()}": value for key, value in env.items()}}
        self.log = tmp_path / "conduit.log"
        self.process: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/api/v1"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "conduit", "serve"], env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)
        await wait_for_port(self.smtp_port, timeout=30)
        await wait_for_port(self.http_port, timeout=30)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, as an operator's service manager would; SIGKILL if it does not exit in 20 s."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Mailbox:
    """An account on a running Conduit with one webhook at ``address``, seen through its API."""

    api: httpx.AsyncClient
    headers: dict[str, str]
    hook: dict

    @classmethod
    async def create(cls, conduit: Conduit, target_url: str, email: str = "owner@example.com",
                     address: str = f"box@{PUBLIC}") -> Mailbox:
        api = httpx.AsyncClient(base_url=conduit.api_url, timeout=30)
        response = await api.post("/accounts", json={"email": email, "password": PASSWORD})
        assert response.status_code == 201, response.text
        response = await api.post("/sessions", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.text
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        response = await api.post("/webhooks", headers=headers, json={"address": address, "target_url": target_url})
        assert response.status_code == 201, response.text
        return cls(api=api, headers=headers, hook=response.json())

    async def logs(self, status: str | None = None) -> list[dict]:
        """Every delivery log entry of the webhook (all pages), optionally of one status."""
        entries: list[dict] = []
        params = {"page_size": 200, **({"status": status} if status else {})}
        for page in range(1, 1000):
            response = await self.api.get(f"/webhooks/{self.hook['id']}/logs", headers=self.headers,
                                          params={**params, "page": page})
            assert response.status_code == 200, response.text
            entries.extend(response.json())
            if len(response.json()) < 200:
                return entries
        raise AssertionError("too many log pages")

    async def aclose(self) -> None:
        await self.api.aclose()
