"""Turning Python times and values into what the wire carries. Pure functions, no I/O.

Times (``x``, ``from``, ``to``) become either an ``int`` of microseconds since the Unix
epoch or, when they carry no timezone, a naive ISO 8601 string
``YYYY-MM-DDTHH:MM:SS[.ffffff]`` that the platform reads in its own timezone.
Values (``y``) become a finite ``int`` or ``float``. Anything else raises ``ValueError``
naming the offending input, so bad data is refused where it enters the client.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, TypeAlias

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
QUALITY_MIN = -(2**15)
QUALITY_MAX = 2**15 - 1
_INTEGER = re.compile(r"[+-]?\d+")


class SupportsItem(Protocol):
    """A scalar wrapper such as a numpy scalar: ``.item()`` gives the plain Python value."""

    def item(self) -> Any: ...


TimeInput: TypeAlias = datetime | date | int | str | SupportsItem
"""What a time may be given as: see :func:`encode_time`."""

ValueInput: TypeAlias = int | float | Decimal | SupportsItem
"""What a value may be given as: see :func:`encode_value`."""

WireTime: TypeAlias = int | str
WireValue: TypeAlias = int | float


def _unwrap(value: object, what: str) -> object:
    """The plain Python value behind a numpy-like scalar; other objects unchanged."""
    if isinstance(value, int | float | str | Decimal | date):
        return value
    item = getattr(value, "item", None)
    if not callable(item):
        return value
    try:
        return item()
    except Exception as exc:  # a foreign .item() may raise anything
        raise ValueError(f"bad {what} {value!r}: its .item() failed: {exc}") from exc


def datetime_to_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware ``datetime`` (exact, no float)."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def encode_time(value: object) -> WireTime:
    """The wire form of a time.

    ==========================================  =========================================
    given                                       sent
    ==========================================  =========================================
    aware ``datetime``                          ``int`` µs since the epoch
    naive ``datetime``                          ISO string without offset (platform's zone)
    ``date``                                    ISO string of its midnight (platform's zone)
    ``int``                                     as is: µs since the epoch
    numeric string (``"100"``)                  ``int`` µs
    ISO 8601 string with offset (``...Z``)      ``int`` µs
    ISO 8601 string without offset              normalised naive ISO string
    numpy scalar (``.item()``)                  whatever its ``.item()`` gives, as above
    ==========================================  =========================================

    ``bool``, floats and everything else raise ``ValueError``.
    """
    plain = _unwrap(value, "time")
    if plain is not value and _is_numpy_datetime(value) and isinstance(plain, int):
        raise ValueError(
            f"bad time {value!r}: a datetime64 finer than microseconds; "
            "convert it with .astype('datetime64[us]')"
        )
    if isinstance(plain, datetime):
        if plain.tzinfo is None or plain.utcoffset() is None:
            return _naive(plain).isoformat()
        return datetime_to_us(plain)
    if isinstance(plain, date):
        return datetime(plain.year, plain.month, plain.day).isoformat()
    if isinstance(plain, bool):
        raise ValueError(f"bad time {value!r}: a bool is not a time")
    if isinstance(plain, int):
        return _int64(int(plain), value)
    if isinstance(plain, str):
        return _encode_time_text(plain, value)
    raise ValueError(
        f"bad time {value!r}: expected a datetime, a date, int microseconds since the epoch, "
        "or an ISO 8601 string"
    )


def _naive(moment: datetime) -> datetime:
    """A plain naive ``datetime`` (drops a subclass's extras, e.g. pandas nanoseconds)."""
    return datetime(
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond,
    )


def _encode_time_text(text: str, original: object) -> WireTime:
    stripped = text.strip()
    if _INTEGER.fullmatch(stripped):
        return _int64(int(stripped), original)
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError:
        raise ValueError(
            f"bad time {original!r}: not integer microseconds nor ISO 8601 "
            "(e.g. '2018-06-26 17:16:00' or '2018-06-26T17:16:00+03:00')"
        ) from None
    return encode_time(moment)


def _int64(number: int, original: object) -> int:
    if not INT64_MIN <= number <= INT64_MAX:
        raise ValueError(f"bad time {original!r}: microseconds out of the 64-bit range")
    return number


def _is_numpy_datetime(value: object) -> bool:
    dtype = getattr(value, "dtype", None)
    return getattr(dtype, "kind", None) == "M"


def encode_value(value: object) -> WireValue:
    """The wire form of a point value: a finite ``int`` or ``float``.

    ``bool`` → ``int``; ``Decimal`` → ``int`` when integral, else ``float``; numpy
    scalars → their ``.item()``. NaN, infinities, numbers beyond the float range,
    strings and everything else raise ``ValueError``.
    """
    plain = _unwrap(value, "value")
    if isinstance(plain, bool):
        return int(plain)
    if isinstance(plain, int):
        return _finite(int(plain), value)
    if isinstance(plain, float):
        return _finite(float(plain), value)
    if isinstance(plain, Decimal):
        if not plain.is_finite():
            raise ValueError(f"bad value {value!r}: not a finite number")
        if plain == plain.to_integral_value():
            return _finite(int(plain), value)
        return _finite(float(plain), value)
    raise ValueError(
        f"bad value {value!r}: expected an int, float, bool, Decimal or numpy scalar, "
        f"not {type(value).__name__}"
    )


def _finite(number: WireValue, original: object) -> WireValue:
    try:
        finite = math.isfinite(number)
    except OverflowError:
        finite = False
    if not finite:
        raise ValueError(f"bad value {original!r}: not a finite number")
    return number


def encode_quality(value: object) -> int:
    """The wire form of a quality code: an ``int`` in -32768..32767 (0 means good)."""
    plain = _unwrap(value, "quality")
    if isinstance(plain, bool) or not isinstance(plain, int):
        raise ValueError(f"bad quality {value!r}: expected an int")
    if not QUALITY_MIN <= plain <= QUALITY_MAX:
        raise ValueError(f"bad quality {value!r}: outside {QUALITY_MIN}..{QUALITY_MAX}")
    return int(plain)


def encode_point(x: object, y: object, q: object = 0) -> dict[str, Any]:
    """One wire point ``{"x": ..., "y": ..., "q": ...}``; raises ``ValueError`` if any is bad."""
    return {"x": encode_time(x), "y": encode_value(y), "q": encode_quality(q)}


def encode_duration(value: object, what: str) -> int:
    """A positive number of microseconds from an ``int`` or a ``timedelta``."""
    plain = _unwrap(value, what)
    if isinstance(plain, timedelta):
        plain = plain // timedelta(microseconds=1)
    if isinstance(plain, bool) or not isinstance(plain, int) or plain <= 0:
        raise ValueError(f"bad {what} {value!r}: expected a positive int (µs) or a timedelta")
    return int(plain)
