"""A pushed point's time and value as callers send them, checked: shared by the ``/smt``
calls and MQTT ingest."""

from __future__ import annotations

import contextlib
import math
from datetime import UTC, datetime, tzinfo
from typing import Any

from meterhub.errors import InvalidTime, InvalidValue
from meterhub.times import parse_iso, to_us

FIRST_US = to_us(datetime(1, 1, 2, tzinfo=UTC), UTC)
LAST_US = to_us(datetime(9999, 12, 30, tzinfo=UTC), UTC)
"""Times kept a day inside datetime's range, so any timezone can render them."""


def time_param(value: Any, name: str, zone: tzinfo) -> int:
    """µs since the epoch from an integer, a numeric string or an ISO 8601 string, within
    the years 1-9999 (what ISO 8601 can render). A naive ISO time (``2018-06-26 17:16:00``)
    is read in ``zone``.
    """
    us: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        us = value
    elif isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit() and len(text) < 24:
            us = int(text)
        else:
            with contextlib.suppress(ValueError):
                us = parse_iso(text, zone)
    if us is None:
        raise InvalidTime.field(name, f"not µs since the epoch nor ISO 8601: {value!r:.60}")
    if not FIRST_US <= us <= LAST_US:
        raise InvalidTime.field(name, f"outside the years 1-9999: {value!r:.60}")
    return us


def number_param(value: Any, name: str) -> float:
    """A finite int or float (booleans and strings are not values)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            number = math.inf
        if math.isfinite(number):
            return number
    raise InvalidValue.field(name, f"must be a finite number, got {value!r:.60}")
