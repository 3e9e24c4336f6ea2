"""The enterprise metering surface: ``/counter/``, ``/counter-data/``, ``/counter-archive/``.

Paths, status codes and JSON shapes follow the original service; meters registered
here are electricity devices whose id is the counter's integer id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import tzinfo
from typing import Annotated

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, BeforeValidator, Field
from sqlalchemy import Engine

from meterhub.api.deps import ConnDep, EngineDep, SettingsDep, short_read
from meterhub.api.encoding import json_number
from meterhub.collector.meter_view import latest_reading
from meterhub.errors import InvalidInput, NotFound
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import channel_tags, create_device, delete_device, get_device
from meterhub.storage import TimeRange, aligned_rows
from meterhub.times import iso, parse_iso

router = APIRouter(tags=["counters"])

MAX_ID = 2**63 - 1


def _not_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


CounterId = Annotated[int, BeforeValidator(_not_bool), Field(ge=0, le=MAX_ID)]


class CounterCreate(BaseModel):
    id: CounterId
    port: Annotated[int, BeforeValidator(_not_bool), Field(ge=9000, le=65000)]


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


@router.get("/counter-data/{counter_id}/", operation_id="getCounterData")
async def counter_data(counter_id: CounterId, request: Request) -> CounterReading:
    """The meter's latest reading: ``{"id", "A", "kW"}``."""
    engine: Engine = request.app.state.engine
    reading_ts, values = await short_read(engine, _latest_reading, engine, str(counter_id))
    if reading_ts is None:
        raise NotFound(f"meter {counter_id} has no reading yet")
    return CounterReading(
        id=counter_id, A=json_number(values.get("A")), kW=json_number(values.get("kW"))
    )


def _latest_reading(engine: Engine, device_id: str) -> tuple[int | None, dict[str, float]]:
    with engine.connect() as conn:  # read only: no ConnDep transaction
        return latest_reading(conn, device_id)


@router.get("/counter-archive/", operation_id="getCounterArchive")
def counter_archive(
    request: Request, conn: ConnDep, engine: EngineDep, settings: SettingsDep
) -> StreamingResponse:
    """Readings of ``counter_id`` oldest first, filtered by ``timestamp`` (exact) and
    ``timestamp__gte``/``__gt``/``__lte``/``__lt`` (ISO 8601, with or without offset;
    without one the server's timezone applies). Answer: ``[{"timestamp", "A", "kW"}, ...]``.
    """
    counter_id, span = archive_query(list(request.query_params.multi_items()), settings.zone)
    device = get_device(conn, str(counter_id))
    tag_ids = channel_tags(conn, device.pk)
    rows = _archive_json(engine, [tag_ids["kW"], tag_ids["A"]], span, settings)
    return StreamingResponse(rows, media_type="application/json")


def _archive_json(
    engine: Engine, tag_ids: list[int], span: TimeRange, settings: SettingsDep
) -> Iterator[str]:
    zone = settings.zone
    with engine.connect() as conn:
        yield "["
        for n, (ts, (kw, amps)) in enumerate(aligned_rows(conn, tag_ids, span)):
            row = {"timestamp": iso(ts, zone), "A": json_number(amps), "kW": json_number(kw)}
            yield ("," if n else "") + json.dumps(row)
        yield "]"


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
