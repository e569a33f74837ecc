"""create_app(): the FastAPI application of the API reference, with /openapi.json, /docs and
the dashboard at /."""

from __future__ import annotations

from fastapi import FastAPI

from conduit import __version__
from conduit.api import dashboard, docs_pages, errors, middleware
from conduit.api.deps import AppContext
from conduit.api.routers import (
    accounts,
    api_tokens,
    domains,
    message_links,
    messages,
    policies,
    sessions,
    system,
    two_factor,
    webhook_payload,
    webhooks,
)
from conduit.config import Settings
from conduit.crypto import Crypto
from conduit.isolation import RenderPool
from conduit.net.dns import make_resolver
from conduit.observability.http import routes as probe_routes
from conduit.services.deliveries import webhook_client
from conduit.storage.database import Database

API_PREFIX = "/api/v1"
DESCRIPTION = ("Conduit bridges inbound SMTP to outbound HTTP webhooks. This REST API manages accounts, "
               "sessions, webhooks, and domain ownership.")


def create_app(settings: Settings, database: Database, *, renders: RenderPool | None = None) -> FastAPI:
    """The app over a database the caller owns (the runtime or a test disposes of it).

    ``renders``: the process's renderer pool, if it has one; otherwise the app makes its own,
    whose processes start at the first simulate or template check. Whoever made the pool
    closes it (the app's own: ``app.state.context.renders.close()``).
    """

    app = FastAPI(title="Conduit API", version=__version__, description=DESCRIPTION,
                  servers=[{"url": "/", "description": "this server"}], docs_url=None, redoc_url=None)
    app.state.context = AppContext(settings=settings,
                                   crypto=Crypto(settings.secret_key, settings.previous_secret_key_list),
                                   database=database,
                                   resolver=make_resolver(settings.dns_server_list, settings.dns_timeout),
                                   http=webhook_client(settings),
                                   renders=renders or RenderPool.from_settings(settings))
    errors.install(app)
    middleware.install(app, settings)
    for module in (system, sessions, accounts, domains, policies, webhooks, messages, message_links, two_factor,
                   api_tokens):
        app.include_router(module.router, prefix=API_PREFIX)
    webhook_payload.install(app)
    # Operators' endpoints, not the API's: outside the OpenAPI document.
    app.router.routes.extend(probe_routes(database, with_metrics=settings.metrics))
    docs_pages.install(app)
    dashboard.install(app)
    return app
