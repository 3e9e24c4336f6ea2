"""Decoded chunks and rollups kept in memory, least recently used out first.

Entries are keyed by the ``stamp`` a chunk or rollup row carries: a random number drawn
anew whenever its points change, so an entry can never be stale (a changed row has a new
stamp, and the old entry ages out) and every process, and every database, may share one
cache. An entry made of many rows (a period's joined rollups) is keyed by a hash of their
stamps and holds the stamps themselves, for the reader to compare. Values must not be
modified by readers: arrays are stored read-only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

DEFAULT_BUDGET = 64 << 20


class DecodedCache:
    """A byte-bounded LRU map; safe to use from several threads."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self._entries: OrderedDict[tuple[str, int], tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._held = 0
        self.budget = budget

    def get(self, kind: str, stamps: Sequence[int]) -> list[Any]:
        """The values held under each of ``stamps`` (``None`` where none is)."""
        found: list[Any] = []
        with self._lock:
            for stamp in stamps:
                entry = self._entries.get((kind, stamp))
                if entry is None:
                    found.append(None)
                else:
                    self._entries.move_to_end((kind, stamp))
                    found.append(entry[0])
        return found

    def put(self, kind: str, stamp: int, value: Any, size: int) -> None:
        with self._lock:
            old = self._entries.pop((kind, stamp), None)
            if old is not None:
                self._held -= old[1]
            if size > self.budget:
                return
            self._entries[(kind, stamp)] = (value, size)
            self._held += size
            while self._held > self.budget:
                _, (_, freed) = self._entries.popitem(last=False)
                self._held -= freed

    def resize(self, budget: int) -> None:
        """A new budget; ``0`` turns caching off."""
        with self._lock:
            self.budget = budget
            while self._held > budget and self._entries:
                _, (_, freed) = self._entries.popitem(last=False)
                self._held -= freed


CACHE = DecodedCache()
"""The process's cache; ``serve`` sizes it from ``METERHUB_CACHE_MB``."""
