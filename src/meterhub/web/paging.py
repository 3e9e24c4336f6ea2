"""Numbered pages of a long table, with links that keep the page's other query fields."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from starlette.datastructures import URL

T = TypeVar("T")

PAGE_SIZES = (25, 50, 100, 200)


@dataclass(frozen=True, slots=True)
class Pager:
    """Page ``number`` (from 1) of ``total`` rows, ``size`` per page, seen from ``url``."""

    url: URL
    number: int
    size: int
    total: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def first_row(self) -> int:
        return min(self.total, self.offset + 1)

    @property
    def last_row(self) -> int:
        return min(self.total, self.offset + self.size)

    def link(self, number: int) -> str | None:
        """The URL of page ``number``, or ``None`` when there is no such page."""
        if not 1 <= number <= self.pages:
            return None
        url = self.url.include_query_params(page=number, size=self.size)
        return f"{url.path}?{url.query}"


def pager(url: URL, page: int, size: int, total: int) -> Pager:
    """A ``Pager``, with ``page`` and ``size`` brought into range."""
    size = size if size in PAGE_SIZES else PAGE_SIZES[0]
    probe = Pager(url, 1, size, total)
    return Pager(url, min(max(1, page), probe.pages), size, total)


def paged(
    url: URL, page: int, size: int, fetch: Callable[[int, int], tuple[int, list[T]]]
) -> tuple[Pager, list[T]]:
    """One page of rows through ``fetch(offset, limit) -> (total, rows)``; a page past the
    end shows the last one."""
    asked = pager(url, page, size, sys.maxsize)
    total, rows = fetch(asked.offset, asked.size)
    shown = pager(url, page, size, total)
    if shown.number != asked.number:
        total, rows = fetch(shown.offset, shown.size)
    return shown, rows
