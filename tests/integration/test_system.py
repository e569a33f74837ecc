"""System endpoints, the OpenAPI document and the Error body on every kind of failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# The specification's checker lives beside the repository (../shared), not in it: a plain clone has
# no such directory, and then the contract test says so instead of failing.
CHECK_CONTRACT = Path(__file__).resolve().parents[3] / "shared" / "tools" / "check_contract.py"


async def test_ping(client):
    response = await client.get("/ping")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_unknown_route_is_404_with_error_body(client):
    response = await client.get("/no/such/thing")
    assert response.status_code == 404
    assert set(response.json()) == {"code", "error"}
    assert response.json()["code"] == "not_found"


async def test_wrong_method_is_405_with_error_body(client):
    response = await client.delete("/ping")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


async def test_malformed_json_is_422_with_error_body(client):
    response = await client.post("/accounts", content=b'{"email": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json() == {"code": "invalid_json", "error": "request body is not valid JSON"}


async def test_missing_field_is_422_naming_it(client):
    response = await client.post("/accounts", json={"email": "a@example.com"})
    assert response.status_code == 422
    assert response.json() == {"code": "validation_error", "error": "password is required",
                               "details": [{"field": "password", "error": "is required"}]}


async def test_non_object_body_is_422(client):
    response = await client.post("/accounts", json=["a"])
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


@pytest.mark.skipif(not CHECK_CONTRACT.exists(), reason=f"the specification's checker is not at {CHECK_CONTRACT}")
async def test_openapi_document_matches_the_api_reference(client, tmp_path):
    response = await client.get("http://testserver/openapi.json")
    assert response.status_code == 200
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(response.json()))
    result = subprocess.run([sys.executable, str(CHECK_CONTRACT), str(document)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout


async def test_docs_page_is_served(client):
    response = await client.get("http://testserver/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()
