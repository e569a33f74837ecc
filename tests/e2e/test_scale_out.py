"""Scale-out on PostgreSQL: the production layout in miniature. `conduit migrate` once, then one
`conduit api`, two `conduit smtp` (two ports, as two MX hosts would be) and three `conduit worker`
processes that share nothing but the database. 2,000 messages arrive over 20 concurrent SMTP
connections split across both SMTP nodes; one worker is SIGKILLed while mail is still flowing and
while it has deliveries in flight.

Delivery is at least once: a worker killed after its POST but before its commit leaves the job
leased, and when the lease expires (CONDUIT_DELIVERY_LEASE) another worker delivers it
again, so the receiver sees that message twice. What must hold exactly is the record: every
message that got 250 reaches the receiver, and each has exactly one "delivered" log entry."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import aiosmtplib
import pytest

from tests.conftest import POSTGRES_URL
from tests.support.conduit_process import PUBLIC, Mailbox
from tests.support.conversation import _mail
from tests.support.pipeline import free_port, wait_for_port
from tests.support.receiver import Receiver, Reply

MESSAGES = 2000
CONNECTIONS = 20
WORKERS = 3
DEADLINE = 100.0  # seconds for everything to be delivered and logged: a bound against hanging only
LEASE = 10  # seconds a claimed job stays with a worker that stopped renewing it: CONDUIT_DELIVERY_LEASE
HELD = 3  # deliveries of the doomed worker that the receiver holds unanswered when it is killed

pytestmark = [
    pytest.mark.skipif(not POSTGRES_URL, reason="PostgreSQL only (several processes share one database): "
                                                "set CONDUIT_TEST_POSTGRES_URL"),
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]


class Node:
    """One `python -m conduit <role>` child process; its output goes to a log file."""

    def __init__(self, tmp_path: Path, env: dict[str, str], role: str, name: str, **settings: str) -> None:
        self.role, self.name, self.cwd = role, name, tmp_path
        self.env = {**env, **{f"CONDUIT_{k.upper()}": v for k, v in settings.items()}}
        self.log = tmp_path / f"{name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['CONDUIT_HTTP_PORT']}/api/v1"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "conduit", self.role], env=self.env,
                                            cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return f"--- {self.name} ---\n{self.log.read_text(errors='replace')[-3000:]}"

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def terminate(self) -> None:
        """SIGTERM, as systemd or docker stop it (a paused process gets it once resumed)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.resume()

    def exit_code(self) -> int | None:
        """How it ended (None if it had to be killed after 30 s)."""
        if self.process is None:
            return None
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
            return None


def _env(database_url: str) -> dict[str, str]:
    """What every node shares: the database, the secret key (it decrypts webhook secrets), the domains."""
    return {**os.environ, "CONDUIT_DATABASE_URL": database_url, "CONDUIT_SECRET_KEY": "s" * 40,
            "CONDUIT_PUBLIC_DOMAINS": PUBLIC, "CONDUIT_ALLOW_PRIVATE_TARGETS": "true",
            "CONDUIT_INBOUND_AUTH_CHECKS": "false", "CONDUIT_RETRY_SCHEDULE": "0,0.5,0.5,0.5,0.5",
            # The killed worker's jobs are taken again 10 s after the kill at the latest, while
            # the rest of the mail is still arriving.
            "CONDUIT_DELIVERY_TIMEOUT": str(LEASE - 5), "CONDUIT_DELIVERY_LEASE": str(LEASE),
            # The cap is over all workers: with the default, the two paused workers could hold every
            # slot of the one webhook, and the worker about to fail would have nothing in flight.
            "CONDUIT_WEBHOOK_CONCURRENCY": str(WORKERS * 64),
            "CONDUIT_LOG_LEVEL": "WARNING"}


async def _send_all(ports: list[int], halfway: asyncio.Event) -> list[str]:
    """MESSAGES over CONNECTIONS concurrent sessions, alternating between the SMTP nodes; the
    second half of each session's messages waits for ``halfway``, so the fault strikes while mail
    is still arriving, however far delivery runs behind. The ids Conduit gave in its 250 replies."""
    async def connection(n: int) -> list[str]:
        ids = []
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=ports[n % len(ports)], timeout=60) as smtp:
            for i in range(n, MESSAGES, CONNECTIONS):
                if i >= MESSAGES // 2:
                    await halfway.wait()
                _, reply = await smtp.send_message(_mail(f"box@{PUBLIC}", subject=f"m{i}"))
                ids.append(reply.rsplit(" ", 1)[1])
        return ids
    batches = await asyncio.gather(*(connection(n) for n in range(CONNECTIONS)))
    return [i for batch in batches for i in batch]


