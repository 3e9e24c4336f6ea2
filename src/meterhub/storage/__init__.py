"""The time-series store: every tag's points, recent ones as rows, older days compressed."""

from meterhub.storage.history import History, HistoryQuery, read_history
from meterhub.storage.interpolate import Estimate, Method, interpolate, value_at
from meterhub.storage.points import (
    Point,
    Quality,
    TimeRange,
    latest,
    write_points,
)
from meterhub.storage.removal import delete_points
from meterhub.storage.series import aligned_rows, points_between

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
