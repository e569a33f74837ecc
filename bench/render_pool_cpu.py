"""CPU per 4 KiB message of rendering through the renderer pool against rendering in-process.

``python bench/render_pool_cpu.py [MESSAGES] [CONCURRENCY]``: renders one 4 KiB message with the
default payload MESSAGES times in this process (``conduit.mail.render.render``), then through a
RenderPool of two processes with CONCURRENCY deliveries in flight (the worker's default: 64), on
uvloop as the worker runs. Prints the CPU per message of this process (``time.process_time``)
and of the renderer processes (``/proc/<pid>/stat``), and their sum against the in-process cost.
Needs no database; runs in seconds. Run it on a quiet machine: a busy one inflates every figure.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage

from conduit.isolation import RenderPool, render_body
from conduit.mail.render import render


@dataclass
class Message:
    raw: bytes
    id: str = "msg_1"
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    mail_from: str = "ann@sender.example"
    rcpt_to: list[str] = field(default_factory=lambda: ["box@bench.example"])
    remote_ip: str = "192.0.2.1"
    helo: str = "mx.sender.example"
    tls: bool = False
    auth_user: str | None = None
    auth_results: dict = field(default_factory=dict)
    spam: dict | None = None


@dataclass
class Hook:
    id: str = "whk_1"
    address: str = "box@bench.example"
    payload_template: str | None = None
    account_id: str = "acc_1"


def four_kib() -> bytes:
    message = EmailMessage()
    message["From"] = "Ann <ann@sender.example>"
    message["To"] = "box@bench.example"
    message["Subject"] = "Order 1234 shipped"
    message["Message-ID"] = "<abc@sender.example>"
    message["Date"] = "Mon, 1 Jan 2024 10:00:00 +0000"
    message.set_content(("Hello, this is a line of a four kilobyte message body.\n" * 70)[:3600])
    return bytes(message)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(messages: int, concurrency: int) -> None:
    message, hook = Message(four_kib()), Hook()
    options = {"rcpt_to": "box@bench.example", "simulated": False, "max_inline_attachment_bytes": 10 << 20}
    started = time.process_time()
    for _ in range(messages):
        render(message, hook, **options)
    inline = (time.process_time() - started) / messages

    pool = RenderPool(processes=2, memory_mb=768, timeout=2.0)
    await render_body(pool, message, hook, **options)  # both started, imports done
    await asyncio.gather(*(render_body(pool, message, Hook(account_id=f"acc_{i}"), **options) for i in range(2)))
    before = {pid: cpu_seconds(pid) for pid in pool.pids}
    slots = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with slots:
            await render_body(pool, message, hook, deadline=time.monotonic() + 60, **options)

    started = time.process_time()
    await asyncio.gather(*(one() for _ in range(messages)))
    parent = (time.process_time() - started) / messages
    children = sum(cpu_seconds(pid) - cpu for pid, cpu in before.items()) / messages
    await pool.close()
    print(f"{len(message.raw)} B message, {messages} messages, {concurrency} in flight")
    print(f"in-process render:      {inline * 1e6:7.1f} us CPU per message")
    print(f"through the pool:       {parent * 1e6:7.1f} us here + {children * 1e6:.1f} us in the renderers "
          f"= {(parent + children) * 1e6:.1f} us ({(parent + children - inline) * 1e6:+.1f} us)")


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000, int(sys.argv[2]) if len(sys.argv) > 2 else 64))
