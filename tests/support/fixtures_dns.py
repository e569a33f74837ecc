"""Pytest fixture for the loopback DNS server; import it into a test module to use it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.dns_server import LoopbackDNS


@pytest.fixture
def dns_server() -> Iterator[LoopbackDNS]:
    server = LoopbackDNS()
    server.start()
    try:
        yield server
    finally:
        server.stop()
