"""The one place where errors become HTTP answers, in each surface's own envelope.

- ``/smt/...``: HTTP 200 ``{"error": {"id": N, "message": "..."}}``, N per kind (below);
  an unexpected failure is HTTP 500 with id 8.
- ``/api/v1/scheduler/...``: ``{"meta": {"code": <HTTP status>, "message": "..."},
  "data": null}`` with that status;
- everything else: bad input is 400 with
  ``{"detail": "...", "errors": {"<field>": ["<message>", ...]}}``; no valid token 401,
  admin only 403, a missing (or another project's) object 404, an inactive source 409,
  an oversized request 413, each with ``{"detail": "..."}``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from meterhub.errors import (
    Forbidden,
    InvalidInput,
    InvalidTime,
    InvalidValue,
    MeterhubError,
    NotFound,
    SourceInactive,
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
)
"""Platform error ids, most specific first: 1 bad parameter, 2 unknown data source,
3 data source not active, 4 unknown tag, 5 bad time, 6 bad value, 7 too large, 8 internal,
9 no valid token (HTTP 401; see ``open_ingest``)."""
SMT_INTERNAL = 8

STATUS: tuple[tuple[type[MeterhubError], int], ...] = (
    (TooLarge, 413),
    (InvalidInput, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (SourceInactive, 409),
)
SCHEDULER_PREFIX = "/api/v1/scheduler/"


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MeterhubError, _domain_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _request_invalid)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


def _is_platform(request: Request) -> bool:
    return request.url.path.lstrip("/").startswith("smt/")


def _smt(error_id: int, message: str, status: int = 200) -> JSONResponse:
    return JSONResponse({"error": {"id": error_id, "message": message}}, status_code=status)


async def _domain_error(request: Request, exc: MeterhubError) -> JSONResponse:
    status = next(code for kind, code in STATUS if isinstance(exc, kind))
    headers = {"WWW-Authenticate": "Token"} if status == 401 else None
    if _is_platform(request):
        error_id = next(i for kind, i in SMT_ERROR_IDS if isinstance(exc, kind))
        return _smt(error_id, str(exc), 401 if status == 401 else 200)
    if request.url.path.startswith(SCHEDULER_PREFIX):
        return _meta(status, str(exc), headers)
    if isinstance(exc, InvalidInput) and status == 400:
        return invalid_response(exc.errors)
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


def _meta(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"meta": {"code": status, "message": message}, "data": None}
    return JSONResponse(body, status_code=status, headers=headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    if _is_platform(request):
        return _smt(SMT_INTERNAL, "internal error", status=500)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def invalid_response(errors: dict[str, list[str]]) -> JSONResponse:
    fields = ", ".join(errors)
    return JSONResponse({"detail": f"invalid input: {fields}", "errors": errors}, status_code=400)


async def _request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        errors.setdefault(_field_name(error), []).append(_message(error))
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
