"""SMTP security policy rules: which senders may deliver to a webhook's address.

Pure decision logic: the SMTP layer gathers the facts (peer IP, AUTH outcome, SPF
and DKIM results) and asks ``evaluate`` at RCPT and at end of DATA. Anything a
required check needs but the facts lack is a refusal: policies fail closed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from conduit.mail.authentication import DkimResult
from conduit.net.addresses import IPNetwork, ip_allowed, parse_ip_list
from conduit.net.domain_names import normalize_domain_name
from conduit.net.rspamd import SpamVerdict

SPAM_ACTIONS = ("deliver", "reject")
TEMPORARY_SPAM_ACTIONS = frozenset({"soft reject", "greylist"})  # rspamd's: try again later

MAX_USERNAME = 64
MIN_PASSWORD = 12  # the password is all that guards the relay: no throttle, and it is typed by machines
MAX_PASSWORD = 256


def parse_domain_list(value: str | None) -> list[str]:
    """Comma- or whitespace-separated domain names, normalised and de-duplicated (order kept)."""
    domains: list[str] = []
    for entry in re.split(r"[\s,]+", (value or "").strip()):
        if entry:
            domain = normalize_domain_name(entry)
            if domain not in domains:
                domains.append(domain)
    return domains


def parse_smtp_credentials(value: str) -> tuple[str, str]:
    """Split ``username:password`` at the first colon (so the password may contain colons).

    The username: 1-64 characters, no whitespace, colon or control characters. The
    password: 12-256 characters without control characters (NUL would break AUTH PLAIN).
    Error messages never repeat the password.
    """
    if not isinstance(value, str) or ":" not in value:
        raise ValueError("smtp_credentials must be 'username:password'")
    username, _, password = value.partition(":")
    if not username:
        raise ValueError("smtp_credentials: the username (before the colon) is empty")
    if len(username) > MAX_USERNAME:
        raise ValueError(f"smtp_credentials: the username is longer than {MAX_USERNAME} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in username):
        raise ValueError(f"smtp_credentials: the username {username!r} must not contain spaces or control characters")
    if not password:
        raise ValueError("smtp_credentials: the password (after the first colon) is empty")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"smtp_credentials: the password must be at least {MIN_PASSWORD} characters long")
    if len(password) > MAX_PASSWORD:
        raise ValueError(f"smtp_credentials: the password is longer than {MAX_PASSWORD} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in password):
        raise ValueError("smtp_credentials: the password must not contain control characters")
    return username, password


@dataclass(frozen=True)
class SmtpFacts:
    """What the SMTP layer knows about the session; None means "not evaluated"."""

    peer_ip: str
    auth_user: str | None = None
    auth_ok: bool = False
    spf_result: str | None = None
    spf_domain: str | None = None
    dkim: tuple[DkimResult, ...] | None = None


@dataclass(frozen=True)
class PolicyRules:
    """A stored SMTP security policy in parsed form. The default instance accepts everything."""

    require_smtp_auth: bool = False
    smtp_username: str | None = None
    allowed_networks: tuple[IPNetwork, ...] = ()
    require_spf: bool = False
    allowed_spf_domains: tuple[str, ...] = ()
    require_dkim: bool = False
    allowed_dkim_domains: tuple[str, ...] = ()
    spam_action: str = "deliver"  # deliver: pass rspamd's verdict on; reject: refuse what rspamd refuses
    spam_threshold: float | None = None  # with reject: a score at or above this is refused (rspamd's own is not)

    @classmethod
    def from_stored(
        cls,
        *,
        require_smtp_auth: bool = False,
        smtp_username: str | None = None,
        allowed_source_ips: str | None = None,
        require_spf: bool = False,
        allowed_spf_domains: str | None = None,
        require_dkim: bool = False,
        allowed_dkim_domains: str | None = None,
        spam_action: str = "deliver",
        spam_threshold: float | None = None,
    ) -> PolicyRules:
        """Build from the policy's stored columns (list fields are the API's strings)."""
        return cls(
            require_smtp_auth=require_smtp_auth,
            smtp_username=smtp_username,
            allowed_networks=tuple(parse_ip_list(allowed_source_ips or "")),
            require_spf=require_spf,
            allowed_spf_domains=tuple(parse_domain_list(allowed_spf_domains)),
            require_dkim=require_dkim,
            allowed_dkim_domains=tuple(parse_domain_list(allowed_dkim_domains)),
            spam_action=spam_action,
            spam_threshold=spam_threshold,
        )


@dataclass(frozen=True)
class PolicyDecision:
    """Outcome of a check. On refusal ``reply_code``/``enhanced``/``reply_text`` form the SMTP
    reply (fixed wording, safe to show the sender) and ``reason`` is the detailed sentence
    for the account's delivery log."""

    accepted: bool
    check: str | None = None
    reply_code: int | None = None
    enhanced: str | None = None
    reply_text: str | None = None
    reason: str | None = None

    @property
    def temporary(self) -> bool:
        """A 4xx refusal: the sending server keeps the message and tries again."""
        return not self.accepted and self.reply_code is not None and 400 <= self.reply_code < 500

    @property
    def smtp_reply(self) -> str | None:
        if self.accepted:
            return None
        return f"{self.reply_code} {self.enhanced} {self.reply_text}"


