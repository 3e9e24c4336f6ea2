"""One meter: its open alerts, its facts and current values, and charts of its channels'
history, its daily consumption and its poll health, fed by JSON endpoints that the page
polls by itself (feeds: their errors, a lost session too, answer JSON; see ``web.routing``).

Times are shown in the zone of the meter's project (when it is in a house), else the
server's. ``from`` and ``to`` take µs since the epoch or ISO 8601 (naive: in that zone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import Connection

from meterhub.alerts.history import AlertFilter, AlertRecord, AlertState, page_alerts
from meterhub.api.deps import ReadConnDep, SettingsDep
from meterhub.api.meters import check_meter
from meterhub.collector.meter_view import meter_view
from meterhub.collector.poll_log import bucket_width, poll_history, recent_failures
from meterhub.errors import InvalidInput
from meterhub.point_input import time_param
from meterhub.registry.channels import Channel, ChannelKind
from meterhub.registry.devices import Device, channel_tags, get_device
from meterhub.registry.meter_models import find_model
from meterhub.registry.projects import HousePlace, house_places
from meterhub.registry.register_maps import MeterModel, device_channels
from meterhub.settings import Settings
from meterhub.storage import History, HistoryQuery, read_history
from meterhub.storage.daily import daily_consumption
from meterhub.storage.retention import horizon_us
from meterhub.times import DAY_US, from_us, now_us
from meterhub.web.meters import readings
from meterhub.web.routing import json_feed, page_router
from meterhub.web.session import ViewerDep
from meterhub.web.templating import render

router = page_router()

RANGES = {
    "hour": ("Last hour", 3_600),
    "day": ("Last day", 86_400),
    "week": ("Last week", 7 * 86_400),
    "month": ("Last 30 days", 30 * 86_400),
}
"""Preset ranges: the last so many seconds, sliding with the clock."""
DEFAULT_RANGE = "day"
SERIES_POINTS = 1000
HEALTH_BUCKETS = 120
FAILURES_SHOWN = 20
ALERTS_SHOWN = 100
LOCAL_MINUTE = "%Y-%m-%dT%H:%M"
"""The value format of ``<input type="datetime-local">``."""

FromParam = Annotated[str | None, Query(alias="from", max_length=64)]
ToParam = Annotated[str | None, Query(alias="to", max_length=64)]
YEARS = range(2, 9999)
"""Years a period may reach in the meter's zone (its days still have a day on each side)."""


@dataclass(frozen=True, slots=True)
class Meter:
    """A meter the viewer may see, where it is, and the zone its times are shown in."""

    device: Device
    place: HousePlace | None
    zone: ZoneInfo
    model: MeterModel | None = None
    """A Modbus meter's model (``None``: an HTTP meter, or a model since deleted)."""

    @property
    def channels(self) -> tuple[Channel, ...]:
        """Every channel of the meter: its model's (extra ones too), or its type's."""
        return device_channels(self.device.type, self.model)

    @property
    def register(self) -> Channel:
        return next(c for c in self.channels if c.kind is ChannelKind.REGISTER)


def visible_meter(
    device_id: str, viewer: ViewerDep, conn: ReadConnDep, settings: SettingsDep
) -> Meter:
    """The meter of the path; 404 alike for an unknown one and another project's."""
    check_meter(conn, viewer.user, device_id)
    device = get_device(conn, device_id)
    place = house_places(conn, [device.house_id]).get(device.house_id) if device.house_id else None
    model = find_model(conn, device.wiring.model) if device.wiring.model else None
    return Meter(device, place, place.project.zone if place else settings.zone, model)


MeterDep = Annotated[Meter, Depends(visible_meter)]


@dataclass(frozen=True, slots=True)
class Span:
    """A period in µs, ``start`` before ``end``."""

    start: int
    end: int


