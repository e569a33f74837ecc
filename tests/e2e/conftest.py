"""Fixtures shared by the end-to-end tests: a real HTTP receiver and a signed-in account."""

from __future__ import annotations

import pytest

from tests.factories import user
from tests.support.receiver import Receiver


@pytest.fixture
async def receiver():
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def alice(client):
    return await user(client)
