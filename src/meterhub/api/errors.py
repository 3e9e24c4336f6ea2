"""The one place where errors become HTTP answers, in each surface's own envelope.

- ``/smt/...``: HTTP 200 ``{"error": {"id": N, "message": "..."}}``, N per kind (below);
  an unexpected failure is HTTP 500 with id 8.
- ``/api/v1/scheduler/...``: ``{"meta": {"code": <HTTP status>, "message": "..."},
  "data": null}`` with that status;
- everything else: bad input is 400 with
  ``{"detail": "...", "errors": {"<field>": ["<message>", ...]}}`` (an oversized request
  413, the same way); no valid token 401, admin only 403, a missing (or another project's)
  object 404, an inactive source 409, too many failed logins or bad tokens 429 (with
  ``Retry-After``), each with ``{"detail": "..."}``.

A bad token (``BadToken``) is counted against the caller's address
(``meterhub.registry.throttle``); once the address is over its limit, it answers 429.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from meterhub.api.auth import bad_token_wait
from meterhub.errors import (
    BadToken,
    Forbidden,
    InvalidInput,
    InvalidTime,
    InvalidValue,
    MeterhubError,
    NotFound,
    SourceInactive,
    Throttled,
    TooLarge,
    Unauthorized,
    UnknownSource,
    UnknownTag,
)

log = logging.getLogger("meterhub.api")

SMT_ERROR_IDS: tuple[tuple[type[MeterhubError], int], ...] = (
    (UnknownSource, 2),
    (SourceInactive, 3),
    (UnknownTag, 4),
    (InvalidTime, 5),
    (InvalidValue, 6),
    (TooLarge, 7),
    (InvalidInput, 1),
    (Unauthorized, 9),
    (Throttled, 10),
)
"""Platform error ids, most specific first: 1 bad parameter, 2 unknown data source,
3 data source not active, 4 unknown tag, 5 bad time, 6 bad value, 7 too large (HTTP 413
when the body is), 8 internal, 9 no valid token (HTTP 401; see ``open_ingest``), 10 too
many bad tokens from this address (HTTP 429, with ``Retry-After``)."""
SMT_INTERNAL = 8

STATUS: tuple[tuple[type[MeterhubError], int], ...] = (
    (TooLarge, 413),
    (InvalidInput, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (SourceInactive, 409),
    (Throttled, 429),
)
PLATFORM_STATUSES = frozenset({401, 429})
"""Statuses the platform calls answer with as such; other errors are HTTP 200 there."""
SCHEDULER_PREFIX = "/api/v1/scheduler/"


class BodyTooLarge(HTTPException):
    """A request body over ``max_body_bytes``, found while it arrives (``api.limits``). An
    ``HTTPException``, so that FastAPI's body parsing lets it through unchanged."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"over {limit} bytes")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MeterhubError, _domain_error)  # type: ignore[arg-type]
    app.add_exception_handler(BodyTooLarge, _body_too_large)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _request_invalid)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


def _is_platform(request: Request) -> bool:
    return request.url.path.lstrip("/").startswith("smt/")


def _smt(
    error_id: int, message: str, status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"id": error_id, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _domain_error(request: Request, exc: MeterhubError) -> JSONResponse:
    if isinstance(exc, BadToken):
        exc = await _counted(request, exc)
    status = next(code for kind, code in STATUS if isinstance(exc, kind))
    headers = _headers(exc, status)
    if _is_platform(request):
        error_id = next(i for kind, i in SMT_ERROR_IDS if isinstance(exc, kind))
        return _smt(error_id, str(exc), status if status in PLATFORM_STATUSES else 200, headers)
    if request.url.path.startswith(SCHEDULER_PREFIX):
        return _meta(status, str(exc), headers)
    if isinstance(exc, InvalidInput):
        return invalid_response(exc.errors, status)
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


async def _counted(request: Request, exc: BadToken) -> MeterhubError:
    """``exc``, or ``Throttled`` once the caller's address has sent too many bad tokens."""
    wait = await bad_token_wait(request)
    if wait is None:
        return exc
    return Throttled(f"too many bad tokens from this address: try again in {wait} s", wait)


def _headers(exc: MeterhubError, status: int) -> dict[str, str] | None:
    if isinstance(exc, Throttled):
        return {"Retry-After": str(exc.retry_after)}
    return {"WWW-Authenticate": "Token"} if status == 401 else None


async def _body_too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
    return too_large_response(request.url.path, exc.detail)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own refusals (an unknown path, a method not allowed, a body that is not
    JSON at all) in the surface's envelope; a 400 names the body."""
    if request.url.path.startswith(SCHEDULER_PREFIX):
        return _meta(exc.status_code, exc.detail, dict(exc.headers or {}))
    if exc.status_code == 400:
        return invalid_response({"body": [exc.detail]})
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def too_large_response(path: str, message: str) -> JSONResponse:
    """413 for a body over the limit, in the envelope of the surface ``path`` belongs to."""
    if path.lstrip("/").startswith("smt/"):
        return _smt(7, f"body: {message}", 413)
    if path.startswith(SCHEDULER_PREFIX):
        return _meta(413, f"body: {message}")
    return invalid_response({"body": [message]}, 413)


def _meta(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"meta": {"code": status, "message": message}, "data": None}
    return JSONResponse(body, status_code=status, headers=headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    if _is_platform(request):
        return _smt(SMT_INTERNAL, "internal error", status=500)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def invalid_response(errors: dict[str, list[str]], status: int = 400) -> JSONResponse:
    fields = ", ".join(errors)
    body = {"detail": f"invalid input: {fields}", "errors": errors}
    return JSONResponse(body, status_code=status)


def field_errors(exc: RequestValidationError) -> dict[str, list[str]]:
    """The messages of a request's validation errors, by field name."""
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        errors.setdefault(_field_name(error), []).append(_message(error))
    return errors


async def _request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = field_errors(exc)
    if request.url.path.startswith(SCHEDULER_PREFIX):
        return _meta(400, "; ".join(f"{f}: {', '.join(m)}" for f, m in errors.items()))
    return invalid_response(errors)


def _field_name(error: dict[str, Any]) -> str:
    loc: Sequence[str | int] = error.get("loc", ())
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path") else []
    if error.get("type") == "json_invalid" or not parts:
        return "body"
    name = ""
    for part in parts:  # tiers.0.price reads tiers[0].price, as domain errors name it
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name


def _message(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        return f"malformed JSON: {error.get('ctx', {}).get('error', 'cannot be parsed')}"
    if error.get("type") == "missing":
        return "this field is required"
    return str(error.get("msg", "invalid value"))
