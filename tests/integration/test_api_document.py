"""The API as a client developer meets it: a document worth generating clients from (every
operation and property described, with examples; required and nullable as the reference reads),
unknown fields refused, every validation problem in one answer, the authentication challenge on
every 401, a true Allow header on every 405."""

from __future__ import annotations

import pytest

from tests.factories import PASSWORD, assert_error, bearer, create_webhook, user

PUBLIC = "shared.example"


@pytest.fixture
def settings_overrides() -> dict:
    return {"public_domains": PUBLIC, "allow_private_targets": True}


@pytest.fixture
async def document(client) -> dict:
    response = await client.get("http://testserver/openapi.json")
    assert response.status_code == 200
    return response.json()


def _operations(document: dict) -> list[tuple[str, str, dict]]:
    return [(method.upper(), path, op) for path, item in document["paths"].items() for method, op in item.items()]


async def test_every_operation_has_a_summary_and_a_description(document):
    operations = _operations(document) + [("POST", name, item["post"]) for name, item in document["webhooks"].items()]
    assert len(operations) >= 40
    missing = [f"{m} {p}" for m, p, op in operations if not op.get("summary") or not op.get("description")]
    assert missing == []


async def test_every_property_has_a_description_and_an_example(document):
    missing = [f"{schema}.{name}" for schema, definition in document["components"]["schemas"].items()
               for name, prop in definition.get("properties", {}).items()
               if not prop.get("description") or not prop.get("examples")]
    assert missing == []


def _nullable(prop: dict) -> bool:
    return any(option.get("type") == "null" for option in prop.get("anyOf", [])) or prop.get("type") == "null"


async def test_no_request_field_is_nullable_and_creates_require_what_they_need(document):
    schemas = document["components"]["schemas"]
    request_schemas = {ref.rsplit("/", 1)[-1] for _, _, op in _operations(document)
                       for ref in [op.get("requestBody", {}).get("content", {}).get("application/json", {})
                                   .get("schema", {}).get("$ref", "")] if ref}
    assert "CreateWebhookRequest" in request_schemas and len(request_schemas) >= 15
    nullable = [f"{s}.{n}" for s in request_schemas for n, p in schemas[s]["properties"].items() if _nullable(p)]
    assert nullable == []
    for name in request_schemas:
        assert schemas[name].get("additionalProperties") is False, name
    assert sorted(schemas["CreateWebhookRequest"]["required"]) == ["address", "target_url"]
    assert schemas["SmtpSecurityPolicyRequest"]["required"] == ["name"]
    assert "required" not in schemas["UpdateWebhookRequest"]
    assert "required" not in schemas["UpdateSmtpSecurityPolicyRequest"]
    assert sorted(schemas["CreateAccountRequest"]["required"]) == ["email", "password"]
    assert schemas["CreateAPITokenRequest"]["required"] == ["name"]
    # Responses: every field present; null only where a value can be absent.
    response_nullable = sorted(f"{s}.{n}" for s, d in schemas.items() if s.endswith("Response")
                               for n, p in d.get("properties", {}).items() if _nullable(p))
    assert response_nullable == ["APITokenResponse.expires_at", "APITokenResponse.last_used_at",
                                 "APITokenResponse.token", "MessageDeliveryResponse.finished_at",
                                 "MessageDeliveryResponse.next_attempt_at", "MessageResponse.payload",
                                 "MessageResponse.payload_error", "MessageResponse.refusal_detail",
                                 "MessageResponse.refusal_reason", "MessageResponse.refusal_reply",
                                 "MessageSummaryResponse.refusal_detail", "MessageSummaryResponse.refusal_reason",
                                 "MessageSummaryResponse.refusal_reply", "SmtpSecurityPolicyResponse.spam_threshold",
                                 "WebhookResponse.payload_template",
                                 "WebhookResponse.smtp_security_policy_id"]
    assert sorted(schemas["WebhookResponse"]["required"]) == sorted(schemas["WebhookResponse"]["properties"])


async def test_the_webhook_schemas_document_the_delivery_mode(document):
    schemas = document["components"]["schemas"]
    for name in ("CreateWebhookRequest", "UpdateWebhookRequest", "WebhookResponse"):
        properties = schemas[name]["properties"]
        assert properties["delivery_mode"]["enum"] == ["queued", "synchronous"], name
        assert properties["sync_timeout_ms"]["type"] == "integer", name
        assert "451 4.3.0" in properties["delivery_mode"]["description"], name
    assert "delivery_mode" not in schemas["CreateWebhookRequest"]["required"]


async def test_sign_up_documents_its_closed_answer(document):
    responses = document["paths"]["/api/v1/accounts"]["post"]["responses"]
    assert sorted(responses) == ["201", "403", "409", "422"]


