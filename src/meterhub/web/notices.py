"""Notices after a dashboard action ("Meter 12 added."), carried to the next page in a
signed cookie instead of the URL, so that a link cannot make a page show arbitrary text.

The cookie holds the notice and an HMAC-SHA256 of it and of the session it was made for,
keyed with ``METERHUB_SECRET_KEY`` or, unset, a key kept in the database (the same in
every worker). The next whole page shows it once and clears it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import Engine

from meterhub.registry.server_keys import server_key
from meterhub.settings import Settings
from meterhub.web.session import COOKIE

NOTICE_COOKIE = "meterhub_notice"
NOTICE_SECONDS = 60
"""How long a notice waits for its page."""
MAX_NOTICE_CHARS = 1000


class NoticeRedirect(RedirectResponse):
    """A 303 whose ``notice`` the dashboard's routes seal into the notice cookie
    (``seal_notice``): the response itself has no request to sign for."""

    def __init__(self, target: str, notice: str) -> None:
        super().__init__(target, status_code=303)
        self.notice = notice[:MAX_NOTICE_CHARS]


def notice_key(request: Request) -> bytes:
    """The signing key: from the settings, else the database's (read once per process)."""
    state = request.app.state
    key: bytes | None = getattr(state, "notice_key", None)
    if key is None:
        settings: Settings = state.settings
        engine: Engine = state.engine
        secret = settings.secret_key
        key = secret.get_secret_value().encode() if secret else server_key(engine, "notices")
        state.notice_key = key
    return key


def seal_notice(request: Request, response: NoticeRedirect) -> None:
    """Set the notice cookie of ``response``, signed for the request's session."""
    payload = base64.urlsafe_b64encode(response.notice.encode()).decode().rstrip("=")
    value = f"{payload}.{_mac(notice_key(request), request, payload)}"
    response.set_cookie(
        NOTICE_COOKIE,
        value,
        max_age=NOTICE_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def read_notice(request: Request) -> str | None:
    """The notice the request's cookie carries, if it is genuine and was made for this
    session."""
    value = request.cookies.get(NOTICE_COOKIE)
    if value is None:
        return None
    payload, _, mac = value.partition(".")
    if not hmac.compare_digest(mac, _mac(notice_key(request), request, payload)):
        return None
    try:
        return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def clear_notice(request: Request, response: Response) -> None:
    """Clear the request's notice cookie, if it has one, with ``response``."""
    if NOTICE_COOKIE in request.cookies:
        response.delete_cookie(NOTICE_COOKIE, httponly=True, samesite="lax")


def _mac(key: bytes, request: Request, payload: str) -> str:
    session = request.cookies.get(COOKIE, "")
    message = f"notice\0{session}\0{payload}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()
