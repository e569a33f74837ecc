"""Signing in and out in the browser: the session cookie (HttpOnly, out of every script's reach),
2FA setup from the QR code's secret and the TOTP and backup-code sign-in, the password reset
through a real mail, sign out everywhere, and account deletion."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from playwright.async_api import Browser, expect

from tests.browser.conftest import Dashboard, new_tab
from tests.browser.flows import PASSWORD, go, sign_in, sign_out, sign_up
from tests.conftest import MailSink
from tests.factories import TotpCodes
from tests.support.conduit_process import Conduit

NEW_PASSWORD = "a brand new passphrase"


async def test_the_session_survives_a_reload_and_no_script_can_read_a_token(dashboard: Dashboard):
    page = dashboard.page
    await sign_up(dashboard)
    await page.reload()
    await expect(page.get_by_role("heading", name="Messages", level=1)).to_be_visible()
    assert await page.evaluate("document.cookie") == ""
    assert await page.evaluate("localStorage.length + sessionStorage.length") == 0
    [cookie] = await dashboard.context.cookies()
    assert cookie["name"] == "conduit_refresh" and cookie["value"].startswith("crt_")
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/api/v1/sessions")

    await sign_out(dashboard)
    assert await dashboard.context.cookies() == []
    await page.reload()
    await expect(page.get_by_role("heading", name="Sign in to Conduit")).to_be_visible()


async def test_tabs_opened_together_share_the_session(dashboard: Dashboard):
    """Each tab refreshes the one cookie at start; refresh tokens work once, so the tabs take turns
    (a rotated token presented again would end the sign-in for all of them)."""
    await sign_up(dashboard)
    tabs = [dashboard.page] + [await dashboard.context.new_page() for _ in range(3)]
    for tab in tabs[1:]:
        dashboard.watch.attach(tab)
    for _ in range(2):
        await asyncio.gather(*(tab.goto(f"{dashboard.base_url}/#/webhooks") for tab in tabs))
        for tab in tabs:
            await expect(tab.get_by_role("heading", name="Webhooks", level=1)).to_be_visible()


async def test_two_factor_setup_backup_codes_and_sign_in(dashboard: Dashboard, tmp_path: Path):
    page = dashboard.page
    email = await sign_up(dashboard)
    await go(dashboard, "Security")
    await page.get_by_role("button", name="Set up two-factor authentication").click()
    qr = page.get_by_role("img", name="QR code for your authenticator app")
    await expect(qr).to_be_visible()
    assert await qr.evaluate("image => image.complete && image.naturalWidth > 100")
    secret = await page.get_by_test_id("totp-secret").inner_text()
    codes = TotpCodes(secret)
    await dashboard.shot("two-factor-setup")

    await page.get_by_label("Authentication code").fill("000000")
    await page.get_by_role("button", name="Enable two-factor authentication").click()
    await expect(page.get_by_role("alert")).to_contain_text("wrong")
    await page.get_by_label("Authentication code").fill(codes.next())
    await page.get_by_role("button", name="Enable two-factor authentication").click()
    backup_list = page.get_by_role("list", name="Backup codes").get_by_role("listitem")
    await expect(backup_list).to_have_count(10)
    backup = [code.strip() for code in await backup_list.all_inner_texts()]

    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Download backup codes").click()
    download = await download_info.value
    assert download.suggested_filename == "conduit-backup-codes.txt"
    await download.save_as(tmp_path / "codes.txt")
    saved = (tmp_path / "codes.txt").read_text()
    assert all(code in saved for code in backup)
    await page.get_by_role("button", name="I saved my backup codes").click()
    await expect(backup_list).to_have_count(0)
    two_factor = page.get_by_role("region", name="Two-factor authentication")
    await expect(two_factor.get_by_text("on", exact=True)).to_be_visible()

    # Sign in with a code from the app.
    await sign_out(dashboard)
    await sign_in(dashboard, email)
    await expect(page.get_by_role("heading", name="Two-factor authentication")).to_be_visible()
    await dashboard.shot("two-factor-sign-in")
    await page.get_by_label("Authentication code").fill(codes.next())
    await page.get_by_role("button", name="Verify").click()
    await expect(page.get_by_role("heading", name="Messages", level=1)).to_be_visible()

    # With a backup code, which works once.
    for attempt, expected in ((backup[0], "signed in"), (backup[0], "refused")):
        await sign_out(dashboard)
        await sign_in(dashboard, email)
        await page.get_by_role("button", name="Use a backup code instead").click()
        await page.get_by_label("Backup code").fill(attempt)
        await page.get_by_role("button", name="Verify").click()
        if expected == "signed in":
            await expect(page.get_by_role("heading", name="Messages", level=1)).to_be_visible()
        else:
            await expect(page.get_by_role("alert")).to_contain_text("wrong or was already used")
    await page.get_by_label("Backup code").fill(backup[1])
    await page.get_by_role("button", name="Verify").click()
    await expect(page.get_by_role("heading", name="Messages", level=1)).to_be_visible()

    # New backup codes replace the old ones; then 2FA is turned off.
    await go(dashboard, "Security")
    await page.get_by_label("Authentication code").fill(backup[2])
    await page.get_by_role("button", name="Regenerate backup codes").click()
    await expect(backup_list).to_have_count(10)
    fresh = [code.strip() for code in await backup_list.all_inner_texts()]
    assert not set(fresh) & set(backup)
    await page.get_by_role("button", name="I saved my backup codes").click()
    await page.get_by_label("Authentication code").fill(backup[3])  # an old one: refused
    await page.get_by_role("button", name="Turn off two-factor authentication").click()
    await expect(page.get_by_role("alert")).to_contain_text("wrong or was already used")
    await page.get_by_label("Authentication code").fill(fresh[0])
    await page.get_by_role("button", name="Turn off two-factor authentication").click()
    await expect(page.get_by_role("status").filter(has_text="Two-factor authentication is off.")).to_be_visible()
    await sign_out(dashboard)
    await sign_in(dashboard, email)
    await expect(page.get_by_role("heading", name="Messages", level=1)).to_be_visible()


async def test_password_reset_through_the_mail(dashboard: Dashboard, mail_sink: MailSink):
    page = dashboard.page
    email = await sign_up(dashboard)
    await sign_out(dashboard)
    await page.get_by_role("link", name="Forgot your password?").click()
    # The sign-in page has an Email field too: fill this page's, once it is the one shown.
    await expect(page.get_by_role("heading", name="Reset your password")).to_be_visible()
    await page.get_by_role("button", name="Send reset link").click()
    await expect(page.get_by_role("alert")).to_have_text("Enter the email address of your account.")
    await page.get_by_label("Email").fill(email)
    await page.get_by_role("button", name="Send reset link").click()
    await expect(page.get_by_role("status")).to_contain_text(f"If an account uses {email}, a mail with a link")

    [mail] = await mail_sink.wait_for(1)
    link = re.search(r"(http://\S+/#/reset-password\?token=\S+)", mail.get_content()).group(1)
    assert link.startswith(dashboard.base_url)
    await page.goto(link)
    await expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    await expect(page).to_have_url(re.compile(r"#/reset-password$"))  # the token left the address bar
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("Repeat the new password").fill(NEW_PASSWORD + " typo")
    await page.get_by_role("button", name="Set new password").click()
    await expect(page.get_by_role("alert")).to_have_text("The two passwords differ.")
    await page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Set new password").click()
    await expect(page.get_by_role("status")).to_contain_text("Your password was changed")

    await page.get_by_role("link", name="Sign in", exact=True).click()
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("email or password is wrong")
    await page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Messages", level=1)).to_be_visible()

    # The link works once.
    await page.goto(link)
    await page.get_by_label("New password", exact=True).fill(PASSWORD)
    await page.get_by_label("Repeat the new password").fill(PASSWORD)
    await page.get_by_role("button", name="Set new password").click()
    await expect(page.get_by_role("alert")).to_be_visible()


async def test_sign_out_everywhere_ends_the_other_browsers_session(browser: Browser, conduit: Conduit):
    first, second = await new_tab(browser, conduit), await new_tab(browser, conduit)
    try:
        email = await sign_up(first)
        await sign_in(second, email)
        await expect(second.page.get_by_role("heading", name="Messages", level=1)).to_be_visible()

        # Signing out one browser leaves the other signed in.
        third = await new_tab(browser, conduit)
        await sign_in(third, email)
        await expect(third.page.get_by_role("heading", name="Messages", level=1)).to_be_visible()
        await sign_out(third)
        await second.page.reload()
        await expect(second.page.get_by_role("heading", name="Messages", level=1)).to_be_visible()
        await third.context.close()

        await go(first, "Security")
        await first.page.get_by_role("button", name="Sign out everywhere").click()
        await expect(first.page.get_by_role("heading", name="Sign in to Conduit")).to_be_visible()
        assert await first.context.cookies() == []
        # The other browser finds out at its next request.
        await second.page.get_by_role("navigation", name="Main").get_by_role("link", name="Webhooks").click()
        await expect(second.page.get_by_role("heading", name="Sign in to Conduit")).to_be_visible()
        for tab in (first, second, third):
            tab.watch.assert_clean()
    finally:
        await first.context.close()
        await second.context.close()


async def test_changing_the_password_keeps_this_browser_signed_in(dashboard: Dashboard):
    page = dashboard.page
    email = await sign_up(dashboard)
    await go(dashboard, "Security")
    await page.get_by_label("Current password").fill(PASSWORD)
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Change password").click()
    await expect(page.get_by_role("status").filter(has_text="Password changed.")).to_be_visible()
    await page.reload()
    await expect(page.get_by_role("heading", name="Security", level=1)).to_be_visible()
    await sign_out(dashboard)
    await sign_in(dashboard, email, NEW_PASSWORD)
    await expect(page.get_by_role("heading", name="Messages", level=1)).to_be_visible()


async def test_deleting_the_account_needs_the_password_and_a_confirmation(dashboard: Dashboard):
    page = dashboard.page
    email = await sign_up(dashboard)
    await go(dashboard, "Security")
    await page.get_by_label("Your password").fill(PASSWORD)
    await page.get_by_role("button", name="Delete account").click()
    await expect(page.get_by_role("alert")).to_contain_text("Tick the box")
    await page.get_by_label("I understand that this deletes everything, for good").check()
    await page.get_by_label("Your password").fill("not my password")
    await page.get_by_role("button", name="Delete account").click()
    await expect(page.get_by_role("alert")).to_be_visible()
    await page.get_by_label("Your password").fill(PASSWORD)
    await page.get_by_role("button", name="Delete account").click()
    await expect(page.get_by_role("heading", name="Sign in to Conduit")).to_be_visible()
    assert await dashboard.context.cookies() == []
    await sign_in(dashboard, email)
    await expect(page.get_by_role("alert")).to_contain_text("email or password is wrong")
