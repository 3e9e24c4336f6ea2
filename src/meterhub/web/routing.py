"""Routes of the dashboard: errors become pages, a missing session becomes the login form."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from meterhub.api.errors import STATUS
from meterhub.errors import InvalidInput, MeterhubError
from meterhub.web.session import LoginRequired, current_viewer
from meterhub.web.templating import render

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class PageRoute(APIRoute):
    """A dashboard route: domain errors render the error page with their HTTP status."""

    def get_route_handler(self) -> Handler:
        handle = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handle(request)
            except LoginRequired:
                return to_login(request)
            except RequestValidationError as exc:
                fields = sorted({str(e["loc"][-1]) for e in exc.errors() if e.get("loc")})
                return error_page(request, 400, f"invalid input: {', '.join(fields)}")
            except MeterhubError as exc:
                status = next(code for kind, code in STATUS if isinstance(exc, kind))
                messages = exc.errors if isinstance(exc, InvalidInput) else None
                return error_page(request, status, str(exc), messages)

        return page


def page_router() -> APIRouter:
    """A router for dashboard pages (left out of the API's OpenAPI document)."""
    return APIRouter(route_class=PageRoute, include_in_schema=False)


def notice_redirect(target: str, notice: str) -> RedirectResponse:
    """303 to ``target`` (a path, with or without a query), showing ``notice`` there."""
    path, _, query = target.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "notice"]
    return RedirectResponse(f"{path}?{urlencode([*kept, ('notice', notice)])}", status_code=303)


def to_login(request: Request) -> RedirectResponse:
    """Back to the login form, remembering the page (only for GET: a form is not replayed)."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    suffix = f"?next={quote(target, safe='')}" if request.method == "GET" else ""
    return RedirectResponse(f"/login{suffix}", status_code=303)


def error_page(
    request: Request,
    status: int,
    message: str,
    fields: dict[str, list[str]] | None = None,
) -> Response:
    try:
        viewer = current_viewer(request)
    except LoginRequired:
        viewer = None
    context = {"status": status, "message": message, "fields": fields or {}}
    return render(request, "error.html", viewer, context, status=status)
