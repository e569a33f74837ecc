"""The one description of the webhook payload (conduit/mail/payload_schema.py) is what the parser
sends, what the README's table says and what the OpenAPI document's ``webhooks`` section says."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from conduit.mail.parse import AuthResults, Envelope, build_payload
from conduit.mail.payload_schema import EmailReceived, SignatureHeaders
from conduit.mail.render import encode_payload
from conduit.mail.synthetic import build_synthetic_message
from tests.unit.test_payload_corpus import _cases, _payload

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import payload_table  # noqa: E402 - the script under test


def test_the_readme_table_is_exactly_what_the_script_prints():
    printed = subprocess.run([sys.executable, str(ROOT / "tools" / "payload_table.py")], capture_output=True,
                             text=True, check=True, cwd=ROOT).stdout
    assert payload_table.readme_table((ROOT / "README.md").read_text()) == printed
    # Every field of the payload has its row, with its description.
    for name, info in EmailReceived.model_fields.items():
        assert f"| `{info.alias or name}` |" in printed
        assert (info.description or "").replace("|", "\\|") in printed


@pytest.mark.parametrize("name", sorted(_cases()))
def test_every_payload_of_the_corpus_validates_against_the_schema(name):
    payload = _payload(_cases()[name]())
    parsed = EmailReceived.model_validate_json(json.dumps(payload), strict=True)
    assert parsed.model_dump(mode="json", by_alias=True) == payload
    assert list(payload) == [info.alias or field for field, info in EmailReceived.model_fields.items()]


def test_a_simulated_payload_with_omitted_attachments_and_no_checks_validates():
    raw = build_synthetic_message(from_addr=None, to_addr="box@in.example", subject=None, text=None)
    raw = raw.replace(b"MIME-Version", b"X-Extra: 1\r\nMIME-Version")
    payload = json.loads(encode_payload(build_payload(
        raw, message_id="msg_1", received_at=datetime(2026, 4, 2, tzinfo=UTC),
        envelope=Envelope(mail_from="", rcpt_to=("box@in.example",), remote_ip="", helo="", tls=False, auth_user=None),
        rcpt_to="box@in.example", webhook_id="whk_1", webhook_address="box@in.example", auth=AuthResults(),
        simulated=True, max_inline_attachment_bytes=0)))
    assert payload["auth"]["spf"]["domain"] is None and payload["envelope"]["auth_user"] is None
    EmailReceived.model_validate_json(json.dumps(payload), strict=True)


def test_the_schema_refuses_what_the_parser_must_not_send():
    payload = _payload(next(iter(_cases().values()))())
    for broken in ({**payload, "surprise": 1}, {k: v for k, v in payload.items() if k != "subject"},
                   {**payload, "simulated": "false"}, {**payload, "auth": {**payload["auth"], "dmarc": "maybe"}}):
        with pytest.raises(ValidationError):
            EmailReceived.model_validate_json(json.dumps(broken), strict=True)


async def test_the_openapi_webhooks_section_is_made_from_the_schema(client):
    document = (await client.get("http://testserver/openapi.json")).json()
    operation = document["webhooks"]["email.received"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/EmailReceived"}
    published = document["components"]["schemas"]["EmailReceived"]
    source = EmailReceived.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    assert list(published["properties"]) == list(source["properties"])
    assert published["properties"] == source["properties"]
    assert sorted(published["required"]) == sorted(source["required"])
    for name, definition in source["$defs"].items():
        assert document["components"]["schemas"][name] == definition
    headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
    assert sorted(headers) == ["webhook-id", "webhook-signature", "webhook-timestamp"]
    for info in SignatureHeaders.model_fields.values():
        assert headers[info.alias]["required"] is True
        assert headers[info.alias]["description"] == info.description
