"""Logging in and out of the dashboard, and what a session may do."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.web.conftest import Dashboard


def test_pages_send_visitors_to_the_login_form(dashboard: Dashboard) -> None:
    visitor = TestClient(dashboard.app, follow_redirects=False)
    answer = visitor.get("/meters?status=online")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fmeters%3Fstatus%3Donline"


def test_a_wrong_password_is_refused_with_the_form_again(dashboard: Dashboard) -> None:
    visitor = TestClient(dashboard.app, follow_redirects=False)
    answer = visitor.post("/login", data={"username": "operator", "password": "wrong"})
    assert answer.status_code == 401
    assert "wrong username or password" in answer.text
    assert "meterhub_session" not in visitor.cookies


def test_login_goes_on_only_to_pages_of_this_site(dashboard: Dashboard) -> None:
    visitor = TestClient(dashboard.app, follow_redirects=False)
    for target, expected in (("/meters?page=2", "/meters?page=2"), ("//evil.example", "/")):
        form = {"username": "operator", "password": "correct horse", "next": target}
        answer = visitor.post("/login", data=form)
        assert answer.headers["location"] == expected
        assert "httponly" in answer.headers["set-cookie"].lower()


def test_the_session_token_is_an_api_token_until_logout(dashboard: Dashboard) -> None:
    token = dashboard.cookies["meterhub_session"]
    api = {"Authorization": f"token {token}"}
    assert dashboard.get("/api/v1/meters/", headers=api).status_code == 200
    assert dashboard.form("/logout").headers["location"] == "/login"
    assert dashboard.get("/api/v1/meters/", headers=api).status_code == 401
    dashboard.cookies.set("meterhub_session", token)  # a kept copy of the cookie is dead too
    assert dashboard.get("/").headers["location"].startswith("/login")


def test_a_form_without_its_csrf_value_is_refused(dashboard: Dashboard) -> None:
    answer = dashboard.post("/logout", data={"csrf": "0" * 64})
    assert answer.status_code == 403
    assert "did not come from this site" in answer.text
    assert (
        dashboard.get(
            "/api/v1/meters/",
            headers={"Authorization": f"token {dashboard.cookies['meterhub_session']}"},
        ).status_code
        == 200
    )


def test_api_docs_are_served_from_local_assets(dashboard: Dashboard) -> None:
    page = dashboard.get("/docs").text
    assert "/static/vendor/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()
    assert dashboard.get("/static/vendor/swagger-ui-bundle.js").status_code == 200


def test_every_answer_tells_its_server_time(dashboard: Dashboard) -> None:
    for path in ("/", "/api/v1/meters/", "/static/dashboard.css"):
        timing = dashboard.get(path).headers["server-timing"]
        assert re.fullmatch(r"app;dur=\d+\.\d", timing), (path, timing)
