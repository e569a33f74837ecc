"""The SMTP listener: aiosmtpd's protocol with Conduit's limits, STARTTLS and database-backed AUTH."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from sqlalchemy import select

from conduit.db.models import SmtpPolicy
from conduit.services.crypto import verify_password
from conduit.smtp import replies
from conduit.smtp.handler import ConduitHandler, SmtpContext

log = logging.getLogger("conduit.smtp")


class _Pending:
    """Credentials decoded by aiosmtpd's AUTH PLAIN/LOGIN, awaiting our (async) check."""

    def __init__(self, credentials: LoginPassword) -> None:
        self.credentials = credentials


class ConduitSMTP(SMTP):
    """aiosmtpd's SMTP with a cap on concurrent sessions and AUTH checked against the database.

    aiosmtpd calls its authenticator synchronously, but checking a password means a database
    query and an Argon2 verification: its mechanisms hand us the credentials, we check them here.
    """

    def __init__(self, handler: ConduitHandler, limiter: SessionLimiter, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.conduit_handler = handler
        self.limiter = limiter
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # STARTTLS calls this again for the same session
        if first and not self.limiter.acquire():
            transport.write(f"{replies.TOO_MANY_SESSIONS}\r\n".encode())
            transport.close()
            return
        self._counted = self._counted or first
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self.limiter.release()
            self._counted = False
        if self.session is not None:
            super().connection_lost(error)

    def _authenticate(self, mechanism: str, auth_data: Any) -> Any:
        return _Pending(auth_data)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:  # noqa: N802
        return await self._finish_auth(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:  # noqa: N802
        return await self._finish_auth(await super().auth_LOGIN(_, args))

    async def _finish_auth(self, result: Any) -> AuthResult:
        if not isinstance(result, _Pending):
            return result  # aiosmtpd already answered (bad base64, aborted challenge)
        login = result.credentials.login.decode("utf-8", "replace")
        password = result.credentials.password.decode("utf-8", "replace")
        matched = await _policies_for(self.conduit_handler.ctx, login, password)
        if not matched:
            return AuthResult(success=False, handled=False, message=replies.AUTH_FAILED)
        self.conduit_handler.auth_user = login
        self.conduit_handler.authenticated_policies = frozenset(matched)
        return AuthResult(success=True, handled=False, auth_data=result.credentials, message=replies.AUTH_SUCCESS)


async def _policies_for(ctx: SmtpContext, login: str, password: str) -> list[str]:
    """IDs of the policies whose SMTP credentials are login:password."""
    async with ctx.sessions() as db:
        candidates = (await db.execute(select(SmtpPolicy.id, SmtpPolicy.smtp_password_hash)
                                       .where(SmtpPolicy.smtp_username == login))).all()
    return [policy_id for policy_id, password_hash in candidates
            if password_hash and await verify_password(password_hash, password)]


class SessionLimiter:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def acquire(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active -= 1


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def start(ctx: SmtpContext) -> asyncio.Server:
    settings = ctx.settings
    tls = tls_context(settings.smtp_tls_cert, settings.smtp_tls_key) if settings.smtp_tls_cert else None
    limiter = SessionLimiter(settings.smtp_max_sessions)

    def factory() -> ConduitSMTP:
        return ConduitSMTP(
            ConduitHandler(ctx), limiter,
            hostname=settings.smtp_hostname, ident="Conduit ESMTP",
            data_size_limit=settings.smtp_max_message_bytes, enable_SMTPUTF8=True, decode_data=False,
            tls_context=tls, require_starttls=False, timeout=settings.smtp_timeout,
            auth_require_tls=not settings.smtp_auth_insecure, auth_required=False,
        )

    server = await asyncio.get_running_loop().create_server(factory, host=settings.smtp_host, port=settings.smtp_port)
    log.info("event=role_started role=smtp host=%s port=%s tls=%s", settings.smtp_host, settings.smtp_port, bool(tls))
    return server
