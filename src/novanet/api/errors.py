"""The one table from error to HTTP status and Compute-API fault body, for both APIs.

Every refusal answers ``{"<faultName>": {"code": <status>, "message": "..."}}``, the shape
nova's FaultWrapper gave (itemNotFound, badRequest, forbidden, ...). Bad input is a 400
naming the field, never a 500; an unexpected error is a 500 without a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from novanet.domain import errors as E

log = logging.getLogger("novanet.api")

# nova/api/openstack/wsgi.py's Fault names.
FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}

# Domain error -> HTTP status; the first matching class wins (subclasses before bases).
# Where the original answered differently from the error's generic status, the row says so.
STATUS: tuple[tuple[type[E.NovanetError], int], ...] = (
    (E.Unauthorized, 401),
    (E.QuotaExceeded, 413),  # nova: FloatingIpLimitExceeded -> HTTPRequestEntityTooLarge
    (E.NoMoreFloatingIps, 404),  # nova: "No more floating ips in pool" -> HTTPNotFound
    (E.NotAssociated, 422),  # nova: removeFloatingIp of another server's address
    (E.NotImplementedYet, 501),
    (E.Forbidden, 403),
    (E.NotFound, 404),
    (E.Conflict, 409),
    (E.InvalidInput, 400),
    (E.ConfigError, 500),
    (E.DatabaseError, 503),  # DatabaseUnavailable: also Retry-After
    (E.NovanetError, 400),
)


def status_of(exc: E.NovanetError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500  # unreachable: NovanetError is the last row


def fault(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The Compute-API error body for ``status``."""
    name = FAULT_NAMES.get(status, "computeFault")
    return JSONResponse({name: {"code": status, "message": message}}, status_code=status, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def validation_message(exc: RequestValidationError) -> str:
    errs = exc.errors()
    if not errs:
        return "invalid request"
    first = errs[0]
    kind = first.get("type", "")
    if kind == "json_invalid":
        return "malformed request body: not valid JSON"
    where = first.get("loc", ())
    field = _field(tuple(where))
    if where and where[0] in ("path", "query", "header"):
        field = _field(tuple(where[1:])) or field
    msg = str(first.get("msg", "invalid")).rstrip(".")
    if kind == "missing" and field == "body":
        return "missing request body"
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"invalid input for field '{field}': {msg}{more}"


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a fault body."""

    @app.exception_handler(E.NovanetError)
    async def _domain(request: Request, exc: E.NovanetError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc.message)
        if isinstance(exc, E.DatabaseUnavailable):
            return fault(status, exc.message, {"Retry-After": str(exc.retry_after)})
        return fault(status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return fault(400, validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such resource: {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        return fault(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        from novanet.db.outage import is_outage, unavailable

        if is_outage(exc):  # a database call outside a unit of work, during an outage
            down = unavailable(exc)
            log.error("%s %s: %s", request.method, request.url.path, down.message)
            return fault(503, down.message, {"Retry-After": str(down.retry_after)})
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return fault(500, "internal error; the server log has the details")
