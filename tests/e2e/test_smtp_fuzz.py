"""Hostile SMTP input: the server answers with the right code, keeps its memory, and serves the
next normal message (250, delivered) after every attack.

Hostile clients speak raw asyncio streams (aiosmtplib and smtplib are too polite to send
these bytes); the server is the real one (conduit.runtime.run, or `conduit serve` as a child
process where its memory is measured), the webhook receiver a real HTTP server.
"""

from __future__ import annotations

import asyncio
import socket
from contextlib import asynccontextmanager
from pathlib import Path

import aiosmtplib
import pytest

from tests.factories import create_webhook
from tests.support.conduit_process import Conduit, Mailbox
from tests.support.conversation import _mail, _send
from tests.support.pipeline import free_port, running

PUBLIC = "in.example"
BOX = f"box@{PUBLIC}"
MAX_RECIPIENTS = 20
LIMIT = 1_000_000  # CONDUIT_SMTP_MAX_MESSAGE_BYTES in process
MiB = 1024 * 1024


def _overrides(**changes) -> dict:
    return {"smtp_port": free_port(), "public_domains": PUBLIC, "allow_private_targets": True,
            "inbound_auth_checks": False, "retry_schedule": "0,0.3,0.3", "smtp_max_recipients": MAX_RECIPIENTS,
            "smtp_max_message_bytes": LIMIT, "smtp_timeout": 30, "smtp_auth_insecure": True, **changes}


@pytest.fixture
def settings_overrides() -> dict:
    return _overrides()


@pytest.fixture
async def webhook(client, alice, receiver) -> dict:
    return await create_webhook(client, alice, BOX, receiver.url)


# --- a hostile client --------------------------------------------------------------------


