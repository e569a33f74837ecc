"""The SMTP protocol's hooks (conduit/smtp/protocol.py) → services. One handler per connection, so per-session state lives here.

Recipients are checked at RCPT (routing, source IP, SMTP AUTH, SPF); DKIM after DATA. The
message and its delivery jobs are committed before the 250 reply; any unexpected error is
logged and answered 451 4.3.0, so the sending server keeps the message and retries.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from conduit.config import Settings
from conduit.db.engine import transaction
from conduit.db.group_commit import GroupCommit
from conduit.services import messages, routing
from conduit.services.policy_rules import PolicyDecision, SmtpFacts, evaluate
from conduit.services.route_cache import RouteCache
from conduit.smtp import replies
from conduit.smtp.authchecks import DnsForChecks, SpfOutcome, check_dkim, check_dmarc, check_spf

log = logging.getLogger("conduit.smtp")


@dataclass(frozen=True)
class SmtpContext:
    """What every connection's handler shares."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    committer: GroupCommit[messages.Incoming]  # stores accepted messages (group commit)
    dns: DnsForChecks
    on_accepted: Callable[[], None] = lambda: None  # wakes an in-process worker

    @functools.cached_property
    def routes(self) -> RouteCache:
        """The routes RCPT found, shared by this server's sessions (conduit/services/route_cache.py)."""
        return RouteCache(self.settings.route_cache_seconds)


@dataclass
class _Recipient:
    address: str
    route: routing.Route


@dataclass
class _Transaction:
    recipients: list[_Recipient] = field(default_factory=list)
    spf: SpfOutcome | None = None


