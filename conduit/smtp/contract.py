"""What the SMTP protocol (conduit/smtp/protocol.py) and its handler (conduit/smtp/handler.py)
pass each other: the session, the mail transaction, the AUTH outcome, and the hooks.

The protocol owns the state and writes it: what a client said (HELO name, sender, recipients,
message), TLS, and what AUTH opened. The handler reads it and decides, hook by hook, with a
``Reply``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from conduit.smtp.replies import Reply


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A successful SMTP AUTH: the login, and the SMTP security policies whose credentials it gave."""

    login: str
    policies: frozenset[str]


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The handler's verdict on AUTH credentials: the policies they open (none: refused), or
    throttled (too many failures for this client or login; not even checked)."""

    policies: frozenset[str] = frozenset()
    throttled: bool = False


class Session:
    """One connection's state (a new one after STARTTLS, RFC 3207 4.2)."""

    __slots__ = ("auth", "extended_smtp", "host_name", "peer", "tls")

    def __init__(self, peer: tuple[Any, ...] | None, tls: dict[str, Any] | None = None) -> None:
        self.peer = peer  # the client's (host, port): behind a PROXY-protocol proxy, the one it reported
        self.host_name: str | None = None  # HELO/EHLO argument
        self.tls = tls  # cipher and peer certificate once STARTTLS is done
        self.extended_smtp = False  # EHLO, not HELO
        self.auth: Authenticated | None = None

    @property
    def remote_ip(self) -> str:
        peer = self.peer
        return str(peer[0]) if peer else ""


class Envelope:
    """One mail transaction, from MAIL to the end of DATA (or RSET)."""

    __slots__ = ("content", "mail_from", "mail_options", "rcpt_options", "rcpt_tos", "smtp_utf8")

    def __init__(self) -> None:
        self.mail_from: str | None = None  # "" for the null sender (MAIL FROM:<>)
        self.mail_options: list[str] = []
        self.rcpt_tos: list[str] = []
        self.rcpt_options: list[str] = []
        self.content: bytes = b""  # dot-unstuffed, as received
        self.smtp_utf8 = False


class Handler(Protocol):
    """The hooks the protocol calls. ``mail`` answers at once; ``rcpt``, ``data`` and
    ``authenticate`` may wait for the database or DNS. A positive reply to MAIL or RCPT makes
    the protocol record the sender or recipient in the envelope."""

    def mail(self, session: Session, envelope: Envelope, address: str) -> Reply: ...

    async def rcpt(self, session: Session, envelope: Envelope, address: str) -> Reply: ...

    async def data(self, session: Session, envelope: Envelope) -> Reply: ...

    async def authenticate(self, session: Session, login: str, password: str) -> AuthResult: ...

    def refused(self, session: Session, envelope: Envelope, reply: Reply) -> None:
        """The protocol refused the transaction's message itself (too big) with ``reply``: for
        the handler to note. Must not raise or wait."""
        ...

    def failed(self, error: Exception) -> Reply:
        """An unexpected error in a hook (or the protocol): logged, and the reply to send."""
        ...
