"""The enterprise metering surface: ``/counter/``, ``/counter-data/``, ``/counter-archive/``.

Paths, status codes and JSON shapes follow the original service; meters registered
here are electricity devices whose id is the counter's integer id.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine, Iterator
from datetime import tzinfo
from typing import Annotated, Any

import fastapi.routing
from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, BeforeValidator, Field, TypeAdapter, ValidationError
from sqlalchemy import Engine

from meterhub.api.deps import (
    ConnDep,
    EngineDep,
    SettingsDep,
    ingest_access,
    required_token,
    short_reads,
)
from meterhub.api.encoding import json_number
from meterhub.collector.meter_view import METER_LATEST, latest_reading
from meterhub.db import snapshot
from meterhub.errors import InvalidInput, NotFound
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import channel_tags, create_device, delete_device, get_device
from meterhub.registry.users import check_owner, parse_token
from meterhub.short_reads import Statement, text
from meterhub.storage import TimeRange, aligned_rows
from meterhub.storage.points import latest_join
from meterhub.storage.retention import require_kept
from meterhub.times import iso, parse_iso

router = APIRouter(tags=["counters"])

MAX_ID = 2**63 - 1


def _not_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


CounterId = Annotated[int, Field(ge=0, le=MAX_ID), BeforeValidator(_not_bool)]


class CounterCreate(BaseModel):
    id: CounterId
    port: Annotated[int, Field(ge=9000, le=65000), BeforeValidator(_not_bool)]


class CounterPublic(BaseModel):
    id: int
    port: int


class CounterReading(BaseModel):
    id: int
    A: float | int | None
    kW: float | int | None  # noqa: N815 - the wire name


@router.post("/counter/", status_code=201, operation_id="createCounter")
def create_counter(body: CounterCreate, conn: ConnDep, settings: SettingsDep) -> CounterPublic:
    """Register a meter polled at ``meter_host:port``; its id and port must be free."""
    try:
        create_device(
            conn, str(body.id), DeviceType.ELECTRICITY, host=settings.meter_host, port=body.port
        )
    except InvalidInput as exc:
        raise InvalidInput({_COUNTER_FIELDS.get(f, f): m for f, m in exc.errors.items()}) from None
    return CounterPublic(id=body.id, port=body.port)


_COUNTER_FIELDS = {"device_id": "id"}


@router.delete(
    "/counter/{counter_id}/", status_code=204, response_class=Response, operation_id="deleteCounter"
)
def delete_counter(counter_id: CounterId, conn: ConnDep) -> None:
    """Remove a meter: polling stops; its stored readings are kept."""
    delete_device(conn, str(counter_id))


COUNTER_DATA_SQL = (
    "SELECT u.id, d.id, t.channel, l.ts, l.value FROM (SELECT 1) one"
    " LEFT JOIN tokens k ON k.digest = $1 LEFT JOIN users u ON u.id = k.user_id"
    " LEFT JOIN devices d ON d.device_id = $2 LEFT JOIN tags t ON t.device_pk = d.id"
    f" {latest_join('t.id')}"
)
COUNTER_DATA = Statement("counter_data", COUNTER_DATA_SQL, (int, int, text, int, float))
"""The owner of the token whose digest is ``$1`` (``None`` for none: unknown or revoked)
beside each row of ``METER_LATEST`` for meter ``$2``, which has at least one row here."""


async def counter_data(counter_id: CounterId, request: Request) -> Response:
    """The meter's latest reading: ``{"id", "A", "kW"}``."""
    return await _reading(request, counter_id, _caller(request))


def _caller(request: Request) -> tuple[int, str] | None:
    """The user id and the digest of the caller's token (``parse_token``), ``None`` with
    ``open_ingest``; ``Unauthorized`` for a missing or malformed token."""
    if request.app.state.settings.open_ingest:
        return None
    return parse_token(required_token(request))


