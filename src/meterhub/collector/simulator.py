"""A simulator of passive HTTP electricity meters: one meter per TCP port.

Each meter answers any ``GET`` with ``{"id": "<id>", "A": ..., "kW": ...}`` (values as JSON
strings on even ports, as JSON numbers on odd ports) and closes the connection. The ports are
spread over spawned processes (at most 15,000 each, for the open-files limit); each process
runs a uvloop event loop with one listening socket per port. A seeded, per-port choice of
faults makes some meters hang, answer garbage, answer another meter's id or reset their
register.

While the simulator listens on ports of the kernel's ephemeral range, clients must bind a
source address (for instance 127.0.0.2) or their connects fail with EADDRNOTAVAIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import math
import multiprocessing
import multiprocessing.connection
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, TextIO, cast

import uvloop

from meterhub.collector.simulated_values import meter_values, unit_hash

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess


FaultKind = Literal["timeout", "garbage", "wrong_id", "reset"]
FAULT_KINDS: tuple[FaultKind, ...] = ("timeout", "garbage", "wrong_id", "reset")

MAX_PORTS_PER_PROCESS = 15_000
MAX_REQUEST_BYTES = 8192
HOLD_SECONDS = 120.0  # longest a connection is kept open (the timeout fault's hold)
RESET_EVERY = 3  # a "reset" meter's register drops to 0 on every 3rd request
BIND_RETRY_SECONDS = 3.0  # how long EADDRINUSE is retried (TIME_WAIT ports about to expire)
BIND_RETRY_INTERVAL = 0.25
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 5.0

BindFailures = dict[int, str]  # port -> error message, as reported by a serving process


@dataclass(frozen=True)
class Faults:
    """Fractions of meters (disjoint port sets, chosen from seed and port) that misbehave.

    ``timeout``: read the request, never answer (hold the connection until the peer closes, or
    120 s). ``garbage``: answer 200 with a body that is not JSON. ``wrong_id``: answer with id
    + 1. ``reset``: the register drops to 0 on every 3rd request, then keeps counting.
    """

    timeout: float = 0.0
    garbage: float = 0.0
    wrong_id: float = 0.0
    reset: float = 0.0

    def __post_init__(self) -> None:
        for kind in FAULT_KINDS:
            value = getattr(self, kind)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault {kind} must be within [0, 1], got {value}")
        total = sum(getattr(self, kind) for kind in FAULT_KINDS)
        if total > 1.0 + 1e-9:
            raise ValueError(
                f"faults timeout + garbage + wrong_id + reset must sum to at most 1, got {total:g}"
            )

    def describe(self) -> str:
        """``timeout=0.1, reset=0.05`` for the non-zero fractions, ``none`` without faults."""
        active = [f"{kind}={getattr(self, kind):g}" for kind in FAULT_KINDS if getattr(self, kind)]
        return ", ".join(active) or "none"


@dataclass(frozen=True)
class SimulatorConfig:
    """What to simulate: meter ``port + id_offset`` listens on each port of ``ports``."""

    ports: range
    host: str = "127.0.0.1"
    id_offset: int = 0
    seed: int = 0
    faults: Faults = Faults()
    processes: int | None = None  # None: ceil(len(ports) / 15,000)
    record: Path | None = None  # every answer served is appended to {record}.{process index}

    def __post_init__(self) -> None:
        if not self.ports or not all(1 <= p <= 65535 for p in (self.ports[0], self.ports[-1])):
            raise ValueError(f"ports must be a non-empty range within 1-65535, got {self.ports}")
        if self.processes is not None and not 1 <= self.processes <= len(self.ports):
            raise ValueError(f"processes must be within 1-{len(self.ports)}, got {self.processes}")
        share = math.ceil(len(self.ports) / self.process_count)
        if share > MAX_PORTS_PER_PROCESS:
            raise ValueError(
                f"processes: {self.process_count} would serve {share} ports each; "
                f"at most {MAX_PORTS_PER_PROCESS} fit in one process"
            )

    @property
    def process_count(self) -> int:
        """How many serving processes the ports are spread over."""
        return self.processes or math.ceil(len(self.ports) / MAX_PORTS_PER_PROCESS)

    def serving(
        self, index: int, ports: range, conn: Connection[BindFailures, Any]
    ) -> Coroutine[Any, Any, None]:
        """What serving process ``index`` runs for its ``ports``."""
        return _serve_http(self, index, ports, conn)


def split_ports(config: SimulatorConfig) -> list[range]:
    """The ports of each serving process: ``config.process_count`` near-equal slices."""
    count, size = config.process_count, len(config.ports)
    return [config.ports[i * size // count : (i + 1) * size // count] for i in range(count)]


def fault_of(config: SimulatorConfig, port: int) -> FaultKind | None:
    """The fault of the meter on ``port`` (deterministic in seed and port), None if healthy."""
    return pick_fault(config.faults, config.seed, port)


def pick_fault(faults: Faults, seed: int, *meter: object) -> FaultKind | None:
    """The fault of the meter ``meter`` names (deterministic in seed and meter), or None."""
    draw = unit_hash(seed, "fault", *meter)
    for kind in FAULT_KINDS:
        fraction: float = getattr(faults, kind)
        if draw < fraction:
            return kind
        draw -= fraction
    return None


class RegisterResets:
    """Registers of "reset" meters: every 3rd read of one drops it to 0, then it counts on."""

    def __init__(self) -> None:
        self._reads: dict[object, int] = {}
        self._offsets: dict[object, float] = {}

    def value(self, meter: object, kwh: float) -> float:
        """Count the read; every 3rd one moves the offset so the register reads 0 now."""
        count = self._reads.get(meter, 0) + 1
        self._reads[meter] = count
        if count % RESET_EVERY == 0:
            self._offsets[meter] = kwh
        return round(kwh - self._offsets.get(meter, 0.0), 3)


# --- serving process --------------------------------------------------------------------------


def _http_response(status: str, body: str, extra_headers: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra_headers}\r\n{body}"
    ).encode("ascii")


_METHOD_NOT_ALLOWED = _http_response(
    "405 Method Not Allowed", '{"detail":"only GET is allowed"}', "Allow: GET\r\n"
)


def _json_body(meter_id: int, amps: float, kwh: float, *, quoted: bool) -> str:
    """The meter's JSON answer; values as strings when ``quoted``, else as numbers."""
    a, kw = f"{amps:.2f}", f"{kwh:.3f}"
    if quoted:
        a, kw = f'"{a}"', f'"{kw}"'
    return f'{{"id":"{meter_id}","A":{a},"kW":{kw}}}'


