"""Long id lists cut into statements of bounded size (bound parameters have limits)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

BATCH = 5000
"""Ids one statement binds."""


def in_batches(items: Sequence[T], size: int = BATCH) -> Iterator[Sequence[T]]:
    for first in range(0, len(items), size):
        yield items[first : first + size]
