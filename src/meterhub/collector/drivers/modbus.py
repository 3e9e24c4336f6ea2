"""The Modbus TCP driver: a meter model's registers read in as few requests as its map
allows (``registers.plan_reads``), over one kept-open connection per gateway."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from meterhub.collector.drivers.gateway_pool import GatewayPool
from meterhub.collector.protocol import Reading
from meterhub.collector.registers import ReadBlock, model_values, plan_reads
from meterhub.registry.register_maps import MeterModel

if TYPE_CHECKING:
    from meterhub.collector.targets import Target


class ModbusDriver:
    """Reads Modbus meters; their gateways' connections are kept between polls, at most
    ``max_connections`` of them (``GatewayPool``)."""

    def __init__(self, timeout: float, source_address: str | None, max_connections: int) -> None:
        self.gateways = GatewayPool(max_connections, timeout, source_address)
        # every failure reaches the meter's health; pymodbus would log each one again
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

    async def read(self, target: Target) -> Reading:
        model = target.model
        assert model is not None, "a Modbus target has its model"
        blocks = _plan(model)
        unit = target.wiring.unit_id
        async with self.gateways.using(target.host, target.port) as gateway:
            answers = {block: await gateway.read(block, unit) for block in blocks}
        return model_values(model, blocks, answers)

    def close(self) -> None:
        self.gateways.close()


@functools.lru_cache(maxsize=256)
def _plan(model: MeterModel) -> tuple[ReadBlock, ...]:
    return plan_reads(model)
