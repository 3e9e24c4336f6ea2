"""Pure parts of the meter simulator: values, fault selection, option validation."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter

import pytest

from meterhub.collector.simulated_values import T0, meter_values
from meterhub.collector.simulator import (
    FaultKind,
    Faults,
    SimulatorConfig,
    fault_of,
    split_ports,
)

NOW = 1_760_000_000.0  # late 2025


def test_values_are_deterministic() -> None:
    for meter_id in (9000, 12345, 65000):
        assert meter_values(3, meter_id, NOW + 0.25) == meter_values(3, meter_id, NOW + 0.25)


def test_seeds_give_different_meters() -> None:
    ids = range(9000, 9100)
    differing = sum(meter_values(0, i, NOW) != meter_values(1, i, NOW) for i in ids)
    assert differing == len(ids)


def test_register_starts_in_range_at_t0() -> None:
    registers = [meter_values(5, i, T0)[1] for i in range(1000)]
    assert all(1_000 <= kw <= 100_000 for kw in registers)
    assert max(registers) - min(registers) > 50_000


def test_register_strictly_increases_over_time() -> None:
    for meter_id in range(9000, 9020):
        registers = [meter_values(11, meter_id, NOW + 10 * step)[1] for step in range(2000)]
        assert all(a < b for a, b in itertools.pairwise(registers))


def test_register_never_decreases_at_fine_steps() -> None:
    for meter_id in range(9000, 9020):
        registers = [meter_values(11, meter_id, NOW + 0.1 * step)[1] for step in range(2000)]
        assert all(a <= b for a, b in itertools.pairwise(registers))


def test_current_is_plausible() -> None:
    rng = random.Random(1)
    currents = [
        meter_values(2, rng.randrange(9000, 65001), NOW + rng.uniform(0, 86_400))[0]
        for _ in range(20_000)
    ]
    assert all(3.9 <= a <= 97.6 for a in currents)
    assert all(round(a, 2) == a for a in currents)
    assert min(currents) < 10
    assert max(currents) > 70


def test_current_fluctuates_per_meter() -> None:
    currents = {meter_values(4, 9001, NOW + t)[0] for t in range(0, 3600, 7)}
    assert len(currents) > 100


def _config(faults: Faults, seed: int = 0) -> SimulatorConfig:
    return SimulatorConfig(ports=range(10_000, 20_000), seed=seed, faults=faults)


def test_fault_fractions_are_honoured() -> None:
    faults = Faults(timeout=0.1, garbage=0.05, wrong_id=0.2, reset=0.15)
    config = _config(faults)
    counts = Counter(fault_of(config, port) for port in config.ports)
    expected: dict[FaultKind | None, float] = {
        "timeout": 0.1,
        "garbage": 0.05,
        "wrong_id": 0.2,
        "reset": 0.15,
        None: 0.5,
    }
    for kind, fraction in expected.items():
        assert counts[kind] / len(config.ports) == pytest.approx(fraction, abs=0.015)


def test_faults_are_deterministic_disjoint_and_seeded() -> None:
    faults = Faults(timeout=0.25, garbage=0.25, wrong_id=0.25, reset=0.25)
    config = _config(faults)
    by_kind: dict[str | None, set[int]] = {}
    for port in config.ports:
        by_kind.setdefault(fault_of(config, port), set()).add(port)
    assert set(by_kind) == {"timeout", "garbage", "wrong_id", "reset"}
    assert sum(len(ports) for ports in by_kind.values()) == len(config.ports)
    assert all(fault_of(config, port) == fault_of(config, port) for port in range(10_000, 10_100))
    other = _config(faults, seed=1)
    assert any(fault_of(config, p) != fault_of(other, p) for p in range(10_000, 10_100))


def test_no_faults_by_default() -> None:
    config = _config(Faults())
    assert all(fault_of(config, port) is None for port in config.ports)


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"timeout": -0.1}, "timeout"),
        ({"garbage": 1.5}, "garbage"),
        ({"wrong_id": math.nan}, "wrong_id"),
        ({"reset": 2.0}, "reset"),
        ({"timeout": 0.5, "garbage": 0.3, "reset": 0.3}, "sum"),
    ],
)
def test_invalid_faults_are_rejected(kwargs: dict[str, float], option: str) -> None:
    with pytest.raises(ValueError, match=option):
        Faults(**kwargs)


def test_fractions_summing_to_one_are_accepted() -> None:
    Faults(timeout=0.1, garbage=0.2, wrong_id=0.3, reset=0.4)


def test_full_range_is_split_over_four_processes() -> None:
    config = SimulatorConfig(ports=range(9000, 65001))
    shares = split_ports(config)
    assert len(shares) == 4
    assert all(len(share) <= 15_000 for share in shares)
    assert [port for share in shares for port in share] == list(config.ports)


@pytest.mark.parametrize(
    ("ports", "processes", "option"),
    [
        (range(0), None, "ports"),
        (range(0, 10), None, "ports"),
        (range(65530, 65540), None, "ports"),
        (range(9000, 9010), 11, "processes"),
    ],
)
def test_invalid_configs_are_rejected(ports: range, processes: int | None, option: str) -> None:
    with pytest.raises(ValueError, match=option):
        SimulatorConfig(ports=ports, processes=processes)


def test_too_few_processes_for_the_ports_are_rejected() -> None:
    with pytest.raises(ValueError, match="processes: 2 would serve 28001 ports"):
        SimulatorConfig(ports=range(9000, 65001), processes=2)
