"""The delivery worker survives a misbehaving receiver: one that is down, hangs, is slow, fails
for good, answers 10 MB, cuts its response short or redirects. Each case ends with the worker
still delivering fresh mail and no job left holding a lease."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from itertools import pairwise

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from conduit.storage.models import DeliveryJob, DeliveryLog
from tests.factories import create_webhook
from tests.support.conversation import _eventually, _logs, _mail, _send
from tests.support.pipeline import free_port, running
from tests.support.receiver import Receiver, Reply

PUBLIC = "in.example"
TIMEOUT = 2.0  # CONDUIT_DELIVERY_TIMEOUT
RETRY = 0.3  # every retry of the schedule; the worker also looks at the queue at least every second
SCHEDULE = ",".join(["0"] + [str(RETRY)] * 9)  # ten attempts
SHORT_SCHEDULE = f"0,{RETRY},{RETRY}"  # three attempts
BIG_BODY = 10 * 1024 * 1024


def _overrides(schedule: str = SCHEDULE) -> dict:
    # keep_raw_days: a finished job is deleted with its message unless the message is kept
    return {"smtp_port": free_port(), "public_domains": PUBLIC, "allow_private_targets": True,
            "inbound_auth_checks": False, "retry_schedule": schedule, "delivery_timeout": TIMEOUT,
            "delivery_lease": TIMEOUT + 5, "keep_raw_days": 1}


@pytest.fixture
def settings_overrides() -> dict:
    return _overrides()


@pytest.fixture
async def good() -> AsyncIterator[Receiver]:
    """A receiver that always answers 200, for the "worker is still healthy" check."""
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


# Helpers -------------------------------------------------------------------------------------


async def _queue(settings, to: str, subject: str = "Hello") -> str:
    """Send one message; the message id from Conduit's ``250 … queued as msg_…``."""
    _, reply = await _send(settings, _mail(to, subject=subject))
    return reply.rsplit(" ", 1)[1]


async def _rows(engine: AsyncEngine, model, *where) -> list:
    async with AsyncSession(engine) as db:
        return list(await db.scalars(select(model).where(*where)))


async def _attempts(engine: AsyncEngine, message_id: str) -> list[DeliveryLog]:
    """The delivery log rows of one message, oldest first (the API rounds times to seconds)."""
    rows = await _rows(engine, DeliveryLog, DeliveryLog.smtp_message_id == message_id)
    return sorted(rows, key=lambda row: row.attempted_at)


async def _oldest_first(client, owner, webhook_id: str, count: int) -> list[dict]:
    """The webhook's logs through the API, oldest first, once there are ``count`` of them."""

    async def probe() -> list[dict] | None:
        logs = await _logs(client, owner, webhook_id, page_size=200)
        return logs[::-1] if len(logs) >= count else None
    logs = await _eventually(probe)
    assert len(logs) == count, logs
    return logs


def _assert_spaced(rows: list[DeliveryLog]) -> None:
    """Consecutive attempts are at least the scheduled delay apart (less the 10 % jitter)."""
    times = [row.attempted_at for row in rows]
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(times)]
    assert all(gap >= RETRY * 0.9 for gap in gaps), gaps


async def _unsettled(engine: AsyncEngine) -> list[DeliveryJob]:
    rows = await _rows(engine, DeliveryJob)
    return [job for job in rows if job.status == "queued" or job.locked_until is not None]


async def _assert_still_healthy(settings, client, owner, engine: AsyncEngine, good: Receiver) -> None:
    """A fresh message to a good webhook is delivered, then every job is finished, none leased."""
    hook = await create_webhook(client, owner, f"fresh@{PUBLIC}", good.url)
    message_id = await _queue(settings, f"fresh@{PUBLIC}", subject="fresh")

    async def delivered() -> bool:
        return [log["status"] for log in await _logs(client, owner, hook["id"])] == ["delivered"]
    await _eventually(delivered)
    assert message_id in [r.json()["id"] for r in good.received]

    async def settled() -> bool:
        return not await _unsettled(engine)
    try:
        await _eventually(settled)
    except AssertionError:
        raise AssertionError(f"jobs still queued or leased: {await _unsettled(engine)}") from None


# The cases -----------------------------------------------------------------------------------