class ConduitHandler:
    def __init__(self, ctx: SmtpContext) -> None:
        self.ctx = ctx
        self.tx = _Transaction()
        # Policies whose SMTP credentials this session authenticated with, and the login (set by AUTH).
        self.authenticated_policies: frozenset[str] = frozenset()
        self.authenticated_as: str | None = None

    # --- hooks ------------------------------------------------------------------------

    async def handle_exception(self, error: Exception) -> str:
        log.error("event=smtp_error error=%r", error, exc_info=error)
        return replies.TEMPORARY_FAILURE

    def handle_EHLO(self, server, session, envelope, hostname: str, responses: list[str]) -> list[str]:  # noqa: ANN001, N802
        """The protocol handles pipelined commands (RFC 2920); this is where it says so."""
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    def handle_RSET(self, server, session, envelope) -> str:  # noqa: ANN001, N802
        self.tx = _Transaction()
        return "250 2.0.0 Ok"

    def handle_MAIL(self, server, session, envelope, address: str, mail_options: list[str]) -> str:  # noqa: ANN001, N802
        self.tx = _Transaction()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return replies.OK_SENDER

    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options: list[str]) -> str:  # noqa: ANN001, N802
        if len(envelope.rcpt_tos) >= self.ctx.settings.smtp_max_recipients:
            return replies.TOO_MANY_RECIPIENTS
        route = await self.ctx.routes.route(self.ctx.sessions, address)
        if route is None:
            return replies.UNKNOWN_RECIPIENT
        if not route.active:
            return replies.INACTIVE_RECIPIENT
        facts = await self._facts(session, envelope, need_spf=route.rules.require_spf)
        authenticated = route.policy_id is not None and route.policy_id in self.authenticated_policies
        decision = evaluate(route.rules, replace(facts, auth_ok=authenticated), stage="rcpt")
        if not decision.accepted:
            await self._record_rejections([(route.webhook_id, _log_reason(decision))], _sender(envelope))
            return decision.smtp_reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        self.tx.recipients.append(_Recipient(address=address, route=route))
        return replies.OK_RECIPIENT

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802
        raw: bytes = envelope.original_content or b""
        needs_dkim = self.ctx.settings.inbound_auth_checks or any(
            r.route.rules.require_dkim for r in self.tx.recipients)
        dkim = await asyncio.to_thread(check_dkim, self.ctx.dns, raw) if needs_dkim else None
        dmarc = "none"
        if self.ctx.settings.inbound_auth_checks:
            dmarc = await asyncio.to_thread(check_dmarc, self.ctx.dns, raw, self.tx.spf, dkim or ())
        facts = replace(await self._facts(session, envelope, need_spf=False), dkim=dkim)
        accepted: dict[str, str] = {}
        rejected: list[tuple[str, str]] = []
        refusal = None
        for recipient in self.tx.recipients:
            decision = evaluate(recipient.route.rules, facts, stage="data")
            if decision.accepted:
                accepted.setdefault(recipient.route.webhook_id, recipient.address)
            else:
                rejected.append((recipient.route.webhook_id, _log_reason(decision)))
                refusal = decision.smtp_reply
        sender = _sender(envelope)
        if not accepted:
            await self._record_rejections(rejected, sender)
            return refusal or replies.NO_VALID_RECIPIENTS
        receipt = messages.Receipt(
            mail_from=sender, rcpt_to=list(envelope.rcpt_tos), remote_ip=_peer_ip(session),
            helo=session.host_name or "", tls=session.ssl is not None, auth_user=self.authenticated_as,
            auth_results=_auth_results(self.tx.spf, dkim, dmarc))
        incoming = messages.Incoming(receipt=receipt, raw=raw, targets=accepted, rejected=rejected)
        try:
            await self.ctx.committer.write(incoming)
        except Exception as exc:  # noqa: BLE001 - never 250 unless committed; the sender retries
            log.error("event=message_not_stored id=%s error=%r", incoming.id, exc)
            return replies.TEMPORARY_FAILURE
        self.ctx.on_accepted()
        log.info("event=message_accepted id=%s size=%d webhooks=%d", incoming.id, len(raw), len(accepted))
        return replies.OK_QUEUED.format(message_id=incoming.id)

    # --- helpers ----------------------------------------------------------------------

    async def _record_rejections(self, rejected: list[tuple[str, str]], sender: str) -> None:
        try:
            async with transaction(self.ctx.sessions) as db:
                for webhook_id, reason in rejected:
                    messages.record_rejection(db, webhook_id=webhook_id, sender=sender, reason=reason)
        except Exception as exc:  # noqa: BLE001 - the refusal stands even if its log entry is lost
            log.error("event=rejection_not_logged error=%r", exc)

    async def _facts(self, session, envelope, *, need_spf: bool) -> SmtpFacts:  # noqa: ANN001
        if self.tx.spf is None and (need_spf or self.ctx.settings.inbound_auth_checks):
            self.tx.spf = await asyncio.to_thread(check_spf, self.ctx.dns, ip=_peer_ip(session),
                                                  mail_from=_sender(envelope), helo=session.host_name or "")
        return SmtpFacts(peer_ip=_peer_ip(session), auth_user=self.authenticated_as,
                         auth_ok=False, spf_result=self.tx.spf.result if self.tx.spf else None,
                         spf_domain=self.tx.spf.domain if self.tx.spf else None)


def _log_reason(decision: PolicyDecision) -> str:
    """For the delivery log: the check that failed, then why."""
    return f"{decision.reply_text}: {decision.reason}"


def _sender(envelope: Any) -> str:
    """The MAIL FROM address, "" for the null sender: the protocol keeps that as "<>" (as aiosmtpd
    did; it must be truthy to allow RCPT), Conduit documents and checks it as "" (SPF then uses
    the HELO name)."""
    address = envelope.mail_from or ""
    return "" if address == "<>" else address


def _peer_ip(session: Any) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")


def _auth_results(spf: SpfOutcome | None, dkim: tuple | None, dmarc: str) -> dict[str, Any]:
    return {
        "spf": {"result": spf.result, "domain": spf.domain} if spf else {"result": "none", "domain": ""},
        "dkim": [{"domain": d.domain, "result": "pass" if d.valid else "fail"} for d in (dkim or ())],
        "dmarc": dmarc,
    }
