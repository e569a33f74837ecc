"""Hostile data in every place the dashboard shows user or mail content: names, addresses,
headers, templates, senders, subjects, response excerpts, audit metadata. It must appear as
text, and nothing in it may run (no dialog, no console error, no injected element), and the
page's policy must refuse inline script even when something tries to add some."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

from playwright.async_api import expect

from tests.browser.conftest import Dashboard
from tests.browser.flows import PASSWORD, go, sign_up
from tests.support.conduit_process import PUBLIC
from tests.support.receiver import Receiver, Reply
from tests.support.smtp_client import attempt, final

WEBHOOK_NAME = "<img src=x onerror=alert(1)>"
TEMPLATE = '</script><script>alert(2)</script>{{ subject }}'
HEADER_VALUE = "<svg onload=alert(3)>"
RESPONSE = "<script>alert(4)</script><img src=x onerror=alert(5)><iframe src=javascript:alert(6)>"
SENDER = '"<img src=x onerror=alert(7)>" <evil@example.com>'
SUBJECT = "<script>alert(8)</script>"
POLICY_NAME = "<b onmouseover=alert(9)>policy</b>"
TOKEN_NAME = "<a href=javascript:alert(10)>token</a>"
INJECTED = "img[src='x'], svg, iframe, b, script:not([src]), a[href^='javascript']"


async def logged(dashboard: Dashboard, text: str, timeout: float = 5.0) -> None:
    """Wait until the page logged an error containing ``text``."""
    for _ in range(int(timeout / 0.05)):
        if any(text in error for error in dashboard.watch.errors):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no error with {text!r} logged: {dashboard.watch.errors}")


async def injected(dashboard: Dashboard) -> int:
    return await dashboard.page.locator(INJECTED).count()


async def test_hostile_data_is_shown_as_text_and_never_runs(dashboard: Dashboard, receiver: Receiver):
    page = dashboard.page
    email = await sign_up(dashboard)
    async with dashboard.api() as api:
        session = (await api.post("/sessions", json={"email": email, "password": PASSWORD})).json()
        api.headers["Authorization"] = f"Bearer {session['access_token']}"
        policy = (await api.post("/smtp-policies", json={"name": POLICY_NAME})).json()
        hook = (await api.post("/webhooks", json={
            "name": WEBHOOK_NAME, "address": f"evil@{PUBLIC}", "target_url": receiver.url,
            "custom_headers": {"X-Evil": HEADER_VALUE}, "payload_template": TEMPLATE,
            "smtp_security_policy_id": policy["id"]})).json()
        assert hook["name"] == WEBHOOK_NAME
        receiver.reply(Reply(status=500, body=RESPONSE))
        simulated = await api.post(f"/webhooks/{hook['id']}/simulate",
                                   json={"from": SENDER, "subject": SUBJECT, "text": RESPONSE})
        assert simulated.json()["http_status"] == 500
        assert (await api.post("/accounts/me/api-tokens", json={"name": TOKEN_NAME})).status_code == 201
        assert (await api.post("/domains", json={"name": "xn--80ak6aa92e.com"})).status_code == 201

    # A real message too, with a hostile subject and attachment name.
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "ann@sender.example", f"evil@{PUBLIC}", SUBJECT
    mail.set_content(RESPONSE)
    mail.add_attachment(b"x", maintype="text", subtype="html", filename='"><img src=x onerror=alert(11)>.html')
    replies = await attempt(dashboard.conduit.smtp_port, mail, f"evil@{PUBLIC}")
    assert final(replies)[1] == 250, replies
    await receiver.wait_for(2)

    await go(dashboard, "Messages")
    rows = page.get_by_role("region", name="Stored messages").locator("tbody tr").filter(has_text=SUBJECT)
    await expect(rows).to_have_count(1)
    assert await injected(dashboard) == 0
    await rows.first.get_by_role("link").click()  # the message view: subject and attachment name as text
    await expect(page.get_by_role("heading", name=SUBJECT, level=1)).to_be_visible()
    await expect(page.get_by_text('"><img src=x onerror=alert(11)>.html')).to_be_visible()
    assert await injected(dashboard) == 0

    await go(dashboard, "Webhooks")
    await expect(page.get_by_role("link", name=WEBHOOK_NAME)).to_be_visible()
    await expect(page.get_by_role("cell", name=POLICY_NAME)).to_be_visible()
    assert await injected(dashboard) == 0

    await page.get_by_role("link", name=WEBHOOK_NAME).click()
    await expect(page.get_by_role("heading", name=WEBHOOK_NAME, level=1)).to_be_visible()
    await expect(page.get_by_role("table").locator("tbody tr")).to_have_count(2)
    assert await injected(dashboard) == 0

    # The log entry of the simulated message: sender and response excerpt as text.
    await page.get_by_role("table").locator("tbody tr").filter(has_text="test").get_by_role("link").click()
    await expect(page.get_by_test_id("response-excerpt")).to_have_text(RESPONSE)
    await expect(page.locator("dl.details")).to_contain_text(SENDER)
    assert await injected(dashboard) == 0
    await dashboard.shot("hostile-delivery-attempt")

    # Settings: the name, the header and the template are values of form fields, the preview text.
    await page.get_by_role("link", name=WEBHOOK_NAME).click()
    await page.get_by_role("link", name="Settings").click()
    await expect(page.get_by_label("Name", exact=True)).to_have_value(WEBHOOK_NAME)
    await expect(page.get_by_label("Header 1 value")).to_have_value(HEADER_VALUE)
    await expect(page.get_by_label("Payload template")).to_have_value(TEMPLATE)
    await page.get_by_text("Sample message").click()
    await page.get_by_label("Sample subject").fill(SUBJECT)
    await page.get_by_role("button", name="Preview payload").click()
    await expect(page.get_by_test_id("rendered-body")).to_have_text(f"</script><script>alert(2)</script>{SUBJECT}")
    assert await injected(dashboard) == 0

    for section, text in (("Policies", POLICY_NAME), ("API tokens", TOKEN_NAME), ("Domains", "xn--80ak6aa92e.com"),
                          ("Audit log", POLICY_NAME)):
        await go(dashboard, section)
        await expect(page.get_by_text(text, exact=False).first).to_be_visible()
        assert await injected(dashboard) == 0, section


async def test_the_policy_refuses_inline_script_and_the_test_sees_it(dashboard: Dashboard):
    """What the checks above rely on: Trusted Types stop HTML strings at every HTML sink, the CSP
    stops inline handlers, and neither a refusal nor a dialog goes unnoticed by the test."""
    page = dashboard.page
    await sign_up(dashboard)
    outcome = await page.evaluate("""() => {
        const holder = document.createElement('div');
        try { holder.innerHTML = '<img src=x onerror=alert(1)>'; } catch (error) { return error.name; }
        return 'assigned';
    }""")
    assert outcome == "TypeError"
    await logged(dashboard, "TrustedHTML")

    outcome = await page.evaluate("""() => {
        const button = document.createElement('button');
        try { button.setAttribute('onclick', 'alert(2)'); } catch (error) { return error.name; }
        return 'assigned';
    }""")
    assert outcome == "TypeError"
    # A javascript: URL needs no HTML sink: the CSP refuses to run it.
    await page.evaluate("""() => {
        const link = document.createElement('a');
        link.href = 'javascript:alert(3)';
        document.body.append(link);
        link.click();
    }""")
    await logged(dashboard, "Content Security Policy")
    assert dashboard.watch.dialogs == []

    await page.evaluate("alert('probe')")  # from outside the page's policy: the watch records the dialog
    assert dashboard.watch.dialogs == ["alert: probe"]
    dashboard.watch.errors.clear()
    dashboard.watch.dialogs.clear()
