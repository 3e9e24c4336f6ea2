"""A private network namespace for benchmarks that serve meters on every port 9000-65000.

Those ports cover the kernel's ephemeral range (32768-60999), so beside them any client
that lets the kernel pick its source port fails. ``isolated`` re-runs the current command
(with ``--no-isolate``) in a network namespace of its own (``unshare -n``) with loopback
up, where the simulator and the collector (polling from a source address such as
127.0.0.2) disturb nothing else on the host.

Services of the host that such a run needs (PostgreSQL, a broker) are bridged in: for
each of their 127.0.0.1 ports, ``socat`` relays connections from that port inside the
namespace through a Unix socket to the same port outside, and the namespace's own
ephemeral range moves below the meters (``LOCAL_PORTS``), so ordinary clients (libpq,
Redis, AMQP) connect there as anywhere. ``isolated`` runs the host ends; the command it
re-runs opens the namespace ends with ``bridged``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import NoReturn

BRIDGES_ENV = "METERHUB_BENCH_BRIDGES"
"""Tells the re-run command where the host ends listen: ``DIRECTORY:PORT,PORT,...``."""
LOCAL_PORTS = (1024, 8999)
"""The namespace's ephemeral port range when services are bridged: below the meters."""
READY_SECONDS = 10.0
RELAY_BLOCK = 262_144
INNER_GRACE_SECONDS = 120.0
"""How long the re-run command may take to clean up once asked to stop."""


def isolated(bridged: Sequence[int] = ()) -> NoReturn:
    """Re-run this command in a private network namespace with loopback up, the host's
    127.0.0.1 ports ``bridged`` reachable inside it; exit with its status."""
    if not shutil.which("unshare") or os.geteuid() != 0:
        raise SystemExit("--isolate needs root and unshare; pass --no-isolate to run here")
    if bridged and not shutil.which("socat"):
        raise SystemExit("bridging services into the namespace needs socat (apt-get install socat)")
    setup = "ip link set lo up"
    if bridged:
        low, high = LOCAL_PORTS
        setup += f" && echo '{low} {high}' > /proc/sys/net/ipv4/ip_local_port_range"
    command = [sys.executable, *sys.orig_argv[1:], "--no-isolate"]
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="meterhub-bridges-") as sockets, ExitStack() as stack:
        for port in bridged:
            host_end = f"UNIX-LISTEN:{_socket(sockets, port)},fork,mode=600"
            stack.enter_context(_relay([host_end, f"TCP:127.0.0.1:{port},nodelay"]))
        env = {**os.environ, BRIDGES_ENV: f"{sockets}:{','.join(map(str, bridged))}"}
        script = f'{setup} && exec "$@"'
        inner = subprocess.Popen(["unshare", "-n", "sh", "-c", script, "sh", *command], env=env)
        try:
            code = inner.wait()
        finally:
            _stop(inner, grace=INNER_GRACE_SECONDS)
    raise SystemExit(code)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def bridged() -> Iterator[list[int]]:
    """Inside ``isolated``: the namespace ends of its bridges (the ports), until the end of
    the block. Outside (or without bridges) nothing is started."""
    spec = os.environ.get(BRIDGES_ENV, "")
    sockets, _, listed = spec.rpartition(":")
    ports = [int(port) for port in listed.split(",") if port]
    with ExitStack() as stack:
        for port in ports:
            ns_end = f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,nodelay"
            stack.enter_context(_relay([ns_end, f"UNIX-CONNECT:{_socket(sockets, port)}"]))
        deadline = time.monotonic() + READY_SECONDS
        while not set(ports) <= _listening():
            if time.monotonic() > deadline:
                raise RuntimeError(f"bridges to ports {ports} did not listen in {READY_SECONDS} s")
            time.sleep(0.05)
        yield ports


def _socket(directory: str, port: int) -> str:
    return str(Path(directory) / f"{port}.sock")


@contextmanager
def _relay(addresses: list[str]) -> Iterator[None]:
    """``socat`` between two addresses (large blocks: bulk writes are not slowed down), in a
    process group of its own with the process it forks a connection, stopped whole."""
    relay = subprocess.Popen(["socat", "-b", str(RELAY_BLOCK), *addresses], start_new_session=True)
    try:
        yield
    finally:
        _stop(relay, group=True)


def _stop(process: subprocess.Popen[bytes], *, group: bool = False, grace: float = 10.0) -> None:
    """Stop ``process`` (with ``group``, every process of its group): SIGTERM, and SIGKILL
    what is left after ``grace`` seconds."""

    def send(sig: signal.Signals) -> None:
        try:
            if group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait(grace)
    if group:  # connections it forked may outlive it
        send(signal.SIGKILL)


def _listening() -> set[int]:
    """Local TCP ports listening on 127.0.0.1 (or any address) in this namespace."""
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port = local.split(":")
        if state == "0A" and address in ("0100007F", "00000000"):
            ports.add(int(port, 16))
    return ports
