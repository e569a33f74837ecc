"""Bodies of the System, Sessions, Account, 2FA and API Tokens groups."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from conduit.api.schemas.common import Model, RequestBody, Timestamp, described, omittable

ACCESS_TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhY2NfMDZoNHI0ZyJ9.c2lnbmF0dXJl"  # noqa: S105 - an example in the API document
PASSWORD = "correct horse battery staple"  # noqa: S105 - an example in the API document


class CreateSessionRequest(RequestBody):
    email: str = described("The account's email address (any letter case).", "ann@example.com")
    password: str = described("The account's password.", PASSWORD)


class SessionResponse(BaseModel):
    access_token: str = described("Bearer token for the `Authorization` header; a JWT valid `expires_in` seconds.",
                              ACCESS_TOKEN)
    expires_in: int = described("Seconds until the access token expires (CONDUIT_ACCESS_TOKEN_TTL).", 900)
    refresh_token: str = described("Single-use token (`crt_…`) for POST /sessions/refresh.", "crt_9q3RkU1bM0vWl2Xn")


class TOTPChallengeResponse(BaseModel):
    totp_required: Literal[True] = described("Always true: complete the sign-in with POST /sessions/2fa.", True,
                                         default=True)
    totp_token: str = described("Challenge token (`ctc_…`) for POST /sessions/2fa; valid `expires_in` seconds, once.",
                            "ctc_Hk2mV9pQ4rT7wXy1")
    expires_in: int = described("Seconds until the challenge token expires.", 300)


class CompleteTOTPSessionRequest(RequestBody):
    code: str = described("The 6-digit code of the authenticator app, or an unused backup code.", "123456")
    totp_token: str = described("The `totp_token` of the sign-in's challenge.", "ctc_Hk2mV9pQ4rT7wXy1")


class RefreshSessionRequest(RequestBody):
    refresh_token: str = described("The refresh token of the last sign-in or refresh; it works once.",
                               "crt_9q3RkU1bM0vWl2Xn")


class DeleteSessionRequest(RequestBody):
    refresh_token: str = omittable("The refresh token of the sign-in to end. Leave the body out to sign out "
                                   "everywhere (every refresh and access token of the account).",
                                   "crt_9q3RkU1bM0vWl2Xn")


class CreateAccountRequest(RequestBody):
    email: str = described("Email address; stored lower-case, syntax-checked (no DNS lookup).", "ann@example.com")
    password: str = described("8 to 256 characters.", PASSWORD)


class AccountResponse(Model):
    id: str = described("Account ID.", "acc_06h4r4g66thr6esbl3mb1eivms")
    email: str = described("Email address, lower-case.", "ann@example.com")
    timezone: str = described("IANA time zone name, `UTC` until changed.", "Europe/Berlin")
    totp_enabled: bool = described("Beyond the reference: whether two-factor authentication is on.", False)
    created_at: Timestamp = described("When the account was created (RFC 3339, UTC).", "2026-04-02T12:00:00Z")
    updated_at: Timestamp = described("When the account last changed (RFC 3339, UTC).", "2026-04-02T12:00:00Z")


class DeleteAccountRequest(RequestBody):
    confirm: bool = described("Must be true: deleting the account deletes everything it owns.", True)
    password: str = described("The account's current password.", PASSWORD)


class AuditLogEntry(Model):
    id: str = described("Audit entry ID.", "aud_06h4r4g9k2m1p3q5s7u9w1y3a5")
    action: str = described("What happened (`session.sign_in`, `webhook.created`, …; listed in docs/api-decisions.md).",
                        "session.sign_in")
    ip: str = described("The client's IP address; empty for actions of the operator's `conduit accounts`.",
                    "203.0.113.7")
    metadata: dict[str, object] = described("Details of the action (never a secret); `actor: cli` for the operator's "
                                        "actions.", {"webhook_id": "whk_06h4r4g9k2m1p3q5s7u9w1y3a5"},
                                        validation_alias="details")
    created_at: Timestamp = described("When it happened (RFC 3339, UTC).", "2026-04-02T12:00:00Z")


class UpdateTimezoneRequest(RequestBody):
    timezone: str = described("IANA time zone name.", "Europe/Berlin")


class RequestPasswordResetRequest(RequestBody):
    email: str = described("The account's email address.", "ann@example.com")


class ChangePasswordRequest(RequestBody):
    current_password: str = described("The password now.", PASSWORD)
    new_password: str = described("The new password, 8 to 256 characters.", "another long passphrase")
    revoke_api_tokens: bool = described("Also delete every API token of the account.", False, default=False)


class ConfirmPasswordResetRequest(RequestBody):
    new_password: str = described("The new password, 8 to 256 characters.", "another long passphrase")
    token: str = described("The reset token (`prt_…`) from the reset mail; valid one hour, once.",
                       "prt_Zx8cV7bN6mQ5wE4r")


class TOTPCodeRequest(RequestBody):
    code: str = described("The 6-digit code of the authenticator app (a backup code also works, except for enable).",
                      "123456")


class BackupCodesResponse(BaseModel):
    backup_codes: list[str] = described("Ten single-use codes, each usable in place of a TOTP code; shown only now.",
                                    ["k3m9-x2p7-q8r4-t6w1", "a5s8-d2f6-g9h3-j7k4"])


class SetupTOTPResponse(BaseModel):
    otpauth_url: str = described("The `otpauth://` URL for authenticator apps.",
                             "otpauth://totp/Conduit:ann%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=Conduit")
    qr_code_png: str = described("The otpauth URL as a QR code: a PNG image, base64.", "iVBORw0KGgoAAAANSUhEUgAA")
    secret: str = described("The TOTP secret (base32), for apps that cannot scan the code.", "JBSWY3DPEHPK3PXP")


class CreateAPITokenRequest(RequestBody):
    name: str = described("A name to recognise the token by.", "CI deploys")
    allowed_ips: list[str] = omittable("IP addresses and CIDRs the token may be used from; left out or empty: any.",
                                       ["192.0.2.0/24", "2001:db8::1"])
    expires_in: int = omittable("Seconds until the token expires; left out or 0: never (at most ten years).",
                                2592000)


class APITokenResponse(Model):
    id: str = described("API token ID.", "tok_06h4r4g9k2m1p3q5s7u9w1y3a5")
    name: str = described("The token's name.", "CI deploys")
    allowed_ips: list[str] = described("Networks the token may be used from, normalised to CIDRs; empty: any.",
                                   ["192.0.2.0/24", "2001:db8::1/128"])
    created_at: Timestamp = described("When the token was created (RFC 3339, UTC).", "2026-04-02T12:00:00Z")
    expires_at: Timestamp | None = described("When the token expires (RFC 3339, UTC); null: never.",
                                         "2026-05-02T12:00:00Z", default=None)
    last_used_at: Timestamp | None = described("When the token was last used (RFC 3339, UTC); null: never.",
                                           "2026-04-03T08:30:00Z", default=None)
    token: str | None = described("The secret (`cdt_…`), for the `Authorization: Bearer` header: only in the create "
                              "response, null elsewhere.", "cdt_Qm2Rt8Yw4Ek6Lp1Zs9Xc", default=None)
