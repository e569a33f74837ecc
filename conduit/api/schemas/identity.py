"""Bodies of the System, Sessions, Account, 2FA and API Tokens groups."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from conduit.api.schemas.common import Model, RequestBody, Timestamp


class CreateSessionRequest(RequestBody):
    email: str
    password: str


class SessionResponse(BaseModel):
    access_token: str
    expires_in: int
    refresh_token: str


class TOTPChallengeResponse(BaseModel):
    totp_required: Literal[True] = True
    totp_token: str
    expires_in: int


class CompleteTOTPSessionRequest(RequestBody):
    code: str
    totp_token: str


class RefreshSessionRequest(RequestBody):
    refresh_token: str


class DeleteSessionRequest(RequestBody):
    refresh_token: str | None = Field(default=None, description="Omit to sign out everywhere.")


class CreateAccountRequest(RequestBody):
    email: str
    password: str


class AccountResponse(Model):
    id: str
    email: str
    timezone: str
    created_at: Timestamp
    updated_at: Timestamp


class DeleteAccountRequest(RequestBody):
    confirm: bool = False
    password: str


class AuditLogEntry(Model):
    id: str
    action: str
    ip: str
    metadata: dict[str, object] = Field(validation_alias="details")
    created_at: Timestamp


class UpdateTimezoneRequest(RequestBody):
    timezone: str


class RequestPasswordResetRequest(RequestBody):
    email: str


class ChangePasswordRequest(RequestBody):
    current_password: str
    new_password: str
    revoke_api_tokens: bool = False


class ConfirmPasswordResetRequest(RequestBody):
    new_password: str
    token: str


class TOTPCodeRequest(RequestBody):
    code: str


class BackupCodesResponse(BaseModel):
    backup_codes: list[str]


class SetupTOTPResponse(BaseModel):
    otpauth_url: str
    qr_code_png: str
    secret: str


class CreateAPITokenRequest(RequestBody):
    name: str
    allowed_ips: list[str] | None = None
    expires_in: int | None = Field(default=None, description="Seconds until expiry; absent or 0 = never.")


class APITokenResponse(Model):
    id: str
    name: str
    allowed_ips: list[str]
    created_at: Timestamp
    expires_at: Timestamp | None = None
    last_used_at: Timestamp | None = None
    token: str | None = Field(default=None, description="The secret: only in the create response.")
