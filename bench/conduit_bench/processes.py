"""The processes the benchmark starts: every child is tracked so that all are stopped however it
ends; ``conduit serve`` with an account and a webhook; the webhook receiver (bench/receiver.py)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from conduit_bench.measurements import (
    proc_cpu_seconds,
    tree_cpu_seconds,
    tree_status_kib,
)
from conduit_bench.settings import DOMAIN, METRICS, ROOT, SCRAPE_SECONDS, SYNC


class Children:
    """Every subprocess we start, so that all of them are stopped however we exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(args, **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if proc.poll() is None:
            try:
                proc.send_signal(sig)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc, timeout=10)


CHILDREN = Children()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


START_SECONDS = 60.0  # for `conduit serve` to listen (bench/instructions.py allows more: it runs under callgrind)


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f} s")


def find_tool(name: str) -> str:
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}")
                                        if os.access(p, os.X_OK)), None)
    if not found:
        raise SystemExit(f"bench: {name} not found; install Debian's postfix package (make bench does)")
    return found


def http_json(method: str, url: str, body: dict | None = None, token: str | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


class Receiver:
    def __init__(self, out_dir: Path) -> None:
        self.log = (out_dir / "receiver.log").open("ab")
        self.proc = CHILDREN.start([sys.executable, str(ROOT / "bench" / "receiver.py")],
                                   stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode().strip() if self.proc.stdout else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"receiver did not start (said {line!r}); see {self.log.name}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def _get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=60) as response:
            return json.loads(response.read())

    def stats(self) -> dict:
        return self._get("/_stats")

    def records(self) -> list[list]:
        return self._get("/_records")

    def reset(self) -> None:
        self._get("/_reset")

    def cpu(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def wait_for(self, count: int, stall_seconds: float, sender: subprocess.Popen | None = None) -> dict:
        """Until ``count`` distinct messages arrived; raise if nothing new arrives for too long, or
        at once if ``sender`` (the Conduit process) has exited."""
        last, last_change = -1, time.monotonic()
        while True:
            stats = self.stats()
            if stats["unique"] >= count:
                return stats
            if sender is not None and sender.poll() is not None:
                raise RuntimeError(f"Conduit exited (status {sender.returncode}) with {stats['unique']} of "
                                   f"{count} messages delivered")
            if stats["unique"] != last:
                last, last_change = stats["unique"], time.monotonic()
            elif time.monotonic() - last_change > stall_seconds:
                raise RuntimeError(f"messages missing: the receiver has {stats['unique']} of {count} "
                                   f"(no new one for {stall_seconds:.0f} s)")
            time.sleep(0.05)

    def stop(self) -> None:
        CHILDREN.stop(self.proc)
        self.log.close()


# --------------------------------------------------------------------------------- conduit


class Conduit:
    """``conduit serve`` as a child process on free loopback ports, with an account and a webhook."""

    def __init__(self, database_url: str | None, workdir: Path, log_path: Path, *, auth_checks: bool = False,
                 dns_servers: str = "", rspamd_url: str = "") -> None:
        """``auth_checks``: Conduit's default inbound checks (SPF, DKIM, DMARC), against
        ``dns_servers`` (the loopback DNS server of conduit_bench/mail_auth.py, never the system's);
        ``rspamd_url``: every message is checked by that rspamd (``BENCH_RSPAMD``)."""
        if auth_checks and not dns_servers:
            raise ValueError("the inbound checks need the benchmark's own DNS server")
        self.workdir = workdir
        self.database_url = database_url or f"sqlite+aiosqlite:///{workdir / 'conduit.db'}"
        self.http_port, self.smtp_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUIT_")}
        env.update({
            "CONDUIT_DATABASE_URL": self.database_url,
            "CONDUIT_HTTP_HOST": "127.0.0.1", "CONDUIT_HTTP_PORT": str(self.http_port),
            "CONDUIT_SMTP_HOST": "127.0.0.1", "CONDUIT_SMTP_PORT": str(self.smtp_port),
            "CONDUIT_SECRET_KEY": "bench-" + "k" * 40,
            "CONDUIT_PUBLIC_DOMAINS": DOMAIN,
            "CONDUIT_ALLOW_PRIVATE_TARGETS": "true",
            "CONDUIT_INBOUND_AUTH_CHECKS": "true" if auth_checks else "false",
            "CONDUIT_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
            "CONDUIT_METRICS": "true" if METRICS == "on" else "false",
        })
        if dns_servers:
            env["CONDUIT_DNS_SERVERS"] = dns_servers
        if rspamd_url:
            env["CONDUIT_RSPAMD_URL"] = rspamd_url
        if workers := os.environ.get("BENCH_WORKER_PROCESSES"):  # CONDUIT_* from outside are not passed on
            env["CONDUIT_WORKER_PROCESSES"] = workers
        # Any other setting, for an experiment: BENCH_CONDUIT_X=v runs Conduit with CONDUIT_X=v.
        env.update({name.removeprefix("BENCH_"): value for name, value in os.environ.items()
                    if name.startswith("BENCH_CONDUIT_")})
        self.log = log_path.open("ab")
        self.proc = CHILDREN.start([sys.executable, "-m", "conduit", "serve"], env=env, cwd=workdir,
                                   stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_port(self.smtp_port, self.proc, "conduit serve (SMTP)", START_SECONDS)
        wait_for_port(self.http_port, self.proc, "conduit serve (API)", START_SECONDS)
        self.pid = self.proc.pid
        self._scraping = threading.Event()
        if METRICS == "on":
            threading.Thread(target=self._scrape, name="scrape", daemon=True).start()

    def _scrape(self) -> None:
        """GET /metrics every BENCH_SCRAPE_SECONDS, as a Prometheus server would: its cost (the
        queue's query, adding up the worker processes' files) is part of what is measured."""
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        while not self._scraping.wait(SCRAPE_SECONDS):
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    response.read()
            except OSError:
                pass  # stopping, or busy: the next scrape will tell

    def add_webhook(self, target_url: str) -> str:
        """An account, a session and a webhook on the public domain (synchronous with BENCH_SYNC);
        returns the webhook's address."""
        api = f"http://127.0.0.1:{self.http_port}/api/v1"
        tag = secrets.token_hex(4)
        email, password = f"bench-{tag}@example.com", "bench passphrase " + tag
        http_json("POST", f"{api}/accounts", {"email": email, "password": password})
        token = http_json("POST", f"{api}/sessions", {"email": email, "password": password})["access_token"]
        address = f"box-{tag}@{DOMAIN}"
        webhook = {"address": address, "target_url": target_url}
        if SYNC:
            webhook["delivery_mode"] = "synchronous"
        http_json("POST", f"{api}/webhooks", webhook, token=token)
        return address

    def cpu(self) -> float:
        return tree_cpu_seconds(self.pid)

    def peak_rss_mib(self) -> float:
        return tree_status_kib(self.pid, "VmHWM") / 1024

    def stop(self) -> None:
        self._scraping.set()
        CHILDREN.stop(self.proc, timeout=30)
        self.log.close()
