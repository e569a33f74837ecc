"""Rotating CONDUIT_SECRET_KEY: a TOTP secret and a webhook signing secret written under key A keep
working when Conduit restarts with key B and A in CONDUIT_PREVIOUS_SECRET_KEYS, `conduit
rotate-secrets` re-encrypts them under B, and then B alone is enough. With B alone *before* the
rotation, the API says so (500 secret_key_mismatch) instead of answering wrongly, and the worker
signs nothing with a wrong secret. Access tokens signed with A are refused after the change;
refresh tokens (stored as hashes) carry the session over."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pyotp
import pytest
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine

from conduit.api.app import create_app
from conduit.config import ConfigError, Settings, load_settings
from conduit.crypto import Crypto
from conduit.services.key_rotation import rotate_secrets
from conduit.storage.database import open_database
from conduit.storage.models import Account, DeliveryJob, Webhook
from tests.conftest import CLIENT_IP
from tests.factories import (
    PASSWORD,
    TotpCodes,
    assert_error,
    bearer,
    create_webhook,
    user,
)
from tests.support.conversation import _eventually, _mail, _send
from tests.support.pipeline import free_port, running
from tests.support.receiver import Receiver, verify_signature

KEY_A = "key-A-0123456789-abcdefghijklmnopqrstuvwxyz-AAAA"
KEY_B = "key-B-0123456789-abcdefghijklmnopqrstuvwxyz-BBBB"
KEY_C = "key-C-0123456789-abcdefghijklmnopqrstuvwxyz-CCCC"
PUBLIC = "rotation.example"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"rotate me, keep me" * 2).decode()


@dataclass
class Instance:
    """One start of Conduit: its settings and a client on its API (in-process)."""

    settings: Settings
    client: httpx.AsyncClient


def _settings(database_url: str, key: str, previous: str = "") -> Settings:
    return load_settings(database_url=database_url, secret_key=key, previous_secret_keys=previous,
                         public_domains=PUBLIC, allow_private_targets=True, inbound_auth_checks=False,
                         smtp_port=free_port(), delivery_timeout=1.0, delivery_lease=6,
                         retry_schedule="0,1")


@asynccontextmanager
async def conduit(database_url: str, key: str, previous: str = "") -> AsyncIterator[Instance]:
    """Conduit started with these keys: the API in-process, SMTP and the worker in this loop."""
    settings = _settings(database_url, key, previous)
    database = open_database(settings)
    app = create_app(settings, database)
    transport = httpx.ASGITransport(app=app, client=(CLIENT_IP, 50000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/api/v1") as client:
            async with running(settings):
                yield Instance(settings, client)
    finally:
        await app.state.context.http.close()
        await app.state.context.renders.close()
        await database.dispose()


def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"conduit", info=b"encryption-at-rest").derive(
        secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _decrypts_with(secret_key: str, token: str) -> bool:
    try:
        _fernet(secret_key).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


async def _stored(database_url: str) -> list[str]:
    """Every encrypted value in the database."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            secrets = list((await conn.execute(select(Webhook.secret_encrypted))).scalars())
            totp = (await conn.execute(select(Account.totp_secret).where(Account.totp_secret.is_not(None)))).scalars()
            return secrets + list(totp)
    finally:
        await engine.dispose()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def _sign_in_with_totp(client: httpx.AsyncClient, email: str, code: str) -> httpx.Response:
    challenge = await client.post("/sessions", json={"email": email, "password": PASSWORD})
    assert challenge.status_code == 200, challenge.text
    return await client.post("/sessions/2fa", json={"totp_token": challenge.json()["totp_token"], "code": code})


async def _simulate_and_verify(client: httpx.AsyncClient, headers: dict, hook_id: str, receiver: Receiver) -> None:
    """A signed POST reaches the receiver and verifies with the secret the owner was given under key A."""
    before = len(receiver.received)
    response = await client.post(f"/webhooks/{hook_id}/simulate", headers=headers, json={"subject": "after"})
    assert (response.status_code, response.json()["http_status"]) == (200, 200), response.text
    assert verify_signature(WEBHOOK_SECRET, receiver.received[before])["subject"] == "after"


