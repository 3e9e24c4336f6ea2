"""The paging fields list answers share, and how they are worked out."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Paged(BaseModel):
    """``count`` items in all; ``next``/``previous``: whether those pages exist."""

    count: int
    page_size: int
    next: bool
    previous: bool


class NumberedPage(Paged):
    page: int


def paging(total: int, page: int, page_size: int) -> dict[str, Any]:
    """The paging fields of page ``page`` (from 1) of ``total`` items."""
    return {
        "count": total,
        "page": page,
        "page_size": page_size,
        "next": page * page_size < total,
        "previous": page > 1,
    }


def offset(page: int, page_size: int) -> int:
    return (page - 1) * page_size
