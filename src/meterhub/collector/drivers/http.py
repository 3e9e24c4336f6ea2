"""The HTTP driver: one GET per read (``http_get``), the answer parsed by ``protocol``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterhub.collector.http_get import http_get
from meterhub.collector.protocol import Reading, parse_answer

if TYPE_CHECKING:
    from meterhub.collector.targets import Target


class HttpDriver:
    """Reads HTTP meters, each on a fresh connection from ``source_address`` (if set)."""

    def __init__(self, timeout: float, source_address: str | None) -> None:
        self._timeout = timeout
        self._source_address = source_address

    async def read(self, target: Target) -> Reading:
        answer = await http_get(
            target.host, target.port, timeout=self._timeout, source_address=self._source_address
        )
        return parse_answer(answer.status, answer.body, target.device_id, target.channels)

    def close(self) -> None:
        """Nothing is kept open."""
