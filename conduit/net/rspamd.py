"""A client of rspamd's HTTP protocol: the message goes to ``/checkv2`` with the SMTP facts as
rspamd's request headers (``Ip``, ``Helo``, ``From``, one ``Rcpt`` per recipient, ``User``), and
rspamd answers its verdict as JSON (score, required score, action, symbols).

The SMTP server waits for the verdict before it answers DATA, so the check runs on the event
loop (aiohttp) under a deadline; every way it can fail (refused connection, timeout, an answer
that is not a verdict) raises ``RspamdUnavailable``, which the caller turns into its fail mode.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

UNAVAILABLE = "unavailable"  # the action of a message rspamd could not check
ACTIONS = ("no action", "greylist", "add header", "rewrite subject", "soft reject", "reject")
_MAX_ANSWER_BYTES = 4 * 1024 * 1024  # a verdict with every symbol's options fits many times over


class RspamdUnavailable(Exception):
    """rspamd gave no verdict; the message says why, for the log."""


@dataclass(frozen=True)
class SpamVerdict:
    """rspamd's verdict on one message, or ``unavailable()`` when there is none."""

    action: str
    score: float | None = None
    required_score: float | None = None
    symbols: tuple[tuple[str, float], ...] = field(default=())  # (name, score), highest score first

    @classmethod
    def unavailable(cls) -> SpamVerdict:
        return cls(action=UNAVAILABLE)

    @property
    def checked(self) -> bool:
        return self.action != UNAVAILABLE

    def as_payload(self) -> dict[str, Any]:
        """The webhook payload's ``spam`` object (stored with the message as it is)."""
        return {"score": self.score, "required_score": self.required_score, "action": self.action,
                "symbols": [{"name": name, "score": score} for name, score in self.symbols]}


def parse_verdict(answer: Any) -> SpamVerdict:
    """The verdict in rspamd's ``/checkv2`` answer; RspamdUnavailable when it is not one."""
    if not isinstance(answer, dict):
        raise RspamdUnavailable("rspamd's answer is not a JSON object")
    action = answer.get("action")
    if action not in ACTIONS:
        raise RspamdUnavailable(f"rspamd's answer has no known action ({str(action)[:40]!r})")
    score, required = _number(answer.get("score")), _number(answer.get("required_score"))
    if score is None:
        raise RspamdUnavailable("rspamd's answer has no score")
    symbols = []
    raw_symbols = answer.get("symbols")
    for key, symbol in (raw_symbols.items() if isinstance(raw_symbols, dict) else ()):
        if isinstance(symbol, dict):
            name = symbol.get("name") if isinstance(symbol.get("name"), str) else key
            symbols.append((str(name), _number(symbol.get("score")) or 0.0))
    symbols.sort(key=lambda item: (-item[1], item[0]))
    return SpamVerdict(action=action, score=score, required_score=required, symbols=tuple(symbols))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _header_value(value: str) -> str:
    """SMTP gave these values; a header value holds no control characters (aiohttp would refuse
    the request)."""
    return "".join(ch for ch in value if ch >= " " and ch != "\x7f")


class RspamdClient:
    """Checks messages with one rspamd (its normal worker, or a proxy in front of several)."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.endpoint = url.rstrip("/") + "/checkv2"
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None  # made in the event loop, at the first check

    async def check(self, raw: bytes, *, ip: str, helo: str, mail_from: str, rcpt_to: Sequence[str],
                    user: str | None) -> SpamVerdict:
        headers = [("Ip", ip), ("Helo", helo), ("From", mail_from or "<>")]  # <>: the null sender
        headers += [("Rcpt", rcpt) for rcpt in rcpt_to]
        if user:
            headers.append(("User", user))
        headers = [(name, _header_value(value)) for name, value in headers if value]
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client().post(self.endpoint, data=raw, headers=headers) as response:
                    status, body = response.status, bytearray()
                    async for chunk in response.content.iter_chunked(64 * 1024):
                        body += chunk
                        if len(body) > _MAX_ANSWER_BYTES:
                            break
        except TimeoutError:
            raise RspamdUnavailable(f"no answer from rspamd within {self.timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise RspamdUnavailable(f"rspamd could not be reached: {exc}") from None
        if status != 200:
            raise RspamdUnavailable(f"rspamd answered HTTP {status}")
        if len(body) > _MAX_ANSWER_BYTES:
            raise RspamdUnavailable("rspamd's answer is too large")
        try:
            answer = json.loads(body)
        except ValueError:
            raise RspamdUnavailable("rspamd's answer is not JSON") from None
        return parse_verdict(answer)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No cookies, no proxies from the environment: rspamd is the operator's own service.
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
                                                  timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
