"""Many requests at once against a real server: none waits on the connection pool."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.support import Server

AT_ONCE = 80  # more than the worker threads (40) and the pool (15) together


async def fetch_all(server: Server, path: str) -> list[int]:
    limits = httpx.Limits(max_connections=AT_ONCE)
    async with httpx.AsyncClient(
        base_url=server.url, headers=server.headers, timeout=60, limits=limits
    ) as client:
        answers = await asyncio.gather(*(client.get(path) for _ in range(AT_ONCE)))
    return [answer.status_code for answer in answers]


def test_more_requests_than_threads_and_connections_all_answer_promptly(
    database_url: str, tmp_path: Path
) -> None:
    env = {"METERHUB_COLLECTOR_ENABLED": "false", "METERHUB_SCHEDULER_ENABLED": "false"}
    with Server(database_url, tmp_path, **env) as server:
        for _ in range(3):
            started = time.monotonic()
            statuses = asyncio.run(fetch_all(server, "/api/v1/meters/"))
            took = time.monotonic() - started
            assert statuses == [200] * AT_ONCE
            # a request waiting for a pooled connection while holding the thread another
            # needs to give one back stalls until the pool's 30 s timeout
            assert took < 15, f"{AT_ONCE} requests took {took:.1f} s"
