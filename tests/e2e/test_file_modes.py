"""The files Conduit creates (the SQLite database, its WAL and shared-memory files, the generated
secret key) are readable by its own user only, whatever umask it was started with."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.conduit_process import Conduit


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _permissive_umask() -> None:
    os.umask(0o022)  # what a shell or a service manager often gives: files 0644


def test_migrate_creates_the_database_and_the_secret_key_0600(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUIT_")}
    env["CONDUIT_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/conduit.db"
    done = subprocess.run([sys.executable, "-m", "conduit", "migrate"], env=env, capture_output=True, text=True,
                          check=False, timeout=120, preexec_fn=_permissive_umask)
    assert done.returncode == 0, done.stderr
    created = sorted(p.name for p in tmp_path.iterdir())
    assert "conduit.db" in created and "conduit.secret" in created
    assert {name: _mode(tmp_path / name) for name in created} == dict.fromkeys(created, 0o600)


async def test_serve_keeps_its_wal_and_shared_memory_files_0600(tmp_path):
    conduit = Conduit(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/conduit.db")
    old = os.umask(0o022)  # inherited by the child
    try:
        await conduit.start()
    finally:
        os.umask(old)
    try:
        async with httpx.AsyncClient() as http:
            signed_up = await http.post(f"{conduit.api_url}/accounts",
                                        json={"email": "a@example.com", "password": "x" * 12})
        assert signed_up.status_code == 201  # a write: the WAL is in use
        files = {p.name: _mode(p) for p in tmp_path.iterdir() if p.name.startswith("conduit.db")}
        assert {"conduit.db", "conduit.db-wal", "conduit.db-shm"} <= set(files)
        assert files == dict.fromkeys(files, 0o600)
    finally:
        conduit.stop()
