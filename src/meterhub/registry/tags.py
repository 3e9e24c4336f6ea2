"""Tags: one time series each, owned by a data source or a device channel.

A tag id is a string (``"plant-1.flow"``) or the pair ``{"tagName", "parentObjectId"}``,
which is the string ``"<parentObjectId>.<tagName>"``: so a device channel's tag ``"44.kW"``
is also ``{"tagName": "kW", "parentObjectId": "44"}``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple

from sqlalchemy import Connection, Select, delete, func, select, update

from meterhub.db import driver_rows, insert_rows
from meterhub.errors import InvalidInput, SourceInactive, UnknownTag
from meterhub.registry.tables import tags
from meterhub.times import now_us

TagRef = str | dict[str, str]
PAIR_KEYS = {"tagName", "parentObjectId"}


class ValueType(IntEnum):
    """``smtTagValueTypeCode``: how values of a tag behave between points."""

    FLOAT = 1
    INTEGER = 2
    BOOLEAN = 3
    DISCRETE = 4

    @property
    def stepwise(self) -> bool:
        """Held until the next point rather than interpolated."""
        return self in _STEPWISE


_STEPWISE = frozenset({ValueType.BOOLEAN, ValueType.DISCRETE})


def tag_key(ref: object, field_name: str = "tagId") -> str:
    """The string id of a tag reference; ``InvalidInput`` naming ``field_name`` otherwise."""
    if isinstance(ref, str) and 0 < len(ref) <= 255 and "/" not in ref and ref.strip() == ref:
        return ref
    if isinstance(ref, dict) and set(ref) == PAIR_KEYS:
        name, parent = ref["tagName"], ref["parentObjectId"]
        if isinstance(name, str) and isinstance(parent, str) and name and parent:
            return tag_key(f"{parent}.{name}", field_name)
    raise InvalidInput.field(
        field_name,
        f"a tag id is a string (1-255 characters, no '/') or "
        f'{{"tagName": ..., "parentObjectId": ...}}, got {ref!r:.80}',
    )


@dataclass(frozen=True, slots=True)
class TagSpec:
    """What a caller says about a new tag."""

    ref: TagRef
    value_type: ValueType = ValueType.FLOAT
    scale: float = 1.0
    unit: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)


class Tag(NamedTuple):
    pk: int
    key: str
    source_id: str | None
    device_pk: int | None
    value_type: ValueType
    scale: float
    unit: str
    attributes: dict[str, Any]
    active: bool
    ref: TagRef

    @classmethod
    def from_row(cls, row: Iterable[Any]) -> Tag:
        """From a row of ``select_tags()``."""
        fields: tuple[Any, ...] = tuple(row)
        pk, key, source_id, device_pk, kind, scale, unit, attributes, active, name, parent = fields
        return cls(
            pk,
            key,
            source_id,
            device_pk,
            _VALUE_TYPES[kind],
            scale,
            unit,
            {} if attributes == "{}" else json.loads(attributes),
            bool(active),
            key if name is None or parent is None else {"tagName": name, "parentObjectId": parent},
        )


def select_tags() -> Select[Any]:
    """The columns ``Tag.from_row`` reads, in its order."""
    c = tags.c
    return select(
        c.id,
        c.key,
        c.source_id,
        c.device_pk,
        c.value_type,
        c.scale,
        c.unit,
        c.attributes,
        c.active,
        c.tag_name,
        c.parent_object_id,
    )


_VALUE_TYPES = {int(kind): kind for kind in ValueType}


class NewTag(NamedTuple):
    """A tag to create as ``create_tags`` takes it in bulk: its id as given (``ref``), or, with
    ``ref`` None, the pair ``tag_name``/``parent_object_id``; its other fields as stored."""

    ref: TagRef | None
    tag_name: str | None
    parent_object_id: str | None
    value_type: int = int(ValueType.FLOAT)
    scale: float = 1.0
    unit: str = ""
    attributes: str = "{}"
    """JSON text."""

    @classmethod
    def of(cls, spec: TagSpec) -> NewTag:
        pair = spec.ref if isinstance(spec.ref, dict) else {}
        attributes = json.dumps(spec.attributes) if spec.attributes else "{}"
        name, parent = pair.get("tagName"), pair.get("parentObjectId")
        return cls(spec.ref, name, parent, int(spec.value_type), spec.scale, spec.unit, attributes)

    def key(self, field_name: str) -> str:
        """``tag_key`` of the id; a pair reads ``<parentObjectId>.<tagName>``."""
        if self.ref is None:
            return tag_key(f"{self.parent_object_id}.{self.tag_name}", field_name)
        return tag_key(self.ref, field_name)


def create_tags(conn: Connection, source_id: str | None, specs: Sequence[TagSpec | NewTag]) -> None:
    """Create tags in bulk (PostgreSQL: one COPY; SQLite: statements of many rows each);
    ``InvalidInput`` names ``tags[i].id`` of a bad id, or of any id already taken or
    repeated."""
    new = [spec if isinstance(spec, NewTag) else NewTag.of(spec) for spec in specs]
    keys = [tag.key(f"tags[{i}].id") for i, tag in enumerate(new)]
    taken = set(_taken(conn, keys))
    errors: dict[str, str] = {}
    for i, key in enumerate(keys):
        if key in taken:
            errors[f"tags[{i}].id"] = f"tag {key} already exists"
        taken.add(key)
    if errors:
        raise InvalidInput(errors)
    if not keys:
        return
    now = now_us()
    rows = [
        (
            key,
            source_id,
            t.unit,
            t.value_type,
            t.scale,
            t.attributes,
            t.tag_name,
            t.parent_object_id,
            now,
        )
        for key, t in zip(keys, new, strict=True)
    ]
    insert_rows(conn, "tags", _COLUMNS, [(*row, "gauge", True) for row in rows])


_COLUMNS = (
    *("key", "source_id", "unit", "value_type", "scale", "attributes", "tag_name"),
    *("parent_object_id", "created_at", "kind", "active"),
)
"""The columns of a new tag's row, in ``create_tags``' order."""


def _taken(conn: Connection, keys: Collection[str]) -> list[str]:
    """Those of ``keys`` some tag has, by one driver-level query."""
    return [row[0] for row in rows_by_keys(conn, "t.key", "", keys)]


def _with_keys(conn: Connection, keys: Collection[str]) -> list[Tag]:
    """The tags of ``keys`` (any number) by one driver-level query (``rows_by_keys``)."""
    columns = ", ".join(f"t.{column.name}" for column in select_tags().selected_columns)
    return [Tag.from_row(row) for row in rows_by_keys(conn, columns, "", keys)]


ACTIVITY_COLUMNS = "t.active, t.source_id, s.active"
ACTIVITY_JOIN = "LEFT JOIN data_sources s ON s.id = t.source_id"
"""What ``refuse_inactive`` reads of a tag (``t``) looked up by ``rows_by_keys``: its active
flag, its source and the source's active flag (None for a device's channel)."""


def refuse_inactive(rows: Iterable[Sequence[Any]]) -> None:
    """``SourceInactive`` for the first inactive tag, then for the first (by id) inactive
    data source among theirs; each row is (key, ..., ``ACTIVITY_COLUMNS``) of one tag.
    Writes and reads alike refuse them; connecting to an inactive source does not."""
    rows = list(rows)
    for row in rows:
        if not row[-3]:
            raise SourceInactive(f"tag {row[0]} is not active")
    inactive = sorted({row[-2] for row in rows if row[-2] is not None and not row[-1]})
    if inactive:
        raise SourceInactive(f"data source {inactive[0]} is not active")


def active_rows(conn: Connection, keys: Sequence[str], columns: str = "t.id") -> list[Any]:
    """Rows (key, ``columns``, ``ACTIVITY_COLUMNS``) of the tags (``t``) named by ``keys``, in
    order, once each is known active: ``UnknownTag`` for the first key no tag has, else as
    ``refuse_inactive``. One driver-level query, as ``rows_by_keys``."""
    selected = f"t.key, {columns}, {ACTIVITY_COLUMNS}"
    found = {row[0]: row for row in rows_by_keys(conn, selected, ACTIVITY_JOIN, keys)}
    for key in keys:
        if key not in found:
            raise UnknownTag(f"no tag with id {key}")
    rows = [found[key] for key in keys]
    refuse_inactive(rows)
    return rows


_MANY_KEYS = 2000
"""From this many keys on, PostgreSQL joins them to the tags its own way."""


def rows_by_keys(conn: Connection, columns: str, joins: str, keys: Collection[str]) -> list[Any]:
    """Rows of ``columns`` for the tags (``t``) named by ``keys`` that exist, ``joins``
    joined to them, in no order: one driver-level query, the keys sent as one JSON array
    (distinct). PostgreSQL looks each key up along the key index, whatever its statistics
    say, unless there are ``_MANY_KEYS`` of them."""
    distinct = list(dict.fromkeys(keys))
    if conn.dialect.name != "postgresql":
        tags_sql = "json_each(?) j JOIN tags t ON t.key = j.value"
    elif len(distinct) < _MANY_KEYS:
        tags_sql = (
            "json_array_elements_text(%s::json) j(key) CROSS JOIN LATERAL"
            " (SELECT * FROM tags WHERE tags.key = j.key LIMIT 1) t"
        )
    else:  # the planner's join: a hash join over the tags beats that many lookups
        tags_sql = "json_array_elements_text(%s::json) j(key) JOIN tags t ON t.key = j.key"
    keys_json = json.dumps(distinct)
    return driver_rows(conn, f"SELECT {columns} FROM {tags_sql} {joins}", (keys_json,))


def get_tag(conn: Connection, key: str) -> Tag:
    row = conn.execute(select_tags().where(tags.c.key == key)).first()
    if row is None:
        raise UnknownTag(f"no tag with id {key}")
    return Tag.from_row(row)


def resolve(conn: Connection, refs: Sequence[object], field_name: str = "tagId") -> list[Tag]:
    """The tags named by ``refs`` (strings or pairs), in order; ``UnknownTag`` for the first
    that does not exist."""
    keys = [tag_key(ref, field_name) for ref in refs]
    found = {tag.key: tag for tag in _with_keys(conn, dict.fromkeys(keys))}
    for key in keys:
        if key not in found:
            raise UnknownTag(f"no tag with id {key}")
    return [found[key] for key in keys]


def list_tags(
    conn: Connection,
    *,
    source_id: str | None = None,
    search: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[int, list[Tag]]:
    """One page of tags (of one source, or whose id contains ``search``), and the total."""
    where = []
    if source_id is not None:
        where.append(tags.c.source_id == source_id)
    if search:
        where.append(tags.c.key.contains(search, autoescape=True))
    total = conn.execute(select(func.count()).select_from(tags).where(*where)).scalar_one()
    rows = conn.execute(select_tags().where(*where).order_by(tags.c.id).offset(offset).limit(limit))
    return total, [Tag.from_row(row) for row in rows]


def update_tag(conn: Connection, key: str, changes: Mapping[str, Any]) -> Tag:
    """Change ``value_type``, ``scale``, ``unit``, ``attributes`` or ``active`` of a tag."""
    get_tag(conn, key)
    values = dict(changes)
    if "attributes" in values:
        values["attributes"] = json.dumps(values["attributes"])
    if "value_type" in values:
        values["value_type"] = int(values["value_type"])
    if values:
        conn.execute(update(tags).where(tags.c.key == key).values(**values))
    return get_tag(conn, key)


def delete_tag(conn: Connection, key: str) -> int:
    """Remove a source's tag; returns its pk so the caller can drop its points.

    A device channel's tag goes only with its device.
    """
    tag = get_tag(conn, key)
    if tag.device_pk is not None:
        raise InvalidInput.field("tag_id", f"tag {key} is a channel of a meter; delete the meter")
    conn.execute(delete(tags).where(tags.c.id == tag.pk))
    return tag.pk
