"""The OpenAPI document is worth generating clients from: openapi-python-client makes a Python
client from a running Conduit's /openapi.json, and that client signs up, signs in and creates a
webhook against the same Conduit, and reads its errors as the Error model."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from tests.conftest import POSTGRES_URL
from tests.support.conduit_process import PUBLIC, Conduit

PASSWORD = "correct horse battery staple"


def _generate(document: Path, output: Path) -> None:
    """The generator knows JSON, text and application/octet-stream bodies; the downloads (the raw
    message, an attachment in its own type) are bytes to it, as its documented
    content_type_overrides setting says, so they come out as File responses."""
    bin_dir = str(Path(sys.executable).parent)  # the generator formats its output with ruff from there
    config = output.parent / "generator.json"
    config.write_text(json.dumps({"content_type_overrides": {
        "message/rfc822": "application/octet-stream", "*/*": "application/octet-stream"}}))
    done = subprocess.run(
        [os.path.join(bin_dir, "openapi-python-client"), "generate", "--path", str(document),
         "--output-path", str(output), "--meta", "none", "--config", str(config)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"]})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr


async def test_a_generated_client_signs_up_signs_in_and_creates_a_webhook(tmp_path, monkeypatch):
    conduit = Conduit(tmp_path, POSTGRES_URL or f"sqlite+aiosqlite:///{tmp_path}/conduit.db")
    await conduit.start()
    try:
        base = f"http://127.0.0.1:{conduit.http_port}"
        document = tmp_path / "openapi.json"
        async with httpx.AsyncClient() as http:
            document.write_bytes((await http.get(f"{base}/openapi.json")).content)
        _generate(document, tmp_path / "conduit_client")
        monkeypatch.syspath_prepend(str(tmp_path))
        client_module = importlib.import_module("conduit_client")
        models = importlib.import_module("conduit_client.models")
        create_account = importlib.import_module("conduit_client.api.account.create_account")
        create_session = importlib.import_module("conduit_client.api.sessions.create_session")
        create_webhook = importlib.import_module("conduit_client.api.webhooks.create_webhook")
        list_webhooks = importlib.import_module("conduit_client.api.webhooks.list_webhooks")

        anonymous = client_module.Client(base_url=base)
        email = f"client-{os.getpid()}@example.com"
        box = f"client-{uuid.uuid4().hex[:12]}@{PUBLIC}"  # the PostgreSQL database is shared by the e2e tests
        account = await create_account.asyncio(client=anonymous, body=models.CreateAccountRequest(
            email=email, password=PASSWORD))
        assert isinstance(account, models.AccountResponse) and account.email == email

        session = await create_session.asyncio(client=anonymous, body=models.CreateSessionRequest(
            email=email, password=PASSWORD))
        assert isinstance(session, models.SessionResponse)
        signed_in = client_module.AuthenticatedClient(base_url=base, token=session.access_token)

        hook = await create_webhook.asyncio(client=signed_in, body=models.CreateWebhookRequest(
            address=box, target_url="http://127.0.0.1:9/inbound", rate_limit=60))
        assert isinstance(hook, models.WebhookResponse)
        assert (hook.address, hook.rate_limit, hook.active) == (box, 60, True)
        assert hook.secret.startswith("whsec_")
        listed = await list_webhooks.asyncio(client=signed_in)
        assert [w.id for w in listed] == [hook.id]

        taken = await create_webhook.asyncio(client=signed_in, body=models.CreateWebhookRequest(
            address=box, target_url="http://127.0.0.1:9/other"))
        assert isinstance(taken, models.Error) and taken.code == "address_taken"
        refused = await create_account.asyncio(client=anonymous, body=models.CreateAccountRequest(
            email=email, password=PASSWORD))
        assert isinstance(refused, models.Error) and refused.code == "email_taken"
    finally:
        conduit.stop()