async def _held_while_others_pause(others: list[Node], receiver: Receiver) -> set[str]:
    """Make sure the worker about to be killed has POSTed and not yet committed: pause the other
    workers (well under a second, far below their 10 s leases), let what they had sent arrive,
    then hold the next HELD requests, which only the remaining worker can be making. Their
    message ids.

    A worker paused inside its claim holds the claims' turn (a transaction's advisory lock) until
    PostgreSQL ends its idle session, half a lease later: the remaining worker claims after that."""
    for worker in others:
        worker.pause()
    await asyncio.sleep(0.3)
    before = len(receiver.received)
    receiver.reply(*[Reply(hang=True)] * HELD)
    requests = await receiver.wait_for(before + HELD, timeout=LEASE + 5)
    return {r.json()["id"] for r in requests[before:before + HELD]}


@pytest.mark.parametrize("fault", ["killed", "stalled"])
async def test_two_smtp_nodes_and_three_workers_deliver_everything_once_despite_a_failing_worker(
        tmp_path, database_url, fault):
    """``killed``: SIGKILL while it has deliveries in flight. ``stalled``: SIGSTOP while it has
    deliveries in flight, for longer than its lease, then SIGCONT: another worker has meanwhile
    taken those jobs over and delivered them, and the stalled one, waking up with its attempts
    timed out, must record nothing about jobs that are no longer its own."""
    env = _env(database_url)
    migrate = subprocess.run([sys.executable, "-m", "conduit", "migrate"], env=env, cwd=tmp_path,
                             check=False, capture_output=True, text=True, timeout=60)
    assert migrate.returncode == 0, migrate.stderr
    smtp_ports = [free_port(), free_port()]
    api = Node(tmp_path, env, "api", "api", http_port=str(free_port()))
    smtp_nodes = [Node(tmp_path, env, "smtp", f"smtp{n}", smtp_port=str(p)) for n, p in enumerate(smtp_ports)]
    workers = [Node(tmp_path, env, "worker", f"worker{n}") for n in range(WORKERS)]
    nodes = [api, *smtp_nodes, *workers]
    receiver = Receiver()
    await receiver.start()
    mailbox = None
    for node in nodes:
        node.start()
    try:
        for port in (int(api.env["CONDUIT_HTTP_PORT"]), *smtp_ports):
            await wait_for_port(port, timeout=30)
        mailbox = await Mailbox.create(api, receiver.url)

        loop = asyncio.get_running_loop()
        started = loop.time()
        halfway = asyncio.Event()
        sending = asyncio.create_task(_send_all(smtp_ports, halfway))
        await receiver.wait_for(MESSAGES // 4, timeout=DEADLINE)
        held = await _held_while_others_pause(workers[1:], receiver)
        at_fault = len(receiver.received)
        if fault == "killed":
            workers[0].kill()
            halfway.set()  # the second half of the mail arrives while the killed worker's jobs wait
            for worker in workers[1:]:
                worker.resume()
        else:
            workers[0].pause()
            halfway.set()
            for worker in workers[1:]:
                worker.resume()
            await asyncio.sleep(LEASE + 2)  # a stalled, not dead, worker: its leases run out
            workers[0].resume()
        accepted = await sending
        sent_in = loop.time() - started
        assert len(set(accepted)) == MESSAGES

        # Every accepted message reaches the receiver, at least once ...
        while not {r.json()["id"] for r in receiver.received} >= set(accepted):
            remaining = DEADLINE - (loop.time() - started)
            await receiver.wait_for(len(receiver.received) + 1, timeout=max(remaining, 0.1))
        received_in = loop.time() - started

        # ... and is logged as delivered exactly once. Poll: the last commits may trail the POSTs.
        while set(logged := Counter(log["smtp_message_id"] for log in await mailbox.logs("delivered"))) \
                < set(accepted):
            assert loop.time() - started < DEADLINE, f"{len(logged)} of {MESSAGES} messages logged as delivered"
            await asyncio.sleep(0.2)
        all_logs = await mailbox.logs()
    except BaseException:
        for node in nodes:
            print(node.output())
        raise
    finally:
        for node in nodes:
            node.terminate()
        exits = {node.name: node.exit_code() for node in nodes}
        if mailbox is not None:
            await mailbox.aclose()
        await receiver.stop()

    received = Counter(r.json()["id"] for r in receiver.received)
    assert set(received) == set(accepted)
    # The deliveries the killed worker had made but not recorded were made again by another worker.
    assert all(received[message] >= 2 for message in held), {m: received[m] for m in held}
    assert set(logged) == set(accepted)
    twice = {message: n for message, n in logged.items() if n != 1}
    assert not twice, f"messages logged as delivered more than once: {twice}"
    # Nothing but that one delivery is logged for the messages the failing worker had in flight.
    assert [log["status"] for log in all_logs if log["smtp_message_id"] in held] == ["delivered"] * HELD
    # The others were up all along and stop cleanly on SIGTERM; only the killed worker is gone.
    expected_exits = {node.name: 0 for node in nodes}
    if fault == "killed":
        expected_exits["worker0"] = -signal.SIGKILL
    assert exits == expected_exits, exits
    print(f"\n{MESSAGES} messages: all 250 after {sent_in:.1f} s, all received after {received_in:.1f} s; "
          f"{at_fault} received when worker0 was {fault}; {sum(received.values()) - MESSAGES} received twice")
