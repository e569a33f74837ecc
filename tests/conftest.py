"""Shared fixtures: every database test runs on a real SQLite file, and again on a real
PostgreSQL server when CONDUIT_TEST_POSTGRES_URL is set (.ci/run sets it)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from email import policy as email_policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from argon2 import PasswordHasher
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from conduit import crypto
from conduit.api.app import create_app
from conduit.config import Settings, load_settings
from conduit.storage.base import Base
from conduit.storage.database import Database, open_database
from conduit.storage.engine import postgres_engine
from conduit.storage.migrate import upgrade
from tests.support.pipeline import free_port

# The loopback DNS server fixtures (dns_server, dns_zone) for every test.
pytest_plugins = ["tests.support.fixtures_dns"]


def _own_database(url: str) -> str:
    """Under pytest-xdist (``make test`` runs the suite in several processes) each process gets a
    database of its own beside the one named, since every test empties the database it uses."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not url or not worker:
        return url
    parsed = make_url(url)
    return parsed.set(database=f"{parsed.database}_{worker}").render_as_string(hide_password=False)


NAMED_POSTGRES_URL = os.environ.get("CONDUIT_TEST_POSTGRES_URL", "")
POSTGRES_URL = _own_database(NAMED_POSTGRES_URL)
BACKENDS = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])
TEST_SECRET_KEY = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
CLIENT_IP = "203.0.113.7"


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    """Argon2id at the cost Conduit uses takes about a tenth of a second per sign-up and sign-in,
    and the in-process tests make thousands of them: here it runs at its lowest cost (the seam
    test_enumeration.py uses too). Hashes say their own cost, so verification is unchanged, and
    every server the end-to-end tests start hashes at the real cost."""
    real = crypto._hasher
    crypto._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    yield
    crypto._hasher = real


@pytest.fixture(scope="session", autouse=True)
def postgres_database() -> Iterator[None]:
    """This process's own PostgreSQL database (see _own_database), created for the run."""
    if POSTGRES_URL == NAMED_POSTGRES_URL:
        yield
        return
    name = make_url(POSTGRES_URL).database
    postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    postgres_admin(f'CREATE DATABASE "{name}"')
    yield
    postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_admin(statement: str) -> None:
    """One statement that runs outside a transaction (CREATE or DROP DATABASE), on the server of
    CONDUIT_TEST_POSTGRES_URL, from a test or fixture that is not in an event loop."""
    dsn = make_url(NAMED_POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)

    async def run() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test gets a copy (migrating per test would be slow)."""
    path = tmp_path_factory.mktemp("template") / "conduit.db"
    _upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_migrated(postgres_database: None) -> str:
    _upgrade(POSTGRES_URL)
    return POSTGRES_URL


def _upgrade(url: str) -> None:
    """Alembic runs its own event loop, so it gets a thread of its own (a test loop is running)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(upgrade, url).result()


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "conduit.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_migrated")
    engine = postgres_engine(url, pool_size=1, lazy_commits=False)
    async with engine.begin() as conn:  # a clean slate for every test
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        await conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    await engine.dispose()
    yield url


@pytest.fixture
def settings_overrides() -> dict:
    """Override in a test module to change settings for its tests."""
    return {}


@pytest.fixture
def settings(database_url: str, settings_overrides: dict) -> Settings:
    return load_settings(database_url=database_url, secret_key=TEST_SECRET_KEY, **settings_overrides)


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    database = open_database(settings)
    yield database
    await database.dispose()


@pytest.fixture
def engine(database: Database) -> AsyncEngine:
    return database.engine


@pytest.fixture
async def app(settings: Settings, database: Database):
    app = create_app(settings, database)
    yield app
    await app.state.context.http.close()
    await app.state.context.renders.close()


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client speaking to the app in-process, as a caller at CLIENT_IP."""
    transport = httpx.ASGITransport(app=app, client=(CLIENT_IP, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver/api/v1") as c:
        yield c


@pytest.fixture
async def client_from(app):
    """Factory: a client as seen from another IP address."""
    clients: list[httpx.AsyncClient] = []

    def make(ip: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(ip, 50000))
        c = httpx.AsyncClient(transport=transport, base_url="http://testserver/api/v1")
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.aclose()


class MailSink:
    """A real SMTP server (aiosmtpd, in a thread of its own) that keeps every message it receives."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port,
                                      server_hostname="sink.test")  # no DNS lookup of its own name

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd hook
        message = BytesParser(policy=email_policy.default).parsebytes(envelope.content)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[EmailMessage]:
        """The messages once ``count`` have arrived (mail may be sent after the HTTP answer)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.messages) < count:
            assert asyncio.get_running_loop().time() < deadline, f"{len(self.messages)} of {count} mails arrived"
            await asyncio.sleep(0.02)
        return list(self.messages)


@pytest.fixture
def mail_sink() -> Iterator[MailSink]:
    sink = MailSink()
    sink._controller.start()
    yield sink
    sink._controller.stop()

