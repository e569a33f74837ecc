"""The real process: `conduit serve` on free ports and a temporary SQLite file, spoken to over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.pipeline import free_port

CONDUIT = Path(sys.executable).with_name("conduit")
README = Path(__file__).resolve().parents[2] / "README.md"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def clean_env(**settings: str) -> dict[str, str]:
    """The test's environment without any CONDUIT_* of its own, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUIT_")}
    env.update(settings)
    return env


class Conduit:
    """One `conduit ... serve` process in ``workdir``; its output goes to files there."""

    def __init__(self, workdir: Path, *, args: tuple[str, ...] = (), http_port: int | None = None,
                 **settings: str) -> None:
        self.workdir = workdir
        self.database = workdir / "conduit.db"
        self.port = http_port or free_port()
        env = {"CONDUIT_DATABASE_URL": f"sqlite+aiosqlite:///{self.database}",
               "CONDUIT_SMTP_PORT": str(free_port()), **settings}
        if http_port is None:
            env["CONDUIT_HTTP_PORT"] = str(self.port)
        self.stdout = (workdir / "stdout.log").open("ab")
        self.stderr_path = workdir / "stderr.log"
        self.stderr = self.stderr_path.open("ab")
        self.process = subprocess.Popen([str(CONDUIT), *args, "serve"], cwd=workdir, env=clean_env(**env),
                                        stdout=self.stdout, stderr=self.stderr)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def wait_ready(self) -> None:
        """Poll /ping until it answers (bounded); fail with the process's output if it never does."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"conduit exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/ping", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"conduit did not answer within {START_TIMEOUT} s:\n{self.output()}")

    def terminate(self) -> int:
        """SIGTERM and the exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        finally:
            self.stdout.close()
            self.stderr.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.stdout.close()
        self.stderr.close()

    def output(self) -> str:
        if not self.stderr.closed:
            self.stderr.flush()
        return self.stderr_path.read_text(errors="replace")[-5000:]


@pytest.fixture
def start(tmp_path):
    started: list[Conduit] = []

    def make(**kwargs) -> Conduit:
        server = Conduit(tmp_path, **kwargs)
        started.append(server)
        server.wait_ready()
        return server

    yield make
    for server in started:
        server.kill()


def run_conduit(*args: str, cwd: Path, timeout: float = 60, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONDUIT), *args], cwd=cwd, env=clean_env(**settings), capture_output=True,
                          text=True, timeout=timeout, check=False)


def readme_curl_session(port: int) -> str:
    """The README's curl session, pointed at ``port``."""
    text = README.read_text()
    section = text[text.index("## A first session with curl"):]
    script = section[section.index("```sh") + len("```sh"):]
    script = script[:script.index("```")]
    assert "curl" in script
    return script.replace("127.0.0.1:8080", f"127.0.0.1:{port}")


def json_documents(text: str) -> list[dict]:
    """The JSON objects printed one after another (curl -s adds no newline)."""
    decoder, documents, at = json.JSONDecoder(), [], 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        document, at = decoder.raw_decode(text, at)
        documents.append(document)
    return documents


def test_serve_migrates_answers_the_readme_session_and_stops_on_sigterm(start, tmp_path):
    server = start()
    response = httpx.get(f"{server.url}/ping")
    assert response.json() == {"status": "ok"}
    assert httpx.get(f"http://127.0.0.1:{server.port}/openapi.json").status_code == 200

    session = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_curl_session(server.port)],
                             check=False, capture_output=True, text=True, timeout=60)
    assert session.returncode == 0, session.stderr
    signed_up, me = json_documents(session.stdout)
    assert signed_up["email"] == me["email"] == "you@example.com"
    assert signed_up["id"] == me["id"]

    assert server.terminate() == 0
    assert "Traceback" not in server.output()
    # It migrated the file it was given.
    with sqlite3.connect(server.database) as db:
        assert db.execute("SELECT email FROM accounts").fetchall() == [("you@example.com",)]


