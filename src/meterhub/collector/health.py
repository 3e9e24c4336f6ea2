"""Poll health of one meter as pure state transitions, and the backoff it implies."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import StrEnum

log = logging.getLogger("meterhub.collector")


class Status(StrEnum):
    NEVER_SEEN = "never_seen"
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Health:
    """What the collector knows of one meter; times in µs, durations in ms."""

    status: Status = Status.NEVER_SEEN
    last_attempt: int | None = None
    last_seen: int | None = None
    last_error: str | None = None
    last_error_at: int | None = None
    consecutive_failures: int = 0
    last_duration_ms: float | None = None
    polls: int = 0
    failures: int = 0


def succeeded(
    health: Health, device_id: str, at: int, duration_ms: float, warning: str | None = None
) -> Health:
    """The meter answered well (``warning``: usable but flagged, e.g. a register reset)."""
    if health.status is Status.OFFLINE:
        failures = health.consecutive_failures
        log.info("meter %s is back online after %d failures", device_id, failures)
    if warning:
        log.warning("meter %s: %s", device_id, warning)
    return replace(
        health,
        status=Status.ONLINE,
        last_attempt=at,
        last_seen=at,
        last_duration_ms=duration_ms,
        consecutive_failures=0,
        polls=health.polls + 1,
        last_error=warning or health.last_error,
        last_error_at=at if warning else health.last_error_at,
    )


def failed(health: Health, device_id: str, at: int, duration_ms: float, error: str) -> Health:
    """The meter could not be read; logged once when it goes offline, not every cycle."""
    if health.status is not Status.OFFLINE:
        log.warning("meter %s is offline: %s", device_id, error)
    return replace(
        health,
        status=Status.OFFLINE,
        last_attempt=at,
        last_duration_ms=duration_ms,
        last_error=error,
        last_error_at=at,
        consecutive_failures=health.consecutive_failures + 1,
        polls=health.polls + 1,
        failures=health.failures + 1,
    )


def cycles_to_skip(health: Health, interval: float, max_backoff: float) -> int:
    """Whole intervals to wait before the next try: 0, then 1, 3, 7, ... capped by max_backoff.

    A failing meter is retried ever more rarely but never forgotten.
    """
    if health.consecutive_failures == 0:
        return 0
    cap = max(1, int(max_backoff // interval))
    wait: int = min(2 ** (health.consecutive_failures - 1), cap)
    return wait - 1


def retry_due(health: Health, at: int, interval: float, max_backoff: float) -> bool:
    """Whether a meter is polled in the interval slot at ``at`` (µs): yes, unless it is
    failing and its backoff (``cycles_to_skip``) has not passed since its last try."""
    skip = cycles_to_skip(health, interval, max_backoff)
    if skip == 0 or health.last_attempt is None:
        return True
    return at - health.last_attempt >= (skip + 0.5) * interval * 1e6
