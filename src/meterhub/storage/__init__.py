"""The time-series store: one points table for every tag, whatever wrote it."""

from meterhub.storage.history import History, HistoryQuery, read_history
from meterhub.storage.interpolate import Estimate, Method, interpolate, value_at
from meterhub.storage.points import (
    Point,
    Quality,
    TimeRange,
    aligned_rows,
    delete_points,
    latest,
    points_between,
    write_points,
)

__all__ = [
    "Estimate",
    "History",
    "HistoryQuery",
    "Method",
    "Point",
    "Quality",
    "TimeRange",
    "aligned_rows",
    "delete_points",
    "interpolate",
    "latest",
    "points_between",
    "read_history",
    "value_at",
    "write_points",
]
