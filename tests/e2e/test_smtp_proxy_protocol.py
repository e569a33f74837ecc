"""The PROXY protocol (CONDUIT_SMTP_PROXY_PROTOCOL) end to end: behind a real HAProxy in TCP
mode (``send-proxy`` and ``send-proxy-v2``) in front of a real `conduit serve`, the client
address HAProxy saw reaches the payload's ``envelope.remote_ip`` and the policies'
allowed_source_ips; and hand-made headers over raw sockets: split across segments, LOCAL and
UNKNOWN, malformed, truncated, and from a peer that is not a trusted proxy.

Each 127.0.0.x address is a client of its own: the test connects from the one it names.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shutil
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conduit.smtp.proxy_protocol import V2_SIGNATURE
from tests.factories import create_webhook
from tests.support.conduit_process import Conduit, Mailbox
from tests.support.pipeline import free_port, running, wait_for_port

PUBLIC = "in.example"
BOX = f"box@{PUBLIC}"
GREETING = b"220 "


class Smtp:
    """A raw SMTP client from a source address of the test's choosing."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, source: str = "127.0.0.1", host: str = "127.0.0.1") -> Smtp:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> str:
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 20)
            assert line.endswith(b"\r\n"), f"connection closed, then {line!r}"
            if line[3:4] != b"-":
                return line.decode()[:-2]

    async def command(self, line: str) -> str:
        await self.send(line.encode() + b"\r\n")
        return await self.reply()

    async def mail(self, subject: str, to: str = BOX) -> str:
        """A transaction after the greeting: the reply to RCPT if refused, else to the end of data."""
        assert (await self.command("EHLO client.example")).startswith("250 ")
        assert (await self.command("MAIL FROM:<ann@sender.example>")).startswith("250")
        rcpt = await self.command(f"RCPT TO:<{to}>")
        if not rcpt.startswith("250"):
            return rcpt
        assert (await self.command("DATA")).startswith("354")
        return await self.command(f"From: ann@sender.example\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nHi\r\n.")

    async def closed_without_a_word(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 20) == b""

    def close(self) -> None:
        self.writer.close()


async def _delivered(receiver, subject: str) -> dict:
    for _ in range(100):
        for request in receiver.received:
            if request.json()["subject"] == subject:
                return request.json()
        await receiver.wait_for(len(receiver.received) + 1)
    raise AssertionError(f"no delivery of {subject!r}")


# --- behind a real HAProxy ---------------------------------------------------------------------

HAPROXY = shutil.which("haproxy")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (Debian package haproxy)")


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


class HaProxy:
    """HAProxy in TCP mode on loopback: one frontend per PROXY version (and one on [::1] when the
    machine has IPv6), each forwarding to Conduit's SMTP port with that version's header."""

    def __init__(self, tmp_path: Path, smtp_port: int) -> None:
        self.v1, self.v2, self.v1_ipv6 = free_port(), free_port(), free_port()
        self.ipv6 = _ipv6_loopback()
        frontends = [("v1", f"127.0.0.1:{self.v1}", "send-proxy"), ("v2", f"127.0.0.1:{self.v2}", "send-proxy-v2")]
        if self.ipv6:
            frontends.append(("v1_ipv6", f"[::1]:{self.v1_ipv6}", "send-proxy"))
        config = ["defaults", "  mode tcp", "  timeout connect 5s", "  timeout client 60s", "  timeout server 60s"]
        for name, bind, option in frontends:
            config += [f"frontend {name}", f"  bind {bind}", f"  default_backend conduit_{name}",
                       f"backend conduit_{name}", f"  server conduit 127.0.0.1:{smtp_port} {option}"]
        self.config = tmp_path / "haproxy.cfg"
        self.config.write_text("\n".join(config) + "\n")
        self.log = tmp_path / "haproxy.log"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        assert HAPROXY is not None
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(HAPROXY, "-db", "-f", str(self.config),
                                                                stdout=log, stderr=log)
        await wait_for_port(self.v1)
        await wait_for_port(self.v2)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), 10)


@pytest.fixture
async def behind_haproxy(tmp_path: Path, database_url: str,
                         receiver) -> AsyncIterator[tuple[Conduit, HaProxy, Mailbox]]:
    conduit = Conduit(tmp_path, database_url, smtp_proxy_protocol="true", trusted_proxies="127.0.0.1",
                      log_level="INFO")
    await conduit.start()
    haproxy = HaProxy(tmp_path, conduit.smtp_port)
    mailbox = None
    try:
        await haproxy.start()
        mailbox = await Mailbox.create(conduit, receiver.url)
        yield conduit, haproxy, mailbox
    finally:
        if mailbox is not None:
            await mailbox.aclose()
        await haproxy.stop()
        conduit.stop()


