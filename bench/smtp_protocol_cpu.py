"""CPU per message of Conduit's SMTP protocol alone (conduit/smtp/protocol.py), with a handler
that decides at once and stores nothing: what the protocol's own hot path costs.

The server runs in this process (uvloop, as `conduit serve`); clients in two child processes
each open one connection per message and speak EHLO, MAIL, RCPT, DATA (4 KiB), QUIT, waiting
for every reply, as a sending MTA does. Reported: this process's CPU time per message
(``time.process_time``), so the clients' CPU is not counted.

Run: ``python bench/smtp_protocol_cpu.py [messages] [rounds]``.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import time

from conduit.smtp import replies
from conduit.smtp.contract import AuthResult, Envelope, Session
from conduit.smtp.protocol import ServerConfig, SessionLimiter, SmtpProtocol
from conduit.smtp.replies import Reply

CLIENTS = 2
_QUEUED = replies.queued("msg_bench")


class NullHandler:
    """Takes every sender and recipient, and every message, without a look."""

    def failed(self, error: Exception) -> Reply:
        return replies.TEMPORARY_FAILURE

    def mail(self, session: Session, envelope: Envelope, address: str) -> Reply:
        return replies.OK_SENDER

    async def rcpt(self, session: Session, envelope: Envelope, address: str) -> Reply:
        return replies.OK_RECIPIENT

    async def data(self, session: Session, envelope: Envelope) -> Reply:
        return _QUEUED

    async def authenticate(self, session: Session, login: str, password: str) -> AuthResult:
        return AuthResult()

    def refused(self, session: Session, envelope: Envelope, reply: Reply) -> None:
        pass


def client(port: int, count: int, size: int = 4096) -> None:
    """One connection per message, every reply awaited."""
    line = b"x" * 70 + b"\r\n"
    body = b"From: a@b.example\r\nTo: box@in.example\r\nSubject: bench\r\n\r\n" + line * (size // len(line))
    steps = ((b"EHLO client.example\r\n", b"250"), (b"MAIL FROM:<ann@sender.example>\r\n", b"250"),
             (b"RCPT TO:<box@in.example>\r\n", b"250"), (b"DATA\r\n", b"354"), (body + b".\r\n", b"250"),
             (b"QUIT\r\n", b"221"))
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buffer = bytearray()
            assert _reply(sock, buffer).startswith(b"220")
            for sent, code in steps:
                sock.sendall(sent)
                reply = _reply(sock, buffer)
                assert reply.startswith(code), reply


def _reply(sock: socket.socket, buffer: bytearray) -> bytes:
    while True:
        while b"\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit(f"connection closed after {bytes(buffer)!r}")
            buffer += chunk
        end = buffer.index(b"\r\n")
        line = bytes(buffer[:end])
        del buffer[:end + 2]
        if line[3:4] != b"-":
            return line


async def serve(messages: int, rounds: int) -> None:
    config = ServerConfig(hostname="bench.example", data_size_limit=10 * 1024 * 1024, timeout=300,
                          tls_context=None, auth_require_tls=True, auth_failures_per_session=3)
    limiter = SessionLimiter(1000)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SmtpProtocol(NullHandler(), limiter, config), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    results = []
    for round_ in range(rounds + 1):  # the first round warms up
        cpu = time.process_time()
        children = [await asyncio.create_subprocess_exec(sys.executable, __file__, "--client", str(port),
                                                         str(messages // CLIENTS)) for _ in range(CLIENTS)]
        for child in children:
            assert await child.wait() == 0
        if round_:
            results.append((time.process_time() - cpu) / messages * 1e6)
            print(f"round {round_}: {results[-1]:.1f} µs of CPU per message", flush=True)
    print(f"median {statistics.median(results):.1f} µs of CPU per message over {rounds} rounds of {messages}")
    server.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        client(int(sys.argv[2]), int(sys.argv[3]))
    else:
        import uvloop

        uvloop.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 5000,
                         int(sys.argv[2]) if len(sys.argv) > 2 else 5))
