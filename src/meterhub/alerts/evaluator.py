"""The alert evaluator, a duty of the leading server: every ``alert_interval`` seconds,
each rule is evaluated over all its meters at once (``conditions``) and its alerts are
brought in line (``state``), one transaction per rule. Rules switched off are evaluated as
holding nowhere, which resolves their open alerts. The clock is injected: tests move time
instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, exists, or_, update

from meterhub.aio import wait_for_event
from meterhub.alerts.conditions import EVALUATE, Verdict
from meterhub.alerts.rule_store import RULES
from meterhub.alerts.rules import Rule
from meterhub.alerts.state import OPEN, Transitions, apply
from meterhub.alerts.tables import alert_rules, alerts
from meterhub.registry.tables import projects
from meterhub.times import now_us

log = logging.getLogger("meterhub.alerts")


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    rule_id: int
    transitions: Transitions | None
    """``None``: nothing to evaluate this time (a period not closed yet)."""


class AlertEvaluator:
    """Evaluates every rule; ``tick`` is one pass, ``run`` repeats it until stopped."""

    def __init__(self, engine: Engine, *, interval: float = 60.0) -> None:
        self._engine = engine
        self._interval = interval

    def tick(self, now: int | None = None) -> list[RuleOutcome]:
        """Evaluate every rule (and resolve the open alerts of disabled ones) as of ``now``."""
        now = now_us() if now is None else now
        outcomes = []
        for rule, zone in self._rules():
            try:
                outcomes.append(RuleOutcome(rule.id, self._evaluate(rule, zone, now)))
            except Exception:
                log.exception("alert rule %d failed to evaluate; going on", rule.id)
        return outcomes

    def _evaluate(self, rule: Rule, zone: ZoneInfo, now: int) -> Transitions | None:
        with self._engine.begin() as conn:
            if rule.enabled:
                verdict = EVALUATE[rule.kind](conn, rule, now, zone)
                if verdict is None:
                    return None
                mark = update(alert_rules).where(alert_rules.c.id == rule.id)
                conn.execute(mark.values(watermark=verdict.watermark))
            else:
                verdict = Verdict({}, now)  # switched off: holds for no meter
            done = apply(conn, rule, verdict, now)
        if done.fired or done.resolved:
            log.info(
                "alert rule %d: %d fired, %d resolved", rule.id, len(done.fired), len(done.resolved)
            )
        return done

    def _rules(self) -> list[tuple[Rule, ZoneInfo]]:
        """Enabled rules, and disabled ones that still have open alerts."""
        has_open = exists().where(alerts.c.rule_id == alert_rules.c.id, OPEN)
        query = (
            RULES.add_columns(projects.c.timezone)
            .join(projects, projects.c.id == alert_rules.c.project_id)
            .where(or_(alert_rules.c.enabled.is_(True), has_open))
            .order_by(alert_rules.c.id)
        )
        with self._engine.begin() as conn:
            return [(Rule.from_row(row), ZoneInfo(row.timezone)) for row in conn.execute(query)]

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every ``interval`` seconds until ``stop``."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.tick)
            except Exception:
                log.exception("alert evaluation failed; retrying in %.0f s", self._interval)
            await wait_for_event(stop, self._interval)
