"""CPU per webhook POST of each HTTP transport (conduit/net/http_transport.py), on loopback.

Starts ``bench/receiver.py`` in its own process, then POSTs a 4 KiB JSON body ``--posts`` times
from ``--concurrency`` tasks through the chosen transport, on uvloop as ``conduit`` runs, and
prints the client process's CPU seconds (``time.process_time``: user and kernel time) per 1,000
POSTs. Run it on a quiet machine, a few times per transport, and compare medians:

    .venv/bin/python bench/http_transport_cpu.py --transport fast --runs 3
    .venv/bin/python bench/http_transport_cpu.py --transport aiohttp --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import uvloop

from conduit.net.dns import make_resolver

BODY = json.dumps({"id": "msg_0", "text": "x" * 4000}).encode()
HEADERS = {"Content-Type": "application/json", "webhook-id": "msg_0"}


def _transport(name: str):
    if name == "fast":
        from conduit.net.http_client import WebhookClient

        return WebhookClient(resolver=make_resolver([]), allow_private=True)
    from conduit.net.http_aiohttp import AiohttpTransport

    return AiohttpTransport(resolver=make_resolver([]), allow_private=True)


async def _run(name: str, url: str, posts: int, concurrency: int) -> float:
    client = _transport(name)
    try:
        for _ in range(200):  # warm up: connections, caches
            assert (await client.post(url, BODY, HEADERS)).status == 200
        queue = iter(range(posts))

        async def worker() -> None:
            for _ in queue:
                outcome = await client.post(url, BODY, HEADERS)
                assert outcome.status == 200, outcome

        started = time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return (time.process_time() - started) / posts * 1000
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["fast", "aiohttp"], default="fast")
    parser.add_argument("--posts", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    receiver = subprocess.Popen([sys.executable, str(Path(__file__).with_name("receiver.py")), "--port", "0"],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline().split()[1])
        url = f"http://127.0.0.1:{port}/hook"
        results = [uvloop.run(_run(args.transport, url, args.posts, args.concurrency)) for _ in range(args.runs)]
    finally:
        receiver.terminate()
        receiver.wait()
    print(f"{args.transport}: CPU s per 1,000 POSTs: " + ", ".join(f"{r:.4f}" for r in results)
          + f" (median {statistics.median(results):.4f})")


if __name__ == "__main__":
    main()
