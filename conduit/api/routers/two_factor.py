from __future__ import annotations

from fastapi import APIRouter, Response

from conduit.api.deps import ClientIP, ContextDep, CurrentAccount, SessionDep
from conduit.api.routers import errors
from conduit.api.schemas.identity import BackupCodesResponse, SetupTOTPResponse, TOTPCodeRequest
from conduit.services import two_factor

router = APIRouter(prefix="/accounts/me/2fa", tags=["2FA"])


@router.delete("", operation_id="disableTOTP",
             description=("Turns two-factor authentication off after checking a current code (or a backup code)."),
             summary="Disable TOTP two-factor authentication",
               status_code=204, responses=errors(401, 429))
async def disable_totp(body: TOTPCodeRequest, account: CurrentAccount, db: SessionDep, context: ContextDep,
                       ip: ClientIP) -> Response:
    await two_factor.disable(db, account, code=body.code, crypto=context.crypto, ip=ip)
    return Response(status_code=204)


@router.post("/backup-codes", operation_id="regenerateBackupCodes",
             description=("Replaces the backup codes with ten new ones, after checking a current code."),
             summary="Regenerate TOTP backup codes",
             response_model=BackupCodesResponse, responses=errors(401, 429))
async def regenerate_backup_codes(body: TOTPCodeRequest, account: CurrentAccount, db: SessionDep,
                                  context: ContextDep, ip: ClientIP) -> BackupCodesResponse:
    codes = await two_factor.regenerate_backup_codes(db, account, code=body.code, crypto=context.crypto, ip=ip)
    return BackupCodesResponse(backup_codes=codes)


@router.post("/enable", operation_id="enableTOTP",
             description=("Turns two-factor authentication on, after POST /accounts/me/2fa/setup, with a code of the "
                          "authenticator app that proves it has the secret. Returns the backup codes, shown only now."),
             summary="Enable TOTP two-factor authentication",
             response_model=BackupCodesResponse, responses=errors(401, 409, 429))
async def enable_totp(body: TOTPCodeRequest, account: CurrentAccount, db: SessionDep, context: ContextDep,
                      ip: ClientIP) -> BackupCodesResponse:
    codes = await two_factor.enable(db, account, code=body.code, crypto=context.crypto, ip=ip)
    return BackupCodesResponse(backup_codes=codes)


@router.post("/setup", operation_id="setupTOTP",
             description=("Creates a new TOTP secret (active only once enabled) and returns it as an otpauth URL, a QR "
                          "code and in base32. 409 when two-factor authentication is already enabled: disable it "
                          "first."),
             summary="Set up TOTP two-factor authentication",
             response_model=SetupTOTPResponse, responses=errors(401, 409))
async def setup_totp(account: CurrentAccount, db: SessionDep, context: ContextDep, ip: ClientIP) -> SetupTOTPResponse:
    secret, url, png = await two_factor.setup(db, account, crypto=context.crypto, ip=ip)
    return SetupTOTPResponse(secret=secret, otpauth_url=url, qr_code_png=png)
