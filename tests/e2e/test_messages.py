"""The Messages API against the real SMTP server, worker and HTTP receiver: stored messages are
listed, read, downloaded, erased and queued again, only by the account they were delivered to,
with the default retention (CONDUIT_MESSAGE_RETENTION_DAYS)."""

from __future__ import annotations

import base64
import secrets
import sqlite3
import time
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from conduit.services import message_links
from conduit.storage.models import Message
from tests.factories import assert_error, audit_actions, create_webhook, user
from tests.support.conversation import _eventually, _logs, _mail, _send
from tests.support.pipeline import free_port, running
from tests.support.receiver import Reply, verify_signature

PUBLIC = "in.example"


@pytest.fixture
def settings_overrides() -> dict:
    # No retention setting: the default keeps messages for three days.
    return {"smtp_port": free_port(), "public_domains": PUBLIC, "allow_private_targets": True,
            "inbound_auth_checks": False, "retry_schedule": "0,1,1"}


async def _messages(client, owner, **params):
    response = await client.get("/messages", params=params, headers=owner.headers)
    assert response.status_code == 200, response.text
    return response


async def _ids(client, owner, **params) -> list[str]:
    return [m["id"] for m in (await _messages(client, owner, **params)).json()]


async def _delivered(client, owner, count: int) -> list[dict]:
    """The owner's messages once ``count`` of them are delivered."""
    async def probe():
        listed = (await _messages(client, owner, status="delivered")).json()
        return listed if len(listed) >= count else None
    return await _eventually(probe)


async def _send_raw(settings, raw: bytes, to: str) -> None:
    await aiosmtplib.send(raw, hostname="127.0.0.1", port=settings.smtp_port, sender="ann@sender.example",
                          recipients=[to], start_tls=False)


def _with_attachments(to: str, marker: str = "") -> EmailMessage:
    message = _mail(to, subject="Invoice", body=f"See attached {marker}\n")
    message.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf",
                           filename='../../etc/pa"ss wd.pdf')
    message.add_attachment("café\n".encode(), maintype="text", subtype="plain", filename="résumé.txt")
    return message


# --- redelivery with the default retention -------------------------------------------------------


async def test_redelivery_works_after_the_worker_finished_with_default_settings(settings, client, alice, receiver):
    assert settings.message_retention_days == 3
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    async with running(settings):
        await _send(settings, _mail(f"box@{PUBLIC}"))
        (first,) = await receiver.wait_for(1)
        (log,) = await _eventually(lambda: _logs(client, alice, hook["id"]))
        (listed,) = await _delivered(client, alice, 1)  # the job is finished
        again = await client.post(f"/webhooks/{hook['id']}/logs/{log['id']}/redeliver", headers=alice.headers)
        assert again.status_code == 202, again.text
        await receiver.wait_for(2)
        queued = await client.post(f"/messages/{listed['id']}/redeliver", headers=alice.headers)
        assert queued.status_code == 202, queued.text
        (delivery,) = queued.json()["deliveries"]
        third = (await receiver.wait_for(3))[2]
    assert delivery["webhook_id"] == hook["id"]
    assert third.headers["webhook-id"] == delivery["job_id"]
    assert verify_signature(hook["secret"], third)["id"] == verify_signature(hook["secret"], first)["id"] \
        == listed["id"]
    assert "message.redelivery_queued" in await audit_actions(client, alice.headers)


async def test_redeliver_to_one_webhook_of_several(settings, client, alice, receiver):
    box = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    other = await create_webhook(client, alice, f"other@{PUBLIC}", receiver.url)
    async with running(settings):
        await _send(settings, _mail(f"box@{PUBLIC}"), rcpts=[f"box@{PUBLIC}", f"other@{PUBLIC}"])
        (message,) = await _delivered(client, alice, 1)
        assert sorted(message["webhook_ids"]) == sorted([box["id"], other["id"]])
        response = await client.post(f"/messages/{message['id']}/redeliver", headers=alice.headers,
                                      json={"webhook_id": other["id"]})
        assert response.status_code == 202, response.text
        (again,) = response.json()["deliveries"]
        await receiver.wait_for(3)
    assert again["webhook_id"] == other["id"]
    assert receiver.received[2].headers["webhook-id"] == again["job_id"]


