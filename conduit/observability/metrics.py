"""Every Prometheus metric of Conduit, defined once, and the few calls that record them.

Labels take values from small fixed sets only (reply reasons, route templates, status classes):
never an address, an account or a raw path, so the number of series stays bounded whatever the
traffic. ``configure(enabled=False)`` (CONDUIT_METRICS=false) makes every call here return at once.

In `conduit serve` the values live in files shared with the worker children
(conduit/observability/multiprocess.py); ``exposition`` adds them up at each scrape. Writing such
a value takes a lock and a write to a memory-mapped file, several times per SMTP message: so the
counters and the session gauge are added up in the process first and written at most once every
``FLUSH_SECONDS`` (and at each scrape of this process, and at exit). Histograms are observed at once.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Protocol, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from conduit.clock import now
from conduit.observability import multiprocess

CONTENT_TYPE = CONTENT_TYPE_LATEST
SMTP_COMMANDS = frozenset({"HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY", "EXPN",
                           "HELP", "AUTH", "STARTTLS"})
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds. Commits are milliseconds; deliveries span retries (up to hours) as well as a first POST.
_COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0, 36000.0,
                     86400.0)

smtp_connections = Counter("conduit_smtp_connections", "SMTP connections, by what became of them "
                           "(accepted, refused_busy: over CONDUIT_SMTP_MAX_SESSIONS, refused_proxy: not a "
                           "trusted proxy).", ["result"])
smtp_sessions = Gauge("conduit_smtp_sessions", "SMTP sessions open now.", multiprocess_mode="livesum")
smtp_commands = Counter("conduit_smtp_commands", "SMTP commands received, by verb (other: unknown verbs).",
                        ["command"])
smtp_replies = Counter("conduit_smtp_replies", "SMTP replies sent, by the command answered, the reply "
                       "code's class (2xx, 3xx, 4xx, 5xx) and a short reason.", ["command", "code_class", "reason"])
smtp_messages = Counter("conduit_smtp_messages_accepted", "Messages committed and answered 250.")
smtp_bytes = Counter("conduit_smtp_accepted_bytes", "Bytes of the messages committed and answered 250.")
smtp_commit_seconds = Histogram("conduit_smtp_commit_seconds", "Time from the end of DATA to the commit of "
                                "the message and its delivery jobs (the 250 follows).", buckets=_COMMIT_BUCKETS)
delivery_attempts = Counter("conduit_delivery_attempts", "Webhook delivery attempts, by outcome (delivered, "
                            "retrying, failed: given up) and HTTP status class (none: no answer).",
                            ["outcome", "status_class"])
delivery_seconds = Histogram("conduit_delivery_latency_seconds", "Time from a message's acceptance over SMTP "
                             "to its delivery (a 2xx answer), retries included.", buckets=_DELIVERY_BUCKETS)
delivery_retries = Counter("conduit_delivery_retries", "Failed attempts put back for another try.")
webhook_deactivations = Counter("conduit_webhook_deactivations", "Webhooks deactivated by the worker, by cause "
                                "(gone: 410 answered, failing: every delivery failed for "
                                "CONDUIT_DEACTIVATE_AFTER_DAYS).", ["cause"])
http_requests = Counter("conduit_http_requests", "API requests, by method, route template and status code.",
                        ["method", "route", "status"])
http_seconds = Histogram("conduit_http_request_duration_seconds", "API request duration, by method and route "
                         "template.", ["method", "route"], buckets=_HTTP_BUCKETS)

_enabled = True
FLUSH_SECONDS = 1.0


class _Pending:
    """Increments not yet written, by series; a flush is due on the loop that added the first."""

    def __init__(self) -> None:
        self.amounts: dict[Counter | Gauge, float] = {}
        self.due_on: asyncio.AbstractEventLoop | None = None

    def add(self, series: Counter | Gauge, amount: float = 1.0) -> None:
        amounts = self.amounts
        if series in amounts:  # a flush is due already: it was arranged when the series came in
            amounts[series] += amount
            return
        amounts[series] = amount
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside an event loop: nothing would flush it later
            self.flush()
            return
        if self.due_on is not loop:  # none due yet, or due on a loop that is gone (tests make many)
            self.due_on = loop
            loop.call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        self.due_on = None
        amounts, self.amounts = self.amounts, {}
        for series, amount in amounts.items():
            series.inc(amount)


_pending = _Pending()
atexit.register(_pending.flush)


def flush() -> None:
    """Write the increments still pending in this process now (a scrape does it first)."""
    _pending.flush()


def configure(*, enabled: bool) -> None:
    """CONDUIT_METRICS: off, nothing is recorded (and /metrics is not served)."""
    global _enabled  # noqa: PLW0603 - one switch per process, set at start-up
    _enabled = enabled


def enabled() -> bool:
    return _enabled


_Series = TypeVar("_Series", Counter, Histogram)


@functools.cache
def _child(metric: _Series, *labels: str) -> _Series:
    """A labelled series, looked up once (label values come from small fixed sets)."""
    return metric.labels(*labels)


# --- SMTP -------------------------------------------------------------------------------------

def smtp_connection(result: str) -> None:
    if _enabled:
        _pending.add(_child(smtp_connections, result))
        if result == "accepted":
            _pending.add(smtp_sessions)


def smtp_session_closed() -> None:
    if _enabled:
        _pending.add(smtp_sessions, -1)


def smtp_command(command: str) -> None:
    if _enabled:
        _pending.add(_command_series(command if command in SMTP_COMMANDS else "other"))


def smtp_reply(command: str, code: int, reason: str) -> None:
    if _enabled:
        _pending.add(_reply_series(command if command in SMTP_COMMANDS else "other", code, reason))


# Series looked up once per label values; the callers map unknown verbs to "other" first, so
# what a client sends cannot grow these caches.
@functools.cache
def _command_series(command: str) -> Counter:
    return smtp_commands.labels(command)


@functools.cache
def _reply_series(command: str, code: int, reason: str) -> Counter:
    return smtp_replies.labels(command, f"{code // 100}xx", reason)


def message_accepted(size: int, commit_seconds: float) -> None:
    if _enabled:
        _pending.add(smtp_messages)
        _pending.add(smtp_bytes, size)
        smtp_commit_seconds.observe(commit_seconds)


# --- deliveries -------------------------------------------------------------------------------

def delivery_attempt(status: int | None, *, outcome: str, accepted_at: datetime | None) -> None:
    """``outcome``: delivered, retrying or failed; ``accepted_at``: when SMTP took the message."""
    if not _enabled:
        return
    _pending.add(_child(delivery_attempts, outcome, f"{status // 100}xx" if status else "none"))
    if outcome == "retrying":
        _pending.add(delivery_retries)
    elif outcome == "delivered" and accepted_at is not None:
        delivery_seconds.observe(max(0.0, (now() - accepted_at).total_seconds()))


def webhook_deactivated(cause: str) -> None:
    if _enabled:
        _child(webhook_deactivations, cause).inc()


# --- the API ----------------------------------------------------------------------------------

def http_request(method: str, route: str, status: int, seconds: float) -> None:
    if _enabled:
        method = method if method in HTTP_METHODS else "other"
        _pending.add(_child(http_requests, method, route, str(status)))
        _child(http_seconds, method, route).observe(seconds)


# --- scrapes ----------------------------------------------------------------------------------

class Collector(Protocol):
    def collect(self) -> Iterable[Metric]: ...


class _Scrape:
    def __init__(self, sources: list[Collector]) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()


def exposition(extra: Iterable[Collector] = ()) -> bytes:
    """The text format of every metric of this process, or of all of `conduit serve`'s processes,
    plus ``extra`` collectors (the queue's, read at scrape time)."""
    flush()
    path = multiprocess.directory()
    base: Collector = MultiProcessCollector(None, path=path) if path else REGISTRY  # type: ignore[no-untyped-call]
    return generate_latest(_Scrape([base, *extra]))


def process_exited(pid: int) -> None:
    """A worker child of `conduit serve` is gone: its share of the live gauges goes with it."""
    path = multiprocess.directory()
    if path:
        mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
