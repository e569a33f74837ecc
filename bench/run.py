"""Conduit's load benchmark (`make bench`): SMTP acceptance, end-to-end delivery, latency, memory, CPU.

Conduit runs with its defaults, the inbound checks (SPF, DKIM, DMARC of every message) included.
The mail comes from ``sender@sender.example``, a domain whose records an authoritative DNS server
on loopback, started by the harness, serves (``conduit_bench/mail_auth.py``; Conduit's
``CONDUIT_DNS_SERVERS`` points there): SPF through two includes, the second of which allows
127.0.0.1; a 2048-bit DKIM key; DMARC ``p=reject``; TTL 300 s. Each configuration's message is
made at set-up and DKIM-signed with dkimpy (From, To, Subject, Date), and ``smtp-source -F`` sends
that file. Conduit caches what it looks up, so the warm-up fills its cache; the DNS queries made
during each measured load are counted.

What it does, for each configuration (message size × connection use, 20 concurrent sessions):

1. **Conduit**: a fresh ``conduit serve`` process (a new SQLite file, or ``BENCH_DATABASE_URL``)
   on free loopback ports; an account and a webhook ``box-<tag>@bench.example`` pointing at the
   receiver (``bench/receiver.py``, its own process); a warm-up of ``BENCH_WARMUP`` messages; then
   the load from Postfix's ``smtp-source``. Then the same again with the inbound checks off
   (``CONDUIT_INBOUND_AUTH_CHECKS=false``) and the same number of messages: the table compares
   the two. Measured:

   - *accepted/s at SMTP*: messages / ``smtp-source`` wall time (every ``250`` is after commit);
   - *delivered/s end to end*: messages / (last arrival at the receiver - start of the load); the
     receiver must have got every message (distinct Conduit message ids: the signed message has
     no ``Message-ID``), otherwise the run fails;
   - *latency under saturation* (accept → receipt): Conduit's message id (``msg_…``) carries the
     millisecond at which the message was stored (after the end of DATA, just before the commit
     and the ``250``); the receiver records its arrival time. Under saturation this is mostly
     queueing in Conduit;
   - *peak RSS* (the highest ``VmRSS`` sampled every 50 ms during the warm-up and the load) and
     *CPU seconds per 1,000 messages* (user + system, all threads) of the Conduit process, from
     ``/proc``.

2. **Baselines**, once Conduit has stopped, each on a free loopback port and loaded by
   ``smtp-source`` with exactly the same options and message count: Postfix's ``smtp-sink`` (C,
   discards everything), whose wall time gives the messages per second this machine can accept
   over SMTP at all, and ``bench/aiosmtpd_sink.py``, a bare aiosmtpd server that discards every
   message, the floor of a design on a Python SMTP library. Conduit's rates are reported as
   ratios of both.

3. **Latency at half of the maximum**: a fresh Conduit (checks on), loaded at a fixed rate (half
   the end-to-end rate measured for 4 KiB, one connection per message; ``BENCH_LATENCY_RATE`` to
   set it) by a small SMTP client in this process that time-stamps the end of DATA (the moment the
   final ``.`` was written) and the ``250`` reply per message, each the signed 4 KiB message with
   a unique ``Message-ID`` (not signed) that the receiver's record is matched by: p50/p95/p99 from
   the end of DATA to the webhook.

Results: a table on stdout, ``bench-results/bench-<time>.json`` (and ``latest.json``), a chart
``docs/performance.png``. With ``BENCH_PROFILE=1`` an extra 4 KiB run (``BENCH_PROFILE=4k,100k``:
one per configuration named) is sampled with py-spy and summarised in
``bench-results/profile-*.txt`` (the measured runs are never profiled).

Settings (environment):

- ``BENCH_MESSAGES``: messages per configuration. By default 5,000, fewer when the warm-up's
  end-to-end rate says 5,000 would take longer than ``BENCH_SECONDS`` (75), never fewer than
  1,000: this keeps a full run under ten minutes;
- ``BENCH_SESSIONS`` (20), ``BENCH_WARMUP`` (200 messages);
- ``BENCH_CONFIGS`` (``4k,100k,4k-reuse``; ``100k-reuse`` also exists);
- ``BENCH_CHECKS_OFF``: the configurations also run with the inbound checks off (default: all of
  ``BENCH_CONFIGS``; ``none`` for none);
- ``BENCH_DATABASE_URL``: default a fresh SQLite file per Conduit start; for PostgreSQL give an
  empty database of its own;
- ``BENCH_LATENCY_RATE`` (default half the 4 KiB end-to-end rate), ``BENCH_LATENCY_SECONDS`` (20;
  0 skips the latency run);
- ``BENCH_WORKER_PROCESSES``: ``conduit serve``'s worker processes (default Conduit's: one on 2+
  cores); the harness passes no other ``CONDUIT_*`` variable from its environment on, but
  ``BENCH_CONDUIT_<NAME>`` runs Conduit with ``CONDUIT_<NAME>`` (for experiments);
- ``BENCH_RSPAMD`` (0): with 1, every Conduit checks every message with a real rspamd
  (``CONDUIT_RSPAMD_URL``), which the harness starts on loopback as the tests do
  (``tests/support/rspamd.py``: Debian's ``rspamd`` package, its stock rules, no redis, no
  network); the configurations default to ``4k`` only, without the checks-off run, and the
  last line gives the 4 KiB throughput, the p99 latencies and rspamd's CPU seconds;
- ``BENCH_METRICS``: ``on`` (Conduit's default: Prometheus metrics recorded, and ``/metrics``
  scraped every ``BENCH_SCRAPE_SECONDS``, 15, as a Prometheus server would) or ``off``
  (``CONDUIT_METRICS=false``: nothing recorded); run once each to measure what metrics cost;
- ``BENCH_SYNC`` (0): with 1, the bench webhook is synchronous (``delivery_mode: synchronous``):
  every end of DATA waits for the receiver's answer, so *accepted/s at SMTP* is the delivered
  rate, and the latency run's *end of DATA → 250* is the reply latency a sender sees; the last
  line gives its median and p99 (the configurations are labelled ``synchronous``);
- ``BENCH_PROFILE`` (0), ``BENCH_STALL_SECONDS`` (60: fail when no message arrives for this long),
  ``BENCH_LOG_LEVEL`` (Conduit's, default INFO as in production), ``BENCH_OUT`` (bench-results),
  ``BENCH_CHART`` (docs/performance.png).

The CPU used meanwhile by processes outside the benchmark is measured (``/proc/stat``) and
reported; above 0.2 cores a warning says the numbers are too low. Before each Conduit run the
harness waits up to ``BENCH_QUIET_WAIT`` seconds (30) for such processes to use under 0.15 cores.

Every process it starts is stopped when it ends, including on failure or Ctrl-C. The harness is
the package ``bench/conduit_bench``: ``processes`` (children, ``conduit serve``, the receiver),
``load`` (``smtp-source``, baselines, the latency run's client), ``measurements`` (``/proc``,
statistics), ``runs`` (one measured run each), ``report``, ``chart`` and ``main``.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]  # conduit_bench and profile_summary; tests.support (DNS server)

from conduit_bench.main import run

if __name__ == "__main__":
    sys.exit(run())
