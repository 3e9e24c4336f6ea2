"""Dropping stored points: every point of deleted tags, and points past the retention."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, delete

from meterhub.storage import chunks, marks, rollups
from meterhub.storage.tables import points


def delete_points(conn: Connection, tag_ids: Sequence[int]) -> None:
    """Drop every point of the given tags, stored or compacted, their rollups and marks (when the
    tags are deleted)."""
    if tag_ids:
        ids = list(tag_ids)
        chunks.delete_tags(conn, ids)
        rollups.delete_tags(conn, ids)
        marks.delete_tags(conn, ids)
        conn.execute(delete(points).where(points.c.tag_id.in_(ids)))
