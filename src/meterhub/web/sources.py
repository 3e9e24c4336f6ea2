"""Data sources and their tags: listed with tag counts and last values, (de)activated.

Like ``/api/v1/data-sources/``, these pages are for administrators: others get 403.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import Depends, Query, Request, Response
from fastapi.responses import RedirectResponse
from starlette.datastructures import FormData

from meterhub.api.deps import ConnDep
from meterhub.mqtt.status import statuses
from meterhub.registry.sources import get_source, list_sources, tag_counts, update_source
from meterhub.registry.tags import Tag, list_tags, update_tag
from meterhub.storage import Point, latest
from meterhub.web.paging import PAGE_SIZES, paged
from meterhub.web.routing import notice_redirect, page_router
from meterhub.web.session import FormDep, Viewer, ViewerDep, require_admin
from meterhub.web.templating import render

router = page_router()

Action = Literal["activate", "deactivate"]
PageNumber = Annotated[int, Query(ge=1)]
PageSize = Annotated[int, Query(ge=1)]


def admin_viewer(viewer: ViewerDep) -> Viewer:
    require_admin(viewer)
    return viewer


AdminDep = Annotated[Viewer, Depends(admin_viewer)]


@dataclass(frozen=True, slots=True)
class TagRow:
    tag: Tag
    last: Point | None


@router.get("/sources")
def sources_page(
    request: Request,
    viewer: AdminDep,
    conn: ConnDep,
    page: PageNumber = 1,
    size: PageSize = PAGE_SIZES[0],
) -> Response:
    """Data sources by id, with their number of tags."""
    shown, found = paged(
        request.url, page, size, lambda at, n: list_sources(conn, offset=at, limit=n)
    )
    context = {
        "pager": shown,
        "sources": found,
        "tags": tag_counts(conn, [s.id for s in found]),
        "mqtt": statuses(conn, found),
    }
    return render(request, "sources.html", viewer, context)


@router.get("/sources/{source_id}")
def source_page(
    request: Request,
    source_id: str,
    viewer: AdminDep,
    conn: ConnDep,
    search: Annotated[str, Query(max_length=255)] = "",
    page: PageNumber = 1,
    size: PageSize = PAGE_SIZES[0],
) -> Response:
    """One source and a page of its tags, each with its last value."""
    source = get_source(conn, source_id)
    shown, found = paged(
        request.url,
        page,
        size,
        lambda at, n: list_tags(conn, source_id=source.id, search=search, offset=at, limit=n),
    )
    last = latest(conn, [tag.pk for tag in found])
    context = {
        "source": source,
        "config": json.dumps(json.loads(source.config), indent=2, ensure_ascii=False),
        "mqtt": statuses(conn, [source]).get(source.id),
        "rows": [TagRow(tag, last.get(tag.pk)) for tag in found],
        "search": search,
        "pager": shown,
    }
    return render(request, "source.html", viewer, context)


@router.post("/sources/{source_id}/{action}")
def toggle_source(
    source_id: str, action: Action, _admin: AdminDep, form: FormDep, conn: ConnDep
) -> Response:
    """An inactive source refuses connections and writes; its history stays readable."""
    source = update_source(conn, source_id, {"active": action == "activate"})
    return _back(form, _source_url(source.id), f"Data source {source.id} {action}d")


@router.post("/sources/tags/{tag_key}/{action}")
def toggle_tag(
    tag_key: str, action: Action, _admin: AdminDep, form: FormDep, conn: ConnDep
) -> Response:
    """An inactive tag refuses writes; its history stays readable."""
    tag = update_tag(conn, tag_key, {"active": action == "activate"})
    return _back(form, _source_url(tag.source_id), f"Tag {tag.key} {action}d")


def _source_url(source_id: str | None) -> str:
    return f"/sources/{quote(source_id, safe='')}" if source_id else "/sources"


def _back(form: FormData, default: str, notice: str) -> RedirectResponse:
    """To the sources page the form was posted from (field ``back``), with ``notice``."""
    back = form.get("back")
    target = back if isinstance(back, str) and back.startswith("/sources") else default
    return notice_redirect(target, notice)
