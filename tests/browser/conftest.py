"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a real
`conduit serve` process (SQLite, and PostgreSQL when configured), a real SMTP conversation, a real
HTTP receiver, a real mail sink and a real DNS server on loopback.

Chromium is Debian's (`apt-get install chromium`), never one downloaded by `playwright install`.
Without it every test here is skipped, with the reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    async_playwright,
    expect,
)

from tests.conftest import MailSink
from tests.support.conduit_process import Conduit
from tests.support.dns_server import LoopbackDNS
from tests.support.receiver import Receiver

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 800}
MX_HOST = "mx.conduit.test"
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "dashboard"
# Chromium logs every 4xx/5xx answer to fetch() as a console error; the dashboard shows those
# answers itself (a 422 for a wrong form, the refresh without a session at start-up).
_HTTP_ERROR_LOG = re.compile(r"^Failed to load resource: the server responded with a status of [45]\d\d")

expect.set_options(timeout=10_000)


@dataclass
class Watch:
    """Everything a page did that it should not: dialogs (alert, confirm...), uncaught errors,
    console errors (CSP violations among them)."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        async def on_dialog(dialog: Dialog) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            await dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not _HTTP_ERROR_LOG.match(message.text):
            self.errors.append(f"console: {message.text}")

    def assert_clean(self) -> None:
        assert self.dialogs == [], self.dialogs
        assert self.errors == [], self.errors


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium); the dashboard's browser "
                    "tests need it")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def conduit(tmp_path: Path, database_url: str, mail_sink: MailSink,
                  dns_zone: LoopbackDNS) -> AsyncIterator[Conduit]:
    process = Conduit(tmp_path, database_url, keep_raw_days="1", smtp_relay_url=mail_sink.url,
                      dns_servers=f"127.0.0.1:{dns_zone.port}", mx_host=MX_HOST)
    process.env["CONDUIT_BASE_URL"] = f"http://127.0.0.1:{process.http_port}"
    await process.start()
    yield process
    process.stop()


@dataclass
class Dashboard:
    """A browser tab on the dashboard, and what the test needs around it."""

    page: Page
    context: BrowserContext
    watch: Watch
    conduit: Conduit

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.conduit.http_port}"

    async def open(self, route: str = "/") -> None:
        await self.page.goto(f"{self.base_url}/#{route}")

    async def shot(self, name: str) -> None:
        """A screenshot for docs/dashboard/, only when CONDUIT_SCREENSHOTS=1 (so test runs leave the tree alone)."""
        if os.environ.get("CONDUIT_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await self.page.wait_for_timeout(300)  # let the last fetch paint
            await self.page.evaluate("window.scrollTo(0, 0)")
            await self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def api(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=f"{self.base_url}/api/v1", headers=headers, timeout=30)


async def new_tab(browser: Browser, conduit: Conduit) -> Dashboard:
    context = await browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    await context.grant_permissions(["clipboard-read", "clipboard-write"],
                                    origin=f"http://127.0.0.1:{conduit.http_port}")
    page = await context.new_page()
    watch = Watch()
    watch.attach(page)
    return Dashboard(page=page, context=context, watch=watch, conduit=conduit)


@pytest.fixture
async def dashboard(browser: Browser, conduit: Conduit) -> AsyncIterator[Dashboard]:
    tab = await new_tab(browser, conduit)
    yield tab
    await tab.context.close()
    tab.watch.assert_clean()
