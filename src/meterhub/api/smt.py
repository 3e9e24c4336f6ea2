"""The platform calls connectors use: ``/smt/dataSources/connect``, ``/smt/data/set``,
``/smt/data/get``.

Every answer is HTTP 200 with ``"error": {"id": 0}``; failures answer
``{"error": {"id": N, "message": "..."}}``, N per kind of failure (see ``api.errors``).
"""

from __future__ import annotations

import itertools
import math
from datetime import tzinfo
from operator import attrgetter
from typing import Annotated, Any

import msgspec
import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection, Engine
from starlette.datastructures import QueryParams

from meterhub.api.deps import ConnDep, EngineDep, SettingsDep, connection_slot
from meterhub.api.encoding import json_number
from meterhub.api.smt_wire import (
    bool_param,
    common_records,
    int_param,
    params_of,
    read_body,
    read_params,
    record_keys,
)
from meterhub.db import snapshot
from meterhub.errors import InvalidInput, TooLarge, UnknownTag
from meterhub.point_input import FIRST_US, LAST_US, number_param, time_param
from meterhub.registry.sources import get_source, source_tags
from meterhub.registry.tags import Tag, TagRef, ValueType, active_rows, refuse_inactive, tag_key
from meterhub.settings import Settings
from meterhub.storage import Point
from meterhub.storage.history import HistoryQuery, read_histories
from meterhub.storage.ingest import check_kept, commit_points
from meterhub.storage.points import PointColumns, latest_by_keys
from meterhub.times import iso

router = APIRouter(prefix="/smt", tags=["platform"])

MAX_POINTS_PER_SET = 200_000
GET_PARAMS = {"tagId", "from", "to", "maxCount", "timeStep", "value", "format", "actual"}
OK = {"error": {"id": 0}}


@router.post("/dataSources/connect", operation_id="connectDataSource")
async def connect(request: Request, conn: ConnDep) -> dict[str, Any]:
    """Connect to data source ``id``: its attributes and its active tags with their metadata.

    Example: ``{"id": "plant-1"}`` →
    ``{"error": {"id": 0}, "attributes": {"smtActive": true, "smtJsonConfigString": "{}"},
    "tags": [{"id": "plant-1.flow", "attributes": {"smtTagValueTypeCode": 1, ...}}]}``.
    An unknown source is error 2. An inactive one answers as any other, with
    ``smtActive: false`` (connectors raise their "not active" error from it); writes and
    reads of its tags are error 3 until it is activated again.
    """
    params = await read_params(request)
    if "id" not in params or isinstance(params["id"], dict | list | bool):
        raise InvalidInput.field("id", "the data source id is required")
    source = get_source(conn, str(params["id"]))
    return {
        **OK,
        "attributes": {"smtActive": source.active, "smtJsonConfigString": source.config},
        "tags": [
            {"id": tag.ref, "attributes": tag_attributes(tag)}
            for tag in source_tags(conn, source.id)
            if tag.active
        ],
    }


def tag_attributes(tag: Tag) -> dict[str, Any]:
    return {
        **tag.attributes,
        "smtTagValueTypeCode": int(tag.value_type),
        "smtTagValueScale": tag.scale,
        "smtTagUnit": tag.unit,
    }


@router.post("/data/set", operation_id="setData", response_model=dict[str, Any])
async def set_data(
    request: Request, engine: EngineDep, settings: SettingsDep, _slot: SlotDep
) -> Response:
    """Write points: ``{"data": [{"tagId": ..., "data": [{"x": ..., "y": ..., "q": 0}]}]}``.

    ``x`` is µs since the epoch or ISO 8601 (naive: the server's timezone); ``y`` a finite
    number; ``q`` an integer quality (0 good). A point at an existing (tag, x) replaces it,
    so a retried batch never counts twice. The whole call is written or nothing is.
    Answer: ``{"error": {"id": 0}, "written": N}``.
    """
    body = await read_body(request)
    query = request.query_params
    written = await run_in_threadpool(_set_points, engine, query, body, settings)
    return Response(b'{"error":{"id":0},"written":%d}' % written, media_type="application/json")


SlotDep = Annotated[None, Depends(connection_slot, scope="function")]


def _set_points(engine: Engine, query: QueryParams, body: bytes | None, settings: Settings) -> int:
    """Decode, check and write one ``/smt/data/set`` call in a transaction of its own,
    committed before the answer (in a worker thread: the server reads the next call
    meanwhile); the number of points written."""
    with engine.connect() as conn:
        conn.begin()  # rolled back on any error, when the connection is closed
        batch, counts = _call_points(conn, query, body, settings.zone)
        check_kept(batch, counts, settings.raw_retention_days)
        return commit_points(conn, batch)


