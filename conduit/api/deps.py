"""Request-scoped dependencies: the DB session (one request, one transaction), the caller's IP,
the current account."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import dns.asyncresolver
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from conduit.config import Settings
from conduit.crypto import Crypto
from conduit.errors import ConduitError
from conduit.isolation import RenderPool
from conduit.net.http_transport import WebhookTransport
from conduit.services.authentication import Caller, authenticate
from conduit.storage.database import Database
from conduit.storage.models import Account


@dataclass(frozen=True)
class AppContext:
    """What every request may need, built once by create_app."""

    settings: Settings
    crypto: Crypto
    database: Database
    resolver: dns.asyncresolver.Resolver
    http: WebhookTransport
    renders: RenderPool  # renderer processes for simulate and for checking templates


def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


ContextDep = Annotated[AppContext, Depends(get_context)]


async def get_session(context: ContextDep) -> AsyncIterator[AsyncSession]:
    """Commit when the handler returns (before the response is sent: scope="function"), roll back
    when it raises, except errors that ask to keep their bookkeeping (failed sign-ins)."""
    async with context.database.sessions() as session:
        try:
            yield session
        except ConduitError as exc:
            if getattr(exc, "keep_changes", False):
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def client_ip(request: Request, context: ContextDep) -> str:
    """The peer address, or the first untrusted hop of X-Forwarded-For when the peer is a trusted proxy."""
    peer = request.client.host if request.client else ""
    trusted = context.settings.trusted_proxy_networks
    if not trusted or not _in(peer, trusted):
        return peer
    # Several header lines are one comma-separated list (RFC 9110 5.3); a proxy may add its own line.
    hops = [h.strip() for line in request.headers.getlist("x-forwarded-for") for h in line.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed header proves nothing
        if not _in(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _in(ip: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in n for n in networks)


ClientIP = Annotated[str, Depends(client_ip)]
_bearer = HTTPBearer(auto_error=False, description="An access token from POST /sessions or an API token (cdt_…).")


async def current_caller(request: Request, session: SessionDep, context: ContextDep, ip: ClientIP,
                         credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Caller:
    caller = await authenticate(session, credentials.credentials if credentials else None, ip=ip, crypto=context.crypto)
    request.state.account_id = caller.account.id  # for the access log (conduit/api/middleware.py)
    return caller


CurrentCaller = Annotated[Caller, Depends(current_caller)]


async def current_account(caller: CurrentCaller) -> Account:
    return caller.account


CurrentAccount = Annotated[Account, Depends(current_account)]
