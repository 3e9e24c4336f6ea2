"""How numbers and times are rendered in JSON answers."""

from __future__ import annotations


def json_number(value: float | None) -> float | int | None:
    """Integral values as integers (``50`` rather than ``50.0``), as meters send them."""
    return int(value) if value is not None and value.is_integer() else value
