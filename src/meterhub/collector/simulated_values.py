"""Pure, deterministic values of simulated electricity meters.

Every meter has a profile derived from a hash of ``(seed, meter_id)``: a base current of
5-80 A, a register start of 1,000-100,000 kWh at ``T0`` and a load period of 5-60 minutes.
Its current swings ±20 % around the base over that period, plus ±2 % noise that changes once
a second; its register grows at ``current x 230 V`` (taken at the base current), so it rises
strictly over time.
"""

from __future__ import annotations

import functools
import hashlib
import math
from typing import NamedTuple

T0 = 1_704_067_200.0
"""2024-01-01T00:00:00Z: the time at which every register reads its start value."""

VOLTS = 230.0
SWING = 0.2
NOISE = 0.02


class MeterProfile(NamedTuple):
    """The constants of one simulated meter."""

    base_amps: float
    start_kwh: float
    period_s: float


def unit_hash(*key: object) -> float:
    """A uniform float in [0, 1) derived from ``key`` (stable across runs and processes)."""
    digest = hashlib.blake2b("|".join(map(str, key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@functools.lru_cache(maxsize=65_536)
def meter_profile(seed: int, meter_id: int) -> MeterProfile:
    """The constants of meter ``meter_id`` under ``seed``."""
    return MeterProfile(
        base_amps=5.0 + 75.0 * unit_hash(seed, meter_id, "base"),
        start_kwh=1_000.0 + 99_000.0 * unit_hash(seed, meter_id, "start"),
        period_s=300.0 + 3_300.0 * unit_hash(seed, meter_id, "period"),
    )


def meter_values(seed: int, meter_id: int, t: float) -> tuple[float, float]:
    """``(amperes, kWh register)`` of the meter at unix time ``t`` (``t >= T0``).

    Amperes are rounded to 2 decimals and stay within 0.78-1.22 x base (> 3.9 A); the
    register is rounded to 3 decimals and never decreases (it grows by at least 0.001 every
    3.2 s, so it strictly increases over any such step).
    """
    profile = meter_profile(seed, meter_id)
    swing = SWING * math.sin(2.0 * math.pi * t / profile.period_s)
    noise = NOISE * (2.0 * unit_hash(seed, meter_id, math.floor(t)) - 1.0)
    amps = profile.base_amps * (1.0 + swing + noise)
    kwh = profile.start_kwh + profile.base_amps * VOLTS / 1000.0 * (t - T0) / 3600.0
    return round(amps, 2), round(kwh, 3)
