"""Alert rules as data: their kinds, their parameters and how both are checked (pure).

A rule watches one meter, every meter of a type in its project, or every meter of the
project. Its parameters, by kind (defaults in brackets):

- ``offline``: ``minutes`` — no reading (stored or polled) for longer than that;
- ``consumption_above``: ``limit`` (register units), ``per`` (``hour`` | ``day``
  [hour]) — the register rose by more than ``limit`` over the last full local hour or
  day; needs a meter type (or one meter);
- ``night_flow``: ``from`` ["01:00"], ``to`` ["05:00"] (local times of the project),
  ``min_flow`` [0] (units per hour) — a water meter whose register rose faster than
  ``min_flow`` in every step between two readings of the night window: a leak;
- ``register_backwards``: none — a reading flagged ``REGISTER_DECREASED`` since the
  last evaluation;
- ``missing_before_billing``: ``hours_ahead`` [24] — an enabled billing task of the
  meter's type fires within that many hours and the meter has had no reading since its
  last bill (or ever).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from meterhub.errors import InvalidInput
from meterhub.registry.channels import DeviceType

NAME_MAX = 255
MINUTES_MAX = 366 * 24 * 60
HOURS_AHEAD_MAX = 31 * 24
LOCAL_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


class RuleKind(StrEnum):
    OFFLINE = "offline"
    CONSUMPTION_ABOVE = "consumption_above"
    NIGHT_FLOW = "night_flow"
    REGISTER_BACKWARDS = "register_backwards"
    MISSING_BEFORE_BILLING = "missing_before_billing"


class Per(StrEnum):
    HOUR = "hour"
    DAY = "day"


@dataclass(frozen=True, slots=True)
class Rule:
    """A stored rule; ``params`` as ``check_params`` left them."""

    id: int
    project_id: int
    name: str
    kind: RuleKind
    device_pk: int | None
    device_id: str | None
    device_type: DeviceType | None
    params: Mapping[str, Any]
    remind_after_minutes: int | None
    enabled: bool
    watermark: int | None
    created_at: int

    @classmethod
    def from_row(cls, row: Any) -> Rule:
        """A rule from a row of ``rule_store.RULES``."""
        return cls(
            id=row.id,
            project_id=row.project_id,
            name=row.name,
            kind=RuleKind(row.kind),
            device_pk=row.device_pk,
            device_id=row.device_id,
            device_type=None if row.device_type is None else DeviceType(row.device_type),
            params=json.loads(row.params),
            remind_after_minutes=row.remind_after_minutes,
            enabled=row.enabled,
            watermark=row.watermark,
            created_at=row.created_at,
        )


Check = Callable[[object], object]
"""Reads one parameter's raw value; ``ValueError`` with the message for a bad one."""


def _whole(low: int, high: int) -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"must be a whole number {low}-{high}")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError(f"must be a whole number {low}-{high}") from None
        if not low <= number <= high:
            raise ValueError(f"must be a whole number {low}-{high}")
        return number

    return check


def _number(*, positive: bool) -> Callable[[object], float]:
    bound = "above 0" if positive else "0 or more"

    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"must be a number {bound}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"must be a number {bound}") from None
        if not math.isfinite(number) or number < 0 or (positive and number == 0):
            raise ValueError(f"must be a finite number {bound}")
        return number

    return check


def _local_time(value: object) -> str:
    if not isinstance(value, str) or not LOCAL_TIME.fullmatch(value.strip()):
        raise ValueError("must be a local time HH:MM")
    return value.strip()


def _per(value: object) -> str:
    if value not in tuple(Per):
        raise ValueError(f"must be one of {', '.join(Per)}")
    return str(value)


PARAMS: dict[RuleKind, dict[str, tuple[Check, object]]] = {
    RuleKind.OFFLINE: {"minutes": (_whole(1, MINUTES_MAX), None)},
    RuleKind.CONSUMPTION_ABOVE: {
        "limit": (_number(positive=True), None),
        "per": (_per, Per.HOUR.value),
    },
    RuleKind.NIGHT_FLOW: {
        "from": (_local_time, "01:00"),
        "to": (_local_time, "05:00"),
        "min_flow": (_number(positive=False), 0.0),
    },
    RuleKind.REGISTER_BACKWARDS: {},
    RuleKind.MISSING_BEFORE_BILLING: {"hours_ahead": (_whole(1, HOURS_AHEAD_MAX), 24)},
}
"""Each kind's parameters: how each is read, and its default (``None``: required)."""


def check_kind(kind: object) -> RuleKind:
    if kind not in tuple(RuleKind):
        raise InvalidInput.field("kind", f"one of {', '.join(RuleKind)}")
    return RuleKind(str(kind))


def check_params(kind: RuleKind, params: object) -> dict[str, Any]:
    """The parameters of a rule of ``kind``, defaults filled in; ``InvalidInput`` naming
    each bad one as ``params.<name>``."""
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise InvalidInput.field("params", "must be an object")
    spec = PARAMS[kind]
    errors: dict[str, str] = {
        f"params.{name}": f"not a parameter of {kind} rules" for name in params if name not in spec
    }
    checked: dict[str, Any] = {}
    for name, (check, default) in spec.items():
        raw = params.get(name)
        if raw is None or raw == "":
            if default is None:
                errors[f"params.{name}"] = "required"
            checked[name] = default
            continue
        try:
            checked[name] = check(raw)
        except ValueError as exc:
            errors[f"params.{name}"] = str(exc)
    if kind is RuleKind.NIGHT_FLOW and not errors and checked["from"] == checked["to"]:
        errors["params.to"] = "must differ from params.from"
    if errors:
        raise InvalidInput(errors)
    return checked


def check_scope(kind: RuleKind, device_type: DeviceType | None) -> DeviceType | None:
    """The meter type a rule of ``kind`` watches, given the type of its meter or the one
    asked for: a night flow rule watches water meters; a consumption limit needs a type
    (its unit)."""
    if kind is RuleKind.NIGHT_FLOW:
        if device_type not in (None, DeviceType.WATER):
            raise InvalidInput.field("device_type", "night flow rules watch water meters")
        return DeviceType.WATER
    if kind is RuleKind.CONSUMPTION_ABOVE and device_type is None:
        raise InvalidInput.field(
            "device_type", "a consumption limit needs a meter type (or one meter): its unit"
        )
    return device_type


def check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= NAME_MAX or not printable(name):
        raise InvalidInput.field("name", f"must be 1-{NAME_MAX} characters, no control ones")
    return name


def printable(text: str) -> bool:
    """No control characters (PostgreSQL text cannot even hold NUL)."""
    return not any(ord(c) < 32 or ord(c) == 127 for c in text)


def check_remind(minutes: object) -> int | None:
    """Minutes between reminders of an open, unacknowledged alert (``None``: none)."""
    if minutes is None or minutes == "":
        return None
    try:
        return _whole(1, MINUTES_MAX)(minutes)
    except ValueError as exc:
        raise InvalidInput.field("remind_after_minutes", str(exc)) from None
