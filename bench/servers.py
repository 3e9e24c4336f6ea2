"""Servers for benchmarks: a command on port 0, and ``meterhub serve`` on a database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def running(command: list[str], env: dict[str, str], workers: int, log: Path) -> Iterator[str]:
    """Start a server on port 0; yield its URL once every worker has started."""
    with log.open("wb") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while (
            not (found := re.search(r"running on (http://[\d.:]+)", text := log.read_text()))
            or text.count("Application startup complete") < workers
        ):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {text}")
            time.sleep(0.1)
        yield found.group(1)
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
    workers = int(env.get("METERHUB_WORKERS", "1"))
    with running(command, env, workers, tmp / "server.log") as base:
        yield base
