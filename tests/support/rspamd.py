"""A real rspamd on loopback, for the tests and the benchmark (Debian's ``rspamd`` package).

It runs the package's stock rules (its configuration directory, ``/etc/rspamd``) from a
top-level configuration written to a directory of its own, which also holds its database,
run and log files; nothing of the system's rspamd service is used. Only the normal and
controller workers run, each on a free loopback port. No redis: the modules that need one
turn themselves off. No network: DNS goes to a closed loopback port, and the modules that only
ask other servers (ASN, RBLs, fuzzy hashes) are off, so no check waits for a lookup. A short
public suffix list keeps start-up to seconds: rspamd compiles the list it is given at every
start in a fresh directory, and the full list takes tens of seconds on two cores.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.pipeline import free_port

# rspamd's own test message: rspamd answers it with the action "reject".
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
CLOSED_PORT = 9  # discard: nothing listens there on a test machine, so a DNS query fails at once
_CONFIG = """\
.include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}}
logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "notice";
}}
worker "normal" {{
    bind_socket = "127.0.0.1:{port}";
    count = 1;
    .include "$CONFDIR/worker-normal.inc"
}}
worker "controller" {{
    bind_socket = "127.0.0.1:{controller_port}";
    count = 1;
    static_dir = "${{WWWDIR}}";
}}
"""
_OPTIONS = """\
dns {{ nameserver = ["127.0.0.1:{closed}"]; timeout = 0.2s; retransmits = 1; }}
url_tld = "{directory}/public_suffixes.dat";
"""
_OFF = ("asn", "rbl", "fuzzy_check")  # they only ask other servers
_PUBLIC_SUFFIXES = "com\nnet\norg\nexample\ninvalid\ntest\n"


def rspamd_binary() -> str | None:
    return shutil.which("rspamd") or next((p for p in ("/usr/bin/rspamd", "/usr/sbin/rspamd") if os.path.exists(p)),
                                          None)


class Rspamd:
    """One rspamd process group, started by ``start`` and ended by ``stop``."""

    def __init__(self, directory: Path, binary: str) -> None:
        self.directory = directory
        self.binary = binary
        self.port = free_port()
        self.controller_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The normal worker, as CONDUIT_RSPAMD_URL takes it."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        path = self.directory / "rspamd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _write_config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        local = self.directory / "local.d"
        local.mkdir(exist_ok=True)
        for module in _OFF:
            (local / f"{module}.conf").write_text("enabled = false;\n")
        (local / "options.inc").write_text(_OPTIONS.format(closed=CLOSED_PORT, directory=self.directory))
        (self.directory / "public_suffixes.dat").write_text(_PUBLIC_SUFFIXES)
        config = self.directory / "rspamd.conf"
        config.write_text(_CONFIG.format(port=self.port, controller_port=self.controller_port))
        return config

    def start(self, timeout: float = 90.0) -> None:
        """Start rspamd and wait until its normal worker answers ``/ping``."""
        config = self._write_config()
        where = str(self.directory)
        command = [self.binary, "-f", "-c", str(config), "--var", f"LOCAL_CONFDIR={where}",
                   "--var", f"DBDIR={where}", "--var", f"RUNDIR={where}", "--var", f"LOGDIR={where}"]
        if os.geteuid() == 0:
            command.append("--insecure")  # rspamd refuses to run its workers as root without it
        with open(self.directory / "stderr.log", "wb") as stderr:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = (self.directory / "stderr.log").read_text(errors="replace")
                raise RuntimeError(f"rspamd exited with {self.process.returncode}: {error}\n{self.log[-3000:]}")
            if self.answers():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"rspamd did not answer /ping within {timeout:g} s\n{self.log[-3000:]}")

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as response:  # noqa: S310 - our loopback URL
                return response.read().strip() == b"pong"
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """End rspamd (its main process and the workers it forked, one process group)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)  # its workers too, should the main process be gone
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        except ProcessLookupError:
            pass