async def test_receiver_down_then_back_delivers_each_message_once(settings, client, alice, engine, good):
    port = free_port()  # nothing listens here yet: connection refused
    receiver = Receiver()
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", f"http://127.0.0.1:{port}/hook")
    try:
        async with running(settings):
            ids = [await _queue(settings, f"box@{PUBLIC}", subject=f"m{n}") for n in range(3)]

            async def each_failed_twice() -> bool:
                return all([len(await _attempts(engine, i)) >= 2 for i in ids])
            await _eventually(each_failed_twice)
            await receiver.start(port)
            await receiver.wait_for(len(ids))
            await _assert_still_healthy(settings, client, alice, engine, good)
        # Exactly once: no message reached the receiver twice.
        assert Counter(r.json()["id"] for r in receiver.received) == Counter(ids)
        logs = await _logs(client, alice, hook["id"], page_size=200)
        jobs = {job.message_id: job for job in await _rows(engine, DeliveryJob, DeliveryJob.webhook_id == hook["id"])}
        for message_id in ids:
            mine = [log for log in logs if log["smtp_message_id"] == message_id][::-1]
            *failures, last = mine
            assert len(failures) >= 2 and len(mine) <= len(settings.retry_delays), mine
            assert all(f["status"] == "retrying" and f["http_status"] == 0 for f in failures), failures
            assert all("could not connect" in f["error"] for f in failures), failures
            assert (last["status"], last["http_status"], last["error"]) == ("delivered", 200, "")
            assert (jobs[message_id].status, jobs[message_id].attempts) == ("delivered", len(mine))
            _assert_spaced(await _attempts(engine, message_id))
    finally:
        await receiver.stop()


async def test_hanging_receiver_times_out_while_other_webhooks_are_delivered(
        settings, client, alice, engine, receiver, good):
    receiver.reply(Reply(hang=True))  # the first request never gets an answer; then 200
    stuck = await create_webhook(client, alice, f"stuck@{PUBLIC}", receiver.url)
    other = await create_webhook(client, alice, f"other@{PUBLIC}", good.url)
    async with running(settings):
        await _queue(settings, f"stuck@{PUBLIC}")
        await receiver.wait_for(1)  # hanging now
        await _queue(settings, f"other@{PUBLIC}")
        await good.wait_for(1)
        # It arrived while the stuck webhook's attempt was still open (TIMEOUT is 20x what this takes).
        assert await _logs(client, alice, stuck["id"]) == []
        (other_log,) = await _oldest_first(client, alice, other["id"], 1)
        timed_out, delivered = await _oldest_first(client, alice, stuck["id"], 2)
        await _assert_still_healthy(settings, client, alice, engine, good)
    assert (timed_out["status"], timed_out["http_status"]) == ("retrying", 0)
    assert timed_out["error"] == f"no complete response within {TIMEOUT:g} s (timeout)"
    assert TIMEOUT * 1000 * 0.9 <= timed_out["duration_ms"] < (TIMEOUT + 10) * 1000
    assert (delivered["status"], delivered["http_status"]) == ("delivered", 200)
    assert (other_log["status"], other_log["http_status"]) == ("delivered", 200)
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]  # the same job, retried


async def test_slow_receiver_just_under_the_timeout_is_delivered(settings, client, alice, engine, receiver, good):
    receiver.reply(Reply(delay=TIMEOUT * 0.65))
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    async with running(settings):
        await _queue(settings, f"box@{PUBLIC}")
        (log,) = await _oldest_first(client, alice, hook["id"], 1)
        await _assert_still_healthy(settings, client, alice, engine, good)
    assert (log["status"], log["http_status"], log["error"]) == ("delivered", 200, "")
    assert log["duration_ms"] >= TIMEOUT * 1000 * 0.65
    assert len(receiver.received) == 1


