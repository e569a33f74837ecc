"""Property-based exercise of the whole OpenAPI document with schemathesis.

The schema is loaded from the in-process app (schemathesis.openapi.from_asgi). Every operation
gets positive and negative examples (Hypothesis, bounded: CONDUIT_SCHEMATHESIS_EXAMPLES per mode),
sent as a signed-in user with a real bearer token. Operations taking IDs get the IDs of real
resources of that user half of the time, so they are exercised beyond 404. Each answer must not
be a 5xx, must conform to the document (status code, content type, headers, body schema), and
every 4xx body must be the spec's Error object with `code` and `error`.

The requests go through httpx's ASGI transport in the test's own event loop (the database engine
lives there); schemathesis generates the cases and validates the responses.
"""

from __future__ import annotations

import os
import re

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.pipeline import free_port
from tests.factories import assert_error, claim_domain, create_policy, create_webhook, sign_in, user

EXAMPLES = int(os.environ.get("CONDUIT_SCHEMATHESIS_EXAMPLES", "12"))
PUBLIC = "shared.example"
FUZZ_IP = "198.51.100.10"
AUTH_IP = "198.51.100.20"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.fixture
def settings_overrides(dns_zone) -> dict:
    # Every DNS lookup (domain verification, webhook targets) goes to the loopback DNS server;
    # webhook targets may be on loopback, where nothing listens (deliveries fail fast, refused).
    return {"dns_servers": f"127.0.0.1:{dns_zone.port}", "public_domains": PUBLIC, "allow_private_targets": True,
            "delivery_connect_timeout": 1.0, "delivery_timeout": 2.0}


def _cases(operation, mode: GenerationMode, path_parameters: dict | None) -> list:
    """Up to EXAMPLES cases for one operation, generated (not run) by Hypothesis."""
    cases: list = []

    @hypothesis_settings(max_examples=EXAMPLES, database=None, deadline=None, phases=[Phase.generate],
                         suppress_health_check=list(HealthCheck), derandomize=True)
    @given(operation.as_strategy(mode, path_parameters=path_parameters))
    def collect(case) -> None:  # noqa: ANN001
        cases.append(case)

    try:
        collect()
    except Unsatisfiable:  # nothing to break (no parameters, no body): no negative cases
        pass
    return cases


def _error_body_problem(response: httpx.Response) -> str | None:
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"4xx body is not JSON: {response.text[:200]!r}"
    if not (isinstance(body, dict) and isinstance(body.get("code"), str) and body["code"]
            and isinstance(body.get("error"), str) and body["error"]):
        return f"4xx body lacks code/error: {body!r}"
    return None


def _kind(failure: str) -> str:
    """One line per kind of failure: the operation and status, then schemathesis' check titles."""
    label, detail = failure.split(": ", 1)
    titles = re.findall(r"^- (ST\d+ .+)$", detail, re.M) or [detail.splitlines()[0][:100]]
    return f"{label}: {' / '.join(titles)}"


async def _real_ids(client: httpx.AsyncClient, owner) -> dict[str, dict[str, str]]:  # noqa: ANN001
    """Resources of ``owner``, to put into the ID path parameters of each resource's operations."""
    domain = await claim_domain(client, owner, "fuzz.example")
    policy = await create_policy(client, owner)
    webhook = await create_webhook(client, owner, f"fuzz@{PUBLIC}", f"http://127.0.0.1:{free_port()}/inbound")
    simulated = await client.post(f"/webhooks/{webhook['id']}/simulate", json={}, headers=owner.headers)
    assert simulated.status_code == 200, simulated.text
    logs = (await client.get(f"/webhooks/{webhook['id']}/logs", headers=owner.headers)).json()
    token = await client.post("/accounts/me/api-tokens", json={"name": "fuzz"}, headers=owner.headers)
    assert token.status_code == 201, token.text
    return {"/api/v1/domains/": {"id": domain["id"]},
            "/api/v1/smtp-policies/": {"id": policy["id"]},
            "/api/v1/webhooks/": {"id": webhook["id"], "logId": logs[0]["id"]},
            "/api/v1/accounts/me/api-tokens/": {"id": token.json()["id"]}}


