"""Keys derived from CONDUIT_SECRET_KEY, password hashing, token hashing and encryption at rest.

Random secrets (refresh, API, reset tokens, TOTP challenges, backup codes) carry at least
80 bits of entropy, so a plain SHA-256 is enough to store them: nothing to brute-force.
Passwords are low-entropy and get Argon2id. Secrets Conduit must read back (TOTP seeds,
later webhook secrets) are encrypted with Fernet under a key derived with HKDF.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_hasher = PasswordHasher()  # argon2-cffi defaults: Argon2id, RFC 9106 "low memory" profile
# Verified against when an email is unknown, so both paths cost one Argon2 verification.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def derive_key(secret_key: str, purpose: str) -> bytes:
    """A 32-byte key for one purpose; keys for different purposes are independent."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"conduit", info=purpose.encode())
    return hkdf.derive(secret_key.encode())


class Crypto:
    """Everything keyed by the instance secret, built once from the settings."""

    def __init__(self, secret_key: str) -> None:
        self.jwt_key = derive_key(secret_key, "access-token-signing")
        self._fernet = Fernet(base64.urlsafe_b64encode(derive_key(secret_key, "encryption-at-rest")))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise ValueError("stored secret cannot be decrypted with CONDUIT_SECRET_KEY") from None


def random_token(prefix: str, nbytes: int = 32) -> str:
    return f"{prefix}{secrets.token_urlsafe(nbytes)}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


async def hash_password(password: str) -> str:
    """Argon2id in a thread: it is deliberately slow and must not block the event loop."""
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True when it matches; an unknown account (None) still costs one verification."""
    return await asyncio.to_thread(_verify, password_hash or _DUMMY_HASH, password, password_hash is not None)


def _verify(password_hash: str, password: str, real: bool) -> bool:
    try:
        return _hasher.verify(password_hash, password) and real
    except (VerificationError, InvalidHashError):
        return False
