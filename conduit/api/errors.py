"""Every error leaves the API as the spec's Error body: {"code": "...", "error": "..."}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from conduit.api.middleware import security_headers
from conduit.errors import ConduitError, Throttled
from conduit.services.authentication import TokenRefused

log = logging.getLogger("conduit.api")

_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    406: "not_acceptable", 413: "payload_too_large", 415: "unsupported_media_type", 429: "too_many_requests",
}

_FASTAPI_BODY_PARSE_ERROR = "There was an error parsing the body"
_PARSE_PROBLEMS: dict[type[BaseException], str] = {UnicodeDecodeError: " (it must be UTF-8)",
                                                   RecursionError: " (it is nested too deeply)"}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   details: list[dict[str, str]] | None = None) -> JSONResponse:
    body: dict[str, object] = {"code": code, "error": message}
    if details is not None:
        body["details"] = details
    if status == 401 and not (headers and "WWW-Authenticate" in headers):
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}  # RFC 9110 11.6.1: every 401 says how
    return JSONResponse(body, status_code=status, headers=headers)


def _www_authenticate(exc: ConduitError) -> dict[str, str] | None:
    """RFC 6750 3: a refused token gets error="invalid_token"; a missing one only the scheme."""
    if isinstance(exc, TokenRefused) and exc.token_given:
        description = exc.message.replace("\\", "").replace('"', "'")
        return {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{description}"'}
    return None


METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """The methods some route of the app answers at this path, for a 405's Allow header.

    Starlette answers with the methods of the first route whose path matches, so a path served
    by several routes (GET and POST on /webhooks) would list only one of them. Each method is
    tried against every route instead, as the router itself would match it."""
    allowed = [method for method in METHODS
               if any(route.matches({**request.scope, "method": method})[0] == Match.FULL
                      for route in request.app.router.routes)]
    return ", ".join(allowed)


def _describe(error: dict[str, Any]) -> str:
    """One sentence from one pydantic error: where, and what is wrong."""
    if error.get("type") == "json_invalid":
        return "request body is not valid JSON"
    if tuple(error.get("loc", ())) == ("body",) and error.get("type") in ("model_attributes_type", "dict_type"):
        return "request body must be a JSON object (send Content-Type: application/json)"
    where = _field(error)
    if error.get("type") == "missing":
        return f"{where} is required" if where else "request body is required"
    return f"{where}: {_reason(error)}" if where else _reason(error)


def _reason(error: dict[str, Any]) -> str:
    if error.get("type") == "missing":
        return "is required"
    if error.get("type") == "extra_forbidden":
        return "unknown field (this request body does not have it)"
    return str(error.get("msg", "is invalid")).removeprefix("Value error, ")


def _field(error: dict[str, Any]) -> str:
    return ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "header"))


def _details(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Every problem of the request, one entry per field (pydantic reports each once)."""
    return [{"field": _field(e) or "body", "error": _reason(e)} for e in errors]


def install(app: FastAPI) -> None:
    @app.exception_handler(ConduitError)
    async def conduit_error(_: Request, exc: ConduitError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Throttled) else _www_authenticate(exc)
        return error_response(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if errors and errors[0].get("type") == "json_invalid":
            return error_response(422, "invalid_json", _describe(errors[0]))
        message = _describe(errors[0]) if errors else "request is invalid"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more: see details)"
        return error_response(422, "validation_error", message, details=_details(errors))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_PARSE_ERROR:
            # FastAPI's answer when json.loads raises something other than JSONDecodeError (its
            # cause): UnicodeDecodeError for a body that is not UTF-8, RecursionError for one
            # nested deeper than the parser goes. The same 422 invalid_json as any other malformed JSON.
            problem = next((text for kind, text in _PARSE_PROBLEMS.items() if isinstance(exc.__cause__, kind)), "")
            return error_response(422, "invalid_json", "request body is not valid JSON" + problem)
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) and exc.detail else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = "no such resource or route"
        return error_response(exc.status_code, code, message, headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:  # noqa: ARG001 - Starlette's exception-handler signature
        log.exception("event=unhandled_error method=%s path=%s", request.method, request.url.path)
        # Answered by Starlette's outermost middleware, outside the security-headers middleware.
        # That middleware re-raises once this answer is sent, and the server then closes the
        # connection: "Connection: close" tells the client not to send another request on it.
        return error_response(500, "internal_error", "an unexpected error occurred; it has been logged",
                              {**security_headers(request.url.path), "Connection": "close"})
