"""Untrusted work against a real `conduit serve` (with its worker process and their renderer
processes): hostile templates and a message too big for the parse's memory, sent by one account,
neither stall the other accounts nor grow any Conduit process past its limit.

The findings these reproduce, each now bounded:

* a 60-byte template whose ``wordwrap`` runs for about 20 s in library code (six such messages
  filled the worker) is killed at its time budget;
* a 6 KB template concatenating a megabyte string 1,500 times (the worker went from 88 MB to
  1.56 GB) stops at the size limit of a value; one that keeps many distinct megabyte strings
  stops at the renderer process's memory limit;
* a message whose parse needs more memory than a renderer process has (the stand-in for any
  parse that overruns: it ran on the worker's event loop) is parsed again without its attachment
  contents, in its own process;
* three messages whose text made the reply extractor's patterns backtrack for about 20 s each
  (on the worker's event loop: every account's mail waited a minute, and leases expired under
  live attempts) are matched in linear time and delivered once, like any other;
* six concurrent simulates with the hostile template (rendered in the API process's threads,
  they pushed another user's sign-in to two minutes) run in the API's renderer processes.

The bounds are the targets of the task: another account's message is delivered within 2 s of
its 250, ``/api/v1/ping`` answers within 200 ms. The machine these run on has two cores shared
with other work, so the hostile load is real (each killed template burns a core for its budget)
while the measurement is made robust rather than loose: the delivery bound is asserted for each
of three messages sent at different points of the hostile load, and the ping bound for nine in
ten pings of a steady series (one stall of a shared machine is forgiven, never a second), with
every ping within 1 s. The tests that measure these bounds are marked ``alone``: `make test`
runs them after the others, one at a time, so that the two cores carry the hostile load and not
other tests' servers as well.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from tests.support.conduit_process import PASSWORD, PUBLIC, Conduit, Mailbox
from tests.support.conversation import _mail
from tests.support.receiver import Receiver

RENDER_MEMORY_MB = 160
RENDER_TIMEOUT = 1
WORDWRAP = "{{ (('x' * 1000000) ~ ('x' * 1000000))|wordwrap(1)|length }}"
CONCATENATION = "{% set s = 'x' * 1000000 %}{{ (" + " ~ ".join(["s"] * 1500) + ")|length }}"
HOARD = ("{% set ns = namespace(l=[]) %}{% for i in range(1000) %}"
         "{% set ns.l = ns.l + [('x' * 1000000) ~ i] %}{% endfor %}{{ ns.l|length }}")
SERVE_GROWTH_MIB = 100  # how much serve's and its worker's peak memory may grow under the hostile load


@dataclass
class Peaks:
    """The highest VmRSS seen of each Conduit process, by role, while sampling."""

    rss_kib: dict[int, int] = field(default_factory=dict)
    role: dict[int, str] = field(default_factory=dict)
    address_limit: dict[int, str] = field(default_factory=dict)


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)


def _kib(value: str) -> int:
    return int(value.split()[0])


def _descendants(root: int) -> dict[int, str]:
    """{pid: role} of ``root`` and every process below it: serve, worker, renderer (walked through
    /proc/<pid>/task/<tid>/children: cheap enough to repeat every few milliseconds)."""
    found = {root: "serve"}
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            for child in children:
                try:
                    command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                found[child] = "renderer" if "conduit.isolation.child" in command else (
                    "worker" if " worker" in command else "other")
                todo.append(child)
    return found


def _sample(root: int, peaks: Peaks, stop: threading.Event) -> None:
    """In a thread of its own: the test's event loop, which times the pings, is never held up."""
    while not stop.is_set():
        for pid, role in _descendants(root).items():
            try:
                rss = _kib(_status(pid)["VmRSS"])
                if role == "renderer":  # the last reading: a process just started has not set its limit yet
                    limits = Path(f"/proc/{pid}/limits").read_text().splitlines()
                    peaks.address_limit[pid] = next(line for line in limits if line.startswith("Max address space"))
            except (OSError, KeyError):
                continue
            peaks.role[pid] = role
            peaks.rss_kib[pid] = max(rss, peaks.rss_kib.get(pid, 0))
        stop.wait(0.05)


