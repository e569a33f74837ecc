"""Mail in, webhook out: the real SMTP server and delivery worker (conduit.runtime.run, as in
`conduit serve`), real SMTP clients, a real HTTP receiver verifying signatures with the
`standardwebhooks` library."""

from __future__ import annotations

import base64
import smtplib
from email.message import EmailMessage

import aiosmtplib
import pytest

from tests.factories import create_webhook
from tests.support.conversation import (
    _eventually,
    _in_smtp_session,
    _logs,
    _mail,
    _send,
)
from tests.support.pipeline import free_port, running
from tests.support.receiver import Reply, verify_signature

PUBLIC = "in.example"


@pytest.fixture
def settings_overrides() -> dict:
    return {"smtp_port": free_port(), "public_domains": PUBLIC, "allow_private_targets": True,
            "inbound_auth_checks": False, "retry_schedule": "0,0.3,0.3", "smtp_max_message_bytes": 200_000,
            "smtp_max_recipients": 5, "keep_raw_days": 1}


@pytest.fixture
async def webhook(client, alice, receiver) -> dict:
    return await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)


async def test_message_is_delivered_signed_with_the_documented_payload(settings, client, alice, webhook, receiver):
    async with running(settings):
        refused, reply = await _send(settings, _mail(f"Box@{PUBLIC}"))
        (request,) = await receiver.wait_for(1)
        logs = await _eventually(lambda: _logs(client, alice, webhook["id"]))
    assert refused == {}
    assert "queued as msg_" in reply
    message_id = reply.rsplit(" ", 1)[1]
    payload = verify_signature(webhook["secret"], request)
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("Conduit/")
    assert payload["id"] == message_id
    assert payload["event"] == "email.received"
    assert payload["subject"] == "Hello"
    assert payload["from"] == [{"address": "ann@sender.example", "name": "Ann"}]
    assert payload["text"].strip() == "Hi there"
    assert payload["envelope"]["mail_from"] == "ann@sender.example"
    assert payload["envelope"]["rcpt_to"] == [f"Box@{PUBLIC}"]
    assert payload["envelope"]["remote_ip"] == "127.0.0.1"
    assert payload["webhook"] == {"id": webhook["id"], "address": f"box@{PUBLIC}"}
    assert payload["simulated"] is False
    assert payload["received_at"].endswith("Z")
    assert [(log["status"], log["http_status"], log["smtp_message_id"]) for log in logs] == \
        [("delivered", 200, message_id)]


async def test_smtplib_pipelining_8bit_and_smtputf8(settings, webhook, receiver):
    message = EmailMessage()
    message["From"] = "Jörg <jörg@sender.example>"
    message["To"] = f"box@{PUBLIC}"
    message["Subject"] = "Grüße aus Köln ✉"
    message.set_content("Schöne Grüße\n", cte="8bit")
    def talk(smtp):
        smtp.ehlo("client.example")
        assert smtp.has_extn("pipelining") and smtp.has_extn("8bitmime") and smtp.has_extn("smtputf8")
        return smtp.send_message(message, mail_options=["SMTPUTF8", "BODY=8BITMIME"])

    async with running(settings):
        assert await _in_smtp_session(settings, talk) == {}
        (request,) = await receiver.wait_for(1)
    payload = verify_signature(webhook["secret"], request)
    assert payload["subject"] == "Grüße aus Köln ✉"
    assert payload["text"].strip() == "Schöne Grüße"
    assert payload["envelope"]["mail_from"] == "jörg@sender.example"


async def test_unknown_and_inactive_recipients_are_refused_at_rcpt(settings, client, alice, receiver):
    inactive = await create_webhook(client, alice, f"off@{PUBLIC}", receiver.url, active=False)
    assert inactive["active"] is False
    def talk(smtp):
        smtp.ehlo()
        smtp.mail("ann@sender.example")
        return [smtp.rcpt(a) for a in (f"nobody@{PUBLIC}", f"off@{PUBLIC}", "someone@not-ours.example")]

    async with running(settings):
        replies = await _in_smtp_session(settings, talk)
    assert [(code, text[:5]) for code, text in replies] == [(550, b"5.1.1"), (550, b"5.2.1"), (550, b"5.1.1")]


