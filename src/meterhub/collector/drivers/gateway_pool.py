"""The gateways a Modbus driver keeps connections to, at most so many at once.

Each gateway (host and port) has one ``Gateway``, kept between polls so its connection
stays open. Past ``limit`` gateways, taking a new one first closes and forgets the least
recently used gateway that no poll is using (and lets the loop turn, so its socket is gone
before a new one opens); one in use is never closed. When every kept
gateway is in use (a limit below the polls in flight), the new one is kept beyond the
limit until the next take finds an idle one to close.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from meterhub.collector.drivers.gateway import Gateway

Address = tuple[str, int]


class GatewayPool:
    """Gateways by address, least recently used first."""

    def __init__(self, limit: int, timeout: float, source_address: str | None) -> None:
        self.limit = limit
        self._timeout = timeout
        self._source_address = source_address
        self._gateways: OrderedDict[Address, Gateway] = OrderedDict()
        self._in_use: Counter[Address] = Counter()

    def __len__(self) -> int:
        """Gateways kept: a bound on the connections open (a failed one may be closed)."""
        return len(self._gateways)

    def addresses(self) -> list[Address]:
        """The kept gateways' addresses, least recently used first."""
        return list(self._gateways)

    @asynccontextmanager
    async def using(self, host: str, port: int) -> AsyncIterator[Gateway]:
        """The gateway of ``host:port``, not closed by the pool while the block runs."""
        address = (host, port)
        gateway = await self._take(address)
        self._in_use[address] += 1
        try:
            yield gateway
        finally:
            self._in_use[address] -= 1
            if not self._in_use[address]:
                del self._in_use[address]

    def close(self) -> None:
        for gateway in self._gateways.values():
            gateway.close()
        self._gateways.clear()

    async def _take(self, address: Address) -> Gateway:
        if address not in self._gateways and self._make_room():
            await asyncio.sleep(0)  # a closed transport lets go of its socket a loop turn later
            return await self._take(address)  # other polls may have taken gateways meanwhile
        gateway = self._gateways.get(address)
        if gateway is not None:
            self._gateways.move_to_end(address)
            return gateway
        gateway = Gateway(*address, self._timeout, self._source_address)
        self._gateways[address] = gateway
        return gateway

    def _make_room(self) -> bool:
        """Close idle gateways while the pool is full; whether any was closed."""
        closed = False
        while len(self._gateways) >= self.limit and self._close_idle():
            closed = True
        return closed

    def _close_idle(self) -> bool:
        """Close and forget the least recently used gateway not in use; whether there was one."""
        idle = next((a for a in self._gateways if a not in self._in_use), None)
        if idle is None:
            return False
        self._gateways.pop(idle).close()
        return True