def _call_points(
    conn: Connection, query: QueryParams, body: bytes | None, zone: tzinfo
) -> tuple[PointColumns, list[int]]:
    """The points of a ``/smt/data/set`` call, checked, and how many each record holds. A
    body in the common form (``common_records``) is checked in C and taken as columns; any
    other goes through ``params_of`` and the checks of each point, which name the first bad
    field (``data[i].data[j].x``). Both refuse the same calls with the same errors."""
    records = None if query else common_records(body)
    keys = None if records is None else record_keys(records)
    if records is None or keys is None:
        checked, sizes = _checked_points(conn, params_of(query, body), zone)
        return PointColumns.of(checked), sizes
    pks = [row[1] for row in active_rows(conn, keys)]
    counts = [len(record.data) for record in records]
    if sum(counts) > MAX_POINTS_PER_SET:
        raise TooLarge.field("data", f"over {MAX_POINTS_PER_SET} points in one call")
    points = list(itertools.chain.from_iterable(record.data for record in records))
    total = len(points)
    columns = PointColumns(
        np.repeat(np.array(pks, np.int64), counts),
        np.fromiter(map(_X, points), np.int64, total),
        np.fromiter(map(_Y, points), np.float64, total),
        np.fromiter(map(_Q, points), np.int64, total),
    )
    return columns, counts


_X, _Y, _Q = attrgetter("x"), attrgetter("y"), attrgetter("q")


def _checked_points(
    conn: Connection, params: dict[str, Any], zone: tzinfo
) -> tuple[list[Point], list[int]]:
    """The points of a call in any form, each checked, and how many each record holds:
    ``InvalidInput`` and its kinds name the first bad field."""
    if "data" not in params:
        raise InvalidInput.field("data", "required: a list of {tagId, data} records")
    records = params["data"]
    refs = [_record(record, i)["tagId"] for i, record in enumerate(records)]
    keys = [tag_key(ref, "data.tagId") for ref in refs]
    pks = [row[1] for row in active_rows(conn, keys)]
    batch = [
        point
        for i, (pk, record) in enumerate(zip(pks, records, strict=True))
        for point in _points(pk, record["data"], f"data[{i}]", zone)
    ]
    if len(batch) > MAX_POINTS_PER_SET:
        raise TooLarge.field("data", f"over {MAX_POINTS_PER_SET} points in one call")
    return batch, [len(record["data"]) for record in records]


def _record(record: Any, i: int) -> dict[str, Any]:
    if not isinstance(record, dict) or "tagId" not in record:
        raise InvalidInput.field(f"data[{i}]", "must be an object with tagId and data")
    if not isinstance(record.get("data"), list):
        raise InvalidInput.field(f"data[{i}].data", "must be a list of points")
    return record


def _points(pk: int, raw: list[Any], where: str, zone: tzinfo) -> list[Point]:
    """The points of one record; the common form (µs, a float, an in-range quality) takes a
    fast path, anything else the full checks of ``_point``."""
    found = []
    for j, point in enumerate(raw):
        if (
            type(point) is dict
            and type(x := point.get("x")) is int
            and type(y := point.get("y")) is float
            and type(q := point.get("q", 0)) is int
            and FIRST_US <= x <= LAST_US
            and -32768 <= q <= 32767
            and math.isfinite(y)
        ):
            found.append(Point(pk, x, y, q))
        else:
            found.append(_point(pk, point, f"{where}.data[{j}]", zone))
    return found


def _point(tag_id: int, point: Any, name: str, zone: tzinfo) -> Point:
    """One point, or ``InvalidInput`` naming the field ``name`` (``data[i].data[j]``)."""
    if not isinstance(point, dict) or "x" not in point or "y" not in point:
        raise InvalidInput.field(name, "must be an object with x and y")
    quality = point.get("q", 0)
    if type(quality) is not int or not -32768 <= quality <= 32767:
        raise InvalidInput.field(
            f"{name}.q", f"must be an integer in -32768..32767, got {quality!r:.40}"
        )
    ts = time_param(point["x"], f"{name}.x", zone)
    return Point(tag_id, ts, number_param(point["y"], f"{name}.y"), quality)


