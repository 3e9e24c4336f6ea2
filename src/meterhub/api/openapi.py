"""The OpenAPI schema as the API really answers: each operation's error answers, in its
surface's envelope (``api.errors``), instead of FastAPI's 422 (bad input answers 400)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from meterhub.api.errors import SCHEDULER_PREFIX

_DETAIL = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string"},
        "errors": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
}
_META = {
    "type": "object",
    "required": ["meta"],
    "properties": {
        "meta": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
        },
        "data": {},
    },
}
_PLATFORM = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["id"],
            "properties": {"id": {"type": "integer"}, "message": {"type": "string"}},
        }
    },
}
_WHY = {
    "400": "Bad input; the answer names each bad field",
    "401": "No valid token",
    "403": "Needs an administrator",
    "404": "No such object, or one of a project the caller may not see",
    "409": "The data source or tag is not active",
    "413": "The request is over a size limit",
    "429": "Too many failed attempts; retry after the Retry-After header's seconds",
}


def install_openapi(app: FastAPI) -> None:
    """Serve the schema with each operation's error answers documented."""

    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            found = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            for path, operations in found.get("paths", {}).items():
                for operation in operations.values():
                    _document_errors(path, operation["responses"])
            found.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
            found.get("components", {}).get("schemas", {}).pop("ValidationError", None)
            app.openapi_schema = found
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]


def _document_errors(path: str, responses: dict[str, Any]) -> None:
    responses.pop("422", None)
    if path.startswith("/smt/"):
        responses.setdefault("401", _answer("No valid token (error id 9)", _PLATFORM))
        responses.setdefault("413", _answer("Body over the size limit (error id 7)", _PLATFORM))
        responses.setdefault("429", _answer("Too many bad tokens (error id 10)", _PLATFORM))
        responses.setdefault("500", _answer("Internal error (error id 8)", _PLATFORM))
        return
    envelope = _META if path.startswith(SCHEDULER_PREFIX) else _DETAIL
    for status, why in _WHY.items():
        responses.setdefault(status, _answer(why, envelope))


def _answer(description: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": body}}}
