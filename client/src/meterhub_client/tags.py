"""Tags: the named time series a connector writes, each with a thread-safe point buffer.

A tag id on the wire is either a string (``"1.tag1"``) or a composite object
``{"tagName": "kW", "parentObjectId": "44"}``; the client keeps the latter as a
:class:`TagId`. Points are encoded when they are added (see ``_encoding``), so a bad
time or value raises ``ValueError`` at ``add_data``/``update`` and never at send time;
the JSON text of a batch is written when it is sent (``points_json``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import starmap
from typing import Any, TypeAlias

from meterhub_client._encoding import (
    QUALITY_MAX,
    QUALITY_MIN,
    TimeInput,
    ValueInput,
    WireValue,
    encode_point,
)

WirePoint: TypeAlias = tuple[int, WireValue, int]
"""A point as a tag buffers it, encoded: (time in µs, value, quality)."""


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

    Points are buffered encoded (``WirePoint``), so sending them only writes their JSON.
    """

    def __init__(self, id: TagIdInput, attributes: Mapping[str, Any] | None = None) -> None:
        self.id: str | TagId = normalize_tag_id(id)
        if attributes is not None and not isinstance(attributes, Mapping):
            raise ValueError(f"bad tag attributes {attributes!r}: expected a mapping")
        self.attributes: dict[str, Any] = dict(attributes or {})
        self._lock = threading.Lock()
        # The buffered points, in the order added; every point added has a number
        # (0, 1, 2, ...) and ``_first`` is the number of ``_points[0]``.
        self._points: list[WirePoint] = []
        self._first = 0
        self._wire_of: str | TagId | None = None  # the id ``_wire_text`` was made for
        self._wire_text = ""

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
        if (  # the usual point, checked here at a fraction of ``encode_point``'s cost
            type(x) is int
            and type(y) is float
            and type(q) is int
            and -9_223_372_036_854_775_808 <= x <= 9_223_372_036_854_775_807  # INT64_*
            and y - y == 0.0  # finite
            and QUALITY_MIN <= q <= QUALITY_MAX
        ):
            point = (x, y, q)
        else:
            point = _wire_point(encode_point(x, y, q))
        self._points.append(point)  # atomic: points only join at the end, without the lock

    def update(self, points: Iterable[Mapping[str, Any]]) -> None:
        """Buffer many points, each ``{"x": time, "y": value}`` with an optional ``"q"``.

        All or nothing: if any point is bad, ``ValueError`` names it and none is added.
        """
        found = [_wire_point(_encode_record(index, record)) for index, record in enumerate(points)]
        self._points.extend(found)

    def clear_data(self) -> None:
        """Drop every buffered point without sending it."""
        with self._lock:
            count = len(self._points)
            del self._points[:count]
            self._first += count

    @property
    def data(self) -> list[dict[str, Any]]:
        """A copy of the buffered points in wire form: ``[{"x", "y", "q"}, ...]``."""
        with self._lock:
            found = list(self._points)
        return [{"x": x, "y": y, "q": q} for x, y, q in found]

    def __len__(self) -> int:
        """How many points are buffered."""
        with self._lock:
            return len(self._points)

    def __repr__(self) -> str:
        return f"Tag(id={self.id!r}, attributes={self.attributes!r}, buffered={len(self)})"

    def _snapshot_into(self, points: list[WirePoint]) -> int:
        """Append the buffered points at this instant to ``points`` (for ``set_data``); the
        number of the first."""
        with self._lock:
            points += self._points
            return self._first

    def _discard(self, first: int, last: int) -> None:
        """Remove the buffered points numbered ``first..last`` (inclusive): the ones sent.

        Points only ever join at the end with a larger number, so every point still
        buffered in that range was part of the snapshot that was sent. A snapshot starts at
        the first buffered point and a tag's batches are acknowledged in order (``set_data``
        never has two batches of one tag in flight), so the points sent are the first ones
        buffered; were points before ``first`` still buffered, nothing is removed (they
        would be sent again, in order, which changes nothing stored).
        """
        with self._lock:
            if first > self._first:
                return
            count = max(0, last + 1 - self._first)
            del self._points[:count]
            self._first += count

    def _wire_json(self) -> str:
        """The id as JSON text, made again only when ``id`` was given a new value."""
        tag_id = self.id
        if self._wire_of is not tag_id:
            self._wire_text = (
                _string_text(tag_id)
                if isinstance(tag_id, str)
                else '{"tagName":'
                + _string_text(tag_id.tag_name)
                + ',"parentObjectId":'
                + _string_text(tag_id.parent_object_id)
                + "}"
            )
            self._wire_of = tag_id
        return self._wire_text

    def _key(self) -> str:
        """The platform's string id of the tag: a pair ``{tagName, parentObjectId}`` is the
        string ``<parentObjectId>.<tagName>``, so both forms name one tag."""
        tag_id = self.id
        return tag_id if isinstance(tag_id, str) else f"{tag_id.parent_object_id}.{tag_id.tag_name}"


def wire_text(value: object) -> str:
    """Compact JSON text, as the client sends it."""
    return _ENCODER.encode(value)


_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))
_string_text = json.encoder.encode_basestring  # a JSON string, as _ENCODER writes it


def points_json(points: Sequence[WirePoint]) -> bytes:
    """The JSON array of ``points`` as wire objects ``{"x", "y", "q"}``: written by msgspec
    when it is installed (an optional speed-up, a few times faster: Python's ``repr`` of a
    float is most of the cost), the same values either way."""
    if _FAST_ENCODE is not None:
        return _FAST_ENCODE(points)
    texts = [f'{{"x":{x},"y":{y!r},"q":{q}}}' for x, y, q in points]
    return ("[" + ",".join(texts) + "]").encode("utf-8")


def _fast_encoder() -> Callable[[Sequence[WirePoint]], bytes] | None:
    try:
        import msgspec
    except ImportError:  # pragma: no cover - msgspec is optional
        return None

    class Wire(msgspec.Struct):
        x: int
        y: WireValue
        q: int

    encode = msgspec.json.Encoder().encode
    return lambda points: encode(list(starmap(Wire, points)))


_FAST_ENCODE = _fast_encoder()


def _wire_point(point: Mapping[str, Any]) -> WirePoint:
    return point["x"], point["y"], point["q"]


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
