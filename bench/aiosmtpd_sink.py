"""A bare aiosmtpd server that accepts and discards every message: the second baseline of
`make bench`. It is what an SMTP server built on aiosmtpd costs before it does anything (the
limits Conduit's listener has by default, the same uvloop event loop, aiosmtpd's per-command
logging off): the floor of any design on a Python SMTP library.

Run: ``python bench/aiosmtpd_sink.py``; prints ``PORT <n>`` once listening, stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiosmtpd.smtp import SMTP


class Discard:
    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd hook
        return "250 2.0.0 Ok: discarded"


async def serve() -> None:
    loop = asyncio.get_running_loop()

    def factory() -> SMTP:
        return SMTP(Discard(), hostname="sink.bench.example", ident="aiosmtpd sink", data_size_limit=26214400,
                    enable_SMTPUTF8=True, decode_data=False, auth_require_tls=True, auth_required=False)

    server = await loop.create_server(factory, host="127.0.0.1", port=0, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    try:
        import uvloop
        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())
