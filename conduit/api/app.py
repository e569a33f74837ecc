"""create_app(): the FastAPI application of the API reference, with /openapi.json and /docs."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from conduit import __version__
from conduit.api import errors, middleware
from conduit.api.deps import AppContext
from conduit.api.routers import accounts, api_tokens, domains, policies, sessions, system, two_factor, webhooks
from conduit.config import Settings
from conduit.db.engine import session_factory
from conduit.delivery.http import delivery_client
from conduit.net.dns import make_resolver
from conduit.services.crypto import Crypto

API_PREFIX = "/api/v1"
DESCRIPTION = ("Conduit bridges inbound SMTP to outbound HTTP webhooks. This REST API manages accounts, "
               "sessions, webhooks, and domain ownership.")


def create_app(settings: Settings, engine: AsyncEngine) -> FastAPI:
    """The app over an engine the caller owns (the runtime or a test disposes of it)."""

    app = FastAPI(title="Conduit API", version=__version__, description=DESCRIPTION,
                  servers=[{"url": "/", "description": "this server"}])
    app.state.context = AppContext(settings=settings,
                                   crypto=Crypto(settings.secret_key, settings.previous_secret_key_list),
                                   sessions=session_factory(engine),
                                   resolver=make_resolver(settings.dns_server_list, settings.dns_timeout),
                                   http=delivery_client(settings))
    errors.install(app)
    middleware.install(app, settings)
    for module in (system, sessions, accounts, domains, policies, webhooks, two_factor, api_tokens):
        app.include_router(module.router, prefix=API_PREFIX)
    return app
