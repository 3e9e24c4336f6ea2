"""One MQTT source's subscriber: connect, subscribe at QoS 1, store what arrives in
batches, acknowledge each batch once committed, and reconnect with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import aiomqtt
from aiomqtt.client import MessagesIterator
from sqlalchemy import Engine

from meterhub.aio import wait_for_event
from meterhub.mqtt.client import AckingClient, Delivery, open_client, tls_context
from meterhub.mqtt.config import MqttConfig
from meterhub.mqtt.ingest import store_batch
from meterhub.mqtt.status import State, set_state
from meterhub.settings import Settings

log = logging.getLogger("meterhub.mqtt")

FIRST_DELAY = 0.5
MAX_DELAY = 30.0
"""Seconds before reconnecting: doubled after each failed try, back to the first once
connected."""
MAX_BATCH = 1000
"""Most messages stored in one transaction (all that arrived while the last was written)."""


@dataclass(eq=False)
class Subscriber:
    engine: Engine
    settings: Settings
    source_id: str
    config: MqttConfig
    password: str | None
    dropped: set[str] = field(default_factory=set)
    """Topic filters to unsubscribe from before leaving (removed from the settings)."""
    _delay: float = FIRST_DELAY
    _failing: bool = False

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the subscription until ``stop``; then the source's state is ``stopped``."""
        try:
            await self._state(State.CONNECTING)
            while not stop.is_set():
                try:
                    await self._session(stop)
                except Exception as exc:  # the broker or the database went away: retry
                    await self._failed(exc)
                    await wait_for_event(stop, self._delay)
                    self._delay = min(self._delay * 2, MAX_DELAY)
        finally:
            await self._state(State.STOPPED)

    async def _session(self, stop: asyncio.Event) -> None:
        """One connection: until ``stop`` (then a clean disconnect) or until it fails."""
        tls = await asyncio.to_thread(tls_context, self.config.tls) if self.config.secure else None
        client = open_client(self.config, self.source_id, self.password, tls)
        async with client:
            filters = list(dict.fromkeys(rule.subscription for rule in self.config.topics))
            await client.subscribe([(name, 1) for name in filters])
            await self._state(State.CONNECTED)
            if self._failing:
                log.warning("MQTT source %s: connected again", self.source_id)
            self._delay, self._failing = FIRST_DELAY, False
            await self._consume(client, stop)
            if self.dropped:
                await client.unsubscribe(sorted(self.dropped))

    async def _consume(self, client: AckingClient, stop: asyncio.Event) -> None:
        messages = client.messages
        while (first := await _next(messages, stop)) is not None:
            batch = [first]
            while len(messages) and len(batch) < MAX_BATCH:
                batch.append(await anext(messages))
            deliveries = [message for message in batch if isinstance(message, Delivery)]
            await asyncio.to_thread(
                store_batch,
                self.engine,
                self.source_id,
                self.config,
                deliveries,
                self.settings.zone,
                self.settings.raw_retention_days,
            )
            for delivery in deliveries:
                client.ack(delivery)

    async def _failed(self, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}".removesuffix(": ")
        if exc.__cause__ is not None:
            error += f" ({exc.__cause__})"
        if not self._failing:
            log.warning("MQTT source %s: %s; retrying", self.source_id, error)
        self._failing = True
        with contextlib.suppress(Exception):  # the database may be what failed
            await asyncio.to_thread(
                set_state, self.engine, self.source_id, State.DISCONNECTED, error
            )

    async def _state(self, state: State) -> None:
        await asyncio.to_thread(set_state, self.engine, self.source_id, state)


async def _next(messages: MessagesIterator, stop: asyncio.Event) -> aiomqtt.Message | None:
    """The next message, or ``None`` once ``stop`` is set (a message left unread is not
    acknowledged: the broker delivers it again)."""
    receiving = asyncio.ensure_future(anext(messages))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if receiving in done:
        return receiving.result()  # MqttError once the connection is lost
    receiving.cancel()
    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
        await receiving
    return None
