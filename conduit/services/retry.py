"""The retry policy: a pure function from one attempt's outcome to what happens next.

No I/O and no clock (the caller passes ``now`` where a date is involved), so every
rule is tested directly. The schedule lists the delays *before* each attempt: the
default is immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h, eight
attempts over about 28 hours, after which the delivery is given up.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

DEFAULT_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.10  # ±10 %, so endpoints that failed together are not retried in lockstep
RETRYABLE_STATUSES = frozenset({408, 429})  # plus every 5xx
GONE = 410

_SYSTEM_RANDOM = secrets.SystemRandom()


@dataclass(frozen=True)
class RetryDecision:
    """What to do after an attempt.

    ``retry_in`` seconds until the next attempt (None: no further attempt);
    ``give_up`` the delivery has failed for good; ``deactivate`` the webhook must be
    switched off (410 Gone); ``reason`` one sentence for the delivery log.
    """

    retry_in: float | None
    give_up: bool
    deactivate: bool
    reason: str

    @property
    def delivered(self) -> bool:
        return self.retry_in is None and not self.give_up


def decide(
    *,
    status: int | None,
    error: str | None,
    attempt: int,
    retry_after: float | None,
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE,
    rng: random.Random | None = None,
) -> RetryDecision:
    """Decide after attempt number ``attempt`` (1-based) that ended with ``status``
    (None: no HTTP response, ``error`` says why).

    2xx is delivered. No response, 408, 429 and 5xx are retried after
    ``schedule[attempt]`` ±10 %; a ``Retry-After`` (seconds, see ``parse_retry_after``)
    is honoured but clamped between 1× and 2× that delay, as Svix does, so a receiver
    can slow us down but neither stall a delivery for days nor make us hammer it.
    Any other status (3xx: redirects are not followed; 4xx) fails at once, and
    410 Gone also deactivates the webhook.
    """
    if attempt < 1:
        raise ValueError("attempt counts the attempts made so far, starting at 1")
    outcome = "no response" + (f" ({error})" if error else "") if status is None else f"HTTP {status}"
    if status is not None and 200 <= status < 300:
        return RetryDecision(retry_in=None, give_up=False, deactivate=False, reason=f"delivered ({outcome})")
    if status == GONE:
        return RetryDecision(
            retry_in=None, give_up=True, deactivate=True, reason=f"{outcome}: the endpoint is gone, webhook deactivated"
        )
    if not _retryable(status):
        redirect = status is not None and 300 <= status < 400
        why = " (redirects are not followed; point the webhook at the final URL)" if redirect else ""
        return RetryDecision(retry_in=None, give_up=True, deactivate=False, reason=f"{outcome}: not retried{why}")
    if attempt >= len(schedule):
        return RetryDecision(
            retry_in=None, give_up=True, deactivate=False, reason=f"{outcome}: gave up after {attempt} attempts"
        )
    delay = _delay(schedule[attempt], retry_after, rng or _SYSTEM_RANDOM)
    return RetryDecision(
        retry_in=delay,
        give_up=False,
        deactivate=False,
        reason=f"{outcome}: attempt {attempt} of {len(schedule)} failed, retrying in {delay:.0f} s",
    )


def _retryable(status: int | None) -> bool:
    return status is None or status in RETRYABLE_STATUSES or 500 <= status < 600


def _delay(scheduled: float, retry_after: float | None, rng: random.Random) -> float:
    delay = scheduled * rng.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        delay = min(max(retry_after, delay), 2 * delay)
    return max(0.0, delay)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP-date,
    RFC 9110 10.2.3); a date in the past gives 0, anything unreadable None."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # HTTP-dates are GMT; the asctime() form carries no zone
        moment = moment.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())
