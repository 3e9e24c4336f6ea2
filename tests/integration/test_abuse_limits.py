"""Limits on abuse: failed logins and bad tokens (per account and per address, counted in the
database), and request bodies over ``max_body_bytes``.

In-process tests run the real app on each database with an injected clock (the lockout
windows pass without waiting); the server tests run ``meterhub serve`` (two workers where
the counts must be shared) and talk HTTP to it, raw where the framing matters.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from meterhub.api.app import create_app
from meterhub.db import make_engine
from meterhub.registry.users import create_user, issue_token, revoke_token
from meterhub.settings import Settings
from meterhub.times import now_us
from tests.support import Server

PASSWORD = "correct horse"
LOGIN = "/api/v1/auth/login/"
SECOND = 1_000_000
LIMIT = 64 * 1024
Answer = httpx2.Response


class Clock:
    """The throttle's clock: µs since the epoch, moved by the test."""

    def __init__(self) -> None:
        self.now = now_us()

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * SECOND)


@dataclass
class Site:
    app: Any
    clock: Clock
    engine: Engine
    token: str

    def client(self, address: str = "192.0.2.1") -> TestClient:
        """A client calling from ``address``."""
        return TestClient(self.app, client=(address, 50000))

    def failures(self) -> int:
        with self.engine.connect() as conn:
            count: int = conn.execute(text("SELECT count(*) FROM auth_failures")).scalar_one()
        return count


@pytest.fixture
def site(database_url: str, engine: Engine) -> Iterator[Site]:
    with engine.begin() as conn:
        admin = create_user(conn, "admin", PASSWORD, is_admin=True)
        create_user(conn, "clerk", PASSWORD)
        token = issue_token(conn, admin.id)
    settings = Settings(
        database_url=database_url,
        collector_enabled=False,
        scheduler_enabled=False,
        compact_enabled=False,
        token_max_failures_per_address=3,
        max_body_bytes=LIMIT,
    )
    app = create_app(settings)
    clock = Clock()
    app.state.throttle.clock = clock
    with TestClient(app):  # runs the lifespan
        yield Site(app, clock, engine, token)


def login(client: TestClient, username: str = "admin", password: str = "wrong") -> Answer:
    return client.post(LOGIN, json={"username": username, "password": password})


def refused(answer: Answer, seconds: int) -> None:
    """A 429 asking to wait ``seconds``."""
    assert answer.status_code == 429, answer.text
    assert answer.headers["retry-after"] == str(seconds)
    assert f"try again in {seconds} s" in answer.text


# --- failed logins -----------------------------------------------------------------------


def test_an_account_is_locked_after_repeated_failures_for_a_bounded_growing_time(
    site: Site,
) -> None:
    attacker = site.client("192.0.2.66")
    for _ in range(5):
        assert login(attacker).status_code == 401
    refused(login(attacker, password=PASSWORD), 60)  # even the right password: not checked
    refused(login(site.client("192.0.2.67"), password=PASSWORD), 60)  # from anywhere new
    site.clock.advance(59)
    refused(login(attacker), 1)
    site.clock.advance(1)
    lock = 60
    for n, expected in enumerate((120, 240, 480, 900, 900)):
        attacker = site.client(f"192.0.2.{100 + n}")  # each under its address limit
        for _ in range(5):  # refused attempts were not counted
            assert login(attacker).status_code == 401
        refused(login(attacker), expected)  # each lockout in a row twice as long, at most 900
        lock = expected
        site.clock.advance(lock)
    site.clock.advance(900)  # a whole window after the lockout ended: the streak is forgotten
    for _ in range(5):
        assert login(attacker).status_code == 401
    refused(login(attacker), 60)


def test_a_success_resets_the_accounts_count(site: Site) -> None:
    client = site.client()
    for _ in range(4):
        assert login(client).status_code == 401
    assert login(client, password=PASSWORD).status_code == 200
    for _ in range(4):
        assert login(client).status_code == 401
    assert login(client, password=PASSWORD).status_code == 200


def test_a_locked_account_still_logs_in_from_where_it_logged_in_before(site: Site) -> None:
    """An attacker elsewhere cannot lock the owner out of their usual address."""
    office = site.client("198.51.100.7")
    assert login(office, password=PASSWORD).status_code == 200
    attacker = site.client("203.0.113.9")
    for _ in range(5):
        assert login(attacker).status_code == 401
    refused(login(attacker, password=PASSWORD), 60)
    refused(login(site.client("203.0.113.10"), password=PASSWORD), 60)
    assert login(office, password=PASSWORD).status_code == 200
    # the office's success reset the account's count: the attacker starts over
    assert login(attacker).status_code == 401


def test_one_address_is_locked_after_failing_on_many_accounts(site: Site) -> None:
    sprayer = site.client("203.0.113.20")
    for n in range(20):
        assert login(sprayer, username=f"user{n}").status_code == 401
    refused(login(sprayer, username="clerk", password=PASSWORD), 60)
    assert login(site.client("203.0.113.21"), "clerk", PASSWORD).status_code == 200


