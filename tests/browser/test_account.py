"""SMTP policies (credentials never shown in clear), API tokens (shown once, usable, revoked),
the time zone every time is shown in, and the audit log, in the browser."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser.conftest import Dashboard
from tests.browser.flows import go, sign_up

SMTP_PASSWORD = "relay-pass-9f3k"


async def test_policies_show_credentials_masked(dashboard: Dashboard):
    page = dashboard.page
    await sign_up(dashboard)
    await go(dashboard, "Policies")
    await expect(page.get_by_role("heading", name="No policies yet")).to_be_visible()
    await page.get_by_role("link", name="Create policy").first.click()
    await page.get_by_label("Name", exact=True).fill("Relay only")
    await page.get_by_label("Allowed source IPs").fill("127.0.0.1, 192.0.2.0/24")
    await page.get_by_label("Require SMTP AUTH").check()
    await page.get_by_label("SMTP username").fill("relay")
    await page.get_by_label("SMTP password").fill(SMTP_PASSWORD)
    await page.get_by_role("button", name="Create policy").click()

    await expect(page.get_by_role("heading", name="Relay only", level=1)).to_be_visible()
    await expect(page.get_by_test_id("current-credentials")).to_have_text("relay:********")
    await expect(page.get_by_label("Allowed source IPs")).to_have_value("127.0.0.1, 192.0.2.0/24")
    assert SMTP_PASSWORD not in await page.content()

    await page.get_by_label("Require SPF").check()
    await page.get_by_label("Allowed SPF domains").fill("relay.example")
    await page.get_by_role("button", name="Save policy").click()
    await expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    await expect(page.get_by_test_id("current-credentials")).to_have_text("relay:********")
    await dashboard.shot("policy")

    await go(dashboard, "Policies")
    row = page.get_by_role("row").filter(has_text="Relay only")
    await expect(row).to_contain_text("relay:********")
    await expect(row).to_contain_text("SPF from relay.example")
    await expect(row).to_contain_text("SMTP AUTH")
    assert SMTP_PASSWORD not in await page.content()

    # Removing the credentials needs the AUTH requirement gone too: the API says so otherwise.
    await row.get_by_role("link", name="Relay only").click()
    await page.get_by_label("Remove the credentials").check()
    await page.get_by_role("button", name="Save policy").click()
    await expect(page.get_by_role("alert")).to_be_visible()
    await page.get_by_label("Require SMTP AUTH").uncheck()
    await page.get_by_role("button", name="Save policy").click()
    await expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    await expect(page.get_by_test_id("current-credentials")).to_have_count(0)

    await page.get_by_role("button", name="Delete policy").click()
    await page.get_by_role("button", name="Delete for good").click()
    await expect(page.get_by_role("heading", name="No policies yet")).to_be_visible()


async def test_api_token_is_shown_once_works_and_is_revoked(dashboard: Dashboard):
    page = dashboard.page
    await sign_up(dashboard)
    await go(dashboard, "API tokens")
    await page.get_by_label("Token name").fill("CI deploy")
    await page.get_by_label("Allowed IPs").fill("127.0.0.1, 10.0.0.0/8")
    await page.get_by_label("Expires").select_option(label="30 days")
    await page.get_by_role("button", name="Create token").click()

    shown = page.get_by_test_id("new-api-token")
    await expect(shown).to_contain_text("cdt_")
    token = await shown.inner_text()
    await page.get_by_role("button", name="Copy API token").click()
    assert await page.evaluate("navigator.clipboard.readText()") == token
    row = page.get_by_role("row").filter(has_text="CI deploy")
    await expect(row).to_contain_text("127.0.0.1/32, 10.0.0.0/8")
    await dashboard.shot("api-tokens")

    async with dashboard.api(token) as api:
        assert (await api.get("/accounts/me")).status_code == 200

    # Once dismissed (or after a reload) the secret is gone from the page for good.
    await page.get_by_role("button", name="Done").click()
    await expect(shown).to_have_count(0)
    await page.reload()
    await expect(row).to_be_visible()
    assert token not in await page.content()

    await row.get_by_role("button", name="Revoke CI deploy").click()
    await page.get_by_role("button", name="Revoke token").click()
    await expect(page.get_by_role("heading", name="No API tokens")).to_be_visible()
    async with dashboard.api(token) as api:
        assert (await api.get("/accounts/me")).status_code == 401


async def test_times_follow_the_accounts_time_zone_and_the_audit_log_lists_changes(dashboard: Dashboard):
    page = dashboard.page
    await sign_up(dashboard)
    await go(dashboard, "Audit log")
    first = page.get_by_role("table").locator("tbody tr").last
    await expect(first).to_contain_text("account.sign_up")
    await expect(first).to_contain_text("UTC")

    await go(dashboard, "Security")
    await page.get_by_role("combobox", name="Time zone").select_option("Asia/Tokyo")
    await page.get_by_role("button", name="Save time zone").click()
    await expect(page.get_by_role("status").filter(has_text="Time zone saved.")).to_be_visible()
    await expect(page.get_by_text("Now: ")).to_contain_text("GMT+9")

    await go(dashboard, "Audit log")
    rows = page.get_by_role("table").locator("tbody tr")
    await expect(rows.first).to_contain_text("account.timezone_changed")
    await expect(rows.first).to_contain_text("GMT+9")
    await expect(rows.last).to_contain_text("GMT+9")
    await expect(rows.first).to_contain_text("Asia/Tokyo")  # its metadata, as text
    await dashboard.shot("audit-log")
