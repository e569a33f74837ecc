"""The SMTP listener: Conduit's SMTP protocol (conduit.smtp.protocol) with a cap on concurrent
sessions, STARTTLS, and AUTH checked against the database."""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl

from sqlalchemy import select

from conduit.db.models import SmtpPolicy
from conduit.services.crypto import verify_password
from conduit.smtp.handler import ConduitHandler, SmtpContext
from conduit.smtp.protocol import ServerConfig, SmtpProtocol

log = logging.getLogger("conduit.smtp")


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
    config = ServerConfig(
        hostname=settings.smtp_hostname, data_size_limit=settings.smtp_max_message_bytes,
        timeout=settings.smtp_timeout, tls_context=tls, auth_require_tls=not settings.smtp_auth_insecure,
        check_credentials=functools.partial(_policies_for, ctx))

    def factory() -> SmtpProtocol:
        return SmtpProtocol(ConduitHandler(ctx), limiter, config)

    server = await asyncio.get_running_loop().create_server(factory, host=settings.smtp_host, port=settings.smtp_port)
    log.info("event=role_started role=smtp host=%s port=%s tls=%s", settings.smtp_host, settings.smtp_port, bool(tls))
    return server