# --- listing ----------------------------------------------------------------------------------


async def test_list_filters_and_cursor_pagination(settings, client, alice, receiver):
    box = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    other = await create_webhook(client, alice, f"other@{PUBLIC}", receiver.url)
    bob = await user(client)
    await create_webhook(client, bob, f"bob@{PUBLIC}", receiver.url)
    async with running(settings):
        for n in range(4):
            await _send(settings, _mail(f"box@{PUBLIC}", subject=f"Order {n}"))
        await _send(settings, _mail(f"other@{PUBLIC}", subject="Weekly REPORT_100%", sender="zed@sender.example"),
                    sender="Zed@Sender.example")
        await _send(settings, _mail(f"bob@{PUBLIC}", subject="For Bob"))
        await _delivered(client, alice, 5)
        await _delivered(client, bob, 1)

    everything = await _ids(client, alice, limit=200)
    assert len(everything) == 5 and everything == sorted(everything, reverse=True)  # newest first
    pages, cursor = [], None
    while True:
        response = await _messages(client, alice, limit=2, **({"cursor": cursor} if cursor else {}))
        pages.append([m["id"] for m in response.json()])
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None:
            assert "Link" not in response.headers
            break
        assert response.headers["Link"].startswith("</api/v1/messages?")
        assert response.headers["Link"].endswith('>; rel="next"') and f"cursor={cursor}" in response.headers["Link"]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == everything

    (report,) = (await _messages(client, alice, webhook_id=other["id"])).json()
    assert (report["subject"], report["rcpt_to"], report["webhook_ids"]) == (
        "Weekly REPORT_100%", [f"other@{PUBLIC}"], [other["id"]])
    assert report["status"] == "delivered" and report["mail_from"].lower() == "zed@sender.example"
    assert await _ids(client, alice, recipient=f"OTHER@{PUBLIC.upper()}") == [report["id"]]
    assert await _ids(client, alice, sender="zed@sender.EXAMPLE") == [report["id"]]
    assert await _ids(client, alice, subject="report_100%") == [report["id"]]
    assert await _ids(client, alice, subject="r_1") == []  # literal: as a LIKE pattern it would match "Order 1"
    assert len(await _ids(client, alice, subject="order", webhook_id=box["id"])) == 4
    assert await _ids(client, alice, received_after="2999-01-01T00:00:00Z") == []
    assert len(await _ids(client, alice, received_before="2999-01-01T00:00:00")) == 5
    assert await _ids(client, alice, received_before="2000-01-01T00:00:00+02:00") == []
    assert len(await _ids(client, alice, status="delivered")) == 5
    for status in ("pending", "failed", "held", "refused"):
        assert await _ids(client, alice, status=status) == []
    bobs = await _ids(client, bob)
    assert len(bobs) == 1 and not set(bobs) & set(everything)


async def test_status_follows_the_deliveries_pending_held_failed(settings, client, alice, receiver):
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    async with running(settings, roles=frozenset({"smtp"})):  # no worker: the delivery waits
        await _send(settings, _mail(f"box@{PUBLIC}"))
    (pending,) = (await _messages(client, alice, status="pending")).json()
    paused = await client.put(f"/webhooks/{hook['id']}", headers=alice.headers, json={"active": False})
    assert paused.status_code == 200, paused.text
    assert await _ids(client, alice, status="pending") == []
    assert await _ids(client, alice, status="held") == [pending["id"]]
    detail = (await client.get(f"/messages/{pending['id']}", headers=alice.headers)).json()
    assert [d["status"] for d in detail["deliveries"]] == ["held"]
    assert detail["deliveries"][0]["next_attempt_at"] is not None

    await client.put(f"/webhooks/{hook['id']}", headers=alice.headers, json={"active": True})
    receiver.reply(Reply(status=410))  # gone: given up at once
    async with running(settings):
        await _eventually(lambda: _ids(client, alice, status="failed"))
    assert await _ids(client, alice, status="failed") == [pending["id"]]
    detail = (await client.get(f"/messages/{pending['id']}", headers=alice.headers)).json()
    (delivery,) = detail["deliveries"]
    assert (delivery["status"], delivery["next_attempt_at"]) == ("failed", None)
    assert [(a["status"], a["http_status"]) for a in delivery["attempts"]] == [("failed", 410)]


