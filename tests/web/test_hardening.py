"""What the dashboard tells browsers (security headers, cookies), how notices travel (a
signed cookie, never the URL), and how the pages' JSON feeds answer errors (JSON, 401
once the session is gone)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from meterhub.settings import Settings
from meterhub.web.app import STATIC
from meterhub.web.session import COOKIE
from tests.web.conftest import Dashboard, log_in, page_notice, shown_notice
from tests.web.meters_support import add

TEMPLATES = Path(STATIC).parent / "templates"
NOTICE_COOKIE = "meterhub_notice"
SESSION_ENDED = "the session has ended: log in again"
PAGES = ["/", "/meters", "/meters/e-1", "/projects", "/billing/tasks", "/sources", "/login"]


def policy(answer: object) -> dict[str, str]:
    """The answer's Content-Security-Policy, by directive."""
    header = answer.headers["content-security-policy"]  # type: ignore[attr-defined]
    return dict(part.strip().split(" ", 1) for part in header.split(";"))


def test_pages_forbid_inline_scripts_framing_and_sniffing(
    dashboard: Dashboard, engine: Engine
) -> None:
    add(engine, "e-1", readings={"A": 1.0, "kW": 2.0})
    for path in PAGES:
        answer = dashboard.get(path)
        assert answer.status_code == 200, path
        directives = policy(answer)
        assert directives["script-src"] == "'self'", path
        assert directives["frame-ancestors"] == "'none'", path
        assert directives["object-src"] == "'none'", path
        assert "unsafe" not in answer.headers["content-security-policy"], path
        assert answer.headers["x-content-type-options"] == "nosniff", path
        assert answer.headers["referrer-policy"] == "same-origin", path
        assert answer.headers["x-frame-options"] == "DENY", path
        for script in re.findall(r"<script\b[^>]*>", answer.text):
            assert re.search(r'\bsrc="/static/[^"]+"', script), (path, script)
        assert not re.search(r"\son[a-z]+\s*=", answer.text), path
    api = dashboard.get("/api/v1/meters/", headers={"Authorization": "token x"})
    assert api.headers["x-content-type-options"] == "nosniff"


def test_no_template_or_script_holds_inline_code() -> None:
    """Every ``<script>`` loads a file; no element has an event handler attribute."""
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        for script in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in script, (template.name, script)
        assert not re.search(r"\son[a-z]+\s*=", text), template.name
        assert "javascript:" not in text, template.name


def test_the_docs_page_runs_swagger_from_files_under_its_own_policy(
    dashboard: Dashboard,
) -> None:
    answer = dashboard.get("/docs")
    directives = policy(answer)
    assert directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    scripts = re.findall(r"<script\b[^>]*>", answer.text)
    assert scripts == [
        '<script src="/static/vendor/swagger-ui-bundle.js">',
        '<script src="/static/docs.js">',
    ]
    assert 'data-openapi-url="/openapi.json"' in answer.text
    assert dashboard.get("/static/docs.js").status_code == 200


def test_the_session_cookie_is_httponly_samesite_and_secure_over_https(
    dashboard: Dashboard,
) -> None:
    form = {"username": "operator", "password": "correct horse"}
    for base, secure in (("http://testserver", False), ("https://testserver", True)):
        visitor = TestClient(dashboard.app, base_url=base, follow_redirects=False)
        cookie = visitor.post("/login", data=form).headers["set-cookie"].lower()
        assert cookie.startswith(f"{COOKIE}=")
        assert "; httponly" in cookie
        assert "; samesite=lax" in cookie
        assert ("; secure" in cookie) is secure, (base, cookie)


# --- notices -------------------------------------------------------------------------------


def test_a_link_cannot_make_a_page_show_a_notice(dashboard: Dashboard) -> None:
    for path in ("/meters", "/billing/tasks", "/sources", "/"):
        page = dashboard.get(f"{path}?notice=Your+account+is+closed:+call+555-0100").text
        assert page_notice(page) is None, path
        assert "555-0100" not in page, path


def test_a_notice_is_shown_once_after_its_action(dashboard: Dashboard, engine: Engine) -> None:
    add(engine, "e-1")
    answer = dashboard.form("/meters/e-1/disable?status=online")
    assert answer.headers["location"] == "/meters?status=online"
    cookie = answer.headers["set-cookie"].lower()
    assert cookie.startswith(f"{NOTICE_COOKIE}=")
    assert "; httponly" in cookie
    assert "; samesite=lax" in cookie
    assert "notice" not in answer.headers["location"]
    page = dashboard.get(answer.headers["location"])
    assert page_notice(page.text) == "Meter e-1 disabled: it is no longer polled."
    assert NOTICE_COOKIE not in dashboard.cookies  # cleared by the page that showed it
    assert page_notice(dashboard.get("/meters").text) is None


