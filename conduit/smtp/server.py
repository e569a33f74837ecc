"""The SMTP listener: Conduit's SMTP protocol (conduit.smtp.protocol) with a cap on concurrent
sessions, STARTTLS, the PROXY protocol behind a load balancer, and AUTH checked against the
database."""

from __future__ import annotations

import asyncio
import logging
import ssl

from conduit.services.policies import SMTP_AUTH_FAILURES_PER_SESSION
from conduit.smtp.handler import ConduitHandler, SmtpContext
from conduit.smtp.protocol import ServerConfig, SessionLimiter, SmtpProtocol

log = logging.getLogger("conduit.smtp")


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
        auth_failures_per_session=SMTP_AUTH_FAILURES_PER_SESSION,
        proxy_protocol=settings.smtp_proxy_protocol, trusted_proxies=settings.trusted_proxy_networks)

    def factory() -> SmtpProtocol:
        return SmtpProtocol(ConduitHandler(ctx), limiter, config)

    server = await asyncio.get_running_loop().create_server(factory, host=settings.smtp_host, port=settings.smtp_port)
    log.info("event=role_started role=smtp host=%s port=%s tls=%s proxy_protocol=%s", settings.smtp_host,
             settings.smtp_port, bool(tls), settings.smtp_proxy_protocol)
    return server
