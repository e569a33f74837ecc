"""What the API adds beyond the reference for the dashboard (each is also usable by any client):
the DNS records of a domain, the account's 2FA state, a log entry's response excerpt, and the
payload preview (POST /webhooks/preview), which renders with the delivery code and limits."""

from __future__ import annotations

import json

import pytest

from tests.factories import TotpCodes, assert_error, claim_domain, create_webhook, user
from tests.support.receiver import Reply

PUBLIC = "in.example"
MX_HOST = "mx.dashboard.example"


@pytest.fixture
def settings_overrides() -> dict:
    return {"public_domains": PUBLIC, "allow_private_targets": True, "mx_host": MX_HOST}


async def test_a_claim_lists_the_records_to_publish_and_a_public_domain_none(client, alice):
    claim = await claim_domain(client, alice, "Mail.Example.COM")
    assert claim["dns_records"] == [
        {"type": "TXT", "name": "_conduit-verify.mail.example.com", "value": claim["verification_token"],
         "priority": None},
        {"type": "MX", "name": "mail.example.com", "value": MX_HOST, "priority": 10},
    ]
    listed = (await client.get("/domains", headers=alice.headers)).json()
    public = next(d for d in listed if d["is_public"])
    assert public["dns_records"] == []


async def test_the_account_says_whether_two_factor_is_on(client, alice):
    assert (await client.get("/accounts/me", headers=alice.headers)).json()["totp_enabled"] is False
    setup = await client.post("/accounts/me/2fa/setup", headers=alice.headers)
    assert (await client.get("/accounts/me", headers=alice.headers)).json()["totp_enabled"] is False  # not yet
    codes = TotpCodes(setup.json()["secret"])
    await client.post("/accounts/me/2fa/enable", json={"code": codes.next()}, headers=alice.headers)
    assert (await client.get("/accounts/me", headers=alice.headers)).json()["totp_enabled"] is True


async def test_a_log_entry_shows_the_start_of_the_receivers_answer(client, alice, receiver):
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    receiver.reply(Reply(status=500, body="<h1>Server error</h1><script>alert(1)</script>"))
    outcome = await client.post(f"/webhooks/{hook['id']}/simulate", headers=alice.headers, json={})
    assert outcome.json()["http_status"] == 500
    (entry,) = (await client.get(f"/webhooks/{hook['id']}/logs", headers=alice.headers)).json()
    assert entry["response_excerpt"] == "<h1>Server error</h1><script>alert(1)</script>"
    single = await client.get(f"/webhooks/{hook['id']}/logs/{entry['id']}", headers=alice.headers)
    assert single.json()["response_excerpt"] == entry["response_excerpt"]


# Payload preview -------------------------------------------------------------------------------


async def preview(client, owner, **body):
    return await client.post("/webhooks/preview", headers=owner.headers, json=body)


async def test_preview_renders_a_template_on_a_sample_message(client, alice):
    response = await preview(client, alice,
                             payload_template='{"s": {{ subject | tojson }}, "to": {{ to[0].address | tojson }}}',
                             address=f"orders@{PUBLIC}", subject="Order 42", **{"from": "Ada <ada@example.com>"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {"body": '{"s": "Order 42", "to": "orders@in.example"}', "content_type": "application/json"}


async def test_preview_without_a_template_is_the_default_payload(client, alice, receiver):
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    response = await preview(client, alice, webhook_id=hook["id"], subject="Hi", text="Hello there")
    assert response.status_code == 200
    assert response.json()["content_type"] == "application/json"
    payload = json.loads(response.json()["body"])
    assert payload["event"] == "email.received" and payload["simulated"] is True
    assert payload["webhook"] == {"id": hook["id"], "address": hook["address"]}
    assert (payload["subject"], payload["text"].strip()) == ("Hi", "Hello there")
    assert receiver.received == []  # nothing is sent


async def test_preview_uses_the_webhooks_saved_template_unless_one_is_given(client, alice, receiver):
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url, payload_template="saved: {{ subject }}")
    saved = await preview(client, alice, webhook_id=hook["id"], subject="A")
    assert saved.json() == {"body": "saved: A", "content_type": "text/plain; charset=utf-8"}
    edited = await preview(client, alice, webhook_id=hook["id"], subject="A", payload_template="edited: {{ subject }}")
    assert edited.json()["body"] == "edited: A"
    default = await preview(client, alice, webhook_id=hook["id"], payload_template="")
    assert json.loads(default.json()["body"])["event"] == "email.received"


@pytest.mark.parametrize("template, message", [
    ("{{ subject", "payload_template line 1:"),
    ("line one\n{{ no_such_variable }}", "payload_template line 2: 'no_such_variable' is undefined"),
    ("{{ 'x' * 10000000 }}", "too large"),
    ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
     "exceeded its time budget of 2 s"),
])
async def test_a_template_that_fails_is_a_422_saying_where(client, alice, template, message):
    body = assert_error(await preview(client, alice, payload_template=template), 422)
    assert message in body["error"]
    assert body["code"] == "template_error"


async def test_preview_of_another_accounts_webhook_is_404(client, alice, receiver):
    bob = await user(client)
    hook = await create_webhook(client, bob, f"bob@{PUBLIC}", receiver.url)
    assert_error(await preview(client, alice, webhook_id=hook["id"]), 404)


async def test_preview_refuses_header_injection_and_needs_a_session(client, alice):
    assert_error(await preview(client, alice, subject="a\r\nBcc: x@example.com"), 422, "validation_error")
    assert_error(await client.post("/webhooks/preview", json={}), 401)
