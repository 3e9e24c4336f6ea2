"""The Celery app of ``meterhub worker``, and its tasks: polling a published shard and billing
a chunk of a run. Both call the same poller and billing code ``serve`` runs in-process.

The broker is ``METERHUB_BROKER_URL`` (``redis://`` or ``amqp://``); no result backend. Tasks
are acknowledged once done (``acks_late``), and given back to the broker when the process
running them dies (``reject_on_worker_lost``), so another worker runs them; each worker
process takes one task at a time. On Redis, a task whose worker vanished is handed out
again ``broker_visibility_timeout`` seconds after it was (RabbitMQ: as the connection
drops). ``celery -A meterhub.celery_app inspect active`` (and ``events``, Flower) work on
it as on any Celery app.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from celery import Celery, Task, signals
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from meterhub.billing.chunked import EarlierRunPending, run_chunk
from meterhub.collector.intervals import Shard
from meterhub.collector.service import poll_published
from meterhub.db import make_engine
from meterhub.settings import Settings
from meterhub.times import now_us
from meterhub.workers import forget_worker, heartbeat

log = logging.getLogger("meterhub.worker")

POLL_SHARD, BILL_CHUNK = "meterhub.poll_shard", "meterhub.bill_chunk"


class _Process:
    """This process's settings and engine (a worker process makes its own engine)."""

    settings = Settings()
    engine: Engine | None = None

    @classmethod
    def database(cls) -> Engine:
        if cls.engine is None:
            cls.engine = make_engine(cls.settings.database_url)
        return cls.engine


def configure(app: Celery, settings: Settings) -> None:
    """Point ``app`` at ``settings``' broker, with the delivery guarantees above."""
    _Process.settings, _Process.engine = settings, None
    app.conf.update(
        broker_url=settings.broker_url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        },
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_default_queue=settings.broker_queue,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
    )


app = Celery("meterhub")
configure(app, _Process.settings)


@app.task(name=POLL_SHARD)
def poll_shard(
    interval_start: int, number: int, count: int, offset_s: float, pks: list[int], phased: bool
) -> dict[str, int]:
    """Poll one shard (``collector.intervals``): each meter not yet stored in the interval,
    at its phase of the interval when ``phased`` (else at once)."""
    shard = Shard(interval_start, number, count, offset_s, tuple(pks))
    worker = poll_shard.request.hostname or socket.gethostname()
    done = poll_published(_Process.settings, _Process.database(), shard, phased, worker)
    return done._asdict()


@app.task(
    name=BILL_CHUNK,
    bind=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=8,
)
def bill_chunk(self: Task[Any, Any], run_id: int, chunk: int) -> dict[str, int]:
    """Bill one chunk of devices of a billing run (``billing.chunked``); tried again later
    when the database fails (away, or a transaction it had to cancel), and every second
    while an earlier run of its task is billing."""
    try:
        with _Process.database().begin() as conn:
            billed, skipped = run_chunk(conn, run_id, chunk)
    except EarlierRunPending as exc:
        raise self.retry(exc=exc, countdown=1.0, max_retries=None) from exc
    return {"billed": billed, "skipped": skipped}


def send_shard(shard: Shard, phased: bool, expires_at: int) -> None:
    """Publish ``shard``; the broker drops it unstarted once ``expires_at`` (µs) passes."""
    args = (shard.interval_start, shard.number, shard.count, shard.offset_s, shard.pks, phased)
    poll_shard.apply_async(args, expires=max(0.0, (expires_at - now_us()) / 1e6))


def send_bill_chunk(run_id: int, chunk: int) -> None:
    bill_chunk.apply_async((run_id, chunk))


class _Heartbeat:
    """The worker's row in ``workers``, renewed every ``worker_heartbeat`` seconds by a
    thread of the worker's main process while it runs."""

    stop = threading.Event()
    thread: threading.Thread | None = None

    @classmethod
    def start(cls, name: str, concurrency: int) -> None:
        settings = _Process.settings
        engine = make_engine(settings.database_url)
        started = now_us()
        host, pid = socket.gethostname(), os.getpid()

        def beat() -> None:
            while True:
                try:
                    with engine.begin() as conn:
                        heartbeat(conn, name, host, pid, concurrency, started, now_us())
                except Exception:
                    log.exception("worker heartbeat failed; trying again")
                if cls.stop.wait(settings.worker_heartbeat):
                    break
            with engine.begin() as conn:
                forget_worker(conn, name)
            engine.dispose()

        cls.thread = threading.Thread(target=beat, name="meterhub-heartbeat", daemon=True)
        cls.thread.start()


@signals.worker_ready.connect
def _worker_ready(sender: Any, **_: Any) -> None:
    _Heartbeat.start(sender.hostname, sender.controller.concurrency)


@signals.worker_shutdown.connect
def _worker_shutdown(**_: Any) -> None:
    _Heartbeat.stop.set()
    if _Heartbeat.thread is not None:
        _Heartbeat.thread.join(10)


@signals.worker_process_init.connect
def _process_init(**_: Any) -> None:
    _Process.engine = None  # a forked child makes its own connections
