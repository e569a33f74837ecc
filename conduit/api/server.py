"""The API role's HTTP server: uvicorn inside Conduit's event loop (imported only by processes
that serve the API: FastAPI and uvicorn take a second or two to import)."""

from __future__ import annotations

import contextlib

import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from conduit.api.app import create_app
from conduit.config import Settings


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside our loop: signals are ours, so its own capture is switched off."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


def api_server(settings: Settings, engine: AsyncEngine) -> EmbeddedServer:
    config = uvicorn.Config(create_app(settings, engine), host=settings.http_host, port=settings.http_port,
                            loop="none", lifespan="off", access_log=False, server_header=False,
                            proxy_headers=False, log_config=None)
    return EmbeddedServer(config)