async def _ping_series(api: httpx.AsyncClient, latencies: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.monotonic()
        response = await api.get("/ping")
        latencies.append(time.monotonic() - started)
        assert response.status_code == 200
        await asyncio.sleep(0.1)


def _assert_pings(latencies: list[float]) -> None:
    assert len(latencies) >= 10, latencies
    within = sum(latency <= 0.2 for latency in latencies)
    assert within >= 0.9 * len(latencies), f"ping latencies (s): {sorted(latencies)}"
    assert max(latencies) <= 1.0, f"ping latencies (s): {sorted(latencies)}"


async def _send(conduit: Conduit, to: str, subject: str, attachment_mib: int = 0, body: str = "Hi there\n") -> None:
    message = _mail(to, subject=subject, body=body)
    if attachment_mib:
        message.add_attachment(os.urandom(attachment_mib << 20), maintype="application",
                               subtype="octet-stream", filename="big.bin")
    await aiosmtplib.send(message, hostname="127.0.0.1", port=conduit.smtp_port, sender="ann@sender.example",
                          recipients=[to], start_tls=False, timeout=60)


async def _delivered_within(receiver: Receiver, subject: str, seconds: float) -> float:
    started = time.monotonic()
    while not any(r.json().get("subject") == subject for r in receiver.received if r.path == "/innocent"):
        assert time.monotonic() - started < seconds, f"{subject!r} not delivered within {seconds} s"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def _hook(box: Mailbox, address: str, target_url: str, template: str | None = None) -> dict:
    response = await box.api.post("/webhooks", headers=box.headers,
                                  json={"address": address, "target_url": target_url, "payload_template": template})
    assert response.status_code == 201, response.text
    return response.json()


async def _logs(box: Mailbox, hook: dict) -> list[dict]:
    response = await box.api.get(f"/webhooks/{hook['id']}/logs", headers=box.headers, params={"page_size": 200})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
async def receiver():
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


def _conduit(tmp_path: Path, database_url: str) -> Conduit:
    return Conduit(tmp_path, database_url, render_timeout=str(RENDER_TIMEOUT),
                   render_memory_mb=str(RENDER_MEMORY_MB), render_processes="2", worker_processes="1",
                   retry_schedule="0")


@pytest.mark.alone
async def test_one_accounts_hostile_work_delays_no_one_else_and_stays_within_its_limits(
        tmp_path, database_url, receiver):
    conduit = _conduit(tmp_path, database_url)
    await conduit.start()
    hostile = innocent = None
    try:
        base = receiver.url.rsplit("/", 1)[0]
        hostile = await Mailbox.create(conduit, f"{base}/plain", email="mallory@example.com",
                                       address=f"plain@{PUBLIC}")
        hooks = {name: await _hook(hostile, f"{name}@{PUBLIC}", f"{base}/{name}", template)
                 for name, template in (("wordwrap", WORDWRAP), ("concat", CONCATENATION), ("hoard", HOARD))}
        innocent = await Mailbox.create(conduit, f"{base}/innocent", email="alice@example.com",
                                        address=f"alice@{PUBLIC}")
        await _send(conduit, f"alice@{PUBLIC}", "warm-up")  # the worker and its renderers are up
        await _delivered_within(receiver, "warm-up", 30)
        start_hwm = {role: _kib(_status(pid)["VmHWM"]) for pid, role in _descendants(conduit.process.pid).items()
                     if role in ("serve", "worker")}

        peaks, latencies, stop, stop_sampling = Peaks(), [], asyncio.Event(), threading.Event()
        background = [asyncio.create_task(asyncio.to_thread(_sample, conduit.process.pid, peaks, stop_sampling)),
                      asyncio.create_task(_ping_series(hostile.api, latencies, stop))]
        # In this order: one account's items take turns, so each kind gets to run before the
        # wordwraps hold that account's renderer for their budgets.
        await _send(conduit, f"concat@{PUBLIC}", "concatenation")
        await _send(conduit, f"hoard@{PUBLIC}", "hoard")
        await _send(conduit, f"plain@{PUBLIC}", "too big to parse in memory", attachment_mib=9)
        for n in range(6):
            await _send(conduit, f"wordwrap@{PUBLIC}", f"wordwrap {n}")
        waits = []
        for n in range(3):  # early, middle and late in the hostile load
            await asyncio.sleep(0.7)
            await _send(conduit, f"alice@{PUBLIC}", f"innocent {n}")
            waits.append(await _delivered_within(receiver, f"innocent {n}", 2.0))

        async def settled() -> bool:
            counts = [len(await _logs(hostile, hook)) for hook in (*hooks.values(), hostile.hook)]
            return counts == [6, 1, 1, 1]

        deadline = time.monotonic() + 60
        while not await settled():
            assert time.monotonic() < deadline, "the hostile mail did not settle"
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        stop.set()
        stop_sampling.set()
        await asyncio.gather(*background)
        processes = _descendants(conduit.process.pid)
        end_hwm = {role: _kib(_status(pid)["VmHWM"]) for pid, role in processes.items() if role in ("serve", "worker")}

        # Each innocent message once, within the bound; the API kept answering.
        innocent_posts = [r.json()["subject"] for r in receiver.received if r.path == "/innocent"]
        assert sorted(innocent_posts) == ["innocent 0", "innocent 1", "innocent 2", "warm-up"], innocent_posts
        assert max(waits) < 2.0, waits
        _assert_pings(latencies)

        # The hostile mail failed its attempts with the budget it ran out of, sending nothing.
        errors = {name: [log["error"] for log in await _logs(hostile, hook)] for name, hook in hooks.items()}
        # One account's items take turns on one renderer: those that could not start within their
        # attempt's time fail as busy (and are retried on the schedule like any failure).
        killed = f"payload could not be rendered: payload_template exceeded its time budget of {RENDER_TIMEOUT} s"
        busy = "payload could not be rendered: rendering could not finish in time: every renderer process was busy"
        assert set(errors["wordwrap"]) <= {killed, busy} and killed in errors["wordwrap"], errors["wordwrap"]
        (concat_error,) = errors["concat"]
        assert concat_error.startswith("payload could not be rendered: payload_template line 1: the result of ~ is")
        (hoard_error,) = errors["hoard"]
        assert hoard_error.startswith("payload could not be rendered: payload_template exceeded its memory budget "
                                      f"of {RENDER_MEMORY_MB} MiB"), hoard_error
        assert not [r for r in receiver.received if r.path in ("/wordwrap", "/concat", "/hoard")]
        # The big message went out without its attachment's contents, saying why.
        big_logs = await _logs(hostile, hostile.hook)
        assert [log["status"] for log in big_logs] == ["delivered"], [log["error"] for log in big_logs]
        (big,) = [r.json() for r in receiver.received if r.path == "/plain"]
        assert big["attachments"][0]["content_omitted"] is True and big["reply_text"] is None
        assert "exceeded its memory budget" in big["parse_warnings"][-1]

        # Memory: every renderer under its limit (set, and seen); serve and its worker barely moved.
        renderers = [pid for pid, role in peaks.role.items() if role == "renderer"]
        assert len(renderers) > 2, "no renderer was replaced: the hostile load did not reach its limits"
        for pid in renderers:
            assert peaks.rss_kib[pid] < RENDER_MEMORY_MB * 1024, (pid, peaks.rss_kib[pid])
        # Every renderer caps itself as it starts (one seen only at its very start had not yet).
        capped = [pid for pid in renderers if peaks.address_limit[pid].split()[3] != "unlimited"]
        assert len(capped) >= len(renderers) - 1, peaks.address_limit
        for pid in capped:
            assert peaks.address_limit[pid].split()[3] == str(RENDER_MEMORY_MB * 1024 * 1024), peaks.address_limit
        for role in ("serve", "worker"):
            grown = (end_hwm[role] - start_hwm[role]) / 1024
            assert grown < SERVE_GROWTH_MIB, f"{role}'s peak memory grew by {grown:.0f} MiB"
    finally:
        for box in (hostile, innocent):
            if box is not None:
                await box.aclose()
        conduit.stop()


# Quoted-reply headers that never end: the extractor's patterns used to try every split of the run.
REPLY_BOMBS = ("Op " + "a " * 16000 + "\n:", "On " + "a " * 16000 + "\nwrote:", "Op " + "a " * 16000 + "\n:")


@pytest.mark.alone
async def test_mail_made_to_backtrack_the_reply_extractor_delays_no_one(tmp_path, database_url, receiver):
    conduit = _conduit(tmp_path, database_url)
    await conduit.start()
    hostile = innocent = None
    try:
        base = receiver.url.rsplit("/", 1)[0]
        hostile = await Mailbox.create(conduit, f"{base}/plain", email="mallory@example.com",
                                       address=f"plain@{PUBLIC}")
        innocent = await Mailbox.create(conduit, f"{base}/innocent", email="alice@example.com",
                                        address=f"alice@{PUBLIC}")
        await _send(conduit, f"alice@{PUBLIC}", "warm-up")
        await _delivered_within(receiver, "warm-up", 30)

        latencies, stop = [], asyncio.Event()
        pings = asyncio.create_task(_ping_series(hostile.api, latencies, stop))
        for n, body in enumerate(REPLY_BOMBS):
            await _send(conduit, f"plain@{PUBLIC}", f"bomb {n}", body=body)
        await _send(conduit, f"alice@{PUBLIC}", "innocent")
        wait = await _delivered_within(receiver, "innocent", 2.0)

        deadline = time.monotonic() + 30
        while len([r for r in receiver.received if r.path == "/plain"]) < len(REPLY_BOMBS):
            assert time.monotonic() < deadline, "the hostile mail was not delivered"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # long enough for a duplicate POST to show
        stop.set()
        await pings

        assert wait < 2.0
        _assert_pings(latencies)
        innocent_posts = [r.json()["subject"] for r in receiver.received if r.path == "/innocent"]
        assert innocent_posts == ["warm-up", "innocent"], innocent_posts
        bombs = sorted(r.json()["subject"] for r in receiver.received if r.path == "/plain")
        assert bombs == [f"bomb {n}" for n in range(len(REPLY_BOMBS))], bombs  # each once, whole
        assert all(log["status"] == "delivered" for log in await _logs(hostile, hostile.hook))
    finally:
        for box in (hostile, innocent):
            if box is not None:
                await box.aclose()
        conduit.stop()


@pytest.mark.alone
async def test_hostile_simulates_leave_sign_in_and_ping_alone(tmp_path, database_url, receiver):
    """Six concurrent simulates of a template that needs 20 s: each answers with its error (its
    budget, or busy: one account's simulates take turns on one renderer), and meanwhile another
    user signs in about as fast as before (generous: within their usual time plus 2 s)."""
    conduit = _conduit(tmp_path, database_url)
    await conduit.start()
    hostile = alice = None
    try:
        hostile = await Mailbox.create(conduit, receiver.url, email="mallory@example.com")
        response = await hostile.api.put(f"/webhooks/{hostile.hook['id']}", headers=hostile.headers,
                                         json={"payload_template": WORDWRAP})
        assert response.status_code == 200, response.text
        alice = await Mailbox.create(conduit, receiver.url, email="alice@example.com", address=f"alice@{PUBLIC}")

        async def sign_in() -> float:
            started = time.monotonic()
            answer = await alice.api.post("/sessions", json={"email": "alice@example.com", "password": PASSWORD})
            assert answer.status_code == 200, answer.text
            return time.monotonic() - started

        usual = statistics.median([await sign_in() for _ in range(3)])
        latencies, stop = [], asyncio.Event()
        pings = asyncio.create_task(_ping_series(alice.api, latencies, stop))
        simulates = [asyncio.create_task(hostile.api.post(f"/webhooks/{hostile.hook['id']}/simulate",
                                                          headers=hostile.headers, json={}, timeout=60))
                     for _ in range(6)]
        await asyncio.sleep(0.3)
        loaded = await sign_in()
        answers = await asyncio.gather(*simulates)
        await asyncio.sleep(0.5)
        stop.set()
        await pings

        assert loaded <= usual + 2.0, (usual, loaded)
        _assert_pings(latencies)
        for answer in answers:
            assert answer.status_code == 200, answer.text
            error = answer.json()["error"]
            assert error in ((f"payload could not be rendered: payload_template exceeded its time budget of "
                              f"{RENDER_TIMEOUT} s"),
                             ("payload could not be rendered: rendering could not finish in time: every renderer "
                              "process was busy")), error
        assert not receiver.received
        # Compiling runs there too: a template too deep for the parser is a 422, not a 500.
        response = await hostile.api.put(f"/webhooks/{hostile.hook['id']}", headers=hostile.headers,
                                         json={"payload_template": "{{ a" + "|lower" * 1000 + " }}"})
        assert response.status_code == 422, response.text
        assert response.json()["error"].startswith("payload_template is nested too deeply to compile")
    finally:
        for box in (hostile, alice):
            if box is not None:
                await box.aclose()
        conduit.stop()


async def test_renderer_processes_hold_no_settings_and_die_with_serve(tmp_path, database_url):
    """The renderers get no CONDUIT_ settings (the secret key, the database URL) in their
    environment, and a SIGKILLed serve leaves none of its processes behind."""
    conduit = _conduit(tmp_path, database_url)
    await conduit.start()
    try:
        deadline = time.monotonic() + 30
        while len([r for r in _descendants(conduit.process.pid).values() if r == "renderer"]) < 2:
            assert time.monotonic() < deadline, _descendants(conduit.process.pid)
            await asyncio.sleep(0.1)
        processes = _descendants(conduit.process.pid)
        for pid, role in processes.items():
            if role == "renderer":
                environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                assert not [v for v in environment if v.startswith(b"CONDUIT_")], pid
        conduit.kill()
        deadline = time.monotonic() + 15
        while alive := [pid for pid in processes if _running(pid)]:
            assert time.monotonic() < deadline, f"still running after serve was killed: {alive}"
            await asyncio.sleep(0.1)
    finally:
        conduit.stop()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return "zombie" not in _status(pid).get("State", "")
    except (ProcessLookupError, FileNotFoundError):
        return False
    except PermissionError:
        return True

