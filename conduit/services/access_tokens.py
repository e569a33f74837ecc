"""Access tokens: short-lived JWTs (HS256, algorithm pinned) bound to the account's token generation.

Bumping ``Account.token_generation`` (password change, sign-out everywhere) kills every access
token issued before, at once. API tokens are opaque ``cdt_`` strings, so the two never mix up.

Key rotation: tokens are verified with the key derived from the current CONDUIT_SECRET_KEY only,
never with CONDUIT_PREVIOUS_SECRET_KEYS. A key is usually rotated because it may have leaked,
and whoever holds it can forge a token with any subject and expiry, so "accept old tokens until
they expire" would mean "accept forgeries while the old key is listed". After a key change every
access token gets 401 once; clients refresh (refresh tokens are stored as hashes, keyless) and
carry on.
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt

from conduit.clock import now

ALGORITHM = "HS256"
AUDIENCE = "conduit-api"


@dataclass(frozen=True)
class AccessClaims:
    account_id: str
    generation: int


def issue(key: bytes, *, account_id: str, generation: int, ttl: int) -> str:
    issued = now()
    claims = {"sub": account_id, "gen": generation, "aud": AUDIENCE, "typ": "access",
              "iat": int(issued.timestamp()), "exp": int(issued.timestamp()) + ttl}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify(key: bytes, token: str) -> AccessClaims | None:
    """The claims of a valid, unexpired access token, else None."""
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=AUDIENCE,
                            options={"require": ["sub", "exp", "iat", "aud", "gen"]})
    except jwt.PyJWTError:
        return None
    if claims.get("typ") != "access" or not isinstance(claims.get("gen"), int):
        return None
    return AccessClaims(account_id=str(claims["sub"]), generation=claims["gen"])
