"""The Messages pages in the browser, as a client of the Messages API against a real `conduit
serve`: a real SMTP message shows up live, opens with its text and attachment, downloads, is
redelivered and erased; refused mail is listed with its reply; a hostile HTML mail is shown in
its sandboxed frame without running or loading anything; a policy's spam fields are saved."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage

import httpx
from playwright.async_api import Request, expect

from tests.browser.conftest import Dashboard
from tests.browser.flows import PASSWORD, create_webhook, go, sign_up
from tests.support.conduit_process import PUBLIC
from tests.support.receiver import Receiver
from tests.support.smtp_client import attempt, final

LIVE_WITHIN_MS = 3000  # polled every second: shown within about two, with a margin for a loaded machine
SUBJECT = "Invoice 2026-117"


def _mail(to: str, subject: str, text: str, html: str | None = None,
          attachment: tuple[str, bytes] | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Ann <ann@sender.example>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    if attachment is not None:
        name, content = attachment
        message.add_attachment(content, maintype="application", subtype="octet-stream", filename=name)
    return message


@asynccontextmanager
async def _session(dashboard: Dashboard, email: str) -> AsyncIterator[httpx.AsyncClient]:
    """An API client signed in as ``email``, to set up what the test does not click through."""
    async with dashboard.api() as api:
        session = (await api.post("/sessions", json={"email": email, "password": PASSWORD})).json()
        api.headers["Authorization"] = f"Bearer {session['access_token']}"
        yield api


def _listed(dashboard: Dashboard):
    return dashboard.page.get_by_role("region", name="Stored messages").locator("tbody tr")


async def test_a_message_is_listed_live_opened_downloaded_redelivered_and_deleted(dashboard: Dashboard,
                                                                                  receiver: Receiver):
    page = dashboard.page
    await sign_up(dashboard)
    await create_webhook(dashboard, f"orders@{PUBLIC}", receiver.url, Name="Orders")
    await go(dashboard, "Messages")
    content = secrets.token_bytes(3000)
    mail = _mail(f"orders@{PUBLIC}", SUBJECT, "Please find the invoice attached.\nThanks, Ann",
                 "<p>Please find the <b>invoice</b> attached.</p>", ("invoice-117.pdf", content))
    assert final(await attempt(dashboard.conduit.smtp_port, mail, f"orders@{PUBLIC}"))[1] == 250
    sent_at = time.monotonic()
    rows = _listed(dashboard)
    await expect(rows).to_have_count(1, timeout=LIVE_WITHIN_MS)
    shown_after = time.monotonic() - sent_at
    await expect(rows.first).to_contain_text(SUBJECT)
    await expect(rows.first).to_contain_text("ann@sender.example")
    await receiver.wait_for(1)
    await expect(rows.first).to_contain_text("delivered")

    await rows.first.get_by_role("link").click()
    await expect(page.get_by_role("heading", name=SUBJECT, level=1)).to_be_visible()
    await expect(page.get_by_test_id("message-text")).to_contain_text("Please find the invoice attached.")
    await expect(page.frame_locator("iframe.mail-frame").locator("b")).to_have_text("invoice")
    await expect(page.get_by_text("invoice-117.pdf")).to_be_visible()
    authentication = page.get_by_role("region", name="Authentication")
    for term in ("SPF", "DKIM", "DMARC"):
        await expect(authentication).to_contain_text(term)
    attempts = page.get_by_role("region", name="Deliveries").locator("tbody tr")
    await expect(attempts).to_have_count(1)
    await expect(attempts.first).to_contain_text("200")
    await expect(attempts.first.get_by_test_id("attempt-response")).to_have_text("ok")

    async with page.expect_download() as downloading:
        await page.get_by_role("button", name="Download invoice-117.pdf").click()
    download = await downloading.value
    assert download.suggested_filename == "invoice-117.pdf"
    assert (await download.path()).read_bytes() == content

    await page.get_by_role("button", name="Redeliver").click()
    await expect(page.get_by_role("status").filter(has_text="Queued again")).to_be_visible()
    received = await receiver.wait_for(2)
    assert received[1].json()["id"] == received[0].json()["id"]
    await expect(attempts).to_have_count(2)
    await expect(attempts.nth(1).get_by_test_id("attempt-response")).to_have_text("ok")
    await dashboard.shot("message-view")

    await page.get_by_role("button", name="Delete message").click()
    await page.get_by_role("button", name="Delete for good").click()
    await expect(page.get_by_role("heading", name="Messages", level=1)).to_be_visible()
    await expect(page.get_by_role("heading", name="Nothing received yet")).to_be_visible()
    assert shown_after < LIVE_WITHIN_MS / 1000


async def test_refused_mail_is_listed_with_its_reason_and_reply(dashboard: Dashboard, receiver: Receiver):
    page = dashboard.page
    email = await sign_up(dashboard)
    async with _session(dashboard, email) as api:
        created = await api.post("/webhooks", json={"name": "Paused", "address": f"paused@{PUBLIC}",
                                                    "target_url": receiver.url, "active": False})
        assert created.status_code == 201, created.text
    replies = await attempt(dashboard.conduit.smtp_port, _mail(f"paused@{PUBLIC}", "Hello", "hi"), f"paused@{PUBLIC}")
    (_, code, text) = final(replies)
    assert code == 550, replies

    await go(dashboard, "Messages")
    await page.get_by_label("Status").select_option(label="Refused at SMTP")
    rows = _listed(dashboard)
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("refused")
    await expect(rows.first).to_contain_text("inactive_webhook")
    await expect(rows.first.get_by_test_id("refusal-reply")).to_have_text(" ".join(f"{code} {text}".split()))
    await expect(rows.first).to_contain_text(f"paused@{PUBLIC}")
    await page.get_by_label("Recipient").fill(f"other@{PUBLIC}")
    await expect(page.get_by_text("No messages match.")).to_be_visible()
    assert receiver.received == []


HOSTILE_HTML = (
    "<p id='shown'>Visible body</p>"
    "<script>console.error('pwned-script'); alert('script'); window.top.pwned = 1;</script>"
    "<img src=x onerror=\"console.error('pwned-onerror'); alert('onerror')\">"
    "<img src='{remote}/pixel.png' alt='tracker'>"
    "<form action='{remote}/form'><button id='go'>Go</button></form>"
    "<a href='javascript:alert(1)'>link</a>"
)
# What the browser says when it blocks the mail's script and remote image: expected, nothing else.
_BLOCKED = ("Blocked script execution", "Blocked form submission", "violates the following Content Security Policy")


async def test_hostile_html_mail_is_shown_without_running_or_loading_anything(dashboard: Dashboard,
                                                                              receiver: Receiver):
    page = dashboard.page
    remote = Receiver()  # the "remote host" a tracker would call home to
    await remote.start()
    try:
        loaded: list[str] = []  # requests that completed; one the browser blocked fails instead
        console: list[str] = []

        def on_loaded(request: Request) -> None:
            loaded.append(request.url)

        page.on("requestfinished", on_loaded)
        page.on("console", lambda message: console.append(message.text))
        email = await sign_up(dashboard)
        async with _session(dashboard, email) as api:
            created = await api.post("/webhooks", json={"name": "Inbox", "address": f"inbox@{PUBLIC}",
                                                        "target_url": receiver.url})
            assert created.status_code == 201, created.text
        base = remote.url.rstrip("/")
        mail = _mail(f"inbox@{PUBLIC}", "Hostile", "plain part", HOSTILE_HTML.replace("{remote}", base))
        assert final(await attempt(dashboard.conduit.smtp_port, mail, f"inbox@{PUBLIC}"))[1] == 250

        await go(dashboard, "Messages")
        rows = _listed(dashboard)
        await expect(rows).to_have_count(1, timeout=LIVE_WITHIN_MS)
        await rows.first.get_by_role("link").click()
        frame = page.frame_locator("iframe.mail-frame")
        await expect(frame.locator("#shown")).to_have_text("Visible body")
        iframe = page.locator("iframe.mail-frame")
        assert await iframe.get_attribute("sandbox") == ""
        await frame.locator("#go").click()
        await asyncio.sleep(1.0)  # time for anything that would run, load or submit

        await go(dashboard, "Messages")  # the frame is gone: it reports nothing more
        assert await page.evaluate("window.pwned") is None
        assert not any("pwned" in text for text in console), console
        assert dashboard.watch.dialogs == []
        assert not any(url.startswith(base) for url in loaded), loaded
        assert remote.received == []  # and nothing reached the remote host
        unexpected = [error for error in dashboard.watch.errors if not any(block in error for block in _BLOCKED)]
        assert unexpected == [], unexpected
        assert any("img-src data:" in error for error in dashboard.watch.errors)  # the tracker, blocked
        dashboard.watch.errors.clear()  # the browser's own blocking reports: the proof, not a fault
    finally:
        await remote.stop()


async def test_a_policy_saves_its_spam_fields(dashboard: Dashboard):
    page = dashboard.page
    email = await sign_up(dashboard)
    await dashboard.open("/policies/new")
    await page.get_by_label("Name", exact=True).fill("No spam")
    await expect(page.get_by_label("Spam action")).to_have_value("deliver")
    await page.get_by_label("Spam action").select_option("reject")
    await page.get_by_label("Spam threshold").fill("7.5")
    await page.get_by_role("button", name="Create policy").click()
    await expect(page.get_by_role("heading", name="No spam", level=1)).to_be_visible()
    await page.reload()
    await expect(page.get_by_label("Spam action")).to_have_value("reject")
    await expect(page.get_by_label("Spam threshold")).to_have_value("7.5")

    async with _session(dashboard, email) as api:
        (policy,) = (await api.get("/smtp-policies")).json()
    assert (policy["spam_action"], policy["spam_threshold"]) == ("reject", 7.5)

    await page.get_by_label("Spam threshold").fill("")
    await page.get_by_role("button", name="Save policy").click()
    await expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    async with _session(dashboard, email) as api:
        (policy,) = (await api.get("/smtp-policies")).json()
    assert (policy["spam_action"], policy["spam_threshold"]) == ("reject", None)
