"""The PROXY protocol header parser (conduit/smtp/proxy_protocol.py), on headers built by hand
after HAProxy's proxy-protocol.txt; HAProxy's own headers are in tests/e2e/test_smtp_proxy_protocol.py."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from conduit.smtp.proxy_protocol import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    parse,
)


def v2(command: int = 1, family: int = 1, protocol: int = 1, addresses: bytes = b"", tlvs: bytes = b"",
       version: int = 2, length: int | None = None) -> bytes:
    body = addresses + tlvs
    return V2_SIGNATURE + struct.pack("!BBH", version << 4 | command, family << 4 | protocol,
                                      len(body) if length is None else length) + body


def inet(source: str, destination: str, source_port: int, destination_port: int) -> bytes:
    return (ipaddress.ip_address(source).packed + ipaddress.ip_address(destination).packed
            + struct.pack("!HH", source_port, destination_port))


TLVS = b"\x01\x00\x02h2" + b"\x05\x00\x04abcd" + b"\x20\x00\x05\x01\x00\x00\x00\x00"  # ALPN, UNIQUE_ID, SSL

VALID = [
    (b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 25\r\n", ("192.0.2.10", 56324)),
    (b"PROXY TCP6 2001:db8::10 2001:db8::1 56324 25\r\n", ("2001:db8::10", 56324)),
    (b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", ("255.255.255.255", 65535)),
    (b"PROXY UNKNOWN\r\n", None),
    (b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", None),
    (v2(addresses=inet("192.0.2.10", "198.51.100.1", 56324, 25)), ("192.0.2.10", 56324)),
    (v2(family=2, addresses=inet("2001:db8::10", "2001:db8::1", 40000, 25)), ("2001:db8::10", 40000)),
    (v2(addresses=inet("192.0.2.10", "198.51.100.1", 1, 25), tlvs=TLVS), ("192.0.2.10", 1)),
    (v2(command=0, family=0, protocol=0), None),  # LOCAL: a health check by the proxy itself
    (v2(command=0, addresses=inet("192.0.2.10", "198.51.100.1", 1, 25)), None),  # LOCAL ignores addresses
    (v2(family=0, protocol=0, tlvs=TLVS), None),  # AF_UNSPEC
    (v2(family=3, addresses=b"/run/a.sock".ljust(108, b"\0") + b"/run/b.sock".ljust(108, b"\0")), None),  # AF_UNIX
]


@pytest.mark.parametrize(("header", "source"), VALID)
def test_a_valid_header_is_read_whole_or_in_any_pieces(header: bytes, source: tuple[str, int] | None):
    following = b"EHLO client.example\r\n"
    expected = ProxyHeader(length=len(header), source=source, version=1 if header.startswith(b"PROXY") else 2)
    assert parse(header + following) == expected
    for cut in range(len(header)):  # every shorter start is incomplete, never an error
        assert parse(header[:cut]) is None, cut


MALFORMED = [
    (b"EHLO client.example\r\n", "no PROXY header"),
    (b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 25\n", "a bare LF"),
    (b"PROXY TCP4 192.0.2.10 198.51.100.1 56324\r\n", "a port missing"),
    (b"PROXY TCP4  192.0.2.10 198.51.100.1 56324 25\r\n", "two spaces"),
    (b"PROXY TCP4 2001:db8::10 198.51.100.1 56324 25\r\n", "an IPv6 address in TCP4"),
    (b"PROXY TCP6 192.0.2.10 2001:db8::1 56324 25\r\n", "an IPv4 address in TCP6"),
    (b"PROXY TCP4 192.0.2.300 198.51.100.1 56324 25\r\n", "no IPv4 address"),
    (b"PROXY TCP4 192.0.2.10 198.51.100.1 65536 25\r\n", "a port out of range"),
    (b"PROXY TCP4 192.0.2.10 198.51.100.1 056324 25\r\n", "a leading zero"),
    (b"PROXY UDP4 192.0.2.10 198.51.100.1 56324 25\r\n", "not TCP"),
    (b"PROXY UNKNOWNX\r\n", "a protocol named otherwise"),
    (b"PROXY TCP4 " + b"1" * 100, "107 bytes without CRLF"),
    (b"proxy TCP4 192.0.2.10 198.51.100.1 56324 25\r\n", "lower case"),
    (v2(version=1, addresses=inet("192.0.2.10", "198.51.100.1", 1, 25)), "version 1 in a version 2 header"),
    (v2(command=2, addresses=inet("192.0.2.10", "198.51.100.1", 1, 25)), "an unknown command"),
    (v2(family=4), "an unknown family"),
    (v2(protocol=2, addresses=inet("192.0.2.10", "198.51.100.1", 1, 25)), "UDP"),
    (v2(addresses=b"\x01\x02\x03"), "shorter than its addresses"),
    (v2(family=2, addresses=inet("192.0.2.10", "198.51.100.1", 1, 25)), "IPv4 addresses under AF_INET6"),
    (v2(length=4097) + b"\0" * 4097, "longer than the limit"),
    (V2_SIGNATURE[:6] + b"X", "a broken signature"),
]


@pytest.mark.parametrize(("data", "why"), MALFORMED, ids=[case[1] for case in MALFORMED])
def test_a_malformed_header_is_refused_as_soon_as_it_shows(data: bytes, why: str):
    with pytest.raises(ProxyHeaderError):
        parse(data)


def test_an_oversized_version_2_header_is_refused_before_its_body_arrives():
    with pytest.raises(ProxyHeaderError):
        parse(v2(length=65535))  # only the 16 bytes that announce it


def test_nothing_yet_is_incomplete():
    assert parse(b"") is None
