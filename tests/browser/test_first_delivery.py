"""A new user's way to a first delivery, all in the browser: sign up, a public domain, a webhook,
a real SMTP message whose delivery shows up live, its log entry, redelivery."""

from __future__ import annotations

import time

from playwright.async_api import expect

from tests.browser.conftest import Dashboard
from tests.browser.flows import create_webhook, go, sign_up
from tests.support.conduit_process import PUBLIC
from tests.support.conversation import _mail
from tests.support.receiver import Receiver
from tests.support.smtp_client import attempt, final

# The deliveries page asks the API every second, so an attempt shows within about two seconds;
# the bound below leaves a loaded two-core test machine a margin over that.
LIVE_WITHIN_MS = 3000


async def test_sign_up_to_a_live_delivery_and_its_redelivery(dashboard: Dashboard, receiver: Receiver):
    page = dashboard.page
    await dashboard.open("/")
    await expect(page.get_by_role("heading", name="Sign in to Conduit")).to_be_visible()
    await dashboard.shot("sign-in")

    await sign_up(dashboard)
    # A new user is told the next steps; the public domain counts as the first one.
    await expect(page.get_by_role("heading", name="Nothing received yet")).to_be_visible()
    await expect(page.get_by_text(f"{PUBLIC} is a public domain")).to_be_visible()
    await dashboard.shot("getting-started")

    await go(dashboard, "Domains")
    public = page.get_by_role("article", name=PUBLIC)
    await expect(public.get_by_text("public", exact=True)).to_be_visible()

    await create_webhook(dashboard, f"box@{PUBLIC}", receiver.url, Name="Support inbox")
    await expect(page.get_by_role("heading", name="Support inbox", level=1)).to_be_visible()
    await expect(page.get_by_text("No deliveries yet")).to_be_visible()

    replies = await attempt(dashboard.conduit.smtp_port, _mail(f"box@{PUBLIC}", subject="Where is my order?"),
                            f"box@{PUBLIC}")
    assert final(replies)[1] == 250, replies
    (request,) = await receiver.wait_for(1)
    delivered_at = time.monotonic()
    rows = page.get_by_role("table").locator("tbody tr")
    await expect(rows).to_have_count(1, timeout=LIVE_WITHIN_MS)
    shown_after = time.monotonic() - delivered_at
    await expect(rows.first).to_contain_text("delivered")
    await expect(rows.first).to_contain_text("200")
    await expect(rows.first).to_contain_text("ann@sender.example")
    await dashboard.shot("webhook-deliveries")

    message_id = request.json()["id"]
    await rows.first.get_by_role("link").click()
    await expect(page.get_by_role("heading", name="Delivery attempt")).to_be_visible()
    details = page.locator("dl.details")
    for text in ("HTTP status", "200", "ann@sender.example", message_id, "Simulated", "no"):
        await expect(details).to_contain_text(text)
    await expect(page.get_by_test_id("response-excerpt")).to_have_text("ok")
    await dashboard.shot("delivery-attempt")

    await page.get_by_role("button", name="Redeliver").click()
    await expect(page.get_by_role("status").filter(has_text="Queued again")).to_be_visible()
    received = await receiver.wait_for(2)
    assert received[1].json()["id"] == message_id
    assert received[1].headers["webhook-id"] != received[0].headers["webhook-id"]

    await page.get_by_role("link", name="deliveries").click()
    await expect(rows).to_have_count(2)

    await go(dashboard, "Messages")
    overview = page.get_by_role("region", name="Stored messages").locator("tbody tr")
    await expect(overview).to_have_count(1)
    await expect(overview.first).to_contain_text("Where is my order?")
    await expect(overview.first).to_contain_text("delivered")
    await dashboard.shot("messages")
    assert shown_after < LIVE_WITHIN_MS / 1000
