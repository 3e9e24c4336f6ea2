"""Routes of the dashboard: errors become pages, a missing session becomes the login form.

The JSON feeds the pages' scripts fetch (``json_feed``) answer errors as JSON instead:
``{"detail": "...", "errors": {"<field>": [...]}}`` with the error's status, and 401 once
the session is gone. A session cookie whose token is wrong or revoked counts as a bad
token of the caller's address (``meterhub.registry.throttle``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from meterhub.api.auth import bad_token_wait
from meterhub.api.errors import STATUS, field_errors
from meterhub.errors import InvalidInput, MeterhubError
from meterhub.web.notices import NoticeRedirect, notice_key, seal_notice
from meterhub.web.session import COOKIE, LoginRequired, current_viewer
from meterhub.web.templating import render

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
SESSION_ENDED = "the session has ended: log in again"


def json_feed(endpoint: Endpoint) -> Endpoint:
    """Mark a dashboard route as a feed for the pages' scripts: its errors answer JSON."""
    endpoint.json_feed = True  # type: ignore[attr-defined]
    return endpoint


class PageRoute(APIRoute):
    """A dashboard route: domain errors render the error page with their HTTP status (a
    feed's, JSON); a notice redirect gets its signed cookie."""

    def get_route_handler(self) -> Handler:
        handle = super().get_route_handler()
        feed = getattr(self.endpoint, "json_feed", False)

        async def page(request: Request) -> Response:
            if request.method == "POST":  # a form's notice is signed while its transaction
                await run_in_threadpool(notice_key, request)  # may hold the write lock
            try:
                response = await handle(request)
            except LoginRequired:
                return await _no_session(request, feed)
            except RequestValidationError as exc:
                if feed:
                    return feed_error(400, exc, field_errors(exc))
                fields = sorted({str(e["loc"][-1]) for e in exc.errors() if e.get("loc")})
                return error_page(request, 400, f"invalid input: {', '.join(fields)}")
            except MeterhubError as exc:
                status = next(code for kind, code in STATUS if isinstance(exc, kind))
                messages = exc.errors if isinstance(exc, InvalidInput) else {}
                if feed:
                    return feed_error(status, exc, messages)
                return error_page(request, status, str(exc), messages)
            if isinstance(response, NoticeRedirect):
                seal_notice(request, response)
            return response

        return page


def page_router() -> APIRouter:
    """A router for dashboard pages (left out of the API's OpenAPI document)."""
    return APIRouter(route_class=PageRoute, include_in_schema=False)


async def _no_session(request: Request, feed: bool) -> Response:
    """No valid session: to the login form (a feed: 401). A session cookie that is no
    longer valid is cleared, and counted as a bad token: past the limit, 429."""
    stale = COOKIE in request.cookies
    wait = await bad_token_wait(request) if stale else None
    if wait is not None:
        message = f"too many bad sessions from this address: try again in {wait} s"
        response = feed_error(429, message, {}) if feed else error_page(request, 429, message)
        response.headers["Retry-After"] = str(wait)
    elif feed:
        response = feed_error(401, SESSION_ENDED, {})
    else:
        response = to_login(request)
    if stale:
        response.delete_cookie(COOKIE, httponly=True, samesite="lax")
    return response


def feed_error(status: int, error: object, errors: dict[str, list[str]]) -> JSONResponse:
    """A feed's error: ``{"detail", "errors"}`` with ``status``."""
    return JSONResponse({"detail": str(error), "errors": errors}, status_code=status)


def notice_redirect(target: str, notice: str) -> RedirectResponse:
    """303 to ``target`` (a path, with or without a query), showing ``notice`` there: the
    notice travels in a signed cookie (``web.notices``), never in the URL."""
    path, _, query = target.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "notice"]
    return NoticeRedirect(f"{path}?{urlencode(kept)}" if kept else path, notice)


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
