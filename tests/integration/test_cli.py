"""The command line as a user meets it: help everywhere, migrations, and the demo."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from meterhub.cli import main
from meterhub.db import make_engine
from meterhub.registry.sources import get_source, source_tags
from meterhub.registry.users import user_for_token
from tests.support import free_port, wait_until

COMMANDS = [
    [],
    ["serve"],
    ["simulate"],
    ["sweep"],
    ["demo"],
    ["source"],
    ["source", "create"],
    ["user", "create"],
    ["token", "create"],
    ["billing", "run"],
    ["db"],
    ["db", "upgrade"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "meterhub")
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: meterhub" in capsys.readouterr().out


def test_db_upgrade_creates_the_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert main(["db", "upgrade", "--database", url]) == 0
    assert main(["db", "upgrade", "--database", url]) == 0  # idempotent
    assert "up to date" in capsys.readouterr().out


def test_source_create_makes_a_source_with_tags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'sources.db'}"
    command = ["source", "create", "plant-1", "--name", "Plant 1", "--database", url]
    assert main([*command, "--tag", "plant-1.flow", "--tag", "plant-1.level"]) == 0
    assert "created data source plant-1 with 2 tags" in capsys.readouterr().out
    engine = make_engine(url)
    with engine.connect() as conn:
        assert get_source(conn, "plant-1").name == "Plant 1"
        assert [tag.key for tag in source_tags(conn, "plant-1")] == [
            "plant-1.flow",
            "plant-1.level",
        ]
    engine.dispose()
    with pytest.raises(SystemExit, match="already exists"):  # the id is taken
        main([*command, "--tag", "other"])


def test_user_and_token_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'users.db'}"
    created = ["user", "create", "ops", "--password", "long enough", "--admin", "--database", url]
    assert main(created) == 0
    assert "created user ops (id 1, admin)" in capsys.readouterr().out
    assert main(["token", "create", "ops", "--database", url]) == 0
    token = capsys.readouterr().out.strip()
    assert re.fullmatch(r"1:[0-9a-f]{40}", token)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert user_for_token(conn, token).is_admin
    engine.dispose()
    with pytest.raises(SystemExit, match="at least 8 characters"):
        main(["user", "create", "short", "--password", "x", "--database", url])
    with pytest.raises(SystemExit, match="no project with id 9"):
        main(
            [
                "user",
                "create",
                "li",
                "--password",
                "long enough",
                "--project",
                "9",
                "--database",
                url,
            ]
        )


def test_bad_setting_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["db", "upgrade", "--database", "mysql://nowhere/db"])
    assert exit_info.value.code == 2
    assert "database_url" in capsys.readouterr().err


def _started(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``meterhub <command>`` in a session of its own (so Ctrl-C can reach all of it, as in a
    terminal), its output to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "meterhub.cli", *command],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _ctrl_c(process: subprocess.Popen[bytes]) -> int:
    """SIGINT to the whole process group, as a terminal's Ctrl-C; the exit code."""
    os.killpg(process.pid, signal.SIGINT)
    return process.wait(timeout=30)


BANNER = re.compile(
    r"meterhub serving on (http://127\.0\.0\.1:\d+) \(API docs: \1/docs\); Ctrl-C stops it\n"
)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_serve_prints_one_banner_then_only_problems(
    tmp_path: Path, workers: int, verbose: bool
) -> None:
    """Quiet by default: a fresh database is migrated, requests are served and Ctrl-C stops
    every worker without a line beyond the banner; ``--verbose`` logs all of it."""
    env = {**os.environ, "METERHUB_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}"}
    command = ["serve", "--port", "0", "--no-collector", "--workers", str(workers)]
    log = tmp_path / "serve.log"
    server = _started([*command, *["--verbose"] * verbose], log, env)
    try:
        wait_until(lambda: BANNER.search(log.read_text()), timeout=30, interval=0.05)
        found = BANNER.search(log.read_text())
        assert found is not None
        url = found.group(1)
        assert httpx.get(url + "/docs").status_code == 200
        assert httpx.get(url + "/counter-data/1/").status_code == 401
        assert httpx.post(url + "/smt/dataSources/connect", json={"id": "1"}).status_code == 401
    finally:
        assert _ctrl_c(server) == 0
    printed = log.read_text()
    if not verbose:
        assert BANNER.fullmatch(printed), printed
        return
    for line in (
        "INFO alembic.runtime.migration Running upgrade  -> 0001",
        "Application startup complete",
        '"GET /docs HTTP/1.1" 200',
        '"GET /counter-data/1/ HTTP/1.1" 401',
    ):
        assert line in printed
    assert printed.count("Application startup complete") == workers
    assert len(BANNER.findall(printed)) == 1
    assert "Traceback" not in printed


