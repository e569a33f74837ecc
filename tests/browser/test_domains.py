"""Claiming a domain of one's own in the browser: the exact records to publish (with copy
buttons), the API's explanation when DNS is not right yet, and verification against a real
DNS server on loopback."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser.conftest import MX_HOST, Dashboard
from tests.browser.flows import create_webhook, go, sign_up
from tests.support.dns_server import LoopbackDNS
from tests.support.receiver import Receiver

NAME = "mail.shop.example"


async def clipboard(dashboard: Dashboard) -> str:
    return await dashboard.page.evaluate("navigator.clipboard.readText()")


async def test_claim_publish_and_verify_a_domain(dashboard: Dashboard, dns_zone: LoopbackDNS, receiver: Receiver):
    page = dashboard.page
    await sign_up(dashboard)
    await go(dashboard, "Domains")
    await expect(page.get_by_role("heading", name="No domain of your own yet")).to_be_visible()
    await page.get_by_label("Domain name").fill("Mail.Shop.Example.")
    await page.get_by_role("button", name="Add domain").click()

    card = page.get_by_role("article", name=NAME)
    await expect(card.get_by_text("pending verification")).to_be_visible()
    # Rows are told apart by their type cell: the random token may contain "mx" itself.
    txt_row = card.get_by_role("row").filter(has=page.get_by_role("cell", name="TXT", exact=True))
    mx_row = card.get_by_role("row").filter(has=page.get_by_role("cell", name="MX", exact=True))
    await expect(txt_row).to_contain_text(f"_conduit-verify.{NAME}")
    await expect(mx_row).to_contain_text(NAME)
    await expect(mx_row).to_contain_text(MX_HOST)
    await expect(mx_row.get_by_role("cell", name="10", exact=True)).to_be_visible()
    await dashboard.shot("domains")

    # The copy buttons copy exactly what is shown.
    await card.get_by_role("button", name="Copy TXT value").click()
    token = await clipboard(dashboard)
    assert token and token in await txt_row.inner_text()
    await card.get_by_role("button", name="Copy TXT name").click()
    assert await clipboard(dashboard) == f"_conduit-verify.{NAME}"
    await card.get_by_role("button", name="Copy MX value").click()
    assert await clipboard(dashboard) == MX_HOST

    # Nothing published yet: the API's explanation is shown next to the button.
    await card.get_by_role("button", name="Verify").click()
    await expect(card.get_by_role("alert")).to_contain_text("TXT")
    await expect(card.get_by_role("alert")).to_contain_text(f"_conduit-verify.{NAME}")

    # A wrong MX: the explanation names what DNS returned.
    dns_zone.add(f"_conduit-verify.{NAME}", "TXT", token)
    dns_zone.add(NAME, "MX", "10 mx.elsewhere.example")
    await card.get_by_role("button", name="Verify").click()
    await expect(card.get_by_role("alert")).to_contain_text("MX check failed")
    await expect(card.get_by_role("alert")).to_contain_text("mx.elsewhere.example")

    dns_zone.add(NAME, "MX", f"10 {MX_HOST}")
    await card.get_by_role("button", name="Verify").click()
    await expect(card.get_by_text("verified", exact=True)).to_be_visible()
    await expect(card.get_by_role("status")).to_contain_text(f"You can create webhooks on {NAME} now")

    # A catch-all on the verified domain is now possible.
    await create_webhook(dashboard, f"*@{NAME}", receiver.url)
    await expect(page.get_by_role("heading", name=f"*@{NAME}", level=1)).to_be_visible()


async def test_a_name_that_is_not_a_domain_is_refused_with_the_apis_reason(dashboard: Dashboard):
    page = dashboard.page
    await sign_up(dashboard)
    await go(dashboard, "Domains")
    weird = '"><img src=x onerror=alert(1)>.example'
    await page.get_by_label("Domain name").fill(weird)
    await page.get_by_role("button", name="Add domain").click()
    await expect(page.get_by_role("alert")).to_be_visible()
    assert await page.locator("img[src=x]").count() == 0
    await expect(page.get_by_role("heading", name="No domain of your own yet")).to_be_visible()
