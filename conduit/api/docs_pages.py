"""/docs (Swagger UI) and /redoc (ReDoc) from files shipped in the package (conduit/api/static/docs,
with their licences): no CDN, so they work offline, and no inline script, so their CSP needs no
'unsafe-inline' for scripts."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).parent / "static" / "docs"
ASSETS_PATH = "/docs/assets"


def install(app: FastAPI) -> None:
    """Serve the pages; create the app with ``docs_url=None, redoc_url=None``."""

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> FileResponse:
        return FileResponse(ASSETS / "swagger-ui.html", media_type="text/html; charset=utf-8")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> FileResponse:
        return FileResponse(ASSETS / "redoc.html", media_type="text/html; charset=utf-8")

    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS), name="docs-assets")