def test_a_forged_or_borrowed_notice_cookie_is_not_shown(
    dashboard: Dashboard, engine: Engine
) -> None:
    add(engine, "e-1")
    answer = dashboard.form("/meters/e-1/disable")
    genuine = dashboard.cookies[NOTICE_COOKIE]
    payload, _, mac = genuine.partition(".")
    forged = "WW91ciBhY2NvdW50IGlzIGNsb3NlZA." + mac  # "Your account is closed"
    for value in (forged, payload + "." + "0" * 64, payload, "garbage"):
        dashboard.cookies.delete(NOTICE_COOKIE)
        dashboard.cookies.set(NOTICE_COOKIE, value)
        assert page_notice(dashboard.get("/meters").text) is None, value
    # a genuine cookie of one session shows nothing in another
    other = Dashboard(dashboard.app, follow_redirects=False)
    log_in(other, "operator", "correct horse")
    other.cookies.set(NOTICE_COOKIE, genuine)
    assert page_notice(other.get("/meters").text) is None
    dashboard.cookies.delete(NOTICE_COOKIE)
    dashboard.cookies.set(NOTICE_COOKIE, genuine)
    assert shown_notice(dashboard, answer) == "Meter e-1 disabled: it is no longer polled."


# --- the pages' feeds ----------------------------------------------------------------------

FEEDS = [
    "/meters/e-1/series?channel=kW",
    "/meters/e-1/daily",
    "/meters/e-1/health",
    "/meters/e-1/live",
    "/billing/cron-preview?project_id=1&month=*&day=1&hour=0&minute=0",
]


@pytest.mark.parametrize("feed", FEEDS)
def test_a_feed_answers_401_json_once_the_session_is_gone(
    dashboard: Dashboard, engine: Engine, feed: str
) -> None:
    add(engine, "e-1")
    token = dashboard.cookies[COOKIE]
    assert dashboard.form("/logout").status_code == 303
    for cookies in ({}, {COOKIE: token}):  # no cookie, and a revoked session's
        visitor = TestClient(dashboard.app, follow_redirects=False, cookies=cookies)
        answer = visitor.get(feed)
        assert answer.status_code == 401, answer.text
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == {"detail": SESSION_ENDED, "errors": {}}


def test_feed_errors_are_json_naming_the_field(dashboard: Dashboard, engine: Engine) -> None:
    add(engine, "e-1")
    missing = dashboard.get("/meters/nope/series?channel=kW")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no meter with id nope", "errors": {}}
    for query, field in (
        ("/meters/e-1/series", "channel"),
        ("/meters/e-1/series?channel=V", "channel"),
        ("/meters/e-1/daily?from=soon", "from"),
        ("/billing/cron-preview?project_id=x&month=*&day=1&hour=0&minute=0", "project_id"),
    ):
        answer = dashboard.get(query)
        assert answer.status_code == 400, query
        assert answer.headers["content-type"] == "application/json", query
        assert field in answer.json()["errors"], (query, answer.text)


def test_a_stale_session_cookie_is_cleared_and_counted(dashboard: Dashboard) -> None:
    """A session cookie whose token is wrong is a bad token of the caller's address: the page
    clears it, and past ``token_max_failures_per_address`` the address is slowed down."""
    limit = Settings().token_max_failures_per_address  # the dashboard fixture's
    visitor = TestClient(dashboard.app, follow_redirects=False, client=("192.0.2.200", 1))
    for n in range(limit):
        visitor.cookies.set(COOKIE, f"1:{n:040x}")
        answer = visitor.get("/meters")
        assert answer.status_code == 303, n
        assert f'{COOKIE}=""' in answer.headers["set-cookie"], answer.headers["set-cookie"]
    visitor.cookies.set(COOKIE, "1:" + "f" * 40)
    page = visitor.get("/meters")
    assert page.status_code == 429
    assert int(page.headers["retry-after"]) == 60
    assert "too many bad sessions from this address" in page.text
    feed = visitor.get("/meters/e-1/series?channel=kW")
    assert feed.status_code == 429
    assert feed.json()["errors"] == {}
