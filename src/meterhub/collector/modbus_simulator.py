"""Simulated Modbus TCP meters: pymodbus servers, one gateway per port, ``units`` meters
behind each (unit ids 1..units), all of one built-in meter model (SDM120 by default).

Meter ids: unit ``u`` on port ``p`` is meter ``p * 1000 + u + id_offset`` (``meter_id``);
its values follow ``simulated_values`` as the HTTP simulator's do: ``A`` the current,
``kW`` the rising energy register, a voltage channel (unit V) 230 V, a power channel
(unit kW) current x 230 V. The seeded faults are the HTTP simulator's, per meter:
``timeout`` never answers, ``garbage`` answers a Modbus exception (device failure),
``wrong_id`` answers as the next unit id, ``reset`` drops its register to 0 every 3rd
read. Served by the HTTP simulator's processes (``simulator.Simulator``).
"""

from __future__ import annotations

import csv
import functools
import io
import math
import socket
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from meterhub.collector.registers import encode
from meterhub.collector.simulated_values import VOLTS, meter_values
from meterhub.collector.simulator import (
    BindFailures,
    FaultKind,
    RegisterResets,
    Simulator,
    SimulatorConfig,
    pick_fault,
    serve_ports,
    serve_until_interrupted,
)
from meterhub.registry.channels import ChannelKind
from meterhub.registry.devices import UNIT_IDS
from meterhub.registry.meter_models import builtin_models
from meterhub.registry.register_maps import MeterModel, RegisterSpec

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

REGISTERS = 0x200
"""Registers each simulated unit holds, input and holding alike (all read as 0 but mapped)."""
UNIT_BYTE = 6


def meter_id(port: int, unit: int, id_offset: int = 0) -> int:
    """The id of unit ``unit`` behind the gateway on ``port``."""
    return port * 1000 + unit + id_offset


@dataclass(frozen=True)
class ModbusSimulatorConfig(SimulatorConfig):
    """The HTTP simulator's settings, plus ``units`` per port and the ``model`` served."""

    units: int = 1
    model: str = "SDM120"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.units not in UNIT_IDS:
            raise ValueError(f"units must be within 1-{UNIT_IDS.stop - 1}, got {self.units}")
        if self.record is not None:
            raise ValueError("record: only the HTTP simulator records its answers")
        self.meter_model()

    def meter_model(self) -> MeterModel:
        """The built-in model the meters serve; ``ValueError`` for an unknown name."""
        models = {model.name: model for model in builtin_models()}
        if self.model not in models:
            raise ValueError(f"model must be one of {', '.join(models)}, got {self.model}")
        return models[self.model]

    @property
    def process_count(self) -> int:
        """Serving processes: about 2,000 units each unless given (pymodbus's servers are
        heavier than the HTTP simulator's sockets)."""
        return self.processes or max(1, math.ceil(len(self.ports) * self.units / 2000))

    def fault(self, port: int, unit: int) -> FaultKind | None:
        return pick_fault(self.faults, self.seed, port, unit)

    def serving(
        self, index: int, ports: range, conn: Connection[BindFailures, Any]
    ) -> Coroutine[Any, Any, None]:
        return _serve_modbus(self, ports, conn)


