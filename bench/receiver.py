"""The benchmark's webhook receiver: a minimal HTTP/1.1 server on loopback, in its own process.

It answers every ``POST`` with ``200 ok`` as fast as it can and records, per request, the wall-clock
time (``time.time()``) at which the whole body had arrived, with the payload's ``id`` (Conduit's
``msg_…``), ``message_id`` (the ``Message-ID`` header) and ``subject``. These sit near the start of
Conduit's default JSON payload, so they are read with a regular expression from its first bytes
instead of decoding a 100 KiB body (which would steal CPU from Conduit on a 2-core machine).

Control endpoints (plain ``GET``):

- ``/_stats``: ``{"requests", "unique", "duplicates", "last_arrival"}``; ``unique`` counts distinct
  ``message_id`` values (``id`` when there is none);
- ``/_records``: every record as ``[arrival, id, message_id, subject]``;
- ``/_reset``: forget everything recorded so far.

Run: ``python bench/receiver.py [--port N]``; it prints ``PORT <n>`` on its first line of output,
and stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
import time

_ID = re.compile(rb'"id":"(msg_[0-9a-v]+)"')
_MESSAGE_ID = re.compile(rb'"message_id":(null|"((?:[^"\\]|\\.)*)")')
_SUBJECT = re.compile(rb'"subject":(null|"((?:[^"\\]|\\.)*)")')
HEAD_BYTES = 8192  # the fields above come before the message text in Conduit's payload

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class Store:
    def __init__(self) -> None:
        self.records: list[tuple[float, str, str | None, str | None]] = []
        self.seen: set[str] = set()
        self.duplicates = 0

    def add(self, arrival: float, body: bytes) -> None:
        head = body[:HEAD_BYTES]
        msg_id = _first(_ID, head)
        message_id = _first(_MESSAGE_ID, head, group=2)
        subject = _first(_SUBJECT, head, group=2)
        if msg_id is None:  # not Conduit's default payload layout: decode it properly
            try:
                doc = json.loads(body)
                msg_id, message_id, subject = doc.get("id"), doc.get("message_id"), doc.get("subject")
            except ValueError:
                msg_id = f"unparsable-{len(self.records)}"
        key = message_id or msg_id or ""
        if key in self.seen:
            self.duplicates += 1
        else:
            self.seen.add(key)
        self.records.append((arrival, msg_id or "", message_id, subject))

    def stats(self) -> dict:
        return {"requests": len(self.records), "unique": len(self.seen), "duplicates": self.duplicates,
                "last_arrival": self.records[-1][0] if self.records else None}

    def reset(self) -> None:
        self.__init__()


def _first(pattern: re.Pattern[bytes], head: bytes, group: int = 1) -> str | None:
    match = pattern.search(head)
    if match is None or match.group(group) is None:
        return None
    return json.loads(b'"' + match.group(group) + b'"')


class HttpProtocol(asyncio.Protocol):
    """Keep-alive HTTP/1.1: Content-Length or chunked request bodies, one response per request."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self._one_request():
            pass

    def _one_request(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).decode("latin-1")
        lines = head.split("\r\n")
        method, _, rest = lines[0].partition(" ")
        path = rest.partition(" ")[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body, consumed = _dechunk(self.buffer, start)
            if body is None:
                return False
            del self.buffer[:consumed]
        else:
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < start + length:
                return False
            body = bytes(self.buffer[start:start + length])
            del self.buffer[:start + length]
        arrival = time.time()
        if method == "GET" and path.startswith("/_"):
            self._control(path)
        else:
            self.store.add(arrival, body)
            assert self.transport is not None
            self.transport.write(OK)
        return True

    def _control(self, path: str) -> None:
        if path == "/_stats":
            payload: object = self.store.stats()
        elif path == "/_records":
            payload = self.store.records
        elif path == "/_reset":
            self.store.reset()
            payload = {"reset": True}
        else:
            payload = {"error": "unknown"}
        body = json.dumps(payload).encode()
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes | None, int]:
    out = bytearray()
    pos = start
    while True:
        eol = buffer.find(b"\r\n", pos)
        if eol < 0:
            return None, 0
        size = int(bytes(buffer[pos:eol]).split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n", pos)
            if trailer_end < 0:
                return None, 0
            return bytes(out), trailer_end + 2
        if len(buffer) < pos + size + 2:
            return None, 0
        out += buffer[pos:pos + size]
        pos += size + 2


async def serve(port: int) -> None:
    store = Store()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpProtocol(store), "127.0.0.1", port, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        import uvloop  # the receiver should cost as little CPU as possible
        uvloop.run(serve(args.port))
    except ImportError:
        asyncio.run(serve(args.port))
    sys.exit(0)


if __name__ == "__main__":
    main()
