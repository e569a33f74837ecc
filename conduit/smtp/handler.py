"""The SMTP protocol's hooks (conduit/smtp/contract.py's ``Handler``) → services. One handler
per connection, so per-session state lives here.

Recipients are checked at RCPT (routing, source IP, SMTP AUTH, SPF); DKIM after DATA, then,
with rspamd, the spam verdict. The message and its delivery jobs are committed before the 250
reply; any unexpected error is logged and answered 451 4.3.0, so the sending server keeps the
message and retries.

One reply after DATA answers for every recipient: 250 when at least one recipient's webhook
takes the message (each recipient refused at DATA gets a ``rejected`` entry in its webhook's
delivery log), else the refusal, a temporary one (451) if any recipient's was, so the sender
tries again. When a recipient's webhook is synchronous, its receiver's answer is the reply for
the whole transaction (conduit/services/synchronous.py); a transaction takes recipients of one
synchronous webhook only, and RCPT defers those of a second with 452.

Every refusal of mail meant for an account (its unknown addresses, paused webhooks, policies,
spam filter, a message too big, too many recipients) is also handed to the refusal recorder
(conduit/services/refusals.py), which writes it in the background: the reply never waits for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from conduit.config import Settings
from conduit.mail.authentication import DkimResult, DmarcOutcome, InboundChecks, SpfOutcome
from conduit.mail.subject import subject_of
from conduit.net.rspamd import RspamdClient, RspamdUnavailable, SpamVerdict
from conduit.observability import metrics
from conduit.services import messages, policies, refusals, routing, synchronous
from conduit.services.policy_rules import PolicyDecision, SmtpFacts, evaluate, judge_spam
from conduit.services.refusals import RefusalRecorder
from conduit.services.route_cache import RouteCache
from conduit.smtp import replies
from conduit.smtp.contract import AuthResult, Envelope, Session
from conduit.smtp.replies import Reply
from conduit.storage.database import Database
from conduit.storage.group_commit import GroupCommit
from conduit.storage.refusals import RefusalRecord

log = logging.getLogger("conduit.smtp")


@dataclass(frozen=True)
class SmtpContext:
    """What every connection's handler shares."""

    settings: Settings
    database: Database
    committer: GroupCommit[messages.Incoming]  # stores accepted messages (group commit)
    checks: InboundChecks  # SPF, DKIM, DMARC with their DNS cache
    routes: RouteCache  # the routes RCPT found, shared by this server's sessions
    on_accepted: Callable[[], None] = lambda: None  # wakes an in-process worker
    spam: RspamdClient | None = None  # rspamd, when CONDUIT_RSPAMD_URL is set
    refusals: RefusalRecorder | None = None  # records refused mail per account (in the background)
    sync: synchronous.SyncContext | None = None  # for synchronous webhooks (none: their mail is deferred)


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

    # --- hooks ------------------------------------------------------------------------

    def failed(self, error: Exception) -> Reply:
        log.error("event=smtp_error error=%r", error, exc_info=error)
        return replies.TEMPORARY_FAILURE

    async def authenticate(self, session: Session, login: str, password: str) -> AuthResult:
        async with self.ctx.database.transaction() as db:
            outcome = await policies.authenticate_smtp(db, login, password, ip=session.remote_ip)
        return AuthResult(policies=outcome.policies, throttled=outcome.throttled)

    def mail(self, session: Session, envelope: Envelope, address: str) -> Reply:
        self.tx = _Transaction()
        return replies.OK_SENDER

    async def rcpt(self, session: Session, envelope: Envelope, address: str) -> Reply:
        if len(envelope.rcpt_tos) >= self.ctx.settings.smtp_max_recipients:
            return self._refused(session, envelope, address, replies.TOO_MANY_RECIPIENTS,
                                 refusals.TOO_MANY_RECIPIENTS)
        route = await self.ctx.routes.route(self.ctx.database.sessions, address)
        if route is None:
            return self._refused(session, envelope, address, replies.UNKNOWN_RECIPIENT, refusals.UNKNOWN_RECIPIENT)
        if not route.active:
            return self._refused(session, envelope, address, replies.INACTIVE_RECIPIENT, refusals.INACTIVE_WEBHOOK,
                                 route=route)
        if route.synchronous and any(r.route.synchronous and r.route.webhook_id != route.webhook_id
                                     for r in self.tx.recipients):
            return replies.ONE_SYNCHRONOUS_WEBHOOK
        facts = await self._facts(session, envelope, need_spf=route.rules.require_spf)
        authenticated = route.policy_id is not None and session.auth is not None \
            and route.policy_id in session.auth.policies
        decision = evaluate(route.rules, replace(facts, auth_ok=authenticated), stage="rcpt")
        if not decision.accepted:
            await self._record_rejections([(route.webhook_id, _log_reason(decision))], _sender(envelope))
            return self._refused(session, envelope, address, _refusal(decision), _refusal_reason(decision),
                                 route=route, detail=decision.reason or "")
        self.tx.recipients.append(_Recipient(address=address, route=route))
        return replies.OK_RECIPIENT

    async def data(self, session: Session, envelope: Envelope) -> Reply:
        raw: bytes = envelope.content
        needs_dkim = self.ctx.settings.inbound_auth_checks or any(
            r.route.rules.require_dkim for r in self.tx.recipients)
        dkim = await self.ctx.checks.dkim(raw) if needs_dkim else None
        dmarc = None
        if self.ctx.settings.inbound_auth_checks:
            dmarc = await self.ctx.checks.dmarc(raw, self.tx.spf, dkim or ())
        facts = replace(await self._facts(session, envelope, need_spf=False), dkim=dkim)
        decisions = [(recipient, evaluate(recipient.route.rules, facts, stage="data"))
                     for recipient in self.tx.recipients]
        sender = _sender(envelope)
        spam: SpamVerdict | None = None
        if self.ctx.spam is not None and any(decision.accepted for _, decision in decisions):
            spam = await self._spam_verdict(session, envelope)
            if not spam.checked and self.ctx.settings.rspamd_fail == "closed":
                for recipient in self.tx.recipients:
                    self._refused(session, envelope, recipient.address, replies.SPAM_CHECK_UNAVAILABLE,
                                  refusals.SPAM_CHECK_UNAVAILABLE, route=recipient.route)
                return replies.SPAM_CHECK_UNAVAILABLE
            decisions = [(recipient, judge_spam(recipient.route.rules, spam) if decision.accepted else decision)
                         for recipient, decision in decisions]
        accepted: dict[str, list[str]] = {}
        rejected: list[tuple[str, str]] = []
        for recipient, decision in decisions:
            if decision.accepted:
                routed = accepted.setdefault(recipient.route.webhook_id, [])
                if recipient.address not in routed:
                    routed.append(recipient.address)
            else:
                rejected.append((recipient.route.webhook_id, _log_reason(decision)))
                self._refused(session, envelope, recipient.address, _refusal(decision), _refusal_reason(decision),
                              route=recipient.route, detail=decision.reason or "")
        if not accepted:
            await self._record_rejections(rejected, sender)
            refused = [decision for _, decision in decisions if not decision.accepted]
            refusal = next((d for d in refused if d.temporary), refused[-1] if refused else None)
            return _refusal(refusal) if refusal else replies.NO_VALID_RECIPIENTS
        receipt = messages.Receipt(
            mail_from=sender, rcpt_to=list(envelope.rcpt_tos), remote_ip=session.remote_ip,
            helo=session.host_name or "", tls=session.tls is not None, auth_user=_auth_user(session),
            auth_results=_auth_results(self.tx.spf, dkim, dmarc), spam=spam.as_payload() if spam else None,
            subject=subject_of(raw))
        incoming = messages.Incoming(receipt=receipt, raw=raw, targets=accepted, rejected=rejected)
        synchronous_id = next((r.route.webhook_id for r in self.tx.recipients
                               if r.route.synchronous and r.route.webhook_id in accepted), None)
        if synchronous_id is not None:
            reply = await self._deliver_now(incoming, synchronous_id)
            if reply.reason == "sync_refused":  # the receiver said no: the account sees it with its refusals
                for recipient in self.tx.recipients:
                    if recipient.route.webhook_id == synchronous_id:
                        self._refused(session, envelope, recipient.address, reply, refusals.RECEIVER_REFUSED,
                                      route=recipient.route)
            return reply
        started = time.perf_counter()
        try:
            await self.ctx.committer.write(incoming)
        except Exception as exc:  # noqa: BLE001 - never 250 unless committed; the sender retries
            log.error("event=message_not_stored id=%s error=%r", incoming.id, exc)
            return replies.TEMPORARY_FAILURE
        self.ctx.on_accepted()
        metrics.message_accepted(len(raw), time.perf_counter() - started)
        log.info("event=message_accepted id=%s size=%d webhooks=%d", incoming.id, len(raw), len(accepted))
        return replies.queued(incoming.id)

    def refused(self, session: Session, envelope: Envelope, reply: Reply) -> None:
        """The protocol refused the message (too big): noted for each recipient taken."""
        for recipient in self.tx.recipients:
            self._refused(session, envelope, recipient.address, reply, refusals.TOO_BIG, route=recipient.route)

    # --- helpers ----------------------------------------------------------------------

    async def _deliver_now(self, incoming: messages.Incoming, webhook_id: str) -> Reply:
        """A synchronous webhook's receiver answers for the whole transaction."""
        if self.ctx.sync is None:
            log.error("event=synchronous_delivery_unavailable id=%s", incoming.id)
            return replies.SYNC_DEFERRED
        try:
            result = await synchronous.deliver(self.ctx.sync, incoming, webhook_id)
        except Exception as exc:  # noqa: BLE001 - never 250 unless stored and recorded; the sender retries
            log.error("event=synchronous_delivery_failed id=%s error=%r", incoming.id, exc)
            return replies.TEMPORARY_FAILURE
        if result.verdict == "refused":
            return replies.sync_refused(result.reason, result.status)
        if result.verdict == "deferred":
            return replies.SYNC_DEFERRED
        if len(incoming.targets) > 1:
            self.ctx.on_accepted()  # the queued-mode webhooks' jobs
        metrics.message_accepted(len(incoming.raw), result.commit_seconds)
        return replies.queued(result.message_id)

    def _refused(self, session: Session, envelope: Envelope, address: str, reply: Reply, reason: str, *,
                 route: routing.Route | None = None, detail: str = "") -> Reply:
        """Note the refusal of ``address`` for its account (written in the background) and
        return ``reply`` unchanged, whatever happens to the note."""
        if self.ctx.refusals is None:
            return reply
        try:
            self.ctx.refusals.record(RefusalRecord(
                reason=reason, reply_code=reply.code, reply_text="\n".join(reply.lines), sender=_sender(envelope),
                recipient=routing.normalized(address), client_ip=session.remote_ip,
                account_id=route.account_id if route else None, webhook_id=route.webhook_id if route else None,
                detail=detail))
        except Exception as exc:  # noqa: BLE001 - the reply stands even if its record is lost
            log.error("event=refusal_not_recorded reason=%s error=%r", reason, exc)
        return reply

    async def _record_rejections(self, rejected: list[tuple[str, str]], sender: str) -> None:
        try:
            async with self.ctx.database.transaction() as db:
                for webhook_id, reason in rejected:
                    messages.record_rejection(db, webhook_id=webhook_id, sender=sender, reason=reason)
        except Exception as exc:  # noqa: BLE001 - the refusal stands even if its log entry is lost
            log.error("event=rejection_not_logged error=%r", exc)

    async def _spam_verdict(self, session: Session, envelope: Envelope) -> SpamVerdict:
        """rspamd's verdict, or an unavailable one (logged) when rspamd gave none."""
        assert self.ctx.spam is not None
        try:
            return await self.ctx.spam.check(envelope.content, ip=session.remote_ip, helo=session.host_name or "",
                                             mail_from=_sender(envelope), rcpt_to=envelope.rcpt_tos,
                                             user=_auth_user(session))
        except RspamdUnavailable as exc:
            log.warning("event=spam_check_unavailable fail=%s error=%r", self.ctx.settings.rspamd_fail, str(exc))
            return SpamVerdict.unavailable()

    async def _facts(self, session: Session, envelope: Envelope, *, need_spf: bool) -> SmtpFacts:
        if self.tx.spf is None and (need_spf or self.ctx.settings.inbound_auth_checks):
            self.tx.spf = await self.ctx.checks.spf(ip=session.remote_ip, mail_from=_sender(envelope),
                                                    helo=session.host_name or "")
        return SmtpFacts(peer_ip=session.remote_ip, auth_user=_auth_user(session),
                         auth_ok=False, spf_result=self.tx.spf.result if self.tx.spf else None,
                         spf_domain=self.tx.spf.domain if self.tx.spf else None)