async def test_oversized_message_is_refused_with_552(settings, webhook, receiver):
    def talk(smtp):
        with pytest.raises(smtplib.SMTPResponseException) as refused:
            smtp.sendmail("ann@sender.example", [f"box@{PUBLIC}"], b"Subject: big\r\n\r\n" + b"x" * 300_000)
        return refused.value.smtp_code

    async with running(settings):
        assert await _in_smtp_session(settings, talk) == 552
    assert receiver.received == []


async def test_too_many_recipients_get_452(settings, client, alice, receiver):
    await create_webhook(client, alice, f"many@{PUBLIC}", receiver.url)
    def talk(smtp):
        smtp.ehlo()
        smtp.mail("ann@sender.example")
        return [smtp.rcpt(f"many+{i}@{PUBLIC}")[0] for i in range(6)]

    async with running(settings):
        assert await _in_smtp_session(settings, talk) == [250] * 5 + [452]


async def test_plus_addressing_and_one_delivery_per_webhook(settings, client, alice, webhook, receiver):
    async with running(settings):
        await _send(settings, _mail(f"box+orders@{PUBLIC}"),
                    rcpts=[f"box+orders@{PUBLIC}", f"box@{PUBLIC}", f"BOX+other@{PUBLIC}"])
        await receiver.wait_for(1)
        # A second message: once it arrived, the first has had every chance to arrive twice.
        await _send(settings, _mail(f"box@{PUBLIC}", subject="sentinel"))
        first, sentinel = await receiver.wait_for(2)
    assert verify_signature(webhook["secret"], first)["mailbox_hash"] == "orders"
    assert verify_signature(webhook["secret"], sentinel)["subject"] == "sentinel"
    assert len(receiver.received) == 2


async def test_retries_keep_the_webhook_id_and_log_every_attempt(settings, client, alice, webhook, receiver):
    receiver.reply(Reply(status=500), Reply(status=503))
    async with running(settings):
        await _send(settings, _mail(f"box@{PUBLIC}"))
        requests = await receiver.wait_for(3)
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    for request in requests:
        verify_signature(webhook["secret"], request)
    logs = await _logs(client, alice, webhook["id"])
    assert [(log["status"], log["http_status"]) for log in logs] == [
        ("delivered", 200), ("retrying", 503), ("retrying", 500)]


async def test_retry_schedule_exhausted_marks_the_delivery_failed(settings, client, alice, webhook, receiver):
    receiver.default = Reply(status=500)
    async with running(settings):
        await _send(settings, _mail(f"box@{PUBLIC}"))
        await receiver.wait_for(3)
        logs = await _eventually(lambda: _logs(client, alice, webhook["id"], status="failed"))
    assert len(receiver.received) == 3
    assert [log["http_status"] for log in logs] == [500]


async def test_client_error_fails_at_once_and_410_deactivates(settings, client, alice, webhook, receiver):
    receiver.reply(Reply(status=400), Reply(status=410))
    async with running(settings):
        await _send(settings, _mail(f"box@{PUBLIC}", subject="one"))
        await receiver.wait_for(1)
        await _send(settings, _mail(f"box@{PUBLIC}", subject="two"))
        await receiver.wait_for(2)

        async def deactivated() -> bool:
            hook = (await client.get(f"/webhooks/{webhook['id']}", headers=alice.headers)).json()
            return not hook["active"]

        await _eventually(deactivated)

        def talk(smtp):
            smtp.ehlo()
            smtp.mail("ann@sender.example")
            return smtp.rcpt(f"box@{PUBLIC}")[0]

        assert await _in_smtp_session(settings, talk) == 550
    logs = await _logs(client, alice, webhook["id"])
    assert [(log["status"], log["http_status"]) for log in logs] == [("failed", 410), ("failed", 400)]
    audit = (await client.get("/accounts/me/audit-log", headers=alice.headers)).json()
    assert "webhook.deactivated" in [entry["action"] for entry in audit]



