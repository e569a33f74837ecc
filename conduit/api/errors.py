"""Every error leaves the API as the spec's Error body: {"code": "...", "error": "..."}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from conduit.api.middleware import security_headers
from conduit.errors import ConduitError, Throttled

log = logging.getLogger("conduit.api")

_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    406: "not_acceptable", 413: "payload_too_large", 415: "unsupported_media_type", 429: "too_many_requests",
}

_FASTAPI_BODY_PARSE_ERROR = "There was an error parsing the body"


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "error": message}, status_code=status, headers=headers)


def _describe(error: dict) -> str:
    """One sentence from pydantic's first error: where, and what is wrong."""
    if error.get("type") == "json_invalid":
        return "request body is not valid JSON"
    if tuple(error.get("loc", ())) == ("body",) and error.get("type") in ("model_attributes_type", "dict_type"):
        return "request body must be a JSON object (send Content-Type: application/json)"
    loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "header")]
    where = ".".join(loc)
    message = error.get("msg", "is invalid")
    if error.get("type") == "missing":
        return f"{where} is required" if where else "request body is required"
    return f"{where}: {message}" if where else message


def install(app: FastAPI) -> None:
    @app.exception_handler(ConduitError)
    async def conduit_error(_: Request, exc: ConduitError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Throttled) else None
        return error_response(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        code = "invalid_json" if errors and errors[0].get("type") == "json_invalid" else "validation_error"
        return error_response(422, code, _describe(errors[0]) if errors else "request is invalid")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_PARSE_ERROR:
            # FastAPI's answer to a JSON body that is not UTF-8 (json.loads raises UnicodeDecodeError,
            # not JSONDecodeError): the same 422 invalid_json as any other malformed JSON.
            return error_response(422, "invalid_json", "request body is not valid JSON (it must be UTF-8)")
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) and exc.detail else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = "no such resource or route"
        return error_response(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("event=unhandled_error method=%s path=%s", request.method, request.url.path)
        # Answered by Starlette's outermost middleware, outside the security-headers middleware.
        return error_response(500, "internal_error", "an unexpected error occurred; it has been logged",
                              security_headers(request.url.path))