def span(start: str | None, end: str | None, zone: ZoneInfo) -> Span:
    """``from``/``to`` read in ``zone``: ``to`` defaults to now, ``from`` to a day before it."""
    end_us = now_us() if end is None else _instant(end, "to", zone)
    start_us = end_us - DAY_US if start is None else _instant(start, "from", zone)
    if start_us >= end_us:
        raise InvalidInput.field("from", "must be before to")
    return Span(start_us, end_us)


def _instant(text: str, name: str, zone: ZoneInfo) -> int:
    """µs of ``text`` (µs or ISO 8601), within ``YEARS`` in ``zone``; else ``InvalidInput``."""
    us = time_param(text, name, zone)
    try:
        year = from_us(us, zone).year
    except (OverflowError, ValueError):
        year = 0
    if year not in YEARS:
        raise InvalidInput.field(name, f"must be within the years {YEARS[0]}-{YEARS[-1]}")
    return us


class Series(BaseModel):
    """A channel's readings (thinned to at most ``SERIES_POINTS``); ``t`` in epoch seconds."""

    channel: str
    unit: str
    t: list[float]
    v: list[float]
    thinned: bool


class Daily(BaseModel):
    """Consumption per local day; ``t`` is each day's first instant, in epoch seconds."""

    unit: str
    zone: str
    day: list[str]
    t: list[float]
    consumption: list[float]
    complete: list[bool]


class HealthHistory(BaseModel):
    """Polls per time bucket (``t``: bucket starts, epoch seconds; empty buckets left out)."""

    bucket_seconds: float
    t: list[float]
    polls: list[int]
    failures: list[int]
    mean_ms: list[float]
    max_ms: list[float]


@router.get("/meters/{device_id}")
def meter_page(
    request: Request,
    viewer: ViewerDep,
    meter: MeterDep,
    conn: ReadConnDep,
    preset: Annotated[str, Query(alias="range", max_length=16)] = DEFAULT_RANGE,
    start: FromParam = None,
    end: ToParam = None,
) -> Response:
    """Facts, current values and charts over a preset range or a custom ``from``-``to``."""
    custom = start is not None or end is not None
    if not custom and preset not in RANGES:
        raise InvalidInput.field("range", f"must be one of {', '.join(RANGES)}")
    period = span(start, end, meter.zone) if custom else None
    context = {
        **_live_context(conn, meter),
        "ranges": RANGES,
        "preset": None if custom else preset,
        "custom": _range_inputs(period, meter.zone),
        "config": _chart_config(request, meter, None if custom else RANGES[preset][1], period),
        "alerts": _open_alerts(conn, viewer.user.visible_projects, meter),
    }
    return render(request, "meter.html", viewer, context)


@router.get("/meters/{device_id}/live")
@json_feed
def meter_live(request: Request, viewer: ViewerDep, meter: MeterDep, conn: ReadConnDep) -> Response:
    """The facts and current values part of the page, as HTML, for the page to swap in."""
    return render(request, "_meter_live.html", viewer, _live_context(conn, meter))


@router.get("/meters/{device_id}/series")
@json_feed
def meter_series(
    meter: MeterDep,
    conn: ReadConnDep,
    channel: Annotated[str, Query(max_length=32)],
    start: FromParam = None,
    end: ToParam = None,
) -> Series:
    """A channel's readings in the period, at most ``SERIES_POINTS`` (thinned, keeping the
    first, last, lowest and highest of each stretch); stored points only, none made up, and
    none before the raw retention horizon."""
    found = next((c for c in meter.channels if c.name == channel), None)
    if found is None:
        names = ", ".join(c.name for c in meter.channels)
        raise InvalidInput.field("channel", f"a {meter.device.type} meter has {names}")
    period = span(start, end, meter.zone)
    tag_id = channel_tags(conn, meter.device.pk)[found.name]
    kept_from = max(period.start, horizon_us(conn) or period.start)
    query = HistoryQuery(kept_from, period.end, actual=True, max_count=SERIES_POINTS)
    history = read_history(conn, tag_id, query) if kept_from <= period.end else History([], False)
    return Series(
        channel=found.name,
        unit=found.unit,
        t=[p.ts / 1e6 for p in history.points],
        v=[p.value for p in history.points],
        thinned=history.excess,
    )


