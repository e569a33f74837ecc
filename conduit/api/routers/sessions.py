from __future__ import annotations

from fastapi import APIRouter, Request, Response

from conduit.api import browser_session
from conduit.api.deps import ClientIP, ContextDep, CurrentAccount, SessionDep
from conduit.api.routers import errors
from conduit.api.schemas.identity import (
    CompleteTOTPSessionRequest,
    CreateSessionRequest,
    DeleteSessionRequest,
    RefreshSessionRequest,
    SessionResponse,
    TOTPChallengeResponse,
)
from conduit.errors import Invalid
from conduit.services import sessions

router = APIRouter(prefix="/sessions", tags=["Sessions"])

BROWSER_NOTE = (" With the header `X-Conduit-Browser: 1` (the dashboard) the refresh token is set in an HttpOnly "
                "cookie instead and the body's `refresh_token` is empty.")


@router.post("", operation_id="createSession",
             description=("Checks the email and password. Without two-factor authentication the answer is a session "
                          "(`access_token` for the `Authorization: Bearer` header, `refresh_token` to renew it); with "
                          "it, a TOTP challenge to complete with POST /sessions/2fa. An unknown email and a wrong "
                          "password get the same 401; repeated failures per email or client IP get 429 with "
                          "`Retry-After`. A disabled account gets 401 `account_disabled` once its password is "
                          "right." + BROWSER_NOTE),
             summary="Sign in",
             response_model=SessionResponse | TOTPChallengeResponse, responses=errors(401, 429),
             response_description="Either a full session (access_token + refresh_token) or a TOTP challenge "
                                  "when 2FA is enabled on the account.")
async def create_session(body: CreateSessionRequest, db: SessionDep, context: ContextDep, ip: ClientIP,
                         request: Request, response: Response) -> sessions.SessionTokens | sessions.TotpChallenge:
    result = await sessions.sign_in(db, email=body.email, password=body.password, ip=ip,
                                    settings=context.settings, crypto=context.crypto)
    if isinstance(result, sessions.SessionTokens) and browser_session.opted_in(request):
        return browser_session.hand_over(result, request, response, context.settings)
    return result


@router.delete("", operation_id="deleteSession",
             description=("Ends the sign-in the given `refresh_token` belongs to. Without a body, signs out "
                          "everywhere: every refresh token of the account is revoked and every access token stops "
                          "working at once. With `X-Conduit-Browser: 1` and no body, the refresh-token cookie stands "
                          "in for the body (this browser's sign-in). The cookie is cleared whenever it is sent."),
             summary="Sign out", status_code=204,
               responses=errors(401))
async def delete_session(account: CurrentAccount, db: SessionDep, ip: ClientIP, context: ContextDep,
                         request: Request, body: DeleteSessionRequest | None = None) -> Response:
    refresh_token = body.refresh_token if body else browser_session.cookie_token(request)
    await sessions.sign_out(db, account, refresh_token=refresh_token, ip=ip)
    answer = Response(status_code=204)
    if browser_session.COOKIE in request.cookies:
        browser_session.clear(request, answer, context.settings)
    return answer


@router.post("/2fa", operation_id="completeTOTPSession",
             description=("Exchanges the challenge token of POST /sessions and a code of the authenticator app (or an "
                          "unused backup code) for a session. Each code is accepted once." + BROWSER_NOTE),
             summary="Complete sign-in with TOTP code",
             response_model=SessionResponse, responses=errors(401, 429))
async def complete_totp_session(body: CompleteTOTPSessionRequest, db: SessionDep, context: ContextDep,
                                ip: ClientIP, request: Request, response: Response) -> sessions.SessionTokens:
    tokens = await sessions.complete_totp(db, totp_token=body.totp_token, code=body.code, ip=ip,
                                          settings=context.settings, crypto=context.crypto)
    if browser_session.opted_in(request):
        return browser_session.hand_over(tokens, request, response, context.settings)
    return tokens


@router.post("/refresh", operation_id="refreshSession",
             description=("Exchanges a refresh token for a new access token and a new refresh token. Each refresh "
                          "token works once; presenting one that was already used revokes the whole sign-in it "
                          "descends from. With `X-Conduit-Browser: 1` and no body, the refresh token is read from the "
                          "HttpOnly cookie and its successor set there; the cookie is never read without that header."),
             summary="Refresh access token",
             response_model=SessionResponse, responses=errors(401))
async def refresh_session(db: SessionDep, context: ContextDep, ip: ClientIP, request: Request, response: Response,
                          body: RefreshSessionRequest | None = None) -> sessions.SessionTokens:
    refresh_token = body.refresh_token if body else browser_session.cookie_token(request)
    if refresh_token is None:
        raise Invalid("refresh_token is required", field="refresh_token")
    tokens = await sessions.refresh(db, refresh_token=refresh_token, ip=ip, settings=context.settings,
                                    crypto=context.crypto)
    if browser_session.opted_in(request):
        return browser_session.hand_over(tokens, request, response, context.settings)
    return tokens
