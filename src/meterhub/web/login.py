"""The login form, and logging out (the session's token is revoked).

Failed logins count as the API's do (``meterhub.registry.throttle``): past the limits the
form answers 429 with ``Retry-After``. The session cookie is HttpOnly, SameSite=Lax, and
Secure when the request came over HTTPS (directly, or through a trusted proxy's
``X-Forwarded-Proto``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request, Response
from fastapi.responses import RedirectResponse

from meterhub.api.auth import ThrottleDep, client_address
from meterhub.api.deps import ConnDep
from meterhub.errors import Throttled, Unauthorized
from meterhub.registry.users import issue_token, revoke_token
from meterhub.web.routing import page_router
from meterhub.web.session import COOKIE, FormDep, ViewerDep
from meterhub.web.templating import render

router = page_router()


def _safe_next(target: str | None) -> str:
    """Only a path of this site (never ``//host`` or a scheme) may follow the login."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", None, {"next": _safe_next(next), "error": None})


@router.post("/login")
def login(
    request: Request,
    conn: ConnDep,
    throttle: ThrottleDep,
    username: Annotated[str, Form(max_length=150)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str | None, Form()] = None,
) -> Response:
    """A good password sets the session cookie and goes on to ``next``; a bad one, 401;
    too many failures lately, 429."""
    try:
        user = throttle.authenticate(conn, username, password, client_address(request))
    except (Unauthorized, Throttled) as exc:
        context = {"next": _safe_next(next), "error": str(exc), "username": username}
        if isinstance(exc, Unauthorized):
            return render(request, "login.html", None, context, status=401)
        refused = render(request, "login.html", None, context, status=429)
        refused.headers["Retry-After"] = str(exc.retry_after)
        return refused
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        issue_token(conn, user.id),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout(viewer: ViewerDep, _form: FormDep, conn: ConnDep) -> Response:
    revoke_token(conn, viewer.token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, httponly=True, samesite="lax")
    return response
