"""The items of a time-of-use bill: each period's consumption, read at the period boundaries.

The bill's span is cut into stretches at its tariff's boundaries (``TouTariff.stretches``).
The register at each boundary follows the bill-end rule (``consumption.registers``): the
reading there, else the straight line between its neighbours; it is held from the nearest
reading (never extrapolated) when there is none on one side, and held at its value before a
flagged drop when the next reading is the drop. Such a boundary is *estimated*, and the items
around it say why. The bill's own ends are read exactly as flat bills read them.

Each stretch's consumption is ``consumption.usage`` of its two boundary registers and the
drops inside it; a period's item adds up its stretches. When the register only rises between
drops (every working meter), the items add up to the bill's ``end - start`` with the drops
counted as flat bills count them. A register that falls without a flagged drop bills 0 in that
stretch (rule ``register-decreased-unexplained``, for a person to look into), and the bill's
consumption is the sum of its items.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from datetime import tzinfo
from decimal import Decimal
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from meterhub.billing.consumption import (
    NO_AFTER,
    NO_BEFORE,
    REGISTER_DECREASED_UNEXPLAINED,
    REGISTER_RESET,
    REGISTER_STEP,
    Ints,
    Registers,
    usage,
)
from meterhub.billing.tariffs import CENT, cents, text
from meterhub.billing.tou import Stretch, TouTariff
from meterhub.storage.sides import Sides
from meterhub.times import iso


class Item(NamedTuple):
    """One period of a bill: the register at its first and last instant in the bill, its
    consumption over all its stretches, its price and charge (shown rounded to cents)."""

    period: str
    seq: int
    start_register: Decimal
    end_register: Decimal
    consumption: Decimal
    price: Decimal
    charge: Decimal
    estimated: bool
    note: str | None

    @classmethod
    def from_row(cls, row: Any) -> Item:
        """An item as ``bill_items`` keeps it: registers to 0.001, the charge to cents."""
        return cls(
            period=row.period,
            seq=row.seq,
            start_register=Decimal(row.start_register).quantize(REGISTER_STEP),
            end_register=Decimal(row.end_register).quantize(REGISTER_STEP),
            consumption=Decimal(row.consumption).quantize(REGISTER_STEP),
            price=Decimal(row.price),
            charge=Decimal(row.charge).quantize(CENT),
            estimated=bool(row.estimated),
            note=row.note,
        )


ItemRow = tuple[int, str, Decimal, Decimal, Decimal, str, Decimal, bool, str | None]
"""An item as a run writes it, after its bill's id: ``seq, period, start_register,
end_register, consumption, price`` (exact text), ``charge, estimated, note``. A plain tuple of
plain values, which Python's collector of cyclic garbage stops tracking at a pass (it never
does so for a named tuple): a run holds a batch's items, and tracked ones would have it walk
them all again at each full collection."""


TouBill = tuple[Decimal, Decimal, Decimal, Decimal, str | None, bool, tuple[ItemRow, ...]]
"""A priced bill: ``start, end`` (registers), ``consumption, charge, rule, estimated,
items``; a plain tuple, as ``ItemRow`` is."""


class Plan:
    """The stretches of a bill's span and their layout by period: worked out once and shared
    by every bill of that span."""

    def __init__(self, stretches: Sequence[Stretch]) -> None:
        self.instants = [stretches[0].start, *(s.end for s in stretches)]
        """The boundaries: the span's start, then each stretch's end."""
        self.period = np.array([s.period for s in stretches], np.intp)
        self.parts = {int(p): np.flatnonzero(self.period == p) for p in np.unique(self.period)}
        """The stretches of each period found, by number."""


def tou_bills(
    tariff: TouTariff,
    plan: Plan,
    ends: Registers,
    sides: Sides,
    firsts: Sequence[int],
    drops: Sequence[Sequence[tuple[int, Decimal, Decimal]]],
    zone: tzinfo,
) -> list[TouBill]:
    """Price the bills whose span ``plan`` lays out: bill ``i``'s registers at the plan's
    boundaries are ``ends`` from ``firsts[i]`` on, the readings around them ``sides`` from
    there, and ``drops[i]`` its flagged drops ``(ts, value before, value after)``. Each
    stretch's consumption and each period's total are worked out for all the bills at once
    (a bill a row), ``Decimal`` only per period of a bill."""
    width = len(plan.instants)
    at = np.asarray(firsts, np.int64)[:, None] + np.arange(width)
    milli, how = ends.milli[at], ends.held[at]
    held = how.astype(bool)
    used = np.diff(milli, axis=1)
    counted = np.zeros(used.shape, bool)
    rules: dict[int, set[str | None]] = {}
    for i in (i for i, inside in enumerate(drops) if inside):
        rules[i] = _across_drops(plan, Registers(milli[i], how[i]), drops[i], used[i], counted[i])
    falling = (used < 0) & ~counted
    unexplained = falling.any(axis=1).tolist()
    used[falling] = 0
    count = len(tariff.periods)
    of_period = np.zeros((width - 1, count), np.int64)
    of_period[np.arange(width - 1), plan.period] = 1
    totals = (used @ of_period).ravel().tolist()  # bill i's periods at [i * count:]
    held_in = (((held[:, :-1] | held[:, 1:]).astype(np.int64) @ of_period) > 0).ravel().tolist()
    estimated = held.any(axis=1).tolist()
    layout = [(p, ks.tolist()) for p, ks in plan.parts.items()]
    ends_at = [0, width - 1, *(k for _, ks in layout for k in (ks[0], ks[-1] + 1))]
    registers = milli[:, ends_at].ravel().tolist()  # the bill's start and end, then each item's
    periods = [(p, tariff.periods[p].name, text(tariff.periods[p].price), ks) for p, ks in layout]
    reads, bills = len(ends_at), []
    for i in range(len(firsts)):
        start, end, *item_ends = [
            Decimal(m) * REGISTER_STEP for m in registers[i * reads : (i + 1) * reads]
        ]
        row_totals = totals[i * count : (i + 1) * count]
        consumption = [Decimal(total) * REGISTER_STEP for total in row_totals]
        amounts, _, charge = tariff.amounts(consumption)
        notes = None
        if estimated[i]:
            around = sides.take(slice(firsts[i], firsts[i] + width))
            notes = _notes(Registers(milli[i], how[i]), around, plan.instants, zone)
        items = tuple(
            [
                (
                    p,
                    name,
                    item_ends[2 * n],
                    item_ends[2 * n + 1],
                    consumption[p],
                    price,
                    cents(amounts[p]),
                    held_in[i * count + p],
                    _said(notes, ks) if notes else None,
                )
                for n, (p, name, price, ks) in enumerate(periods)
            ]
        )
        found = rules.get(i, ())
        rule = None
        if unexplained[i] or REGISTER_DECREASED_UNEXPLAINED in found:
            rule = REGISTER_DECREASED_UNEXPLAINED
        elif REGISTER_RESET in found:
            rule = REGISTER_RESET
        total = Decimal(sum(row_totals)) * REGISTER_STEP
        bills.append((start, end, total, charge, rule, estimated[i], items))
    return bills


def _across_drops(
    plan: Plan,
    ends: Registers,
    drops: Sequence[tuple[int, Decimal, Decimal]],
    used: Ints,
    counted: npt.NDArray[np.bool_],
) -> set[str | None]:
    """Count each stretch holding drops (``(start, end]``) as ``consumption.usage`` across
    them, in ``used`` and marked in ``counted`` (one bill's row); the rules applied."""
    by_stretch: dict[int, list[tuple[Decimal, Decimal]]] = {}
    for ts, before, after in drops:
        by_stretch.setdefault(bisect_left(plan.instants, ts) - 1, []).append((before, after))
    rules: set[str | None] = set()
    for k, inside in by_stretch.items():
        found = usage(ends.end(k), ends.end(k + 1), inside)
        used[k], counted[k] = int(found.consumption.scaleb(3)), True
        rules.add(found.rule)
    return rules


def _said(notes: dict[int, str], stretches: list[int]) -> str | None:
    """The notes of the boundaries of these stretches, each said once, in time order."""
    return (
        "; ".join(dict.fromkeys(notes[j] for k in stretches for j in (k, k + 1) if j in notes))
        or None
    )


def _notes(ends: Registers, sides: Sides, instants: Sequence[int], zone: tzinfo) -> dict[int, str]:
    """Why each estimated boundary (by number) is estimated."""
    notes = {}
    for k in np.flatnonzero(ends.held).tolist():
        when, how = iso(instants[k], zone), int(ends.held[k])
        held_from = iso(int((sides.before if how == NO_AFTER else sides.after).ts[k]), zone)
        if how == NO_BEFORE:
            notes[k] = f"no reading before {when}: held from the next, at {held_from}"
        elif how == NO_AFTER:
            notes[k] = f"no reading after {when}: held from the last, at {held_from}"
        else:
            notes[k] = f"register dropped at {held_from}: held at {when} from before the drop"
    return notes
