"""Domains group: list, claim, verify against a real loopback DNS server, get, delete.

Conduit is pointed at the loopback DNS server (tests.support.dns_server) and at a
non-default MX host, so a record for the default ``mx.conduit.email`` is a wrong MX.
"""

from __future__ import annotations

import pytest
from sqlalchemy import update

from conduit.storage.models import Domain
from tests.factories import (
    assert_error,
    audit_actions,
    check_each,
    claim_domain,
    create_webhook,
    execute,
    publish_verification_records,
    user,
    users,
    verified_domain,
)

MX_HOST = "mx.conduit.test"
PUBLIC = "shared.example"
DOMAIN_FIELDS = {"id", "name", "account_id", "verification_token", "verified", "is_public", "created_at",
                 "updated_at", "dns_records"}  # dns_records: beyond the reference, for the dashboard


@pytest.fixture
def settings_overrides(dns_zone) -> dict:
    return {"dns_servers": f"127.0.0.1:{dns_zone.port}", "public_domains": PUBLIC, "mx_host": MX_HOST,
            "allow_private_targets": True}


async def _list(client, owner) -> list[dict]:
    response = await client.get("/domains", headers=owner.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _public_domain(client, owner) -> dict:
    return next(d for d in await _list(client, owner) if d["name"] == PUBLIC)


async def _verify(client, owner, domain: dict):
    return await client.post(f"/domains/{domain['id']}/verify", headers=owner.headers)


# List ------------------------------------------------------------------------------------


async def test_list_shows_own_claims_and_the_public_domains(client):
    alice, bob = await users(client, 2)
    mine = await claim_domain(client, alice, "alpha.example")
    await claim_domain(client, bob, "beta.example")

    listed = await _list(client, alice)
    assert {d["name"] for d in listed} == {"alpha.example", PUBLIC}
    assert all(set(d) == DOMAIN_FIELDS for d in listed)
    own = next(d for d in listed if d["name"] == "alpha.example")
    assert own == mine
    assert own["account_id"] == alice.id and own["is_public"] is False and own["verified"] is False
    public = next(d for d in listed if d["name"] == PUBLIC)
    assert public["is_public"] is True
    assert public["verified"] is True
    assert public["account_id"] == ""
    assert public["verification_token"] == ""
    # Every account sees the same public domain (one row, one ID) and none of the others' claims.
    assert {d["name"] for d in await _list(client, bob)} == {"beta.example", PUBLIC}
    assert await _public_domain(client, bob) == public


async def test_list_of_a_new_account_holds_only_the_public_domains(client):
    alice = await user(client)
    assert [d["name"] for d in await _list(client, alice)] == [PUBLIC]


# Claim -----------------------------------------------------------------------------------


async def test_claim_returns_201_with_an_unverified_claim_and_a_random_token(client):
    alice = await user(client)
    first = await claim_domain(client, alice, "alpha.example")
    second = await claim_domain(client, alice, "beta.example")
    assert set(first) == DOMAIN_FIELDS
    assert first["name"] == "alpha.example"
    assert first["account_id"] == alice.id
    assert first["verified"] is False and first["is_public"] is False
    assert len(first["verification_token"]) >= 32
    assert first["verification_token"] != second["verification_token"]
    response = await client.get(f"/domains/{first['id']}", headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == first


async def test_claimed_name_is_stored_as_lower_case_a_label_without_trailing_dot(client):
    alice = await user(client)

    async def check(case):
        given, stored = case
        assert (await claim_domain(client, alice, given))["name"] == stored

    await check_each([
        ("Bücher.Example.", "xn--bcher-kva.example"),
        ("MAIL.Example.COM", "mail.example.com"),
        ("trailing-dot.example.", "trailing-dot.example"),
        ("XN--Mnchen-3ya.example", "xn--mnchen-3ya.example"),
        ("r3---sn.example", "r3---sn.example"),
    ], check)


async def test_one_name_in_two_spellings_is_one_claim(client):
    alice = await user(client)
    await claim_domain(client, alice, "bücher.example")
    response = await client.post("/domains", json={"name": "XN--BCHER-KVA.example."}, headers=alice.headers)
    assert_error(response, 409)


INVALID_NAMES = [
    "localhost",  # a single label
    "mail..example",  # an empty label
    ".example",
    "a" * 64 + ".example",  # a label over 63 characters
    "-lead.example",
    "trail-.example",
    "under_score.example",
    "192.0.2.1",
    "2001:db8::1",
    "[2001:db8::1]",
    "my domain.example",
    "mail.123",  # an all-digit top-level label
    "xn--zz.example",  # not punycode
    "",
    "   ",
]


async def test_claim_of_an_invalid_name_is_422_and_claims_nothing(client):
    alice = await user(client)

    async def check(name):
        body = assert_error(await client.post("/domains", json={"name": name}, headers=alice.headers), 422)
        assert "domain name" in body["error"], body

    await check_each(INVALID_NAMES, check)
    assert [d["name"] for d in await _list(client, alice)] == [PUBLIC]


async def test_label_of_63_characters_is_accepted(client):
    alice = await user(client)
    name = "a" * 63 + ".example"
    assert (await claim_domain(client, alice, name))["name"] == name


async def test_claim_without_a_name_is_422(client):
    alice = await user(client)
    assert_error(await client.post("/domains", json={}, headers=alice.headers), 422)


async def test_claiming_a_name_twice_is_409(client):
    alice = await user(client)
    await claim_domain(client, alice, "alpha.example")
    body = assert_error(await client.post("/domains", json={"name": "Alpha.Example"}, headers=alice.headers), 409)
    assert "alpha.example" in body["error"]
    assert [d["name"] for d in await _list(client, alice)].count("alpha.example") == 1


async def test_claiming_a_public_domain_is_409(client):
    alice = await user(client)
    for spelling in (PUBLIC, "SHARED.example."):
        assert_error(await client.post("/domains", json={"name": spelling}, headers=alice.headers), 409)
    assert [d["name"] for d in await _list(client, alice)] == [PUBLIC]


async def test_several_accounts_may_hold_unverified_claims_on_one_name(client):
    alice, bob = await users(client, 2)
    a = await claim_domain(client, alice, "contested.example")
    b = await claim_domain(client, bob, "contested.example")
    assert a["id"] != b["id"]
    assert a["verification_token"] != b["verification_token"]
    assert [d["id"] for d in await _list(client, alice) if not d["is_public"]] == [a["id"]]
    assert [d["id"] for d in await _list(client, bob) if not d["is_public"]] == [b["id"]]


async def test_claiming_a_name_another_account_verified_is_409(client, dns_zone):
    alice, bob = await users(client, 2)
    await verified_domain(client, bob, dns_zone, "taken.example", MX_HOST)
    body = assert_error(await client.post("/domains", json={"name": "taken.example"}, headers=alice.headers), 409)
    assert "taken.example" in body["error"]


# Verify ----------------------------------------------------------------------------------


async def test_verify_succeeds_when_txt_token_and_mx_are_published(client, dns_zone):
    alice = await user(client)
    claim = await claim_domain(client, alice, "alpha.example")
    publish_verification_records(dns_zone, claim, MX_HOST)

    response = await _verify(client, alice, claim)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verified"] is True
    assert {k: v for k, v in body.items() if k not in ("verified", "updated_at")} == \
           {k: v for k, v in claim.items() if k not in ("verified", "updated_at")}
    assert (await client.get(f"/domains/{claim['id']}", headers=alice.headers)).json()["verified"] is True
    # Both checks went to our DNS server, exactly as the spec names them.
    asked = {(name, rtype) for name, rtype, _ in dns_zone.queries}
    assert ("_conduit-verify.alpha.example.", "TXT") in asked
    assert ("alpha.example.", "MX") in asked
    # Verifying again is harmless.
    again = await _verify(client, alice, claim)
    assert again.status_code == 200 and again.json()["verified"] is True


async def test_token_among_several_txt_records_is_found(client, dns_zone):
    alice = await user(client)
    claim = await claim_domain(client, alice, "alpha.example")
    dns_zone.add("_conduit-verify.alpha.example", "TXT", "v=something-else")
    dns_zone.add("alpha.example", "MX", "20 backup.example.net")
    publish_verification_records(dns_zone, claim, MX_HOST)
    assert (await _verify(client, alice, claim)).status_code == 200


async def test_verify_without_the_txt_record_is_422_saying_the_txt_check_failed(client, dns_zone):
    alice = await user(client)
    claim = await claim_domain(client, alice, "alpha.example")
    dns_zone.add("alpha.example", "MX", f"10 {MX_HOST}")  # MX fine, TXT never published
    body = assert_error(await _verify(client, alice, claim), 422)
    assert "TXT check failed" in body["error"]
    assert "_conduit-verify.alpha.example" in body["error"]
    assert (await client.get(f"/domains/{claim['id']}", headers=alice.headers)).json()["verified"] is False


async def test_verify_with_a_wrong_token_is_422_showing_what_was_found(client, dns_zone):
    alice = await user(client)
    claim = await claim_domain(client, alice, "alpha.example")
    dns_zone.add("_conduit-verify.alpha.example", "TXT", "conduit-verify=not-the-token")
    dns_zone.add("alpha.example", "MX", f"10 {MX_HOST}")
    body = assert_error(await _verify(client, alice, claim), 422)
    assert "TXT check failed" in body["error"]
    assert "conduit-verify=not-the-token" in body["error"]
    assert (await client.get(f"/domains/{claim['id']}", headers=alice.headers)).json()["verified"] is False


async def test_another_accounts_token_does_not_verify_a_claim(client, dns_zone):
    alice, bob = await users(client, 2)
    mine = await claim_domain(client, alice, "contested.example")
    theirs = await claim_domain(client, bob, "contested.example")
    publish_verification_records(dns_zone, theirs, MX_HOST)
    assert "TXT check failed" in assert_error(await _verify(client, alice, mine), 422)["error"]


WRONG_MX = [
    "10 mx.conduit.email",  # the default host, not the one this server is configured with
    "10 mx.elsewhere.example",
    f"20 {MX_HOST}",
    f"5 {MX_HOST}",
]


async def test_verify_with_a_wrong_mx_is_422_saying_the_mx_check_failed_and_what_was_found(client, dns_zone):
    alice = await user(client)

    async def check(case):
        number, mx_record = case
        claim = await claim_domain(client, alice, f"wrong-mx-{number}.example")
        dns_zone.add(f"_conduit-verify.{claim['name']}", "TXT", claim["verification_token"])
        dns_zone.add(claim["name"], "MX", mx_record)
        body = assert_error(await _verify(client, alice, claim), 422)
        assert "MX check failed" in body["error"], body
        assert mx_record in body["error"], body  # what was found
        assert f"10 {MX_HOST}" in body["error"], body  # what is needed
        assert (await client.get(f"/domains/{claim['id']}", headers=alice.headers)).json()["verified"] is False

    await check_each(enumerate(WRONG_MX), check)


async def test_verify_of_a_domain_without_mx_records_is_422_saying_the_mx_check_failed(client, dns_zone):
    alice = await user(client)
    claim = await claim_domain(client, alice, "alpha.example")
    dns_zone.add("_conduit-verify.alpha.example", "TXT", claim["verification_token"])
    dns_zone.add("alpha.example", "A", "192.0.2.10")  # the name exists, without MX
    body = assert_error(await _verify(client, alice, claim), 422)
    assert "MX check failed" in body["error"]
    assert "no MX records" in body["error"]


async def test_verify_of_a_name_that_does_not_exist_is_422_saying_no_such_domain(client, dns_zone):
    alice = await user(client)
    claim = await claim_domain(client, alice, "nowhere.example")
    body = assert_error(await _verify(client, alice, claim), 422)
    assert "no such domain" in body["error"]
    assert "NXDOMAIN" in body["error"]


async def test_verify_when_the_dns_server_fails_is_422_saying_servfail(client, dns_zone):
    alice = await user(client)

    async def check(case):
        name, failing_name, failed_check = case
        claim = await claim_domain(client, alice, name)
        publish_verification_records(dns_zone, claim, MX_HOST)
        dns_zone.set_behaviour(failing_name, "servfail")
        body = assert_error(await _verify(client, alice, claim), 422)
        assert failed_check in body["error"], body
        assert "SERVFAIL" in body["error"], body
        assert (await client.get(f"/domains/{claim['id']}", headers=alice.headers)).json()["verified"] is False

    await check_each([("txt-fails.example", "_conduit-verify.txt-fails.example", "TXT check failed"),
                      ("mx-fails.example", "mx-fails.example", "MX check failed")], check)


class TestDnsTimeout:
    @pytest.fixture
    def settings_overrides(self, dns_zone) -> dict:
        return {"dns_servers": f"127.0.0.1:{dns_zone.port}", "public_domains": PUBLIC, "mx_host": MX_HOST,
                "dns_timeout": 0.5}

    async def test_verify_when_dns_does_not_answer_is_422_saying_timeout(self, client, dns_zone):
        alice = await user(client)
        claim = await claim_domain(client, alice, "alpha.example")
        publish_verification_records(dns_zone, claim, MX_HOST)
        dns_zone.set_behaviour("_conduit-verify.alpha.example", "timeout")
        body = assert_error(await _verify(client, alice, claim), 422)
        assert "TXT check failed" in body["error"]
        assert "timeout" in body["error"]
        assert (await client.get(f"/domains/{claim['id']}", headers=alice.headers)).json()["verified"] is False


async def test_first_account_to_verify_owns_the_name_and_other_claims_are_removed(client, dns_zone):
    alice, bob, carol = await users(client, 3)
    squatter = await claim_domain(client, alice, "contested.example")
    owner_claim = await claim_domain(client, bob, "contested.example")
    publish_verification_records(dns_zone, owner_claim, MX_HOST)

    assert (await _verify(client, bob, owner_claim)).status_code == 200

    # Alice's unverified claim is gone.
    assert_error(await client.get(f"/domains/{squatter['id']}", headers=alice.headers), 404)
    assert_error(await _verify(client, alice, squatter), 404)
    assert "contested.example" not in {d["name"] for d in await _list(client, alice)}
    # Nobody can claim the name any more, the owner included.
    for someone in (alice, bob, carol):
        response = await client.post("/domains", json={"name": "Contested.Example"}, headers=someone.headers)
        assert_error(response, 409)
    assert (await client.get(f"/domains/{owner_claim['id']}", headers=bob.headers)).json()["verified"] is True


async def test_verify_of_a_claim_whose_name_was_verified_meanwhile_by_another_account_is_409(
        client, dns_zone, engine):
    """The race the unique index settles: Alice's claim was committed just after Bob's verification
    removed the other claims (both requests ran at once), and now Alice verifies too."""
    alice, bob = await users(client, 2)
    late_claim = await claim_domain(client, alice, "contested.example")
    bobs = await claim_domain(client, bob, "contested.example")
    await execute(engine, update(Domain).where(Domain.id == bobs["id"]).values(verified=True))
    publish_verification_records(dns_zone, late_claim, MX_HOST)

    body = assert_error(await _verify(client, alice, late_claim), 409)
    assert "contested.example" in body["error"]
    assert (await client.get(f"/domains/{bobs['id']}", headers=bob.headers)).json()["verified"] is True


async def test_verify_of_a_public_domain_is_409(client, dns_zone):
    alice = await user(client)
    public = await _public_domain(client, alice)
    assert_error(await _verify(client, alice, public), 409)


async def test_verify_of_an_unknown_or_another_accounts_claim_is_404(client, dns_zone):
    alice, bob = await users(client, 2)
    theirs = await claim_domain(client, bob, "beta.example")
    publish_verification_records(dns_zone, theirs, MX_HOST)
    assert_error(await client.post("/domains/dom_doesnotexist/verify", headers=alice.headers), 404)
    assert_error(await _verify(client, alice, theirs), 404)
    assert (await client.get(f"/domains/{theirs['id']}", headers=bob.headers)).json()["verified"] is False


# Get -------------------------------------------------------------------------------------


async def test_get_own_claim_and_public_domain_is_200(client):
    alice = await user(client)
    claim = await claim_domain(client, alice, "alpha.example")
    response = await client.get(f"/domains/{claim['id']}", headers=alice.headers)
    assert response.status_code == 200 and response.json() == claim
    public = await _public_domain(client, alice)
    response = await client.get(f"/domains/{public['id']}", headers=alice.headers)
    assert response.status_code == 200 and response.json() == public


async def test_get_unknown_domain_is_404(client):
    alice = await user(client)
    assert_error(await client.get("/domains/dom_doesnotexist", headers=alice.headers), 404)


async def test_get_another_accounts_domain_is_404(client):
    alice, bob = await users(client, 2)
    theirs = await claim_domain(client, bob, "beta.example")
    assert_error(await client.get(f"/domains/{theirs['id']}", headers=alice.headers), 404)


# Delete ----------------------------------------------------------------------------------


async def test_delete_removes_the_claim(client):
    alice = await user(client)
    claim = await claim_domain(client, alice, "alpha.example")
    response = await client.delete(f"/domains/{claim['id']}", headers=alice.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert_error(await client.get(f"/domains/{claim['id']}", headers=alice.headers), 404)
    assert "alpha.example" not in {d["name"] for d in await _list(client, alice)}
    assert_error(await client.delete(f"/domains/{claim['id']}", headers=alice.headers), 404)


async def test_deleting_a_domain_deletes_its_webhooks_and_frees_the_name(client, dns_zone):
    alice, bob = await users(client, 2)
    domain = await verified_domain(client, alice, dns_zone, "alpha.example", MX_HOST)
    doomed = await create_webhook(client, alice, "inbox@alpha.example")
    catch_all = await create_webhook(client, alice, "*@alpha.example")
    elsewhere = await create_webhook(client, alice, "inbox@shared.example")

    assert (await client.delete(f"/domains/{domain['id']}", headers=alice.headers)).status_code == 204

    for webhook in (doomed, catch_all):
        assert_error(await client.get(f"/webhooks/{webhook['id']}", headers=alice.headers), 404)
    listed = (await client.get("/webhooks", headers=alice.headers)).json()
    assert [w["id"] for w in listed] == [elsewhere["id"]]
    # The name is free again: anyone may claim it, and the address may be registered again.
    again = await claim_domain(client, bob, "alpha.example")
    publish_verification_records(dns_zone, again, MX_HOST)
    assert (await _verify(client, bob, again)).status_code == 200
    await create_webhook(client, bob, "inbox@alpha.example")


async def test_delete_of_another_accounts_domain_is_404_and_keeps_it(client):
    alice, bob = await users(client, 2)
    theirs = await claim_domain(client, bob, "beta.example")
    assert_error(await client.delete(f"/domains/{theirs['id']}", headers=alice.headers), 404)
    assert (await client.get(f"/domains/{theirs['id']}", headers=bob.headers)).status_code == 200


async def test_delete_of_an_unknown_domain_is_404(client):
    alice = await user(client)
    assert_error(await client.delete("/domains/dom_doesnotexist", headers=alice.headers), 404)


async def test_delete_of_a_public_domain_is_409_and_keeps_it(client):
    alice = await user(client)
    public = await _public_domain(client, alice)
    assert_error(await client.delete(f"/domains/{public['id']}", headers=alice.headers), 409)
    assert await _public_domain(client, alice) == public


# Audit log -------------------------------------------------------------------------------


async def test_claim_verification_and_deletion_are_in_the_audit_log(client, dns_zone):
    alice = await user(client)
    claim = await claim_domain(client, alice, "alpha.example")
    publish_verification_records(dns_zone, claim, MX_HOST)
    assert (await _verify(client, alice, claim)).status_code == 200
    assert (await client.delete(f"/domains/{claim['id']}", headers=alice.headers)).status_code == 204

    actions = await audit_actions(client, alice.headers)
    assert actions[:3] == ["domain.deleted", "domain.verified", "domain.claimed"]
    entries = (await client.get("/accounts/me/audit-log", headers=alice.headers)).json()[:3]
    assert all(e["metadata"].get("name") == "alpha.example" for e in entries), entries


async def test_failed_verification_is_not_recorded_as_verified(client, dns_zone):
    alice = await user(client)
    claim = await claim_domain(client, alice, "alpha.example")
    assert_error(await _verify(client, alice, claim), 422)
    assert "domain.verified" not in await audit_actions(client, alice.headers)
