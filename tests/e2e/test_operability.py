"""Operating Conduit, against real processes: Prometheus metrics after real mail and a real
delivery through `conduit serve` (its worker in a child process), JSON logs with the access log
and SMTP refusals, readiness that follows the database, and roles that refuse an unmigrated one."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from conduit.observability import metrics
from tests.factories import create_webhook
from tests.support.conduit_process import PASSWORD, PUBLIC, Conduit, Mailbox
from tests.support.conversation import _eventually, _logs, _mail, _send
from tests.support.pipeline import free_port, running, wait_for_port
from tests.support.receiver import Reply
from tests.support.smtp_client import attempt, final, queued_id
from tests.support.tcp_proxy import TcpProxy

SECRET_KEY = "s" * 40


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape, by name and labels (parsed as Prometheus would)."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scrape: dict, name: str, **labels: str) -> float | None:
    return scrape.get((name, frozenset(labels.items())))


async def scrape_until(url: str, name: str, labels: dict[str, str], at_least: float, timeout: float = 20) -> dict:
    """Scrape until the sample reaches ``at_least`` (a delivery is counted once it is recorded)."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            response = await http.get(url)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain")
            scrape = samples(response.text)
            if (value(scrape, name, **labels) or 0) >= at_least:
                return scrape
            assert asyncio.get_running_loop().time() < deadline, f"{name}{labels} never reached {at_least}"
            await asyncio.sleep(0.2)


async def test_serve_counts_real_mail_and_deliveries_and_logs_them_as_json(tmp_path, database_url, receiver):
    conduit = Conduit(tmp_path, database_url, log_level="INFO", log_format="json", worker_processes="1")
    conduit.env["TMPDIR"] = str(tmp_path)  # where serve makes its private metrics directory
    await conduit.start()
    try:
        box = await Mailbox.create(conduit, receiver.url)
        me = (await box.api.get("/accounts/me", headers=box.headers)).json()
        created = await box.api.post("/accounts/me/api-tokens", headers=box.headers, json={"name": "ci"})
        assert created.status_code == 201, created.text
        api_token = created.json()["token"]
        listed = await box.api.get("/webhooks", headers={"Authorization": f"Bearer {api_token}"})
        assert listed.status_code == 200
        assert len(list(tmp_path.glob("conduit-metrics-*"))) == 1

        accepted = queued_id(await attempt(conduit.smtp_port, _mail(f"box@{PUBLIC}"), f"box@{PUBLIC}"))
        refused = await attempt(conduit.smtp_port, _mail(f"nobody@{PUBLIC}"), f"nobody@{PUBLIC}")
        assert final(refused)[:2] == ("RCPT", 550)
        [delivery] = await receiver.wait_for(1)
        assert delivery.json()["id"] == accepted

        metrics_url = f"http://127.0.0.1:{conduit.http_port}/metrics"
        # Counted in the worker child, read through the API process's scrape.
        scrape = await scrape_until(metrics_url, "conduit_delivery_attempts_total",
                                    {"outcome": "delivered", "status_class": "2xx"}, 1)
        assert value(scrape, "conduit_delivery_attempts_total", outcome="delivered", status_class="2xx") == 1
        assert value(scrape, "conduit_delivery_latency_seconds_count") == 1
        assert 0 < value(scrape, "conduit_delivery_latency_seconds_sum") < 30
        assert value(scrape, "conduit_smtp_messages_accepted_total") == 1
        assert value(scrape, "conduit_smtp_accepted_bytes_total") > 100
        assert value(scrape, "conduit_smtp_commit_seconds_count") == 1
        # Two conversations, and the start-up's look at the port.
        assert value(scrape, "conduit_smtp_connections_total", result="accepted") == 3
        assert value(scrape, "conduit_smtp_replies_total", command="RCPT", code_class="5xx",
                     reason="unknown_recipient") == 1
        assert value(scrape, "conduit_smtp_replies_total", command="DATA", code_class="2xx", reason="queued") == 1
        assert value(scrape, "conduit_smtp_commands_total", command="MAIL") == 2
        assert value(scrape, "conduit_queue_jobs") == 0
        assert value(scrape, "conduit_queue_oldest_job_age_seconds") == 0
        assert value(scrape, "conduit_http_requests_total", method="POST", route="/api/v1/webhooks", status="201") == 1
        assert value(scrape, "conduit_http_requests_total", method="GET", route="/api/v1/webhooks", status="200") == 1
        # Bounded labels: no address, account, id or raw path anywhere.
        label_values = {v for _, labels in scrape for _, v in labels}
        assert not [v for v in label_values if "@" in v or me["id"] in v or box.hook["id"] in v]

        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{conduit.http_port}/health/live")).json() == {"status": "ok"}
            ready = await http.get(f"http://127.0.0.1:{conduit.http_port}/health/ready")
            assert (ready.status_code, ready.json()) == (200, {"status": "ok"})
        await box.aclose()
    finally:
        conduit.stop()
    assert conduit.process.returncode == 0
    assert not list(tmp_path.glob("conduit-metrics-*")), "serve left its metrics directory behind"

    lines = [line for line in conduit.log_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"timestamp", "level", "logger", "event"} <= set(r) for r in records)
    access = [r for r in records if r["event"] == "http_request"]
    [webhook_created] = [r for r in access if r["route"] == "/api/v1/webhooks" and r["method"] == "POST"]
    assert webhook_created["status"] == 201
    assert webhook_created["account"] == me["id"]
    assert webhook_created["client_ip"] == "127.0.0.1"
    assert isinstance(webhook_created["duration_ms"], float)
    [token_used] = [r for r in access if r["route"] == "/api/v1/webhooks" and r["method"] == "GET"]
    assert token_used["account"] == me["id"]
    [refusal] = [r for r in records if r["event"] == "smtp_refused"]
    assert (refusal["command"], refusal["code"], refusal["reason"]) == ("RCPT", 550, "unknown_recipient")
    assert refusal["reply"] == "5.1.1 No such recipient here"
    assert not [r for r in records if r["event"] == "http_request" and r["route"] in ("/metrics", "/health/ready")]

    log = conduit.log_text()
    access_token = box.headers["Authorization"].removeprefix("Bearer ")
    secrets = (PASSWORD, access_token, api_token, box.hook["secret"], SECRET_KEY, conduit.env["CONDUIT_SECRET_KEY"])
    for secret in secrets:
        assert secret not in log


