"""DNS for synchronous checkers (pyspf, dkimpy) that run on the event loop, with answers cached
for their TTL.

Why: those libraries look names up through a blocking function. Run in a thread, every message
holds a thread while it waits on DNS. Here the checker runs on the event loop with a lookup
function that answers from the cache and, when the cache cannot answer, raises `NeedRecord`;
`CachedResolver.run` then resolves that one name with dnspython's async resolver and runs the
checker again. A checker makes few lookups (SPF allows ten), so a cold check takes a few
rounds and a warm one takes one, with no DNS traffic and no thread.

The cache is dnspython's bounded `LRUCache`: positive answers live for their TTL, NXDOMAIN and
"no such record" answers for the TTL of the zone's SOA (RFC 2308; dnspython's default when the
server sends none). Failures (timeout, SERVFAIL) are not cached: the check reports them as
temporary errors and the next message asks again. A check whose inputs are all named by a key
(SPF: client IP, sender, HELO name) also keeps its result until the first answer it read runs
out. Domain verification (conduit/net/dns.py) stays uncached on purpose.

Positive answers read from that cache are also kept by name and type as text (`Answers`):
dnspython's cache keys are ``dns.name.Name`` objects, whose hash and comparison are Python
loops over every character of the name, paid again by every lookup of every message.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar, cast

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from conduit.net.dns import make_resolver

T = TypeVar("T")
Records = tuple[dns.rdata.Rdata, ...]  # empty: the name or the record type does not exist
MAX_ROUNDS = 128  # misses resolved for one check; SPF's own limits keep a real check far below
CHECK_BUDGET_SECONDS = 20.0  # all lookups of one check (RFC 7208 4.6.4 suggests at least 20 s)
MAX_RESULT_SECONDS = 3600.0  # a result kept by its key, at most (one that read no DNS at all)


class NeedRecord(Exception):
    """Raised by `Lookups.get` when the cache cannot answer: resolve it, then run the check again."""

    def __init__(self, name: str, rdtype: str) -> None:
        super().__init__(f"{rdtype} {name}")
        self.name = name
        self.rdtype = rdtype


class DnsFailure(Exception):
    """The lookup failed for now (timeout, SERVFAIL, no server answered, the check's time budget)."""


@functools.lru_cache(maxsize=4096)
def _key(name: str, rdtype: str) -> tuple[dns.name.Name, dns.rdatatype.RdataType] | None:
    """The cache key of a lookup; None for a name DNS cannot carry (empty or overlong labels...)."""
    try:
        return dns.name.from_text(name), dns.rdatatype.from_text(rdtype)
    except (dns.exception.DNSException, UnicodeError, ValueError):
        return None


class Answers:
    """Records found in the cache, by (name, record type) as text, until their answer's TTL runs
    out (bounded: cleared when full)."""

    def __init__(self, max_size: int) -> None:
        self._records: dict[tuple[str, str], tuple[float, Records]] = {}
        self._max_size = max_size

    def get(self, name: str, rdtype: str) -> tuple[float, Records] | None:
        """(expiration, records), or None when not kept or expired."""
        found = self._records.get((name, rdtype))
        if found is not None and found[0] <= time.time():
            self._records.pop((name, rdtype), None)  # a check in a thread may have dropped it first
            return None
        return found

    def keep(self, name: str, rdtype: str, expiration: float, records: Records) -> None:
        if len(self._records) >= self._max_size:
            self._records.clear()
        self._records[(name, rdtype)] = (expiration, records)


class Lookups:
    """One check's view of DNS: the shared cache, plus what was resolved for this check (kept
    even when its TTL is 0 or the cache evicted it meanwhile), plus this check's failures."""

    def __init__(self, cache: dns.resolver.LRUCache | None, deadline: float, answers: Answers | None = None) -> None:
        self._cache = cache
        self._answers = answers
        self._resolved: dict[tuple[str, str], Records | DnsFailure] = {}
        self.deadline = deadline
        self.exhausted = False  # too many rounds or past the deadline: misses become failures
        self.expires = math.inf  # when the first cached answer this check used runs out
        self.all_cached = True  # every answer came from the cache (so `expires` covers them all)

    def get(self, name: str, rdtype: str) -> Records:
        """The records of ``name`` (a tuple, empty when there are none); raises `NeedRecord` when
        they must be resolved first, `DnsFailure` when resolving them failed."""
        name = name.rstrip(".").lower()
        resolved = self._resolved.get((name, rdtype))
        if resolved is not None:
            self.all_cached = False
            if isinstance(resolved, DnsFailure):
                raise resolved
            return resolved
        if self._answers is not None and (kept := self._answers.get(name, rdtype)) is not None:
            self.expires = min(self.expires, kept[0])
            return kept[1]
        key = _key(name, rdtype)
        if key is None:
            return ()
        if self._cache is not None:
            answer = self._cache.get((key[0], key[1], dns.rdataclass.IN))
            if answer is not None:
                self.expires = min(self.expires, answer.expiration)
                records = tuple(answer.rrset) if answer.rrset is not None else ()
                if self._answers is not None:
                    self._answers.keep(name, rdtype, answer.expiration, records)
                return records
            nxdomain = self._cache.get((key[0], dns.rdatatype.ANY, dns.rdataclass.IN))
            if nxdomain is not None and nxdomain.response.rcode() == dns.rcode.NXDOMAIN:
                self.expires = min(self.expires, nxdomain.expiration)
                return ()
        self.all_cached = False
        if self.exhausted:
            raise DnsFailure(f"{rdtype} {name}: too many lookups or too slow for one check")
        raise NeedRecord(name, rdtype)

    def remember(self, name: str, rdtype: str, result: Records | DnsFailure) -> None:
        self._resolved[(name, rdtype)] = result


class CachedResolver:
    """An async dnspython resolver on CONDUIT_DNS_SERVERS with a TTL cache, and the driver that
    runs synchronous checks against it."""

    def __init__(self, servers: list[tuple[str, int]], *, timeout: float, cache_size: int) -> None:
        self.resolver: dns.asyncresolver.Resolver = make_resolver(servers, timeout)
        self.cache = dns.resolver.LRUCache(cache_size) if cache_size > 0 else None
        self.resolver.cache = self.cache
        self.answers = Answers(cache_size) if cache_size > 0 else None
        self._inflight: dict[tuple[str, str], asyncio.Future[Records | DnsFailure]] = {}
        self._results: OrderedDict[Hashable, tuple[float, Any]] | None = OrderedDict() if cache_size > 0 else None
        self._results_size = cache_size

    async def run(self, check: Callable[[Lookups], T], *, in_thread: bool = False, key: Hashable | None = None) -> T:
        """``check(lookups)``, again after each name it needed is resolved. ``in_thread`` runs it
        in a thread (for CPU-heavy checks of large messages); DNS is never waited on there.

        With a ``key`` that names every input of the check, its result is kept as long as the DNS
        answers it read: a check is a function of its inputs and of DNS, so the next one with the
        same inputs has the same result (a burst of mail from one sender is checked once)."""
        if key is not None and (found := self._remembered(key)) is not None:
            return cast(T, found[1])
        lookups = Lookups(self.cache, time.monotonic() + CHECK_BUDGET_SECONDS, self.answers)
        for _ in range(MAX_ROUNDS):
            try:
                result = await asyncio.to_thread(check, lookups) if in_thread else check(lookups)
                break
            except NeedRecord as need:
                if time.monotonic() > lookups.deadline:
                    lookups.exhausted = True
                    continue
                lookups.remember(need.name, need.rdtype, await self._resolve(need.name, need.rdtype))
        else:
            lookups.exhausted = True
            result = await asyncio.to_thread(check, lookups) if in_thread else check(lookups)
        if key is not None and lookups.all_cached and not lookups.exhausted:
            self._remember(key, min(lookups.expires, time.time() + MAX_RESULT_SECONDS), result)
        return result

    def _remembered(self, key: Hashable) -> tuple[float, Any] | None:
        if self._results is None or (found := self._results.get(key)) is None:
            return None
        if found[0] <= time.time():
            del self._results[key]
            return None
        self._results.move_to_end(key)
        return found

    def _remember(self, key: Hashable, expires: float, result: Any) -> None:
        if self._results is None:
            return
        self._results[key] = (expires, result)
        self._results.move_to_end(key)
        while len(self._results) > self._results_size:
            self._results.popitem(last=False)

    async def _resolve(self, name: str, rdtype: str) -> Records | DnsFailure:
        """One query per name and type at a time: concurrent checks that miss the same record
        (a burst of mail from one sender) share it."""
        key = (name, rdtype)
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(self._query(name, rdtype))
            self._inflight[key] = future
            future.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(future)

    async def _query(self, name: str, rdtype: str) -> Records | DnsFailure:
        try:
            answer = await self.resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return ()
        except dns.exception.Timeout:
            return DnsFailure(f"{rdtype} {name}: no answer within {self.resolver.lifetime:g} s")
        except dns.resolver.NoNameservers as exc:
            return DnsFailure(f"{rdtype} {name}: the DNS servers failed to answer ({_server_errors(exc)})")
        except dns.exception.DNSException as exc:
            return DnsFailure(f"{rdtype} {name}: {exc}")
        return tuple(answer.rrset) if answer.rrset is not None else ()


def _server_errors(exc: dns.resolver.NoNameservers) -> str:
    errors: list[Any] = exc.kwargs.get("errors", [])
    return ", ".join(sorted({str(error[3]) for error in errors})) or "no usable server"
