"""The leader's MQTT duty: one subscriber per active MQTT data source, started, stopped and
restarted as sources are added, changed, deactivated or removed (the registry is read
every ``mqtt_check_interval`` seconds)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy import Engine, select

from meterhub.aio import wait_for_event
from meterhub.errors import InvalidInput
from meterhub.mqtt.config import MqttConfig, mqtt_section
from meterhub.mqtt.status import State, mark_seen, set_state
from meterhub.mqtt.subscriber import Subscriber
from meterhub.registry.tables import data_sources
from meterhub.settings import Settings

log = logging.getLogger("meterhub.mqtt")


@dataclass(frozen=True, slots=True)
class Wanted:
    """An active source's subscription, as configured: restarted when any of it changes."""

    config: MqttConfig
    text: str
    password: str | None


@dataclass(eq=False)
class _Running:
    wanted: Wanted
    subscriber: Subscriber
    stop: asyncio.Event
    task: asyncio.Task[None]


class Supervisor:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._running: dict[str, _Running] = {}
        self._unusable: dict[str, str] = {}
        """Sources whose stored settings cannot be used, with the error already reported."""

    async def run(self, done: asyncio.Event) -> None:
        """Keep the subscribers in step with the registry until ``done``."""
        interval, failing = self.settings.mqtt_check_interval, False
        try:
            while True:
                try:
                    await self._follow(await asyncio.to_thread(self._wanted))
                    await asyncio.to_thread(mark_seen, self.engine, list(self._running))
                except Exception:  # the database is away: the subscribers keep what they have
                    if not failing:
                        log.exception("MQTT: reading the registry failed; retrying")
                    failing = True
                else:
                    if failing:
                        log.warning("MQTT: reading the registry again")
                    failing = False
                if await wait_for_event(done, interval):
                    return
        finally:
            await asyncio.gather(*(self._stop(source_id) for source_id in list(self._running)))

    def _wanted(self) -> dict[str, Wanted]:
        """Every active source with usable MQTT settings; reports the unusable ones."""
        c = data_sources.c
        query = select(c.id, c.active, c.config, c.secret).where(c.config.contains('"mqtt"'))
        with self.engine.begin() as conn:
            rows = conn.execute(query).all()
        wanted: dict[str, Wanted] = {}
        sessions: dict[tuple[str, int, str], str] = {}
        for source_id, active, text, password in rows:
            try:
                config = mqtt_section(text)
            except (InvalidInput, ValueError) as exc:
                self._unusable_settings(source_id, f"unusable settings: {exc}")
                continue
            if config is None or not active:
                continue
            session = (config.host, config.port, config.session_id(source_id))
            if session in sessions:  # two clients of one id would throw each other out
                other = sessions[session]
                self._unusable_settings(source_id, f"client id {session[2]} is {other}'s too")
                continue
            sessions[session] = source_id
            self._unusable.pop(source_id, None)
            wanted[source_id] = Wanted(config, text, password)
        return wanted

    def _unusable_settings(self, source_id: str, error: str) -> None:
        if self._unusable.get(source_id) != error:
            log.error("MQTT source %s: %s", source_id, error)
            set_state(self.engine, source_id, State.STOPPED, error)
            self._unusable[source_id] = error

    async def _follow(self, wanted: dict[str, Wanted]) -> None:
        for source_id, running in list(self._running.items()):
            now = wanted.get(source_id)
            if now != running.wanted or running.task.done():
                if now is not None:
                    old = {rule.subscription for rule in running.wanted.config.topics}
                    new = {rule.subscription for rule in now.config.topics}
                    running.subscriber.dropped = old - new
                await self._stop(source_id)
        for source_id, now in wanted.items():
            if source_id not in self._running:
                self._start(source_id, now)

    def _start(self, source_id: str, wanted: Wanted) -> None:
        subscriber = Subscriber(
            self.engine, self.settings, source_id, wanted.config, wanted.password
        )
        stop = asyncio.Event()
        task = asyncio.create_task(subscriber.run(stop), name=f"mqtt {source_id}")
        self._running[source_id] = _Running(wanted, subscriber, stop, task)
        log.info("MQTT source %s: subscribing at %s", source_id, wanted.config.url)

    async def _stop(self, source_id: str) -> None:
        running = self._running.pop(source_id)
        running.stop.set()
        try:
            await running.task
        except Exception:
            log.exception("MQTT source %s: the subscriber failed", source_id)