@pytest.mark.parametrize("settings_overrides", [_overrides(SHORT_SCHEDULE)])
async def test_500_forever_fails_after_the_schedule(settings, client, alice, engine, receiver, good):
    receiver.default = Reply(status=500, body="boom")
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    async with running(settings):
        message_id = await _queue(settings, f"box@{PUBLIC}")
        logs = await _oldest_first(client, alice, hook["id"], 3)
        await _assert_still_healthy(settings, client, alice, engine, good)
    assert [(log["status"], log["http_status"]) for log in logs] == [
        ("retrying", 500), ("retrying", 500), ("failed", 500)]
    assert len(receiver.received) == 3
    (job,) = await _rows(engine, DeliveryJob, DeliveryJob.webhook_id == hook["id"])
    assert (job.status, job.attempts, job.locked_until) == ("failed", 3, None)
    assert job.last_error == "HTTP 500 Internal Server Error: boom"
    assert [log["error"] for log in logs] == ["HTTP 500 Internal Server Error: boom"] * 3
    assert job.finished_at is not None
    _assert_spaced(await _attempts(engine, message_id))


async def test_10_mb_response_is_delivered_and_only_an_excerpt_is_read(settings, client, alice, engine, receiver,
                                                                      good):
    receiver.reply(Reply(body_bytes=BIG_BODY))
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    async with running(settings):
        message_id = await _queue(settings, f"box@{PUBLIC}")
        (log,) = await _oldest_first(client, alice, hook["id"], 1)
        await _assert_still_healthy(settings, client, alice, engine, good)

        async def stream_ended() -> bool:
            return bool(receiver.streams_finished)
        await _eventually(stream_ended)
    assert (log["status"], log["http_status"]) == ("delivered", 200)
    (row,) = await _attempts(engine, message_id)
    assert 0 < len(row.response_excerpt) <= 4000 and set(row.response_excerpt) == {"x"}
    # The worker hung up after its 64 KiB bound: the receiver could not write all 10 MB.
    assert receiver.streams_finished == [False]


class CutOffReceiver:
    """A raw HTTP/1.1 server on loopback: the first requests get these bytes and a closed
    connection (a response cut off mid-way), every later one a proper 200."""

    def __init__(self, *cut_offs: bytes) -> None:
        self.cut_offs = list(cut_offs)
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hook"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            self.requests.append(head + await reader.readexactly(int(length.group(1)) if length else 0))
            if self.cut_offs:
                writer.write(self.cut_offs.pop(0))
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        finally:
            writer.close()


async def test_connection_closed_mid_response_is_retried_then_delivered(settings, client, alice, engine, good):
    cut = CutOffReceiver(b"HTTP/1.1 200 OK\r\nContent-Ty",  # in the headers
                         b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")  # in the body
    await cut.start()
    try:
        hook = await create_webhook(client, alice, f"box@{PUBLIC}", cut.url)
        async with running(settings):
            await _queue(settings, f"box@{PUBLIC}")
            in_headers, in_body, delivered = await _oldest_first(client, alice, hook["id"], 3)
            await _assert_still_healthy(settings, client, alice, engine, good)
    finally:
        await cut.stop()
    assert (in_headers["status"], in_headers["http_status"]) == ("retrying", 0)
    assert in_headers["error"] == "the server closed the connection without sending a complete response"
    # A 200 status line is not a delivery when the body never arrived.
    assert (in_body["status"], in_body["http_status"]) == ("retrying", 0)
    assert in_body["error"] == "the connection was closed before the response body was complete"
    assert (delivered["status"], delivered["http_status"]) == ("delivered", 200)
    assert len(cut.requests) == 3


async def test_redirects_are_not_followed(settings, client, alice, engine, receiver, good):
    elsewhere = f"http://127.0.0.1:{good.port}/elsewhere"
    receiver.reply(*(Reply(status=code, headers={"Location": elsewhere}) for code in (301, 302, 307)))
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    async with running(settings):
        for n in range(3):
            await _queue(settings, f"box@{PUBLIC}", subject=f"m{n}")
        logs = await _oldest_first(client, alice, hook["id"], 3)
        await _assert_still_healthy(settings, client, alice, engine, good)
    # README: "Redirects are not followed"; a 3xx fails at once (retry.decide), logged with its status.
    assert sorted(log["http_status"] for log in logs) == [301, 302, 307]
    assert {(log["status"], log["error"]) for log in logs} == {("failed", "redirect not followed")}
    assert len(receiver.received) == 3
    assert "/elsewhere" not in [r.path for r in good.received]
    jobs = await _rows(engine, DeliveryJob, DeliveryJob.webhook_id == hook["id"])
    assert sorted((job.status, job.attempts) for job in jobs) == [("failed", 1)] * 3
