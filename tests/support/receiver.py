"""A real HTTP receiver on loopback for delivery tests: records every request, answers with a
scripted sequence of responses, and can verify Standard Webhooks signatures."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook as SignatureVerifier


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False  # never answer: hold the request until the receiver stops
    body_bytes: int = 0  # stream this many bytes of body (instead of ``body``)


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: deque[Reply] = deque()
        self.default = Reply()
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._released = asyncio.Event()  # ends hanging requests at stop()
        self.port = 0
        # One entry per streamed (``body_bytes``) reply: whether all of it could be written.
        self.streams_finished: list[bool] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def reply(self, *replies: Reply) -> None:
        """Answer the next requests with these, then with ``default``."""
        self.script.extend(replies)

    async def start(self, port: int | None = None) -> None:
        """Listen on ``port`` (a free one when None)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # Port 0: the kernel picks a free port as it binds (no window for another to take it).
        await web.TCPSite(self._runner, "127.0.0.1", port or 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self._released.set()
        if self._runner:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        reply = self.script.popleft() if self.script else self.default
        if reply.hang:
            return await self._hang(request, body)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        async with self._arrived:
            self.received.append(Received(path=request.path, headers=dict(request.headers), body=body))
            self._arrived.notify_all()
        if reply.body_bytes:
            return await self._stream(request, reply)
        return web.Response(status=reply.status, text=reply.body, headers=reply.headers)

    async def _hang(self, request: web.Request, body: bytes) -> web.Response:
        """Recorded on arrival (it never completes), answered only once the receiver stops."""
        async with self._arrived:
            self.received.append(Received(path=request.path, headers=dict(request.headers), body=body))
            self._arrived.notify_all()
        await self._released.wait()
        return web.Response(status=503, text="too late")

    async def _stream(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        """Write ``body_bytes`` in 64 KiB chunks; note whether the client read to the end."""
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        response.content_length = reply.body_bytes
        await response.prepare(request)
        chunk = b"x" * 65536
        left = reply.body_bytes
        try:
            while left > 0:
                await response.write(chunk[:left])
                left -= min(left, len(chunk))
        except (ConnectionError, RuntimeError):
            pass  # the client hung up before the end
        self.streams_finished.append(left == 0)
        return response

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """Wait until at least ``count`` requests arrived; fail the test otherwise."""
        async def enough() -> None:
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.received) >= count)
        try:
            await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            raise AssertionError(f"receiver got {len(self.received)} requests, expected {count}") from None
        return self.received


def verify_signature(secret: str, request: Received) -> dict:
    """Verify with the standardwebhooks library, exactly as a receiver would; returns the payload."""
    return SignatureVerifier(secret).verify(request.body, {k.lower(): v for k, v in request.headers.items()})
