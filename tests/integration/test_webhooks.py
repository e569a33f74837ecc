"""Webhooks group: create, list, get, partial update, delete, the SSRF guard and delivery logs."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from conduit.clock import new_id, now
from conduit.services.maintenance import purge_expired
from conduit.storage.engine import transaction
from conduit.storage.models import DeliveryLog
from tests.factories import (
    assert_error,
    audit_actions,
    check_each,
    claim_domain,
    create_policy,
    create_webhook,
    user,
    verified_domain,
)

PUBLIC = "shared.example"
TARGET = "https://hooks.example.net/inbound"
WEBHOOK_FIELDS = {"id", "name", "address", "target_url", "active", "custom_headers", "payload_template",
                  "rate_limit", "secret", "smtp_security_policy_id", "created_at", "updated_at", "delivery_mode",
                  "sync_timeout_ms"}
LOG_FIELDS = {"id", "webhook_id", "attempted_at", "http_status", "duration_ms", "error", "sender",
              "smtp_message_id", "simulated"}


@pytest.fixture
def settings_overrides(dns_zone) -> dict:
    return {"dns_servers": f"127.0.0.1:{dns_zone.port}", "public_domains": PUBLIC, "allow_private_targets": True}


@pytest.fixture
async def alice(client):
    return await user(client)


@pytest.fixture
async def alice_domain(client, alice, dns_zone) -> dict:
    """alpha.example, verified by alice."""
    return await verified_domain(client, alice, dns_zone, "alpha.example")


async def _post(client, owner, **body):
    return await client.post("/webhooks", json=body, headers=owner.headers)


async def _list(client, owner) -> list[dict]:
    response = await client.get("/webhooks", headers=owner.headers)
    assert response.status_code == 200, response.text
    return response.json()


# Create ----------------------------------------------------------------------------------


async def test_create_on_a_verified_domain_fills_in_the_defaults(client, alice, alice_domain):
    response = await _post(client, alice, address="Inbox@Alpha.EXAMPLE", target_url=TARGET)
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == WEBHOOK_FIELDS
    assert created["address"] == "inbox@alpha.example"
    assert created["target_url"] == TARGET
    assert created["name"] == "inbox@alpha.example"  # the address, when no name is given
    assert created["active"] is True
    assert created["rate_limit"] == 0
    assert created["custom_headers"] == {}
    assert created["payload_template"] is None
    assert created["smtp_security_policy_id"] is None
    assert (created["delivery_mode"], created["sync_timeout_ms"]) == ("queued", 10000)
    # A Standard Webhooks secret: whsec_ + base64 of 32 random bytes.
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"), validate=True)) == 32
    got = await client.get(f"/webhooks/{created['id']}", headers=alice.headers)
    assert got.status_code == 200 and got.json() == created
    assert await _list(client, alice) == [created]


async def test_each_webhook_gets_its_own_generated_secret(client, alice, alice_domain):
    one = await create_webhook(client, alice, "one@alpha.example")
    two = await create_webhook(client, alice, "two@alpha.example")
    assert one["secret"] != two["secret"]


async def test_create_on_a_public_domain_needs_no_domain_of_ones_own(client, alice):
    created = await create_webhook(client, alice, "Box@SHARED.example")
    assert created["address"] == "box@shared.example"


async def test_create_keeps_every_given_field(client, alice, alice_domain):
    policy = await create_policy(client, alice)
    body = {
        "address": "orders@alpha.example",
        "target_url": "http://127.0.0.1:8099/hook?x=1",
        "name": "Orders",
        "secret": "my-own-signing-secret-0123456789",
        "active": False,
        "rate_limit": 120,
        "custom_headers": {"Authorization": "Bearer abc", "X-Tenant": "42"},
        "payload_template": '{"subject": {{ subject|tojson }}}',
        "smtp_security_policy_id": policy["id"],
    }
    response = await _post(client, alice, **body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert {k: created[k] for k in body} == body
    assert (await client.get(f"/webhooks/{created['id']}", headers=alice.headers)).json() == created


async def _refused(client, owner, status: int = 422, **body) -> str:
    """POST /webhooks that must fail with ``status``; the error sentence."""
    return assert_error(await _post(client, owner, **body), status)["error"]


async def test_create_without_address_or_target_is_422(client, alice):
    async def check(body):
        await _refused(client, alice, **body)

    await check_each([{"target_url": TARGET}, {"address": "inbox@shared.example"},
                      {"address": "", "target_url": TARGET}, {"address": "inbox@shared.example", "target_url": ""},
                      {"address": None, "target_url": TARGET}], check)
    assert await _list(client, alice) == []


async def test_create_on_a_claimed_but_unverified_domain_is_422(client, alice):
    await claim_domain(client, alice, "pending.example")
    error = assert_error(await _post(client, alice, address="a@pending.example", target_url=TARGET), 422)["error"]
    assert "pending.example" in error and "verified" in error


async def test_create_on_another_accounts_verified_domain_is_422(client, alice, dns_zone):
    bob = await user(client)
    await verified_domain(client, bob, dns_zone, "bobs.example")
    assert_error(await _post(client, alice, address="a@bobs.example", target_url=TARGET), 422)
    assert await _list(client, alice) == []


async def test_create_on_an_unclaimed_domain_is_422(client, alice):
    assert_error(await _post(client, alice, address="a@nobody.example", target_url=TARGET), 422)


async def test_catch_all_on_a_public_domain_is_422(client, alice):
    error = assert_error(await _post(client, alice, address="*@shared.example", target_url=TARGET), 422)["error"]
    assert "catch-all" in error


async def test_catch_all_on_an_owned_verified_domain_works_beside_exact_addresses(client, alice, alice_domain):
    catch_all = await create_webhook(client, alice, "*@Alpha.example")
    assert catch_all["address"] == "*@alpha.example"
    exact = await create_webhook(client, alice, "sales@alpha.example")
    assert {w["id"] for w in await _list(client, alice)} == {catch_all["id"], exact["id"]}
    assert_error(await _post(client, alice, address="*@alpha.example", target_url=TARGET), 409)


async def test_a_malformed_address_is_422(client, alice, alice_domain):
    async def check(address):
        await _refused(client, alice, address=address, target_url=TARGET)

    await check_each([
        "no-at-sign.example", "@alpha.example", "inbox@", "in box@alpha.example",
        "box+tag@alpha.example",  # mail to box+tag@ goes to box@: such a webhook would never receive anything
        "a*b@alpha.example", "x" * 65 + "@alpha.example", "inbox@alpha..example", "a..b@alpha.example",
        ".inbox@alpha.example", "inbox@192.0.2.1",
    ], check)
    assert await _list(client, alice) == []


async def test_a_target_url_that_is_not_an_absolute_http_url_is_422(client, alice):
    async def check(target_url):
        error = await _refused(client, alice, address="box@shared.example", target_url=target_url)
        assert "target_url" in error, error

    await check_each([
        "ftp://hooks.example.net/in", "file:///etc/passwd", "javascript:alert(1)", "/relative/path",
        "hooks.example.net/in", "//hooks.example.net/in", "http://user:pass@hooks.example.net/in",
        "https://token@hooks.example.net/in", "http://hooks.example.net:99999/", "http:///nohost",
        "https://hooks example.net/", "http://hooks.example.net/\r\nX: y",
    ], check)
    assert await _list(client, alice) == []


async def test_an_unusable_secret_is_422(client, alice):
    async def check(secret):
        assert "secret" in await _refused(client, alice, address="box@shared.example", target_url=TARGET,
                                          secret=secret)

    await check_each(["short", "x" * 23, "y" * 257, "has spaces in it 0123456789", "tab\tin-the-secret-0123456789",
                      "whsec_!!notbase64!!xxxxxxxxxxxxxx"], check)


async def test_a_secret_of_24_and_of_256_characters_is_accepted(client, alice):
    for length in (24, 256):
        secret = "s" * length
        assert (await create_webhook(client, alice, f"box{length}@shared.example", secret=secret))["secret"] == secret


async def test_unacceptable_custom_headers_are_422(client, alice):
    async def check(headers):
        error = await _refused(client, alice, address="box@shared.example", target_url=TARGET, custom_headers=headers)
        assert "custom" in error, error

    await check_each([
        {"X-Injected": "value\r\nX-Evil: 1"},
        {"X-Injected": "line\nbreak"},
        {"X-Nul": "a\x00b"},
        {"Bad Name": "v"},
        {"X-Colon:": "v"},
        {"X-Ünicode": "v"},
        {"": "v"},
        {f"X-H{i}": "v" for i in range(21)},
        {"Host": "evil.example"},
        {"content-type": "text/plain"},
        {"Content-Length": "1"},
        {"Transfer-Encoding": "chunked"},
        {"webhook-signature": "v1,forged"},
        {"Webhook-Id": "msg_1"},
        {"webhook-timestamp": "1"},
        {"X-Long": "v" * 5000},
        {"X-" + "n" * 100: "v"},
        {"X-A": "1", "x-a": "2"},
    ], check)
    assert await _list(client, alice) == []


async def test_twenty_custom_headers_are_accepted(client, alice):
    headers = {f"X-H{i}": "v" for i in range(20)}
    created = await create_webhook(client, alice, "box@shared.example", custom_headers=headers)
    assert created["custom_headers"] == headers


async def test_a_payload_template_that_does_not_compile_is_422_with_its_line(client, alice):
    async def check(case):
        template, line = case
        error = await _refused(client, alice, address="box@shared.example", target_url=TARGET,
                               payload_template=template)
        assert "payload_template" in error and f"line {line}" in error, error

    await check_each([
        ("{{ subject }", 1),
        ('{\n  "subject": {{ subject|tojson }},\n  {% if %}\n}', 3),
        ("line one\nline two\n{% for x in items %}\n{{ x }}", 4),
        ("{{ subject|no_such_filter }}", 1),
        ("{% endif %}", 1),
    ], check)
    assert await _list(client, alice) == []


DEEP_TEMPLATES = [
    "{{ a" + "|lower" * 1000 + " }}",
    "{% if a %}" * 300 + "x" + "{% endif %}" * 300,
    "{{ " + "[" * 500 + "]" * 500 + " }}",
    "{% for a in b %}" * 100 + "{% endfor %}" * 100,
]


async def test_a_payload_template_nested_too_deeply_is_422_on_create_and_update(client, alice):
    """Compiled in a renderer process: the parser's RecursionError (or Python's limit on nested
    blocks) is a 422 naming the field, never a 500."""
    created = await create_webhook(client, alice, "box@shared.example", payload_template="{{ subject }}")

    async def check(template):
        error = await _refused(client, alice, address="other@shared.example", target_url=TARGET,
                               payload_template=template)
        assert error.startswith("payload_template is nested too deeply to compile"), error
        response = await client.put(f"/webhooks/{created['id']}", json={"payload_template": template},
                                    headers=alice.headers)
        assert assert_error(response, 422)["error"].startswith("payload_template is nested too deeply"), response.text

    await check_each(DEEP_TEMPLATES, check)
    assert [w["payload_template"] for w in await _list(client, alice)] == ["{{ subject }}"]


async def test_a_payload_template_using_the_message_compiles(client, alice):
    template = ('{"from": {{ from|tojson }}, "subject": {{ subject|tojson }}'
                '{% if text %}, "text": {{ text|tojson }}{% endif %}}')
    created = await create_webhook(client, alice, "box@shared.example", payload_template=template)
    assert created["payload_template"] == template


async def test_a_negative_rate_limit_is_422(client, alice):
    async def check(rate_limit):
        assert "rate_limit" in await _refused(client, alice, address="box@shared.example", target_url=TARGET,
                                              rate_limit=rate_limit)

    await check_each([-1, -100], check)
    assert (await create_webhook(client, alice, "box@shared.example", rate_limit=0))["rate_limit"] == 0


async def test_a_bad_delivery_mode_or_sync_timeout_is_422_on_create_and_update(client, alice):
    created = await create_webhook(client, alice, "box@shared.example", delivery_mode="synchronous",
                                   sync_timeout_ms=1000)
    assert (created["delivery_mode"], created["sync_timeout_ms"]) == ("synchronous", 1000)

    async def check(change):
        field = next(iter(change))
        error = await _refused(client, alice, address="new@shared.example", target_url=TARGET, **change)
        assert field in error, error
        response = await client.put(f"/webhooks/{created['id']}", json=change, headers=alice.headers)
        assert field in assert_error(response, 422, "validation_error")["error"]

    await check_each([{"delivery_mode": "sometimes"}, {"delivery_mode": "Synchronous"}, {"delivery_mode": None},
                      {"delivery_mode": 1}, {"sync_timeout_ms": 999}, {"sync_timeout_ms": 60001},
                      {"sync_timeout_ms": 0}, {"sync_timeout_ms": -5000}, {"sync_timeout_ms": "fast"},
                      {"sync_timeout_ms": None}, {"sync_timeout_ms": 1500.5}], check)
    assert [(w["delivery_mode"], w["sync_timeout_ms"]) for w in await _list(client, alice)] == [("synchronous", 1000)]
    response = await client.put(f"/webhooks/{created['id']}", headers=alice.headers,
                                json={"delivery_mode": "queued", "sync_timeout_ms": 60000})
    assert (response.json()["delivery_mode"], response.json()["sync_timeout_ms"]) == ("queued", 60000)


async def test_another_accounts_policy_is_422(client, alice):
    bob = await user(client)
    theirs = await create_policy(client, bob)
    response = await _post(client, alice, address="box@shared.example", target_url=TARGET,
                           smtp_security_policy_id=theirs["id"])
    assert "smtp_security_policy_id" in assert_error(response, 422)["error"]
    response = await _post(client, alice, address="box@shared.example", target_url=TARGET,
                           smtp_security_policy_id="pol_doesnotexist")
    assert_error(response, 422)
    assert await _list(client, alice) == []


async def test_an_address_already_registered_is_409(client, alice, alice_domain):
    await create_webhook(client, alice, "inbox@alpha.example")
    for spelling in ("inbox@alpha.example", "INBOX@Alpha.Example", " Inbox@alpha.example."):
        error = await _refused(client, alice, 409, address=spelling, target_url=TARGET)
        assert "inbox@alpha.example" in error
    assert len(await _list(client, alice)) == 1


async def test_an_address_on_a_public_domain_is_unique_across_accounts(client, alice):
    bob = await user(client)
    await create_webhook(client, alice, "box@shared.example")
    assert_error(await _post(client, bob, address="BOX@shared.example", target_url=TARGET), 409)
    assert await _list(client, bob) == []


# SSRF guard --------------------------------------------------------------------------------

PRIVATE_TARGETS = [
    "http://127.0.0.1/",
    "http://[::1]/",
    "http://10.0.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f.1/",
    "http://192.168.1.10:8080/",
    "http://172.16.0.1/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://internal.attacker.example/",  # A 127.0.0.1 on the loopback DNS server
    "http://v6only.attacker.example/",  # AAAA ::1
    "http://mixed.attacker.example/",  # a public A and a private A
]


def _publish_attacker_names(dns) -> None:
    dns.add("internal.attacker.example", "A", "127.0.0.1")
    dns.add("v6only.attacker.example", "AAAA", "::1")
    dns.add("mixed.attacker.example", "A", "93.184.216.34")
    dns.add("mixed.attacker.example", "A", "10.1.2.3")
    dns.add("hooks.public.example", "A", "93.184.216.34")


class TestPrivateTargetsRefused:
    """CONDUIT_ALLOW_PRIVATE_TARGETS=false: what production runs."""

    @pytest.fixture
    def settings_overrides(self, dns_zone) -> dict:
        return {"dns_servers": f"127.0.0.1:{dns_zone.port}", "public_domains": PUBLIC,
                "allow_private_targets": False}

    async def test_a_private_target_is_refused_with_422(self, client, alice, dns_zone):
        _publish_attacker_names(dns_zone)

        async def check(target_url):
            error = await _refused(client, alice, address="box@shared.example", target_url=target_url)
            assert "target_url" in error, error

        await check_each(PRIVATE_TARGETS, check)
        assert await _list(client, alice) == []

    async def test_a_public_target_is_accepted(self, client, alice, dns_zone):
        _publish_attacker_names(dns_zone)

        async def check(case):
            number, target_url = case
            created = await create_webhook(client, alice, f"box{number}@shared.example", target_url=target_url)
            assert created["target_url"] == target_url

        await check_each(enumerate(["http://93.184.216.34/hook", "https://hooks.public.example/in",
                                    "https://[2606:4700:4700::1111]/in"]), check)

    async def test_the_host_name_is_resolved_with_the_configured_dns_servers(self, client, alice, dns_zone):
        _publish_attacker_names(dns_zone)
        await _post(client, alice, address="box@shared.example", target_url="http://internal.attacker.example/")
        assert ("internal.attacker.example.", "A", "udp") in dns_zone.queries

    async def test_updating_to_a_private_target_is_refused_and_changes_nothing(self, client, alice, dns_zone):
        _publish_attacker_names(dns_zone)
        created = await create_webhook(client, alice, "box@shared.example", target_url="https://hooks.public.example/")
        response = await client.put(f"/webhooks/{created['id']}",
                                    json={"target_url": "http://internal.attacker.example/"}, headers=alice.headers)
        assert_error(response, 422)
        assert (await client.get(f"/webhooks/{created['id']}", headers=alice.headers)).json() == created


class TestPrivateTargetsAllowed:
    """CONDUIT_ALLOW_PRIVATE_TARGETS=true: tests and local development."""

    @pytest.fixture
    def settings_overrides(self, dns_zone) -> dict:
        return {"dns_servers": f"127.0.0.1:{dns_zone.port}", "public_domains": PUBLIC,
                "allow_private_targets": True}

    async def test_a_private_target_is_accepted(self, client, alice, dns_zone):
        _publish_attacker_names(dns_zone)

        async def check(case):
            number, target_url = case
            response = await _post(client, alice, address=f"box{number}@shared.example", target_url=target_url)
            assert response.status_code == 201, response.text

        await check_each(enumerate(PRIVATE_TARGETS), check)


async def test_an_ip_literal_target_is_stored_in_standard_notation(client, alice):
    created = await create_webhook(client, alice, "box@shared.example", target_url="http://2130706433:8080/hook")
    assert created["target_url"] == "http://127.0.0.1:8080/hook"


# Get, list -------------------------------------------------------------------------------


async def test_list_and_get_show_only_the_accounts_webhooks(client, alice):
    bob = await user(client)
    mine = await create_webhook(client, alice, "mine@shared.example")
    theirs = await create_webhook(client, bob, "theirs@shared.example")
    assert [w["id"] for w in await _list(client, alice)] == [mine["id"]]
    assert_error(await client.get(f"/webhooks/{theirs['id']}", headers=alice.headers), 404)
    assert_error(await client.get("/webhooks/whk_doesnotexist", headers=alice.headers), 404)


# Update ----------------------------------------------------------------------------------


async def test_put_is_a_partial_update(client, alice):
    policy = await create_policy(client, alice)
    created = await create_webhook(client, alice, "box@shared.example", name="Box", rate_limit=10,
                                   custom_headers={"X-A": "1"}, payload_template="{{ subject }}",
                                   smtp_security_policy_id=policy["id"])
    response = await client.put(f"/webhooks/{created['id']}", json={"name": "Renamed"}, headers=alice.headers)
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["name"] == "Renamed"
    assert {k: v for k, v in updated.items() if k not in ("name", "updated_at")} == \
           {k: v for k, v in created.items() if k not in ("name", "updated_at")}
    assert (await client.get(f"/webhooks/{created['id']}", headers=alice.headers)).json() == updated


async def test_put_changes_every_given_field(client, alice, alice_domain):
    policy = await create_policy(client, alice)
    created = await create_webhook(client, alice, "box@shared.example")
    change = {"address": "Orders@alpha.example", "target_url": "http://127.0.0.1:9000/x", "active": False,
              "rate_limit": 5, "secret": "rotated-secret-0123456789abcdef", "custom_headers": {"X-B": "2"},
              "payload_template": "{{ text }}", "smtp_security_policy_id": policy["id"], "name": "Orders"}
    response = await client.put(f"/webhooks/{created['id']}", json=change, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in change} == {**change, "address": "orders@alpha.example"}
    # The old address is free again.
    await create_webhook(client, alice, "box@shared.example")


async def test_put_may_keep_its_own_address(client, alice):
    created = await create_webhook(client, alice, "box@shared.example")
    response = await client.put(f"/webhooks/{created['id']}", json={"address": "BOX@shared.example"},
                                headers=alice.headers)
    assert response.status_code == 200, response.text


async def test_clear_security_policy_removes_it(client, alice):
    policy = await create_policy(client, alice)
    created = await create_webhook(client, alice, "box@shared.example", smtp_security_policy_id=policy["id"])
    response = await client.put(f"/webhooks/{created['id']}", json={"clear_security_policy": True},
                                headers=alice.headers)
    assert response.status_code == 200 and response.json()["smtp_security_policy_id"] is None
    assert (await client.get(f"/webhooks/{created['id']}", headers=alice.headers)).json()[
        "smtp_security_policy_id"] is None
    # The policy itself is untouched.
    assert (await client.get(f"/smtp-policies/{policy['id']}", headers=alice.headers)).status_code == 200


async def test_put_with_an_empty_name_names_the_webhook_after_its_address_again(client, alice):
    created = await create_webhook(client, alice, "box@shared.example", name="Box")
    response = await client.put(f"/webhooks/{created['id']}", json={"name": "", "address": "other@shared.example"},
                                headers=alice.headers)
    assert response.status_code == 200 and response.json()["name"] == "other@shared.example"


async def test_put_with_a_payload_template_empty_removes_it(client, alice):
    created = await create_webhook(client, alice, "box@shared.example", payload_template="{{ subject }}")
    response = await client.put(f"/webhooks/{created['id']}", json={"payload_template": ""}, headers=alice.headers)
    assert response.status_code == 200 and response.json()["payload_template"] is None


async def test_put_to_an_address_already_registered_is_409_and_changes_nothing(client, alice):
    bob = await user(client)
    await create_webhook(client, bob, "taken@shared.example")
    mine = await create_webhook(client, alice, "mine@shared.example")
    other = await create_webhook(client, alice, "other@shared.example")
    for address in ("TAKEN@shared.example", "other@shared.example"):
        response = await client.put(f"/webhooks/{mine['id']}", json={"address": address, "name": "x"},
                                    headers=alice.headers)
        assert_error(response, 409)
    assert (await client.get(f"/webhooks/{mine['id']}", headers=alice.headers)).json() == mine
    assert (await client.get(f"/webhooks/{other['id']}", headers=alice.headers)).json() == other


async def test_put_that_breaks_a_rule_is_422_and_changes_nothing(client, alice):
    created = await create_webhook(client, alice, "box@shared.example")

    async def check(change):
        response = await client.put(f"/webhooks/{created['id']}", json={**change, "name": "changed?"},
                                    headers=alice.headers)
        assert_error(response, 422)
        assert (await client.get(f"/webhooks/{created['id']}", headers=alice.headers)).json() == created

    await check_each([
        {"rate_limit": -1},
        {"target_url": "ftp://x.example/"},
        {"address": "a@unclaimed.example"},
        {"address": "*@shared.example"},
        {"address": ""},
        {"target_url": ""},
        {"secret": "short"},
        {"custom_headers": {"Host": "x"}},
        {"payload_template": "{% if %}"},
        {"smtp_security_policy_id": "pol_doesnotexist"},
        {"active": "sometimes"},
    ], check)


async def test_put_of_an_unknown_or_another_accounts_webhook_is_404(client, alice):
    bob = await user(client)
    theirs = await create_webhook(client, bob, "theirs@shared.example")
    assert_error(await client.put("/webhooks/whk_doesnotexist", json={"name": "x"}, headers=alice.headers), 404)
    assert_error(await client.put(f"/webhooks/{theirs['id']}", json={"name": "x"}, headers=alice.headers), 404)
    assert (await client.get(f"/webhooks/{theirs['id']}", headers=bob.headers)).json() == theirs


# Delete ----------------------------------------------------------------------------------


async def test_delete_removes_the_webhook_and_frees_its_address(client, alice):
    created = await create_webhook(client, alice, "box@shared.example")
    response = await client.delete(f"/webhooks/{created['id']}", headers=alice.headers)
    assert response.status_code == 204 and response.content == b""
    assert_error(await client.get(f"/webhooks/{created['id']}", headers=alice.headers), 404)
    assert_error(await client.delete(f"/webhooks/{created['id']}", headers=alice.headers), 404)
    await create_webhook(client, alice, "box@shared.example")


async def test_delete_of_another_accounts_webhook_is_404(client, alice):
    bob = await user(client)
    theirs = await create_webhook(client, bob, "theirs@shared.example")
    assert_error(await client.delete(f"/webhooks/{theirs['id']}", headers=alice.headers), 404)
    assert (await client.get(f"/webhooks/{theirs['id']}", headers=bob.headers)).status_code == 200


async def test_create_update_and_delete_are_in_the_audit_log(client, alice):
    created = await create_webhook(client, alice, "box@shared.example", secret="audit-secret-0123456789abcdef")
    await client.put(f"/webhooks/{created['id']}", json={"name": "x"}, headers=alice.headers)
    await client.delete(f"/webhooks/{created['id']}", headers=alice.headers)
    assert (await audit_actions(client, alice.headers))[:3] == ["webhook.deleted", "webhook.updated", "webhook.created"]
    assert "audit-secret-0123456789abcdef" not in (await client.get("/accounts/me/audit-log",
                                                                    headers=alice.headers)).text


# Delivery logs -----------------------------------------------------------------------------


async def _insert_logs(engine, webhook_id: str, count: int, *, status: str = "delivered",
                       start_minutes_ago: int = 0) -> list[str]:
    """Insert ``count`` delivery logs, one a minute apart going back in time, not in time order
    (so the order of the listing cannot come from insertion). Returns their IDs newest first."""
    base = now() - timedelta(minutes=start_minutes_ago)
    rows = [DeliveryLog(id=new_id("log"), webhook_id=webhook_id, status=status,
                        attempted_at=base - timedelta(minutes=i), http_status=200 if status == "delivered" else 503,
                        duration_ms=10 + i, error="" if status == "delivered" else "HTTP 503",
                        sender=f"sender{i}@example.org", smtp_message_id=f"<m{i}@example.org>", simulated=i % 2 == 1,
                        response_excerpt="ok")
            for i in range(count)]
    newest_first = [r.id for r in rows]
    rows = rows[1::2] + rows[::2]
    async with transaction(async_sessionmaker(engine)) as session:
        session.add_all(rows)
    return newest_first


async def _logs(client, owner, webhook_id: str, **params):
    return await client.get(f"/webhooks/{webhook_id}/logs", params=params, headers=owner.headers)


async def test_a_webhook_without_deliveries_has_an_empty_log(client, alice):
    created = await create_webhook(client, alice, "box@shared.example")
    response = await _logs(client, alice, created["id"])
    assert response.status_code == 200 and response.json() == []


async def test_logs_are_listed_newest_first_with_their_fields(client, alice, engine):
    created = await create_webhook(client, alice, "box@shared.example")
    expected = await _insert_logs(engine, created["id"], 5)
    response = await _logs(client, alice, created["id"])
    assert response.status_code == 200, response.text
    logs = response.json()
    assert [log["id"] for log in logs] == expected
    assert LOG_FIELDS <= set(logs[0])
    assert logs[0]["webhook_id"] == created["id"]
    assert logs[0]["http_status"] == 200 and logs[0]["duration_ms"] == 10
    assert logs[0]["sender"] == "sender0@example.org" and logs[0]["smtp_message_id"] == "<m0@example.org>"
    assert logs[0]["simulated"] is False and logs[1]["simulated"] is True
    attempted = [log["attempted_at"] for log in logs]
    assert attempted == sorted(attempted, reverse=True)
    # Beyond the reference: the start of the receiver's answer (the dashboard's log view shows it).
    assert logs[0]["response_excerpt"] == "ok"


async def test_logs_are_paged(client, alice, engine):
    created = await create_webhook(client, alice, "box@shared.example")
    expected = await _insert_logs(engine, created["id"], 5)
    pages = []
    for page in (1, 2, 3, 4):
        response = await _logs(client, alice, created["id"], page=page, page_size=2)
        assert response.status_code == 200, response.text
        pages.append([log["id"] for log in response.json()])
    assert pages == [expected[0:2], expected[2:4], expected[4:5], []]


async def test_the_default_page_size_is_50(client, alice, engine):
    created = await create_webhook(client, alice, "box@shared.example")
    expected = await _insert_logs(engine, created["id"], 51)
    first = (await _logs(client, alice, created["id"])).json()
    assert [log["id"] for log in first] == expected[:50]
    second = (await _logs(client, alice, created["id"], page=2)).json()
    assert [log["id"] for log in second] == expected[50:]
    everything = (await _logs(client, alice, created["id"], page_size=200)).json()
    assert len(everything) == 51


async def test_logs_can_be_filtered_by_status(client, alice, engine):
    created = await create_webhook(client, alice, "box@shared.example")
    delivered = await _insert_logs(engine, created["id"], 2, status="delivered")
    failed = await _insert_logs(engine, created["id"], 2, status="failed", start_minutes_ago=30)
    response = await _logs(client, alice, created["id"], status="failed")
    assert [log["id"] for log in response.json()] == failed
    response = await _logs(client, alice, created["id"], status="delivered")
    assert [log["id"] for log in response.json()] == delivered
    assert_error(await _logs(client, alice, created["id"], status="exploded"), 422)


async def test_out_of_range_paging_is_422(client, alice):
    created = await create_webhook(client, alice, "box@shared.example")

    async def check(params):
        assert_error(await _logs(client, alice, created["id"], **params), 422)

    await check_each([{"page": 0}, {"page": -1}, {"page": "one"}, {"page_size": 0}, {"page_size": 201},
                      {"page_size": -5}], check)


async def test_a_page_far_beyond_the_end_is_empty(client, alice, engine):
    created = await create_webhook(client, alice, "box@shared.example")
    await _insert_logs(engine, created["id"], 1)
    for page in (2, 10**6, 10**17, 10**30):  # the last two overflow a 64-bit OFFSET
        response = await _logs(client, alice, created["id"], page=page, page_size=200)
        assert response.status_code == 200 and response.json() == [], (page, response.text)


async def test_logs_of_an_unknown_webhook_are_404(client, alice):
    assert_error(await _logs(client, alice, "whk_doesnotexist"), 404)


async def test_get_one_log(client, alice, engine):
    created = await create_webhook(client, alice, "box@shared.example")
    [log_id] = await _insert_logs(engine, created["id"], 1, status="failed")
    response = await client.get(f"/webhooks/{created['id']}/logs/{log_id}", headers=alice.headers)
    assert response.status_code == 200, response.text
    log = response.json()
    assert LOG_FIELDS <= set(log)
    assert log["id"] == log_id and log["webhook_id"] == created["id"]
    assert log["http_status"] == 503 and log["error"] == "HTTP 503"
    assert log == (await _logs(client, alice, created["id"])).json()[0]


async def test_get_an_unknown_log_is_404(client, alice):
    created = await create_webhook(client, alice, "box@shared.example")
    assert_error(await client.get(f"/webhooks/{created['id']}/logs/dlv_doesnotexist", headers=alice.headers), 404)


async def test_a_log_of_another_webhook_is_404_through_this_webhooks_path(client, alice, engine):
    this = await create_webhook(client, alice, "this@shared.example")
    other = await create_webhook(client, alice, "other@shared.example")
    [other_log] = await _insert_logs(engine, other["id"], 1)
    assert_error(await client.get(f"/webhooks/{this['id']}/logs/{other_log}", headers=alice.headers), 404)
    assert (await client.get(f"/webhooks/{other['id']}/logs/{other_log}", headers=alice.headers)).status_code == 200
    assert (await _logs(client, alice, this["id"])).json() == []


async def test_deleting_a_webhook_deletes_its_logs(client, alice, engine):
    created = await create_webhook(client, alice, "box@shared.example")
    await _insert_logs(engine, created["id"], 3)
    assert (await client.delete(f"/webhooks/{created['id']}", headers=alice.headers)).status_code == 204
    async with engine.connect() as connection:
        count = await connection.scalar(select(func.count()).select_from(DeliveryLog.__table__)
                                        .where(DeliveryLog.webhook_id == created["id"]))
    assert count == 0


async def test_delivery_logs_past_retention_are_purged(client, alice, engine, database, settings):
    created = await create_webhook(client, alice, "box@shared.example")
    await _insert_logs(engine, created["id"], 1, start_minutes_ago=(settings.log_retention_days * 24 + 1) * 60)
    recent = await _insert_logs(engine, created["id"], 1)
    assert len((await _logs(client, alice, created["id"])).json()) == 2
    async with database.transaction() as session:
        await purge_expired(session, settings=settings)
    assert [log["id"] for log in (await _logs(client, alice, created["id"])).json()] == recent