ACCEPT = PolicyDecision(accepted=True)


def _refuse(check: str, code: int, enhanced: str, text: str, reason: str) -> PolicyDecision:
    return PolicyDecision(
        accepted=False, check=check, reply_code=code, enhanced=enhanced, reply_text=text, reason=reason
    )


def evaluate(rules: PolicyRules, facts: SmtpFacts, *, stage: Literal["rcpt", "data"]) -> PolicyDecision:
    """Apply ``rules`` to ``facts``: at ``rcpt`` source IP, then SMTP AUTH, then SPF;
    at ``data`` DKIM (signatures are only known once the message has arrived).
    The first failing check decides."""
    checks: tuple[Callable[[PolicyRules, SmtpFacts], PolicyDecision | None], ...]
    if stage == "rcpt":
        checks = (_check_source_ip, _check_auth, _check_spf)
    elif stage == "data":
        checks = (_check_dkim,)
    else:
        raise ValueError(f"unknown policy stage '{stage}'")
    for check in checks:
        decision = check(rules, facts)
        if decision is not None:
            return decision
    return ACCEPT


def _check_source_ip(rules: PolicyRules, facts: SmtpFacts) -> PolicyDecision | None:
    if rules.allowed_networks and not ip_allowed(facts.peer_ip or "", rules.allowed_networks):
        return _refuse(
            "source_ip",
            550,
            "5.7.1",
            "source IP not allowed",
            f"connection from {facts.peer_ip or 'an unknown address'} is not in the policy's allowed source IPs",
        )
    return None


def _check_auth(rules: PolicyRules, facts: SmtpFacts) -> PolicyDecision | None:
    """RFC 4954 answers MAIL/RCPT with 530 5.7.0 when authentication is required; 535 is
    only a reply to the AUTH command itself, which the SMTP layer already sent on a bad
    password. So an unauthenticated session and a session authenticated as another user
    both get 530 here; the log reason tells them apart."""
    if not rules.require_smtp_auth:
        return None
    if not rules.smtp_username:
        reason = "the policy requires SMTP authentication but has no credentials configured"
    elif facts.auth_user is None:
        reason = "the client did not authenticate"
    elif facts.auth_user != rules.smtp_username:
        # Before auth_ok: a session authenticated for another policy is not ok for this one,
        # and the log should say whose user it was, not that the authentication failed.
        reason = f"authenticated as '{facts.auth_user}', but the policy requires '{rules.smtp_username}'"
    elif not facts.auth_ok:
        reason = f"SMTP authentication as '{facts.auth_user}' failed"
    else:
        return None
    return _refuse("smtp_auth", 530, "5.7.0", "Authentication required", reason)


