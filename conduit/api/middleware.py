"""HTTP hardening around the API: security headers, CORS (off unless configured) and a request
body size limit; and the access log with the request metrics. Pure ASGI middleware, so streamed
bodies are counted as they arrive.

Order, outermost first: the access log (so it sees every answer's final status), security
headers (so every answer carries them, CORS preflights and 413s included), CORS (so a browser
can read a 413), the body limit.
"""

from __future__ import annotations

import json
import logging
import time

from fastapi import FastAPI, Request
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conduit.api.deps import client_ip
from conduit.config import Settings
from conduit.observability import metrics
from conduit.observability.http import PROBE_PATHS
from conduit.observability.logs import log_event

access_log = logging.getLogger("conduit.access")

API_PREFIX = "/api/v1"
# The interactive documentation (conduit/api/docs_pages.py): Swagger UI and ReDoc from files shipped
# in the package. ReDoc inserts <style> elements and runs its search in a blob: worker; Swagger UI
# shows data: images.
DOCS_PATHS = frozenset({"/docs", "/redoc"})

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The dashboard (conduit/web): its own scripts and styles only, nothing inline, nothing remote.
# Forms are sent by script, never natively (form-action 'none'), and Trusted Types make any
# HTML-string sink (innerHTML and the like) throw instead of parsing user data as markup.
DASHBOARD_PATHS = ("/", "/assets/")
DASHBOARD_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                 "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; "
                 "require-trusted-types-for 'script'; trusted-types conduit-mail-frame")
# The one Trusted Types policy (conduit-mail-frame) wraps a mail's HTML for the srcdoc of a
# sandboxed iframe without scripts, forms or same-origin, under its own CSP without remote loads.
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "font-src 'self'; connect-src 'self'; worker-src blob:; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")

_COMMON = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def security_headers(path: str) -> dict[str, str]:
    """The headers every response to ``path`` carries (the 500 handler adds them itself)."""
    headers = {**_COMMON, "Content-Security-Policy": _csp(path)}
    if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
        headers["Cache-Control"] = "no-store"
    return headers


def _csp(path: str) -> str:
    if path in DOCS_PATHS:
        return DOCS_CSP
    if path == DASHBOARD_PATHS[0] or path.startswith(DASHBOARD_PATHS[1]):
        return DASHBOARD_CSP
    return API_CSP


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in security_headers(scope["path"]).items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                   *((k, v) for k, v in extra if k not in present)]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class PayloadTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes the limit. An HTTPException, so FastAPI's body
    reader passes it on unchanged and the API's handler answers it as the spec's Error body."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit} bytes")


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes``: at once when Content-Length says so, else as soon
    as the streamed bytes pass the limit (chunked bodies have no Content-Length)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = (Headers(scope=scope).get("content-length") or "").strip()
        # ASCII digits only: isdigit() also takes "²" (a latin-1 header byte), which int() refuses.
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except PayloadTooLarge:
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"code": "payload_too_large",
                           "error": f"request body is larger than the limit of {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class RouteTemplates:
    """The route template a request path matched (``/api/v1/webhooks/{webhook_id}``), or
    "unmatched": the label of the request metrics and the access log, never the raw path.

    Templates are the OpenAPI document's paths and the app's other routes and mounts; a route
    object the router selected (``scope["route"]``) is looked up once."""

    def __init__(self, app: FastAPI) -> None:
        paths = list(app.openapi().get("paths", {}))
        for route in app.router.routes:
            if isinstance(route, Mount):
                paths.append(route.path + "/{path:path}")
            elif isinstance(route, Route):
                paths.append(route.path)
        # Literal segments before parameters, as in /webhooks/test against /webhooks/{webhook_id}.
        paths = sorted(set(paths), key=lambda p: (p.count("{"), -len(p)))
        self._patterns = [(compile_path(p)[0], p.removesuffix("/{path:path}")) for p in paths]
        self._by_route: dict[int, str] = {}

    def of(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None and (known := self._by_route.get(id(route))) is not None:
            return known
        path = scope.get("path", "")
        template = next((name for pattern, name in self._patterns if pattern.match(path)), "unmatched")
        if route is not None and template != "unmatched":
            self._by_route[id(route)] = template
        return template


class AccessLogMiddleware:
    """One log line and the request metrics per API request: method, route template (never the
    raw path, which may hold a token), status, duration, client IP and the account when the
    request authenticated (``request.state.account_id``, set by conduit/api/deps.py). Never
    headers, query strings or bodies. The probes (/metrics, /health/*) are counted, not logged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._known: RouteTemplates | None = None

    def _templates(self, scope: Scope) -> RouteTemplates:
        if self._known is None:
            self._known = RouteTemplates(scope["app"])
        return self._known

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless an answer starts: an exception that escapes every handler

        async def noting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_send)
        finally:
            seconds = time.perf_counter() - started
            template = self._templates(scope).of(scope)
            metrics.http_request(scope["method"], template, status, seconds)
            if template not in PROBE_PATHS:
                self._log(scope, template, status, seconds)

    @staticmethod
    def _log(scope: Scope, template: str, status: int, seconds: float) -> None:
        request = Request(scope)
        fields = {"method": scope["method"], "route": template, "status": status,
                  "duration_ms": round(seconds * 1000, 1),
                  "client_ip": client_ip(request, request.app.state.context)}
        account = scope.get("state", {}).get("account_id")
        if account:
            fields["account"] = account
        log_event(access_log, logging.INFO, "http_request", **fields)


def install(app: FastAPI, settings: Settings) -> None:
    """Add the middleware; the last added is the outermost."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    if settings.cors_origin_list:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origin_list),
                           allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"],
                           expose_headers=["Retry-After"], allow_credentials=False, max_age=600)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(AccessLogMiddleware)