def _raw(content_type: str, body: str, *, encoding: str = "8bit", subject: str = "raw") -> bytes:
    return (f"From: Ann <ann@sender.example>\r\nTo: box@{PUBLIC}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n{body}\r\n").encode()


async def _send_raw(settings, raw: bytes) -> None:
    await aiosmtplib.send(raw, hostname="127.0.0.1", port=settings.smtp_port, sender="ann@sender.example",
                          recipients=[f"box@{PUBLIC}"], start_tls=False)


async def test_html_only_mail_gets_text_and_reply_text_from_its_html(settings, webhook, receiver):
    html = ("<html><body><p>Yes, Thursday works for me.</p><p>Ann</p>"
            "<div>On Mon, 1 Dec 2026 at 10:00, Bob &lt;bob@example.org&gt; wrote:</div>"
            "<blockquote><p>Can we meet on Thursday?</p></blockquote></body></html>")
    async with running(settings):
        await _send_raw(settings, _raw("text/html; charset=utf-8", html, subject="html only"))
        await _send(settings, _mail(f"box@{PUBLIC}", subject="plain", body="Plain text\n"))
        requests = await receiver.wait_for(2)
    payloads = {p["subject"]: p for p in (verify_signature(webhook["secret"], r) for r in requests)}
    html_only, plain = payloads["html only"], payloads["plain"]
    assert html_only["html"].startswith("<html>")
    assert html_only["text_from_html"] is True
    assert "Yes, Thursday works for me." in html_only["text"]
    assert "Can we meet on Thursday?" in html_only["text"]
    assert html_only["reply_text"] == "Yes, Thursday works for me.\n\nAnn"
    assert (plain["text_from_html"], plain["text"].strip()) == (False, "Plain text")


async def test_crlf_in_the_decoded_text_arrives_as_lf(settings, webhook, receiver):
    encoded = base64.b64encode(b"first line\r\nsecond line\r\nthird\rline\r\n").decode()
    async with running(settings):
        await _send_raw(settings, _raw("text/plain; charset=utf-8", encoded, encoding="base64"))
        (request,) = await receiver.wait_for(1)
    payload = verify_signature(webhook["secret"], request)
    assert payload["text"] == "first line\nsecond line\nthird\nline\n"
    assert payload["reply_text"] == "first line\nsecond line\nthird\nline"
    assert payload["text_from_html"] is False


async def test_a_503_with_a_body_is_logged_with_its_headers_body_and_error(settings, client, alice, webhook,
                                                                          receiver):
    body = "maintenance until 10:00\n" + "z" * 3000
    receiver.reply(Reply(status=503, body=body, headers={"Retry-After": "1", "X-Other": "not kept"}))
    async with running(settings):
        await _send(settings, _mail(f"box@{PUBLIC}"))
        await receiver.wait_for(2)
        logs = await _eventually(lambda: _attempts(client, alice, webhook["id"], 2))
    failed = next(log for log in logs if log["http_status"] == 503)
    assert failed["status"] == "retrying"
    assert failed["error"] == "HTTP 503 Service Unavailable: maintenance until 10:00"
    assert failed["response_headers"] == {"Retry-After": "1", "Content-Type": "text/plain; charset=utf-8"}
    assert failed["response_excerpt"] == body[:1024]
    delivered = next(log for log in logs if log["http_status"] == 200)
    assert (delivered["error"], delivered["response_excerpt"]) == ("", "ok")


async def test_an_empty_503_still_says_why_it_failed(settings, client, alice, webhook, receiver):
    receiver.reply(Reply(status=503, body=""))
    async with running(settings):
        await _send(settings, _mail(f"box@{PUBLIC}"))
        await receiver.wait_for(2)
        logs = await _eventually(lambda: _logs(client, alice, webhook["id"], status="retrying"))
    assert [log["error"] for log in logs] == ["HTTP 503 Service Unavailable"]


async def _attempts(client, owner, webhook_id: str, count: int) -> list[dict] | None:
    logs = await _logs(client, owner, webhook_id)
    return logs if len(logs) >= count else None