class Raw:
    """An SMTP client that sends exactly the bytes it is given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, rcvbuf: int | None = None) -> Raw:
        sock = socket.socket()
        if rcvbuf:  # before connecting, so the window the server sees stays small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return cls(*await asyncio.open_connection(sock=sock))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, timeout: float = 20) -> str:
        """One (possibly multi-line) reply; its last line."""
        while True:
            line = await asyncio.wait_for(self.reader.readline(), timeout)
            assert line.endswith(b"\r\n"), f"connection closed, last bytes {line!r}"
            if line[3:4] != b"-":
                return line.decode("utf-8", "replace").rstrip("\r\n")

    async def command(self, data: bytes) -> str:
        await self.send(data)
        return await self.reply()

    async def read_to_end(self, timeout: float) -> bytes:
        """Everything until the server closes the connection."""
        chunks = []
        async with asyncio.timeout(timeout):
            while chunk := await self.reader.read(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self.writer.close()


@asynccontextmanager
async def _session(settings, helo: bytes = b"EHLO fuzz.example\r\n"):
    raw = await Raw.open(settings.smtp_port)
    try:
        assert (await raw.reply()).startswith("220")
        if helo:
            assert (await raw.command(helo)).startswith("250")
        yield raw
    finally:
        raw.close()


def _message(subject: str, body: bytes = b"Hi there\r\n", headers: bytes = b"") -> bytes:
    return (b"From: Ann <ann@sender.example>\r\nTo: " + BOX.encode() + b"\r\nSubject: " + subject.encode()
            + b"\r\n" + headers + b"\r\n" + body)


async def _start_data(raw: Raw, rcpt: str = BOX) -> None:
    """MAIL, RCPT and DATA, each accepted: the message may follow."""
    assert (await raw.command(b"MAIL FROM:<ann@sender.example>\r\n")).startswith("250")
    assert (await raw.command(f"RCPT TO:<{rcpt}>\r\n".encode())).startswith("250")
    assert (await raw.command(b"DATA\r\n")).startswith("354")


async def _transaction(raw: Raw, data: bytes, rcpt: str = BOX) -> str:
    """MAIL, RCPT, DATA and ``data`` (dot-stuffed by the caller if it needs to be): the final reply."""
    await _start_data(raw, rcpt)
    return await raw.command(data + (b"" if data.endswith(b"\r\n") else b"\r\n") + b".\r\n")


async def _delivered(receiver, subject: str) -> dict:
    """The payload the receiver got for the message with this subject."""
    for _ in range(100):
        for request in receiver.received:
            if request.json()["subject"] == subject:
                return request.json()
        await receiver.wait_for(len(receiver.received) + 1)
    raise AssertionError(f"no delivery of {subject!r}")


async def _still_served(settings, receiver, subject: str = "after the attack") -> None:
    """A normal client, in a new session, still gets 250 and its message is delivered."""
    errors, reply = await _send(settings, _mail(BOX, subject=subject))
    assert errors == {} and reply.startswith("2.0.0 Ok: queued as msg_"), reply
    assert (await _delivered(receiver, subject))["text"].strip() == "Hi there"


# --- command lines ---------------------------------------------------------------------


async def test_overlong_command_lines_get_500_and_the_session_goes_on(settings, webhook, receiver):
    async with running(settings):
        async with _session(settings) as raw:
            # Over RFC 5321's 512 octets, still within aiosmtpd's read buffer.
            assert await raw.command(b"NOOP " + b"x" * 600 + b"\r\n") == "500 5.5.2 Line too long"
            # A megabyte without a line break: read and dropped in pieces, then answered once.
            for _ in range(16):
                await raw.send(b"y" * 65536)
            assert await raw.command(b"\r\n") == "500 5.5.2 Line too long"
            # Each EHLO used to raise MAIL's limit (for every session): it stays 512 plus the
            # allowance for SIZE= and SMTPUTF8 however often a client says EHLO.
            for _ in range(20):
                await raw.command(b"EHLO fuzz.example\r\n")
            long_sender = b"MAIL FROM:<" + b"a" * 600 + b"@sender.example>\r\n"
            assert await raw.command(long_sender) == "500 5.5.2 Line too long"
            assert await raw.command(b"\r\n") == "500 5.5.2 Syntax error"
            reply = await _transaction(raw, _message("same session"))
            assert reply.startswith("250 2.0.0 Ok: queued as msg_")
        await _delivered(receiver, "same session")
        await _still_served(settings, receiver)


async def test_bare_lf_never_ends_data_so_nothing_is_smuggled(settings, webhook, receiver):
    smuggled = (b"MAIL FROM:<mallory@evil.example>\r\nRCPT TO:<" + BOX.encode() + b">\r\nDATA\r\n"
                b"Subject: smuggled\r\n\r\nevil\r\n")
    # Every end-of-data look-alike of the SMTP smuggling attacks, each followed by a
    # second transaction that would be accepted if the server took it for the end.
    body = b"".join(b"part %d%s%s" % (n, end, smuggled) for n, end in
                    enumerate([b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r\r\n"]))
    async with running(settings):
        async with _session(settings, helo=b"EHLO fuzz.example\n") as raw:
            # Commands ended by a bare LF are understood, as aiosmtpd (and Postfix) do.
            assert (await raw.command(b"MAIL FROM:<ann@sender.example>\n")).startswith("250")
            assert (await raw.command(b"RCPT TO:<" + BOX.encode() + b">\n")).startswith("250")
            assert (await raw.command(b"DATA\n")).startswith("354")
            assert (await raw.command(_message("carrier", body) + b"\r\n.\r\n")).startswith("250 2.0.0")
            assert await raw.command(b"NOOP\r\n") == "250 OK"  # no replies to smuggled commands came first
            # A message whose lines all end in bare LF (so one "line" of 5 kB) is taken as it is.
            lf_only = b"Subject: lf only\n\n" + b"a line of text\n" * 400
            assert (await _transaction(raw, lf_only)).startswith("250 2.0.0")
        carrier = await _delivered(receiver, "carrier")
        assert "Subject: smuggled" in carrier["text"] and carrier["text"].count("Subject: smuggled") == 5
        assert (await _delivered(receiver, "lf only"))["text"].count("a line of text") == 400
        await _still_served(settings, receiver)
        assert [r.json()["subject"] for r in receiver.received].count("smuggled") == 0


# --- NUL bytes, invalid UTF-8 --------------------------------------------------------


async def test_nul_bytes_and_invalid_utf8_in_commands_get_501_and_nul_in_data_is_delivered(
        settings, webhook, receiver):
    """Such arguments used to reach the database, fail the commit and get 451: the sender
    retried for days. Now 501 at once; in the message itself they are only data."""
    refusal = "501 5.5.4 Invalid characters"
    async with running(settings):
        async with _session(settings, helo=b"") as raw:
            for helo in (b"EHLO fuzz\x00.example\r\n", b"HELO fuzz\xff.example\r\n", b"EHLO " + b"h" * 300 + b"\r\n"):
                assert (await raw.command(helo)).startswith("501 5.5.4"), helo
            assert (await raw.command(b"EHLO fuzz.example\r\n")).startswith("250")
            for sender in (b"<ann\x00@sender.example>", b"<ann\xc3@sender.example>", b"<ann@sender.example>\x00"):
                assert (await raw.command(b"MAIL FROM:" + sender + b"\r\n")).startswith(refusal), sender
            assert (await raw.command(b"MAIL FROM:<ann@sender.example>\r\n")).startswith("250")
            for rcpt in (b"<box\x00@in.example>", b"<b\xffox@in.example>", b"<box@in.example\x07>"):
                assert (await raw.command(b"RCPT TO:" + rcpt + b"\r\n")).startswith(refusal), rcpt
            assert (await raw.command(b"RCPT TO:<" + BOX.encode() + b">\r\n")).startswith("250")
            assert (await raw.command(b"DATA\r\n")).startswith("354")
            data = _message("nul\x00inside", b"a NUL \x00 in the body\r\n", headers=b"X-Nul: \x00\r\n")
            assert (await raw.command(data + b".\r\n")).startswith("250 2.0.0")
            # A login name with a NUL (base64 "mal\0lory") is refused like any unknown one.
            assert (await raw.command(b"AUTH LOGIN bWFsAGxvcnk=\r\n")).startswith("334")
            assert (await raw.command(b"c2VjcmV0\r\n")).startswith("535 5.7.8")
        payload = await _delivered(receiver, "nul\x00inside")
        assert payload["text"] == "a NUL \x00 in the body\n"
        await _still_served(settings, receiver)


async def test_invalid_utf8_headers_are_accepted_and_delivered(settings, webhook, receiver):
    headers = (b"From: J\xf6rg \xff <joerg@sender.example>\r\nTo: " + BOX.encode() + b"\r\n"
               b"Subject: caf\xe9 \xc3\x28 ok\r\nX-Broken: \xfe\xfe\xff\r\n"
               b"Content-Type: text/plain; charset=utf-8\r\n\r\n")
    async with running(settings):
        async with _session(settings) as raw:
            assert (await _transaction(raw, headers + b"body \xe9\xff\r\n")).startswith("250 2.0.0")
        payload = await _delivered(receiver, "caf\ufffd \ufffd( ok")
        assert payload["from"] == [{"address": "joerg@sender.example", "name": "J\ufffdrg \ufffd"}]
        assert {"name": "X-Broken", "value": "\ufffd\ufffd\ufffd"} in payload["headers"]
        assert "\ufffd" in payload["text"]
        assert any("not UTF-8" in warning for warning in payload["parse_warnings"])
        await _still_served(settings, receiver)


# --- a million recipients ---------------------------------------------------------------


async def test_recipients_beyond_the_cap_get_452_and_the_session_stays_usable(settings, webhook, receiver):
    extra = 50  # stands for the million: every one past the cap is answered alike, and cheaply
    rcpts = b"".join(b"RCPT TO:<box+%d@%s>\r\n" % (n, PUBLIC.encode()) for n in range(MAX_RECIPIENTS + extra))
    async with running(settings):
        async with _session(settings) as raw:
            await raw.send(b"MAIL FROM:<ann@sender.example>\r\n" + rcpts)  # pipelined, one write
            replies = [await raw.reply() for _ in range(1 + MAX_RECIPIENTS + extra)]
            assert replies[:1 + MAX_RECIPIENTS] == ["250 2.1.0 Sender ok"] + ["250 2.1.5 Recipient ok"] * MAX_RECIPIENTS
            assert replies[1 + MAX_RECIPIENTS:] == ["452 4.5.3 Too many recipients"] * extra
            assert (await raw.command(b"DATA\r\n")).startswith("354")
            assert (await raw.command(_message("many") + b".\r\n")).startswith("250 2.0.0")
            assert await raw.command(b"RSET\r\n") == "250 2.0.0 Ok"
            assert (await _transaction(raw, _message("next in session"))).startswith("250 2.0.0")
        many = await _delivered(receiver, "many")
        assert many["envelope"]["rcpt_to"] == [f"box+{n}@{PUBLIC}" for n in range(MAX_RECIPIENTS)]
        await _delivered(receiver, "next in session")
        await _still_served(settings, receiver)


# --- MIME ------------------------------------------------------------------------------


def _nested(levels: int) -> bytes:
    opening = b"".join(b"--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n" % (n, n + 1)
                       for n in range(levels))
    closing = b"".join(b"\r\n--b%d--\r\n" % n for n in reversed(range(levels)))
    innermost = b"--b%d\r\nContent-Type: text/plain\r\n\r\ndeep down\r\n--b%d--" % (levels, levels)
    return opening + innermost + closing


async def test_unbalanced_and_deeply_nested_mime_is_delivered(settings, webhook, receiver):
    nested = _message("nested", _nested(500), headers=b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; '
                                                      b'boundary="b0"\r\n')
    unbalanced = _message("unbalanced", b"--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n"
                          b"--inner\r\nContent-Type: text/plain\r\n\r\nunclosed inner\r\n--outer--\r\n--inner--\r\n"
                          b"--nobody\r\n", headers=b"Content-Type: multipart/mixed; boundary=outer\r\n")
    never = _message("boundary never appears", b"just text\r\n",
                     headers=b"Content-Type: multipart/mixed; boundary=absent\r\n")
    async with running(settings):
        async with _session(settings) as raw:
            for data in (nested, unbalanced, never):
                assert (await _transaction(raw, data)).startswith("250 2.0.0")
            payload = await _delivered(receiver, "nested")
            warnings = payload["parse_warnings"]
            assert any("nested deeper than 32 levels" in w for w in warnings), warnings
            assert "deep down" in payload["text"]  # the part past the bound is passed on as text
            payload = await _delivered(receiver, "unbalanced")
            assert "unclosed inner" in payload["text"]
            payload = await _delivered(receiver, "boundary never appears")
            assert payload["text"] == "just text\n"
            assert any("never appears" in w for w in payload["parse_warnings"])
        await _still_served(settings, receiver)


# --- size: a 100 MB stream, and a message of empty lines, in a real `conduit serve` ---------


def _memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set since the last reset) of a process, in bytes."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {name: int(fields[name].split()[0]) * 1024 for name in ("VmRSS", "VmHWM")}


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)


async def _stream(raw: Raw, chunk: bytes, total: int) -> None:
    for _ in range(total // len(chunk)):
        await raw.send(chunk)


async def test_100_mb_over_the_limit_gets_552_and_memory_stays_flat(tmp_path, database_url, receiver):
    conduit = Conduit(tmp_path, database_url, smtp_max_message_bytes=str(10 * MiB))
    await conduit.start()
    try:
        await (await Mailbox.create(conduit, receiver.url)).aclose()
        settings = _Port(conduit.smtp_port)
        pid = conduit.process.pid
        async with _session(settings) as raw:  # warm up: first message, first delivery
            assert (await _transaction(raw, _message("warm up"))).startswith("250")
        await _delivered(receiver, "warm up")

        _reset_peak(pid)
        before = _memory(pid)
        async with _session(settings) as raw:
            await _start_data(raw)
            await _stream(raw, (b"x" * 998 + b"\r\n") * 64, 100 * MiB)
            assert await raw.command(b".\r\n") == "552 5.3.4 Message too big for system"
            assert (await _transaction(raw, _message("same session"))).startswith("250")
        growth = _memory(pid)["VmHWM"] - before["VmRSS"]
        print(f"100 MiB over a 10 MiB limit: peak RSS grew {growth / MiB:.1f} MiB")
        assert growth < 20 * MiB

        # Just under the limit, all empty lines: aiosmtpd's per-line buffers made this 85 times
        # the message size (845 MiB measured); one buffer, and the payload, stay within 15 times.
        _reset_peak(pid)
        before = _memory(pid)
        async with _session(settings) as raw:
            await _start_data(raw)
            await raw.send(_message("empty lines"))
            await _stream(raw, b"\r\n" * 32768, 10 * MiB - 64 * 1024)
            assert (await raw.command(b".\r\n")).startswith("250 2.0.0")
        assert (await _delivered(receiver, "empty lines"))["text"].count("\n") > 5_000_000
        growth = _memory(pid)["VmHWM"] - before["VmRSS"]
        print(f"10 MiB of empty lines, received and delivered: peak RSS grew {growth / MiB:.1f} MiB")
        assert growth < 150 * MiB
        await _still_served_by(conduit, receiver)
    finally:
        conduit.stop()


async def _still_served_by(conduit: Conduit, receiver) -> None:
    await _still_served(_Port(conduit.smtp_port), receiver)


class _Port:
    """What the helpers read of the settings, for a `conduit serve` child process."""

    def __init__(self, smtp_port: int) -> None:
        self.smtp_port = smtp_port


# --- slowloris ---------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [_overrides(smtp_timeout=2, smtp_max_sessions=30)])
async def test_slow_and_idle_sessions_are_cut_at_the_timeout_and_block_nobody(settings, webhook, receiver):
    async with running(settings):
        idle = [await Raw.open(settings.smtp_port) for _ in range(10)]
        dribbling = [await Raw.open(settings.smtp_port) for _ in range(10)]
        for raw in dribbling:
            await raw.reply()

        async def dribble(raw: Raw) -> None:
            try:
                while True:  # one byte at a time, never a whole command
                    await raw.send(b"N")
                    await asyncio.sleep(0.1)
            except (ConnectionError, OSError):
                return

        tasks = [asyncio.create_task(dribble(raw)) for raw in dribbling]
        started = asyncio.get_running_loop().time()
        await _still_served(settings, receiver, "while they hang on")
        assert asyncio.get_running_loop().time() - started < 2  # served while all 20 were still open

        for raw in idle + dribbling:  # cut, with a reason, within the timeout (plus slack)
            received = await raw.read_to_end(timeout=10)
            assert received.endswith(b"421 4.4.2 Timeout, closing connection\r\n"), received[-80:]
            raw.close()
        assert asyncio.get_running_loop().time() - started < 10
        await asyncio.gather(*tasks)
        await _still_served(settings, receiver)


@pytest.mark.parametrize("settings_overrides", [_overrides(smtp_timeout=2, smtp_max_sessions=5)])
async def test_the_session_cap_answers_421_until_idle_sessions_are_cut(settings, webhook, receiver):
    async with running(settings):
        idle = [await Raw.open(settings.smtp_port) for _ in range(5)]
        for raw in idle:
            assert (await raw.reply()).startswith("220")
        extra = await Raw.open(settings.smtp_port)
        assert await extra.read_to_end(timeout=5) == b"421 4.3.2 Too many connections, try again later\r\n"
        for raw in idle:
            await raw.read_to_end(timeout=10)
        await _still_served(settings, receiver)


@pytest.mark.parametrize("settings_overrides", [_overrides(smtp_timeout=1, smtp_max_sessions=1)])
async def test_a_client_that_never_reads_its_replies_loses_its_session_all_the_same(settings, webhook, receiver):
    """Its unread replies fill the server's buffers; closing waited for them to be read, so
    the session (and its place under the cap) was held for ever."""
    async with running(settings):
        while True:  # until the start-up probe (tests.support.pipeline.wait_for_port) has left
            hog = await Raw.open(settings.smtp_port, rcvbuf=4096)
            if (await hog.reply()).startswith("220"):
                break
            hog.close()
            await asyncio.sleep(0.05)
        hog.writer.write(b"EHLO never.reads.example\r\n" * 100_000)  # ~15 MB of replies, never read
        # Cut after the timeout and as long again to flush: then its place is free again.
        async with asyncio.timeout(20):
            while True:
                try:
                    await _still_served(settings, receiver)
                    break
                except aiosmtplib.SMTPConnectResponseError as refused:
                    assert refused.code == 421
                    await asyncio.sleep(0.2)
        hog.writer.transport.abort()
