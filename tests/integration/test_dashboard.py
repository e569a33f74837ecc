"""The dashboard as served by the API: its page at /, its files under /assets, each with a strict
Content-Security-Policy; the files are package data (no build step, nothing from a CDN)."""

from __future__ import annotations

import re

import pytest

from conduit.web import STATIC_DIR

EXPECTED_CSP = {
    "default-src": "'none'", "script-src": "'self'", "style-src": "'self'", "img-src": "'self' data:",
    "connect-src": "'self'", "frame-ancestors": "'none'", "base-uri": "'none'", "form-action": "'none'",
    "require-trusted-types-for": "'script'", "trusted-types": "conduit-mail-frame",
}


def directives(response) -> dict[str, str]:
    return dict(d.strip().split(" ", 1) for d in response.headers["Content-Security-Policy"].split(";"))


def assert_dashboard_headers(response) -> None:
    assert directives(response) == EXPECTED_CSP
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


async def test_the_dashboard_page_is_served_at_the_root(client):
    response = await client.get("http://testserver/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert_dashboard_headers(response)
    html = response.text
    assert '<script type="module" src="/assets/js/main.js"></script>' in html
    # Nothing inline: no script bodies, no style attributes or elements, nothing remote.
    assert not re.search(r"<script[^>]*>[^<\s]", html)
    assert "style=" not in html and "<style" not in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html


@pytest.mark.parametrize("path, content_type", [
    ("/assets/js/main.js", "text/javascript"),
    ("/assets/app.css", "text/css"),
    ("/assets/icon.svg", "image/svg+xml"),
    ("/assets/vendor/htm-preact-3.1.1.module.js", "text/javascript"),
])
async def test_assets_are_served_with_the_dashboard_policy(client, path, content_type):
    response = await client.get(f"http://testserver{path}")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] in {content_type, "application/javascript"}
    assert response.headers["Cache-Control"] == "no-cache"
    assert_dashboard_headers(response)


async def test_unknown_assets_and_traversal_are_404_error_bodies(client):
    for path in ("/assets/nope.js", "/assets/../conduit.db", "/assets/%2e%2e/config.py"):
        response = await client.get(f"http://testserver{path}")
        assert response.status_code == 404, path
        assert set(response.json()) == {"code", "error"}


async def test_the_api_keeps_its_own_policy_and_the_dashboard_is_not_in_the_openapi_document(client):
    ping = await client.get("/ping")
    assert directives(ping)["default-src"] == "'none'"
    assert "script-src" not in directives(ping)
    document = (await client.get("http://testserver/openapi.json")).json()
    assert all(path.startswith("/api/v1/") for path in document["paths"])


def test_every_asset_is_local_and_free_of_inline_code():
    """No CDN, no inline handlers or styles in the shipped files; every module import is relative."""
    files = [p for p in STATIC_DIR.rglob("*") if p.is_file()]
    assert STATIC_DIR / "index.html" in files and STATIC_DIR / "vendor" / "LICENSE-htm.txt" in files
    for path in files:
        if path.suffix not in {".js", ".html", ".css"} or path.parent.name == "vendor":
            continue
        text = path.read_text()
        if path.suffix in {".html", ".css"}:  # what loads resources (scripts load modules: checked below)
            assert "https://" not in text and "http://" not in text.replace("http://www.w3.org", ""), path
        assert "innerHTML" not in text and "dangerouslySetInnerHTML" not in text, path
        assert not re.search(r"\bstyle=", text), path
        assert "eval(" not in text and "new Function" not in text, path
        for specifier in re.findall(r"""^\s*(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]""", text, re.MULTILINE):
            assert specifier.startswith("."), (path, specifier)

