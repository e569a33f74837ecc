from __future__ import annotations

from fastapi import APIRouter, Response

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
from conduit.services import sessions

router = APIRouter(prefix="/sessions", tags=["Sessions"])


@router.post("", operation_id="createSession", summary="Sign in",
             response_model=SessionResponse | TOTPChallengeResponse, responses=errors(401, 429),
             response_description="Either a full session (access_token + refresh_token) or a TOTP challenge "
                                  "when 2FA is enabled on the account.")
async def create_session(body: CreateSessionRequest, db: SessionDep, context: ContextDep, ip: ClientIP):
    return await sessions.sign_in(db, email=body.email, password=body.password, ip=ip,
                                  settings=context.settings, crypto=context.crypto)


@router.delete("", operation_id="deleteSession", summary="Sign out", status_code=204,
               responses=errors(401))
async def delete_session(account: CurrentAccount, db: SessionDep, ip: ClientIP,
                         body: DeleteSessionRequest | None = None) -> Response:
    await sessions.sign_out(db, account, refresh_token=body.refresh_token if body else None, ip=ip)
    return Response(status_code=204)


@router.post("/2fa", operation_id="completeTOTPSession", summary="Complete sign-in with TOTP code",
             response_model=SessionResponse, responses=errors(401, 429))
async def complete_totp_session(body: CompleteTOTPSessionRequest, db: SessionDep, context: ContextDep,
                                ip: ClientIP):
    return await sessions.complete_totp(db, totp_token=body.totp_token, code=body.code, ip=ip,
                                        settings=context.settings, crypto=context.crypto)


@router.post("/refresh", operation_id="refreshSession", summary="Refresh access token",
             response_model=SessionResponse, responses=errors(401))
async def refresh_session(body: RefreshSessionRequest, db: SessionDep, context: ContextDep, ip: ClientIP):
    return await sessions.refresh(db, refresh_token=body.refresh_token, ip=ip,
                                  settings=context.settings, crypto=context.crypto)
