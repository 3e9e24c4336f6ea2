"""Tags: one time series each, owned by a data source or a device channel.

A tag id is a string (``"plant-1.flow"``) or the pair ``{"tagName", "parentObjectId"}``,
which is the string ``"<parentObjectId>.<tagName>"``: so a device channel's tag ``"44.kW"``
is also ``{"tagName": "kW", "parentObjectId": "44"}``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple

from sqlalchemy import Connection, Select, delete, func, select, update

from meterhub.errors import InvalidInput, UnknownTag
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


def create_tags(conn: Connection, source_id: str | None, specs: Sequence[TagSpec]) -> None:
    """Create tags in one statement; ``InvalidInput`` names ``tags[i].id`` of any id already
    taken or repeated."""
    keys = [tag_key(spec.ref, f"tags[{i}].id") for i, spec in enumerate(specs)]
    taken = {tag.key for tag in _with_keys(conn, keys)}
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
    rows = []
    for key, spec in zip(keys, specs, strict=True):
        pair = spec.ref if isinstance(spec.ref, dict) else {}
        attributes = json.dumps(spec.attributes) if spec.attributes else "{}"
        name, parent = pair.get("tagName"), pair.get("parentObjectId")
        kind = int(spec.value_type)
        rows.append((key, source_id, spec.unit, kind, spec.scale, attributes, name, parent, now))
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    conn.exec_driver_sql(_INSERT.format(marks=", ".join([mark] * 9)), rows)


_INSERT = (
    "INSERT INTO tags (key, source_id, unit, value_type, scale, attributes, tag_name,"
    " parent_object_id, created_at, kind, active) VALUES ({marks}, 'gauge', TRUE)"
)
"""Tags by the thousand: a driver-level statement, without per-row work of the ORM core."""


def _with_keys(conn: Connection, keys: Collection[str]) -> list[Tag]:
    """The tags of ``keys`` (any number) by one driver-level query: a JSON array on SQLite,
    an array on PostgreSQL, rows read as plain tuples."""
    columns = ", ".join(f"tags.{column.name}" for column in select_tags().selected_columns)
    param: str | list[str]
    if conn.dialect.name == "postgresql":
        sql, param = f"SELECT {columns} FROM tags WHERE key = ANY(%s)", list(keys)
    else:
        sql = f"SELECT {columns} FROM json_each(?) j JOIN tags ON tags.key = j.value"
        param = json.dumps(list(keys))
    driver = conn.connection.driver_connection
    with contextlib.closing(driver.cursor()) as cursor:  # type: ignore[union-attr]
        cursor.execute(sql, (param,))
        return [Tag.from_row(row) for row in cursor.fetchall()]


def get_tag(conn: Connection, key: str) -> Tag:
    row = conn.execute(select_tags().where(tags.c.key == key)).first()
    if row is None:
        raise UnknownTag(f"no tag with id {key}")
    return Tag.from_row(row)


def resolve(conn: Connection, refs: Sequence[object], field_name: str = "tagId") -> list[Tag]:
    """The tags named by ``refs`` (strings or pairs), in order; ``UnknownTag`` for the first
    that does not exist."""
    keys = [tag_key(ref, field_name) for ref in refs]
    found = {tag.key: tag for tag in _with_keys(conn, set(keys))}
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