def _meters(client: httpx.Client) -> list[dict[str, object]]:
    answer = client.get("/api/v1/meters/", params={"page_size": 1000})
    results: list[dict[str, object]] = answer.json()["results"]
    return results


def test_demo_shows_200_online_meters_with_advancing_readings(tmp_path: Path) -> None:
    """The demo's meters come online and advance, its estate is laid out, and all it prints
    is its banner (no migration, startup or access lines); with ``--verbose`` those lines
    are back. One test: both demos take the ports from 9000 on."""
    port = free_port()
    env = {**os.environ, "METERHUB_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"}
    printed = tmp_path / "demo.log"
    demo = _started(["demo", "--port", str(port)], printed, env)
    try:
        wait_until(lambda: "Authorization: token" in printed.read_text(), timeout=30)
        token = re.search(r"Authorization: token (\S+)'", printed.read_text())
        assert token is not None
        headers = {"Authorization": f"token {token.group(1)}"}
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, headers=headers, timeout=5) as client:

            def all_online() -> bool:
                try:
                    meters = _meters(client)
                except httpx.HTTPError:
                    return False
                return len(meters) == 200 and all(
                    m["health"]["status"] == "online"  # type: ignore[index]
                    for m in meters
                )

            wait_until(all_online, timeout=30)
            assert httpx.get(url + "/api/v1/meters/").status_code == 401  # only ingest is open
            first = httpx.get(url + "/counter-data/9000/").json()
            wait_until(lambda: client.get("/counter-data/9000/").json() != first, timeout=12)
            later = client.get("/counter-data/9000/").json()
            assert later["kW"] > first["kW"]
            [estate] = client.get("/api/v1/projects/").json()["results"]
            houses = client.get(f"/api/v1/projects/{estate['id']}/houses/?page_size=100")
            assert [len(h["devices"]) for h in houses.json()["results"]] == [10] * 20
            tasks = client.get(f"/api/v1/scheduler/tasks/?project_id={estate['id']}").json()
            assert [t["name"] for t in tasks["data"]["results"]] == ["Hourly electricity"]
        password = re.search(r"user admin, password (\S+)\)", printed.read_text())
        assert password is not None
        with httpx.Client(base_url=url, timeout=5) as browser:
            form = {"username": "admin", "password": password.group(1)}
            assert browser.post("/login", data=form).status_code == 303
            assert "200" in browser.get("/").text
    finally:
        assert _ctrl_c(demo) == 0
    assert printed.read_text() == DEMO_BANNER.format(
        port=port, password=password.group(1), token=token.group(1)
    )
    _check_verbose_demo(tmp_path)


DEMO_BANNER = """\
meterhub demo: 200 simulated meters on ports 9000-9199 (200 newly registered), polled every 5 s
  dashboard:     http://127.0.0.1:{port}/  (user admin, password {password})
  API docs:      http://127.0.0.1:{port}/docs
  one meter:     http://127.0.0.1:{port}/counter-data/9000/
  API token:     {token}
  counter and /smt/ calls are open; everything else needs the token:
    curl -H 'Authorization: token {token}' http://127.0.0.1:{port}/api/v1/meters/
  Ctrl-C stops the demo.
"""


def _check_verbose_demo(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "METERHUB_DATABASE_URL": f"sqlite:///{tmp_path / 'verbose.db'}"}
    printed = tmp_path / "verbose.log"
    demo = _started(["demo", "--port", str(port), "--meters", "2", "--verbose"], printed, env)
    try:
        wait_until(lambda: "Ctrl-C stops the demo." in printed.read_text(), timeout=30)
        assert httpx.get(f"http://127.0.0.1:{port}/counter-data/9000/").status_code in (200, 404)
    finally:
        assert _ctrl_c(demo) == 0
    text = printed.read_text()
    assert "INFO alembic.runtime.migration Running upgrade" in text
    assert "Application startup complete" in text
    assert '"GET /counter-data/9000/ HTTP/1.1"' in text
    assert text.count("Ctrl-C stops the demo.") == 1
