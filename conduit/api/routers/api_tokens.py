from __future__ import annotations

from fastapi import APIRouter, Response

from conduit.api.deps import ClientIP, CurrentAccount, CurrentCaller, SessionDep
from conduit.api.routers import errors
from conduit.api.schemas.identity import APITokenResponse, CreateAPITokenRequest
from conduit.services import api_tokens
from conduit.storage.models import ApiToken

router = APIRouter(prefix="/accounts/me/api-tokens", tags=["API Tokens"])


@router.get("", operation_id="listAPITokens",
             description=("Lists the account's API tokens, without their secrets (`token` is null)."),
             summary="List API tokens",
            response_model=list[APITokenResponse], responses=errors(401))
async def list_api_tokens(account: CurrentAccount, db: SessionDep) -> list[ApiToken]:
    return await api_tokens.list_for(db, account)


@router.post("", operation_id="createAPIToken",
             description=("Creates a long-lived token (`cdt_…`) for the `Authorization: Bearer` header, optionally "
                          "limited to client networks (`allowed_ips`) and a lifetime. The secret is in this response "
                          "only."),
             summary="Create an API token", status_code=201,
             response_model=APITokenResponse, responses=errors(401))
async def create_api_token(body: CreateAPITokenRequest, caller: CurrentCaller, db: SessionDep,
                           ip: ClientIP) -> APITokenResponse:
    row, token = await api_tokens.create(db, caller.account, name=body.name, allowed_ips=body.allowed_ips,
                                         expires_in=body.expires_in, ip=ip, created_by=caller.api_token)
    return APITokenResponse.model_validate(row).model_copy(update={"token": token})


@router.delete("/{id}", operation_id="deleteAPIToken",
             description=("Revokes (deletes) an API token of the account; it stops working at once."),
             summary="Revoke an API token", status_code=204,
               responses=errors(401, 404))
async def delete_api_token(id: str, account: CurrentAccount, db: SessionDep, ip: ClientIP) -> Response:  # noqa: A002
    await api_tokens.revoke(db, account, id, ip=ip)
    return Response(status_code=204)