class _MeterServer:
    """The meters of one serving process: their answers, reset state and record file."""

    def __init__(self, config: SimulatorConfig, index: int) -> None:
        self._config = config
        self._resets = RegisterResets()
        self._record: TextIO | None = None
        if config.record is not None:
            self._record = _record_file(config.record, index).open("a", buffering=1)

    def answer(self, port: int) -> str | None:
        """The body the meter on ``port`` serves now, or None if it must not answer."""
        fault = fault_of(self._config, port)
        if fault == "timeout":
            return None
        meter_id = port + self._config.id_offset
        amps, kwh = meter_values(self._config.seed, meter_id, time.time())
        if fault == "reset":
            kwh = self._resets.value(port, kwh)
        served_id = meter_id + 1 if fault == "wrong_id" else meter_id
        body = _json_body(served_id, amps, kwh, quoted=port % 2 == 0)
        return body[: len(body) // 2] if fault == "garbage" else body

    def record(self, port: int, body: str) -> None:
        """Append an answer that was sent to the record file, if recording."""
        if self._record is not None:
            self._record.write(json.dumps({"port": port, "body": body}) + "\n")

    def close(self) -> None:
        """Flush and close the record file; later answers are no longer recorded."""
        if self._record is not None:
            self._record.close()
            self._record = None


class _MeterProtocol(asyncio.Protocol):
    """One connection to one meter: read the request head, answer once, close."""

    _transport: asyncio.Transport
    _expiry: asyncio.TimerHandle

    def __init__(self, server: _MeterServer, port: int) -> None:
        self._server = server
        self._port = port
        self._buffer = bytearray()
        self._done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._expiry = asyncio.get_running_loop().call_later(HOLD_SECONDS, transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._expiry.cancel()

    def data_received(self, data: bytes) -> None:
        if self._done:
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n", 0, MAX_REQUEST_BYTES)
        if end >= 0:
            self._done = True
            self._respond(method=bytes(self._buffer[:end]).split(b" ", 1)[0])
        elif len(self._buffer) >= MAX_REQUEST_BYTES:
            self._transport.close()

    def _respond(self, method: bytes) -> None:
        if method != b"GET":
            self._send(_METHOD_NOT_ALLOWED)
            return
        body = self._server.answer(self._port)
        if body is not None:
            self._send(_http_response("200 OK", body))
            self._server.record(self._port, body)

    def _send(self, response: bytes) -> None:
        self._transport.write(response)
        self._transport.close()


def _resolve(host: str) -> tuple[socket.AddressFamily, str]:
    """The address family and numeric address to bind for ``host``."""
    family, _, _, _, sockaddr = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0]
    return family, str(sockaddr[0])


async def _listen(
    server: _MeterServer, family: socket.AddressFamily, address: str, port: int
) -> asyncio.Server:
    """Bind ``address:port`` (SO_REUSEADDR) and serve the meter of that port on it.

    The socket is made here rather than by ``create_server(host, port)``: about 5x faster.
    """
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        factory = functools.partial(_MeterProtocol, server, port)
        return await asyncio.get_running_loop().create_server(factory, sock=sock)
    except BaseException:
        sock.close()
        raise


class Listener(Protocol):
    """A server listening on one port."""

    def close(self) -> None: ...


Listen = Callable[[int], Awaitable[Listener]]
"""Starts serving one port; ``OSError`` when it cannot be bound."""


async def _bind_once(
    listen: Listen, ports: Iterable[int]
) -> tuple[list[Listener], dict[int, OSError]]:
    """Try each port once: the servers started and the error of each port that failed."""
    servers: list[Listener] = []
    errors: dict[int, OSError] = {}
    for port in ports:
        try:
            servers.append(await listen(port))
        except OSError as exc:
            errors[port] = exc
    return servers, errors


async def _bind_all(listen: Listen, ports: range) -> tuple[list[Listener], BindFailures]:
    """Bind every port, retrying EADDRINUSE for a few seconds; report ports left unbound."""
    servers: list[Listener] = []
    failures: BindFailures = {}
    pending: Iterable[int] = ports
    deadline = time.monotonic() + BIND_RETRY_SECONDS
    while True:
        bound, errors = await _bind_once(listen, pending)
        servers += bound
        failures.update({p: str(e) for p, e in errors.items() if e.errno != errno.EADDRINUSE})
        pending = [p for p, e in errors.items() if e.errno == errno.EADDRINUSE]
        if not pending or time.monotonic() >= deadline:
            failures.update({p: str(errors[p]) for p in pending})
            return servers, failures
        await asyncio.sleep(BIND_RETRY_INTERVAL)


async def serve_ports(listen: Listen, ports: range, conn: Connection[BindFailures, Any]) -> None:
    """Bind ``ports``, report the failures to the parent, serve until SIGTERM or parent exit."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_reader(conn.fileno(), stopping.set)  # the parent never writes: readable means EOF
    servers, failures = await _bind_all(listen, ports)
    with contextlib.suppress(OSError):  # the parent is gone: just stop
        conn.send(failures)
    await stopping.wait()
    for listener in servers:
        listener.close()


async def _serve_http(
    config: SimulatorConfig, index: int, ports: range, conn: Connection[BindFailures, Any]
) -> None:
    """The HTTP meters of ``ports``, until stopped (``serve_ports``)."""
    server = _MeterServer(config, index)
    try:
        await serve_ports(functools.partial(_listen, server, *_resolve(config.host)), ports, conn)
    finally:
        server.close()


def _serve(
    config: SimulatorConfig, index: int, ports: range, conn: Connection[BindFailures, Any]
) -> None:
    """Entry point of a serving process; ignores SIGINT (the parent stops it with SIGTERM)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(config.serving(index, ports, conn))


# --- parent -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Child:
    process: BaseProcess
    conn: Connection[Any, BindFailures]


class Simulator:
    """Simulated meters served by spawned processes; a context manager (start ... stop)."""

    def __init__(self, config: SimulatorConfig, *, require_all: bool = True) -> None:
        self.config = config
        self.require_all = require_all
        self.unbound: BindFailures = {}
        self._children: list[_Child] = []

    @property
    def meters(self) -> list[tuple[int, int]]:
        """``(meter_id, port)`` of every simulated meter that is being served."""
        offset = self.config.id_offset
        return [(port + offset, port) for port in self.config.ports if port not in self.unbound]

    def start(self) -> None:
        """Spawn the serving processes; return once every port is bound.

        Ports that cannot be bound (taken by another program) raise RuntimeError after
        stopping the processes, unless ``require_all`` is false: then they are left out
        and listed in ``unbound``.
        """
        if self._children:
            raise RuntimeError("the simulator is already running")
        try:
            self._spawn()
            failures = self._wait_until_bound()
        except BaseException:
            self.stop()
            raise
        if failures and self.require_all:
            self.stop()
            raise RuntimeError(_describe_failures(self.config, failures))
        self.unbound = failures

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")
        for index, ports in enumerate(split_ports(self.config)):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_serve,
                args=(self.config, index, ports, theirs),
                name=f"meterhub-simulator-{index}",
                daemon=True,
            )
            self._children.append(_Child(process, ours))
            process.start()
            theirs.close()

    def _wait_until_bound(self) -> BindFailures:
        """Collect every process's bind report; RuntimeError if one dies or takes too long."""
        failures: BindFailures = {}
        pending = list(self._children)
        deadline = time.monotonic() + READY_TIMEOUT
        while pending:
            ready = multiprocessing.connection.wait(
                [child.conn for child in pending], max(0.0, deadline - time.monotonic())
            )
            if not ready:
                raise RuntimeError(f"simulator processes not ready after {READY_TIMEOUT:g} s")
            for child in [child for child in pending if child.conn in ready]:
                failures.update(_receive_report(child))
                pending.remove(child)
        return failures

    def stop(self) -> None:
        """SIGTERM the serving processes (they flush their records) and wait for them."""
        children, self._children = self._children, []
        for child in children:
            if child.process.pid is not None:
                child.process.terminate()
        for child in children:
            if child.process.pid is not None:
                child.process.join(STOP_TIMEOUT)
                if child.process.exitcode is None:
                    child.process.kill()
                    child.process.join()
                child.process.close()
            child.conn.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _receive_report(child: _Child) -> BindFailures:
    try:
        return child.conn.recv()
    except EOFError:
        child.process.join(STOP_TIMEOUT)
        raise RuntimeError(
            f"{child.process.name} exited with code {child.process.exitcode} before binding"
        ) from None


