"""SMTP Policies group: create, list, get, partial update, delete, password storage."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy import text

from tests.factories import assert_error, audit_actions, check_each, create_policy, create_webhook, user, users

PUBLIC = "shared.example"
POLICY_FIELDS = {"id", "name", "allowed_source_ips", "allowed_spf_domains", "allowed_dkim_domains", "require_dkim",
                 "require_smtp_auth", "require_spf", "smtp_credentials", "created_at", "updated_at", "spam_action",
                 "spam_threshold"}
FULL = {
    "name": "Partners",
    "allowed_source_ips": "192.0.2.1, 10.0.0.0/8  2001:DB8::/32,192.0.2.1",
    "allowed_spf_domains": "Example.COM mail.Bücher.example",
    "allowed_dkim_domains": "a.example,b.example,\ta.example.",
    "require_spf": True,
    "require_dkim": True,
    "require_smtp_auth": True,
    "smtp_credentials": "relay-user:pa55:with:colons",
}


@pytest.fixture
def settings_overrides() -> dict:
    return {"public_domains": PUBLIC, "allow_private_targets": True}


async def _stored_row(engine, policy_id: str) -> dict:
    async with engine.connect() as connection:
        result = await connection.execute(text("SELECT * FROM smtp_policies WHERE id = :id"), {"id": policy_id})
        return dict(result.mappings().one())


# Create ----------------------------------------------------------------------------------


async def test_create_returns_201_with_normalised_lists_and_the_credentials_once(client):
    alice = await user(client)
    response = await client.post("/smtp-policies", json=FULL, headers=alice.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == POLICY_FIELDS
    assert created["name"] == "Partners"
    assert created["allowed_source_ips"] == "192.0.2.1, 10.0.0.0/8, 2001:db8::/32"
    assert created["allowed_spf_domains"] == "example.com, mail.xn--bcher-kva.example"
    assert created["allowed_dkim_domains"] == "a.example, b.example"
    assert created["require_spf"] is True and created["require_dkim"] is True
    assert created["require_smtp_auth"] is True
    assert created["smtp_credentials"] == "relay-user:pa55:with:colons"  # shown once, in full

    masked = {**created, "smtp_credentials": "relay-user:********"}
    got = await client.get(f"/smtp-policies/{created['id']}", headers=alice.headers)
    assert got.status_code == 200 and got.json() == masked
    listed = await client.get("/smtp-policies", headers=alice.headers)
    assert listed.status_code == 200 and listed.json() == [masked]


async def test_create_with_only_a_name_has_empty_lists_and_no_requirements(client):
    alice = await user(client)
    created = await create_policy(client, alice, name="Open")
    assert created["allowed_source_ips"] == created["allowed_spf_domains"] == created["allowed_dkim_domains"] == ""
    assert created["smtp_credentials"] == ""
    assert created["require_spf"] is created["require_dkim"] is created["require_smtp_auth"] is False


async def test_the_smtp_password_is_stored_as_an_argon2id_hash(client, engine):
    alice = await user(client)
    created = await create_policy(client, alice, smtp_credentials="relay:Sup3r-Secret-Pw")
    row = await _stored_row(engine, created["id"])
    assert row["smtp_password_hash"].startswith("$argon2id$")
    assert PasswordHasher().verify(row["smtp_password_hash"], "Sup3r-Secret-Pw")
    assert not any("Sup3r-Secret-Pw" in str(value) for value in row.values())


async def test_list_holds_only_the_accounts_policies(client):
    alice, bob = await users(client, 2)
    first = await create_policy(client, alice, name="one")
    second = await create_policy(client, alice, name="two")
    await create_policy(client, bob, name="one")
    listed = (await client.get("/smtp-policies", headers=alice.headers)).json()
    assert [p["id"] for p in listed] == [first["id"], second["id"]]


async def test_create_without_a_valid_name_is_422(client):
    alice = await user(client)

    async def check(body):
        error = assert_error(await client.post("/smtp-policies", json=body, headers=alice.headers), 422)["error"]
        assert "name" in error, error

    await check_each([{}, {"name": ""}, {"name": "   "}, {"name": None}, {"name": "x" * 101}], check)
    assert (await client.get("/smtp-policies", headers=alice.headers)).json() == []


async def test_a_name_is_unique_per_account_only(client):
    alice, bob = await users(client, 2)
    await create_policy(client, alice, name="Partners")
    response = await client.post("/smtp-policies", json={"name": "Partners"}, headers=alice.headers)
    assert "Partners" in assert_error(response, 422)["error"]
    assert len((await client.get("/smtp-policies", headers=alice.headers)).json()) == 1
    await create_policy(client, bob, name="Partners")


async def test_a_malformed_source_ip_is_422_naming_it(client):
    alice = await user(client)

    async def check(entry):
        body = {"name": "p", "allowed_source_ips": f"192.0.2.1, {entry}"}
        error = assert_error(await client.post("/smtp-policies", json=body, headers=alice.headers), 422)["error"]
        assert "allowed_source_ips" in error and entry in error, error

    await check_each(["10.0.0.999", "10.0.0.0/33", "not-an-ip", "10.0.0.1/8", "2001:db8::g", "127.1"], check)
    assert (await client.get("/smtp-policies", headers=alice.headers)).json() == []


async def test_a_malformed_spf_or_dkim_domain_is_422_naming_it(client):
    alice = await user(client)

    async def check(case):
        field, entry = case
        body = {"name": "p", field: f"good.example {entry}"}
        error = assert_error(await client.post("/smtp-policies", json=body, headers=alice.headers), 422)["error"]
        assert field in error and entry in error, error

    await check_each([(field, entry) for field in ("allowed_spf_domains", "allowed_dkim_domains")
                      for entry in ("bad..example", "-lead.example", "localhost", "192.0.2.1")], check)
    assert (await client.get("/smtp-policies", headers=alice.headers)).json() == []


async def test_malformed_smtp_credentials_are_422(client):
    alice = await user(client)

    async def check(credentials):
        body = {"name": "p", "smtp_credentials": credentials}
        error = assert_error(await client.post("/smtp-policies", json=body, headers=alice.headers), 422)["error"]
        assert "smtp_credentials" in error, error
        assert "Pw-Secret-99" not in error, error  # never echoes the password

    # no colon, empty user name, empty password, a space in the user name, a control character in the password
    await check_each(["relay", ":Pw-Secret-99", "relay:", "re lay:Pw-Secret-99", "relay:Pw-Secret-99\r\n"], check)
    assert (await client.get("/smtp-policies", headers=alice.headers)).json() == []


async def test_an_smtp_password_shorter_than_12_characters_is_422_on_create_and_update(client, engine):
    alice = await user(client)
    for short in ("relay:x", "relay:" + "p" * 11):
        response = await client.post("/smtp-policies", json={"name": "p", "smtp_credentials": short},
                                     headers=alice.headers)
        error = assert_error(response, 422, "validation_error")["error"]
        assert "smtp_credentials" in error and "at least 12 characters" in error, error
    assert (await client.get("/smtp-policies", headers=alice.headers)).json() == []
    created = await create_policy(client, alice, smtp_credentials="relay:" + "p" * 12)  # 12 is enough
    response = await client.put(f"/smtp-policies/{created['id']}", json={"smtp_credentials": "relay:x"},
                                headers=alice.headers)
    assert "smtp_credentials" in assert_error(response, 422, "validation_error")["error"]
    stored = (await _stored_row(engine, created["id"]))["smtp_password_hash"]
    assert PasswordHasher().verify(stored, "p" * 12)  # the update changed nothing


async def test_require_smtp_auth_without_credentials_is_422(client):
    alice = await user(client)
    response = await client.post("/smtp-policies", json={"name": "p", "require_smtp_auth": True}, headers=alice.headers)
    assert "smtp_credentials" in assert_error(response, 422)["error"]


async def test_a_body_of_the_wrong_type_is_422(client):
    alice = await user(client)
    body = {"name": "p", "require_spf": "sometimes"}
    response = await client.post("/smtp-policies", json=body, headers=alice.headers)
    assert_error(response, 422)


# Get -------------------------------------------------------------------------------------


async def test_get_unknown_or_another_accounts_policy_is_404(client):
    alice, bob = await users(client, 2)
    theirs = await create_policy(client, bob)
    assert_error(await client.get("/smtp-policies/pol_doesnotexist", headers=alice.headers), 404)
    assert_error(await client.get(f"/smtp-policies/{theirs['id']}", headers=alice.headers), 404)


# Update ----------------------------------------------------------------------------------


async def test_put_is_a_partial_update(client):
    alice = await user(client)
    created = (await client.post("/smtp-policies", json=FULL, headers=alice.headers)).json()
    response = await client.put(f"/smtp-policies/{created['id']}", json={"require_spf": False,
                                                                         "allowed_spf_domains": ""},
                                headers=alice.headers)
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["require_spf"] is False and updated["allowed_spf_domains"] == ""
    unchanged = {k: v for k, v in created.items() if k not in ("require_spf", "allowed_spf_domains", "updated_at")}
    assert {k: updated[k] for k in unchanged} == {**unchanged, "smtp_credentials": "relay-user:********"}
    got = (await client.get(f"/smtp-policies/{created['id']}", headers=alice.headers)).json()
    assert got == updated


async def test_put_with_new_credentials_shows_them_once_and_stores_the_new_hash(client, engine):
    alice = await user(client)
    created = await create_policy(client, alice, smtp_credentials="old:first-password")
    response = await client.put(f"/smtp-policies/{created['id']}", json={"smtp_credentials": "new:second-password"},
                                headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.json()["smtp_credentials"] == "new:second-password"
    got = (await client.get(f"/smtp-policies/{created['id']}", headers=alice.headers)).json()
    assert got["smtp_credentials"] == "new:********"
    stored = (await _stored_row(engine, created["id"]))["smtp_password_hash"]
    assert PasswordHasher().verify(stored, "second-password")


async def test_put_with_empty_credentials_removes_them(client):
    alice = await user(client)
    created = await create_policy(client, alice, smtp_credentials="old:first-password")
    response = await client.put(f"/smtp-policies/{created['id']}", json={"smtp_credentials": ""},
                                headers=alice.headers)
    assert response.status_code == 200 and response.json()["smtp_credentials"] == ""


async def test_put_that_breaks_a_rule_is_422_and_changes_nothing(client):
    alice = await user(client)
    created = (await client.post("/smtp-policies", json=FULL, headers=alice.headers)).json()
    other = await create_policy(client, alice, name="Other")
    before = (await client.get(f"/smtp-policies/{created['id']}", headers=alice.headers)).json()
    for change in ({"smtp_credentials": ""},  # require_smtp_auth stays true
                   {"allowed_source_ips": "10.0.0.300", "name": "Renamed"},
                   {"allowed_dkim_domains": "bad..example"},
                   {"name": other["name"]},
                   {"name": ""}):
        response = await client.put(f"/smtp-policies/{created['id']}", json=change, headers=alice.headers)
        assert_error(response, 422)
    assert (await client.get(f"/smtp-policies/{created['id']}", headers=alice.headers)).json() == before


async def test_put_may_keep_its_own_name(client):
    alice = await user(client)
    created = await create_policy(client, alice, name="Same")
    response = await client.put(f"/smtp-policies/{created['id']}", json={"name": "Same", "require_dkim": True},
                                headers=alice.headers)
    assert response.status_code == 200 and response.json()["require_dkim"] is True


async def test_put_of_an_unknown_or_another_accounts_policy_is_404(client):
    alice, bob = await users(client, 2)
    theirs = await create_policy(client, bob, name="Theirs")
    assert_error(await client.put("/smtp-policies/pol_doesnotexist", json={"name": "x"}, headers=alice.headers), 404)
    assert_error(await client.put(f"/smtp-policies/{theirs['id']}", json={"name": "x"}, headers=alice.headers), 404)
    assert (await client.get(f"/smtp-policies/{theirs['id']}", headers=bob.headers)).json()["name"] == "Theirs"


# Delete ----------------------------------------------------------------------------------


async def test_delete_detaches_the_policy_from_its_webhooks(client):
    alice = await user(client)
    policy = await create_policy(client, alice)
    webhook = await create_webhook(client, alice, "box@shared.example", smtp_security_policy_id=policy["id"])
    assert webhook["smtp_security_policy_id"] == policy["id"]

    response = await client.delete(f"/smtp-policies/{policy['id']}", headers=alice.headers)
    assert response.status_code == 204 and response.content == b""

    assert_error(await client.get(f"/smtp-policies/{policy['id']}", headers=alice.headers), 404)
    after = await client.get(f"/webhooks/{webhook['id']}", headers=alice.headers)
    assert after.status_code == 200
    assert after.json()["smtp_security_policy_id"] is None
    assert after.json()["address"] == "box@shared.example"


async def test_delete_of_an_unknown_or_another_accounts_policy_is_404(client):
    alice, bob = await users(client, 2)
    theirs = await create_policy(client, bob)
    assert_error(await client.delete("/smtp-policies/pol_doesnotexist", headers=alice.headers), 404)
    assert_error(await client.delete(f"/smtp-policies/{theirs['id']}", headers=alice.headers), 404)
    assert (await client.get(f"/smtp-policies/{theirs['id']}", headers=bob.headers)).status_code == 200


# Audit log -------------------------------------------------------------------------------


async def test_create_update_and_delete_are_in_the_audit_log_without_the_password(client):
    alice = await user(client)
    policy = await create_policy(client, alice, smtp_credentials="relay:Audit-Me-Not-123")
    await client.put(f"/smtp-policies/{policy['id']}", json={"smtp_credentials": "relay:Audit-Me-Not-456"},
                     headers=alice.headers)
    await client.delete(f"/smtp-policies/{policy['id']}", headers=alice.headers)
    assert (await audit_actions(client, alice.headers))[:3] == \
           ["smtp_policy.deleted", "smtp_policy.updated", "smtp_policy.created"]
    log = (await client.get("/accounts/me/audit-log", headers=alice.headers)).text
    assert "Audit-Me-Not" not in log


# Spam verdicts (rspamd) -------------------------------------------------------------------


async def test_spam_action_defaults_to_deliver_without_a_threshold(client, engine):
    alice = await user(client)
    created = await create_policy(client, alice)
    assert (created["spam_action"], created["spam_threshold"]) == ("deliver", None)
    row = await _stored_row(engine, created["id"])
    assert (row["spam_action"], row["spam_threshold"]) == ("deliver", None)


async def test_spam_action_and_threshold_are_set_changed_and_cleared(client):
    alice = await user(client)
    created = await create_policy(client, alice, spam_action="reject", spam_threshold=8)
    assert (created["spam_action"], created["spam_threshold"]) == ("reject", 8.0)
    url = f"/smtp-policies/{created['id']}"
    changed = await client.put(url, json={"spam_threshold": 12.5}, headers=alice.headers)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["spam_action"], changed.json()["spam_threshold"]) == ("reject", 12.5)
    cleared = await client.put(url, json={"clear_spam_threshold": True, "spam_action": "deliver"},
                               headers=alice.headers)
    assert cleared.status_code == 200, cleared.text
    assert (cleared.json()["spam_action"], cleared.json()["spam_threshold"]) == ("deliver", None)
    got = (await client.get(url, headers=alice.headers)).json()
    assert (got["spam_action"], got["spam_threshold"]) == ("deliver", None)


async def test_a_bad_spam_action_or_threshold_is_422_and_changes_nothing(client):
    alice = await user(client)
    created = await create_policy(client, alice, spam_action="reject", spam_threshold=8)
    url = f"/smtp-policies/{created['id']}"

    async def check(body: dict) -> None:
        field = next(iter(body))
        assert_error(await client.post("/smtp-policies", json={"name": "x", **body}, headers=alice.headers), 422)
        response = await client.put(url, json=body, headers=alice.headers)
        assert field in assert_error(response, 422)["error"], body

    await check_each([{"spam_action": "quarantine"}, {"spam_action": None}, {"spam_threshold": "high"},
                      {"spam_threshold": None}, {"spam_threshold": 1e9}, {"spam_threshold": True}], check)
    got = (await client.get(url, headers=alice.headers)).json()
    assert (got["spam_action"], got["spam_threshold"]) == ("reject", 8.0)
