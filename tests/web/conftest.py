"""Dashboard pages in-process: a client logged in through the login form, on each database."""

from __future__ import annotations

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
