"""Registering simulated meters with a running server through ``POST /counter/``."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

MAX_REPORTED_ERRORS = 5
REGISTER_TIMEOUT = 10.0


@dataclass(frozen=True)
class RegistrationResult:
    """Outcome of registering meters: counts and the first few error messages."""

    registered: int
    already: int
    failed: int
    errors: tuple[str, ...]


async def register_meters(
    base_url: str,
    meters: Iterable[tuple[int, int]],
    *,
    source_address: str | None = None,
    token: str | None = None,
    concurrency: int = 32,
) -> RegistrationResult:
    """POST ``{"id": meter_id, "port": port}`` to ``{base_url}/counter/`` for every meter,
    with ``Authorization: token <token>`` when given (not needed with open ingest).

    201 counts as registered, a 400 saying the id or port already exists as already
    registered, anything else (including transport errors) as failed.
    """
    url = base_url.rstrip("/") + "/counter/"
    transport = httpx.AsyncHTTPTransport(
        local_address=source_address, limits=httpx.Limits(max_connections=concurrency)
    )
    outcomes: Counter[str] = Counter()
    errors: list[str] = []
    todo = iter(meters)

    async def worker(client: httpx.AsyncClient) -> None:
        for meter_id, port in todo:
            outcome, error = await _register_one(client, url, meter_id, port)
            outcomes[outcome] += 1
            if error is not None and len(errors) < MAX_REPORTED_ERRORS:
                errors.append(error)

    headers = {"Authorization": f"token {token}"} if token else None
    client = httpx.AsyncClient(transport=transport, timeout=REGISTER_TIMEOUT, headers=headers)
    async with client, asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker(client))
    return RegistrationResult(
        outcomes["registered"], outcomes["already"], outcomes["failed"], tuple(errors)
    )


async def _register_one(
    client: httpx.AsyncClient, url: str, meter_id: int, port: int
) -> tuple[str, str | None]:
    """``(outcome, error message or None)`` of registering one meter."""
    try:
        response = await client.post(url, json={"id": meter_id, "port": port})
    except httpx.HTTPError as exc:
        return "failed", f"meter {meter_id} (port {port}): {type(exc).__name__}: {exc}"
    if response.status_code == 201:
        return "registered", None
    if response.status_code == 400 and _says_already_exists(response):
        return "already", None
    return "failed", f"meter {meter_id} (port {port}): HTTP {response.status_code} {response.text}"


def _says_already_exists(response: httpx.Response) -> bool:
    """Whether a 400 body's ``errors`` say the id or the port is already taken."""
    try:
        body = response.json()
    except ValueError:
        return False
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, dict):
        return False
    return "already" in json.dumps([errors.get("id"), errors.get("port")]).lower()