def _log_reason(decision: PolicyDecision) -> str:
    """For the delivery log: the check that failed, then why."""
    return f"{decision.reply_text}: {decision.reason}"


def _refusal_reason(decision: PolicyDecision) -> str:
    return refusals.SPAM if decision.check == "spam" else refusals.POLICY


def _refusal(decision: PolicyDecision) -> Reply:
    assert decision.reply_code is not None and decision.enhanced is not None and decision.reply_text is not None
    return replies.policy_refusal(decision.reply_code, decision.enhanced, decision.reply_text,
                                  check=decision.check or "check")


def _sender(envelope: Envelope) -> str:
    """The MAIL FROM address, "" for the null sender (SPF then uses the HELO name)."""
    return envelope.mail_from or ""


def _auth_user(session: Session) -> str | None:
    return session.auth.login if session.auth is not None else None


def _auth_results(spf: SpfOutcome | None, dkim: tuple[DkimResult, ...] | None,
                  dmarc: DmarcOutcome | None) -> dict[str, Any]:
    dmarc = dmarc or DmarcOutcome()
    return {
        "spf": {"result": spf.result, "domain": spf.domain} if spf else {"result": "none", "domain": ""},
        "dkim": [{"domain": d.domain, "result": "pass" if d.valid else "fail"} for d in (dkim or ())],
        "dmarc": {"result": dmarc.result, "policy": dmarc.policy, "domain": dmarc.domain},
    }
