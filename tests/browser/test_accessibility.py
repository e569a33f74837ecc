"""Accessible names and keyboard use: every control has a visible label, every button and link
a name, the main navigation is a landmark with the product's sections, and a whole flow (sign in,
create a webhook, send a test message, open its delivery, delete the webhook) works with the
keyboard alone."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser.conftest import Dashboard
from tests.browser.flows import PASSWORD, create_webhook, go, sign_out, sign_up
from tests.support.conduit_process import PUBLIC
from tests.support.receiver import Receiver

SECTIONS = ["Messages", "Webhooks", "Domains", "Policies", "API tokens", "Security", "Audit log"]

# Controls without a visible <label> naming them, and buttons or links without a name.
UNNAMED = """() => {
    const problems = [];
    for (const control of document.querySelectorAll('input, select, textarea')) {
        if (control.type === 'hidden') continue;
        const label = control.labels && control.labels[0];
        if (!label || !label.textContent.trim()) problems.push(control.outerHTML.slice(0, 120));
    }
    for (const element of document.querySelectorAll('button, a[href]')) {
        const name = (element.getAttribute('aria-label') || element.textContent || '').trim();
        if (!name) problems.push(element.outerHTML.slice(0, 120));
    }
    if (document.querySelectorAll('h1').length !== 1) problems.push('not exactly one h1');
    if (!document.querySelector('main')) problems.push('no main landmark');
    return problems;
}"""

FOCUSED_NAME = """() => {
    const element = document.activeElement;
    if (!element || element === document.body) return '';
    if (element.labels && element.labels.length) return element.labels[0].textContent.trim();
    return (element.getAttribute('aria-label') || element.textContent || '').trim();
}"""


async def assert_named(dashboard: Dashboard, where: str) -> None:
    assert await dashboard.page.evaluate(UNNAMED) == [], where


async def tab_to(dashboard: Dashboard, name: str, *, limit: int = 80) -> None:
    """Press Tab until the focused element is named ``name``: it must be reachable by keyboard."""
    for _ in range(limit):
        await dashboard.page.keyboard.press("Tab")
        if await dashboard.page.evaluate(FOCUSED_NAME) == name:
            return
    raise AssertionError(f"{name!r} cannot be reached with Tab")


async def test_every_page_names_its_controls_and_has_the_main_navigation(dashboard: Dashboard, receiver: Receiver):
    page = dashboard.page
    for route, heading in (("/sign-in", "Sign in to Conduit"), ("/sign-up", "Create your Conduit account"),
                           ("/forgot-password", "Reset your password")):
        await dashboard.open(route)
        await expect(page.get_by_role("heading", name=heading)).to_be_visible()
        await assert_named(dashboard, route)

    await sign_up(dashboard)
    navigation = page.get_by_role("navigation", name="Main")
    assert await navigation.get_by_role("link").all_inner_texts() == SECTIONS
    await create_webhook(dashboard, f"a11y@{PUBLIC}", receiver.url)
    for tab in ("Deliveries", "Settings", "Send a test message"):
        await page.get_by_role("navigation", name="Webhook sections").get_by_role("link", name=tab).click()
        await assert_named(dashboard, f"webhook {tab}")
    await page.get_by_role("button", name="Send test message").click()
    await page.get_by_role("link", name="See it in the deliveries").click()
    await page.get_by_role("table").locator("tbody tr").first.get_by_role("link").click()
    await expect(page.get_by_role("heading", name="Delivery attempt")).to_be_visible()
    await assert_named(dashboard, "delivery attempt")

    await go(dashboard, "Domains")
    await page.get_by_label("Domain name").fill("mail.a11y.example")
    await page.get_by_role("button", name="Add domain").click()
    await expect(page.get_by_role("button", name="Verify")).to_be_visible()
    await go(dashboard, "Security")
    await page.get_by_role("button", name="Set up two-factor authentication").click()
    await expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    for section in SECTIONS:
        await go(dashboard, section)
        await expect(navigation.get_by_role("link", name=section, exact=True)).to_have_attribute("aria-current", "page")
        await assert_named(dashboard, section)
    await dashboard.open("/policies/new")
    await expect(page.get_by_role("button", name="Create policy")).to_be_visible()
    await assert_named(dashboard, "new policy")


async def test_a_whole_flow_with_the_keyboard_alone(dashboard: Dashboard, receiver: Receiver):
    page = dashboard.page
    email = await sign_up(dashboard)
    await sign_out(dashboard)
    keyboard = page.keyboard

    # Sign in: the email field has the focus (once the page has set it); Enter submits.
    await expect(page.get_by_label("Email")).to_be_focused()
    await keyboard.type(email)
    await tab_to(dashboard, "Password")
    await keyboard.type(PASSWORD)
    await keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Messages", level=1)).to_be_visible()

    # On a fresh load the skip link is the first stop, and it moves the focus to the content.
    await page.reload()
    await expect(page.get_by_role("heading", name="Messages", level=1)).to_be_visible()
    await keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Skip to content")).to_be_focused()
    await keyboard.press("Enter")
    await expect(page.get_by_role("main")).to_be_focused()

    await tab_to(dashboard, "Webhooks")
    await keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Webhooks", level=1)).to_be_visible()
    await tab_to(dashboard, "Create webhook")
    await keyboard.press("Enter")
    await tab_to(dashboard, "Address")
    await keyboard.type(f"keys@{PUBLIC}")
    await tab_to(dashboard, "Target URL")
    await keyboard.type(receiver.url)
    await tab_to(dashboard, "Active")
    await keyboard.press("Space")  # off
    await keyboard.press("Space")  # and on again
    await tab_to(dashboard, "Create webhook")
    await keyboard.press("Enter")
    await expect(page.get_by_role("navigation", name="Webhook sections")).to_be_visible()

    await tab_to(dashboard, "Send a test message")
    await keyboard.press("Enter")
    await tab_to(dashboard, "Send test message")
    await keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_contain_text("Delivered")
    await tab_to(dashboard, "See it in the deliveries")
    await keyboard.press("Enter")
    row_link = page.get_by_role("table").locator("tbody tr").first.get_by_role("link")
    await expect(row_link).to_be_visible()
    await tab_to(dashboard, await row_link.inner_text())
    await keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Delivery attempt")).to_be_visible()
    await tab_to(dashboard, "Redeliver")
    await keyboard.press("Enter")
    # A test message is not stored, so there is nothing to send again: the API says so.
    await expect(page.get_by_role("alert")).to_be_visible()

    await tab_to(dashboard, f"keys@{PUBLIC}")  # the breadcrumb back to the webhook
    await keyboard.press("Enter")
    await tab_to(dashboard, "Settings")
    await keyboard.press("Enter")
    # The settings are loaded before the focus can reach them: Tab waits for nothing.
    await expect(page.get_by_role("button", name="Delete webhook")).to_be_visible()
    await tab_to(dashboard, "Delete webhook")
    await keyboard.press("Enter")
    await expect(page.get_by_role("button", name="Delete for good")).to_be_focused()  # the confirmation has the focus
    await keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="No webhooks yet")).to_be_visible()
