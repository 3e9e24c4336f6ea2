"""The one place where errors become HTTP answers.

Bad input is 400 with ``{"detail": "...", "errors": {"<field>": ["<message>", ...]}}``;
a missing object is 404 with ``{"detail": "..."}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from meterhub.errors import InvalidInput, NotFound


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(InvalidInput, _invalid_input)  # type: ignore[arg-type]
    app.add_exception_handler(NotFound, _not_found)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _request_invalid)  # type: ignore[arg-type]


def invalid_response(errors: dict[str, list[str]]) -> JSONResponse:
    fields = ", ".join(errors)
    return JSONResponse({"detail": f"invalid input: {fields}", "errors": errors}, status_code=400)


async def _invalid_input(_request: Request, exc: InvalidInput) -> JSONResponse:
    return invalid_response(exc.errors)


async def _not_found(_request: Request, exc: NotFound) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


async def _request_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        errors.setdefault(_field_name(error), []).append(_message(error))
    return invalid_response(errors)


def _field_name(error: dict[str, Any]) -> str:
    loc: Sequence[str | int] = error.get("loc", ())
    names = [str(part) for part in loc[1:]] if loc and loc[0] in ("body", "query", "path") else []
    if error.get("type") == "json_invalid" or not names:
        return "body"
    return ".".join(names)


def _message(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        return f"malformed JSON: {error.get('ctx', {}).get('error', 'cannot be parsed')}"
    if error.get("type") == "missing":
        return "this field is required"
    return str(error.get("msg", "invalid value"))
