"""The Celery workers polling meters and billing, as the database sees them:
``/api/v1/workers/`` (administrators) and ``/api/v1/workers/health`` (for load balancers
and monitors: 503 while no worker is alive)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from meterhub.api.deps import AdminUser, ConnDep, SettingsDep
from meterhub.times import now_us
from meterhub.workers import current_interval, list_workers

router = APIRouter(prefix="/api/v1/workers", tags=["workers"])


class WorkerPublic(BaseModel):
    name: str = Field(description="Celery node name (`--name`, by default the host's name).")
    host: str
    pid: int
    concurrency: int = Field(description="Worker processes.")
    started_at: int = Field(description="µs since the epoch.")
    heartbeat_at: int = Field(description="Last heartbeat, µs since the epoch.")
    alive: bool = Field(description="Heard from within three heartbeats.")
    shards_done: int = Field(description="Polling shards it finished in the last interval.")
    polls_per_second: float = Field(description="Its polls in the last interval, per second.")


class IntervalPublic(BaseModel):
    start: int = Field(description="Start of the current poll interval, µs since the epoch.")
    shards: int = Field(description="Shards planned for it (0: none published yet).")
    published: int
    done: int
    lag_s: float | None = Field(
        description="Seconds from its start to its last shard done, or, while shards are "
        "outstanding, to now; null before any was published."
    )


class WorkersPublic(BaseModel):
    broker: bool = Field(description="Whether a broker is configured (polling by workers).")
    interval: IntervalPublic
    workers: list[WorkerPublic]


class WorkersHealth(BaseModel):
    status: str = Field(description="`ok`, or `no-worker` (HTTP 503).")
    alive: int = Field(description="Workers alive.")


@router.get("/", operation_id="list_workers")
def workers_list(_admin: AdminUser, conn: ConnDep, settings: SettingsDep) -> WorkersPublic:
    """Every worker heard from in the last day, and the current poll interval's progress."""
    now, interval = now_us(), settings.poll_interval
    found = list_workers(conn, now, interval, settings.worker_heartbeat)
    return WorkersPublic(
        broker=settings.broker_url is not None,
        interval=IntervalPublic(**asdict(current_interval(conn, now, interval))),
        workers=[WorkerPublic(**asdict(worker)) for worker in found],
    )


@router.get(
    "/health",
    operation_id="workers_health",
    responses={503: {"model": WorkersHealth, "description": "No worker is alive"}},
)
def workers_health(conn: ConnDep, settings: SettingsDep) -> JSONResponse:
    """200 while at least one worker is alive (or no broker is configured: the server polls
    and bills by itself); 503 otherwise. Needs no token."""
    found = list_workers(conn, now_us(), settings.poll_interval, settings.worker_heartbeat)
    alive = sum(worker.alive for worker in found)
    healthy = alive > 0 or settings.broker_url is None
    body = WorkersHealth(status="ok" if healthy else "no-worker", alive=alive)
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)
