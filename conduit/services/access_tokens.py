"""Access tokens: short-lived JWTs (HS256, algorithm pinned) bound to the account's token generation.

Bumping ``Account.token_generation`` (password change, sign-out everywhere) kills every access
token issued before, at once. API tokens are opaque ``cdt_`` strings, so the two never mix up.
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
