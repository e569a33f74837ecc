"""Secrets at rest: after a user has created every kind of secret through the API, no plaintext
secret is anywhere in the database; passwords are Argon2id hashes, tokens and codes SHA-256
hashes, TOTP and webhook secrets Fernet tokens under a key derived from CONDUIT_SECRET_KEY."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from argon2 import PasswordHasher
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select

from conduit.storage.base import Base
from conduit.storage.models import Account, ApiToken, OneTimeToken, RefreshToken, Webhook
from tests.conftest import TEST_SECRET_KEY
from tests.factories import PASSWORD, TotpCodes, create_webhook, user

PUBLIC = "shared.example"
WEBHOOK_SECRET = "whsec_" + "S3cretWebhookKey" * 3


@pytest.fixture
def settings_overrides(mail_sink) -> dict:
    return {"smtp_relay_url": mail_sink.url, "public_domains": PUBLIC, "allow_private_targets": True}


def _fernet(secret_key: str) -> Fernet:
    """The documented scheme: HKDF-SHA256 (salt "conduit", info "encryption-at-rest") → Fernet."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"conduit", info=b"encryption-at-rest").derive(
        secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


async def _everything_stored(engine) -> str:
    """Every value of every row of every table, as one text."""
    parts: list[str] = []
    async with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in (await conn.execute(select(table))).all():
                parts.extend(str(value) for value in row)
    return "\n".join(parts)


async def _rows(engine, model, **where):
    async with engine.connect() as conn:
        query = select(model.__table__)
        for column, value in where.items():
            query = query.where(getattr(model.__table__.c, column) == value)
        return (await conn.execute(query)).mappings().all()


async def test_no_secret_is_stored_in_plaintext(client, engine, mail_sink):
    me = await user(client)
    sha = lambda s: hashlib.sha256(s.encode()).hexdigest()  # noqa: E731

    api_token = (await client.post("/accounts/me/api-tokens", json={"name": "ci"}, headers=me.headers)).json()["token"]
    webhook = await create_webhook(client, me, f"box@{PUBLIC}", "http://127.0.0.1:9/in", secret=WEBHOOK_SECRET)
    setup = (await client.post("/accounts/me/2fa/setup", headers=me.headers)).json()
    codes = TotpCodes(setup["secret"])
    enabled = await client.post("/accounts/me/2fa/enable", json={"code": codes.next()}, headers=me.headers)
    assert enabled.status_code == 200, enabled.text
    backup_codes = enabled.json()["backup_codes"]
    assert (await client.post("/accounts/me/password-reset", json={"email": me.email})).status_code == 202
    (mail,) = await mail_sink.wait_for(1)
    reset_token = re.search(r"prt_[A-Za-z0-9_-]+", mail.get_content()).group(0)
    challenge = (await client.post("/sessions", json={"email": me.email, "password": PASSWORD})).json()["totp_token"]

    plaintexts = {"account password": PASSWORD, "refresh token": me.refresh_token, "API token": api_token,
                  "webhook secret": webhook["secret"], "TOTP secret": setup["secret"], "reset token": reset_token,
                  "TOTP challenge token": challenge, **{f"backup code {i}": c for i, c in enumerate(backup_codes)}}
    stored = await _everything_stored(engine)
    leaked = [name for name, value in plaintexts.items() if value in stored or value.replace("-", "") in stored]
    assert leaked == []

    (account,) = await _rows(engine, Account, id=me.id)
    assert account["password_hash"].startswith("$argon2id$")
    assert PasswordHasher().verify(account["password_hash"], PASSWORD)
    assert _fernet(TEST_SECRET_KEY).decrypt(account["totp_secret"].encode()).decode() == setup["secret"]
    with pytest.raises(InvalidToken):
        _fernet("another-secret-key-0123456789-abcdefghijklmnop").decrypt(account["totp_secret"].encode())

    (hook,) = await _rows(engine, Webhook, id=webhook["id"])
    assert _fernet(TEST_SECRET_KEY).decrypt(hook["secret_encrypted"].encode()).decode() == WEBHOOK_SECRET

    assert sha(api_token) in {r["token_hash"] for r in await _rows(engine, ApiToken, account_id=me.id)}
    assert sha(me.refresh_token) in {r["token_hash"] for r in await _rows(engine, RefreshToken, account_id=me.id)}
    one_time = {r["token_hash"] for r in await _rows(engine, OneTimeToken, account_id=me.id)}
    assert sha(reset_token) in one_time
    assert sha(challenge) in one_time
    # Backup codes are compared without their dashes, case-insensitively: one of the spellings is hashed.
    for code in backup_codes:
        spellings = {code, code.replace("-", ""), code.lower(), code.replace("-", "").lower()}
        assert one_time & {sha(s) for s in spellings}, code
