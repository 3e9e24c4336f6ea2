"""Poll health transitions, logging once per outage, and the backoff they imply."""

from __future__ import annotations

import logging

import pytest

from meterhub.collector.health import (
    Health,
    Status,
    cycles_to_skip,
    failed,
    retry_due,
    succeeded,
)

LOGGER = "meterhub.collector"


def test_first_success() -> None:
    health = succeeded(Health(), "44", at=1_000, duration_ms=12.5)
    assert health == Health(
        status=Status.ONLINE,
        last_attempt=1_000,
        last_seen=1_000,
        last_duration_ms=12.5,
        polls=1,
    )


def test_first_failure() -> None:
    health = failed(Health(), "44", at=1_000, duration_ms=3.0, error="timeout")
    assert health == Health(
        status=Status.OFFLINE,
        last_attempt=1_000,
        last_error="timeout",
        last_error_at=1_000,
        consecutive_failures=1,
        last_duration_ms=3.0,
        polls=1,
        failures=1,
    )


def test_outage_and_recovery() -> None:
    health = succeeded(Health(), "44", at=1, duration_ms=1.0)
    health = failed(health, "44", at=2, duration_ms=2.0, error="timeout")
    health = failed(health, "44", at=3, duration_ms=3.0, error="refused")
    assert (health.status, health.consecutive_failures, health.last_seen) == (Status.OFFLINE, 2, 1)
    assert (health.last_error, health.last_error_at, health.last_attempt) == ("refused", 3, 3)

    health = succeeded(health, "44", at=4, duration_ms=4.0)
    assert health == Health(
        status=Status.ONLINE,
        last_attempt=4,
        last_seen=4,
        last_error="refused",  # the last error and its time stay for diagnosis
        last_error_at=3,
        consecutive_failures=0,
        last_duration_ms=4.0,
        polls=4,
        failures=2,
    )

    health = succeeded(health, "44", at=5, duration_ms=5.0, warning="register kW went backwards")
    assert (health.status, health.last_error, health.last_error_at) == (
        Status.ONLINE,
        "register kW went backwards",
        5,
    )
    assert (health.polls, health.failures, health.consecutive_failures) == (5, 2, 0)


def test_logs_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    def logged() -> list[tuple[int, str]]:
        records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]
        caplog.clear()
        return records

    health = succeeded(Health(), "44", at=1, duration_ms=1.0)
    assert logged() == []

    for at in (2, 3, 4):
        health = failed(health, "44", at=at, duration_ms=1.0, error=f"timeout {at}")
    assert logged() == [(logging.WARNING, "meter 44 is offline: timeout 2")]

    health = succeeded(health, "44", at=5, duration_ms=1.0)
    health = succeeded(health, "44", at=6, duration_ms=1.0)
    assert logged() == [(logging.INFO, "meter 44 is back online after 3 failures")]

    health = failed(health, "44", at=7, duration_ms=1.0, error="refused")
    assert logged() == [(logging.WARNING, "meter 44 is offline: refused")]

    health = succeeded(health, "44", at=8, duration_ms=1.0, warning="register kW went backwards")
    assert logged() == [
        (logging.INFO, "meter 44 is back online after 1 failures"),
        (logging.WARNING, "meter 44: register kW went backwards"),
    ]


def test_never_seen_meter_failing_logs_offline(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    health = failed(Health(), "7", at=1, duration_ms=1.0, error="refused")
    failed(health, "7", at=2, duration_ms=1.0, error="refused")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "meter 7 is offline: refused")
    ]


MINUTE = [0, 0, 1, 3, 7, 9, 9, 9, 9, 9, 9]
SECOND = [0, 0, 1, 3, 7, 15, 31, 63, 127, 255, 511, 599, 599]


@pytest.mark.parametrize(
    ("failures", "interval", "max_backoff", "expected"),
    [
        *((n, 60.0, 600.0, skip) for n, skip in enumerate(MINUTE)),
        *((n, 1.0, 600.0, skip) for n, skip in enumerate(SECOND)),
        (10_000, 1.0, 600.0, 599),
        (5, 60.0, 30.0, 0),  # max_backoff below one interval: retry every cycle
        (3, 0.5, 2.0, 3),
        (4, 0.5, 2.0, 3),
    ],
)
def test_cycles_to_skip(failures: int, interval: float, max_backoff: float, expected: int) -> None:
    health = Health(status=Status.OFFLINE, consecutive_failures=failures)
    assert cycles_to_skip(health, interval, max_backoff) == expected


@pytest.mark.parametrize(
    ("failures", "since_last_try", "due"),
    [
        (0, 1.0, True),  # healthy: every interval
        (1, 1.0, True),  # first failure: retried the next interval
        (2, 1.0, False),  # second in a row: one interval skipped
        (2, 2.0, True),
        (3, 3.0, False),  # third: three skipped
        (3, 4.0, True),
    ],
)
def test_a_worker_polls_a_failing_meter_once_its_backoff_has_passed(
    failures: int, since_last_try: float, due: bool
) -> None:
    """Workers keep no state between intervals: the backoff is read from stored health."""
    interval, last = 60.0, 1_000_000_000
    health = Health(status=Status.OFFLINE, last_attempt=last, consecutive_failures=failures)
    at = last + round(since_last_try * interval * 1e6)
    assert retry_due(health, at, interval, max_backoff=600.0) is due
