"""The login form, and logging out (the session's token is revoked)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request, Response
from fastapi.responses import RedirectResponse

from meterhub.api.deps import ConnDep
from meterhub.errors import Unauthorized
from meterhub.registry.users import authenticate, issue_token, revoke_token
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
    username: Annotated[str, Form(max_length=150)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str | None, Form()] = None,
) -> Response:
    """A good password sets the session cookie and goes on to ``next``; a bad one, 401."""
    try:
        user = authenticate(conn, username, password)
    except Unauthorized as exc:
        context = {"next": _safe_next(next), "error": str(exc), "username": username}
        return render(request, "login.html", None, context, status=401)
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
    response.delete_cookie(COOKIE)
    return response