@router.get("/meters/{device_id}/daily")
@json_feed
def meter_daily(
    meter: MeterDep,
    conn: ReadConnDep,
    start: FromParam = None,
    end: ToParam = None,
) -> Daily:
    """The register's rise on each local day the period overlaps (in the meter's zone)."""
    period = span(start, end, meter.zone)
    tag_id = channel_tags(conn, meter.device.pk)[meter.register.name]
    first, last = (from_us(us, meter.zone).date() for us in (period.start, period.end - 1))
    days = daily_consumption(conn, tag_id, first, last, meter.zone)
    return Daily(
        unit=meter.register.unit,
        zone=meter.zone.key,
        day=[d.day.isoformat() for d in days],
        t=[d.start_us / 1e6 for d in days],
        consumption=[d.consumption for d in days],
        complete=[d.complete for d in days],
    )


@router.get("/meters/{device_id}/health")
@json_feed
def meter_health(
    meter: MeterDep,
    conn: ReadConnDep,
    start: FromParam = None,
    end: ToParam = None,
) -> HealthHistory:
    """Polls, failures and latency of the meter in ``HEALTH_BUCKETS`` buckets of the period."""
    period = span(start, end, meter.zone)
    buckets = poll_history(conn, meter.device.pk, period.start, period.end, HEALTH_BUCKETS)
    width = bucket_width(period.start, period.end, HEALTH_BUCKETS)
    return HealthHistory(
        bucket_seconds=width / 1e6,
        t=[b.start_us / 1e6 for b in buckets],
        polls=[b.polls for b in buckets],
        failures=[b.failures for b in buckets],
        mean_ms=[b.mean_ms for b in buckets],
        max_ms=[b.max_ms for b in buckets],
    )


def _open_alerts(
    conn: Connection, projects: frozenset[int] | None, meter: Meter
) -> list[AlertRecord]:
    """The meter's open alerts (of the projects the viewer sees)."""
    where = AlertFilter(projects, device_pk=meter.device.pk, state=AlertState.OPEN)
    return page_alerts(conn, where, offset=0, limit=ALERTS_SHOWN)[1]


def _range_inputs(period: Span | None, zone: ZoneInfo) -> dict[str, str]:
    """The custom range form's ``datetime-local`` values; empty for a preset range."""
    if period is None:
        return {"from": "", "to": ""}
    ends = {"from": period.start, "to": period.end}
    return {name: from_us(us, zone).strftime(LOCAL_MINUTE) for name, us in ends.items()}


def _live_context(conn: Connection, meter: Meter) -> dict[str, Any]:
    """What the live part of the page shows: facts, current values, recent failures."""
    view = meter_view(conn, meter.device.device_id)
    return {
        "meter": meter,
        "view": view,
        "readings": readings(view, meter.channels),
        "failures": recent_failures(conn, meter.device.pk, FAILURES_SHOWN),
        "meter_zone": meter.zone,
    }


def _chart_config(
    request: Request, meter: Meter, seconds: int | None, period: Span | None
) -> dict[str, Any]:
    """What ``meter.js`` needs: endpoints, channels, zone, the range to show, how often."""
    settings: Settings = request.app.state.settings
    return {
        "base": request.url_for("meter_page", device_id=meter.device.device_id).path,
        "poll_seconds": settings.poll_interval,
        "zone": meter.zone.key,
        "channels": [{"name": c.name, "unit": c.unit} for c in meter.channels],
        "register_unit": meter.register.unit,
        "seconds": seconds,
        "from": None if period is None else period.start,
        "to": None if period is None else period.end,
    }
