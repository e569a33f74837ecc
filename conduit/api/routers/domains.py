from __future__ import annotations

from fastapi import APIRouter, Response

from conduit.api.deps import AppContext, ClientIP, ContextDep, CurrentAccount, SessionDep
from conduit.api.routers import errors
from conduit.api.schemas.management import CreateDomainRequest, DnsRecord, DomainResponse
from conduit.services import domains
from conduit.storage.models import Domain

router = APIRouter(prefix="/domains", tags=["Domains"])


def _out(domain: Domain, context: AppContext) -> DomainResponse:
    records = [] if domain.is_public else [
        DnsRecord(type="TXT", name=f"{domains.TXT_PREFIX}.{domain.name}", value=domain.verification_token),
        DnsRecord(type="MX", name=domain.name, value=context.settings.mx_host, priority=domains.MX_PRIORITY)]
    return DomainResponse(id=domain.id, name=domain.name, account_id=domain.account_id or "",
                          verification_token=domain.verification_token, verified=domain.verified,
                          is_public=domain.is_public, created_at=domain.created_at, updated_at=domain.updated_at,
                          dns_records=records)


@router.get("", operation_id="listDomains",
             description=("Lists the domains the account claimed, verified or not, and the operator's public domains "
                          "(`is_public: true`), on which any account may create webhooks."),
             summary="List domains", response_model=list[DomainResponse],
            responses=errors(401))
async def list_domains(account: CurrentAccount, db: SessionDep, context: ContextDep) -> list[DomainResponse]:
    return [_out(d, context) for d in await domains.list_for(db, account, public=context.settings.public_domain_names)]


@router.post("", operation_id="createDomainClaim",
             description=("Claims a domain name. Prove ownership by publishing the returned `verification_token` as a "
                          "TXT record at `_conduit-verify.<name>` and an MX record to the operator's MX host, then "
                          "call POST /domains/{id}/verify. Several accounts may claim a name; the first to verify owns "
                          "it."),
             summary="Claim a domain", status_code=201,
             response_model=DomainResponse, responses=errors(401, 409))
async def create_domain_claim(body: CreateDomainRequest, account: CurrentAccount, db: SessionDep,
                              context: ContextDep, ip: ClientIP) -> DomainResponse:
    domain = await domains.claim(db, account, name=body.name, public=context.settings.public_domain_names, ip=ip)
    return _out(domain, context)


@router.get("/{id}", operation_id="getDomain",
             description=("Returns one of the account's domains, or a public domain."),
             summary="Get domain", response_model=DomainResponse,
            responses=errors(401, 404))
async def get_domain(id: str, account: CurrentAccount, db: SessionDep, context: ContextDep) -> DomainResponse:  # noqa: A002
    return _out(await domains.get_visible(db, account, id, public=context.settings.public_domain_names), context)


@router.delete("/{id}", operation_id="deleteDomain",
             description=("Deletes a domain claim and the webhooks whose address is on it (with their logs and queued "
                          "deliveries). Public domains cannot be deleted (409)."),
             summary="Delete domain", status_code=204,
               responses=errors(401, 404, 409))
async def delete_domain(id: str, account: CurrentAccount, db: SessionDep, context: ContextDep,  # noqa: A002
                        ip: ClientIP) -> Response:
    await domains.delete_domain(db, account, id, public=context.settings.public_domain_names, ip=ip)
    return Response(status_code=204)


@router.post("/{id}/verify", operation_id="verifyDomain",
             summary="Trigger DNS verification for a domain (TXT ownership token + MX record)",
             description="Performs two DNS checks before marking the domain as verified: 1. A TXT lookup under "
                         "`_conduit-verify.<domain>` must return the domain's verification token. 2. An MX lookup "
                         "for `<domain>` must return a record pointing to the configured MX host (CONDUIT_MX_HOST, "
                         "default `mx.conduit.email`) with priority 10. If either check fails a `422` is returned "
                         "that says which check failed and what was found.",
             response_model=DomainResponse, responses=errors(401, 404, 409))
async def verify_domain(id: str, account: CurrentAccount, db: SessionDep, context: ContextDep,  # noqa: A002
                        ip: ClientIP) -> DomainResponse:
    domain = await domains.verify(db, account, id, resolver=context.resolver, mx_host=context.settings.mx_host,
                                  public=context.settings.public_domain_names, ip=ip)
    return _out(domain, context)