def test_the_login_form_and_the_api_share_the_counts(site: Site) -> None:
    client = site.client()
    for _ in range(3):
        assert login(client).status_code == 401
    for _ in range(2):
        form = {"username": "admin", "password": "wrong"}
        assert client.post("/login", data=form, follow_redirects=False).status_code == 401
    page = client.post("/login", data={"username": "admin", "password": PASSWORD})
    refused(page, 60)
    assert '<p class="alert" role="alert">too many failed logins of admin' in page.text
    assert "meterhub_session" not in client.cookies


def test_counters_that_hold_nothing_are_purged(site: Site) -> None:
    from meterhub.registry.throttle import _purge as purge

    for address in ("192.0.2.150", "192.0.2.151"):
        assert login(site.client(address)).status_code == 401
    site.clock.advance(900)  # their window is over, and they were never locked
    assert login(site.client("192.0.2.152")).status_code == 401
    with site.engine.begin() as conn:
        purge(conn, site.clock(), 900 * SECOND)
    with site.engine.connect() as conn:
        keys = set(conn.execute(text("SELECT key FROM auth_failures")).scalars())
    assert keys == {"account:admin", "address:192.0.2.152"}


# --- bad tokens ----------------------------------------------------------------------------


BAD_TOKEN_CALLS = [
    ("GET", "/api/v1/meters/", None),
    ("GET", "/counter-data/1/", None),
    ("POST", "/smt/data/get", {"tagId": "x"}),
    ("GET", "/api/v1/scheduler/tasks/?project_id=1", None),
    ("POST", "/api/v1/auth/logout/", None),
]


@pytest.mark.parametrize(("method", "path", "body"), BAD_TOKEN_CALLS)
def test_an_address_sending_bad_tokens_is_slowed_down(
    site: Site, method: str, path: str, body: object
) -> None:
    client = site.client("203.0.113.30")
    with site.engine.begin() as conn:
        revoked = issue_token(conn, 1)
        revoke_token(conn, revoked)
    for token in ("garbage", "1:" + "0" * 40, revoked):
        answer = client.request(method, path, json=body, headers=auth(token))
        assert answer.status_code == 401, answer.text
    answer = client.request(method, path, json=body, headers=auth("1:" + "1" * 40))
    refused(answer, 60)
    if path.startswith("/smt/"):
        assert answer.json()["error"]["id"] == 10
    elif "/scheduler/" in path:
        assert answer.json()["meta"]["code"] == 429
    else:
        assert set(answer.json()) == {"detail"}
    # valid tokens are served as ever, from that address too; other addresses are not slowed
    assert client.get("/api/v1/meters/", headers=auth(site.token)).status_code == 200
    other = site.client("203.0.113.31").get("/api/v1/meters/", headers=auth("garbage"))
    assert other.status_code == 401
    site.clock.advance(60)
    assert client.get("/api/v1/meters/", headers=auth("garbage")).status_code == 401


def test_a_missing_token_is_not_counted_and_a_valid_one_writes_nothing(site: Site) -> None:
    client = site.client()
    for _ in range(10):
        assert client.get("/api/v1/meters/").status_code == 401
        assert client.get("/api/v1/meters/", headers=auth(site.token)).status_code == 200
        assert client.get("/counter-data/1/", headers=auth(site.token)).status_code == 404
    assert site.failures() == 0


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


# --- request bodies ------------------------------------------------------------------------

BODY_CALLS: list[tuple[str, Callable[[Answer], bool]]] = [
    ("/api/v1/meters/", lambda a: list(a.json()["errors"]) == ["body"]),
    ("/smt/data/set", lambda a: a.json()["error"]["id"] == 7),
    ("/api/v1/scheduler/task/", lambda a: a.json()["meta"]["code"] == 413),
    ("/meters", lambda a: list(a.json()["errors"]) == ["body"]),
]
"""Paths of each surface, and whether a 413 came in its envelope, naming the body."""


