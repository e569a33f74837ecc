"""CPU per message of the inbound checks (SPF, DKIM, DMARC) with warm caches (`make bench-checks`).

The sending domain of `make bench` (conduit_bench/mail_auth.py: SPF through two includes, a
2048-bit DKIM key, DMARC p=reject) on its loopback DNS server; Conduit's checks
(conduit/mail/authentication.py) run on one event loop, first once to fill the caches, then
``CHECKS_MESSAGES`` times (2,000) per case, timed with ``time.process_time``. Cases: the same
sender for every message (SPF and DMARC results are then kept, as for a burst from one sender)
and a new sender address for each; 4 KiB and 100 KiB bodies. Also DKIM alone: Conduit's verifier
(conduit/mail/dkim_verifier.py) against dkimpy's own, on the same signed message.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

import dkim

from conduit.mail.authentication import InboundChecks
from conduit.mail.dkim_verifier import DkimVerifier, KeyCache
from conduit_bench.mail_auth import SELECTOR, SENDER_DOMAIN, SendingDomain

MESSAGES = int(os.environ.get("CHECKS_MESSAGES") or 2000)


def _per_message(run: Callable[[int], object]) -> float:
    """Microseconds of CPU per call of ``run(i)``."""
    started = time.process_time()
    for i in range(MESSAGES):
        run(i)
    return (time.process_time() - started) / MESSAGES * 1e6


async def _per_message_async(run: Callable[[int], Awaitable[object]]) -> float:
    started = time.process_time()
    for i in range(MESSAGES):
        await run(i)
    return (time.process_time() - started) / MESSAGES * 1e6


async def _checks(sending: SendingDomain) -> None:
    checks = InboundChecks([(sending.dns.host, sending.dns.port)], timeout=3.0, cache_size=10_000)
    for size in (4 * 1024, 100 * 1024):
        raw = sending.signed(size)
        for case, sender in (("same sender", lambda i: f"sender@{SENDER_DOMAIN}"),
                             ("a new sender each", lambda i, size=size: f"s{size}-{i}@{SENDER_DOMAIN}")):

            async def one(i: int, raw: bytes = raw, sender: Callable[[int], str] = sender) -> None:
                spf = await checks.spf(ip="127.0.0.1", mail_from=sender(i), helo="client.bench.example")
                results = await checks.dkim(raw)
                dmarc = await checks.dmarc(raw, spf, results)
                assert (spf.result, dmarc.result) == ("pass", "pass"), (spf, dmarc)

            await one(-1)  # fills the caches
            total = await _per_message_async(one)
            print(f"{size // 1024:>4} KiB, {case:<17}: SPF + DKIM + DMARC {total:6.0f} µs per message")
        spf = await _per_message_async(lambda i, size=size: checks.spf(
            ip="127.0.0.1", mail_from=f"x{size}-{i}@{SENDER_DOMAIN}", helo="client.bench.example"))
        print(f"{size // 1024:>4} KiB, SPF alone (a new sender each): {spf:6.0f} µs")
    print(f"DNS queries answered by the loopback server: {len(sending.dns.queries)}")


def _dkim(sending: SendingDomain) -> None:
    name = f"{SELECTOR}._domainkey.{SENDER_DOMAIN}".encode()
    record = dict(sending.records)[name.decode()].encode()

    def txt(_name: bytes, timeout: float = 5) -> bytes:  # noqa: ARG001 - dkimpy's dnsfunc signature
        return record

    keys = KeyCache()
    for size in (4 * 1024, 100 * 1024):
        raw = sending.signed(size)
        assert DkimVerifier(raw, keys).verify(dnsfunc=txt) and dkim.DKIM(raw).verify(dnsfunc=txt)
        ours = _per_message(lambda i, raw=raw: DkimVerifier(raw, keys).verify(dnsfunc=txt))
        theirs = _per_message(lambda i, raw=raw: dkim.DKIM(raw).verify(dnsfunc=txt))
        print(f"{size // 1024:>4} KiB, DKIM verification: DkimVerifier {ours:6.0f} µs, dkimpy {theirs:6.0f} µs")


def main() -> int:
    sending = SendingDomain()
    sending.start()
    try:
        asyncio.run(_checks(sending))
        _dkim(sending)
    finally:
        sending.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
