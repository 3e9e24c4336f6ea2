"""The paging fields list answers share, and how they are worked out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel

MAX_PAGE = 1_000_000_000
"""The highest page number asked for (past the end, a page is empty; beyond this, 400)."""
Page = Annotated[int, Query(ge=1, le=MAX_PAGE, description="From 1.")]
PageSize = Annotated[int, Query(ge=1, le=1000, description="At most 1,000.")]


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