@pytest.mark.parametrize(("path", "enveloped"), BODY_CALLS)
def test_a_body_over_the_limit_is_refused_before_it_is_read(
    site: Site, path: str, enveloped: Callable[[Answer], bool]
) -> None:
    client = site.client()
    headers = auth(site.token)
    if path == "/meters":  # a dashboard form: its body is read once the session is checked
        client.post("/login", data={"username": "clerk", "password": PASSWORD})
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    declared = client.post(path, content=b" " * (LIMIT + 1), headers=headers)
    assert declared.status_code == 413, declared.text
    assert f"over {LIMIT} bytes" in declared.text
    assert enveloped(declared), declared.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        for _ in range(LIMIT // 1024 + 2):
            yield b" " * 1024

    streamed = client.post(path, content=chunks(), headers=headers)
    assert streamed.status_code == 413, streamed.text
    assert enveloped(streamed), streamed.text


def test_a_body_within_the_limit_goes_through(site: Site) -> None:
    client = site.client()
    records = [{"tagId": f"t{n}", "data": []} for n in range(2048)]
    body = json.dumps({"data": records}).encode()
    body += b" " * (LIMIT - len(body))
    assert len(body) == LIMIT
    answer = client.post("/smt/data/set", content=body, headers=auth(site.token))
    assert answer.json()["error"]["id"] == 4, answer.text  # read whole: the tags are unknown

    def chunks() -> Iterator[bytes]:
        yield body[: len(body) // 2]
        yield body[len(body) // 2 :]

    answer = client.post("/smt/data/set", content=chunks(), headers=auth(site.token))
    assert answer.json()["error"]["id"] == 4, answer.text


# --- through the real server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``meterhub serve --workers 2`` on SQLite, without background jobs."""
    tmp = tmp_path_factory.mktemp("limits")
    env = {
        "METERHUB_WORKERS": "2",
        "METERHUB_COLLECTOR_ENABLED": "false",
        "METERHUB_SCHEDULER_ENABLED": "false",
        "METERHUB_COMPACT_ENABLED": "false",
        "METERHUB_MAX_BODY_BYTES": str(LIMIT),
    }
    with Server(f"sqlite:///{tmp / 'meterhub.db'}", tmp, **env) as running:
        engine = make_engine(f"sqlite:///{tmp / 'meterhub.db'}")
        with engine.begin() as conn:
            create_user(conn, "owner", PASSWORD)
            create_user(conn, "visitor", PASSWORD)
        engine.dispose()
        yield running


def test_lockouts_hold_across_worker_processes(server: Server) -> None:
    """Failures counted by two workers add up: neither of them saw five."""
    first, second = _clients_of_two_workers(server)
    body = {"username": "owner", "password": "wrong"}
    for client in (first, second, first, second, first):
        assert client.post(LOGIN, json=body).status_code == 401
    for client in (first, second):
        answer = client.post(LOGIN, json={**body, "password": PASSWORD})
        assert answer.status_code == 429, answer.text
        assert 1 <= int(answer.headers["retry-after"]) <= 60
    for client in (first, second):
        client.close()


def _clients_of_two_workers(server: Server) -> tuple[httpx.Client, httpx.Client]:
    """Two clients, each keeping one connection, served by different worker processes."""
    by_worker: dict[int, httpx.Client] = {}
    for _ in range(50):
        client = httpx.Client(
            base_url=server.url, timeout=10, limits=httpx.Limits(max_connections=1)
        )
        answer = client.get("/static/favicon.svg")
        sock = answer.extensions["network_stream"].get_extra_info("socket")
        worker = _process_serving(server.port, sock.getsockname()[1])
        if worker in by_worker:
            client.close()
        else:
            by_worker[worker] = client
        if len(by_worker) == 2:
            first, second = by_worker.values()
            return first, second
    raise AssertionError(f"all connections went to {sorted(by_worker)}")


def _process_serving(server_port: int, client_port: int) -> int:
    """The pid holding the server's end of the connection from ``client_port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = (int(f.rsplit(":", 1)[1], 16) for f in fields[1:3])
            if (local, remote) == (server_port, client_port):
                inodes.add(f"socket:[{fields[9]}]")
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) in inodes for fd in fd_dir.iterdir()):
                return int(fd_dir.parent.name)
        except OSError:  # another user's process, or one that just ended
            continue
    raise AssertionError(f"no process holds the connection from port {client_port}")


def test_the_server_refuses_a_declared_body_over_the_limit_without_reading_it(
    server: Server,
) -> None:
    head = (
        "POST /smt/data/set HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {100 << 20}\r\nExpect: 100-continue\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode())  # and not one byte of the 100 MiB
        answer = _read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert b"100 Continue" not in answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["id"] == 7


def test_the_server_stops_a_chunked_body_at_the_limit(server: Server) -> None:
    head = (
        "POST /api/v1/meters/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: token {server.token}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"400\r\n" + b" " * 1024 + b"\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode() + chunk * (LIMIT // 1024 + 1))
        answer = _read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["errors"]["body"]


def _read_answer(sock: socket.socket) -> bytes:
    """The response head and its body (by its Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or b"\r\n\r\n"
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: (\d+)", head)
    while length and len(body) < int(length[1]):
        more = sock.recv(65536)
        if not more:
            break
        body += more
    return head + b"\r\n\r\n" + body


def test_the_session_cookie_is_secure_behind_a_tls_proxy(server: Server) -> None:
    """uvicorn trusts ``X-Forwarded-Proto`` from the proxies it is told of (127.0.0.1 by
    default): the cookie is then ``Secure``; over plain HTTP it is not."""
    form = {"username": "visitor", "password": PASSWORD}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.90"}
        cookie = client.post("/login", data=form, headers=forwarded).headers["set-cookie"]
        assert re.search(r"(?i); secure\b", cookie), cookie
        assert re.search(r"(?i); httponly\b", cookie), cookie
        assert re.search(r"(?i); samesite=lax\b", cookie), cookie
        plain = client.post("/login", data=form, headers={"X-Forwarded-For": "192.0.2.91"})
        assert not re.search(r"(?i); secure\b", plain.headers["set-cookie"])
