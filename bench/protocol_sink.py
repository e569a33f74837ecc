"""A discarding SMTP server written directly on ``asyncio.Protocol`` (no StreamReader, no coroutine
per command): the measurement that made Conduit replace aiosmtpd with its own protocol
(conduit/smtp/protocol.py; docs/performance.md). It speaks just enough SMTP for ``smtp-source``
(EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT, pipelined or not); Conduit does not use it.

Run: ``python bench/protocol_sink.py``; prints ``PORT <n>`` once listening, stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import signal

_EHLO = (b"250-sink.bench.example\r\n250-PIPELINING\r\n250-SIZE 26214400\r\n250-8BITMIME\r\n"
         b"250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n")
_REPLIES = {
    b"MAIL": b"250 2.1.0 Sender ok\r\n",
    b"RCPT": b"250 2.1.5 Recipient ok\r\n",
    b"RSET": b"250 2.0.0 Ok\r\n",
    b"NOOP": b"250 2.0.0 Ok\r\n",
    b"HELO": b"250 sink.bench.example\r\n",
    b"EHLO": _EHLO,
}


class SinkProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.in_data = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(b"220 sink.bench.example ESMTP protocol sink\r\n")  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out = bytearray()
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    break
                del self.buffer[: end + 5]  # discarded
                self.in_data = False
                out += b"250 2.0.0 Ok: discarded\r\n"
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                break
            verb = bytes(self.buffer[:4]).upper()
            del self.buffer[: end + 2]
            if verb == b"DATA":
                self.in_data = True
                self.buffer[:0] = b"\r\n"  # the end of data may follow at once
                out += b"354 End data with <CR><LF>.<CR><LF>\r\n"
            elif verb == b"QUIT":
                out += b"221 2.0.0 Bye\r\n"
                self.transport.write(bytes(out))
                self.transport.close()
                return
            else:
                out += _REPLIES.get(verb, b"500 5.5.2 Command not recognized\r\n")
        if out:
            self.transport.write(bytes(out))


async def serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(SinkProtocol, host="127.0.0.1", port=0, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    try:
        import uvloop
        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())
