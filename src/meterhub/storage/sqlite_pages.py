"""Where SQLite keeps the rows of a table, and an order of new rows that fills its pages.

A row of up to a page less 35 bytes lies whole in a leaf page, beside other rows; a longer
one keeps a part there and the rest in overflow pages filled to the brim. Rows appended to
a rowid table fill its last leaf page until one does not fit, which then starts a page of
its own: day chunks of about half a page (a minute gauge's day) appended in turn with
smaller ones (a register's) left 30-40% of their pages empty.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from sqlalchemy import Connection


def page_size(conn: Connection) -> int:
    info = conn.connection.info
    if "page_size" not in info:
        info["page_size"] = int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())
    size: int = info["page_size"]
    return size


def pages(size: int, page: int) -> float:
    """Pages a table row of ``size`` bytes takes: its share of a page it shares with rows
    like it, or its overflow pages."""
    if size > page - 35:
        return size / (page - 4)
    return 1 / ((page - 8) // leaf_bytes(size, page))


_CELL = 7
"""Bytes of a cell besides its row: the row's length and rowid (taken as 2 and 3 bytes:
rows under 16 KB, rowids under two million) and the pointer to the cell."""


def leaf_bytes(size: int, page: int) -> int:
    """Bytes a table row of ``size`` bytes takes in its leaf page: its cell, holding the part
    of the row kept there (and then the first overflow page's number)."""
    if size <= page - 35:
        return size + _CELL
    least = (page - 12) * 32 // 255 - 23
    kept = least + (size - least) % (page - 4)
    return (kept if kept <= page - 35 else least) + 4 + _CELL


def fill_order(sizes: Sequence[int], page: int) -> list[int]:
    """The indexes of ``sizes``, rows about to be appended to a table, in an order that leaves
    little of their leaf pages empty: each page takes the largest row that still fits until
    none does, and the largest left starts the next."""
    by_length: dict[int, list[int]] = {}  # each list from the last index: popped first-first
    for index in reversed(range(len(sizes))):
        by_length.setdefault(leaf_bytes(sizes[index], page), []).append(index)
    lengths = sorted(by_length)
    usable = page - 8
    free = usable
    order: list[int] = []
    while lengths:
        at = bisect_right(lengths, free) - 1
        if at < 0:
            free, at = usable, len(lengths) - 1
        length = lengths[at]
        rows = by_length[length]
        order.append(rows.pop())
        free -= length
        if not rows:
            del lengths[at]
    return order
