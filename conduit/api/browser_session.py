"""The dashboard's sign-in: the refresh token in an HttpOnly cookie instead of the JSON body.

A request opts in with ``X-Conduit-Browser: 1`` on the session routes. The cookie is HttpOnly
(no script, injected or not, can read it), SameSite=Strict, limited to ``/api/v1/sessions`` and
Secure when the API is reached over https. The access token stays in the page's memory.

Why a custom header: a cross-site form cannot send one, and a cross-site script can send one
only after a CORS preflight, which Conduit refuses for this header. So a refresh by cookie
always comes from a page of this origin, and SameSite=Strict keeps the cookie off every
cross-site request anyway. Without the header the cookie is ignored and the API behaves as
the reference says.
"""

from __future__ import annotations

from fastapi import Request, Response

from conduit.config import Settings
from conduit.services.sessions import SessionTokens

HEADER = "X-Conduit-Browser"
COOKIE = "conduit_refresh"
COOKIE_PATH = "/api/v1/sessions"


def opted_in(request: Request) -> bool:
    return request.headers.get(HEADER) == "1"


def cookie_token(request: Request) -> str | None:
    """The refresh token of the cookie, only for a request that opted in (see the module doc)."""
    if not opted_in(request):
        return None
    return request.cookies.get(COOKIE) or None


def _secure(request: Request, settings: Settings) -> bool:
    """Secure when this request came over https, or when the public URL is https (a TLS proxy)."""
    return request.url.scheme == "https" or settings.public_base_url.startswith("https://")


def hand_over(tokens: SessionTokens, request: Request, response: Response, settings: Settings) -> SessionTokens:
    """Put the refresh token in the cookie and leave it out of the body (an empty string)."""
    response.set_cookie(COOKIE, tokens.refresh_token, max_age=settings.refresh_token_ttl, path=COOKIE_PATH,
                        secure=_secure(request, settings), httponly=True, samesite="strict")
    return SessionTokens(access_token=tokens.access_token, refresh_token="", expires_in=tokens.expires_in)


def clear(request: Request, response: Response, settings: Settings) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, secure=_secure(request, settings), httponly=True,
                           samesite="strict")
