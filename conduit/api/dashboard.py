"""Serves the dashboard (conduit/web): its page at ``/`` and its files under ``/assets``.

The page's routes live in the URL fragment (``/#/webhooks``), so ``/`` is the only HTML
document; the assets are cached briefly and revalidated, so an upgrade shows at once.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from conduit.web import INDEX_HTML, STATIC_DIR

ASSETS_PATH = "/assets"
REVALIDATE = "no-cache"


class _Assets(StaticFiles):
    """StaticFiles with a Cache-Control that makes the browser revalidate (ETag) every load."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = REVALIDATE
        return response


def install(app: FastAPI) -> None:
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(INDEX_HTML, media_type="text/html; charset=utf-8", headers={"Cache-Control": REVALIDATE})

    app.mount(ASSETS_PATH, _Assets(directory=STATIC_DIR), name="assets")
