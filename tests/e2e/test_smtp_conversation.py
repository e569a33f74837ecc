"""Conduit's own SMTP protocol, spoken to byte for byte: the replies clients knew from aiosmtpd
(which Conduit used before), pipelining in one write, commands and the end of data split across
TCP segments, the AUTH challenges, STARTTLS, and a client that stops sending.

The server is the real one (conduit.runtime.run) with a real database and webhook receiver; the
client sends exactly the bytes given, over raw asyncio streams.
"""

from __future__ import annotations

import asyncio
import base64
import socket

import pytest

from tests.factories import create_policy, create_webhook
from tests.support.mail_auth import TlsFiles
from tests.support.pipeline import free_port, running

PUBLIC = "in.example"
BOX = f"box@{PUBLIC}"
HOSTNAME = "mx.test.example"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return TlsFiles.create(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest, tls_files: TlsFiles) -> dict:
    return {"smtp_port": free_port(), "public_domains": PUBLIC, "allow_private_targets": True,
            "inbound_auth_checks": False, "retry_schedule": "0,0.3,0.3", "smtp_max_message_bytes": 100_000,
            "smtp_hostname": HOSTNAME, "smtp_tls_cert": str(tls_files.cert), "smtp_tls_key": str(tls_files.key),
            **getattr(request, "param", {})}


@pytest.fixture
async def webhook(client, alice, receiver) -> dict:
    return await create_webhook(client, alice, BOX, receiver.url)


