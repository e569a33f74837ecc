"""The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2): how a TCP load
balancer in front of Conduit tells it the address of the client it accepted.

The header is the first thing on the connection, before the SMTP greeting; this module only
reads it. Version 1 is a text line (``PROXY TCP4 <src> <dst> <sport> <dport>\\r\\n``, at most
107 bytes); version 2 is binary (a 12-byte signature, version and command, family and
protocol, a length, the addresses, then TLVs, which Conduit skips). A header that names no
client (v1 ``UNKNOWN``, v2 ``LOCAL`` or ``AF_UNSPEC``, or a Unix socket) leaves the
connection's own address in place, as the specification asks.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass
from typing import Final

V1_PREFIX: Final = b"PROXY "
V1_MAX: Final = 107  # the longest valid line, CRLF included (proxy-protocol.txt 2.1)
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V2_MAX_LENGTH: Final = 4096  # the addresses and TLVs a header may carry here; HAProxy's fit well within

_V1_TCP = re.compile(rb"PROXY (TCP4|TCP6) (\S+) (\S+) (\d{1,5}) (\d{1,5})\r\n")
_V2_LOCAL, _V2_PROXY = 0, 1
_AF_UNSPEC, _AF_INET, _AF_INET6, _AF_UNIX = 0, 1, 2, 3
_STREAM_OR_UNSPEC = (0, 1)
_ADDRESS_BLOCK = {_AF_UNSPEC: 0, _AF_INET: 12, _AF_INET6: 36, _AF_UNIX: 216}


class ProxyHeaderError(ValueError):
    """The connection does not start with a valid PROXY header; the reason is safe to log."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    length: int  # bytes the header took on the connection
    source: tuple[str, int] | None  # the client's address and port; None: keep the connection's own
    version: int


def parse(data: bytes | bytearray) -> ProxyHeader | None:
    """The header at the start of ``data``; None while it may still be incomplete.

    Raises ProxyHeaderError as soon as ``data`` cannot be the start of a valid header."""
    if data[:1] == b"P":
        return _parse_v1(data)
    if data[:1] == b"\r":
        return _parse_v2(data)
    if data:
        raise ProxyHeaderError("no PROXY header")
    return None


def _parse_v1(data: bytes | bytearray) -> ProxyHeader | None:
    if not V1_PREFIX.startswith(bytes(data[:len(V1_PREFIX)])):
        raise ProxyHeaderError("no PROXY header")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX or b"\n" in data[:V1_MAX]:
            raise ProxyHeaderError("version 1 line without CRLF within 107 bytes")
        return None
    line = bytes(data[:end + 2])
    if line.startswith(b"PROXY UNKNOWN") and line[13:14] in (b" ", b"\r"):
        return ProxyHeader(length=len(line), source=None, version=1)
    match = _V1_TCP.fullmatch(line)
    if match is None:
        raise ProxyHeaderError("malformed version 1 line")
    family, source, _, source_port, destination_port = match.groups()
    version = ipaddress.IPv4Address if family == b"TCP4" else ipaddress.IPv6Address
    try:
        address = version(source.decode("ascii"))
        version(match.group(3).decode("ascii"))
    except ValueError:
        raise ProxyHeaderError(f"version 1 addresses are not {family.decode()} addresses") from None
    port = _port(source_port)
    _port(destination_port)
    return ProxyHeader(length=len(line), source=(str(address), port), version=1)


def _port(text: bytes) -> int:
    port = int(text)
    if port > 65535 or (len(text) > 1 and text.startswith(b"0")):
        raise ProxyHeaderError("version 1 port out of range")
    return port


def _parse_v2(data: bytes | bytearray) -> ProxyHeader | None:
    if not V2_SIGNATURE.startswith(bytes(data[:len(V2_SIGNATURE)])):
        raise ProxyHeaderError("no PROXY header")
    if len(data) < 16:
        return None
    version_command, family_protocol, length = struct.unpack_from("!BBH", data, 12)
    if version_command >> 4 != 2:
        raise ProxyHeaderError(f"unsupported version {version_command >> 4}")
    command = version_command & 0x0F
    if command not in (_V2_LOCAL, _V2_PROXY):
        raise ProxyHeaderError(f"unknown version 2 command {command}")
    if length > V2_MAX_LENGTH:
        raise ProxyHeaderError(f"version 2 header of {length} bytes, more than {V2_MAX_LENGTH}")
    total = 16 + length
    if len(data) < total:
        return None
    if command == _V2_LOCAL:  # the proxy's own connection (a health check): its own address stands
        return ProxyHeader(length=total, source=None, version=2)
    family, protocol = family_protocol >> 4, family_protocol & 0x0F
    if family not in _ADDRESS_BLOCK or protocol not in _STREAM_OR_UNSPEC:
        raise ProxyHeaderError(f"unsupported version 2 family {family} or protocol {protocol}")
    if length < _ADDRESS_BLOCK[family]:
        raise ProxyHeaderError("version 2 header shorter than its addresses")
    source: ipaddress.IPv4Address | ipaddress.IPv6Address
    if family == _AF_INET:
        source = ipaddress.IPv4Address(bytes(data[16:20]))
        (port,) = struct.unpack_from("!H", data, 24)
    elif family == _AF_INET6:
        source = ipaddress.IPv6Address(bytes(data[16:32]))
        (port,) = struct.unpack_from("!H", data, 48)
    else:  # AF_UNSPEC, AF_UNIX: no IP address to report
        return ProxyHeader(length=total, source=None, version=2)
    return ProxyHeader(length=total, source=(str(source), port), version=2)
