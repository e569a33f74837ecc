"""Steps a person takes in the dashboard, shared by the browser tests."""

from __future__ import annotations

import itertools

from playwright.async_api import expect

from tests.browser.conftest import Dashboard

PASSWORD = "correct horse battery"
_emails = itertools.count(1)


def new_email() -> str:
    return f"person{next(_emails)}@example.com"


async def sign_up(dashboard: Dashboard, email: str | None = None, password: str = PASSWORD) -> str:
    """Create an account through the sign-up page; lands on Messages, signed in."""
    email = email or new_email()
    page = dashboard.page
    await dashboard.open("/sign-up")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("heading", name="Messages", level=1)).to_be_visible()
    return email


async def sign_in(dashboard: Dashboard, email: str, password: str = PASSWORD) -> None:
    page = dashboard.page
    await dashboard.open("/sign-in")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def sign_out(dashboard: Dashboard) -> None:
    await dashboard.page.get_by_role("button", name="Sign out", exact=True).click()
    await expect(dashboard.page.get_by_role("heading", name="Sign in to Conduit")).to_be_visible()


HEADINGS = {"Policies": "SMTP policies"}


async def go(dashboard: Dashboard, section: str) -> None:
    """Follow a link of the main navigation, and wait for that page."""
    page = dashboard.page
    await page.get_by_role("navigation", name="Main").get_by_role("link", name=section, exact=True).click()
    await expect(page.get_by_role("heading", name=HEADINGS.get(section, section), level=1, exact=True)).to_be_visible()


async def create_webhook(dashboard: Dashboard, address: str, target_url: str, **fields: str) -> None:
    """Through Webhooks > Create webhook; lands on the new webhook's page."""
    page = dashboard.page
    await go(dashboard, "Webhooks")
    await page.get_by_role("link", name="Create webhook").first.click()
    await page.get_by_label("Address").fill(address)
    await page.get_by_label("Target URL").fill(target_url)
    for label, value in fields.items():
        await page.get_by_label(label, exact=True).fill(value)
    await page.get_by_role("button", name="Create webhook").click()
    await expect(page.get_by_role("navigation", name="Webhook sections")).to_be_visible()