class Client:
    """Sends exactly the bytes it is given; reads replies line by line."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = cls(reader, writer)
        assert await client.replies(1) == [f"220 {HOSTNAME} Conduit ESMTP"]
        return client

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def trickle(self, data: bytes, piece: int = 1) -> None:
        """``data`` in pieces of ``piece`` bytes, each its own TCP segment."""
        for start in range(0, len(data), piece):
            await self.send(data[start:start + piece])
            await asyncio.sleep(0.002)  # lets each piece leave on its own

    async def replies(self, count: int) -> list[str]:
        """The next ``count`` replies, every line of a multi-line one included."""
        lines: list[str] = []
        while count:
            line = await asyncio.wait_for(self.reader.readline(), 20)
            assert line.endswith(b"\r\n"), f"connection closed after {lines}, then {line!r}"
            lines.append(line.decode("utf-8", "replace")[:-2])
            if line[3:4] != b"-":
                count -= 1
        return lines

    async def command(self, data: bytes) -> list[str]:
        await self.send(data)
        return await self.replies(1)

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 20) == b""

    def close(self) -> None:
        self.writer.close()


def _message(subject: str, body: bytes = b"Hi there\r\n") -> bytes:
    return (b"From: Ann <ann@sender.example>\r\nTo: " + BOX.encode() + b"\r\nSubject: " + subject.encode()
            + b"\r\n\r\n" + body)


async def _delivered(receiver, subject: str) -> dict:
    for _ in range(100):
        for request in receiver.received:
            if request.json()["subject"] == subject:
                return request.json()
        await receiver.wait_for(len(receiver.received) + 1)
    raise AssertionError(f"no delivery of {subject!r}")


def _queued(reply: str) -> bool:
    return reply.startswith("250 2.0.0 Ok: queued as msg_")


EHLO = [f"250-{HOSTNAME}", "250-SIZE 100000", "250-8BITMIME", "250-SMTPUTF8", "250-STARTTLS", "250-PIPELINING",
        "250 HELP"]
COMMANDS = "AUTH DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET STARTTLS VRFY"


async def test_replies_are_those_clients_knew(settings, webhook):
    """Recorded from the aiosmtpd-based server, byte for byte."""
    conversation = [
        (b"MAIL FROM:<ann@sender.example>\r\n", ["503 Error: send HELO first"]),
        (b"AUTH PLAIN\r\n", ["503 Error: send EHLO first"]),
        (b"HELO\r\n", ["501 Syntax: HELO hostname"]),
        (b"HELO client.example\r\n", [f"250 {HOSTNAME}"]),
        (b"AUTH PLAIN\r\n", ["500 Error: command 'AUTH' not recognized"]),
        (b"HELP MAIL\r\n", ["250 Syntax: MAIL FROM: <address>"]),
        (b"MAIL FROM:<ann@sender.example> SIZE=10\r\n", ["501 Syntax: MAIL FROM: <address>"]),
        (b"ehlo client.example\r\n", EHLO),
        (b"HELP\r\n", [f"250 Supported commands: {COMMANDS}"]),
        (b"HELP mail\r\n", ["250 Syntax: MAIL FROM: <address> [SP <mail-parameters>]"]),
        (b"HELP EXPN\r\n", [f"501 Supported commands: {COMMANDS}"]),
        (b"VRFY\r\n", ["501 Syntax: VRFY <address>"]),
        (b"VRFY <ann@sender.example>\r\n", ["252 Cannot VRFY user, but will accept message and attempt delivery"]),
        (b"VRFY a@@b\r\n", ["502 Could not VRFY a@@b"]),
        (b"EXPN list\r\n", ["502 EXPN not implemented"]),
        (b"NOOP anything\r\n", ["250 OK"]),
        (b"AUTH PLAIN AHJlbGF5AHMzY3JldA==\r\n",
         ["538 5.7.11 Encryption required for requested authentication mechanism"]),
        (b"RCPT TO:<box@in.example>\r\n", ["503 Error: need MAIL command"]),
        (b"DATA\r\n", ["503 5.5.1 Error: need RCPT command"]),
        (b"MAIL FROM:\r\n", ["501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]"]),
        (b"MAIL FROM:<a@@b>\r\n", ["553 5.1.3 Error: malformed address"]),
        (b"MAIL FROM:<ann@sender.example> BODY=BINARYMIME\r\n", ["501 Error: BODY can only be one of 7BIT, 8BITMIME"]),
        (b"MAIL FROM:<ann@sender.example> SMTPUTF8=yes\r\n", ["501 Error: SMTPUTF8 takes no arguments"]),
        (b"MAIL FROM:<ann@sender.example> SIZE=100001\r\n", ["552 5.3.4 Message too big for system"]),
        (b"MAIL FROM:<ann@sender.example> FOO=bar\r\n", ["555 MAIL FROM parameters not recognized or not implemented"]),
        (b"MAIL FROM:<ann@sender.example> size=10 body=8bitmime smtputf8\r\n", ["250 2.1.0 Sender ok"]),
        (b"MAIL FROM:<c@d.example>\r\n", ["503 Error: nested MAIL command"]),
        # The next five: replies of Conduit's protocol before MAIL and RCPT shared their path parsing.
        (b"MAIL FROM:<a@@b>\r\n", ["553 5.1.3 Error: malformed address"]),  # the path is checked first
        (b"RCPT TO:\r\n", ["501 Syntax: RCPT TO: <address> [SP <mail-parameters>]"]),
        (b"RCPT <box@in.example>\r\n", ["501 Syntax: RCPT TO: <address> [SP <mail-parameters>]"]),
        (b"RCPT TO:<a@@b>\r\n", ["553 5.1.3 Error: malformed address"]),
        (b"RCPT TO:<box@in.example> NOTIFY\r\n", ["555 RCPT TO parameters not recognized or not implemented"]),
        (b"RCPT TO:<box@in.example> NOTIFY=NEVER\r\n", ["555 RCPT TO parameters not recognized or not implemented"]),
        (b"RCPT TO:<nobody@in.example>\r\n", ["550 5.1.1 No such recipient here"]),
        (b"RCPT TO:<box@in.example>\r\n", ["250 2.1.5 Recipient ok"]),
        (b"DATA x\r\n", ["501 5.5.4 Syntax: DATA"]),
        (b"RSET x\r\n", ["501 Syntax: RSET"]),
        (b"RSET\r\n", ["250 2.0.0 Ok"]),
        (b"\r\n", ["500 5.5.2 Syntax error"]),
        (b"NO\xffOP\r\n", ["500 5.5.2 Syntax error"]),
        (b"BOGUS\r\n", ['500 Error: command "BOGUS" not recognized']),
        (b"STARTTLS now\r\n", ["501 Syntax: STARTTLS"]),
        (b"QUIT x\r\n", ["501 Syntax: QUIT"]),
        (b"QUIT\r\n", ["221 Bye"]),
    ]
    async with running(settings):
        client = await Client.open(settings.smtp_port)
        try:
            for sent, expected in conversation:
                assert await client.command(sent) == expected, sent
            assert await client.closed()
        finally:
            client.close()


async def test_a_pipelined_write_of_two_transactions_is_answered_in_order(settings, webhook, receiver):
    one_write = (b"EHLO client.example\r\nMAIL FROM:<ann@sender.example>\r\nRCPT TO:<nobody@in.example>\r\n"
                 b"RCPT TO:<box@in.example>\r\nDATA\r\n" + _message("first") + b".\r\n"
                 b"MAIL FROM:<ann@sender.example>\r\nRCPT TO:<box@in.example>\r\nDATA\r\n"
                 + _message("second", b"..leading dot\r\n") + b".\r\nQUIT\r\n")
    async with running(settings):
        client = await Client.open(settings.smtp_port)
        try:
            await client.send(one_write)
            replies = await client.replies(11)  # EHLO's lines and ten more
            assert await client.closed()
        finally:
            client.close()
        assert replies[:7] == EHLO
        assert replies[7:11] == ["250 2.1.0 Sender ok", "550 5.1.1 No such recipient here", "250 2.1.5 Recipient ok",
                                 "354 End data with <CR><LF>.<CR><LF>"]
        assert _queued(replies[11]) and _queued(replies[15]), replies
        assert replies[12:15] == ["250 2.1.0 Sender ok", "250 2.1.5 Recipient ok",
                                  "354 End data with <CR><LF>.<CR><LF>"]
        assert replies[16:] == ["221 Bye"]
        assert (await _delivered(receiver, "first"))["text"] == "Hi there\n"
        assert (await _delivered(receiver, "second"))["text"] == ".leading dot\n"


async def test_commands_and_the_end_of_data_split_across_segments(settings, webhook, receiver):
    async with running(settings):
        client = await Client.open(settings.smtp_port)
        try:
            await client.trickle(b"EHLO client.example\r\nMAIL FROM:<ann@sender.example>\r\n")
            assert (await client.replies(2))[-1] == "250 2.1.0 Sender ok"
            await client.trickle(b"RCPT TO:<box@in.example>\r\nDATA\r\n", piece=3)
            assert await client.replies(2) == ["250 2.1.5 Recipient ok", "354 End data with <CR><LF>.<CR><LF>"]
            # The end of data, and a doubled dot, cut at every byte; a bare LF and CR before it.
            await client.send(_message("split", b"line one\n.\r\n..two\r\n.\r.\r\n"))
            await client.trickle(b"..three\r\n.\r\n")
            assert _queued((await client.replies(1))[0])
            await client.trickle(b"MAIL FROM:<ann@sender.example>\r\nRCPT TO:<box@in.example>\r\nDATA\r\n", piece=7)
            assert (await client.replies(3))[-1].startswith("354")
            await client.trickle(b"\r\n.\r\n")  # an empty message, then its end, byte by byte
            assert _queued((await client.replies(1))[0])
        finally:
            client.close()
        payload = await _delivered(receiver, "split")
        assert payload["text"] == "line one\n.\n.two\n\n.\n.three\n"  # a leading dot is dropped; CR and CRLF read as LF


@pytest.mark.parametrize("settings_overrides", [{"smtp_auth_insecure": True}], indirect=True)
async def test_auth_challenges(settings, client, alice, receiver):
    policy = await create_policy(client, alice, require_smtp_auth=True, smtp_credentials="relay:s3cret-relay-pw")
    await create_webhook(client, alice, BOX, receiver.url, smtp_security_policy_id=policy["id"])
    relay, secret = base64.b64encode(b"relay"), base64.b64encode(b"s3cret-relay-pw")
    async with running(settings):
        smtp = await Client.open(settings.smtp_port)
        try:
            assert "250-AUTH LOGIN PLAIN" in await smtp.command(b"EHLO client.example\r\n")
            assert await smtp.command(b"AUTH LOGIN\r\n") == ["334 VXNlciBOYW1lAA=="]  # "User Name\0"
            assert await smtp.command(b"*\r\n") == ["501 5.7.0 Auth aborted"]
            assert await smtp.command(b"AUTH PLAIN\r\n") == ["334 "]
            assert await smtp.command(b"not base64!\r\n") == ["501 5.5.2 Can't decode base64"]
            assert await smtp.command(b"AUTH PLAIN " + base64.b64encode(b"no nul") + b"\r\n") == [
                "501 5.5.2 Can't split auth value"]
            assert await smtp.command(b"AUTH LOGIN " + relay + b"\r\n") == ["334 UGFzc3dvcmQA"]  # "Password\0"
            assert await smtp.command(base64.b64encode(b"wrong") + b"\r\n") == [
                "535 5.7.8 Authentication credentials invalid"]
            assert await smtp.command(b"MAIL FROM:<ann@sender.example>\r\nRCPT TO:<box@in.example>\r\n") == [
                "250 2.1.0 Sender ok"]
            assert await smtp.replies(1) == ["530 5.7.0 Authentication required"]
            assert await smtp.command(b"RSET\r\n") == ["250 2.0.0 Ok"]
            await smtp.send(b"AUTH LOGIN\r\n")
            assert await smtp.replies(1) == ["334 VXNlciBOYW1lAA=="]
            await smtp.trickle(relay + b"\r\n")  # an answer in pieces
            assert await smtp.replies(1) == ["334 UGFzc3dvcmQA"]
            assert await smtp.command(secret + b"\r\n") == ["235 2.7.0 Authentication successful"]
            assert await smtp.command(b"AUTH PLAIN\r\n") == ["503 Already authenticated"]
            await smtp.send(b"MAIL FROM:<ann@sender.example>\r\nRCPT TO:<box@in.example>\r\nDATA\r\n")
            assert (await smtp.replies(3))[1:] == ["250 2.1.5 Recipient ok", "354 End data with <CR><LF>.<CR><LF>"]
            assert _queued((await smtp.command(_message("authenticated") + b".\r\n"))[0])
        finally:
            smtp.close()
        assert (await _delivered(receiver, "authenticated"))["envelope"]["auth_user"] == "relay"


async def test_commands_sent_in_clear_behind_starttls_are_dropped(settings, webhook, receiver, tls_files):
    """RFC 3207 4.2: what a man in the middle appends to STARTTLS must not run inside TLS."""
    async with running(settings):
        client = await Client.open(settings.smtp_port)
        try:
            assert (await client.command(b"EHLO client.example\r\n"))[-1] == "250 HELP"
            await client.send(b"STARTTLS\r\nMAIL FROM:<mallory@evil.example>\r\n")
            assert await client.replies(1) == ["220 Ready to start TLS"]
            await client.writer.start_tls(tls_files.client_context(), server_hostname="127.0.0.1")
            assert await client.command(b"MAIL FROM:<ann@sender.example>\r\n") == ["503 Error: send HELO first"]
            ehlo = await client.command(b"EHLO client.example\r\n")
            assert "250-STARTTLS" not in ehlo and "250-AUTH LOGIN PLAIN" in ehlo
            assert await client.command(b"STARTTLS\r\n") == ["503 5.5.1 Error: TLS already active"]
            await client.send(b"MAIL FROM:<ann@sender.example>\r\nRCPT TO:<box@in.example>\r\nDATA\r\n")
            assert (await client.replies(3))[-1].startswith("354")
            assert _queued((await client.command(_message("over tls") + b".\r\n"))[0])
        finally:
            client.close()
        assert (await _delivered(receiver, "over tls"))["envelope"]["tls"] is True


async def test_a_client_that_stops_sending_gets_its_last_answers(settings, webhook, receiver):
    async with running(settings):
        client = await Client.open(settings.smtp_port)
        try:
            await client.send(b"EHLO client.example\r\nMAIL FROM:<ann@sender.example>\r\nRCPT TO:<box@in.example>\r\n"
                              b"DATA\r\n")
            assert (await client.replies(4))[-1].startswith("354")
            await client.send(_message("then eof") + b".\r\nNOOP\r\n")
            client.writer.write_eof()
            replies = await client.replies(2)
            assert _queued(replies[0]) and replies[1] == "250 OK"
            assert await client.closed()
        finally:
            client.close()
        await _delivered(receiver, "then eof")


async def test_too_many_unrecognized_commands_end_the_session(settings, webhook):
    async with running(settings):
        client = await Client.open(settings.smtp_port)
        try:
            await client.send(b"ONE\r\nTWO\r\nTHREE\r\nFOUR\r\nFIVE\r\nNOOP\r\n")
            assert await client.replies(5) == [
                '500 Error: command "ONE" not recognized', '500 Error: command "TWO" not recognized',
                '500 Error: command "THREE" not recognized', '500 Error: command "FOUR" not recognized',
                "502 5.5.1 Too many unrecognized commands, goodbye."]
            assert await client.closed()
        finally:
            client.close()
