"""Storage faults under a running `conduit serve` (SQLite): the disk turns read-only, the disk fills
up. While writes fail, mail gets 451 4.3.0 at the end of DATA, never 250, and the process keeps
answering; once storage is back, mail queued before the fault is delivered and new mail flows.

The faults are real kernel faults on a filesystem made for the test (tests/support/filesystems.py
says why chmod and `remount,ro` cannot make them when the tests run as root).
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.support.conduit_process import PUBLIC, Conduit, Mailbox
from tests.support.filesystems import Ext4Image, ext4_image, fill, require_mounts, small_tmpfs
from tests.support.receiver import Receiver, Reply
from tests.support.smtp_client import assert_temporary_failure, attempt, final, queued_id

RCPT = f"box@{PUBLIC}"
# Many short retries: mail held up by a failing receiver must outlast the fault, not run out of tries.
RETRY_SCHEDULE = ",".join(["0"] + ["0.5"] * 40)


@pytest.fixture
async def receiver():
    """Answers 503 until the test opens it (``receiver.default = Reply()``): mail accepted before
    the fault is still queued, not yet delivered, when the fault hits."""
    r = Receiver()
    r.default = Reply(status=503)
    await r.start()
    yield r
    await r.stop()


def _message(subject: str, body_bytes: int = 0) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Ann <ann@sender.example>"
    message["To"] = RCPT
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@sender.example>"
    message.set_content("Hi there\n" + ("x" * 71 + "\n") * (body_bytes // 72))
    return message


async def _accept(conduit: Conduit, subjects: list[str]) -> dict[str, str]:
    """Send each; every one must get 250. Queued-as id -> subject."""
    return {queued_id(await attempt(conduit.smtp_port, _message(s), RCPT)): s for s in subjects}


def _integrity(db: Path) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


async def _all_delivered(box: Mailbox, expected: set[str], timeout: float = 30.0) -> None:
    """Wait until the delivery log shows every expected message delivered."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        delivered = {log["smtp_message_id"] for log in await box.logs("delivered")}
        if delivered >= expected:
            return
        assert asyncio.get_running_loop().time() < deadline, f"not delivered: {sorted(expected - delivered)}"
        await asyncio.sleep(0.1)


def _received_subjects(receiver: Receiver) -> set[str]:
    return {r.json()["subject"] for r in receiver.received}


async def _hold_before_fault(conduit: Conduit, box: Mailbox, receiver: Receiver) -> dict[str, str]:
    """Three messages accepted and tried once (the receiver refuses): queued when the fault hits."""
    held = await _accept(conduit, [f"held {n}" for n in range(3)])
    await receiver.wait_for(3)
    return held


@dataclass
class Stream:
    """Messages sent while the fault struck: subject by queued-as id for the 250s, subjects of the rest."""

    accepted: dict[str, str] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)


async def _stream_across(conduit: Conduit, fault: Callable[[], object], senders: int = 4) -> Stream:
    """Mail from several senders at once while ``fault`` strikes: after 8 acceptances, then 1 s
    more of mail. Each message gets 250 or 451 4.3.0, nothing else."""
    stream, stop, counter = Stream(), asyncio.Event(), itertools.count()

    async def send() -> None:
        while not stop.is_set():
            subject = f"stream {next(counter)}"
            replies = await attempt(conduit.smtp_port, _message(subject), RCPT)
            if final(replies)[:2] == ("DATA", 250):
                stream.accepted[queued_id(replies)] = subject
            else:
                assert_temporary_failure(replies)
                stream.refused.add(subject)

    tasks = [asyncio.create_task(send()) for _ in range(senders)]
    try:
        while len(stream.accepted) < 8:
            assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
            await asyncio.sleep(0.01)
        fault()
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return stream


async def _refused_during_fault(conduit: Conduit, subjects: list[str], body_bytes: int = 0) -> None:
    """Each message is refused 451 at the end of DATA; the last one after the worker has spent a
    while failing to claim the held jobs (their retries are due every 0.5 s), so the SMTP server
    and the worker have both lived through the fault."""
    for n, subject in enumerate(subjects):
        if n == len(subjects) - 1:
            await asyncio.sleep(1.5)
        replies = await attempt(conduit.smtp_port, _message(subject, body_bytes), RCPT)
        assert_temporary_failure(replies)
        assert final(replies)[0] == "DATA", replies  # reads still work: refused when the write fails
    assert conduit.alive, f"conduit died during the fault:\n{conduit.log_text()[-3000:]}"


