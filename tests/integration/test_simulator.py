"""The meter simulator with real processes and sockets on a small block of free ports."""

from __future__ import annotations

import itertools
import json
import math
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from meterhub.collector.simulated_values import meter_values
from meterhub.collector.simulator import (
    Faults,
    Simulator,
    SimulatorConfig,
    fault_of,
    read_records,
    split_ports,
)

SEED = 7
FAULTS = Faults(timeout=0.1, garbage=0.1, wrong_id=0.1, reset=0.1)
BLOCK = 40
GET = b"GET /reading HTTP/1.1\r\nHost: meter\r\nAccept: application/json\r\n\r\n"


@dataclass(frozen=True)
class Exchange:
    """One request/response with the wall-clock bounds of when the meter answered."""

    port: int
    started: float
    ended: float
    status: int | None  # None: no answer within the timeout
    headers: dict[str, str]
    body: bytes


def _connect(port: int, timeout: float = 1.0) -> socket.socket:
    """A client socket bound to 127.0.0.2, so its TIME_WAIT never blocks a 127.0.0.1 port."""
    return socket.create_connection(("127.0.0.1", port), timeout, ("127.0.0.2", 0))


def _exchange(port: int, request: bytes = GET) -> Exchange:
    started = time.time()
    data = b""
    try:
        with _connect(port) as sock:
            sock.sendall(request)
            while chunk := sock.recv(65536):
                data += chunk
    except TimeoutError:
        return Exchange(port, started, time.time(), None, {}, data)
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("ascii").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return Exchange(port, started, time.time(), int(status_line.split()[1]), headers, body)


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def _config(ports: range, record: Path | None = None) -> SimulatorConfig:
    return SimulatorConfig(ports=ports, seed=SEED, faults=FAULTS, record=record)


def _free_blocks() -> Iterator[range]:
    """Free blocks of 20000-29999, in random order, where every fault and both parities occur."""
    starts = list(range(20_000, 30_000 - BLOCK, BLOCK))
    random.shuffle(starts)
    for start in starts:
        ports = range(start, start + BLOCK)
        faults = [fault_of(_config(ports), port) for port in ports]
        healthy_parities = {
            port % 2 for port, fault in zip(ports, faults, strict=True) if not fault
        }
        complete = set(faults) == {None, "timeout", "garbage", "wrong_id", "reset"}
        if complete and healthy_parities == {0, 1} and all(map(_port_is_free, ports)):
            yield ports


def _started(record: Path | None = None) -> Simulator:
    for ports in itertools.islice(_free_blocks(), 5):
        simulator = Simulator(_config(ports, record))
        try:
            simulator.start()
        except RuntimeError:  # another process took a port meanwhile
            continue
        return simulator
    pytest.fail("no free block of ports in 20000-29999")


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Simulator]:
    simulator = _started(tmp_path / "answers.jsonl")
    yield simulator
    simulator.stop()


def _ports_with(simulator: Simulator, fault: str | None) -> list[int]:
    return [port for port in simulator.config.ports if fault_of(simulator.config, port) == fault]


def _check_reading(exchange: Exchange, answer: dict[str, Any]) -> None:
    """The answer's values are the meter's values at some instant of the exchange."""
    port = exchange.port
    assert isinstance(answer["A"], str if port % 2 == 0 else float)
    assert isinstance(answer["kW"], str if port % 2 == 0 else float)
    amps, kwh = float(answer["A"]), float(answer["kW"])
    assert meter_values(SEED, port, exchange.started)[1] <= kwh
    assert kwh <= meter_values(SEED, port, exchange.ended)[1]
    seconds = range(math.ceil(exchange.started), math.floor(exchange.ended) + 1)
    instants = [exchange.started, exchange.ended, *(s - 1e-6 for s in seconds), *seconds]
    assert min(abs(amps - meter_values(SEED, port, t)[0]) for t in instants) <= 0.5


def _check_answer(exchange: Exchange, fault: str | None) -> None:
    if fault == "timeout":
        assert exchange.status is None
        assert exchange.ended - exchange.started >= 1.0
        return
    assert exchange.status == 200
    assert exchange.headers["content-type"] == "application/json"
    assert exchange.headers["connection"] == "close"
    assert int(exchange.headers["content-length"]) == len(exchange.body)
    if fault == "garbage":
        with pytest.raises(json.JSONDecodeError):
            json.loads(exchange.body)
        return
    answer = json.loads(exchange.body)
    meter_id = exchange.port + 1 if fault == "wrong_id" else exchange.port
    assert answer["id"] == str(meter_id)
    _check_reading(exchange, answer)