async def test_a_partial_update_still_changes_only_what_it_sends(client):
    owner = await user(client)
    hook = await create_webhook(client, owner, f"box@{PUBLIC}", "http://127.0.0.1:9/in", name="first")
    response = await client.put(f"/webhooks/{hook['id']}", json={"rate_limit": 30}, headers=owner.headers)
    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in ("name", "rate_limit", "target_url", "active")} == {
        "name": "first", "rate_limit": 30, "target_url": "http://127.0.0.1:9/in", "active": True}


async def test_null_is_refused_where_the_document_says_string(client):
    owner = await user(client)
    hook = await create_webhook(client, owner, f"box@{PUBLIC}", "http://127.0.0.1:9/in")
    response = await client.put(f"/webhooks/{hook['id']}", json={"name": None}, headers=owner.headers)
    assert_error(response, 422, "validation_error")
    assert response.json()["details"] == [{"field": "name", "error": "Input should be a valid string"}]


async def test_unknown_fields_are_refused_and_named(client):
    owner = await user(client)
    response = await client.post("/webhooks", json={"address": f"box@{PUBLIC}", "targetUrl": "http://x/",
                                                    "target_url": "http://127.0.0.1:9/", "retries": 3},
                                 headers=owner.headers)
    assert_error(response, 422, "validation_error")
    body = response.json()
    assert sorted(d["field"] for d in body["details"]) == ["retries", "targetUrl"]
    assert "targetUrl" in body["error"] or "retries" in body["error"]
    assert (await client.get("/webhooks", headers=owner.headers)).json() == []


async def test_every_validation_problem_is_in_one_answer(client):
    owner = await user(client)
    response = await client.post("/webhooks", json={"rate_limit": "many", "active": "perhaps", "extra": 1},
                                 headers=owner.headers)
    assert_error(response, 422, "validation_error")
    body = response.json()
    fields = sorted(d["field"] for d in body["details"])
    assert fields == ["active", "address", "extra", "rate_limit", "target_url"]
    assert "(and 4 more: see details)" in body["error"]
    assert {d["field"]: d["error"] for d in body["details"]}["address"] == "is required"


async def test_a_json_error_and_a_rule_of_a_service_keep_the_plain_error_body(client):
    broken = await client.post("/accounts", content=b"{", headers={"Content-Type": "application/json"})
    assert_error(broken, 422, "invalid_json")
    assert "details" not in broken.json()
    short = await client.post("/accounts", json={"email": "a@example.com", "password": "short"})
    assert set(assert_error(short, 422)) == {"code", "error"}


async def test_every_401_carries_the_bearer_challenge(client):
    missing = await client.get("/accounts/me")
    assert_error(missing, 401)
    assert missing.headers["www-authenticate"] == "Bearer"
    forged = await client.get("/accounts/me", headers=bearer("not-a-token"))
    assert_error(forged, 401)
    assert forged.headers["www-authenticate"].startswith('Bearer error="invalid_token", error_description="')
    wrong_password = await client.post("/sessions", json={"email": "nobody@example.com", "password": PASSWORD})
    assert_error(wrong_password, 401, "invalid_credentials")
    assert wrong_password.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("method, path, allowed", [
    ("PATCH", "/webhooks", "GET, POST"),
    ("DELETE", "/accounts", "POST"),
    ("POST", "/webhooks/whk_x", "DELETE, GET, PUT"),
    ("GET", "/sessions", "DELETE, POST"),
    ("PUT", "/ping", "GET"),
    ("POST", "http://testserver/docs", "GET"),
])
async def test_a_405_lists_every_method_of_the_path(client, method, path, allowed):
    response = await client.request(method, path)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allowed


async def test_an_api_token_from_a_disallowed_ip_says_so_to_its_holder_only(client, client_from):
    owner = await user(client)
    created = await client.post("/accounts/me/api-tokens", json={"name": "office", "allowed_ips": ["192.0.2.0/24"]},
                                headers=owner.headers)
    token = created.json()["token"]
    elsewhere = client_from("198.51.100.7")
    refused = await elsewhere.get("/accounts/me", headers=bearer(token))
    body = assert_error(refused, 401, "token_ip_not_allowed")
    assert "198.51.100.7" in body["error"] and "192.0.2" not in body["error"]
    # Without the token (a guessed or revoked one) the answer is the generic one, from anywhere.
    for guess in ("cdt_" + "A" * 43, token[:-2] + "xx"):
        assert_error(await elsewhere.get("/accounts/me", headers=bearer(guess)), 401, "unauthorized")
    assert (await client_from("192.0.2.9").get("/accounts/me", headers=bearer(token))).status_code == 200
    listed = (await client.get("/accounts/me/api-tokens", headers=owner.headers)).json()[0]
    await client.delete(f"/accounts/me/api-tokens/{listed['id']}", headers=owner.headers)
    assert_error(await elsewhere.get("/accounts/me", headers=bearer(token)), 401, "unauthorized")