# --- one message ---------------------------------------------------------------------------------


async def test_get_shows_the_payload_and_each_delivery(settings, client, alice, receiver):
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    async with running(settings):
        await _send(settings, _mail(f"box@{PUBLIC}", subject="Hello there"))
        (listed,) = await _delivered(client, alice, 1)
        (received,) = await receiver.wait_for(1)
    response = await client.get(f"/messages/{listed['id']}", headers=alice.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    delivered = verify_signature(hook["secret"], received)
    assert body["payload"]["subject"] == delivered["subject"] == "Hello there"
    assert body["payload"]["envelope"] == delivered["envelope"]
    assert body["payload"]["text"] == delivered["text"]
    assert body["subject"] == "Hello there" and body["status"] == "delivered"
    assert body["raw_url"] == f"/api/v1/messages/{listed['id']}/raw"
    assert body["envelope"]["remote_ip"] == "127.0.0.1" and body["envelope"]["tls"] is False
    (delivery,) = body["deliveries"]
    assert (delivery["webhook_id"], delivery["status"], delivery["attempt_count"]) == (hook["id"], "delivered", 1)
    assert delivery["job_id"] == received.headers["webhook-id"]
    assert [(a["status"], a["http_status"]) for a in delivery["attempts"]] == [("delivered", 200)]


async def test_raw_is_the_bytes_that_were_sent(settings, client, alice, receiver):
    await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    raw = (b"From: Ann <ann@sender.example>\r\nTo: box@in.example\r\nSubject: Raw\r\n"
           b"Message-ID: <raw@sender.example>\r\n\r\n.leading dot\r\nbytes \xff\xfe as sent\r\n")
    async with running(settings):
        await _send_raw(settings, raw, f"box@{PUBLIC}")
        (listed,) = await _delivered(client, alice, 1)
    response = await client.get(f"/messages/{listed['id']}/raw", headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "message/rfc822"
    assert response.content == raw
    assert response.headers["content-disposition"] == f'attachment; filename="{listed["id"]}.eml"'


async def test_attachments_download_with_their_type_and_a_safe_filename(settings, client, alice, receiver):
    await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    async with running(settings):
        await _send(settings, _with_attachments(f"box@{PUBLIC}"))
        (listed,) = await _delivered(client, alice, 1)
    url = f"/messages/{listed['id']}/attachments"
    pdf = await client.get(f"{url}/0", headers=alice.headers)
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"] == 'attachment; filename="pass wd.pdf"'
    assert pdf.content == b"%PDF-1.4 fake"
    text = await client.get(f"{url}/1", headers=alice.headers)
    assert text.headers["content-type"].startswith("text/plain")
    assert text.headers["content-disposition"] == (
        "attachment; filename=\"r_sum_.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt")
    assert text.content == "café\n".encode()
    assert_error(await client.get(f"{url}/2", headers=alice.headers), 404, "attachment_not_found")
    assert_error(await client.get(f"{url}/-1", headers=alice.headers), 422)
    assert_error(await client.get(f"{url}/x", headers=alice.headers), 422)


# --- erasure ------------------------------------------------------------------------------------


def _sqlite_file_holds(database_url: str, marker: bytes) -> bool:
    """Whether the SQLite file (and its WAL) holds ``marker``, after a checkpoint."""
    path = Path(make_url(database_url).database)
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    files = [path, path.with_name(path.name + "-wal")]
    return any(marker in f.read_bytes() for f in files if f.exists())


async def _stored_raws(database) -> list[bytes]:
    async with database.sessions() as db:
        return list(await db.scalars(select(Message.raw)))


async def test_delete_erases_the_message_and_its_bytes(settings, client, alice, receiver, database):
    await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    marker = f"erase-me-{secrets.token_hex(8)}"
    async with running(settings):
        await _send(settings, _with_attachments(f"box@{PUBLIC}", marker))
        await _send(settings, _mail(f"box@{PUBLIC}", subject="keep me"))
        kept, erased = await _delivered(client, alice, 2)
    assert erased["subject"] == "Invoice"
    needle = marker.encode()
    assert any(needle in raw for raw in await _stored_raws(database))
    if database.dialect == "sqlite":
        assert _sqlite_file_holds(settings.database_url, needle)

    response = await client.delete(f"/messages/{erased['id']}", headers=alice.headers)
    assert response.status_code == 204, response.text
    for path in ("", "/raw", "/attachments/0"):
        assert_error(await client.get(f"/messages/{erased['id']}{path}", headers=alice.headers), 404,
                     "message_not_found")
    assert_error(await client.delete(f"/messages/{erased['id']}", headers=alice.headers), 404)
    assert await _ids(client, alice) == [kept["id"]]
    assert "message.deleted" in await audit_actions(client, alice.headers)
    assert not any(needle in raw for raw in await _stored_raws(database))
    if database.dialect == "sqlite":
        assert not _sqlite_file_holds(settings.database_url, needle)
        assert not _sqlite_file_holds(settings.database_url, base64.b64encode(b"%PDF-1.4 fake"))


# --- other accounts and bad input ---------------------------------------------------------------


async def test_every_route_is_404_for_another_accounts_message(settings, client, alice, receiver):
    await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    bob = await user(client)
    bobs_hook = await create_webhook(client, bob, f"bob@{PUBLIC}", receiver.url)
    async with running(settings):
        await _send(settings, _with_attachments(f"box@{PUBLIC}"))
        (message,) = await _delivered(client, alice, 1)
    base = f"/messages/{message['id']}"
    for method, path, body in (("GET", "", None), ("GET", "/raw", None), ("GET", "/attachments/0", None),
                               ("DELETE", "", None), ("POST", "/redeliver", None),
                               ("POST", "/redeliver", {"webhook_id": bobs_hook["id"]})):
        response = await client.request(method, base + path, headers=bob.headers, json=body)
        assert_error(response, 404, "message_not_found")
    assert_error(await client.get("/messages", params={"webhook_id": bobs_hook["id"]}, headers=alice.headers), 404,
                 "webhook_not_found")
    assert await _ids(client, bob) == []
    # Alice's own message, but a webhook it did not go to:
    assert_error(await client.post(f"{base}/redeliver", headers=alice.headers, json={"webhook_id": bobs_hook["id"]}),
                 404, "webhook_not_found")
    assert (await client.get(f"{base}/raw", headers=alice.headers)).status_code == 200  # nothing was erased
    assert_error(await client.get(base), 401)


@pytest.mark.parametrize(("params", "status", "code"), [
    ({"cursor": "nope"}, 400, "invalid_cursor"),
    ({"cursor": base64.urlsafe_b64encode(b"msg_' OR 1=1 --").decode()}, 400, "invalid_cursor"),
    ({"cursor": "%%%"}, 400, "invalid_cursor"),
    ({"limit": 0}, 422, "validation_error"),
    ({"limit": 201}, 422, "validation_error"),
    ({"status": "bounced"}, 422, "validation_error"),
    ({"received_after": "yesterday"}, 422, "validation_error"),
    ({"subject": "a\x00b"}, 422, "validation_error"),
    ({"recipient": "x" * 400}, 422, "validation_error"),
    ({"webhook_id": "whk_nope"}, 404, "webhook_not_found"),
])
async def test_bad_list_parameters_get_the_error_body(client, alice, params, status, code):
    assert_error(await client.get("/messages", params=params, headers=alice.headers), status, code)


async def test_bad_ids_and_bodies_get_the_error_body(client, alice):
    for path in ("/messages/msg_nope", "/messages/nope/raw", "/messages/msg_00000000000000000000000000/raw"):
        assert_error(await client.get(path, headers=alice.headers), 404, "message_not_found")
    redeliver = "/messages/msg_00000000000000000000000000/redeliver"
    assert_error(await client.post(redeliver, headers=alice.headers, json={"webhook_id": 5}), 422)
    assert_error(await client.post(redeliver, headers=alice.headers, json={"webhook": "whk_x"}), 422)
    assert_error(await client.post(redeliver, headers={**alice.headers, "Content-Type": "application/json"},
                                   content=b"{"), 422)


# --- large attachments by signed link -------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{
    "smtp_port": free_port(), "public_domains": PUBLIC, "allow_private_targets": True, "inbound_auth_checks": False,
    "max_inline_attachment_bytes": 8, "base_url": "http://testserver"}])
