"""Data sources: named groups of tags that connectors push into, with an active flag."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, delete, func, insert, select, update

from meterhub.db import driver_rows
from meterhub.errors import InvalidInput, UnknownSource
from meterhub.registry.tables import data_sources, tags
from meterhub.registry.tags import NewTag, Tag, TagSpec, create_tags, select_tags
from meterhub.times import now_us


@dataclass(frozen=True, slots=True)
class DataSource:
    id: str
    name: str
    active: bool
    config: str
    """A JSON document, kept as the string it was given (``smtJsonConfigString``)."""
    created_at: int

    @classmethod
    def from_row(cls, row: Row[Any]) -> DataSource:
        m = row._mapping
        return cls(m["id"], m["name"], m["active"], m["config"], m["created_at"])


def create_source(
    conn: Connection,
    source_id: str,
    name: str,
    *,
    active: bool = True,
    config: str = "{}",
    secret: str | None = None,
    tag_specs: Sequence[TagSpec | NewTag] = (),
) -> DataSource:
    """Create a source and its tags in one go; ``InvalidInput`` if the id or a tag id is taken.
    ``secret`` is a password its configuration needs, kept apart and never answered."""
    _check_config(config)
    if conn.execute(select(data_sources.c.id).where(data_sources.c.id == source_id)).first():
        raise InvalidInput.field("id", f"a data source with id {source_id} already exists")
    conn.execute(
        insert(data_sources).values(
            id=source_id,
            name=name,
            active=active,
            config=config,
            secret=secret,
            created_at=now_us(),
        )
    )
    create_tags(conn, source_id, tag_specs)
    return get_source(conn, source_id)


def _check_config(config: str) -> None:
    try:
        json.loads(config)
    except ValueError:
        raise InvalidInput.field("config", "must be a JSON document") from None


def get_source(conn: Connection, source_id: str) -> DataSource:
    row = conn.execute(select(data_sources).where(data_sources.c.id == source_id)).first()
    if row is None:
        raise UnknownSource(f"no data source with id {source_id}")
    return DataSource.from_row(row)


def source_secret(conn: Connection, source_id: str) -> str | None:
    """The password a source's configuration needs, if one is kept."""
    query = select(data_sources.c.secret).where(data_sources.c.id == source_id)
    row = conn.execute(query).first()
    if row is None:
        raise UnknownSource(f"no data source with id {source_id}")
    secret: str | None = row.secret
    return secret


def source_tags(conn: Connection, source_id: str) -> list[Tag]:
    rows = conn.execute(select_tags().where(tags.c.source_id == source_id).order_by(tags.c.id))
    return [Tag.from_row(row) for row in rows]


def source_tag_rows(conn: Connection, source_id: str) -> list[tuple[Any, ...]]:
    """``source_tags`` as plain rows, by one driver-level query (for answers listing many
    tags): (pk, key, value_type, scale, unit, attributes JSON, active, tag_name,
    parent_object_id), by pk."""
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    sql = (
        "SELECT id, key, value_type, scale, unit, attributes, active, tag_name,"
        f" parent_object_id FROM tags WHERE source_id = {mark} ORDER BY id"
    )
    return driver_rows(conn, sql, (source_id,))


def tag_counts(conn: Connection, source_ids: Sequence[str]) -> dict[str, int]:
    """``{source id: number of its tags}`` for those of ``source_ids`` that have tags."""
    query = (
        select(tags.c.source_id, func.count())
        .where(tags.c.source_id.in_(source_ids))
        .group_by(tags.c.source_id)
    )
    return dict(conn.execute(query).all())


def list_sources(conn: Connection, *, offset: int, limit: int) -> tuple[int, list[DataSource]]:
    total = conn.execute(select(func.count()).select_from(data_sources)).scalar_one()
    query = select(data_sources).order_by(data_sources.c.id).offset(offset).limit(limit)
    return total, [DataSource.from_row(row) for row in conn.execute(query)]


def update_source(conn: Connection, source_id: str, changes: Mapping[str, Any]) -> DataSource:
    """Change ``name``, ``active``, ``config`` or ``secret``."""
    get_source(conn, source_id)
    if "config" in changes:
        _check_config(changes["config"])
    if changes:
        query = update(data_sources).where(data_sources.c.id == source_id)
        conn.execute(query.values(**changes))
    return get_source(conn, source_id)


def delete_source(conn: Connection, source_id: str) -> list[int]:
    """Remove a source and its tags; returns the tag pks so the caller can drop their points."""
    get_source(conn, source_id)
    pks = list(conn.execute(select(tags.c.id).where(tags.c.source_id == source_id)).scalars())
    conn.execute(delete(tags).where(tags.c.source_id == source_id))
    conn.execute(delete(data_sources).where(data_sources.c.id == source_id))
    return pks