async def _reading(request: Request, counter_id: int, caller: tuple[int, str] | None) -> Response:
    device_id = str(counter_id)
    reads = short_reads(request)
    if caller is None:
        rows = await reads.fetch(METER_LATEST, (device_id,))
    else:  # the caller's token, looked up in the same statement as the reading
        named, digest = caller
        found = await reads.fetch(COUNTER_DATA, (digest, device_id))
        check_owner(found[0][0], named)
        rows = [row[1:] for row in found]
    reading_ts, values = latest_reading(device_id, rows)
    if reading_ts is None:
        raise NotFound(f"meter {counter_id} has no reading yet")
    return Response(_reading_json(counter_id, values), media_type="application/json")


class CounterDataRoute(APIRoute):
    """The route of ``counter_data``, served without FastAPI's dependency solving when its
    dependencies (its own and its routers') are ``ingest_access`` alone, as in the app
    (``add_counter_data``): solving them, and validating the id through FastAPI, cost more
    than the rest of the request. The handler does what FastAPI would, in its order (see
    ``_counter_data_handler``), and the token is checked in the reading's own statement.
    With any other dependencies, FastAPI serves the route as any other (and ``counter_data``
    still checks the token, after ``ingest_access`` has)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        if _served_dependencies(self) != [ingest_access]:
            return super().get_route_handler()
        return _counter_data_handler


def _served_dependencies(route: APIRoute) -> list[Any]:
    """The dependencies ``route``'s handler is built with: an included route's are in the
    inclusion's context (FastAPI sets it while building the handler), else the route's own
    (into which older FastAPI versions copy their routers')."""
    context_var = getattr(fastapi.routing, "_effective_route_context_var", None)
    context = context_var.get() if context_var is not None else None
    if context is not None and getattr(context, "original_route", None) is route:
        return [depends.dependency for depends in context.dependencies]
    return [depends.dependency for depends in route.dependencies]


_COUNTER_ID: TypeAdapter[int] = TypeAdapter(CounterId)


async def _counter_data_handler(request: Request) -> Response:
    """``counter_data`` under ``ingest_access``, as FastAPI would serve it: a missing or
    malformed token is refused (401) before the id is read, an id that is not one is
    refused (400) only after the token has been looked up, and a well-formed token is
    then looked up with the reading."""
    caller = _caller(request)
    try:
        counter_id = _COUNTER_ID.validate_python(request.path_params["counter_id"])
    except ValidationError as exc:
        await ingest_access(request)
        errors = exc.errors(include_url=False)
        raise RequestValidationError(
            [{**error, "loc": ("path", "counter_id", *error["loc"])} for error in errors]
        ) from None
    return await _reading(request, counter_id, caller)


def add_counter_data(router: APIRouter) -> None:
    """Add ``GET /counter-data/<id>/``, under ``ingest_access``, to ``router``. The app adds it
    to its own router before including the others: the hottest route is matched first, and
    without an included router's lookups, which cost more than its own work."""
    router.add_api_route(
        "/counter-data/{counter_id}/",
        counter_data,
        methods=["GET"],
        response_model=CounterReading,
        tags=["counters"],
        operation_id="getCounterData",
        dependencies=[Depends(ingest_access)],
        route_class_override=CounterDataRoute,
    )


def _reading_json(counter_id: int, values: dict[str, float]) -> bytes:
    """``CounterReading`` as JSON, written directly (this is the hottest answer)."""
    amps, kw = _json_number(values.get("A")), _json_number(values.get("kW"))
    return f'{{"id":{counter_id},"A":{amps},"kW":{kw}}}'.encode()


def _json_number(value: float | None) -> str:
    """As ``json_number`` renders it; ``null`` for none (and a non-finite value)."""
    if value is None or not math.isfinite(value):
        return "null"
    return str(int(value)) if value.is_integer() else repr(value)


@router.get("/counter-archive/", operation_id="getCounterArchive")
def counter_archive(
    request: Request, conn: ConnDep, engine: EngineDep, settings: SettingsDep
) -> StreamingResponse:
    """Readings of ``counter_id`` oldest first, filtered by ``timestamp`` (exact) and
    ``timestamp__gte``/``__gt``/``__lte``/``__lt`` (ISO 8601, with or without offset;
    without one the server's timezone applies). Answer: ``[{"timestamp", "A", "kW"}, ...]``.
    """
    counter_id, span = archive_query(list(request.query_params.multi_items()), settings.zone)
    require_kept(conn, {"timestamp__gte": span.start, "timestamp__lte": span.end})
    device = get_device(conn, str(counter_id))
    tag_ids = channel_tags(conn, device.pk)
    rows = _archive_json(engine, [tag_ids["kW"], tag_ids["A"]], span, settings)
    return StreamingResponse(rows, media_type="application/json")


def _archive_json(
    engine: Engine, tag_ids: list[int], span: TimeRange, settings: SettingsDep
) -> Iterator[str]:
    zone = settings.zone
    with snapshot(engine) as conn:
        parts = ["["]
        for n, (ts, (kw, amps)) in enumerate(aligned_rows(conn, tag_ids, span)):
            row = {"timestamp": iso(ts, zone), "A": json_number(amps), "kW": json_number(kw)}
            parts.append(("," if n else "") + json.dumps(row))
            if len(parts) >= _ROWS_PER_PART:
                yield "".join(parts)
                parts = []
        parts.append("]")
        yield "".join(parts)


_ROWS_PER_PART = 500
"""Archive rows sent at a time: one send of ~40 KB instead of one a row."""


_BOUNDS = {"timestamp__gte", "timestamp__gt", "timestamp__lte", "timestamp__lt", "timestamp"}
_SEED_FORM = re.compile(r"^timestamp([<>])(=?)(.*)$")


def archive_query(items: list[tuple[str, str]], zone: tzinfo) -> tuple[int, TimeRange]:
    """``counter_id`` and the inclusive µs span asked for; ``InvalidInput`` names bad fields.

    Besides the ``timestamp__*`` filters, the original documentation's form
    ``timestamp<2023-08-12 15:16:03`` (and ``<=``, ``>``, ``>=``) is understood.
    """
    errors: dict[str, str] = {}
    counter_id: int | None = None
    start: int | None = None
    end: int | None = None
    for key, value in items:
        name, text = _normalise(key, value)
        if name == "counter_id":
            counter_id = _counter_id(text, errors)
        elif name in _BOUNDS:
            try:
                at = parse_iso(_restore_plus(text), zone)
            except ValueError:
                errors[name] = f"not an ISO 8601 time: {text!r}"
                continue
            low, high = _bounds(name, at)
            start = low if start is None or (low is not None and low > start) else start
            end = high if end is None or (high is not None and high < end) else end
        else:
            errors[key] = "unknown filter"
    if counter_id is None and "counter_id" not in errors:
        errors["counter_id"] = "this field is required"
    if errors:
        raise InvalidInput(errors)
    assert counter_id is not None
    return counter_id, TimeRange(start, end)


def _normalise(key: str, value: str) -> tuple[str, str]:
    match = _SEED_FORM.match(key)
    if not match:
        return key, value
    op, eq, rest = match.groups()
    suffix = {"<": "__lt", ">": "__gt"}[op] + ("e" if eq or value else "")
    return "timestamp" + suffix, value or rest


def _bounds(name: str, at: int) -> tuple[int | None, int | None]:
    return {
        "timestamp": (at, at),
        "timestamp__gte": (at, None),
        "timestamp__gt": (at + 1, None),
        "timestamp__lte": (None, at),
        "timestamp__lt": (None, at - 1),
    }[name]


def _counter_id(text: str, errors: dict[str, str]) -> int | None:
    if not re.fullmatch(r"[0-9]{1,19}", text.strip()) or int(text) > MAX_ID:
        errors["counter_id"] = f"must be a non-negative integer, got {text!r}"
        return None
    return int(text)


def _restore_plus(text: str) -> str:
    """An unencoded ``+03:00`` offset arrives as `` 03:00``; put the plus back."""
    return re.sub(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})$", r"\1+\2", text.strip())
