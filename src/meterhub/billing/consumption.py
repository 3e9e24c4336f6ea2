"""The consumption of one device over a bill's period, read from its cumulative register.

The rules, as billed:

* **Register at a period end.** The register value at the instant ``from`` or ``to`` is the
  reading at that instant, else the straight line between the neighbouring readings, else (no
  reading on one side) the nearest reading held, which is flagged *estimated*. Nothing is
  interpolated across a drop: when the next reading is flagged ``REGISTER_DECREASED``, the
  value before the drop is held and flagged estimated.
* **Register values** are kept to 3 decimals: the stored float is read through its shortest
  ``repr`` (so ``0.1 + 0.2`` is ``0.3``, not ``0.3000000000000000444…``) and rounded half-up
  to 0.001. Consumption and money are exact ``Decimal`` arithmetic from there on.
* **Consumption** is ``end - start`` and is never negative.
* **Backwards registers** (rollover or meter exchange). Each drop inside the period (a reading
  flagged ``REGISTER_DECREASED`` with ``from < ts <= to``) is given as ``(value before the
  drop, value after the drop)``, in time order. The meter's counting continues across a drop,
  so consumption is the sum of the forward segments
  ``(before_1 - start) + (before_2 - after_1) + … + (end - after_n)``, each clamped at 0;
  the rule is ``"register-reset"``. A register that ends below its start with no drop given
  bills 0 under the rule ``"register-decreased-unexplained"``, for a person to look into.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from meterhub.storage.interpolate import Method, interpolate
from meterhub.storage.points import Point, Quality

REGISTER_RESET = "register-reset"
REGISTER_DECREASED_UNEXPLAINED = "register-decreased-unexplained"
REGISTER_STEP = Decimal("0.001")


@dataclass(frozen=True, slots=True)
class RegisterEnd:
    """The register value at one end of the period."""

    value: Decimal
    estimated: bool  # True when extrapolated (no usable reading on one side)


@dataclass(frozen=True, slots=True)
class Usage:
    """The consumption billed between two register ends, and the special rule applied if any."""

    start: RegisterEnd
    end: RegisterEnd
    consumption: Decimal
    rule: str | None


def register_value(value: float) -> Decimal:
    """A stored register float as a ``Decimal`` of its shortest repr, rounded half-up to 0.001."""
    return Decimal(repr(value)).quantize(REGISTER_STEP, rounding=ROUND_HALF_UP)


def plain(before: Point | None, after: Point | None) -> tuple[Point | None, Point | None]:
    """The readings around a bill's end as bills weigh them: times and values, no flags (a
    bill end between a reading and a drop is interpolated; the drop is counted by ``usage``)."""
    return (
        None if before is None else Point(before.tag_id, before.ts, before.value),
        None if after is None else Point(after.tag_id, after.ts, after.value),
    )


def register_at(before: Point | None, after: Point | None, ts: int) -> RegisterEnd | None:
    """The register at ``ts`` from the last reading at or before it and the first at or after
    it; ``None`` when there is neither."""
    across_drop = (
        before is not None
        and after is not None
        and after.quality == Quality.REGISTER_DECREASED
        and before.ts < ts < after.ts
    )
    estimate = interpolate(before, None if across_drop else after, ts)  # held before a drop
    if estimate is None:
        return None
    return RegisterEnd(register_value(estimate.value), estimate.method is Method.EXTRAPOLATED)


def usage(
    start: RegisterEnd, end: RegisterEnd, resets: Sequence[tuple[Decimal, Decimal]] = ()
) -> Usage:
    """Consumption from ``start`` to ``end`` across the drops ``resets`` (see the module rules)."""
    if not resets:
        if end.value < start.value:
            return Usage(start, end, Decimal(0), REGISTER_DECREASED_UNEXPLAINED)
        return Usage(start, end, end.value - start.value, None)
    lows = [start.value, *(after for _, after in resets)]
    highs = [*(before for before, _ in resets), end.value]
    consumption = sum(
        (max(high - low, Decimal(0)) for low, high in zip(lows, highs, strict=True)), Decimal(0)
    )
    return Usage(start, end, consumption, REGISTER_RESET)