@pytest.fixture
def settings_overrides() -> dict:
    return {"smtp_port": free_port(), "public_domains": PUBLIC, "allow_private_targets": True,
            "inbound_auth_checks": False, "retry_schedule": "0,0.3,0.3,0.3"}


def counted(name: str, **labels: str) -> float:
    metrics.flush()  # as a scrape does
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_retry_and_a_deactivation_are_counted(settings, client, alice, receiver):
    webhook = await create_webhook(client, alice, address=f"box@{PUBLIC}", target_url=receiver.url)
    receiver.reply(Reply(status=503), Reply(status=410))
    names = [("conduit_delivery_attempts_total", {"outcome": "retrying", "status_class": "5xx"}),
             ("conduit_delivery_attempts_total", {"outcome": "failed", "status_class": "4xx"}),
             ("conduit_delivery_retries_total", {}), ("conduit_webhook_deactivations_total", {"cause": "gone"})]
    before = [counted(name, **labels) for name, labels in names]
    async with running(settings):
        await _send(settings, _mail(f"box@{PUBLIC}"))
        await _eventually(lambda: _logs(client, alice, webhook["id"], status="failed"))
    after = [counted(name, **labels) for name, labels in names]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 1]


class TcpProxyDatabase:
    """PostgreSQL behind a loopback TCP proxy: stopping the proxy makes the database unreachable
    for whoever connects through it (and cuts their connections), starting it brings it back."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self.proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
        self._url = url

    @property
    def url(self) -> str:
        return self._url.set(host="127.0.0.1", port=self.proxy.port).render_as_string(hide_password=False)


@pytest.fixture
def _postgres_only(request: pytest.FixtureRequest) -> None:
    if request.node.callspec.params.get("database_url") != "postgres":
        pytest.skip("PostgreSQL only: the outage is a TCP proxy in front of the server")


def role(args: list[str], cwd: Path, **settings: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUIT_")}
    env.update({"CONDUIT_SECRET_KEY": SECRET_KEY, "CONDUIT_LOG_FORMAT": "json",
                **{f"CONDUIT_{k.upper()}": v for k, v in settings.items()}})
    return subprocess.Popen([sys.executable, "-m", "conduit", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


async def ready_state(port: int) -> tuple[int, dict]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"http://127.0.0.1:{port}/health/ready")
        return response.status_code, response.json()


async def wait_for_readiness(port: int, status: int, timeout: float = 20) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        code, body = await ready_state(port)
        if code == status:
            return body
        assert asyncio.get_running_loop().time() < deadline, f"readiness stayed {code} {body}"
        await asyncio.sleep(0.2)


@pytest.mark.usefixtures("_postgres_only")
@pytest.mark.parametrize("role_name", ["worker", "smtp"])
async def test_readiness_fails_while_postgres_is_unreachable_and_recovers(tmp_path, database_url, role_name):
    database = TcpProxyDatabase(database_url)
    await database.proxy.start()
    metrics_port = free_port()
    process = role([role_name], tmp_path, database_url=database.url, metrics_port=str(metrics_port),
                   smtp_port=str(free_port()))
    try:
        await wait_for_port(metrics_port, timeout=30)
        await wait_for_readiness(metrics_port, 200)
        async with httpx.AsyncClient(timeout=10) as http:
            scrape = samples((await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text)
        assert value(scrape, "conduit_queue_jobs") is not None

        await database.proxy.stop()
        body = await wait_for_readiness(metrics_port, 503)
        assert body["status"] == "unavailable"
        assert "database unreachable" in body["reason"]
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(f"http://127.0.0.1:{metrics_port}/health/live")).status_code == 200
            scrape = samples((await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text)
        assert value(scrape, "conduit_queue_jobs") is None  # missing, not a false zero

        await database.proxy.start()
        assert await wait_for_readiness(metrics_port, 200) == {"status": "ok"}
        assert process.poll() is None
    finally:
        process.terminate()
        # In a thread: the proxy runs in this loop, and the role's shutdown goes through it.
        output = (await asyncio.to_thread(process.communicate, timeout=30))[0]
        await database.proxy.stop()
    assert process.returncode == 0, output


async def _empty_postgres_database(database_url: str) -> tuple[str, str]:
    url = make_url(database_url)
    name = f"{url.database}_empty_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(url.set(drivername="postgresql", database="postgres")
                                  .render_as_string(hide_password=False))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return url.set(database=name).render_as_string(hide_password=False), name


async def _drop_postgres_database(database_url: str, name: str) -> None:
    url = make_url(database_url)
    admin = await asyncpg.connect(url.set(drivername="postgresql", database="postgres")
                                  .render_as_string(hide_password=False))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.mark.parametrize("role_name", ["api", "smtp", "worker"])
async def test_a_role_on_an_unmigrated_database_stops_at_once_saying_to_migrate(tmp_path, database_url, role_name):
    if database_url.startswith("postgresql"):
        empty_url, name = await _empty_postgres_database(database_url)
    else:
        empty_url, name = f"sqlite+aiosqlite:///{tmp_path / 'never-migrated.db'}", ""
    try:
        process = role([role_name], tmp_path, database_url=empty_url, http_port=str(free_port()),
                       smtp_port=str(free_port()))
        output = await asyncio.to_thread(lambda: process.communicate(timeout=60)[0])
    finally:
        if name:
            await _drop_postgres_database(database_url, name)
    assert process.returncode == 1
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("conduit: database schema at none")
    assert lines[0].endswith("run `conduit migrate`")
    assert not (tmp_path / "never-migrated.db").exists()