class ModbusSimulator(Simulator):
    """Simulated Modbus gateways in spawned processes; a context manager."""

    config: ModbusSimulatorConfig

    def __init__(self, config: ModbusSimulatorConfig, *, require_all: bool = True) -> None:
        super().__init__(config, require_all=require_all)

    @property
    def units(self) -> list[tuple[int, int, int]]:
        """``(meter_id, port, unit)`` of every simulated meter that is being served."""
        config = self.config
        return [
            (meter_id(port, unit, config.id_offset), port, unit)
            for port in config.ports
            if port not in self.unbound
            for unit in range(1, config.units + 1)
        ]

    def meters_csv(self) -> str:
        """The meters as a CSV file ``meterhub meters import`` registers."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(("device_id", "type", "host", "port", "protocol", "unit_id", "model"))
        model = self.config.meter_model()
        for meter, port, unit in self.units:
            row = (meter, model.device_type.value, self.config.host, port, "modbus", unit)
            writer.writerow((*row, model.name))
        return out.getvalue()


# --- serving process --------------------------------------------------------------------


class _Meters:
    """The register contents of every simulated unit of one process."""

    def __init__(self, config: ModbusSimulatorConfig) -> None:
        self._config = config
        self._model = config.meter_model()
        self._resets = RegisterResets()

    async def action(
        self,
        port: int,
        unit: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus's register hook: fill the unit's registers with its values now."""
        fault = self._config.fault(port, unit)
        if fault == "garbage":
            return ExcCodes.DEVICE_FAILURE
        meter = meter_id(port, unit, self._config.id_offset)
        amps, kwh = meter_values(self._config.seed, meter, time.time())
        if fault == "reset":
            kwh = self._resets.value(meter, kwh)
        for spec in self._model.registers:
            words = encode(spec, _value(spec, amps, kwh))
            offset = spec.address - start_address
            current_registers[offset : offset + len(words)] = words
        return None

    def trace(self, port: int, sending: bool, data: bytes) -> bytes:
        """pymodbus's packet hook: the timeout fault swallows an answer, the wrong-id
        fault sends it as the next unit."""
        if not sending or len(data) <= UNIT_BYTE:
            return data
        unit = data[UNIT_BYTE]
        fault = self._config.fault(port, unit)
        if fault == "timeout":
            return b""
        if fault == "wrong_id":
            return data[:UNIT_BYTE] + bytes([unit % 247 + 1]) + data[UNIT_BYTE + 1 :]
        return data


def _value(spec: RegisterSpec, amps: float, kwh: float) -> float:
    """What a simulated meter shows on a channel, by its kind and unit."""
    if spec.channel.kind is ChannelKind.REGISTER:
        return kwh
    by_unit = {"A": amps, "V": VOLTS, "kW": amps * VOLTS / 1000.0}
    return by_unit.get(spec.channel.unit, 0.0)


async def _listen(meters: _Meters, config: ModbusSimulatorConfig, port: int) -> ModbusTcpServer:
    """A pymodbus server for the units of ``port``; ``OSError`` when it cannot be bound."""
    with socket.socket() as probe:  # pymodbus reports a failed bind without its reason
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((config.host, port))
    bits = [SimData(0, count=1, values=False, datatype=DataType.BITS)]
    registers = [SimData(0, count=REGISTERS, values=0, datatype=DataType.REGISTERS)]
    devices = [
        SimDevice(
            unit,
            simdata=(bits, bits, registers, registers),
            action=functools.partial(meters.action, port, unit),
        )
        for unit in range(1, config.units + 1)
    ]
    server = ModbusTcpServer(
        devices,
        address=(config.host, port),
        ignore_missing_devices=True,
        trace_packet=functools.partial(meters.trace, port),
    )
    try:
        await server.serve_forever(background=True)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {config.host}:{port}: {exc}") from None
    return server


async def _serve_modbus(
    config: ModbusSimulatorConfig, ports: range, conn: Connection[BindFailures, Any]
) -> None:
    meters = _Meters(config)
    await serve_ports(functools.partial(_listen, meters, config), ports, conn)


def run_modbus_simulator(config: ModbusSimulatorConfig, csv_path: Path | None) -> None:
    """Serve until SIGINT or SIGTERM, first writing the meters' CSV to ``csv_path``."""

    def announce(simulator: Simulator) -> str:
        ports = config.ports
        summary = (
            f"simulating {len(ports)} Modbus gateways x {config.units} units ({config.model})"
            f" on {config.host} ports {ports[0]}-{ports[-1]} (meter id = port x 1000 + unit +"
            f" {config.id_offset}) in {config.process_count} processes, seed {config.seed},"
            f" faults: {config.faults.describe()}"
        )
        if csv_path is None:
            return summary
        assert isinstance(simulator, ModbusSimulator)
        csv_path.write_text(simulator.meters_csv())
        return f"{summary}; meters written to {csv_path} (meterhub meters import {csv_path})"

    serve_until_interrupted(ModbusSimulator(config, require_all=False), announce)
