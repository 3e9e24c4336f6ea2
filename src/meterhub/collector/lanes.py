"""Polls of one address one at a time, without holding a worker per waiting poll.

The units behind a Modbus gateway share its host and port, and a gateway answers one
request at a time. A worker that takes a target whose address is busy leaves it in that
address's lane and takes the next one; the worker polling the address goes on with the
lane's targets when it is done. So a busy gateway holds one worker, never all of them,
while other gateways are polled in parallel. (HTTP meters each have an address of their
own: their lanes never hold more than the poll in flight.)
"""

from __future__ import annotations

from collections import deque

from meterhub.collector.targets import Target


class Lanes:
    """The busy addresses, each with the targets waiting for it."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[str, int], deque[Target]] = {}

    def enter(self, target: Target) -> bool:
        """Whether the caller polls ``target`` now (else it waits in its address's lane)."""
        lane = self._waiting.get(target.address)
        if lane is None:
            self._waiting[target.address] = deque()
            return True
        lane.append(target)
        return False

    def leave(self, target: Target) -> Target | None:
        """``target`` was polled: the next target of its address, for the caller to poll
        now, or ``None`` (the address is free)."""
        lane = self._waiting.get(target.address)
        if lane:
            return lane.popleft()
        self._waiting.pop(target.address, None)
        return None

    def drop_waiting(self) -> list[Target]:
        """Forget every waiting target (polls in flight finish); return them."""
        dropped = [target for lane in self._waiting.values() for target in lane]
        for lane in self._waiting.values():
            lane.clear()
        return dropped