def test_serve_purges_audit_entries_past_retention(start, tmp_path):
    database = tmp_path / "conduit.db"
    result = run_conduit("migrate", cwd=tmp_path, CONDUIT_DATABASE_URL=f"sqlite+aiosqlite:///{database}")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(database) as db:
        db.execute("INSERT INTO accounts (id, email, password_hash, timezone, token_generation, totp_enabled, "
                   "totp_last_step, created_at, updated_at) VALUES ('acc_old', 'old@example.com', 'h', 'UTC', 0, 0, "
                   "0, '2020-01-01 00:00:00.000000', '2020-01-01 00:00:00.000000')")
        for entry_id, created_at in (("aud_old", "2020-01-01 00:00:00.000000"),
                                     ("aud_new", "2999-01-01 00:00:00.000000")):
            db.execute("INSERT INTO audit_log (id, account_id, action, ip, metadata, created_at) "
                       "VALUES (?, 'acc_old', 'account.sign_up', '', '{}', ?)", (entry_id, created_at))
    server = start()
    deadline = time.monotonic() + 15
    while True:
        with sqlite3.connect(database) as db:
            remaining = [row[0] for row in db.execute("SELECT id FROM audit_log ORDER BY id")]
        if remaining == ["aud_new"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert remaining == ["aud_new"]
    assert server.terminate() == 0


def test_the_secret_key_is_generated_once_and_reused(start, tmp_path):
    server = start()
    base = server.url
    assert httpx.post(f"{base}/accounts", json={"email": "keep@example.com", "password": "a long passphrase"},
                      ).status_code == 201
    tokens = httpx.post(f"{base}/sessions", json={"email": "keep@example.com", "password": "a long passphrase"}).json()
    assert server.terminate() == 0

    secret = tmp_path / "conduit.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    key = secret.read_text().strip()
    assert len(key) >= 32

    again = start()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    me = httpx.get(f"{again.url}/accounts/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["email"] == "keep@example.com"
    refreshed = httpx.post(f"{again.url}/sessions/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    assert secret.read_text().strip() == key
    assert again.terminate() == 0


def test_two_instances_get_different_generated_keys(tmp_path):
    """The key is random per installation, never a built-in default."""
    keys = []
    for name in ("one", "two"):
        workdir = tmp_path / name
        workdir.mkdir()
        result = run_conduit("migrate", cwd=workdir, CONDUIT_DATABASE_URL=f"sqlite+aiosqlite:///{workdir}/c.db")
        assert result.returncode == 0, result.stderr
        keys.append((workdir / "conduit.secret").read_text())
    assert keys[0] != keys[1]


@pytest.mark.parametrize("setting, value", [
    ("CONDUIT_HTTP_PORT", "99999"),
    ("CONDUIT_HTTP_PORT", "eighty"),
    ("CONDUIT_DATABASE_URL", "mysql://localhost/conduit"),
    ("CONDUIT_TRUSTED_PROXIES", "10.0.0.0/8, not-a-network"),
    ("CONDUIT_SECRET_KEY", "too short"),
])
def test_an_invalid_setting_stops_start_up_with_one_line_naming_it(tmp_path, setting, value):
    settings = {"CONDUIT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/conduit.db", setting: value}
    result = run_conduit("serve", cwd=tmp_path, **settings)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert setting in lines[0]
    assert not (tmp_path / "conduit.db").exists()  # nothing was started


def test_a_config_file_is_honoured_and_the_environment_wins(start, tmp_path):
    port = free_port()
    config = tmp_path / "conduit.toml"
    config.write_text(f'http_port = {port}\nsmtp_port = {free_port()}\nlog_level = "warning"\n')
    server = start(args=("--config", str(config)), http_port=port)
    assert httpx.get(f"http://127.0.0.1:{port}/api/v1/ping").json() == {"status": "ok"}
    assert server.terminate() == 0

    env_port = free_port()
    server = start(args=("--config", str(config)), http_port=env_port, CONDUIT_HTTP_PORT=str(env_port))
    assert httpx.get(f"http://127.0.0.1:{env_port}/api/v1/ping").status_code == 200
    assert server.terminate() == 0


@pytest.mark.parametrize("content", [None, "http_port = = 1\n"], ids=["missing", "not-toml"])
def test_a_bad_config_file_is_one_line(tmp_path, content):
    config = tmp_path / "settings.toml"
    if content is not None:
        config.write_text(content)
    result = run_conduit("--config", str(config), "serve", cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "settings.toml" in lines[0], result.stderr


def test_help_lists_the_commands(tmp_path):
    result = run_conduit("--help", cwd=tmp_path)
    assert result.returncode == 0
    commands = result.stdout[result.stdout.index("Commands:"):]
    for command in ("serve", "api", "migrate"):
        assert re.search(rf"^\s+{command}\s+\S", commands, re.MULTILINE), result.stdout
    serve_help = run_conduit("serve", "--help", cwd=tmp_path)
    assert serve_help.returncode == 0
    assert "CONDUIT_HTTP_PORT" in serve_help.stdout


def test_migrate_is_idempotent(tmp_path):
    database = tmp_path / "conduit.db"
    settings = {"CONDUIT_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    first = run_conduit("migrate", cwd=tmp_path, **settings)
    assert first.returncode == 0, first.stderr
    with sqlite3.connect(database) as db:
        [(version,)] = db.execute("SELECT version_num FROM alembic_version").fetchall()
        db.execute("INSERT INTO accounts (id, email, password_hash, timezone, token_generation, totp_enabled, "
                   "totp_last_step, created_at, updated_at) VALUES ('acc_x', 'x@example.com', 'h', 'UTC', 0, 0, 0, "
                   "'2026-01-01 00:00:00', '2026-01-01 00:00:00')")
    second = run_conduit("migrate", cwd=tmp_path, **settings)
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(version,)]
        assert db.execute("SELECT email FROM accounts").fetchall() == [("x@example.com",)]


def test_migrate_reports_an_unreachable_database_in_one_line(tmp_path):
    closed_port = free_port()
    result = run_conduit("migrate", cwd=tmp_path,
                         CONDUIT_DATABASE_URL=f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port}/conduit")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "CONDUIT_DATABASE_URL" in lines[0], result.stderr


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _running(pid: int) -> bool:
    """Alive and not a zombie (a reparented child may wait a while to be reaped)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status[status.rindex(")") + 2] != "Z"


def _eventually(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"not within {timeout} s: {check}")


def test_serve_delivers_from_a_child_worker_process_that_dies_with_it(start):
    server = start(CONDUIT_WORKER_PROCESSES="1")
    (child,) = _eventually(lambda: _children(server.process.pid))
    assert "conduit worker" in Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()

    server.process.kill()  # SIGKILL: serve gets no chance to stop its children itself
    server.process.wait()
    _eventually(lambda: not _running(child))


def test_serve_stops_with_an_error_when_its_worker_process_dies(start):
    server = start(CONDUIT_WORKER_PROCESSES="1")
    (child,) = _eventually(lambda: _children(server.process.pid))

    os.kill(child, signal.SIGKILL)

    assert server.process.wait(timeout=STOP_TIMEOUT + 20) != 0
    assert f"worker process {child} exited" in server.output()


def test_serve_without_worker_processes_runs_every_role_in_one_process(start):
    server = start(CONDUIT_WORKER_PROCESSES="0")  # serve starts its children before the API answers
    # Its only children are the worker's renderer processes (conduit/isolation), no `conduit worker`.
    commands = [_command(child) for child in _children(server.process.pid)]
    assert commands and all("-m conduit.isolation.child " in command for command in commands), commands


def _command(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
