"""Decoding the platform calls' parameters from every form clients send them in.

Parameters may come as a JSON body (``{"id": ...}``, ``{"data": [...]}``,
``{"params": {...}}``), as plain query fields (``?tagId=a&from=100``), or as the
original connector client sends them: query values holding Python literals
(``data={'tagId': 'a', 'data': [...]}``, ``params={'tagId': 'a', 'actual': True}``).
Literals are read with ``json.loads`` then ``ast.literal_eval`` (never ``eval``),
under a size cap.
"""

from __future__ import annotations

import ast
import json
import sys
from typing import Annotated, Any

import msgspec
from starlette.datastructures import QueryParams
from starlette.requests import Request

from meterhub.errors import InvalidInput, TooLarge
from meterhub.point_input import FIRST_US, LAST_US

MAX_LITERAL_CHARS = 1024 * 1024


async def read_params(request: Request) -> dict[str, Any]:
    """Every parameter of a call, merged: query first, then the JSON body over it."""
    return params_of(request.query_params, await read_body(request))


def params_of(query: QueryParams, body: bytes | None) -> dict[str, Any]:
    """The parameters of a call from its query and its body (``None``: over the size cap)."""
    params: dict[str, Any] = {}
    records: list[Any] = []
    for key, value in query.multi_items():
        if key == "data":
            records.extend(_as_list(parse_literal(value, "data")))
        elif key == "params":
            params.update(_as_dict(parse_literal(value, "params"), "params"))
        else:
            _add(params, key, _plain(value))
    body_params = _as_dict(_json_body(body), "body")
    params.update(_as_dict(body_params.pop("params", {}), "params"))
    records.extend(_as_list(body_params.pop("data", [])))
    params.update(body_params)
    if records or "data" in query:
        params["data"] = records
    return params


async def read_body(request: Request) -> bytes | None:
    """The body, or ``None`` once it is over the app's ``max_body_bytes`` (by its declared
    length or as it arrives: the rest is not read). The app's ``BodyLimit`` refuses such a
    body first; this holds for the router served alone."""
    limit: int = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


class WirePoint(msgspec.Struct, gc=False):
    """A point in the common form: µs within the years 1-9999, a finite number, a quality."""

    x: Annotated[int, msgspec.Meta(ge=FIRST_US, le=LAST_US)]
    y: Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]
    q: Annotated[int, msgspec.Meta(ge=-32768, le=32767)] = 0


class WirePair(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    tagName: str  # noqa: N815 - the wire name
    parentObjectId: str  # noqa: N815 - the wire name


class WireRecord(msgspec.Struct, gc=False):
    tagId: str | WirePair  # noqa: N815 - the wire name
    data: list[WirePoint]


class _SetBody(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    data: list[WireRecord]


_SET_BODY = msgspec.json.Decoder(_SetBody)


def common_records(body: bytes | None) -> list[WireRecord] | None:
    """The records of a ``/smt/data/set`` body in the form connectors send, decoded and
    checked in C (msgspec): ``{"data": [{"tagId", "data": [{"x", "y", "q"}]}]}`` with
    every point as ``WirePoint`` describes it. ``None`` for any other body, which then goes
    through ``params_of`` and the full checks of each point, which name what is wrong."""
    if not body:
        return None
    try:
        records = _SET_BODY.decode(body).data
    except msgspec.DecodeError:  # malformed, or valid but not in the common form
        return None
    return records or None


def record_keys(records: list[WireRecord]) -> list[str] | None:
    """The tag key of each record, when each is a valid one (``registry.tags.tag_key``'s
    rules, checked inline); ``None`` otherwise, for the full checks to name the bad one."""
    keys = []
    for record in records:
        ref = record.tagId
        if isinstance(ref, WirePair):
            if not (ref.tagName and ref.parentObjectId):
                return None
            ref = f"{ref.parentObjectId}.{ref.tagName}"
        if not 0 < len(ref) <= 255 or "/" in ref or ref.strip() != ref:
            return None
        keys.append(ref)
    return keys


def parse_literal(text: str, name: str) -> Any:
    """A JSON or Python literal; ``InvalidInput`` naming ``name`` when it is neither."""
    if len(text) > MAX_LITERAL_CHARS:
        raise TooLarge.field(name, f"over {MAX_LITERAL_CHARS} characters")
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        hint = " (a Python type such as <class 'int'> is not a value)" if "<class " in text else ""
        raise InvalidInput.field(name, f"not a JSON or Python literal{hint}: {text:.80}") from None


def _plain(value: str) -> Any:
    """A plain query value; lists and objects may be written as literals."""
    return parse_literal(value, "query") if value[:1] in ("[", "{") else value


def _add(params: dict[str, Any], key: str, value: Any) -> None:
    if key in params:
        previous = params[key] if isinstance(params[key], list) else [params[key]]
        params[key] = [*previous, value]
    else:
        params[key] = value


def _json_body(body: bytes | None) -> Any:
    if body is None:
        raise TooLarge.field("body", "over the largest body accepted (max_body_bytes)")
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidInput.field("body", "malformed JSON") from None


def _as_dict(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput.field(name, "must be an object")
    return dict(value)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def int_param(value: Any, name: str, *, minimum: int = 1) -> int:
    """An integer >= ``minimum``; numeric strings (from the query) are accepted."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
        return value
    raise InvalidInput.field(name, f"must be an integer >= {minimum}, got {value!r:.60}")


def bool_param(value: Any, name: str) -> bool:
    """``true``/``false`` as JSON, Python literal or query text (``1``/``0`` too)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise InvalidInput.field(name, f"must be true or false, got {value!r:.60}")