def test_meters_answer_according_to_their_fault(simulator: Simulator, tmp_path: Path) -> None:
    ports = simulator.config.ports
    with ThreadPoolExecutor(len(ports)) as pool:
        exchanges = list(pool.map(_exchange, ports))
    for exchange in exchanges:
        _check_answer(exchange, fault_of(simulator.config, exchange.port))

    simulator.stop()
    served = sorted((e.port, e.body.decode()) for e in exchanges if e.status is not None)
    records = read_records(tmp_path / "answers.jsonl")
    assert sorted((r["port"], r["body"]) for r in records) == served


def test_reset_meter_register_drops_on_every_third_request(simulator: Simulator) -> None:
    for port in _ports_with(simulator, "reset"):
        registers = [float(json.loads(_exchange(port).body)["kW"]) for _ in range(4)]
        assert registers[0] <= registers[1]
        assert registers[2] < registers[1]
        assert 0.0 <= registers[2] < 0.01
        assert registers[2] <= registers[3] < 0.01


def test_non_get_requests_get_405(simulator: Simulator) -> None:
    port = _ports_with(simulator, None)[0]
    exchange = _exchange(port, b"POST / HTTP/1.1\r\nHost: meter\r\nContent-Length: 0\r\n\r\n")
    assert exchange.status == 405
    assert exchange.headers["allow"] == "GET"


def test_oversized_request_is_closed_without_answer(simulator: Simulator) -> None:
    port = _ports_with(simulator, None)[0]
    request = b"GET / HTTP/1.1\r\nX-Filler: " + b"x" * 9000
    with _connect(port) as sock:
        try:
            sock.sendall(request)
            assert sock.recv(65536) == b""
        except (ConnectionResetError, BrokenPipeError):
            pass  # closed while data was still unread: also a close without answer


def test_stop_is_prompt_and_frees_the_ports(simulator: Simulator) -> None:
    ports, healthy = simulator.config.ports, _ports_with(simulator, None)[0]
    held = _connect(_ports_with(simulator, "timeout")[0])
    assert _exchange(healthy).status == 200  # leaves the port in TIME_WAIT
    started = time.monotonic()
    simulator.stop()
    assert time.monotonic() - started < 2.0
    held.close()
    assert all(map(_port_is_free, ports))
    with Simulator(_config(ports)):
        assert _exchange(healthy).status == 200


def test_unbindable_port_is_reported() -> None:
    ports = next(_free_blocks())
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as TIME_WAIT may linger
        squatter.bind(("127.0.0.1", ports[5]))
        squatter.listen()
        with pytest.raises(RuntimeError, match=f"could not bind 1 of {BLOCK} ports.*{ports[5]}"):
            Simulator(_config(ports)).start()
        assert all(map(_port_is_free, ports[:5]))
        with Simulator(_config(ports), require_all=False) as lenient:
            assert list(lenient.unbound) == [ports[5]]
            assert (ports[5], ports[5]) not in lenient.meters
            assert len(lenient.meters) == BLOCK - 1
            healthy = next(p for p in ports[6:] if fault_of(_config(ports), p) is None)
            assert _exchange(healthy).status == 200
    assert all(map(_port_is_free, ports))


def test_sixteen_thousand_ports_use_two_processes() -> None:
    shares = split_ports(SimulatorConfig(ports=range(9000, 25000)))
    assert [len(share) for share in shares] == [8000, 8000]
    assert shares[0][-1] + 1 == shares[1][0]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_simulator_stops_cleanly_on_signal(signum: signal.Signals) -> None:
    ports = next(_free_blocks())
    script = (
        "from meterhub.collector.simulator import SimulatorConfig, run_simulator\n"
        f"run_simulator(SimulatorConfig(ports=range({ports.start}, {ports.stop})))\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        assert f"simulating {BLOCK} meters" in process.stdout.readline()
        assert _exchange(ports[0]).status == 200
        process.send_signal(signum)
        assert process.wait(timeout=5) == 0
    assert all(map(_port_is_free, ports))
