from __future__ import annotations

from fastapi import APIRouter, Response

from conduit.api.deps import ClientIP, ContextDep, CurrentAccount, SessionDep
from conduit.api.routers import errors
from conduit.api.schemas.identity import BackupCodesResponse, SetupTOTPResponse, TOTPCodeRequest
from conduit.services import two_factor

router = APIRouter(prefix="/accounts/me/2fa", tags=["2FA"])


@router.delete("", operation_id="disableTOTP", summary="Disable TOTP two-factor authentication",
               status_code=204, responses=errors(401, 429))
async def disable_totp(body: TOTPCodeRequest, account: CurrentAccount, db: SessionDep, context: ContextDep,
                       ip: ClientIP) -> Response:
    await two_factor.disable(db, account, code=body.code, crypto=context.crypto, ip=ip)
    return Response(status_code=204)


@router.post("/backup-codes", operation_id="regenerateBackupCodes", summary="Regenerate TOTP backup codes",
             response_model=BackupCodesResponse, responses=errors(401, 429))
async def regenerate_backup_codes(body: TOTPCodeRequest, account: CurrentAccount, db: SessionDep,
                                  context: ContextDep, ip: ClientIP):
    codes = await two_factor.regenerate_backup_codes(db, account, code=body.code, crypto=context.crypto, ip=ip)
    return BackupCodesResponse(backup_codes=codes)


@router.post("/enable", operation_id="enableTOTP", summary="Enable TOTP two-factor authentication",
             response_model=BackupCodesResponse, responses=errors(401, 409, 429))
async def enable_totp(body: TOTPCodeRequest, account: CurrentAccount, db: SessionDep, context: ContextDep,
                      ip: ClientIP):
    codes = await two_factor.enable(db, account, code=body.code, crypto=context.crypto, ip=ip)
    return BackupCodesResponse(backup_codes=codes)


@router.post("/setup", operation_id="setupTOTP", summary="Set up TOTP two-factor authentication",
             response_model=SetupTOTPResponse, responses=errors(401, 409))
async def setup_totp(account: CurrentAccount, db: SessionDep, context: ContextDep, ip: ClientIP):
    secret, url, png = await two_factor.setup(db, account, crypto=context.crypto, ip=ip)
    return SetupTOTPResponse(secret=secret, otpauth_url=url, qr_code_png=png)
