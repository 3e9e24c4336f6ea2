"""The poll log entry a poll's health implies, and the cycle counts of one collector shard."""

from __future__ import annotations

import pytest

from meterhub.collector.cycles import CycleCounter, CycleMode, CycleStats
from meterhub.collector.health import Health, failed, succeeded
from meterhub.collector.poll_log import PollEntry, bucket_width, poll_entry

# --- poll_entry ---------------------------------------------------------------------------


def test_entries_of_failures_successes_and_warnings() -> None:
    health = failed(Health(), "7", at=10, duration_ms=500.0, error="timed out")
    assert poll_entry(3, health) == PollEntry(3, 10, 500.0, False, "timed out")

    health = succeeded(health, "7", at=20, duration_ms=4.0)  # last_error stays, but is older
    assert poll_entry(3, health) == PollEntry(3, 20, 4.0, True, None)

    health = succeeded(health, "7", at=30, duration_ms=5.0, warning="register kW went backwards")
    assert poll_entry(3, health) == PollEntry(3, 30, 5.0, True, "register kW went backwards")


def test_no_entry_for_a_meter_never_polled() -> None:
    with pytest.raises(ValueError, match="never polled"):
        poll_entry(3, Health())


# --- CycleCounter -------------------------------------------------------------------------

S = 1_000_000  # one second in µs
T0 = 1_790_000_000 * S


def counter(window_us: int | None) -> tuple[CycleCounter, list[CycleStats]]:
    reports: list[CycleStats] = []
    cycles = CycleCounter(1, 3, reports.append)
    cycles.start(T0, window_us)
    return cycles, reports


def test_run_reports_each_window_when_it_ends() -> None:
    cycles, reports = counter(10 * S)
    cycles.released(T0 + 1 * S)
    cycles.released(T0 + 2 * S)
    cycles.polled(T0 + 3 * S, 1500.0, 2)  # began at 1.5 s
    cycles.polled(T0 + 4 * S, 200.0, None)
    cycles.released(T0 + 9 * S)
    cycles.tick(T0 + 10 * S - 1)
    assert reports == []
    assert cycles.seconds_left(T0 + 4 * S) == 6.0

    cycles.polled(T0 + 10 * S, 100.0, 2)  # ends after the window: counted in the next one
    assert reports == [CycleStats(1, 3, CycleMode.RUN, T0, 2.5, 3, 2, 1, 1, 2, T0 + 10 * S)]

    cycles.tick(T0 + 35 * S)  # windows 2 and 3 had nothing: only the last ended one counts
    assert reports[1:] == [
        CycleStats(1, 3, CycleMode.RUN, T0 + 10 * S, 0.0, 0, 1, 0, 1, 2, T0 + 35 * S)
    ]
    assert cycles.seconds_left(T0 + 35 * S) == 5.0
    cycles.tick(T0 + 40 * S)
    assert reports[2] == CycleStats(
        1, 3, CycleMode.RUN, T0 + 30 * S, 0.0, 0, 0, 0, 0, 0, T0 + 40 * S
    )


def test_run_duration_starts_at_the_window_for_polls_begun_before_it() -> None:
    cycles, reports = counter(10 * S)
    cycles.polled(T0 + 11 * S, 2000.0, 2)  # began at 9 s, in the window before
    cycles.polled(T0 + 14 * S, 1000.0, 2)
    cycles.tick(T0 + 20 * S)
    assert (reports[-1].started_at, reports[-1].duration_s) == (T0 + 10 * S, 4.0)


def test_sweep_reports_once_with_its_whole_duration() -> None:
    cycles, reports = counter(None)
    for at in range(3):
        cycles.released(T0 + at)
    cycles.polled(T0 + 2 * S, 10.0, 1)
    cycles.polled(T0 + 3 * S, 10.0, None)
    cycles.tick(T0 + 100 * S)
    assert reports == []
    assert cycles.seconds_left(T0) == float("inf")

    cycles.finish(T0 + 7 * S)
    assert reports == [CycleStats(1, 3, CycleMode.SWEEP, T0, 7.0, 3, 2, 1, 1, 1, T0 + 7 * S)]


def test_bucket_width_rounds_up_exactly_for_any_span() -> None:
    assert bucket_width(0, 120, 120) == 1
    assert bucket_width(0, 121, 120) == 2
    # beyond 53 bits: ceil of a float division gave 33_333_333_333_333_332, too narrow
    assert bucket_width(0, 10**17 + 1, 3) == 33_333_333_333_333_334
    with pytest.raises(ValueError, match="bucket"):
        bucket_width(5, 5, 1)
