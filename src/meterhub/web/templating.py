"""Rendering pages: the Jinja environment, its filters, and the context every page gets."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from meterhub.settings import Settings
from meterhub.times import from_us, now_us
from meterhub.web.notices import clear_notice, read_notice
from meterhub.web.session import CSRF_FIELD, Viewer


def _when(ts: int | None, zone: tzinfo, seconds: bool = True) -> str:
    """``2026-11-21 14:03:05`` in ``zone``; an em dash for never."""
    if ts is None:
        return "—"
    return from_us(ts, zone).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _ago(ts: int | None) -> str:
    """How long ago, coarsely: ``12 s ago``, ``5 min ago``, ``3 h ago``, ``2 d ago``."""
    if ts is None:
        return "never"
    seconds = max(0, (now_us() - ts) // 1_000_000)
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _number(value: float | int | None, decimals: int = 3) -> str:
    """Thousands separated by thin spaces, fixed decimals; an em dash for none."""
    if value is None:
        return "—"
    return f"{value:,.{decimals}f}".replace(",", "\u2009")


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("meterhub.web"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, ago=_ago, number=_number)
    env.globals.update(csrf_field=CSRF_FIELD, zone_of=ZoneInfo)
    return env


ENVIRONMENT = _environment()


def render(
    request: Request,
    template: str,
    viewer: Viewer | None,
    context: Mapping[str, Any] | None = None,
    status: int = 200,
) -> HTMLResponse:
    """``template`` with ``context``, the viewer, the server's zone and the request; a whole
    page (not a part, ``_*.html``) also shows the pending notice, once (``web.notices``)."""
    settings: Settings = request.app.state.settings
    whole_page = not template.startswith("_")
    html = ENVIRONMENT.get_template(template).render(
        request=request,
        viewer=viewer,
        zone=settings.zone,
        poll_interval=settings.poll_interval,
        notice=read_notice(request) if whole_page else None,
        **(context or {}),
    )
    response = HTMLResponse(html, status_code=status)
    if whole_page:
        clear_notice(request, response)
    return response
