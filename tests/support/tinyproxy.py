"""A real forward proxy on loopback for the egress proxy tests: tinyproxy (Debian's ``tinyproxy``
package), started as a process with its own configuration.

It forwards absolute-form requests and CONNECT tunnels to any port, from ``OUTGOING_ADDRESS``
(so a receiver on 127.0.0.1 sees the proxy, not the test, as its peer), refuses every
destination host named ``REFUSED_HOST`` (its domain filter: ``403 Filtered``), optionally
requires Basic credentials (``407``), and logs each request to a file the tests read.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.support.pipeline import free_port

OUTGOING_ADDRESS = "127.0.0.2"  # on Linux all of 127.0.0.0/8 is the loopback interface
REFUSED_HOST = "127.0.0.3"
MISSING = ("tinyproxy is not installed: `apt-get install -y tinyproxy` (Debian) to run the egress proxy "
           "tests against a real proxy")


class Tinyproxy:
    def __init__(self, directory: Path, *, credentials: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self.log_path = directory / "tinyproxy.log"
        self.stderr_path = directory / "tinyproxy.stderr"
        self.credentials = credentials
        self.config_path = directory / "tinyproxy.conf"
        filter_path = directory / "filter"
        filter_path.write_text("^" + re.escape(REFUSED_HOST) + "$\n")
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            f"Bind {OUTGOING_ADDRESS}",
            "Timeout 30",
            f'LogFile "{self.log_path}"',
            "LogLevel Info",
            "MaxClients 50",
            "Allow 127.0.0.1",
            f'Filter "{filter_path}"',
            "ViaProxyName \"egress-proxy\"",
        ]  # no ConnectPort line: CONNECT to every port (the test receivers' ports are random)
        if credentials is not None:
            lines.append(f"BasicAuth {credentials[0]} {credentials[1]}")
        self.config_path.write_text("\n".join(lines) + "\n")
        self._process: asyncio.subprocess.Process | None = None

    def url(self, *, credentials: tuple[str, str] | None = None) -> str:
        user = f"{credentials[0]}:{credentials[1]}@" if credentials else ""
        return f"http://{user}127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    @property
    def requests(self) -> list[str]:
        """The request lines the proxy received, in order (``POST http://…``, ``CONNECT host:port``)."""
        return re.findall(r"Request \(file descriptor \d+\): (.+?) HTTP/1\.\d", self.log)

    async def start(self) -> None:
        with self.stderr_path.open("wb") as stderr:  # a file, not a pipe nobody drains
            self._process = await asyncio.create_subprocess_exec(
                "tinyproxy", "-d", "-c", str(self.config_path), stdout=asyncio.subprocess.DEVNULL, stderr=stderr)
        for _ in range(200):
            if self._process.returncode is not None:
                raise RuntimeError(f"tinyproxy exited at start: {self.stderr_path.read_text()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
        raise RuntimeError("tinyproxy did not listen within 10 s")

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 10)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()


@asynccontextmanager
async def tinyproxy(directory: Path, *, credentials: tuple[str, str] | None = None) -> AsyncIterator[Tinyproxy]:
    """A running tinyproxy; skips the test, saying why, when the program is not installed."""
    if shutil.which("tinyproxy") is None:
        pytest.skip(MISSING)
    proxy = Tinyproxy(directory, credentials=credentials)
    try:
        await proxy.start()
        yield proxy
    finally:
        await proxy.stop()
