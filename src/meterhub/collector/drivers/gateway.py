"""One kept-open Modbus TCP connection to a gateway (or a meter with its own address),
through pymodbus's ``AsyncModbusTcpClient``.

Requests go one at a time (gateways refuse parallel ones); the poller's lanes already
send them so, and a lock keeps it so for any other caller. A connection the gateway
dropped is noticed at the next request and opened again once, within that request; a
timeout or a broken exchange closes it, so a late answer is never taken for the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from meterhub.collector.registers import ReadBlock
from meterhub.errors import MeterAnswerInvalid, MeterTimeout, MeterUnreachable
from meterhub.registry.register_maps import RegisterFunction

UNIT_BYTE = 6
"""Where the unit id sits in a Modbus TCP frame (after the 6-byte MBAP header start)."""


class Gateway:
    """The connection to ``host:port``, opened from ``source_address`` (if set)."""

    def __init__(self, host: str, port: int, timeout: float, source_address: str | None) -> None:
        self.host, self.port = host, port
        self._timeout = timeout
        self._source = (source_address, 0) if source_address else None
        self._client: AsyncModbusTcpClient | None = None
        self._lock = asyncio.Lock()
        self._unit = 0
        self._answered_unit: int | None = None

    async def read(self, block: ReadBlock, unit_id: int) -> Sequence[int]:
        """The registers of ``block`` from unit ``unit_id``; a ``MeterError`` otherwise."""
        async with self._lock:
            reused = self._client is not None and self._client.connected
            try:
                return await self._exchange(block, unit_id)
            except MeterUnreachable as exc:
                if not reused or isinstance(exc, MeterTimeout):
                    raise
            return await self._exchange(block, unit_id)  # the gateway had dropped it

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _exchange(self, block: ReadBlock, unit_id: int) -> Sequence[int]:
        try:
            async with asyncio.timeout(self._timeout):
                client = await self._connected()
                self._unit, self._answered_unit = unit_id, None
                response = await _request(client, block, unit_id)
        except TimeoutError:
            self.close()
            raise MeterTimeout(f"timed out after {self._timeout} s") from None
        except (ModbusException, OSError) as exc:
            self.close()
            raise MeterUnreachable(f"gateway {self.host}:{self.port}: {exc}") from None
        if self._answered_unit is not None:
            self.close()
            raise MeterAnswerInvalid(f"answer from unit {self._answered_unit}, expected {unit_id}")
        if response.isError():
            raise MeterAnswerInvalid(_exception_text(response.exception_code))
        return list(response.registers)

    async def _connected(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self.close()
        client = AsyncModbusTcpClient(
            self.host,
            port=self.port,
            source_address=self._source,
            timeout=self._timeout * 2,  # ours (asyncio.timeout) ends a request first
            retries=0,
            reconnect_delay=0,  # no reconnecting in the background: the next read does
            trace_packet=self._trace,
        )
        if not await client.connect():
            client.close()
            raise MeterUnreachable(f"cannot connect to gateway {self.host}:{self.port}")
        self._client = client
        return client

    def _trace(self, sending: bool, data: bytes) -> bytes:
        """pymodbus's packet hook: an answer from another unit is noted (and handed on
        as if from the unit asked, so it is refused at once rather than waited out)."""
        if sending or len(data) <= UNIT_BYTE or data[UNIT_BYTE] == self._unit:
            return data
        self._answered_unit = data[UNIT_BYTE]
        return data[:UNIT_BYTE] + bytes([self._unit]) + data[UNIT_BYTE + 1 :]


async def _request(client: AsyncModbusTcpClient, block: ReadBlock, unit_id: int) -> ModbusPDU:
    if block.function is RegisterFunction.INPUT:
        return await client.read_input_registers(
            block.address, count=block.count, device_id=unit_id
        )
    return await client.read_holding_registers(block.address, count=block.count, device_id=unit_id)


def _exception_text(code: int) -> str:
    try:
        name = ExcCodes(code).name.lower().replace("_", " ")
    except ValueError:
        name = "unknown"
    return f"Modbus exception {code} ({name})"
