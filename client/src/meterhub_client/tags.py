"""Tags: the named time series a connector writes, each with a thread-safe point buffer.

A tag id on the wire is either a string (``"1.tag1"``) or a composite object
``{"tagName": "kW", "parentObjectId": "44"}``; the client keeps the latter as a
:class:`TagId`. Points are encoded when they are added (see ``_encoding``), so a bad
time or value raises ``ValueError`` at ``add_data``/``update`` and never at send time.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from meterhub_client._encoding import TimeInput, ValueInput, encode_point


@dataclass(frozen=True, slots=True)
class TagId:
    """A composite tag id: the tag named ``tag_name`` of the object ``parent_object_id``.

    On the wire: ``{"tagName": tag_name, "parentObjectId": parent_object_id}``.
    """

    tag_name: str
    parent_object_id: str

    def __post_init__(self) -> None:
        for name in ("tag_name", "parent_object_id"):
            part = getattr(self, name)
            if not isinstance(part, str) or not part:
                raise ValueError(f"bad tag id: {name} must be a non-empty string, not {part!r}")

    @classmethod
    def from_wire(cls, value: Mapping[str, Any]) -> TagId:
        """From ``{"tagName": ..., "parentObjectId": ...}`` (exactly those keys)."""
        if set(value) != {"tagName", "parentObjectId"}:
            raise ValueError(
                f"bad tag id {dict(value)!r}: expected exactly the keys tagName, parentObjectId"
            )
        return cls(value["tagName"], value["parentObjectId"])

    def to_wire(self) -> dict[str, str]:
        """``{"tagName": ..., "parentObjectId": ...}``."""
        return {"tagName": self.tag_name, "parentObjectId": self.parent_object_id}


TagIdInput: TypeAlias = str | TagId | Mapping[str, Any]
"""A tag id as a caller may give it: a string, a :class:`TagId`, or its wire mapping."""


def normalize_tag_id(value: object) -> str | TagId:
    """A string or :class:`TagId` from any accepted form; ``ValueError`` otherwise."""
    if isinstance(value, TagId):
        return value
    if isinstance(value, str):
        if not value:
            raise ValueError("bad tag id: empty string")
        return value
    if isinstance(value, Mapping):
        return TagId.from_wire(value)
    raise ValueError(
        f"bad tag id {value!r}: expected a string or {{'tagName': ..., 'parentObjectId': ...}}"
    )


def tag_id_to_wire(tag_id: str | TagId) -> str | dict[str, str]:
    """The JSON form of a normalised tag id."""
    return tag_id if isinstance(tag_id, str) else tag_id.to_wire()


_POINT_KEYS = frozenset({"x", "y", "q"})


class Tag:
    """One tag of a data source, holding points until ``set_data`` delivers them.

    ``id`` is a string or a :class:`TagId`; ``attributes`` is the metadata the platform
    sent with the tag (``{}`` when none). Every method is safe to call from several
    threads at once: ``set_data`` sends a snapshot of the buffer and, once the platform
    acknowledged it, removes exactly the points it sent, so points added meanwhile stay.
    """

    def __init__(self, id: TagIdInput, attributes: Mapping[str, Any] | None = None) -> None:
        self.id: str | TagId = normalize_tag_id(id)
        if attributes is not None and not isinstance(attributes, Mapping):
            raise ValueError(f"bad tag attributes {attributes!r}: expected a mapping")
        self.attributes: dict[str, Any] = dict(attributes or {})
        self._lock = threading.Lock()
        self._sequence = itertools.count()
        # (sequence number, wire point), in increasing sequence order.
        self._points: list[tuple[int, dict[str, Any]]] = []

    @classmethod
    def from_wire(cls, record: Mapping[str, Any]) -> Tag:
        """From one entry of ``connect()["tags"]``: ``{"id": ..., "attributes": {...}}``."""
        if not isinstance(record, Mapping) or "id" not in record:
            raise ValueError(f"bad tag {record!r}: expected a mapping with an 'id'")
        return cls(record["id"], record.get("attributes"))

    @property
    def wire_id(self) -> str | dict[str, str]:
        """The id as sent on the wire: a string or ``{"tagName", "parentObjectId"}``."""
        return tag_id_to_wire(self.id)

    def add_data(self, x: TimeInput, y: ValueInput, q: int = 0) -> None:
        """Buffer one point: time ``x``, value ``y``, quality ``q`` (0 = good).

        ``x``: aware ``datetime`` (sent as µs), naive ``datetime`` or ``date`` (read in
        the platform's timezone), int µs since the epoch, a numeric string, or an
        ISO 8601 string. ``y``: int, float, bool, ``Decimal`` or a numpy scalar.
        Raises ``ValueError`` naming the bad input; nothing is buffered then.
        """
        point = encode_point(x, y, q)
        with self._lock:
            self._points.append((next(self._sequence), point))

    def update(self, points: Iterable[Mapping[str, Any]]) -> None:
        """Buffer many points, each ``{"x": time, "y": value}`` with an optional ``"q"``.

        All or nothing: if any point is bad, ``ValueError`` names it and none is added.
        """
        encoded = [_encode_record(index, record) for index, record in enumerate(points)]
        with self._lock:
            self._points.extend((next(self._sequence), point) for point in encoded)

    def clear_data(self) -> None:
        """Drop every buffered point without sending it."""
        with self._lock:
            self._points.clear()

    @property
    def data(self) -> list[dict[str, Any]]:
        """A copy of the buffered points in wire form: ``[{"x", "y", "q"}, ...]``."""
        with self._lock:
            return [dict(point) for _, point in self._points]

    def __len__(self) -> int:
        """How many points are buffered."""
        with self._lock:
            return len(self._points)

    def __repr__(self) -> str:
        return f"Tag(id={self.id!r}, attributes={self.attributes!r}, buffered={len(self)})"

    def _snapshot(self) -> list[tuple[int, dict[str, Any]]]:
        """The buffered ``(sequence, point)`` pairs at this instant (for ``set_data``)."""
        with self._lock:
            return list(self._points)

    def _discard(self, first: int, last: int) -> None:
        """Remove the buffered points numbered ``first..last`` (inclusive): the ones sent.

        Points only ever join at the end with a larger number, so every point still
        buffered in that range was part of the snapshot that was sent.
        """
        with self._lock:
            start = bisect.bisect_left(self._points, first, key=_sequence_of)
            stop = bisect.bisect_right(self._points, last, key=_sequence_of)
            del self._points[start:stop]


def _sequence_of(entry: tuple[int, dict[str, Any]]) -> int:
    return entry[0]


def _encode_record(index: int, record: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(record, Mapping):
        raise ValueError(f"bad point #{index} {record!r}: expected a mapping with 'x' and 'y'")
    extra = set(record) - _POINT_KEYS
    if extra or "x" not in record or "y" not in record:
        raise ValueError(
            f"bad point #{index} {dict(record)!r}: expected the keys 'x', 'y' and optionally 'q'"
        )
    try:
        return encode_point(record["x"], record["y"], record.get("q", 0))
    except ValueError as exc:
        raise ValueError(f"bad point #{index}: {exc}") from exc