def _check_spf(rules: PolicyRules, facts: SmtpFacts) -> PolicyDecision | None:
    """SPF must ``pass``. A ``temperror`` is answered 451 4.7.24 so the sender retries
    (RFC 7372); everything else is 550 5.7.23. With allowed domains, the SPF-checked
    domain must be one of them or a subdomain (like DMARC relaxed alignment)."""
    if not rules.require_spf:
        return None
    result = (facts.spf_result or "").strip().lower()
    if not result:
        return _refuse("spf", 550, "5.7.23", "SPF check failed", "SPF was not evaluated for this message")
    if result == "temperror":
        return _refuse(
            "spf",
            451,
            "4.7.24",
            "SPF temporary error, try again later",
            f"SPF check for {facts.spf_domain or 'the sender'} had a temporary DNS error",
        )
    if result != "pass":
        return _refuse(
            "spf",
            550,
            "5.7.23",
            "SPF check failed",
            f"SPF result for {facts.spf_domain or 'the sender'} is '{result}', 'pass' is required",
        )
    if rules.allowed_spf_domains and not _domain_allowed(facts.spf_domain, rules.allowed_spf_domains):
        return _refuse(
            "spf",
            550,
            "5.7.23",
            "SPF check failed",
            f"SPF passed for {facts.spf_domain or 'an unknown domain'}, which is not among the allowed SPF domains",
        )
    return None


def _check_dkim(rules: PolicyRules, facts: SmtpFacts) -> PolicyDecision | None:
    """At least one valid signature whose d= domain is allowed (same subdomain rule as SPF);
    an empty allow-list takes any valid signature."""
    if not rules.require_dkim:
        return None
    text = "no valid DKIM signature from an allowed domain"
    if facts.dkim is None:
        return _refuse("dkim", 550, "5.7.20", text, "DKIM was not evaluated for this message")
    if not facts.dkim:
        return _refuse("dkim", 550, "5.7.20", text, "the message has no DKIM signature")
    valid = [signature.domain for signature in facts.dkim if signature.valid]
    if not valid:
        domains = ", ".join(sorted({signature.domain for signature in facts.dkim}))
        return _refuse("dkim", 550, "5.7.20", text, f"no DKIM signature verified (signed by {domains})")
    if rules.allowed_dkim_domains and not any(_domain_allowed(d, rules.allowed_dkim_domains) for d in valid):
        domains = ", ".join(sorted(set(valid)))
        return _refuse(
            "dkim",
            550,
            "5.7.20",
            text,
            f"valid DKIM signatures are from {domains}, none of which is among the allowed DKIM domains",
        )
    return None


def judge_spam(rules: PolicyRules, verdict: SpamVerdict) -> PolicyDecision:
    """rspamd's verdict under the policy. ``deliver`` takes every message (the verdict goes to
    the webhook); ``reject`` refuses rspamd's ``reject`` with 550 5.7.1 and defers its ``soft
    reject`` and ``greylist`` with 451 4.7.1. A ``spam_threshold`` replaces rspamd's reject
    score: a score at or above it is refused, rspamd's ``reject`` below it is not. A message
    rspamd could not check is not refused here (the fail mode, CONDUIT_RSPAMD_FAIL, decides)."""
    if rules.spam_action != "reject" or not verdict.checked or verdict.score is None:
        return ACCEPT
    scored = f"rspamd scored the message {verdict.score:g} (action '{verdict.action}')"
    if rules.spam_threshold is not None:
        rejected = verdict.score >= rules.spam_threshold
        why = f"{scored}, at or above the policy's spam_threshold of {rules.spam_threshold:g}"
    else:
        rejected = verdict.action == "reject"
        why = f"{scored}; the policy refuses what rspamd rejects"
    if rejected:
        return _refuse("spam", 550, "5.7.1", "Message refused as spam", why)
    if verdict.action in TEMPORARY_SPAM_ACTIONS:
        return _refuse("spam", 451, "4.7.1", "Message deferred by the spam filter, try again later",
                       f"{scored}; the policy defers what rspamd defers")
    return ACCEPT


def _domain_allowed(domain: str | None, allowed: tuple[str, ...]) -> bool:
    if not domain:
        return False
    try:
        name = normalize_domain_name(domain)
    except ValueError:
        return False
    return any(name == entry or name.endswith("." + entry) for entry in allowed)
