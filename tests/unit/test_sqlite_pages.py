"""SQLite's page geometry as ``sqlite_pages`` models it, checked against real SQLite files."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from meterhub.storage.sqlite_pages import fill_order, leaf_bytes


def leaf_pages(path: Path, sizes: Sequence[int], page: int) -> int:
    """Leaf pages of a rowid table holding rows of ``sizes`` bytes, appended in that order."""
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA page_size = {page}")
    db.execute("CREATE TABLE t (b BLOB)")
    rows = [(1_000_000 + i, bytes(size - 3)) for i, size in enumerate(sizes)]  # 3-byte rowids
    db.executemany("INSERT INTO t (rowid, b) VALUES (?, ?)", rows)
    db.commit()
    (found,) = db.execute("SELECT count(*) FROM dbstat WHERE name = 't' AND pagetype = 'leaf'")
    db.close()
    count: int = found[0]
    return count


def modelled_pages(sizes: Sequence[int], page: int) -> int:
    """Leaf pages by ``leaf_bytes``: a row that does not fit starts the next page."""
    count, free = 1, page - 8
    for size in sizes:
        need = leaf_bytes(size, page)
        if need > free:
            count, free = count + 1, page - 8
        free -= need
    return count


@pytest.mark.parametrize("page", [4096, 8192])
def test_the_model_places_rows_as_sqlite_does(tmp_path: Path, page: int) -> None:
    """Rows of every kind (small, about half a page, whole, overflowing into one and into
    several pages) land on as many leaf pages as the model says."""
    rng = random.Random(page)
    sizes = [rng.choice([rng.randrange(100, 600), rng.randrange(1500, 2600)]) for _ in range(300)]
    sizes += [rng.randrange(page - 200, 3 * page) for _ in range(100)]
    rng.shuffle(sizes)
    assert leaf_pages(tmp_path / "a.db", sizes, page) == modelled_pages(sizes, page)


def test_overflowing_rows_keep_their_first_part_with_its_overflow_pointer(tmp_path: Path) -> None:
    """Rows of 5,105 bytes keep 1,013 of them in the leaf page: four cells of 1,024 bytes
    are more than a page holds, so three to a page."""
    sizes = [5105] * 40
    assert leaf_bytes(5105, 4096) == 1024
    assert leaf_pages(tmp_path / "a.db", sizes, 4096) == modelled_pages(sizes, 4096) == 14


def test_rows_in_fill_order_leave_few_pages_empty(tmp_path: Path) -> None:
    """A gauge's day of about half a page after each register's smaller one: appended in
    turn, each pair takes a page; in fill order, two gauges share one and the registers
    fill up the rest."""
    rng = random.Random(1)
    sizes = [size for _ in range(200) for size in (rng.randrange(1900, 2030), 430)]
    order = fill_order(sizes, 4096)
    assert sorted(order) == list(range(len(sizes)))
    in_turn = leaf_pages(tmp_path / "turn.db", sizes, 4096)
    filled = leaf_pages(tmp_path / "filled.db", [sizes[i] for i in order], 4096)
    assert in_turn == 200
    assert filled <= 200 * (2030 + 430 + 18) / (4096 - 8) + 2


def test_equal_rows_keep_their_order() -> None:
    assert fill_order([100] * 5, 4096) == [0, 1, 2, 3, 4]
    assert fill_order([], 4096) == []