async def test_every_operation_holds_to_the_openapi_document(app, client_from):
    fuzz = client_from(FUZZ_IP)
    auth = client_from(AUTH_IP)
    owner = await user(auth)
    ids = await _real_ids(auth, owner)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 39
    # Deletions last, so the real resources live through the other operations.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")

    failures: list[str] = []
    sent: dict[str, int] = {}
    for operation in operations:
        real = next((v for prefix, v in ids.items() if operation.path.startswith(prefix)), None)
        wanted = {k: v for k, v in (real or {}).items() if "{" + k + "}" in operation.path} or None
        cases = [*_cases(operation, GenerationMode.POSITIVE, None),
                 *_cases(operation, GenerationMode.NEGATIVE, None)]
        if wanted:
            cases += _cases(operation, GenerationMode.POSITIVE, wanted)
        for case in cases:
            kwargs = case.as_transport_kwargs(base_url="http://testserver")
            headers = {k: v for k, v in kwargs["headers"].items() if k.lower() != "authorization"}
            headers["Authorization"] = f"Bearer {owner.access_token}"
            try:
                request = fuzz.build_request(kwargs["method"], kwargs["url"], headers=headers,
                                             params=kwargs.get("params"), json=kwargs.get("json"),
                                             content=kwargs.get("data"), cookies=kwargs.get("cookies"))
            except (UnicodeEncodeError, TypeError, ValueError, httpx.InvalidURL):
                continue  # not expressible as HTTP (e.g. a header value outside latin-1)
            response = await fuzz.send(request)
            sent[operation.label] = sent.get(operation.label, 0) + 1
            label = f"{operation.label} -> {response.status_code}"
            try:
                case.validate_response(response, checks=CHECKS)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected, reported below
                failures.append(f"{label}: {str(exc)[:600]}\n  request: {kwargs.get('json')!r} {kwargs.get('params')!r}")
            if problem := _error_body_problem(response):
                failures.append(f"{label}: {problem}")
            # A generated call may end the session (sign out everywhere, password change): sign in again.
            if (await auth.get("/accounts/me", headers=owner.headers)).status_code == 401:
                owner.access_token = (await sign_in(auth, owner.email, owner.password))["access_token"]
    assert all(sent.get(op.label, 0) >= min(EXAMPLES, 1) for op in operations), sent
    kinds = sorted({_kind(f) for f in failures})
    assert not failures, f"{len(failures)} failures, of these kinds:\n" + "\n".join(kinds) + \
        "\n\nthe first ones:\n" + "\n".join(failures[:5])


# What the run above found, pinned as plain tests -------------------------------------------------

async def test_json_body_that_is_not_utf8_is_422_invalid_json(client):
    response = await client.post("/sessions", content=b'{"email": "\xff\xfe", "password": "x"}',
                                 headers={"Content-Type": "application/json"})
    assert_error(response, 422, "invalid_json")


async def test_password_reset_request_202_has_no_body_and_the_document_says_so(client):
    response = await client.post("/accounts/me/password-reset", json={"email": "nobody@example.com"})
    assert response.status_code == 202
    assert response.content == b""
    document = (await client.get("http://testserver/openapi.json")).json()
    answer = document["paths"]["/api/v1/accounts/me/password-reset"]["post"]["responses"]["202"]
    assert "content" not in answer


async def test_delete_account_throttles_wrong_passwords_and_the_document_says_so(client):
    me = await user(client)
    answers = [await client.request("DELETE", "/accounts/me", headers=me.headers,
                                    json={"password": "wrong password!", "confirm": True}) for _ in range(11)]
    assert [r.status_code for r in answers] == [401] * 10 + [429]
    assert_error(answers[-1], 429, "too_many_requests")
    assert int(answers[-1].headers["Retry-After"]) > 0
    document = (await client.get("http://testserver/openapi.json")).json()
    assert "429" in document["paths"]["/api/v1/accounts/me"]["delete"]["responses"]
