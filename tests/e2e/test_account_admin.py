"""The operator's `conduit accounts` (run as a real subprocess against the test's database, SQLite
and PostgreSQL) and what a disabled account means for its owner: no sign-in, every token refused
at once, mail to its webhooks refused at RCPT with 550 5.2.1. And CONDUIT_SIGNUP=closed."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from conduit.smtp import replies
from tests.e2e.test_route_cache import ACCEPTED, PUBLIC, _send
from tests.factories import PASSWORD, assert_error, bearer, create_webhook, user
from tests.support.pipeline import free_port, running

KEY = "cli-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
def settings_overrides(dns_zone) -> dict:
    # No route cache: the CLI is another process, and what it changes is seen by the next RCPT.
    return {"smtp_port": free_port(), "public_domains": PUBLIC, "allow_private_targets": True,
            "inbound_auth_checks": False, "dns_servers": f"127.0.0.1:{dns_zone.port}", "route_cache_seconds": 0}


def conduit(settings, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUIT_")}
    env.update(CONDUIT_DATABASE_URL=settings.database_url, CONDUIT_SECRET_KEY=settings.secret_key,
               CONDUIT_LOG_LEVEL="WARNING")
    return subprocess.run([sys.executable, "-m", "conduit", *args], input=stdin, env=env, capture_output=True,
                          check=False, text=True, timeout=120)


def listing(settings) -> dict[str, list[str]]:
    """`conduit accounts list` by email: [id, email, created, 2fa, disabled]."""
    done = conduit(settings, "accounts", "list")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["ID", "EMAIL", "CREATED", "2FA", "DISABLED"]
    return {row.split()[1]: row.split() for row in rows}


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/sessions", json={"email": email, "password": password})


async def test_create_and_list_need_no_api_and_take_the_password_from_stdin(settings, client):
    done = conduit(settings, "accounts", "create", "Operator@Example.com", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    row = listing(settings)["operator@example.com"]
    assert row[0].startswith("acc_") and row[0] in done.stdout
    assert row[3:] == ["off", "no"]
    assert (await sign_in(client, "operator@example.com")).status_code == 200
    tokens = (await sign_in(client, "operator@example.com")).json()
    audit = (await client.get("/accounts/me/audit-log", headers=bearer(tokens["access_token"]))).json()
    created = next(e for e in audit if e["action"] == "account.created")
    assert created["metadata"] == {"actor": "cli"}


async def test_the_password_is_never_an_argument(settings):
    done = conduit(settings, "accounts", "create", "x@example.com", PASSWORD)
    assert done.returncode == 2 and "unexpected extra argument" in done.stderr
    done = conduit(settings, "accounts", "create", "x@example.com", stdin="")
    assert done.returncode == 2 and "standard input" in done.stderr
    assert "x@example.com" not in listing(settings)


async def test_bad_input_is_one_line_and_changes_nothing(settings, client):
    alice = await user(client)
    assert conduit(settings, "accounts", "create", "not-an-address", stdin=PASSWORD).stderr.startswith(
        "conduit: email is not a valid address")
    done = conduit(settings, "accounts", "create", alice.email, stdin=PASSWORD)
    assert (done.returncode, done.stderr) == (1, "conduit: an account with this email is already registered\n")
    assert conduit(settings, "accounts", "create", "y@example.com", stdin="short").returncode == 1
    done = conduit(settings, "accounts", "disable", "nobody@example.com")
    assert (done.returncode, done.stderr) == (1, "conduit: no account has the id or email 'nobody@example.com'\n")
    assert sorted(listing(settings)) == [alice.email]


async def test_a_disabled_account_is_refused_everywhere_at_once(settings, client, client_from):
    alice = await user(client)
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", "http://127.0.0.1:9/")
    api_token = (await client.post("/accounts/me/api-tokens", json={"name": "ci"}, headers=alice.headers)).json()
    async with running(settings, frozenset({"smtp"})):
        assert (await _send(settings, f"box@{PUBLIC}"))[0] == ACCEPTED

        done = conduit(settings, "accounts", "disable", alice.email)
        assert done.returncode == 0 and "disabled account" in done.stdout, done.stderr
        assert listing(settings)[alice.email][4] != "no"

        # Mail: refused at RCPT as an inactive mailbox, and the webhook itself is left as it was.
        assert (await _send(settings, f"box@{PUBLIC}"))[1] == str(replies.INACTIVE_RECIPIENT)
        assert (await _send(settings, f"box+tag@{PUBLIC}"))[1] == str(replies.INACTIVE_RECIPIENT)
        # Tokens: the access token, the API token, the refresh token.
        for token in (alice.access_token, api_token["token"]):
            response = await client.get("/accounts/me", headers=bearer(token))
            assert_error(response, 401, "account_disabled")
            assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
        assert_error(await client.post("/sessions/refresh", json={"refresh_token": alice.refresh_token}), 401)
        # Sign-in: the right password learns why; a wrong one learns nothing more than before.
        assert_error(await sign_in(client, alice.email), 401, "account_disabled")
        assert_error(await sign_in(client, alice.email, "wrong password!"), 401, "invalid_credentials")

        done = conduit(settings, "accounts", "enable", alice.id)
        assert done.returncode == 0 and "enabled account" in done.stdout, done.stderr
        assert (await _send(settings, f"box@{PUBLIC}"))[0] == ACCEPTED
    # The API token works again; the sessions the disabling ended stay ended.
    assert (await client.get("/accounts/me", headers=bearer(api_token["token"]))).status_code == 200
    assert_error(await client.get("/accounts/me", headers=alice.headers), 401)
    tokens = (await sign_in(client, alice.email)).json()
    audit = (await client.get("/accounts/me/audit-log", headers=bearer(tokens["access_token"]))).json()
    by_cli = [(e["action"], e["metadata"]) for e in audit if e["metadata"].get("actor") == "cli"]
    assert by_cli == [("account.enabled", {"actor": "cli"}), ("account.disabled", {"actor": "cli"})]
    assert (await client.get(f"/webhooks/{hook['id']}", headers=bearer(tokens["access_token"]))).json()["active"]


async def test_disabling_twice_and_enabling_an_enabled_account_say_so(settings, client):
    alice = await user(client)
    assert "disabled account" in conduit(settings, "accounts", "disable", alice.email).stdout
    assert "already disabled" in conduit(settings, "accounts", "disable", alice.email).stdout
    assert "enabled account" in conduit(settings, "accounts", "enable", alice.email).stdout
    assert "already enabled" in conduit(settings, "accounts", "enable", alice.email).stdout


async def test_delete_removes_the_account_and_its_mail_routes(settings, client):
    alice, bob = await user(client), await user(client)
    await create_webhook(client, alice, f"box@{PUBLIC}", "http://127.0.0.1:9/")
    refused = conduit(settings, "accounts", "delete", alice.email)  # no terminal, no --yes: nothing happens
    assert refused.returncode == 1 and alice.email in listing(settings)
    done = conduit(settings, "accounts", "delete", alice.email, "--yes")
    assert done.returncode == 0 and alice.id in done.stdout, done.stderr
    assert "event=account_deleted actor=cli" in done.stderr
    assert sorted(listing(settings)) == [bob.email]
    assert_error(await sign_in(client, alice.email), 401, "invalid_credentials")
    async with running(settings, frozenset({"smtp"})):
        assert (await _send(settings, f"box@{PUBLIC}"))[1] == str(replies.UNKNOWN_RECIPIENT)


@pytest.mark.parametrize("settings_overrides", [{"signup": "closed"}])
async def test_closed_sign_up_refuses_everyone_without_saying_who_exists(settings, client):
    done = conduit(settings, "accounts", "create", "first@example.com", stdin=PASSWORD)
    assert done.returncode == 0, done.stderr
    for email in ("first@example.com", "new@example.com", "not an address"):
        body = assert_error(await client.post("/accounts", json={"email": email, "password": PASSWORD}), 403,
                            "signup_closed")
        assert "operator" in body["error"]
    assert sorted(listing(settings)) == ["first@example.com"]
    assert (await sign_in(client, "first@example.com")).status_code == 200