def _port_ranges(ports: list[int]) -> str:
    """``9000-9002, 9005`` for the sorted ``ports``."""
    spans: list[list[int]] = []
    for port in ports:
        if spans and port == spans[-1][1] + 1:
            spans[-1][1] = port
        else:
            spans.append([port, port])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _describe_failures(config: SimulatorConfig, failures: BindFailures) -> str:
    """``could not bind 2 of 100 ports on 127.0.0.1: 9005-9006: [Errno 98] ...``."""
    by_error: dict[str, list[int]] = {}
    for port in sorted(failures):
        by_error.setdefault(failures[port], []).append(port)
    details = "; ".join(f"{_port_ranges(ports)}: {error}" for error, ports in by_error.items())
    return (
        f"could not bind {len(failures)} of {len(config.ports)} ports on {config.host}: {details}"
    )


def _record_file(record: Path, index: int) -> Path:
    return record.with_name(f"{record.name}.{index}")


def read_records(record: Path) -> list[dict[str, Any]]:
    """Every recorded answer (``{"port": ..., "body": ...}``) of all ``{record}.*`` files."""
    prefix = record.name + "."
    indexes = sorted(
        int(path.name[len(prefix) :])
        for path in record.parent.iterdir()
        if path.name.startswith(prefix) and path.name[len(prefix) :].isdigit()
    )
    return [
        json.loads(line)
        for index in indexes
        for line in _record_file(record, index).read_text().splitlines()
        if line
    ]


