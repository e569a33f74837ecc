"""`conduit serve`'s metrics directory: private, removed at exit, and a killed serve's removed by
the next one."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from conduit.observability import multiprocess


def test_the_directory_is_private_named_in_the_environment_and_removed(tmp_path, monkeypatch):
    monkeypatch.delenv(multiprocess.VARIABLE, raising=False)
    with multiprocess.private_directory(str(tmp_path)) as path:
        assert os.environ[multiprocess.VARIABLE] == path
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
        assert multiprocess.directory() == path
    assert not os.path.exists(path)
    assert multiprocess.VARIABLE not in os.environ


def test_a_killed_serve_leaves_a_directory_the_next_one_removes(tmp_path, monkeypatch):
    monkeypatch.delenv(multiprocess.VARIABLE, raising=False)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    orphan = tmp_path / f"{multiprocess.PREFIX}{gone.stdout.strip()}-abc123"
    orphan.mkdir()
    (orphan / "counter_1.db").write_bytes(b"x")
    alive = tmp_path / f"{multiprocess.PREFIX}{os.getppid()}-def456"  # a process that still runs
    alive.mkdir()
    with multiprocess.private_directory(str(tmp_path)):
        assert not orphan.exists()
        assert alive.exists()
