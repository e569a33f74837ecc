"""The API's operator endpoints and the logs, in-process: probes outside the OpenAPI document,
/metrics off with CONDUIT_METRICS=false, readiness on a database without the schema, and every
SMTP refusal logged with its code and reason, never with credentials."""

from __future__ import annotations

import asyncio
import base64
import logging
import smtplib

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conduit.api.app import create_app
from conduit.config import load_settings
from conduit.storage.database import open_database
from tests.conftest import TEST_SECRET_KEY
from tests.factories import assert_error, user
from tests.support.pipeline import free_port, running

PUBLIC = "in.example"


@pytest.fixture
def settings_overrides() -> dict:
    return {"smtp_port": free_port(), "public_domains": PUBLIC, "inbound_auth_checks": False,
            "smtp_auth_insecure": True, "smtp_max_message_bytes": 2000}


async def test_probes_answer_and_stay_out_of_the_api_document(client):
    base = "http://testserver"
    assert (await client.get(f"{base}/health/live")).json() == {"status": "ok"}
    ready = await client.get(f"{base}/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"status": "ok"})
    document = (await client.get(f"{base}/openapi.json")).json()
    assert not [path for path in document["paths"] if "metrics" in path or "health" in path]


async def test_metrics_count_api_requests_by_route_template(client):
    owner = await user(client)
    headers = {"Authorization": f"Bearer {owner.access_token}"}
    assert (await client.get("/webhooks/wh_nothing", headers=headers)).status_code == 404
    scrape = (await client.get("http://testserver/metrics")).text
    samples = [s for family in text_string_to_metric_families(scrape) for s in family.samples
               if s.name == "conduit_http_requests_total"]
    routes = {s.labels["route"] for s in samples}
    assert "/api/v1/webhooks/{id}" in routes
    assert not [r for r in routes if "wh_nothing" in r or owner.id in r]


@pytest.mark.parametrize("settings_overrides", [{"metrics": False}])
async def test_metrics_can_be_switched_off(client):
    assert_error(await client.get("http://testserver/metrics"), 404)
    assert (await client.get("http://testserver/health/ready")).status_code == 200


async def test_readiness_fails_on_a_database_without_the_schema(tmp_path):
    settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", secret_key=TEST_SECRET_KEY)
    database = open_database(settings)
    app = create_app(settings, database)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
            ready = await http.get("/health/ready")
            assert ready.status_code == 503
            assert ready.json()["status"] == "unavailable"
            assert ready.json()["reason"].endswith("run `conduit migrate`")
            assert (await http.get("/health/live")).status_code == 200
    finally:
        await app.state.context.http.close()
        await app.state.context.renders.close()
        await database.dispose()


async def test_every_smtp_refusal_is_logged_with_code_and_reason(settings, caplog):
    caplog.set_level(logging.INFO, logger="conduit.smtp")
    password = "never-in-the-log-9f3b2"
    secret_blob = base64.b64encode(f"\0someone\0{password}".encode()).decode()

    def talk() -> None:
        with smtplib.SMTP("127.0.0.1", settings.smtp_port, timeout=30) as smtp:
            smtp.ehlo("client.example")
            assert smtp.docmd("AUTH", f"PLAIN {secret_blob}")[0] == 535
            assert smtp.docmd("MAIL", "FROM:<not an address")[0] == 553
            assert smtp.mail("ann@sender.example")[0] == 250
            assert smtp.rcpt(f"nobody@{PUBLIC}")[0] == 550
            assert smtp.docmd("DATA")[0] == 503

    async with running(settings, roles=frozenset({"smtp"})):
        await asyncio.to_thread(talk)
    refusals = [r for r in caplog.records if getattr(r, "conduit_event", None) == "smtp_refused"]
    seen = [(r.conduit_fields["command"], r.conduit_fields["code"], r.conduit_fields["reason"]) for r in refusals]
    assert seen == [("AUTH", 535, "auth_failed"), ("MAIL", 553, "malformed_address"),
                    ("RCPT", 550, "unknown_recipient"), ("DATA", 503, "need_rcpt")]
    rcpt = refusals[2]
    assert rcpt.conduit_fields["argument"] == f"TO:<nobody@{PUBLIC}>"
    assert rcpt.conduit_fields["client_ip"] == "127.0.0.1"
    assert 'reply="5.1.1 No such recipient here"' in rcpt.getMessage()
    assert "argument" not in refusals[0].conduit_fields
    assert password not in caplog.text and secret_blob not in caplog.text