async def test_large_attachments_come_as_signed_links_that_need_no_token(settings, client, alice, receiver):
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    async with running(settings):
        await _send(settings, _with_attachments(f"box@{PUBLIC}"))
        (received,) = await receiver.wait_for(1)
        (listed,) = await _delivered(client, alice, 1)
    payload = verify_signature(hook["secret"], received)
    pdf, text = payload["attachments"]
    assert (pdf["content"], pdf["content_omitted"], pdf["size"]) == (None, True, len(b"%PDF-1.4 fake"))
    assert pdf["url"].startswith(f"http://testserver/api/v1/links/messages/{listed['id']}/attachments/0?")
    assert text["url"].startswith(f"http://testserver/api/v1/links/messages/{listed['id']}/attachments/1?")
    assert payload["raw_url"].startswith(f"http://testserver/api/v1/links/messages/{listed['id']}/raw?")
    detail = (await client.get(f"/messages/{listed['id']}", headers=alice.headers)).json()
    assert detail["payload"]["raw_url"] == payload["raw_url"]

    download = await client.get(pdf["url"])  # no Authorization header
    assert download.status_code == 200, download.text
    assert (download.content, download.headers["content-type"]) == (b"%PDF-1.4 fake", "application/pdf")
    assert download.headers["content-disposition"] == 'attachment; filename="pass wd.pdf"'
    raw = await client.get(payload["raw_url"])
    own = await client.get(f"/messages/{listed['id']}/raw", headers=alice.headers)
    assert raw.status_code == 200 and raw.headers["content-type"] == "message/rfc822"
    assert raw.content == own.content

    url = httpx.URL(pdf["url"])
    expires, signature = url.params["expires"], url.params["signature"]
    tampered = [url.copy_set_param("signature", signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")),
                url.copy_set_param("expires", str(int(expires) + 86400)),
                url.copy_set_param("expires", "soon"),
                url.copy_set_param("signature", "é"),
                url.copy_remove_param("signature").copy_set_param("signature", ""),
                httpx.URL(str(url).replace(listed["id"], "msg_" + "0" * 26))]
    for link in tampered:
        assert_error(await client.get(link), 403, "invalid_signature")
    assert_error(await client.get(url.copy_remove_param("signature")), 422)
    past = int(time.time()) - 60
    expired = url.copy_set_param("expires", str(past)).copy_set_param(
        "signature", message_links.sign(settings, listed["id"], past))
    assert_error(await client.get(expired), 410, "link_expired")
    assert_error(await client.get(str(url).replace("/attachments/0?", "/attachments/9?")), 404,
                 "attachment_not_found")

    assert (await client.delete(f"/messages/{listed['id']}", headers=alice.headers)).status_code == 204
    assert_error(await client.get(pdf["url"]), 410, "message_gone")
    assert_error(await client.get(payload["raw_url"]), 410, "message_gone")


@pytest.mark.parametrize("settings_overrides", [{
    "smtp_port": free_port(), "public_domains": PUBLIC, "allow_private_targets": True, "inbound_auth_checks": False,
    "retry_schedule": "0,1,1", "base_url": "http://testserver"}])  # the default inline limit: 10 MiB
async def test_a_15_mib_attachment_is_fetched_through_its_link_byte_for_byte(settings, client, alice, receiver):
    content = secrets.token_bytes(15 * 1024 * 1024)  # random: nothing compresses or repeats it
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    message = _mail(f"box@{PUBLIC}", subject="Scan", body="The scan is attached\n")
    message.add_attachment(content, maintype="application", subtype="octet-stream", filename="scan.bin")
    async with running(settings):
        await _send(settings, message)
        (received,) = await receiver.wait_for(1, timeout=60)
    (attachment,) = verify_signature(hook["secret"], received)["attachments"]
    assert (attachment["content"], attachment["content_omitted"], attachment["size"]) == (None, True, len(content))
    download = await client.get(attachment["url"])  # no Authorization header: the link is the authority
    assert download.status_code == 200
    assert download.headers["content-disposition"] == 'attachment; filename="scan.bin"'
    assert download.content == content
