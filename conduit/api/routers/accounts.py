from __future__ import annotations

import logging

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response

from conduit.api import browser_session
from conduit.api.deps import ClientIP, ContextDep, CurrentAccount, SessionDep
from conduit.api.routers import errors
from conduit.api.schemas.identity import (
    AccountResponse,
    AuditLogEntry,
    ChangePasswordRequest,
    ConfirmPasswordResetRequest,
    CreateAccountRequest,
    DeleteAccountRequest,
    RequestPasswordResetRequest,
    UpdateTimezoneRequest,
)
from conduit.config import Settings
from conduit.mail import outbound
from conduit.services import accounts, audit
from conduit.storage.models import Account, AuditEntry

router = APIRouter(prefix="/accounts", tags=["Account"])
# The dashboard's form for a new password; a URL fragment never reaches a server's logs.
RESET_PAGE = "/#/reset-password"
log = logging.getLogger("conduit.api")


@router.post("", operation_id="createAccount",
             description=("Creates an account and returns it; sign in with POST /sessions. When the operator closed "
                          "sign-up (CONDUIT_SIGNUP=closed) the answer is 403 `signup_closed`, whatever the body "
                          "holds."),
             summary="Sign up", status_code=201,
             response_model=AccountResponse, responses=errors(403, 409))
async def create_account(body: CreateAccountRequest, db: SessionDep, ip: ClientIP, context: ContextDep) -> Account:
    return await accounts.create(db, email=body.email, password=body.password, ip=ip,
                                 signup_open=context.settings.signup == "open")


@router.get("/me", operation_id="getAccount",
             description="Returns the account the bearer token belongs to.", summary="Get current account",
            response_model=AccountResponse, responses=errors(401))
async def get_account(account: CurrentAccount) -> Account:
    return account


@router.delete("/me", operation_id="deleteAccount", summary="Delete account", status_code=204,
               description="Deletes the account and everything it owns: domains, policies, webhooks, delivery "
                           "logs, tokens and audit log. Needs `confirm: true` (else 422) and the password (else "
                           "401; wrong passwords are throttled per account, 429).",
               responses=errors(401, 429))
async def delete_account(body: DeleteAccountRequest, account: CurrentAccount, db: SessionDep,
                         ip: ClientIP, context: ContextDep, request: Request) -> Response:
    await accounts.delete_account(db, account, password=body.password, confirm=body.confirm, ip=ip)
    answer = Response(status_code=204)
    if browser_session.opted_in(request):
        browser_session.clear(request, answer, context.settings)
    return answer


@router.get("/me/audit-log", operation_id="listAuditLog", summary="List audit log entries",
            description="Returns the most recent account audit log entries in reverse chronological order. "
                        "Entries are retained for 180 days.",
            response_model=list[AuditLogEntry], responses=errors(401))
async def list_audit_log(account: CurrentAccount, db: SessionDep,
                         limit: int = Query(50, ge=1, le=200, description="Maximum number of entries to return "
                                                                           "(1–200, default 50).")) -> list[AuditEntry]:
    return await audit.list_entries(db, account.id, limit=limit)


@router.put("/me/timezone", operation_id="updateTimezone",
             description=("Sets the account's IANA time zone name (`Europe/Berlin`)."),
             summary="Update timezone", status_code=204,
            responses=errors(401))
async def update_timezone(body: UpdateTimezoneRequest, account: CurrentAccount, db: SessionDep,
                          ip: ClientIP) -> Response:
    await accounts.set_timezone(db, account, timezone=body.timezone, ip=ip)
    return Response(status_code=204)


@router.post("/me/password-reset", operation_id="requestPasswordReset",
             description=("Mails a single-use reset token, valid one hour, to the address if it has an account. The "
                          "answer is 202 whether or not it has one, and takes the same time; more than a few requests "
                          "per client IP get 429."),
             summary="Request password reset",
             status_code=202, response_class=Response,  # the 202 has no body; the document must not claim JSON
             responses={202: {"description": "Reset email sent (always returned; never reveals "
                                                              "whether address exists)"}, **errors(429)})
async def request_password_reset(body: RequestPasswordResetRequest, db: SessionDep, context: ContextDep,
                                 ip: ClientIP, background: BackgroundTasks) -> Response:
    issued = await accounts.request_password_reset(db, email=body.email, ip=ip)
    if issued is not None:
        account, token = issued
        # Sent after the response (and so after the commit): the answer's timing says nothing.
        background.add_task(_send_reset_mail, context.settings, account.email, token)
    return Response(status_code=202)


async def _send_reset_mail(settings: Settings, email: str, token: str) -> None:
    link = f"{settings.public_base_url}{RESET_PAGE}?token={token}"
    body = (
        "Someone asked to reset the password of your Conduit account.\n\n"
        f"To choose a new password, open {link}\n"
        f"or call PUT /api/v1/accounts/me/password-reset with this token:\n\n    {token}\n\n"
        "The link works once and expires in one hour. If you did not ask for this, ignore this mail.\n"
    )
    try:
        await outbound.send(settings.smtp_relay_url, sender=settings.mail_from, to=email,
                            subject="Reset your Conduit password", body=body,
                            helo=settings.smtp_hostname)
    except Exception as exc:  # noqa: BLE001 - a relay failure must not surface to the requester
        log.error("event=password_reset_mail_failed error=%r", exc)


@router.put("/me/password", operation_id="changePassword",
             description=("Changes the password after checking the current one (wrong ones are throttled). Every "
                          "refresh and access token of the account stops working; API tokens too with "
                          "`revoke_api_tokens: true`."),
             summary="Change password", status_code=204,
            responses=errors(401, 429),
            response_description="Password changed. Refresh tokens and API access tokens are revoked when "
                                 "revoke_api_tokens=true.")
async def change_password(body: ChangePasswordRequest, account: CurrentAccount, db: SessionDep,
                          ip: ClientIP) -> Response:
    await accounts.change_password(db, account, current_password=body.current_password,
                                   new_password=body.new_password, revoke_api_tokens=body.revoke_api_tokens, ip=ip)
    return Response(status_code=204)


@router.put("/me/password-reset", operation_id="confirmPasswordReset",
             description=("Sets a new password with the token of the reset mail. Every session and every API token of "
                          "the account is revoked, and the account's other reset tokens die."),
             summary="Confirm password reset",
            status_code=204, responses=errors(401))
async def confirm_password_reset(body: ConfirmPasswordResetRequest, db: SessionDep, ip: ClientIP) -> Response:
    await accounts.confirm_password_reset(db, token=body.token, new_password=body.new_password, ip=ip)
    return Response(status_code=204)