async def test_rotating_the_key_keeps_totp_and_webhook_secrets_working(database_url, receiver):
    # Key A: a user with TOTP and a webhook whose signing secret they chose.
    async with conduit(database_url, KEY_A) as a:
        me = await user(a.client)
        hook = await create_webhook(a.client, me, f"box@{PUBLIC}", receiver.url, secret=WEBHOOK_SECRET)
        setup = (await a.client.post("/accounts/me/2fa/setup", headers=me.headers)).json()
        codes = TotpCodes(setup["secret"])
        enabled = await a.client.post("/accounts/me/2fa/enable", json={"code": codes.next()}, headers=me.headers)
        assert enabled.status_code == 200, enabled.text
    assert all(_decrypts_with(KEY_A, value) for value in await _stored(database_url))

    # Key B alone, before rotation: clear failures, never a wrong answer.
    async with conduit(database_url, KEY_B) as b:
        old_token = await b.client.get("/accounts/me", headers=me.headers)
        assert_error(old_token, 401)  # access tokens signed with A are refused (decision: no forgeable overlap)
        refreshed = await b.client.post("/sessions/refresh", json={"refresh_token": me.refresh_token})
        assert refreshed.status_code == 200, refreshed.text  # refresh tokens are hashes: the session continues
        headers = bearer(refreshed.json()["access_token"])
        me.refresh_token = refreshed.json()["refresh_token"]
        for path in (f"/webhooks/{hook['id']}", "/webhooks"):
            body = assert_error(await b.client.get(path, headers=headers), 500, "secret_key_mismatch")
            assert "CONDUIT_PREVIOUS_SECRET_KEYS" in body["error"]
        simulated = await b.client.post(f"/webhooks/{hook['id']}/simulate", headers=headers, json={})
        assert_error(simulated, 500, "secret_key_mismatch")
        # The right code for this moment is not called wrong: the server says it cannot check it.
        right_now = pyotp.TOTP(setup["secret"]).now()
        assert_error(await _sign_in_with_totp(b.client, me.email, right_now), 500, "secret_key_mismatch")
        # Mail arriving now is accepted and held by the worker, not signed with a wrong secret.
        await _send(b.settings, _mail(f"box@{PUBLIC}", subject="held"))
        await _eventually(lambda: _queue_was_claimed(database_url))
        assert receiver.received == []
        logs = await b.client.get(f"/webhooks/{hook['id']}/logs", headers=headers)
        assert (logs.status_code, logs.json()) == (200, [])  # nothing was recorded as the webhook's failure

    # Key B with A as a previous key: everything works, the secrets are the same.
    async with conduit(database_url, KEY_B, previous=KEY_A) as ba:
        got = await ba.client.get(f"/webhooks/{hook['id']}", headers=headers)
        assert (got.status_code, got.json()["secret"]) == (200, WEBHOOK_SECRET)
        await _simulate_and_verify(ba.client, headers, hook["id"], receiver)
        signed_in = await _sign_in_with_totp(ba.client, me.email, codes.next())
        assert signed_in.status_code == 200, signed_in.text
        # The held mail is delivered once its lease runs out, signed with the same secret.
        (held,) = [r for r in await receiver.wait_for(2) if r.json().get("subject") == "held"]
        assert verify_signature(WEBHOOK_SECRET, held)["subject"] == "held"

    # The command, as an operator runs it: with the new key and the old one listed.
    result = subprocess.run([sys.executable, "-m", "conduit", "rotate-secrets", "--batch-size", "1"],
                            env={**os.environ, "CONDUIT_DATABASE_URL": database_url, "CONDUIT_SECRET_KEY": KEY_B,
                                 "CONDUIT_PREVIOUS_SECRET_KEYS": KEY_A, "CONDUIT_LOG_LEVEL": "WARNING"},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "accounts.totp_secret: re-encrypted 1, already under the current key 0" in result.stdout
    assert "webhooks.secret_encrypted: re-encrypted 1, already under the current key 0" in result.stdout
    assert "CONDUIT_PREVIOUS_SECRET_KEYS can be emptied" in result.stdout
    stored = await _stored(database_url)
    assert len(stored) == 2
    assert all(_decrypts_with(KEY_B, v) and not _decrypts_with(KEY_A, v) for v in stored)

    # Key B alone, after rotation: everything still works.
    async with conduit(database_url, KEY_B) as b:
        got = await b.client.get(f"/webhooks/{hook['id']}", headers=headers)
        assert (got.status_code, got.json()["secret"]) == (200, WEBHOOK_SECRET)
        await _simulate_and_verify(b.client, headers, hook["id"], receiver)
        signed_in = await _sign_in_with_totp(b.client, me.email, codes.next())
        assert signed_in.status_code == 200, signed_in.text


async def _queue_was_claimed(database_url: str) -> bool:
    """The worker has taken the job (and failed to sign it): attempts counted, lease held."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return bool((await conn.execute(select(DeliveryJob.id).where(DeliveryJob.attempts > 0))).first())
    finally:
        await engine.dispose()


async def test_rotation_runs_in_batches_is_idempotent_and_reports_what_it_cannot_decrypt(database_url):
    async with conduit(database_url, KEY_A) as a:
        me = await user(a.client)
        hooks = [await create_webhook(a.client, me, f"box{n}@{PUBLIC}", "http://127.0.0.1:9/in") for n in range(5)]
        assert (await a.client.post("/accounts/me/2fa/setup", headers=me.headers)).status_code == 200
        before = {h["id"]: h["updated_at"] for h in (await a.client.get("/webhooks", headers=me.headers)).json()}
    engine = create_async_engine(database_url)
    database = open_database(_settings(database_url, KEY_B))
    sessions = database.sessions
    try:
        # One secret was written under a key nobody configured: it must be reported, not touched.
        stray = _fernet(KEY_C).encrypt(b"whsec_stray").decode()
        async with engine.begin() as conn:
            await conn.execute(update(Webhook).where(Webhook.id == hooks[0]["id"]).values(secret_encrypted=stray))

        dry = await rotate_secrets(sessions, Crypto(KEY_B, (KEY_A,)), batch_size=2, dry_run=True)
        assert (dry.rotated, dry.current, dry.undecryptable) == (5, 0, 1)
        assert all(_decrypts_with(KEY_A, v) for v in await _stored(database_url) if v != stray)

        first = await rotate_secrets(sessions, Crypto(KEY_B, (KEY_A,)), batch_size=2)
        by_column = {c.column: c for c in first.columns}
        assert (by_column["webhooks.secret_encrypted"].rotated, by_column["accounts.totp_secret"].rotated) == (4, 1)
        assert by_column["webhooks.secret_encrypted"].undecryptable == [hooks[0]["id"]]
        assert not first.complete

        again = await rotate_secrets(sessions, Crypto(KEY_B, (KEY_A,)), batch_size=2)
        assert (again.rotated, again.current, again.undecryptable, again.changed) == (0, 5, 1, 0)
        stored = await _stored(database_url)
        assert stray in stored
        assert all(_decrypts_with(KEY_B, v) for v in stored if v != stray)
    finally:
        await database.dispose()
        await engine.dispose()

    async with conduit(database_url, KEY_B) as b:
        signed_in = await b.client.post("/sessions", json={"email": me.email, "password": PASSWORD})
        headers = bearer(signed_in.json()["access_token"])
        for hook in hooks[1:]:
            got = (await b.client.get(f"/webhooks/{hook['id']}", headers=headers)).json()
            assert got["secret"] == hook["secret"]
            assert got["updated_at"] == before[hook["id"]]  # re-encrypting is not a change the owner made


def test_previous_keys_setting_is_parsed_and_validated():
    settings = load_settings(secret_key=KEY_B, previous_secret_keys=f" {KEY_A} ,{KEY_C}, ")
    assert settings.previous_secret_key_list == (KEY_A, KEY_C)
    assert load_settings(secret_key=KEY_B).previous_secret_key_list == ()
    with pytest.raises(ConfigError, match=r"^invalid setting CONDUIT_PREVIOUS_SECRET_KEYS: .*at least 32"):
        load_settings(secret_key=KEY_B, previous_secret_keys=f"{KEY_A},too-short")
