"""Pytest fixture for the loopback DNS server; import it into a test module to use it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.dns_server import LoopbackDNS


@pytest.fixture
def dns_server() -> Iterator[LoopbackDNS]:
    with LoopbackDNS() as server:
        yield server


@pytest.fixture(scope="session")
def _loopback_dns_session() -> Iterator[LoopbackDNS]:
    with LoopbackDNS() as server:
        yield server


@pytest.fixture
def dns_zone(_loopback_dns_session: LoopbackDNS) -> LoopbackDNS:
    """One real authoritative DNS server on 127.0.0.1 for the session, emptied for each test.

    Point Conduit at it with ``{"dns_servers": f"127.0.0.1:{dns_zone.port}"}``; unknown names
    answer NXDOMAIN.
    """
    _loopback_dns_session.clear()
    return _loopback_dns_session
