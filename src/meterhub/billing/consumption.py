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
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from meterhub.storage.points import Quality
from meterhub.storage.sides import NO_POINT, Sides

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

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


class Registers(NamedTuple):
    """The register at each of many instants, as columns: its value in thousandths (half-up
    from the stored float's shortest repr) and how it was held (``READ`` when not)."""

    milli: Ints
    held: npt.NDArray[np.int8]

    def end(self, n: int) -> RegisterEnd:
        return RegisterEnd(Decimal(int(self.milli[n])).scaleb(-3), bool(self.held[n]))

    def take(self, which: slice) -> Registers:
        return Registers(self.milli[which], self.held[which])


READ, NO_BEFORE, NO_AFTER, BEFORE_DROP, NO_READINGS = range(5)
"""How a register was found: read (exactly or on the line between its neighbours); held
from the next reading (none before); from the last (none after); from the reading before a
flagged drop; or not at all (no reading on either side)."""


def registers(
    sides: Sides, times: Ints, *, across_drops: bool | npt.NDArray[np.bool_]
) -> Registers:
    """The register at each of ``times`` from its neighbours ``sides`` (the module rules).
    Where ``across_drops`` is false the readings' flags are not weighed: a bill's own ends
    lie between a reading and a drop on the line, and ``usage`` counts the drop."""
    before, after = sides
    has_before, has_after = before.ts != NO_POINT, after.ts != NO_POINT
    drop_after = (
        across_drops
        & has_before
        & has_after
        & (after.quality == Quality.REGISTER_DECREASED)
        & (before.ts < times)
        & (times < after.ts)
    )
    has_after &= ~drop_after
    at_before = has_before & (before.ts == times)
    at_after = has_after & (after.ts == times) & ~at_before
    line = has_before & has_after & ~at_before & ~at_after
    value = np.where(has_before & ~at_after, before.value, after.value)
    if line.any():
        share = (times[line] - before.ts[line]) / (after.ts[line] - before.ts[line])
        low = before.value[line]
        value[line] = low + (after.value[line] - low) * share
    held = np.full(len(times), READ, np.int8)
    alone = ~at_before & ~at_after & ~line
    held[alone & ~has_before & has_after] = NO_BEFORE
    held[alone & has_before & ~has_after] = NO_AFTER
    held[alone & drop_after] = BEFORE_DROP
    held[alone & ~has_before & ~has_after] = NO_READINGS
    return Registers(register_milli(value), held)


def register_milli(values: Floats) -> Ints:
    """``register_value`` of each value, in thousandths. Vectorised where the stored float
    lies clearly away from a half-thousandth; the rest (ties and near-ties, zero and
    negative values, huge values) go through ``register_value`` itself."""
    scaled = values * 1000
    whole = np.floor(scaled)
    with np.errstate(invalid="ignore"):
        clear = (
            (values > 0) & (scaled < 1e15) & (np.abs(scaled - whole - 0.5) > scaled * 1e-15 + 1e-12)
        )
    found = np.where(clear, np.floor(scaled + 0.5), 0).astype(np.int64)
    for n in np.flatnonzero(~clear).tolist():
        found[n] = int(register_value(float(values[n])).scaleb(3))
    return found


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
