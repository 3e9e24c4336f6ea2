"""An MQTT message's reading, from its payload: pure functions, no I/O.

Three forms:

- a bare number, ``12.5`` (text): read at the time it arrived;
- ``{"ts": <time>, "value": 12.5}``: one value at ``ts`` (without ``ts``, arrival);
- ``{"ts": <time>, "A": 1.2, "kW": 3.4}``: several channels of one meter (for a pattern
  holding ``{device}`` without a channel); keys that are no channel are ignored.

Values are JSON numbers or numeric strings, finite. ``ts`` is epoch seconds,
milliseconds, microseconds or nanoseconds, told apart by size (below 1e11 seconds, 1e14
milliseconds, 1e17 microseconds, nanoseconds above: each reaches the year 5138), as a
number or a numeric string; or ISO 8601, with an offset (``Z``, ``+02:00``) or naive,
which is read in the server's zone (``METERHUB_TIMEZONE``). Anything else raises
``InvalidInput`` (or its ``InvalidTime``/``InvalidValue``) naming ``payload``,
``payload.ts`` or ``payload.<key>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from datetime import tzinfo
from typing import Any, NamedTuple

from meterhub.errors import InvalidInput, InvalidTime
from meterhub.point_input import number_param, time_param
from meterhub.times import parse_iso

MAX_PAYLOAD = 64 * 1024
EXCERPT = 120
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_UNITS = ((1e11, 1_000_000), (1e14, 1_000), (1e17, 1))
"""Below each bound, an epoch number is in units of this many µs (then nanoseconds)."""


class Reading(NamedTuple):
    """A payload's values (by channel name; ``None`` keys the single value) and their time
    in µs, ``None`` for the time of arrival."""

    ts: int | None
    values: dict[str | None, float]


def single(payload: bytes, zone: tzinfo) -> Reading:
    """A bare number, or ``{"ts", "value"}``."""
    doc = _document(payload)
    if not isinstance(doc, dict):
        return Reading(None, {None: _value(doc, "payload")})
    if "value" not in doc:
        raise InvalidInput.field("payload.value", 'required: {"ts": ..., "value": ...}')
    return Reading(_time(doc, zone), {None: _value(doc["value"], "payload.value")})


def channels(payload: bytes, names: Collection[str], zone: tzinfo) -> Reading:
    """``{"ts", "<channel>": ...}``: the values of those of ``names`` it holds, at least one."""
    doc = _document(payload)
    if not isinstance(doc, dict):
        raise InvalidInput.field("payload", 'must be an object: {"ts": ..., "<channel>": ...}')
    found: dict[str | None, float] = {
        name: _value(doc[name], f"payload.{name}") for name in names if name in doc
    }
    if not found:
        raise InvalidInput.field("payload", f"holds none of the channels {', '.join(names)}")
    return Reading(_time(doc, zone), found)


def excerpt(payload: bytes) -> str:
    """The start of a payload as text, for people (undecodable bytes replaced)."""
    text = payload[:EXCERPT].decode("utf-8", "replace")
    return text + "…" if len(payload) > EXCERPT else text


def _document(payload: bytes) -> Any:
    """The payload as JSON, or as the text of a bare number."""
    if len(payload) > MAX_PAYLOAD:
        raise InvalidInput.field("payload", f"over {MAX_PAYLOAD} bytes")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidInput.field("payload", "not UTF-8 text") from None
    if _NUMBER.fullmatch(text):
        return text
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidInput.field(
            "payload", "neither a number nor JSON (an object, or a number)"
        ) from None


def _value(raw: Any, name: str) -> float:
    """A finite number, from a JSON number or a numeric string."""
    if isinstance(raw, str) and _NUMBER.fullmatch(raw.strip()):
        raw = float(raw)
    return number_param(raw, name)


def _time(doc: dict[str, Any], zone: tzinfo) -> int | None:
    if "ts" not in doc:
        return None
    raw = doc["ts"]
    if isinstance(raw, str) and _NUMBER.fullmatch(raw.strip()):
        raw = float(raw) if any(c in raw for c in ".eE") else int(raw)
    if isinstance(raw, int | float) and not isinstance(raw, bool) and abs(raw) < 1e22:
        return time_param(_epoch_us(raw), "payload.ts", zone)
    if isinstance(raw, str):
        try:
            return time_param(parse_iso(raw, zone), "payload.ts", zone)
        except (ValueError, OverflowError):
            pass
    raise InvalidTime.field(
        "payload.ts",
        f"not epoch seconds, ms, µs or ns, nor ISO 8601: {raw!r:.60}",
    )


def _epoch_us(number: float) -> int:
    for bound, scale in _UNITS:
        if abs(number) < bound:
            return round(number * scale) if isinstance(number, float) else number * scale
    return round(number / 1000) if isinstance(number, float) else number // 1000