@needs_haproxy
async def test_the_client_address_haproxy_saw_reaches_the_payload_and_the_policy(behind_haproxy, receiver):
    _, haproxy, mailbox = behind_haproxy
    response = await mailbox.api.post("/smtp-policies", headers=mailbox.headers,
                                      json={"name": "from .7 only", "allowed_source_ips": "127.0.0.7"})
    assert response.status_code == 201, response.text
    response = await mailbox.api.put(f"/webhooks/{mailbox.hook['id']}", headers=mailbox.headers,
                                     json={"smtp_security_policy_id": response.json()["id"]})
    assert response.status_code == 200, response.text
    for version, port in (("v1", haproxy.v1), ("v2", haproxy.v2)):
        smtp = await Smtp.connect(port, source="127.0.0.7")
        try:
            assert (await smtp.reply()).startswith("220")
            assert (await smtp.mail(f"through {version}")).startswith("250 2.0.0 Ok: queued")
        finally:
            smtp.close()
        assert (await _delivered(receiver, f"through {version}"))["envelope"]["remote_ip"] == "127.0.0.7"
        smtp = await Smtp.connect(port, source="127.0.0.8")  # through the same proxy, another client
        try:
            assert (await smtp.reply()).startswith("220")
            assert (await smtp.mail(f"refused {version}")).startswith("550 5.7.1")
        finally:
            smtp.close()
    logs = await mailbox.logs("rejected")
    assert len(logs) == 2 and all("127.0.0.8" in entry["error"] for entry in logs), logs


@needs_haproxy
async def test_an_ipv6_client_behind_haproxy(behind_haproxy, receiver):
    _, haproxy, _ = behind_haproxy
    if not haproxy.ipv6:
        pytest.skip("this machine has no IPv6 loopback")
    await wait_for_port_on("::1", haproxy.v1_ipv6)
    smtp = await Smtp.connect(haproxy.v1_ipv6, source="::1", host="::1")
    try:
        assert (await smtp.reply()).startswith("220")
        assert (await smtp.mail("over ipv6")).startswith("250 2.0.0 Ok: queued")
    finally:
        smtp.close()
    assert (await _delivered(receiver, "over ipv6"))["envelope"]["remote_ip"] == "::1"


async def wait_for_port_on(host: str, port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise AssertionError(f"nothing listens on [{host}]:{port}")


@needs_haproxy
async def test_without_a_header_even_a_trusted_proxy_is_cut_off(behind_haproxy):
    conduit, _, _ = behind_haproxy
    smtp = await Smtp.connect(conduit.smtp_port, source="127.0.0.1")  # the trusted proxy's address
    try:
        await smtp.send(b"EHLO client.example\r\n")
        assert await smtp.closed_without_a_word()
    finally:
        smtp.close()
    smtp = await Smtp.connect(conduit.smtp_port, source="127.0.0.9")  # not a proxy at all
    try:
        assert await smtp.closed_without_a_word()
    finally:
        smtp.close()
    conduit.stop()
    log = conduit.log_text()
    assert "event=smtp_proxy_header_invalid peer=('127.0.0.1'" in log
    assert "event=smtp_proxy_refused peer=('127.0.0.9'" in log


# --- hand-made headers, against the server in this process -------------------------------------

def _v1(source: str, port: int = 40000) -> bytes:
    family = "TCP6" if ":" in source else "TCP4"
    destination = "::1" if ":" in source else "127.0.0.1"
    return f"PROXY {family} {source} {destination} {port} 25\r\n".encode()


def _v2(source: str | None, command: int = 1, tlvs: bytes = b"") -> bytes:
    if source is None:  # AF_UNSPEC
        return V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, 0x00, len(tlvs)) + tlvs
    addresses = (ipaddress.ip_address(source).packed + ipaddress.ip_address("127.0.0.1").packed
                 + struct.pack("!HH", 40000, 25))
    return V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, 0x11, len(addresses) + len(tlvs)) + addresses + tlvs


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict:
    return {"smtp_port": free_port(), "public_domains": PUBLIC, "allow_private_targets": True,
            "inbound_auth_checks": False, "smtp_proxy_protocol": True, "trusted_proxies": "127.0.0.1",
            **getattr(request, "param", {})}


@pytest.fixture
async def webhook(client, alice, receiver) -> dict:
    return await create_webhook(client, alice, BOX, receiver.url)


