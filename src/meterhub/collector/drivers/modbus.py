"""The Modbus TCP driver: a meter model's registers read in as few requests as its map
allows (``registers.plan_reads``), over one kept-open connection per gateway."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from meterhub.collector.drivers.gateway import Gateway
from meterhub.collector.protocol import Reading
from meterhub.collector.registers import ReadBlock, model_values, plan_reads
from meterhub.registry.register_maps import MeterModel

if TYPE_CHECKING:
    from meterhub.collector.targets import Target


class ModbusDriver:
    """Reads Modbus meters; their gateways' connections are kept between polls."""

    def __init__(self, timeout: float, source_address: str | None) -> None:
        self._timeout = timeout
        self._source_address = source_address
        self._gateways: dict[tuple[str, int], Gateway] = {}
        # every failure reaches the meter's health; pymodbus would log each one again
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

    async def read(self, target: Target) -> Reading:
        model = target.model
        assert model is not None, "a Modbus target has its model"
        gateway = self._gateways.get(target.address)
        if gateway is None:
            gateway = Gateway(target.host, target.port, self._timeout, self._source_address)
            self._gateways[target.address] = gateway
        blocks = _plan(model)
        unit = target.wiring.unit_id
        answers = {block: await gateway.read(block, unit) for block in blocks}
        return model_values(model, blocks, answers)

    def close(self) -> None:
        for gateway in self._gateways.values():
            gateway.close()
        self._gateways.clear()


@functools.lru_cache(maxsize=256)
def _plan(model: MeterModel) -> tuple[ReadBlock, ...]:
    return plan_reads(model)
