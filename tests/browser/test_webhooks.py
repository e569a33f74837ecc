"""Webhooks in the browser: every field created and edited, the signing secret, the template
editor's preview, a test message and its outcome, the deliveries filter, deletion."""

from __future__ import annotations

import json

from playwright.async_api import expect

from tests.browser.conftest import Dashboard
from tests.browser.flows import PASSWORD, create_webhook, go, sign_up
from tests.support.conduit_process import PUBLIC
from tests.support.receiver import Receiver, Reply

TEMPLATE = '{"subject": {{ subject | tojson }}, "to": {{ to[0].address | tojson }}}'


async def api_session(dashboard: Dashboard, email: str):
    """The same account through the API, as a script of its owner would use it."""
    client = dashboard.api()
    response = await client.post("/sessions", json={"email": email, "password": PASSWORD})
    client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    return client


async def test_create_edit_preview_test_and_delete_a_webhook(dashboard: Dashboard, receiver: Receiver):
    page = dashboard.page
    email = await sign_up(dashboard)
    api = await api_session(dashboard, email)
    policy = (await api.post("/smtp-policies",
                             json={"name": "Only our relay", "allowed_source_ips": "127.0.0.1"})).json()

    await go(dashboard, "Webhooks")
    await expect(page.get_by_role("heading", name="No webhooks yet")).to_be_visible()
    await create_webhook(dashboard, f"orders@{PUBLIC}", receiver.url, Name="Orders")
    [hook] = (await api.get("/webhooks")).json()
    assert (hook["name"], hook["address"], hook["target_url"], hook["active"]) == (
        "Orders", f"orders@{PUBLIC}", receiver.url, True)

    # Settings: change every field.
    await page.get_by_role("link", name="Settings").click()
    await page.get_by_label("Name", exact=True).fill("Orders (EU)")
    await page.get_by_label("Target URL").fill(receiver.url + "/eu")
    await page.get_by_label("Rate limit").fill("30")
    await page.get_by_label("SMTP policy").select_option(label="Only our relay")
    await expect(page.get_by_label("Answer timeout (ms)")).to_have_count(0)  # queued: no timeout to set
    await page.get_by_label("Delivery mode").select_option("synchronous")
    await page.get_by_label("Answer timeout (ms)").fill("5000")
    await page.get_by_role("button", name="Add header").click()
    await page.get_by_label("Header 1 name").fill("Authorization")
    await page.get_by_label("Header 1 value").fill("Bearer s3cret")
    await page.get_by_role("button", name="Add header").click()
    await page.get_by_label("Header 2 name").fill("X-Tenant")
    await page.get_by_label("Header 2 value").fill("eu-1")
    await page.get_by_label("Payload template").fill(TEMPLATE)

    # The preview renders the sample message with the template, through the API.
    await page.get_by_text("Sample message").click()
    await page.get_by_label("Sample subject").fill("Order #42")
    await page.get_by_role("button", name="Preview payload").click()
    await expect(page.get_by_test_id("rendered-body")).to_have_text(
        json.dumps({"subject": "Order #42", "to": f"orders@{PUBLIC}"}, separators=(", ", ": ")))
    await dashboard.shot("webhook-settings")

    await page.get_by_role("button", name="Save webhook").click()
    await expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    saved = (await api.get(f"/webhooks/{hook['id']}")).json()
    assert saved["name"] == "Orders (EU)"
    assert saved["target_url"] == receiver.url + "/eu"
    assert saved["rate_limit"] == 30
    assert saved["smtp_security_policy_id"] == policy["id"]
    assert saved["custom_headers"] == {"Authorization": "Bearer s3cret", "X-Tenant": "eu-1"}
    assert saved["payload_template"] == TEMPLATE
    assert saved["active"] is True
    assert (saved["delivery_mode"], saved["sync_timeout_ms"]) == ("synchronous", 5000)

    # A template that does not compile: the API's message, with its line, next to the form.
    await page.get_by_label("Payload template").fill("ok\n{{ subject")
    await page.get_by_role("button", name="Save webhook").click()
    await expect(page.get_by_role("alert")).to_contain_text("payload_template line 2")
    await page.get_by_label("Payload template").fill(TEMPLATE)

    # The signing secret: hidden, revealed, copied.
    secret = page.get_by_test_id("signing-secret")
    await expect(secret).not_to_contain_text("whsec_")
    await page.get_by_role("button", name="Reveal secret").click()
    await expect(secret).to_have_text(saved["secret"])
    await page.get_by_role("button", name="Copy signing secret").click()
    assert await page.evaluate("navigator.clipboard.readText()") == saved["secret"]

    # A test message: delivered with the headers and the template.
    await page.get_by_role("link", name="Send a test message").click()
    subject = page.get_by_role("region", name="Send a test message").get_by_label("Subject")
    await expect(subject).to_have_value("Hello from Conduit")  # the form is there, with its sample
    await subject.fill("Test from the dashboard")
    await expect(subject).to_have_value("Test from the dashboard")
    await page.get_by_role("button", name="Send test message").click()
    await expect(page.get_by_role("status")).to_contain_text("Delivered: your endpoint answered HTTP 200")
    (request,) = receiver.received
    assert request.path == "/hook/eu"
    assert request.headers["Authorization"] == "Bearer s3cret" and request.headers["X-Tenant"] == "eu-1"
    assert request.json() == {"subject": "Test from the dashboard", "to": f"orders@{PUBLIC}"}
    await dashboard.shot("webhook-test")

    # A failing endpoint: the outcome says so.
    receiver.reply(Reply(status=503, body="maintenance"))
    await page.get_by_role("button", name="Send test message").click()
    await expect(page.get_by_role("status")).to_contain_text("Not delivered: your endpoint answered HTTP 503")

    # Deliveries: both attempts, filtered by status.
    await page.get_by_role("link", name="Deliveries", exact=True).click()
    rows = page.get_by_role("table").locator("tbody tr")
    await expect(rows).to_have_count(2)
    await page.get_by_label("Status").select_option("failed")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("503")
    await page.get_by_label("Status").select_option("delivered")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("200")
    await page.get_by_label("Status").select_option("rejected")
    await expect(page.get_by_role("heading", name="No rejected deliveries")).to_be_visible()

    # Inactive, and the policy removed.
    await page.get_by_role("link", name="Settings").click()
    await page.get_by_label("Active").uncheck()
    await page.get_by_label("SMTP policy").select_option(label="None (any sender)")
    await page.get_by_label("Answer timeout (ms)").fill("500")  # below the API's bound: its error shows
    await page.get_by_role("button", name="Save webhook").click()
    await expect(page.get_by_role("alert")).to_contain_text("sync_timeout_ms")
    await page.get_by_label("Delivery mode").select_option("queued")
    await page.get_by_role("button", name="Save webhook").click()
    await expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    saved = (await api.get(f"/webhooks/{hook['id']}")).json()
    assert saved["active"] is False and saved["smtp_security_policy_id"] is None
    assert (saved["delivery_mode"], saved["sync_timeout_ms"]) == ("queued", 5000)
    await expect(page.get_by_text("inactive", exact=True)).to_be_visible()

    await page.get_by_role("button", name="Delete webhook").click()
    await page.get_by_role("button", name="Delete for good").click()
    await expect(page.get_by_role("heading", name="No webhooks yet")).to_be_visible()
    assert (await api.get("/webhooks")).json() == []
    await api.aclose()