HEADERS = [
    ("v1 in pieces", _v1("192.0.2.10"), "192.0.2.10"),
    ("v1 TCP6", _v1("2001:db8::10"), "2001:db8::10"),
    ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n", "127.0.0.1"),
    ("v2 with TLVs", _v2("198.51.100.20", tlvs=b"\x01\x00\x02h2\x05\x00\x04abcd"), "198.51.100.20"),
    ("v2 LOCAL", _v2("198.51.100.20", command=0), "127.0.0.1"),
    ("v2 AF_UNSPEC", _v2(None), "127.0.0.1"),
]


@pytest.mark.parametrize(("name", "header", "remote_ip"), HEADERS, ids=[h[0] for h in HEADERS])
async def test_a_header_sent_in_pieces_names_the_client(settings, webhook, receiver, name, header, remote_ip):
    async with running(settings):
        smtp = await Smtp.connect(settings.smtp_port)
        try:
            for start in range(0, len(header), 5):  # segments of five bytes
                await smtp.send(header[start:start + 5])
                await asyncio.sleep(0.002)
            assert (await smtp.reply()).startswith("220")
            assert (await smtp.mail(name)).startswith("250 2.0.0 Ok: queued")
        finally:
            smtp.close()
        assert (await _delivered(receiver, name))["envelope"]["remote_ip"] == remote_ip


BROKEN = [
    ("a command instead", b"EHLO client.example\r\n"),
    ("v1 garbled", b"PROXY TCP4 192.0.2.10 nowhere 40000 25\r\n"),
    ("v1 over 107 bytes", b"PROXY TCP4 " + b"1" * 120 + b"\r\n"),
    ("v2 version 3", V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\0" * 12),
    ("v2 too long", V2_SIGNATURE + b"\x21\x11\xff\xff"),
    ("an HTTP request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
]


@pytest.mark.parametrize(("name", "data"), BROKEN, ids=[b[0] for b in BROKEN])
async def test_a_broken_header_closes_the_connection_without_a_greeting(settings, webhook, receiver, caplog, name,
                                                                        data):
    caplog.set_level(logging.WARNING, logger="conduit.smtp")
    async with running(settings):
        smtp = await Smtp.connect(settings.smtp_port)
        try:
            await smtp.send(data)
            assert await smtp.closed_without_a_word()
        finally:
            smtp.close()
        smtp = await Smtp.connect(settings.smtp_port)  # the next connection is served
        try:
            await smtp.send(_v1("192.0.2.10"))
            assert (await smtp.reply()).startswith("220")
        finally:
            smtp.close()
    assert "event=smtp_proxy_header_invalid" in caplog.text


@pytest.mark.parametrize("settings_overrides", [{"smtp_timeout": 1}], indirect=True)
async def test_half_a_header_cannot_hold_the_session(settings, webhook, caplog):
    caplog.set_level(logging.WARNING, logger="conduit.smtp")
    async with running(settings):
        smtp = await Smtp.connect(settings.smtp_port)
        try:
            await smtp.send(_v1("192.0.2.10")[:20])
            started = asyncio.get_running_loop().time()
            assert await smtp.closed_without_a_word()
            assert asyncio.get_running_loop().time() - started < 10  # the timeout is 1 s; generous for a busy machine
        finally:
            smtp.close()
    assert "event=smtp_proxy_header_timeout" in caplog.text


@pytest.mark.parametrize("settings_overrides", [{"trusted_proxies": "127.0.0.2"}], indirect=True)
async def test_a_peer_that_is_no_trusted_proxy_is_refused(settings, webhook, caplog):
    caplog.set_level(logging.WARNING, logger="conduit.smtp")
    async with running(settings):
        smtp = await Smtp.connect(settings.smtp_port, source="127.0.0.1")
        try:
            await smtp.send(_v1("192.0.2.10"))  # a valid header proves nothing from this peer
            assert await smtp.closed_without_a_word()
        finally:
            smtp.close()
        smtp = await Smtp.connect(settings.smtp_port, source="127.0.0.2")
        try:
            await smtp.send(_v1("192.0.2.10"))
            assert (await smtp.reply()).startswith("220")
        finally:
            smtp.close()
    assert "event=smtp_proxy_refused peer=('127.0.0.1'" in caplog.text


@pytest.mark.parametrize("settings_overrides", [{"smtp_proxy_protocol": False}], indirect=True)
async def test_without_the_setting_a_header_is_no_command(settings, webhook, receiver):
    async with running(settings):
        smtp = await Smtp.connect(settings.smtp_port)
        try:
            assert (await smtp.reply()).startswith("220")
            assert await smtp.command(_v1("192.0.2.10").decode().strip()) == '500 Error: command "PROXY" not recognized'
            assert (await smtp.mail("direct")).startswith("250 2.0.0 Ok: queued")
        finally:
            smtp.close()
        assert (await _delivered(receiver, "direct"))["envelope"]["remote_ip"] == "127.0.0.1"
