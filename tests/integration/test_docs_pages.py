"""/docs and /redoc load nothing but files of this server: they work offline, under a CSP that
names no other host and allows no inline script."""

from __future__ import annotations

import re

import pytest

PAGES = {"/docs": ["/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui-init.js",
                   "/docs/assets/swagger-ui.css"],
         "/redoc": ["/docs/assets/redoc.standalone.js"]}


@pytest.mark.parametrize("page", sorted(PAGES))
async def test_a_docs_page_loads_only_files_of_this_server(client, page):
    response = await client.get(f"http://testserver{page}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    loaded = re.findall(r'<script[^>]*\bsrc="([^"]+)"', html) + re.findall(r'<link[^>]*\bhref="([^"]+)"', html)
    assert sorted(loaded) == sorted(PAGES[page])
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<script[^>]*>\s*[^<\s]", html), "no inline script"
    for url in loaded:
        asset = await client.get(f"http://testserver{url}")
        assert asset.status_code == 200, url
        kind = "text/css" if url.endswith(".css") else "text/javascript"
        assert asset.headers["content-type"].startswith(kind), url
        assert len(asset.content) > 1000 or url.endswith("-init.js"), url


@pytest.mark.parametrize("page", sorted(PAGES))
async def test_the_docs_csp_names_no_other_host_and_no_inline_script(client, page):
    csp = (await client.get(f"http://testserver{page}")).headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert "http" not in csp
    assert directives["script-src"] == ["'self'"]
    assert directives["default-src"] == ["'none'"]
    assert directives["connect-src"] == ["'self'"]


async def test_the_boot_script_reads_this_servers_document(client):
    script = (await client.get("http://testserver/docs/assets/swagger-ui-init.js")).text
    assert 'url: "/openapi.json"' in script and "validatorUrl: null" in script
    redoc = (await client.get("http://testserver/redoc")).text
    assert '<redoc spec-url="/openapi.json">' in redoc


async def test_the_licences_of_the_shipped_files_are_served_with_them(client):
    for name in ("swagger-ui-dist.LICENSE", "swagger-ui-dist.NOTICE", "redoc.LICENSE"):
        response = await client.get(f"http://testserver/docs/assets/{name}")
        assert response.status_code == 200 and len(response.text) > 40, name
