"""Servers for benchmarks: a command on port 0, and ``meterhub serve`` on a database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

Started = Callable[[str], str | None]
"""Given a server's output so far, its URL once it serves, else None."""


def uvicorn_started(workers: int) -> Started:
    """Started for a plain uvicorn server: it said where it runs, and each of ``workers``
    said its application has started."""

    def started(text: str) -> str | None:
        found = re.search(r"running on (http://[\d.:]+)", text)
        complete = text.count("Application startup complete") >= workers
        return found.group(1) if found and complete else None

    return started


def meterhub_started(text: str) -> str | None:
    """Started for ``meterhub serve``: its banner, printed once every worker serves."""
    found = re.search(r"^meterhub serving on (http://[\d.:]+)", text, re.MULTILINE)
    return found.group(1) if found else None


@contextmanager
def running(command: list[str], env: dict[str, str], log: Path, started: Started) -> Iterator[str]:
    """Start a server on port 0; yield its URL once ``started`` finds it in its output."""
    with log.open("wb") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (url := started(text := log.read_text())):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {text}")
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=90)


@contextmanager
def serving(url: str, tmp: Path, **settings: str) -> Iterator[str]:
    """``meterhub serve`` on ``url`` with the collector and scheduler off (and ``settings``)."""
    env = {
        **os.environ,
        "METERHUB_DATABASE_URL": url,
        "METERHUB_COLLECTOR_ENABLED": "false",
        "METERHUB_SCHEDULER_ENABLED": "false",
        **settings,
    }
    command = [sys.executable, "-m", "meterhub.cli", "serve", "--port", "0"]
    with running(command, env, tmp / "server.log", meterhub_started) as base:
        yield base