# --- CLI entry point --------------------------------------------------------------------------


def run_simulator(
    config: SimulatorConfig,
    register_url: str | None = None,
    source_address: str | None = None,
    token: str | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, optionally registering every meter first; stop cleanly."""

    def announce(simulator: Simulator) -> str:
        summary = _summary(config)
        if register_url is None:
            return summary
        from meterhub.collector.registration import register_meters  # httpx: parent only

        result = asyncio.run(
            register_meters(
                register_url, simulator.meters, source_address=source_address, token=token
            )
        )
        for error in result.errors:
            print(error, file=sys.stderr)
        return summary + (
            f"; registered at {register_url}: {result.registered} new, "
            f"{result.already} already, {result.failed} failed"
        )

    serve_until_interrupted(Simulator(config, require_all=False), announce)


def serve_until_interrupted(simulator: Simulator, announce: Callable[[Simulator], str]) -> None:
    """Start ``simulator``, print what ``announce`` says once it serves, serve until
    SIGINT or SIGTERM, then stop cleanly."""
    previous = {
        signum: signal.signal(signum, signal.default_int_handler)
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with simulator:
            if simulator.unbound:
                print(_describe_failures(simulator.config, simulator.unbound), file=sys.stderr)
            print(announce(simulator), flush=True)
            while True:
                signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _summary(config: SimulatorConfig) -> str:
    ports = config.ports
    return (
        f"simulating {len(ports)} meters on {config.host} ports {ports[0]}-{ports[-1]} "
        f"(meter id = port + {config.id_offset}) in {config.process_count} processes, "
        f"seed {config.seed}, faults: {config.faults.describe()}"
    )
