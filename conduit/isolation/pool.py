"""A small pool of renderer processes (conduit/isolation/child.py) and the queue in front of it.

Why processes: parsing runs on attacker-written mail and templates are account-written
code; either can need seconds in library code no deadline can interrupt, or gigabytes.
In a child of its own such an item costs its own process only: the parent kills a child
whose item overruns its time budget (SIGKILL, then a fresh child takes its place), and a
child caps its own address space, so it fails with MemoryError instead of growing.

Why a queue per key (the account an item is for): a child busy with one account's slow
item must not make another account's mail wait. Keys take turns, the key with the fewest
items running first, and one key may occupy at most all children but one
(``processes - 1``), so with two or more children an account whose items are slow leaves
a child for everyone else. Items of one key go to a child in batches, and the child
answers a batch with one write: the pipe round trip and the wake-ups are paid per batch
under load, not per item. Which item of a batch runs, and since when, the child keeps in
a shared page (conduit/isolation/progress.py) that the parent reads when a budget may be
over or the child died: an overrun or a crash is pinned on that item, and the items of
the batch that it held up are put back in line.

Killing costs a process start, during which there is one process fewer. So a pool can keep
a spare started (the worker's does), which takes over at once; and when no spare is ready, the
key whose item got its process killed keeps that process's place until the replacement is
ready, so its next item, not another account's, waits for the start.

Every item has a deadline (the caller's: a delivery's must end within its job's lease):
one that cannot start by then fails as ``late``, one that runs into it is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from conduit.isolation import frames
from conduit.isolation.progress import Progress
from conduit.mail.render import JSON, TEXT

if TYPE_CHECKING:
    from conduit.config import Settings

log = logging.getLogger("conduit.isolation")
MAX_BATCH = 32  # items sent to a child in one write
KILL_GRACE = 0.5  # seconds past an item's budget (at most half the budget) before its child is killed
MIN_START = 0.05  # seconds: an item with less time than this before its deadline is not started
START_BACKOFF = (0.2, 10.0)  # seconds between attempts to start a child after one failed to start: first, most
CLOSE_GRACE = 2.0  # seconds children get to exit at close before they are killed
MAX_ERROR_CHARS = 2000
_STAGES = frozenset({"parse", "template", "compile"})
_CHILD_KINDS = frozenset({"template", "invalid", "error", "memory", "late"})
_CONTENT_TYPES = frozenset({JSON, TEXT, ""})


@dataclass(frozen=True)
class Reply:
    """A child's answer to one item, or why there is none.

    ``kind`` of a failure: ``template`` (the template failed; ``error`` says how), ``invalid``
    (a template does not compile), ``error`` (an unexpected exception), ``memory`` (the child
    ran out of its memory), ``time`` (killed at the end of its budget), ``crashed`` (the child
    died or broke the protocol), ``late`` (the deadline came first), ``closed`` (pool closed).
    ``stage`` is the part of the item that was running: ``parse``, ``template`` or ``compile``.
    """

    ok: bool
    body: bytes = b""
    content_type: str = ""
    kind: str = ""
    stage: str = ""
    error: str = ""


@dataclass(eq=False)
class _Item:
    header: dict[str, Any]
    body: bytes
    key: str
    deadline: float
    future: asyncio.Future[Reply]
    expiry: asyncio.TimerHandle | None = None

    @property
    def id(self) -> int:
        return cast(int, self.header["id"])

    @property
    def first_stage(self) -> str:
        return "compile" if self.header["op"] == "compile" else "parse"


@dataclass(eq=False)
class _Child:
    decoder: frames.FrameDecoder
    progress: Progress | None = None
    transport: asyncio.SubprocessTransport | None = None
    pid: int | None = None
    ready: bool = False
    retiring: bool = False  # killed, or answered "memory" and exiting: no more work
    batch: deque[_Item] = field(default_factory=deque)  # sent, unanswered, in order
    key: str | None = None
    sent_at: float = 0.0  # time.monotonic() when the batch was sent
    sent: int = 0  # items in the batch when it was sent
    clock: asyncio.TimerHandle | None = None
    overran: tuple[_Item, str] | None = None  # the item it was killed for, and its stage
    out_of_memory: bool = False  # it answered "memory" and exits without starting anything else
    owed_to: str | None = None  # the key whose work killed this child's predecessor (see _gone)
    exited: asyncio.Future[None] | None = None


class _ChildProtocol(asyncio.SubprocessProtocol):
    def __init__(self, pool: RenderPool, child: _Child) -> None:
        self.pool, self.child = pool, child

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.child.transport = cast(asyncio.SubprocessTransport, transport)  # uvloop's is not a subclass
        self.child.pid = self.child.transport.get_pid()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self.pool._received(self.child, data)  # noqa: SLF001 - the pool's own protocol

    def connection_lost(self, exc: Exception | None) -> None:  # the process exited and its pipes closed
        self.pool._gone(self.child)  # noqa: SLF001 - the pool's own protocol


class RenderPool:
    """Renderer processes, started on first use (or by ``start``), closed by ``close``."""

    def __init__(self, *, processes: int, memory_mb: int, timeout: float, env: dict[str, str] | None = None,
                 spare: bool = False) -> None:
        self.processes = processes
        self.memory_mb = memory_mb
        self.timeout = timeout
        self._env = env  # the children's environment (None: this process's)
        # One more child kept started and idle: when a child is killed or dies, the spare works at
        # once instead of everyone waiting for a process to start.
        self._spare = spare
        self._cap = max(1, processes - 1)  # children one key may occupy at once
        # The child's own deadline (a template's) comes first, with a clear error; then the kill.
        self._grace = min(KILL_GRACE, timeout / 2)
        self._children: list[_Child] = []
        self._idle: list[_Child] = []
        self._waiting: dict[str, deque[_Item]] = {}  # in turn order
        self._running: dict[str, int] = {}
        self._next_id = 0
        self._all_ready = asyncio.Event()
        self._dispatch_due = False
        self._closed = False
        self._failed_starts = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(cls, settings: Settings, *, spare: bool = False) -> RenderPool:
        # Imported here: the children import this module, and the settings' imports are heavy.
        from conduit.config import child_environment

        return cls(processes=settings.render_processes, memory_mb=settings.render_memory_mb,
                   timeout=settings.render_timeout, env=child_environment(), spare=spare)

    @property
    def pids(self) -> list[int]:
        """The renderer processes' ids (for logs and tests)."""
        return [c.pid for c in self._children if c.pid is not None]

    def start(self) -> None:
        """Start the children now rather than at the first item (call it in the event loop)."""
        self._top_up()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until ``processes`` children are ready, at most ``timeout`` seconds: whether they are."""
        self._top_up()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_ready.wait(), timeout)
        return self._all_ready.is_set()

    async def submit(self, header: dict[str, Any], body: bytes = b"", *, key: str, deadline: float,
                     first: bool = False) -> Reply:
        """Run one item (``header["op"]`` names what the child does) and return its Reply.

        ``first``: ahead of the key's other items (the second try of an item already under way).
        """
        loop = asyncio.get_running_loop()
        if self._closed:
            return Reply(ok=False, kind="closed", stage="parse", error="the renderer pool is closed")
        self._next_id += 1
        header = {**header, "id": self._next_id, "deadline": deadline, "timeout": self.timeout}
        item = _Item(header=header, body=body, key=key, deadline=deadline, future=loop.create_future())
        queue = self._waiting.setdefault(key, deque())
        if first:
            queue.appendleft(item)
        else:
            queue.append(item)
        self._top_up()
        self._dispatch_soon()  # with the items submitted along with it: fewer, larger batches
        # Waiting, or in a batch behind a slow item: it fails at its deadline.
        item.expiry = loop.call_later(max(0.0, deadline - time.monotonic()), self._expire, item)
        return await item.future

    async def close(self) -> None:
        """Fail what waits, let the children exit (they finish nothing more), kill stragglers."""
        self._closed = True
        for queue in self._waiting.values():
            for item in queue:
                _resolve(item, _closed(item.first_stage))
        self._waiting.clear()
        for task in list(self._tasks):
            task.cancel()  # a child being started is killed by asyncio
        await asyncio.gather(*self._tasks, return_exceptions=True)
        children = [c for c in self._children if c.transport is not None]
        for child in children:
            with contextlib.suppress(Exception):
                cast(asyncio.WriteTransport, child.transport.get_pipe_transport(0)).close()  # type: ignore[union-attr]
        waits = [c.exited for c in children if c.exited is not None and not c.exited.done()]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=CLOSE_GRACE)
            if pending:
                for child in children:
                    self._kill(child)
                await asyncio.wait(pending, timeout=CLOSE_GRACE)

    # -- children -------------------------------------------------------------------------

    def _top_up(self) -> _Child | None:
        """Start children until there are ``processes`` of them (started or starting); the last one."""
        child = None
        if self._closed:
            return None
        while len(self._children) < self.processes + self._spare:
            child = _Child(decoder=frames.FrameDecoder(self.memory_mb * 1024 * 1024))
            self._children.append(child)
            task = asyncio.get_running_loop().create_task(self._spawn(child))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return child

    def _repaid(self, child: _Child) -> None:
        """A replacement is ready (or failed to start): the key it was owed to gives its place back."""
        if child.owed_to is not None:
            owed, child.owed_to = child.owed_to, None
            self._running[owed] -= 1
            if not self._running[owed]:
                del self._running[owed]

    async def _spawn(self, child: _Child) -> None:
        loop = asyncio.get_running_loop()
        child.exited = loop.create_future()
        if self._failed_starts:
            first, most = START_BACKOFF
            await asyncio.sleep(min(most, first * 2 ** (self._failed_starts - 1)))
        try:
            child.progress = Progress.create()
            command = [sys.executable, "-m", "conduit.isolation.child", "--memory-mb", str(self.memory_mb),
                       "--parent-pid", str(os.getpid()), "--progress-fd", str(child.progress.fd)]
            await loop.subprocess_exec(lambda: _ChildProtocol(self, child), *command, stdin=asyncio.subprocess.PIPE,
                                       stdout=asyncio.subprocess.PIPE, stderr=None, env=self._env,
                                       pass_fds=(child.progress.fd,))
        except Exception as exc:  # noqa: BLE001 - no renderer now: logged, retried after a pause
            log.error("event=render_process_start_failed error=%r", exc)
            self._gone(child)

    def _received(self, child: _Child, data: bytes) -> None:
        if child.overran is not None:
            return  # killed: nothing it says counts any more
        try:
            for header, body in child.decoder.feed(data):
                self._answer(child, header, body)
        except frames.FrameError as exc:
            log.error("event=render_process_protocol_error pid=%s error=%s", child.pid, exc)
            self._kill(child)
        self._dispatch_soon()

    def _answer(self, child: _Child, header: dict[str, Any], body: bytes) -> None:
        if not child.ready:
            if header.get("ready") is not True or child.batch:
                raise frames.FrameError("a child spoke before it was ready")
            child.ready = True
            self._failed_starts = 0
            self._repaid(child)
            if sum(1 for c in self._children if c.ready) >= self.processes:
                self._all_ready.set()
            if not self._closed:
                self._idle.append(child)
            return
        if not child.batch or header.get("id") != child.batch[0].id:
            raise frames.FrameError("an answer for an item that is not the next one")
        reply = _reply(header, body)
        _resolve(child.batch.popleft(), reply)
        if reply.kind == "memory":
            child.retiring = child.out_of_memory = True  # it exits; _gone puts the rest of its batch back
        elif not child.batch:
            if child.clock is not None:
                child.clock.cancel()
                child.clock = None
            self._release(child)
            if not child.retiring and not self._closed:
                self._idle.append(child)

    def _gone(self, child: _Child) -> None:
        """The child's process has ended: settle its batch and start another."""
        if child not in self._children:
            return
        self._children.remove(child)
        if child in self._idle:
            self._idle.remove(child)
        if child.clock is not None:
            child.clock.cancel()
        code = child.transport.get_returncode() if child.transport is not None else None
        if child.exited is not None and not child.exited.done():
            child.exited.set_result(None)
        if child.transport is not None:
            child.transport.close()
        if not child.ready and not self._closed:
            self._failed_starts += 1
            log.error("event=render_process_start_failed pid=%s code=%s", child.pid, code)
        died_working = child.key is not None and not self._closed and (
            child.overran is not None or child.out_of_memory or bool(child.batch))
        ready = sum(1 for c in self._children if c.ready and not c.retiring)
        if child.batch:
            self._settle(child, code)
        if child.progress is not None:
            child.progress.close()
        self._repaid(child)
        if died_working and ready < self.processes:
            # No spare ready: the key keeps this child's place until the replacement is ready, or
            # its next item takes another process and other accounts wait for a process to start.
            replacement = self._top_up()
            if replacement is not None:
                replacement.owed_to, child.key = child.key, None
        self._release(child)
        self._top_up()
        self._dispatch_soon()

    def _settle(self, child: _Child, code: int | None) -> None:
        """A dead child's unanswered items: the one it was running fails, the rest wait again."""
        if self._closed:
            for item in child.batch:
                _resolve(item, _closed(item.first_stage))
            child.batch.clear()
            return
        if child.out_of_memory:  # it had answered the item that ran out of memory
            self._requeue(list(child.batch))
            child.batch.clear()
            return
        if child.overran is not None:
            culprit, stage = child.overran
            reply = Reply(ok=False, kind="time", stage=stage, error="killed at the end of its budget")
        else:
            culprit, stage, _ = self._running_item(child)
            reply = Reply(ok=False, kind="crashed", stage=stage, error=_ending(code))
        _resolve(culprit, reply)
        log.warning("event=render_item_failed pid=%s kind=%s stage=%s", child.pid, reply.kind, stage)
        rest = [item for item in child.batch if item is not culprit and not item.future.done()]
        if rest:
            self._requeue(rest)
        child.batch.clear()

    def _requeue(self, items: list[_Item]) -> None:
        """Items a dead child had not answered (nor started): first in line again."""
        self._waiting.setdefault(items[0].key, deque()).extendleft(reversed(items))

    def _running_item(self, child: _Child) -> tuple[_Item, str, float]:
        """The unanswered item the child works on, its stage and its start, from the shared page.

        The page is the child's word, so it is bounded: an id outside the batch means the child
        has not started the batch's first item yet, and no start is before the batch was sent.
        """
        position = child.progress.read() if child.progress is not None else None
        for item in child.batch:
            if position is not None and item.id == position.item_id:
                stage = position.stage if position.stage in _STAGES else item.first_stage
                return item, stage, min(max(position.started, child.sent_at), time.monotonic())
        return child.batch[0], child.batch[0].first_stage, child.sent_at

    def _kill(self, child: _Child) -> None:
        child.retiring = True
        if child in self._idle:
            self._idle.remove(child)
        if child.transport is not None:
            with contextlib.suppress(ProcessLookupError):
                child.transport.kill()

    def _watch(self, child: _Child) -> None:
        """The clock of a child's batch: kill it when its running item has overrun its budget.

        A batch as a whole gets at most a budget per item: a child that keeps saying it has
        just started an item is still killed.
        """
        child.clock = None
        if not child.batch or child.retiring:
            return
        item, stage, started = self._running_item(child)
        now = time.monotonic()
        ends = min(started + self.timeout, item.deadline) + self._grace
        ends = min(ends, child.sent_at + child.sent * (self.timeout + self._grace))
        if now < ends:
            child.clock = asyncio.get_running_loop().call_later(ends - now, self._watch, child)
            return
        log.warning("event=render_process_killed pid=%s reason=time stage=%s", child.pid, stage)
        child.overran = (item, stage)
        self._kill(child)

    # -- scheduling -----------------------------------------------------------------------

    def _dispatch_soon(self) -> None:
        """Dispatch once the callbacks ready now have run: the items submitted by the deliveries
        a claim started go out together, as a few batches instead of one item per idle child,
        and a caller's second try (submitted ``first``) goes before the items a dead child put
        back in line."""
        if not self._dispatch_due:
            self._dispatch_due = True
            asyncio.get_running_loop().call_soon(self._dispatch)

    def _dispatch(self) -> None:
        """Give waiting items to idle children, keys taking turns."""
        self._dispatch_due = False
        now = time.monotonic()
        busy = sum(1 for c in self._children if c.batch)
        while self._idle and self._waiting and busy < self.processes:
            key = self._pick_key()
            if key is None:
                return
            queue = self._waiting.pop(key)
            room = min(self._cap - self._running.get(key, 0), len(self._idle))
            share = min(MAX_BATCH, math.ceil(len(queue) / max(room, 1)))
            batch: list[_Item] = []
            while queue and len(batch) < share:
                item = queue.popleft()
                if item.future.done():
                    continue  # the caller gave up on it, or its deadline passed
                if item.deadline - now < MIN_START:
                    _resolve(item, Reply(ok=False, kind="late", stage=item.first_stage, error="its deadline passed"))
                    continue
                batch.append(item)
            if queue:
                self._waiting[key] = queue  # back in line, behind the other keys
            if batch:
                self._send(self._idle.pop(), key, batch)
                busy += 1

    def _pick_key(self) -> str | None:
        """The first key in turn among those with the fewest items running (under the cap)."""
        best, fewest = None, self._cap
        for key in self._waiting:
            running = self._running.get(key, 0)
            if running < fewest:
                best, fewest = key, running
                if running == 0:
                    break
        return best

    def _send(self, child: _Child, key: str, batch: list[_Item]) -> None:
        assert child.transport is not None
        child.key = key
        self._running[key] = self._running.get(key, 0) + 1
        child.batch.extend(batch)
        child.sent_at = time.monotonic()
        child.sent = len(batch)
        last = len(batch) - 1
        data = b"".join(frames.encode({**item.header, "flush": True} if i == last else item.header, item.body)
                        for i, item in enumerate(batch))
        cast(asyncio.WriteTransport, child.transport.get_pipe_transport(0)).write(data)
        first_ends = min(child.sent_at + self.timeout, batch[0].deadline) + self._grace
        child.clock = asyncio.get_running_loop().call_later(max(0.0, first_ends - child.sent_at), self._watch, child)

    def _release(self, child: _Child) -> None:
        """The child no longer works for its key."""
        if child.key is not None:
            left = self._running[child.key] - 1
            if left:
                self._running[child.key] = left
            else:
                del self._running[child.key]
            child.key = None

    def _expire(self, item: _Item) -> None:
        """The item's deadline: if it has not been answered, it is late (a child that still has it
        answers it quickly: it checks the deadline before it starts an item)."""
        item.expiry = None
        queue = self._waiting.get(item.key)
        if queue is not None and item in queue:
            queue.remove(item)
            if not queue:
                del self._waiting[item.key]
        _resolve(item, Reply(ok=False, kind="late", stage=item.first_stage,
                             error="no renderer process was free in time"))


def _ending(code: int | None) -> str:
    """How a renderer process ended, in words for a log."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"the renderer process died of {signal.Signals(-code).name}"
    return f"the renderer process exited with status {code}"


def _closed(stage: str) -> Reply:
    return Reply(ok=False, kind="closed", stage=stage, error="the renderer pool is closed")


def _resolve(item: _Item, reply: Reply) -> None:
    if item.expiry is not None:
        item.expiry.cancel()
    if not item.future.done():
        item.future.set_result(reply)


def _reply(header: dict[str, Any], body: bytes) -> Reply:
    """A child's answer, checked field by field: it is untrusted data."""
    ok = header.get("ok")
    if ok is True:
        content_type = header.get("content_type", "")
        if content_type not in _CONTENT_TYPES:
            raise frames.FrameError(f"content type {content_type!r} is not one a renderer may give")
        return Reply(ok=True, body=body, content_type=content_type)
    kind, stage, error = header.get("kind"), header.get("stage"), header.get("error")
    if ok is not False or kind not in _CHILD_KINDS or stage not in _STAGES or not isinstance(error, str):
        raise frames.FrameError("a malformed answer")
    return Reply(ok=False, kind=kind, stage=stage, error=error[:MAX_ERROR_CHARS])
