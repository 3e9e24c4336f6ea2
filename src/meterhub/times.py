"""Time as integer microseconds since the Unix epoch, and its ISO 8601 forms."""

from __future__ import annotations

import time
from datetime import UTC, datetime, tzinfo

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR_US = 3_600_000_000
DAY_US = 86_400_000_000


def now_us() -> int:
    return time.time_ns() // 1000


def to_us(moment: datetime, zone: tzinfo) -> int:
    """Microseconds of ``moment``; a naive ``moment`` is read in ``zone``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int, zone: tzinfo) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, zone).replace(microsecond=us % 1_000_000)


def iso(us: int, zone: tzinfo) -> str:
    """ISO 8601 with offset, e.g. ``2026-11-21T05:10:32.123456+00:00``."""
    return from_us(us, zone).isoformat()


def parse_iso(text: str, zone: tzinfo) -> int:
    """Microseconds of an ISO 8601 date or date-time; naive values are read in ``zone``.

    Accepts ``2026-11-21``, ``2026-11-21 05:10``, ``2026-11-21T05:10:32.5Z``, ``...+03:00``.
    Raises ``ValueError`` for anything else.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty time")
    return to_us(datetime.fromisoformat(text), zone)
