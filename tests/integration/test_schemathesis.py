"""Property-based exercise of the whole OpenAPI document with schemathesis.

The schema is loaded from the in-process app (schemathesis.openapi.from_asgi). Every operation
gets positive and negative examples (Hypothesis, bounded: CONDUIT_SCHEMATHESIS_EXAMPLES per mode),
sent as a signed-in user with a real bearer token. Operations taking IDs get the IDs of real
resources of that user half of the time, so they are exercised beyond 404. Each answer must not
be a 5xx, must conform to the document (status code, content type, headers, body schema), and
every 4xx body must be the spec's Error object with `code` and `error`.

Beyond what schemathesis generates, every field of every operation (each body property, path
and query parameter) also gets hostile values that generators rarely produce: digits of other
scripts, full-width and superscript digits (which str.isdigit() accepts and int() or
hmac.compare_digest may not), very long text and a digit string too long for int(), NUL and a
lone surrogate, deeply nested JSON (parseable, and past the parser's recursion limit) and a
number too long for int(). These are sent byte for byte (JSON escapes, percent-encoding) and
judged by the same checks.

The requests go through httpx's ASGI transport in the test's own event loop (the database engine
lives there); schemathesis generates the cases and validates the responses.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

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

from tests.factories import (
    assert_error,
    claim_domain,
    create_policy,
    create_webhook,
    sign_in,
    store_message,
    user,
)
from tests.support.pipeline import free_port

EXAMPLES = int(os.environ.get("CONDUIT_SCHEMATHESIS_EXAMPLES", "12"))
PUBLIC = "shared.example"
FUZZ_IP = "198.51.100.10"
AUTH_IP = "198.51.100.20"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
HOSTILE_TEXT = {
    "arabic-indic digits": "١٢٣٤٥٦",
    "full-width digits": "１２３４５６",
    "superscript digits": "¹²³⁴⁵⁶",
    "long text": "x" * 20_000,
    "long digits": "9" * 5_000,  # int() refuses more than 4,300 digits
    "NUL": "nul\x00here",
    "lone surrogate": "lone\ud800surrogate",
}


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


HOSTILE_JSON = {  # JSON text put in place of a value
    "nested JSON": _nested(200),
    "JSON nested past the parser's limit": _nested(50_000),
    "a 5,000-digit number": "9" * 5_000,
}
_RAW = "__raw_json__"


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
    def collect(case) -> None:
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


async def _real_ids(client: httpx.AsyncClient, owner) -> dict[str, dict[str, str]]:
    """Resources of ``owner``, to put into the ID path parameters of each resource's operations."""
    domain = await claim_domain(client, owner, "fuzz.example")
    policy = await create_policy(client, owner)
    webhook = await create_webhook(client, owner, f"fuzz@{PUBLIC}", f"http://127.0.0.1:{free_port()}/inbound")
    simulated = await client.post(f"/webhooks/{webhook['id']}/simulate", json={}, headers=owner.headers)
    assert simulated.status_code == 200, simulated.text
    logs = (await client.get(f"/webhooks/{webhook['id']}/logs", headers=owner.headers)).json()
    token = await client.post("/accounts/me/api-tokens", json={"name": "fuzz"}, headers=owner.headers)
    assert token.status_code == 201, token.text
    # 2FA set up (not enabled), so that codes sent to enable reach the code check.
    assert (await client.post("/accounts/me/2fa/setup", headers=owner.headers)).status_code == 200
    return {"/api/v1/domains/": {"id": domain["id"]},
            "/api/v1/smtp-policies/": {"id": policy["id"]},
            "/api/v1/webhooks/": {"id": webhook["id"], "logId": logs[0]["id"]},
            "/api/v1/accounts/me/api-tokens/": {"id": token.json()["id"]}}


@dataclass(frozen=True)
class Hostile:
    """One hostile request: the case it stands for (to validate the answer) and its exact bytes."""

    case: Any
    label: str
    url: str
    body: bytes | None


def _hostile_cases(operation, document: dict, base, real: dict | None) -> Iterator[Hostile]:
    """The base case with one field at a time replaced by each hostile value."""
    definition = document["paths"][operation.path][operation.method.lower()]
    parameters = {(p["in"], p["name"]) for p in definition.get("parameters", [])}
    path_parameters = {**(base.path_parameters or {}), **(real or {})}
    query = dict(base.query or {})
    body: dict | None = None
    if "requestBody" in definition:
        body = dict(base.body) if isinstance(base.body, dict) else {}
        fields = [*_properties(document, definition["requestBody"]), *body]
        for field in dict.fromkeys(fields):
            for label, text in HOSTILE_TEXT.items():
                yield _hostile(operation, f"body {field} = {label}", path_parameters, query, {**body, field: text})
            for label, raw in HOSTILE_JSON.items():
                yield _hostile(operation, f"body {field} = {label}", path_parameters, query, {**body, field: _RAW}, raw)
        for label, raw in HOSTILE_JSON.items():
            yield _hostile(operation, f"body = {label}", path_parameters, query, _RAW, raw)
    for where, name in sorted(parameters):
        for label, text in HOSTILE_TEXT.items():
            if where == "path":
                yield _hostile(operation, f"path {name} = {label}", {**path_parameters, name: text}, query, body)
            elif where == "query":
                yield _hostile(operation, f"query {name} = {label}", path_parameters, {**query, name: text}, body)


