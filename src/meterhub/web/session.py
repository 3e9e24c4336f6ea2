"""Dashboard sessions: a cookie holding an API token, and form protection against CSRF.

Logging in issues an ordinary token (the same as ``/api/v1/auth/login/``) and keeps it in
an HttpOnly cookie; logging out revokes it, so the token is refused everywhere afterwards.
Every form carries a CSRF value derived from the session token, checked on each POST.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from starlette.datastructures import FormData

from meterhub.errors import Forbidden, Unauthorized
from meterhub.registry.users import User, user_for_token

COOKIE = "meterhub_session"
CSRF_FIELD = "csrf"


class LoginRequired(Exception):
    """No valid session: the page answers with a redirect to the login form."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """The logged-in user of a page request, with the session's token and CSRF value."""

    user: User
    token: str

    @property
    def csrf(self) -> str:
        return csrf_for(self.token)


def csrf_for(token: str) -> str:
    return hmac.new(token.encode(), b"meterhub-form", hashlib.sha256).hexdigest()


def current_viewer(request: Request) -> Viewer:
    """The session's user; ``LoginRequired`` without a valid session cookie."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise LoginRequired
    engine: Engine = request.app.state.engine
    try:
        with engine.begin() as conn:
            return Viewer(user_for_token(conn, token), token)
    except Unauthorized as exc:
        raise LoginRequired from exc


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


async def posted_form(request: Request, viewer: ViewerDep) -> FormData:
    """The submitted form, once its CSRF value is checked (``Forbidden`` when it is wrong)."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not hmac.compare_digest(sent, viewer.csrf):
        raise Forbidden("the form has expired or did not come from this site: reload the page")
    return form


FormDep = Annotated[FormData, Depends(posted_form)]


def require_admin(viewer: Viewer) -> None:
    if not viewer.user.is_admin:
        raise Forbidden("this needs an administrator")
