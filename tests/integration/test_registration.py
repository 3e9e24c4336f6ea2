"""Registering simulated meters with a real running server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from meterhub.collector.registration import register_meters
from tests.support import Server


def test_register_meters_counts_new_known_and_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meterhub.db'}"
    with Server(url, tmp_path, METERHUB_COLLECTOR_ENABLED="false") as server:
        first = [(meter_id, 9000 + meter_id) for meter_id in range(1, 11)]
        refused = asyncio.run(register_meters(server.url, first, concurrency=4))
        assert (refused.registered, refused.failed) == (0, 10)  # no token, no open ingest
        assert "HTTP 401" in refused.errors[0]
        result = asyncio.run(register_meters(server.url, first, token=server.token))
        assert (result.registered, result.already, result.failed) == (10, 0, 0)

        again = [*first[:5], (11, 9011), (12, 9012), (13, 70000)]
        result = asyncio.run(register_meters(server.url + "/", again, token=server.token))
        assert (result.registered, result.already, result.failed) == (2, 5, 1)
        assert "meter 13 (port 70000): HTTP 400" in result.errors[0]

        meters = httpx.get(server.url + "/api/v1/meters/", headers=server.headers).json()
        assert meters["count"] == 12