@asynccontextmanager
async def _conduit_on(directory: Path, tmp_path: Path, sqlite_template: Path,
                      receiver: Receiver) -> AsyncIterator[tuple[Conduit, Mailbox, Path]]:
    """`conduit serve` with its SQLite file in ``directory`` (the filesystem the fault will hit)
    and a webhook pointing at ``receiver``; stopped at the end."""
    db = directory / "conduit.db"
    shutil.copy(sqlite_template, db)
    conduit = Conduit(tmp_path, f"sqlite+aiosqlite:///{db}", retry_schedule=RETRY_SCHEDULE, log_level="INFO")
    await conduit.start()
    box = await Mailbox.create(conduit, receiver.url)
    try:
        yield conduit, box, db
    finally:
        conduit.stop()
        await box.aclose()


async def test_disk_turning_read_only_gets_451_and_loses_no_mail(tmp_path, sqlite_template, receiver):
    require_mounts(tmp_path, ext4=True)
    with ext4_image(tmp_path) as disk:
        async with _conduit_on(disk.mountpoint, tmp_path, sqlite_template, receiver) as (conduit, box, db):
            held = await _hold_before_fault(conduit, box, receiver)
            disk.go_read_only()  # under the running process, its database files open
            during = [f"during {n}" for n in range(3)]
            await _refused_during_fault(conduit, during)
            after = await _repair_and_restart(conduit, disk, db, receiver)
            await _all_delivered(box, set(held) | set(after))
    assert _received_subjects(receiver) == {*held.values(), *after.values()}  # none of `during`


@pytest.mark.xfail(strict=False, reason=(
    "the filesystem, not Conduit: about 1 run in 15 to 20, the last message answered 250 just before "
    "the ext4 error is missing after the repair (its log line shows it committed). The same happens "
    "with no SQLite and no Conduit: tools/ext4_fsync_probe.py appends records with fsync() while the "
    "error is raised, and 1 run in 25 loses the last record fsync() confirmed. Conduit cannot be more "
    "durable than fsync(); docs/security.md has the details."))
async def test_mail_racing_the_switch_to_read_only_is_never_lost(tmp_path, sqlite_template, receiver):
    require_mounts(tmp_path, ext4=True)
    with ext4_image(tmp_path) as disk:
        async with _conduit_on(disk.mountpoint, tmp_path, sqlite_template, receiver) as (conduit, box, db):
            stream = await _stream_across(conduit, disk.go_read_only)
            assert stream.refused, "no mail met the read-only disk"
            after = await _repair_and_restart(conduit, disk, db, receiver)
            await _all_delivered(box, set(stream.accepted) | set(after))
    assert _received_subjects(receiver) == {*stream.accepted.values(), *after.values()}


async def _repair_and_restart(conduit: Conduit, disk: Ext4Image, db: Path, receiver: Receiver) -> dict[str, str]:
    """The kernel keeps an ext4 in error read-only until it is checked and mounted again, which
    needs the files closed: the operator stops Conduit, repairs, starts it. Then the receiver
    answers again and two new messages must be accepted."""
    conduit.stop()
    disk.repair()
    assert _integrity(db) == "ok"
    receiver.default = Reply()
    await conduit.start()
    return await _accept(conduit, ["after 0", "after 1"])


async def test_full_disk_gets_451_and_mail_flows_once_space_is_freed(tmp_path, sqlite_template, receiver):
    require_mounts(tmp_path)
    with small_tmpfs(tmp_path / "disk", "8m") as disk:
        fillers: list[Path] = []
        async with _conduit_on(disk, tmp_path, sqlite_template, receiver) as (conduit, box, db):
            held = await _hold_before_fault(conduit, box, receiver)
            stream = await _stream_across(conduit, lambda: fillers.append(fill(disk)))
            (filler,) = fillers
            # Bigger than the WAL file: SQLite cannot fit it in space the WAL already has, so it
            # needs new space (small mail may still fit, and is then rightly accepted).
            wal = sum(f.stat().st_size for f in disk.glob("conduit.db-wal"))
            during = [f"during {n}" for n in range(3)]
            await _refused_during_fault(conduit, during, body_bytes=wal + 256 * 1024)
            assert _integrity(db) == "ok"

            filler.unlink()  # space again, same process: no restart needed
            receiver.default = Reply()
            after = await _accept(conduit, ["after 0", "after 1"])
            await _all_delivered(box, set(held) | set(stream.accepted) | set(after))
        assert _integrity(db) == "ok"
    accepted = {*held.values(), *stream.accepted.values(), *after.values()}
    assert _received_subjects(receiver) == accepted  # none of `during`, none refused in the stream
