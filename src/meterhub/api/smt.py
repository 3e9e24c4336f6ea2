"""The platform calls connectors use: ``/smt/dataSources/connect``, ``/smt/data/set``,
``/smt/data/get``.

Every answer is HTTP 200 with ``"error": {"id": 0}``; failures answer
``{"error": {"id": N, "message": "..."}}``, N per kind of failure (see ``api.errors``).
"""

from __future__ import annotations

import math
from datetime import tzinfo
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import Connection, select

from meterhub.api.deps import ConnDep, SettingsDep
from meterhub.api.encoding import json_number
from meterhub.api.smt_wire import (
    FIRST_US,
    LAST_US,
    bool_param,
    int_param,
    number_param,
    read_params,
    time_param,
)
from meterhub.errors import InvalidInput, SourceInactive, TooLarge
from meterhub.registry.sources import active_source, source_tags
from meterhub.registry.tables import data_sources
from meterhub.registry.tags import Tag, resolve
from meterhub.storage import Point, write_points
from meterhub.storage.history import HistoryQuery, read_histories
from meterhub.times import iso

router = APIRouter(prefix="/smt", tags=["platform"])

MAX_POINTS_PER_SET = 200_000
GET_PARAMS = {"tagId", "from", "to", "maxCount", "timeStep", "value", "format", "actual"}
OK = {"error": {"id": 0}}


@router.post("/dataSources/connect", operation_id="connectDataSource")
async def connect(request: Request, conn: ConnDep) -> dict[str, Any]:
    """Connect to data source ``id``: its attributes and its tags with their metadata.

    Example: ``{"id": "plant-1"}`` →
    ``{"error": {"id": 0}, "attributes": {"smtActive": true, "smtJsonConfigString": "{}"},
    "tags": [{"id": "plant-1.flow", "attributes": {"smtTagValueTypeCode": 1, ...}}]}``.
    An unknown source is error 2, an inactive one error 3.
    """
    params = await read_params(request)
    if "id" not in params or isinstance(params["id"], dict | list | bool):
        raise InvalidInput.field("id", "the data source id is required")
    source = active_source(conn, str(params["id"]))
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


@router.post("/data/set", operation_id="setData")
async def set_data(request: Request, conn: ConnDep, settings: SettingsDep) -> dict[str, Any]:
    """Write points: ``{"data": [{"tagId": ..., "data": [{"x": ..., "y": ..., "q": 0}]}]}``.

    ``x`` is µs since the epoch or ISO 8601 (naive: the server's timezone); ``y`` a finite
    number; ``q`` an integer quality (0 good). A point at an existing (tag, x) replaces it,
    so a retried batch never counts twice. The whole call is written or nothing is.
    Answer: ``{"error": {"id": 0}, "written": N}``.
    """
    params = await read_params(request)
    if "data" not in params:
        raise InvalidInput.field("data", "required: a list of {tagId, data} records")
    records = params["data"]
    refs = [_record(record, i)["tagId"] for i, record in enumerate(records)]
    tags = resolve(conn, refs, "data.tagId")
    _check_sources_active(conn, tags)
    batch = [
        point
        for i, (tag, record) in enumerate(zip(tags, records, strict=True))
        for point in _points(tag, record["data"], f"data[{i}]", settings.zone)
    ]
    if len(batch) > MAX_POINTS_PER_SET:
        raise TooLarge.field("data", f"over {MAX_POINTS_PER_SET} points in one call")
    return {**OK, "written": write_points(conn, batch)}


def _record(record: Any, i: int) -> dict[str, Any]:
    if not isinstance(record, dict) or "tagId" not in record:
        raise InvalidInput.field(f"data[{i}]", "must be an object with tagId and data")
    if not isinstance(record.get("data"), list):
        raise InvalidInput.field(f"data[{i}].data", "must be a list of points")
    return record


def _points(tag: Tag, raw: list[Any], where: str, zone: tzinfo) -> list[Point]:
    """The points of one record; the common form (µs, a float, an in-range quality) takes a
    fast path, anything else the full checks of ``_point``."""
    found = []
    pk = tag.pk
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


def _check_sources_active(conn: Connection, tags: list[Tag]) -> None:
    """Writes go only to active tags of active sources."""
    for tag in tags:
        if not tag.active:
            raise SourceInactive(f"tag {tag.key} is not active")
    ids = {tag.source_id for tag in tags if tag.source_id is not None}
    if not ids:
        return
    query = select(data_sources.c.id).where(data_sources.c.id.in_(ids), ~data_sources.c.active)
    inactive = sorted(conn.execute(query).scalars())
    if inactive:
        raise SourceInactive(f"data source {inactive[0]} is not active")


@router.post("/data/get", operation_id="getData")
async def get_data(request: Request, conn: ConnDep, settings: SettingsDep) -> dict[str, Any]:
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
    answer = []
    tags = [(tag.pk, tag.value_type.stepwise) for tag in resolve(conn, refs)]
    for ref, history in zip(refs, read_histories(conn, tags, query), strict=True):
        data = [
            {
                "x": iso(p.ts, settings.zone) if as_iso else p.ts,
                "y": json_number(p.value),
                "q": p.quality,
            }
            for p in history.points
        ]
        answer.append({"tagId": ref, "excess": history.excess, "data": data})
    return {**OK, "data": answer}


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
