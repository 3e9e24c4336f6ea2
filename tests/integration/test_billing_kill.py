"""A billing run killed with SIGKILL half-way, then run again, bills exactly like a clean run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from decimal import Decimal

from sqlalchemy import Engine, delete, func, select, update

from meterhub.billing.tables import billing_runs, billing_tasks, bills
from tests.support import billing_estate, claim_probe, run_holds_its_claim

DEVICES = 20_000
DAY_US = 86_400_000_000
START = 1_788_220_800_000_000  # 2026-09-01 UTC
AT = "2026-10-01T00:00:00+00:00"
AT_US = 1_790_812_800_000_000


def _estate(engine: Engine) -> str:
    """DEVICES meters with three readings each, a tiered tariff and a monthly task."""
    return billing_estate(
        engine,
        DEVICES,
        lambda i: [
            (START + day * 15 * DAY_US, 100.0 + i % 97 + day * (i % 13) * 1.5) for day in range(3)
        ],
    )


def _command(database_url: str, key: str) -> list[str]:
    run = ["billing", "run", "--task", key, "--at", AT, "--database", database_url]
    return [sys.executable, "-m", "meterhub.cli", *run]


def _complete_run(database_url: str, key: str) -> None:
    done = subprocess.run(
        _command(database_url, key), check=False, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _totals(engine: Engine) -> tuple[int, Decimal]:
    with engine.connect() as conn:
        count, charged = conn.execute(select(func.count(), func.sum(bills.c.charge))).one()
    return count, Decimal(charged or 0)


def test_killed_run_then_restart_equals_a_clean_run(database_url: str, engine: Engine) -> None:
    key = _estate(engine)
    probe = claim_probe(database_url)
    run = subprocess.Popen(_command(database_url, key), stdout=subprocess.DEVNULL)
    while run.poll() is None and not run_holds_its_claim(probe, key, AT_US):
        time.sleep(0.005)
    probe.dispose()
    run.send_signal(signal.SIGKILL)
    assert run.wait(timeout=30) == -signal.SIGKILL  # it was still running
    assert _totals(engine)[0] in (0, DEVICES)  # never a part of the run

    _complete_run(database_url, key)
    after_kill = _totals(engine)

    with engine.begin() as conn:  # forget everything and bill once, cleanly
        conn.execute(delete(bills))
        conn.execute(delete(billing_runs))
        conn.execute(update(billing_tasks).values(last_run_at=None))
    _complete_run(database_url, key)
    assert after_kill == _totals(engine)
    assert after_kill[0] == DEVICES
