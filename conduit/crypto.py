"""Keys derived from CONDUIT_SECRET_KEY, password hashing, token hashing and encryption at rest.

Random secrets (refresh, API, reset tokens, TOTP challenges, backup codes) carry at least
80 bits of entropy, so a plain SHA-256 is enough to store them: nothing to brute-force.
Passwords are low-entropy and get Argon2id. Secrets Conduit must read back (TOTP seeds,
webhook signing secrets) are encrypted with Fernet under a key derived with HKDF.

Key rotation: values encrypted under a key listed in CONDUIT_PREVIOUS_SECRET_KEYS still decrypt
(MultiFernet tries the current key first), and ``conduit rotate-secrets`` re-encrypts them under
the current key. Access tokens are signed and verified with the current key only: a token signed
with an old key is refused (whoever knows an old key could forge tokens), and clients continue
with their refresh token, which is stored as a hash and does not depend on any key.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import logging
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from conduit.errors import ConduitError

log = logging.getLogger("conduit.crypto")

_hasher = PasswordHasher()  # argon2-cffi defaults: Argon2id, RFC 9106 "low memory" profile


@functools.cache
def _dummy_hash() -> str:
    """Verified against when an email is unknown, so both paths cost one Argon2 verification.
    Made on first use, not at import: processes that never check a password skip the cost."""
    return _hasher.hash(secrets.token_urlsafe(16))


def derive_key(secret_key: str, purpose: str) -> bytes:
    """A 32-byte key for one purpose; keys for different purposes are independent."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"conduit", info=purpose.encode())
    return hkdf.derive(secret_key.encode())


class SecretKeyMismatch(ConduitError, ValueError):
    """A stored secret decrypts under none of the configured keys: the operator changed
    CONDUIT_SECRET_KEY without listing the old key in CONDUIT_PREVIOUS_SECRET_KEYS.

    A server error (500) with its own code, never a wrong answer such as "wrong TOTP code".
    """

    status = 500
    code = "secret_key_mismatch"


def _fernet(secret_key: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(derive_key(secret_key, "encryption-at-rest")))


class Crypto:
    """Everything keyed by the instance secret, built once from the settings.

    ``previous_keys`` (CONDUIT_PREVIOUS_SECRET_KEYS) are only ever used to decrypt.
    """

    def __init__(self, secret_key: str, previous_keys: tuple[str, ...] | list[str] = ()) -> None:
        self.jwt_key = derive_key(secret_key, "access-token-signing")
        self._current = _fernet(secret_key)
        self._fernet = MultiFernet([self._current, *(_fernet(k) for k in previous_keys if k != secret_key)])

    def encrypt(self, plaintext: str) -> str:
        return self._current.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise self._mismatch() from None

    def is_current(self, ciphertext: str) -> bool:
        """Whether the value is encrypted under the current key (nothing to rotate)."""
        try:
            self._current.decrypt(ciphertext.encode())
        except InvalidToken:
            return False
        return True

    def reencrypt(self, ciphertext: str) -> str:
        """The same plaintext under the current key; SecretKeyMismatch if no key decrypts it."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise self._mismatch() from None

    @staticmethod
    def _mismatch() -> SecretKeyMismatch:
        log.error("event=secret_undecryptable hint=list_the_old_key_in_CONDUIT_PREVIOUS_SECRET_KEYS")
        return SecretKeyMismatch(
            "a stored secret cannot be decrypted with the server's CONDUIT_SECRET_KEY: the key was changed "
            "without listing the old one in CONDUIT_PREVIOUS_SECRET_KEYS (see 'Rotating the secret key')")


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
    return await asyncio.to_thread(_verify, password_hash or _dummy_hash(), password, password_hash is not None)


def _verify(password_hash: str, password: str, real: bool) -> bool:
    try:
        return _hasher.verify(password_hash, password) and real
    except (VerificationError, InvalidHashError):
        return False
