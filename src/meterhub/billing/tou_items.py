"""The items of a time-of-use bill: each period's consumption, read at the period boundaries.

The bill's span is cut into stretches at its tariff's boundaries (``TouTariff.stretches``).
The register at each boundary follows the bill-end rule (``consumption.register_at``): the
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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo
from decimal import Decimal
from typing import Any

from meterhub.billing.consumption import (
    REGISTER_DECREASED_UNEXPLAINED,
    REGISTER_RESET,
    REGISTER_STEP,
    RegisterEnd,
    plain,
    register_at,
    usage,
)
from meterhub.billing.tariffs import CENT, cents
from meterhub.billing.tou import Stretch, TouTariff
from meterhub.storage.series import Near
from meterhub.times import iso


@dataclass(frozen=True, slots=True)
class Item:
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


@dataclass(frozen=True, slots=True)
class TouBill:
    start: Decimal
    end: Decimal
    consumption: Decimal
    charge: Decimal
    rule: str | None
    estimated: bool
    items: list[Item]


def tou_bill(
    tariff: TouTariff,
    stretches: Sequence[Stretch],
    sides: Sequence[Near],
    drops: Sequence[tuple[int, Decimal, Decimal]],
    zone: tzinfo,
) -> TouBill:
    """Price the bill whose stretches are ``stretches``; ``sides`` are the readings around
    each boundary (the bill's start, then each stretch's end), ``drops`` the flagged drops
    ``(ts, value before, value after)`` inside the bill."""
    instants = [stretches[0].start, *(s.end for s in stretches)]
    last = len(instants) - 1
    ends = [_boundary(sides[k], ts, zone, edge=k in (0, last)) for k, ts in enumerate(instants)]
    totals = [Decimal(0)] * len(tariff.periods)
    parts: dict[int, list[int]] = {}
    rules: set[str | None] = set()
    for k, stretch in enumerate(stretches):
        inside = [(b, a) for ts, b, a in drops if stretch.start < ts <= stretch.end]
        used = usage(ends[k][0], ends[k + 1][0], inside)
        totals[stretch.period] += used.consumption
        parts.setdefault(stretch.period, []).append(k)
        rules.add(used.rule)
    amounts, _, charge = tariff.amounts(totals)
    items = [
        Item(
            period=tariff.periods[p].name,
            seq=p,
            start_register=ends[found[0]][0].value,
            end_register=ends[found[-1] + 1][0].value,
            consumption=totals[p],
            price=tariff.periods[p].price,
            charge=cents(amounts[p]),
            estimated=any(ends[k][0].estimated or ends[k + 1][0].estimated for k in found),
            note=_notes(ends, found),
        )
        for p, found in sorted(parts.items())
    ]
    return TouBill(
        start=ends[0][0].value,
        end=ends[-1][0].value,
        consumption=sum(totals, Decimal(0)),
        charge=charge,
        rule=next(
            (r for r in (REGISTER_DECREASED_UNEXPLAINED, REGISTER_RESET) if r in rules), None
        ),
        estimated=any(end.estimated for end, _ in ends),
        items=items,
    )


def _notes(ends: Sequence[tuple[RegisterEnd, str | None]], stretches: Sequence[int]) -> str | None:
    """Why the boundaries of these stretches are estimated, each said once, in time order."""
    said = dict.fromkeys(
        note for k in stretches for _, note in (ends[k], ends[k + 1]) if note is not None
    )
    return "; ".join(said) or None


def _boundary(sides: Near, ts: int, zone: tzinfo, *, edge: bool) -> tuple[RegisterEnd, str | None]:
    """The register at boundary ``ts`` (at the bill's ``edge``: read as bill ends are), and
    why it is estimated, if it is."""
    before, after = sides
    found = register_at(*(plain(before, after) if edge else sides), ts)
    assert found is not None  # the bill has readings
    if not found.estimated:
        return found, None
    when = iso(ts, zone)
    if before is None:
        assert after is not None
        return found, f"no reading before {when}: held from the next, at {iso(after.ts, zone)}"
    if after is None:
        return found, f"no reading after {when}: held from the last, at {iso(before.ts, zone)}"
    return found, f"register dropped at {iso(after.ts, zone)}: held at {when} from before the drop"
