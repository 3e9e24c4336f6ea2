"""Tariffs: what a bill charges for the consumption of one device over one period.

A tariff is a list of tiers plus a fixed charge per bill. Each tier prices the units of the
bill's consumption between the previous tier's bound (0 for the first) and its own ``up_to``;
the last tier is unbounded, so every consumption is priced. A flat price is one unbounded tier.

Money is ``Decimal``: the tier amounts and the fixed charge are summed exactly and the total is
rounded half-up to cents once, at the end (never per tier). In JSON every decimal is a string.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from meterhub.errors import InvalidInput

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Tier:
    """Units up to ``up_to`` (cumulative per bill; ``None`` = unbounded) cost ``price`` each."""

    up_to: Decimal | None
    price: Decimal


@dataclass(frozen=True, slots=True)
class Tariff:
    """Tiers in increasing order of bound, the last unbounded, plus a fixed charge per bill.

    Every instance is valid: construction raises ``InvalidInput`` naming the bad fields.
    """

    tiers: tuple[Tier, ...]
    fixed_charge: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        errors = tier_errors(self.tiers)
        if not is_non_negative(self.fixed_charge):
            errors["fixed_charge"] = "must be a finite decimal >= 0"
        if errors:
            raise InvalidInput(errors)

    @classmethod
    def flat(cls, price: Decimal, fixed_charge: Decimal = Decimal(0)) -> Tariff:
        """One price for every unit."""
        return cls((Tier(None, price),), fixed_charge)

    @classmethod
    def tiered(
        cls, tiers: Sequence[tuple[Decimal | None, Decimal]], fixed_charge: Decimal = Decimal(0)
    ) -> Tariff:
        """Tiers given as ``(up_to, price)`` pairs, the last with ``up_to`` ``None``."""
        return cls(tuple(Tier(up_to, price) for up_to, price in tiers), fixed_charge)

    def charge(self, consumption: Decimal) -> Decimal:
        """Amount billed for ``consumption`` units, rounded half-up to cents once."""
        if not is_non_negative(consumption):
            raise ValueError(f"consumption must be a finite decimal >= 0, not {consumption}")
        return cents(self.fixed_charge + tiered_amount(self.tiers, consumption))

    def to_json(self) -> dict[str, Any]:
        """``{"tiers": [{"up_to": "100" | None, "price": "0.55"}], "fixed_charge": "5.00"}``."""
        return {
            "tiers": [
                {"up_to": None if t.up_to is None else text(t.up_to), "price": text(t.price)}
                for t in self.tiers
            ],
            "fixed_charge": text(self.fixed_charge),
        }

    @classmethod
    def from_json(cls, data: object) -> Tariff:
        """The inverse of ``to_json``; ``fixed_charge`` may be omitted (0)."""
        if not isinstance(data, Mapping):
            raise InvalidInput.field("tariff", "must be an object")
        raw_tiers = data.get("tiers")
        if not isinstance(raw_tiers, list) or not raw_tiers:
            raise InvalidInput.field("tiers", "must be a non-empty list")
        errors: dict[str, str] = {}
        tiers = [parse_tier(raw, f"tiers[{i}]", errors) for i, raw in enumerate(raw_tiers)]
        fixed = parse_decimal(data.get("fixed_charge", "0"), "fixed_charge", errors)
        if errors:
            raise InvalidInput(errors)
        return cls(tuple(tiers), fixed)


def tiered_amount(tiers: Sequence[Tier], consumption: Decimal) -> Decimal:
    """The exact amount of ``consumption`` units over ``tiers`` (no fixed charge, unrounded)."""
    total = Decimal(0)
    lower = Decimal(0)
    for tier in tiers:
        upper = consumption if tier.up_to is None else min(consumption, tier.up_to)
        if upper <= lower:
            break
        total += (upper - lower) * tier.price
        lower = upper
    return total


def cents(amount: Decimal) -> Decimal:
    """``amount`` rounded half-up to cents."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def tier_errors(tiers: tuple[Tier, ...]) -> dict[str, str]:
    """Bad fields of ``tiers``: bounds > 0 and increasing, only the last (and it) unbounded."""
    if not tiers:
        return {"tiers": "at least one tier is required"}
    errors: dict[str, str] = {}
    last = len(tiers) - 1
    previous = Decimal(0)
    for i, tier in enumerate(tiers):
        if not is_non_negative(tier.price):
            errors[f"tiers[{i}].price"] = "must be a finite decimal >= 0"
        if tier.up_to is None:
            if i != last:
                errors[f"tiers[{i}].up_to"] = "only the last tier may be unbounded"
        elif i == last:
            errors[f"tiers[{i}].up_to"] = "the last tier must be unbounded (null)"
        elif not tier.up_to.is_finite() or tier.up_to <= previous:
            errors[f"tiers[{i}].up_to"] = f"must be a finite decimal > {previous}"
        else:
            previous = tier.up_to
    return errors


def is_non_negative(value: Decimal) -> bool:
    return value.is_finite() and value >= 0


def text(value: Decimal) -> str:
    """Fixed-point text, never exponent notation."""
    return format(value, "f")


def parse_tier(raw: object, name: str, errors: dict[str, str]) -> Tier:
    """The tier in ``raw``; a bad field is recorded in ``errors`` and parsed as 0."""
    if not isinstance(raw, Mapping):
        errors[name] = "must be an object"
        return Tier(None, Decimal(0))
    up_to = raw.get("up_to")
    bound = None if up_to is None else parse_decimal(up_to, f"{name}.up_to", errors)
    return Tier(bound, parse_decimal(raw.get("price"), f"{name}.price", errors))


def parse_decimal(raw: object, name: str, errors: dict[str, str]) -> Decimal:
    """A decimal from its JSON string (floats are refused: they are not exact); 0 if bad."""
    if isinstance(raw, str):
        try:
            return Decimal(raw)
        except InvalidOperation:
            pass
    errors[name] = "must be a decimal number as a string"
    return Decimal(0)
