"""The value of a tag at an instant, linear between its neighbouring points."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from sqlalchemy import Connection

from meterhub.storage.points import Point
from meterhub.storage.series import neighbours


class Method(StrEnum):
    EXACT = "exact"
    INTERPOLATED = "interpolated"
    EXTRAPOLATED = "extrapolated"


class Estimate(NamedTuple):
    ts: int
    value: float
    method: Method


def interpolate(before: Point | None, after: Point | None, ts: int) -> Estimate | None:
    """Pure rule: exact hit, straight line between neighbours, else the nearest value held."""
    if before is not None and before.ts == ts:
        return Estimate(ts, before.value, Method.EXACT)
    if after is not None and after.ts == ts:
        return Estimate(ts, after.value, Method.EXACT)
    if before is not None and after is not None:
        share = (ts - before.ts) / (after.ts - before.ts)
        value = before.value + (after.value - before.value) * share
        return Estimate(ts, value, Method.INTERPOLATED)
    nearest = before or after
    return None if nearest is None else Estimate(ts, nearest.value, Method.EXTRAPOLATED)


def value_at(conn: Connection, tag_id: int, ts: int) -> Estimate | None:
    """Value of ``tag_id`` at ``ts``, or ``None`` when the tag has no points at all."""
    return interpolate(*neighbours(conn, tag_id, ts), ts)
