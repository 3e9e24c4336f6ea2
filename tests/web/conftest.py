"""Dashboard pages in-process: a client logged in through the login form, on each database."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import httpx2
import pytest
from fastapi.testclient import TestClient

from meterhub.api.app import create_app
from meterhub.db import make_engine
from meterhub.registry.users import create_user
from meterhub.settings import Settings
from meterhub.web.session import CSRF_FIELD, csrf_for


class Dashboard(TestClient):
    """A logged-in browser-like client: ``form`` posts with the session's CSRF value."""

    def csrf(self) -> dict[str, str]:
        return {CSRF_FIELD: csrf_for(self.cookies["meterhub_session"])}

    def form(self, url: str, data: dict[str, str] | None = None) -> httpx2.Response:
        return self.post(url, data={**self.csrf(), **(data or {})})


NOTICE = re.compile(r'<p class="notice" role="status">(.*?)</p>', re.S)


def page_notice(page: str) -> str | None:
    """The notice a page shows, if any."""
    found = NOTICE.search(page)
    return html.unescape(found[1]) if found else None


def shown_notice(client: TestClient, answer: httpx2.Response) -> str | None:
    """The notice shown by the page ``answer`` redirects to (which clears it)."""
    assert answer.status_code == 303, answer.text
    return page_notice(client.get(answer.headers["location"]).text)


def log_in(client: TestClient, username: str, password: str) -> None:
    answer = client.post("/login", data={"username": username, "password": password})
    assert answer.status_code == 303, answer.text


@pytest.fixture
def dashboard(database_url: str) -> Iterator[Dashboard]:
    """The app (no collector, no scheduler) with an administrator logged in; no redirects
    are followed, so tests see each answer."""
    engine = make_engine(database_url)
    with engine.begin() as conn:
        create_user(conn, "operator", "correct horse", is_admin=True)
    engine.dispose()
    settings = Settings(database_url=database_url, collector_enabled=False, scheduler_enabled=False)
    with Dashboard(create_app(settings), follow_redirects=False) as client:
        log_in(client, "operator", "correct horse")
        yield client
