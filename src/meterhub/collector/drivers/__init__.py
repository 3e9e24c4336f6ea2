"""Meter protocols as drivers behind one small interface: the poller hands a driver a
target and gets its channel values, or a ``MeterError`` (``Driver``, ``Drivers``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from meterhub.collector.drivers.http import HttpDriver
from meterhub.collector.drivers.modbus import ModbusDriver
from meterhub.collector.protocol import Reading
from meterhub.registry.devices import MeterProtocol
from meterhub.settings import Settings

if TYPE_CHECKING:
    from meterhub.collector.targets import Target


class Driver(Protocol):
    """Reads meters of one protocol."""

    async def read(self, target: Target) -> Reading:
        """Every channel of ``target`` now; ``MeterError`` when it cannot be read."""
        ...

    def close(self) -> None:
        """Let go of any connection kept open."""
        ...


class Drivers:
    """The driver of each protocol, chosen by the target's wiring."""

    def __init__(self, settings: Settings) -> None:
        timeout, source = settings.poll_timeout, settings.source_address
        self._drivers: dict[MeterProtocol, Driver] = {
            MeterProtocol.HTTP: HttpDriver(timeout, source),
            MeterProtocol.MODBUS: ModbusDriver(timeout, source, settings.modbus_max_connections),
        }

    async def read(self, target: Target) -> Reading:
        return await self._drivers[target.wiring.protocol].read(target)

    def close(self) -> None:
        for driver in self._drivers.values():
            driver.close()
