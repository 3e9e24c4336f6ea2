"""Tags: one time series each, owned by a data source or a device channel.

A tag id is a string (``"plant-1.flow"``) or the pair ``{"tagName", "parentObjectId"}``,
which is the string ``"<parentObjectId>.<tagName>"``: so a device channel's tag ``"44.kW"``
is also ``{"tagName": "kW", "parentObjectId": "44"}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from sqlalchemy import Connection, Row, delete, func, insert, select, update

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
        return self in (ValueType.BOOLEAN, ValueType.DISCRETE)


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


@dataclass(frozen=True, slots=True)
class Tag:
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
    def from_row(cls, row: Row[Any]) -> Tag:
        m = row._mapping
        pair = m["tag_name"] is not None and m["parent_object_id"] is not None
        return cls(
            pk=m["id"],
            key=m["key"],
            source_id=m["source_id"],
            device_pk=m["device_pk"],
            value_type=ValueType(m["value_type"]),
            scale=m["scale"],
            unit=m["unit"],
            attributes=json.loads(m["attributes"]),
            active=m["active"],
            ref={"tagName": m["tag_name"], "parentObjectId": m["parent_object_id"]}
            if pair
            else m["key"],
        )


def create_tags(conn: Connection, source_id: str | None, specs: Sequence[TagSpec]) -> list[Tag]:
    """Create tags in one statement; ``InvalidInput`` names ``tags[i].id`` of any id already
    taken or repeated."""
    keys = [tag_key(spec.ref, f"tags[{i}].id") for i, spec in enumerate(specs)]
    taken = {
        key
        for part in _parts(keys)
        for key in conn.execute(select(tags.c.key).where(tags.c.key.in_(part))).scalars()
    }
    errors: dict[str, str] = {}
    for i, key in enumerate(keys):
        if key in taken:
            errors[f"tags[{i}].id"] = f"tag {key} already exists"
        taken.add(key)
    if errors:
        raise InvalidInput(errors)
    if not keys:
        return []
    now = now_us()
    rows = []
    for key, spec in zip(keys, specs, strict=True):
        pair = spec.ref if isinstance(spec.ref, dict) else {}
        rows.append(
            {
                "key": key,
                "source_id": source_id,
                "kind": "gauge",
                "unit": spec.unit,
                "value_type": int(spec.value_type),
                "scale": spec.scale,
                "attributes": json.dumps(spec.attributes),
                "tag_name": pair.get("tagName"),
                "parent_object_id": pair.get("parentObjectId"),
                "created_at": now,
            }
        )
    conn.execute(insert(tags), rows)
    return resolve(conn, keys)


def _parts(keys: Sequence[str], size: int = 5_000) -> list[Sequence[str]]:
    """``keys`` in slices small enough for one ``IN`` list on every database."""
    return [keys[i : i + size] for i in range(0, len(keys), size)]


def get_tag(conn: Connection, key: str) -> Tag:
    row = conn.execute(select(tags).where(tags.c.key == key)).first()
    if row is None:
        raise UnknownTag(f"no tag with id {key}")
    return Tag.from_row(row)


def resolve(conn: Connection, refs: Sequence[object], field_name: str = "tagId") -> list[Tag]:
    """The tags named by ``refs`` (strings or pairs), in order; ``UnknownTag`` for the first
    that does not exist."""
    keys = [tag_key(ref, field_name) for ref in refs]
    found = {
        row.key: Tag.from_row(row)
        for part in _parts(sorted(set(keys)))
        for row in conn.execute(select(tags).where(tags.c.key.in_(part)))
    }
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
    rows = conn.execute(select(tags).where(*where).order_by(tags.c.id).offset(offset).limit(limit))
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
