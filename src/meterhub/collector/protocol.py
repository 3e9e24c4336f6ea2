"""The meter protocol as pure functions: an HTTP answer in, channel values (or an error) out."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from meterhub.errors import MeterAnswerInvalid
from meterhub.registry.channels import Channel, ChannelKind
from meterhub.storage import Quality

Reading = dict[str, float]


def parse_answer(status: int, body: bytes, device_id: str, channels: Sequence[Channel]) -> Reading:
    """Values of ``channels`` in a meter's answer ``{"id": ..., "<channel>": ...}``.

    Values may be JSON numbers or numeric strings. Raises ``MeterAnswerInvalid`` naming
    what is wrong: the HTTP status, non-JSON, a wrong id, a missing or non-numeric field.
    """
    if status != 200:
        raise MeterAnswerInvalid(f"HTTP status {status}")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MeterAnswerInvalid(f"answer is not JSON: {body[:40]!r}") from None
    if not isinstance(doc, dict):
        raise MeterAnswerInvalid("answer is not a JSON object")
    if "id" not in doc:
        raise MeterAnswerInvalid("missing field 'id'")
    answered_id = _id_text(doc["id"])
    if answered_id != device_id:
        raise MeterAnswerInvalid(f"wrong id {answered_id!r}, expected {device_id!r}")
    return {channel.name: _number(doc, channel.name) for channel in channels}


def _id_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(doc: dict[str, object], name: str) -> float:
    if name not in doc:
        raise MeterAnswerInvalid(f"missing field {name!r}")
    raw = doc[name]
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise MeterAnswerInvalid(f"field {name!r} is not a number: {raw!r}")
    try:
        value = float(raw)
    except (ValueError, OverflowError):
        raise MeterAnswerInvalid(f"field {name!r} is not a number: {raw!r}") from None
    if not math.isfinite(value):
        raise MeterAnswerInvalid(f"field {name!r} is not a finite number: {raw!r}")
    return value


def register_check(
    channel: Channel, previous: float | None, value: float
) -> tuple[Quality, str | None]:
    """Quality of a new value given the channel's previous one, and a warning to report.

    A cumulative register that goes down (rollover, reset, meter exchange) is kept but
    flagged, so billing and people can see it; gauges may move freely.
    """
    if channel.kind is ChannelKind.REGISTER and previous is not None and value < previous:
        warning = f"register {channel.name} went backwards from {previous:g} to {value:g}"
        return Quality.REGISTER_DECREASED, warning
    return Quality.GOOD, None
