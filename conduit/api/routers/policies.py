from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Response

from conduit.api.deps import ClientIP, CurrentAccount, SessionDep
from conduit.api.routers import errors
from conduit.api.schemas.management import (
    SmtpSecurityPolicyRequest,
    SmtpSecurityPolicyResponse,
    SpamAction,
    UpdateSmtpSecurityPolicyRequest,
)
from conduit.services import policies
from conduit.services.policies import PolicyView
from conduit.storage.models import SmtpPolicy

router = APIRouter(prefix="/smtp-policies", tags=["SMTP Policies"])


def _out(view: PolicyView | SmtpPolicy) -> SmtpSecurityPolicyResponse:
    view = view if isinstance(view, PolicyView) else PolicyView(view)
    p = view.policy
    return SmtpSecurityPolicyResponse(
        id=p.id, name=p.name, allowed_source_ips=p.allowed_source_ips, allowed_spf_domains=p.allowed_spf_domains,
        allowed_dkim_domains=p.allowed_dkim_domains, require_dkim=p.require_dkim,
        require_smtp_auth=p.require_smtp_auth, require_spf=p.require_spf, smtp_credentials=view.smtp_credentials,
        created_at=p.created_at, updated_at=p.updated_at, spam_action=cast(SpamAction, p.spam_action),
        spam_threshold=p.spam_threshold)


@router.get("", operation_id="listSmtpSecurityPolicies",
             description="Lists the account's SMTP security policies.", summary="List SMTP security policies",
            response_model=list[SmtpSecurityPolicyResponse], responses=errors(401))
async def list_smtp_security_policies(account: CurrentAccount, db: SessionDep) -> list[SmtpSecurityPolicyResponse]:
    return [_out(p) for p in await policies.list_for(db, account)]


@router.post("", operation_id="createSmtpSecurityPolicy",
             description=("Creates a policy: rules checked while the sending server talks to Conduit (source IP, SPF, "
                          "DKIM, SMTP AUTH, and with rspamd the spam verdict). Attach it to webhooks with "
                          "`smtp_security_policy_id`; mail that breaks it is refused at SMTP time and logged as "
                          "`rejected`."),
             summary="Create SMTP security policy", status_code=201,
             response_model=SmtpSecurityPolicyResponse, responses=errors(401))
async def create_smtp_security_policy(body: SmtpSecurityPolicyRequest, account: CurrentAccount, db: SessionDep,
                                      ip: ClientIP) -> SmtpSecurityPolicyResponse:
    return _out(await policies.create(db, account, fields=body.model_dump(exclude_unset=True), ip=ip))


@router.get("/{id}", operation_id="getSmtpSecurityPolicy",
             description="Returns one of the account's SMTP security policies.", summary="Get SMTP security policy",
            response_model=SmtpSecurityPolicyResponse, responses=errors(401, 404))
async def get_smtp_security_policy(id: str, account: CurrentAccount, db: SessionDep) -> SmtpSecurityPolicyResponse:  # noqa: A002
    return _out(await policies.get(db, account, id))


@router.put("/{id}", operation_id="updateSmtpSecurityPolicy",
             description=("Changes the fields sent and keeps the others (a partial update)."),
             summary="Update SMTP security policy",
            response_model=SmtpSecurityPolicyResponse, responses=errors(401, 404))
async def update_smtp_security_policy(id: str, body: UpdateSmtpSecurityPolicyRequest, account: CurrentAccount,  # noqa: A002
                                      db: SessionDep, ip: ClientIP) -> SmtpSecurityPolicyResponse:
    return _out(await policies.update(db, account, id, changes=body.model_dump(exclude_unset=True), ip=ip))


@router.delete("/{id}", operation_id="deleteSmtpSecurityPolicy",
             description=("Deletes a policy; the webhooks it was attached to then accept mail without one."),
             summary="Delete SMTP security policy",
               status_code=204, responses=errors(401, 404))
async def delete_smtp_security_policy(id: str, account: CurrentAccount, db: SessionDep,  # noqa: A002
                                      ip: ClientIP) -> Response:
    await policies.delete_policy(db, account, id, ip=ip)
    return Response(status_code=204)
