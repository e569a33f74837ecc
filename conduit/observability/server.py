"""CONDUIT_METRICS_PORT: /metrics and /health/* on a listener of their own, for the roles that
serve no API (`conduit smtp`, `conduit worker`); uvicorn in the role's event loop."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from conduit.config import Settings
from conduit.observability.http import routes
from conduit.storage.database import Database


class _EmbeddedServer(uvicorn.Server):
    """Signals are the role's: uvicorn's own capture is switched off."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def probe_server(settings: Settings, database: Database) -> uvicorn.Server:
    app = Starlette(routes=routes(database, with_metrics=settings.metrics))
    config = uvicorn.Config(app, host=settings.http_host, port=settings.metrics_port, loop="none", lifespan="off",
                            access_log=False, server_header=False, proxy_headers=False, log_config=None)
    return _EmbeddedServer(config)