@router.post("/data/get", operation_id="getData", response_model=dict[str, Any])
async def get_data(
    request: Request, engine: EngineDep, settings: SettingsDep, _slot: SlotDep
) -> Response:
    """Read history: ``{"params": {"tagId": ..., "from": ..., "to": ..., ...}}``.

    - no ``from``/``to``: the latest value of each tag;
    - ``from``/``to`` (µs, numeric string, ISO 8601 with offset, or naive local time):
      stored points in the period plus values interpolated at the two bounds;
    - ``actual: true``: stored points only;
    - ``timeStep`` (µs): values on the grid from ``from`` to ``to``, linear for numeric
      tags, stepwise for boolean and discrete ones;
    - ``maxCount``: at most that many points per tag; more stored points are thinned
      keeping each bucket's first, last, lowest and highest, and ``excess`` is true;
    - ``value``: only points with one of the given values;
    - ``format: true``: ISO 8601 times in the server's timezone instead of µs.

    Answer: ``{"error": {"id": 0}, "data": [{"tagId", "excess", "data": [{"x", "y", "q"}]}]}``.
    """
    params = await read_params(request)
    unknown = sorted(set(params) - GET_PARAMS)
    if unknown:
        raise InvalidInput(dict.fromkeys(unknown, "unknown parameter"))
    if "tagId" not in params:
        raise InvalidInput.field("tagId", "required: a tag id or a list of them")
    refs = params["tagId"] if isinstance(params["tagId"], list) else [params["tagId"]]
    query = history_query(params, settings.zone)
    as_iso = bool_param(params.get("format", False), "format")
    answer = await run_in_threadpool(_histories, engine, refs, query, as_iso, settings.zone)
    return Response(_ANSWER.encode(answer), media_type="application/json")


class _PointOut(msgspec.Struct, gc=False):
    x: int | str
    y: float | int | None
    q: int


class _HistoryOut(msgspec.Struct, gc=False):
    tagId: TagRef  # noqa: N815 - the wire name
    excess: bool
    data: list[_PointOut]


class _Answer(msgspec.Struct, gc=False):
    error: dict[str, int]
    data: list[_HistoryOut]


_ANSWER = msgspec.json.Encoder()


def _histories(
    engine: Engine, refs: list[Any], query: HistoryQuery, as_iso: bool, zone: tzinfo
) -> _Answer:
    """The answer of ``/smt/data/get``, read on a snapshot of its own (``db.snapshot``) in
    one worker thread, as a write is."""
    with snapshot(engine) as conn:
        return _answer(conn, refs, query, as_iso, zone)


def _answer(
    conn: Connection, refs: list[Any], query: HistoryQuery, as_iso: bool, zone: tzinfo
) -> _Answer:
    """The answer of ``/smt/data/get``, once every tag is known and active (error 4, 3).
    The latest values alone (no period, grid or value filter; ``read_histories``' first
    case) come from one read of the tags' latest points by their keys, without building
    each ``Tag``."""
    keys = [tag_key(ref) for ref in refs]
    if query.start is None and query.end is None and query.step is None and query.values is None:
        found = {row[0]: row for row in latest_by_keys(conn, dict.fromkeys(keys))}
        for key in keys:
            if key not in found:
                raise UnknownTag(f"no tag with id {key}")
        refuse_inactive(found[key] for key in keys)
        data = []
        for ref, key in zip(refs, keys, strict=True):
            ts, value, quality = found[key][2:5]
            if ts is None or value is None or quality is None:
                data.append(_HistoryOut(ref, False, []))
            else:
                x = iso(ts, zone) if as_iso else ts
                data.append(_HistoryOut(ref, False, [_PointOut(x, json_number(value), quality)]))
        return _Answer({"id": 0}, data)
    rows = active_rows(conn, keys, "t.id, t.value_type")
    tags = [(row[1], ValueType(row[2]).stepwise) for row in rows]
    histories = read_histories(conn, tags, query)
    return _Answer(
        {"id": 0},
        [
            _HistoryOut(
                ref,
                history.excess,
                [
                    _PointOut(iso(p.ts, zone) if as_iso else p.ts, json_number(p.value), p.quality)
                    for p in history.points
                ],
            )
            for ref, history in zip(refs, histories, strict=True)
        ],
    )


def history_query(params: dict[str, Any], zone: tzinfo) -> HistoryQuery:
    """The ``HistoryQuery`` described by the call's parameters."""
    return HistoryQuery(
        start=time_param(params["from"], "from", zone) if "from" in params else None,
        end=time_param(params["to"], "to", zone) if "to" in params else None,
        actual=bool_param(params.get("actual", False), "actual"),
        step=int_param(params["timeStep"], "timeStep") if "timeStep" in params else None,
        max_count=int_param(params["maxCount"], "maxCount") if "maxCount" in params else None,
        values=_filter_values(params["value"]) if "value" in params else None,
    )


def _filter_values(raw: Any) -> tuple[float, ...]:
    """The ``value`` filter: a number or a list of them (numeric strings from the query too)."""
    values = []
    for value in raw if isinstance(raw, list) else [raw]:
        try:
            number = float(value) if isinstance(value, str) else value
        except ValueError:
            number = value
        values.append(number_param(number, "value"))
    return tuple(values)
