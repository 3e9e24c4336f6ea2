"""Consumption per local day of a cumulative register: its rise from one local midnight to
the next, in the zone the days are counted in.

Register values at midnights come from the history grid query (``read_history`` with a
one-day ``step``). Local midnights are 24 h apart except across a DST change, so they are
read as runs of evenly spaced instants: one grid query per run, three for a year in a zone
with DST. Values are interpolated between readings, never extrapolated: a day is left out
when its first midnight has no value, and so is one whose last midnight has none, unless
its latest reading falls after its start (a day in progress, ``complete`` false).
A register that drops during a day (a reading flagged ``REGISTER_DECREASED``: reset,
exchange) counts on across the drop, as billing does: the day adds the size of each drop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from sqlalchemy import Connection

from meterhub.storage.history import HistoryQuery, read_history
from meterhub.storage.points import TimeRange, latest
from meterhub.storage.retention import horizon_us
from meterhub.storage.series import drops
from meterhub.times import DAY_US, from_us, to_us

MAX_DAYS = 1000
"""The most days one call reports: the latest ones of a longer period."""


@dataclass(frozen=True, slots=True)
class DayUsage:
    day: date
    start_us: int  # the local midnight the day starts at
    consumption: float
    complete: bool  # false: measured up to the latest reading, within the day


def local_midnight(day: date, zone: tzinfo) -> int:
    """µs of the start of ``day`` in ``zone``."""
    return to_us(datetime.combine(day, time(), zone), zone)


def daily_consumption(
    conn: Connection, tag_id: int, first: date, last: date, zone: tzinfo
) -> list[DayUsage]:
    """Consumption on each day from ``first`` to ``last`` (at most the last ``MAX_DAYS``, and
    none starting before the raw retention horizon)."""
    first = max(first, last - timedelta(days=MAX_DAYS - 1))
    horizon = horizon_us(conn)
    if horizon is not None:
        kept = from_us(horizon, zone).date()
        first = max(first, kept if local_midnight(kept, zone) >= horizon else kept + timedelta(1))
    if first > last:
        return []
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    midnights = [local_midnight(day, zone) for day in [*days, last + timedelta(days=1)]]
    values = values_at(conn, tag_id, midnights)
    newest = latest(conn, [tag_id]).get(tag_id)
    span = TimeRange(midnights[0] + 1, midnights[-1])
    flagged = drops(conn, [tag_id], span).get(tag_id, [])
    falls = [(ts, before - after) for ts, before, after in flagged if before - after > 0]
    usage = []
    for day, start, end in zip(days, midnights[:-1], midnights[1:], strict=True):
        if start not in values:
            continue
        fallen = sum(fall for ts, fall in falls if start < ts <= end)
        if end in values:
            rise = values[end] - values[start] + fallen
            usage.append(DayUsage(day, start, rise, complete=True))
        elif newest is not None and start < newest.ts < end:
            rise = newest.value - values[start] + fallen
            usage.append(DayUsage(day, start, rise, complete=False))
    return usage


def values_at(conn: Connection, tag_id: int, instants: Sequence[int]) -> dict[int, float]:
    """``{instant: value}`` of the ascending ``instants`` that have a value."""
    values: dict[int, float] = {}
    for run in _daily_runs(instants):
        query = HistoryQuery(start=run[0], end=run[-1], step=DAY_US)
        values.update((p.ts, p.value) for p in read_history(conn, tag_id, query).points)
    return values


def _daily_runs(instants: Sequence[int]) -> list[list[int]]:
    """``instants`` cut into runs whose neighbours are exactly one day apart."""
    runs: list[list[int]] = []
    for ts in instants:
        if runs and ts - runs[-1][-1] == DAY_US:
            runs[-1].append(ts)
        else:
            runs.append([ts])
    return runs
