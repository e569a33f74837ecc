"""The API role's HTTP server: uvicorn inside Conduit's event loop (imported only by processes
that serve the API: FastAPI and uvicorn take a second or two to import)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import cast

import uvicorn
from fastapi import FastAPI

from conduit.api.app import create_app
from conduit.api.deps import AppContext
from conduit.config import Settings
from conduit.isolation import RenderPool
from conduit.storage.database import Database


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside our loop: signals are ours, so its own capture is switched off."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    @property
    def context(self) -> AppContext:
        """What the served app shares between requests (the runtime closes its HTTP client)."""
        context: AppContext = cast(FastAPI, self.config.app).state.context
        return context


def api_server(settings: Settings, database: Database, renders: RenderPool) -> EmbeddedServer:
    config = uvicorn.Config(create_app(settings, database, renders=renders),
                            host=settings.http_host, port=settings.http_port, loop="none", lifespan="off",
                            access_log=False, server_header=False, proxy_headers=False, log_config=None)
    return EmbeddedServer(config)