def _properties(document: dict, request_body: dict) -> list[str]:
    schema = request_body["content"]["application/json"]["schema"]
    for listed in [schema, *schema.get("anyOf", [])]:
        option = listed
        while "$ref" in option:
            option = document["components"]["schemas"][option["$ref"].rsplit("/", 1)[-1]]
        if "properties" in option:
            return list(option["properties"])
    return []


def _hostile(operation, label: str, path_parameters: dict, query: dict, body: Any,
             raw: str | None = None) -> Hostile:
    path = operation.path
    for name, value in path_parameters.items():
        path = path.replace("{" + name + "}", quote(str(value), safe="", errors="surrogatepass"))
    url = "http://testserver" + path + ("?" + urlencode(query, errors="surrogatepass") if query else "")
    text = None if body is None else json.dumps(body).replace(json.dumps(_RAW), raw or "")
    case = operation.Case(path_parameters=path_parameters, query=query, media_type="application/json",
                          **({} if body is None or raw else {"body": body}))
    return Hostile(case=case, label=label, url=url, body=None if text is None else text.encode())


async def test_every_operation_holds_to_the_openapi_document(app, client_from):
    fuzz = client_from(FUZZ_IP)
    auth = client_from(AUTH_IP)
    owner = await user(auth)
    ids = await _real_ids(auth, owner)
    webhook_id = ids["/api/v1/webhooks/"]["id"]
    ids["/api/v1/messages/"] = {"id": await store_message(app.state.context.database, webhook_id, f"fuzz@{PUBLIC}"),
                                "index": "0"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    document = app.openapi()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 39
    # Deletions last, so the real resources live through the other operations.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")

    failures: list[str] = []
    sent: dict[str, int] = {}
    for operation in operations:
        real = next((v for prefix, v in ids.items() if operation.path.startswith(prefix)), None)
        wanted = {k: v for k, v in (real or {}).items() if "{" + k + "}" in operation.path} or None
        positive = _cases(operation, GenerationMode.POSITIVE, None)
        # Hostile cases first: they reach throttled checks (a TOTP code) before generated wrong ones
        # use up the limit.
        cases: list = [*(_hostile_cases(operation, document, positive[0], wanted) if positive else ()),
                       *positive, *_cases(operation, GenerationMode.NEGATIVE, None)]
        if wanted:
            cases += _cases(operation, GenerationMode.POSITIVE, wanted)
        for listed in cases:
            case = listed
            authorization = {"Authorization": f"Bearer {owner.access_token}"}
            if isinstance(case, Hostile):
                hostile = case
                request = fuzz.build_request(operation.method.upper(), hostile.url, content=hostile.body, headers={
                    **authorization, **({"Content-Type": "application/json"} if hostile.body is not None else {})})
                case, label = hostile.case, f"{operation.label} [{hostile.label}]"
            else:
                kwargs = case.as_transport_kwargs(base_url="http://testserver")
                headers = {k: v for k, v in kwargs["headers"].items() if k.lower() != "authorization"}
                try:
                    request = fuzz.build_request(kwargs["method"], kwargs["url"], headers={**headers, **authorization},
                                                 params=kwargs.get("params"), json=kwargs.get("json"),
                                                 content=kwargs.get("data"), cookies=kwargs.get("cookies"))
                except (UnicodeEncodeError, TypeError, ValueError, httpx.InvalidURL):
                    continue  # not expressible as HTTP (e.g. a header value outside latin-1)
                label = operation.label
            response = await fuzz.send(request)
            sent[operation.label] = sent.get(operation.label, 0) + 1
            label = f"{label} -> {response.status_code}"
            try:
                case.validate_response(response, checks=CHECKS)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected, reported below
                failures.append(f"{label}: {str(exc)[:600]}\n  request: {request.method} {str(request.url)[:300]} "
                                f"{request.content[:300]!r}")
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
    assert "UTF-8" in assert_error(response, 422, "invalid_json")["error"]


async def test_json_nested_past_the_parsers_limit_is_422_invalid_json(client):
    response = await client.post("/sessions", content=('{"email":' + '{"a":' * 50_000 + "1" + "}" * 50_001).encode(),
                                 headers={"Content-Type": "application/json"})
    assert "nested too deeply" in assert_error(response, 422, "invalid_json")["error"]


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
