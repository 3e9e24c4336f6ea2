"""Notifications: an outbox that evaluation fills, and the worker that delivers it.

Evaluation only inserts ``notifications`` rows (in its own transaction), so a receiver
that is slow or down never holds it up. The delivery worker takes the due rows, sends each
(webhooks concurrently, e-mails through the standard library's ``smtplib`` in threads:
no extra dependency, and a blocking send is confined to its thread), logs every attempt
with its outcome, and retries a failure after ``alert_retry_base`` seconds, doubling each
time (up to ``alert_retry_max``), until a 2xx / an accepted e-mail or
``alert_max_attempts`` tries.

Notifications of one rule's event, queued by one evaluation for one channel, go as one
digest from ``alert_digest_from`` of them on (a site-wide outage is one message, not one a
meter): its members are fixed when it is first sent, so every retry carries the same ones.

A webhook is a ``POST`` of the JSON body with ``X-Meterhub-Signature: sha256=<hex>``, the
HMAC-SHA256 of the exact body bytes under the channel's secret, plus
``X-Meterhub-Timestamp`` (Unix seconds of the try), ``X-Meterhub-Event`` and
``X-Meterhub-Delivery`` (the notification's id, or the digest's: the same on each retry).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import smtplib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from email.message import EmailMessage
from enum import StrEnum
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, exists, insert, select, update

from meterhub.aio import wait_for_event
from meterhub.alerts.batches import in_batches
from meterhub.alerts.tables import alert_channels, alert_rules, alerts, notification_attempts
from meterhub.alerts.tables import notifications as outbox
from meterhub.alerts.targets import REFUSED
from meterhub.settings import Settings
from meterhub.times import iso, now_us

log = logging.getLogger("meterhub.alerts")

SIGNATURE_HEADER = "X-Meterhub-Signature"
TIMESTAMP_HEADER = "X-Meterhub-Timestamp"
DELIVERY_BATCH = 200
"""Notifications one delivery pass sends at most."""


class Event(StrEnum):
    FIRED = "fired"
    REMINDER = "reminder"
    RESOLVED = "resolved"


class Delivery(StrEnum):
    """A notification's state in the outbox."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class ChannelKind(StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds before the next try after ``attempts`` failed ones: base, 2 x base, ..."""
    return float(min(cap, base * 2 ** min(attempts - 1, 60)))


# --- the outbox ---------------------------------------------------------------------------


def enqueue(conn: Connection, alert_ids: Sequence[int], event: Event, now: int) -> int:
    """Queue ``event`` of each alert for every enabled channel of its project; the number
    of notifications queued."""
    queued = 0
    for batch in in_batches(alert_ids):
        query = (
            select(alerts, alert_rules.c.name, alert_rules.c.kind, alert_channels.c.id.label("ch"))
            .join(alert_rules, alert_rules.c.id == alerts.c.rule_id)
            .join(alert_channels, alert_channels.c.project_id == alerts.c.project_id)
            .where(alerts.c.id.in_(batch), alert_channels.c.enabled.is_(True))
        )
        rows = [
            {
                "alert_id": row.id,
                "channel_id": row.ch,
                "event": event.value,
                "body": json.dumps(alert_body(row, event), ensure_ascii=False),
                "state": Delivery.PENDING.value,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for row in conn.execute(query)
        ]
        if rows:
            conn.execute(insert(outbox), rows)
        queued += len(rows)
    return queued


def alert_body(row: Any, event: Event) -> dict[str, Any]:
    """What a notification says of an alert row (joined to its rule's name and kind);
    times as ISO 8601 in UTC, the condition's ``detail`` as found (its times in µs)."""
    return {
        "event": event.value,
        "project_id": row.project_id,
        "rule": {"id": row.rule_id, "name": row.name, "kind": row.kind},
        "alert": {
            "id": row.id,
            "device_id": row.device_id,
            "fired_at": _utc(row.fired_at),
            "acknowledged_at": _utc(row.acknowledged_at),
            "acknowledged_by": row.acknowledged_by,
            "resolved_at": _utc(row.resolved_at),
            "detail": json.loads(row.detail),
        },
    }


def digest_body(bodies: Sequence[str]) -> str:
    """The body of a digest of notifications (their bodies, in order): their event, project
    and rule, how many alerts, and the alerts."""
    loaded = [json.loads(body) for body in bodies]
    head = loaded[0]
    digest = {
        "event": head["event"],
        "project_id": head["project_id"],
        "rule": head["rule"],
        "count": len(loaded),
        "alerts": [body["alert"] for body in loaded],
    }
    return json.dumps(digest, ensure_ascii=False)


def _utc(us: int | None) -> str | None:
    return None if us is None else iso(us, UTC)


# --- delivery -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    duration_ms: float
    status_code: int | None = None
    error: str | None = None
    final: bool = False
    """A failure no retry can mend: the notification is given up at once."""


@dataclass(frozen=True, slots=True)
class Due:
    """A notification to send, with its channel: one alert's, or a digest of several
    (``members``: the notifications it carries, the lowest id first)."""

    members: tuple[int, ...]
    event: str
    body: str
    attempts: int
    kind: ChannelKind
    url: str | None
    secret: str | None
    addresses: list[str]

    @property
    def id(self) -> int:
        """The delivery's id: the notification's, or the digest's (its lowest)."""
        return self.members[0]


class Deliverer:
    """Sends due notifications; ``deliver`` is one pass, ``run`` repeats it until stopped."""

    def __init__(self, engine: Engine, settings: Settings, *, interval: float = 1.0) -> None:
        self._engine = engine
        self._settings = settings
        self._interval = interval

    async def deliver(self, now: int | None = None) -> int:
        """Send every notification due by ``now`` (at most ``DELIVERY_BATCH``); how many."""
        now = now_us() if now is None else now
        due = await asyncio.to_thread(self._claim, now)
        if not due:
            return 0
        timeout = self._settings.alert_send_timeout
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            outcomes = await asyncio.gather(*(self._send(client, item) for item in due))
        await asyncio.to_thread(self._record, now, due, outcomes)
        return len(due)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver every ``interval`` seconds until ``stop``; a failing pass is logged."""
        while not stop.is_set():
            try:
                await self.deliver()
            except Exception:
                log.exception("notification delivery failed; retrying")
            await wait_for_event(stop, self._interval)

    def _claim(self, now: int) -> list[Due]:
        """The due notifications, each put off by the longest a try may take, so that no
        other pass sends it meanwhile; those of a digest go together (``_deliveries``).
        Those of one alert and channel go out in order: one waits while an earlier one is
        pending (a resolution never overtakes its firing)."""
        lease = now + round(3 * self._settings.alert_send_timeout * 1e6)
        earlier = outbox.alias("earlier")
        waiting = exists().where(
            earlier.c.alert_id == outbox.c.alert_id,
            earlier.c.channel_id == outbox.c.channel_id,
            earlier.c.state == Delivery.PENDING.value,
            earlier.c.id < outbox.c.id,
        )
        channel = alert_channels.c
        pending = (
            select(outbox, channel.kind, channel.url, channel.secret, channel.addresses)
            .add_columns(alerts.c.rule_id)
            .join(alert_channels, channel.id == outbox.c.channel_id)
            .join(alerts, alerts.c.id == outbox.c.alert_id)
            .where(outbox.c.state == Delivery.PENDING.value)
        )
        query = (
            pending.where(outbox.c.next_attempt_at <= now, ~waiting)
            .order_by(outbox.c.next_attempt_at, outbox.c.id)
            .limit(DELIVERY_BATCH)
        )
        with self._engine.begin() as conn:
            rows = list(conn.execute(query))
            digests = {row.digest for row in rows if row.digest is not None}
            if digests:  # the rest of each digest goes with it
                taken = {row.id for row in rows}
                members = conn.execute(pending.where(outbox.c.digest.in_(digests)))
                rows += [row for row in members if row.id not in taken]
            deliveries = self._deliveries(conn, rows)
            ids = [member for due in deliveries for member in due.members]
            if ids:
                claim = update(outbox).where(outbox.c.id.in_(ids)).values(next_attempt_at=lease)
                conn.execute(claim)
        return deliveries

    def _deliveries(self, conn: Connection, rows: Sequence[Any]) -> list[Due]:
        """``rows`` as deliveries: each digest whole; the others of one rule's event, queued
        by one evaluation for one channel, made a digest when there are at least
        ``alert_digest_from`` of them; every other notification alone."""
        groups: dict[tuple[Any, ...], list[Any]] = {}
        for row in sorted(rows, key=lambda row: row.id):
            if row.digest is not None:
                key: tuple[Any, ...] = ("digest", row.digest)
            else:
                key = ("queued", row.channel_id, row.event, row.created_at, row.rule_id)
            groups.setdefault(key, []).append(row)
        least = self._settings.alert_digest_from
        deliveries = []
        for (kind, *_), group in groups.items():
            if kind == "queued" and not 0 < least <= len(group):
                deliveries += [_due([row], row.body) for row in group]
                continue
            if kind == "queued":  # a new digest: its notifications are fixed from now on
                ids = [row.id for row in group]
                conn.execute(update(outbox).where(outbox.c.id.in_(ids)).values(digest=ids[0]))
            deliveries.append(_due(group, digest_body([row.body for row in group])))
        return deliveries

    async def _send(self, client: httpx.AsyncClient, item: Due) -> Outcome:
        targets = self._settings.webhook_targets
        if (
            item.kind is ChannelKind.WEBHOOK
            and targets is not None
            and not targets.allows(item.url or "")
        ):
            return Outcome(False, 0.0, error=REFUSED, final=True)
        started = time.perf_counter()
        try:
            if item.kind is ChannelKind.WEBHOOK:
                status = await _post(client, item)
            else:
                status = None
                await asyncio.to_thread(self._mail, item)
        except (httpx.HTTPError, OSError, smtplib.SMTPException) as exc:
            took = (time.perf_counter() - started) * 1000
            return Outcome(False, took, error=f"{type(exc).__name__}: {exc}"[:1000])
        took = (time.perf_counter() - started) * 1000
        if status is not None and not 200 <= status < 300:
            return Outcome(False, took, status, f"HTTP {status}")
        return Outcome(True, took, status)

    def _mail(self, item: Due) -> None:
        settings = self._settings
        if settings.smtp_host is None:
            raise smtplib.SMTPException("no SMTP server configured (METERHUB_SMTP_HOST)")
        message = email_message(item, settings.smtp_from)
        timeout = settings.alert_send_timeout
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_username is not None and settings.smtp_password is not None:
                smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
            smtp.send_message(message)

    def _record(self, now: int, due: list[Due], outcomes: Sequence[Outcome]) -> None:
        settings = self._settings
        with self._engine.begin() as conn:
            conn.execute(
                insert(notification_attempts),
                [
                    {
                        "notification_id": member,
                        "attempted_at": now,
                        "duration_ms": outcome.duration_ms,
                        "ok": outcome.ok,
                        "status_code": outcome.status_code,
                        "error": outcome.error,
                    }
                    for item, outcome in zip(due, outcomes, strict=True)
                    for member in item.members
                ],
            )
            for item, outcome in zip(due, outcomes, strict=True):
                attempts = item.attempts + 1
                values: dict[str, Any] = {"attempts": attempts}
                if outcome.ok:
                    values |= {"state": Delivery.DELIVERED.value, "delivered_at": now}
                elif outcome.final or attempts >= settings.alert_max_attempts:
                    values |= {"state": Delivery.FAILED.value}
                    log.warning(
                        "notification %d (of %d) given up after %d tries",
                        item.id,
                        len(item.members),
                        attempts,
                    )
                else:
                    wait = retry_delay(
                        attempts, settings.alert_retry_base, settings.alert_retry_max
                    )
                    values |= {"next_attempt_at": now + round(wait * 1e6)}
                members = outbox.c.id.in_(item.members)
                conn.execute(update(outbox).where(members).values(**values))


def _due(rows: Sequence[Any], body: str) -> Due:
    """The delivery of the notifications ``rows`` (one, or a digest's, lowest id first)."""
    first = rows[0]
    return Due(
        tuple(row.id for row in rows),
        first.event,
        body,
        first.attempts,
        ChannelKind(first.kind),
        first.url,
        first.secret,
        json.loads(first.addresses or "[]"),
    )


async def _post(client: httpx.AsyncClient, item: Due) -> int:
    body = item.body.encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(item.secret or "", body),
        TIMESTAMP_HEADER: str(int(time.time())),
        "X-Meterhub-Event": item.event,
        "X-Meterhub-Delivery": str(item.id),
    }
    answer = await client.post(item.url or "", content=body, headers=headers)
    return answer.status_code


def email_message(item: Due, sender: str) -> EmailMessage:
    """The e-mail of a notification or a digest: a subject saying what happened (to which
    meter, or to how many), the facts as text, and the JSON body."""
    body = json.loads(item.body)
    rule = body["rule"]
    alerts = body["alerts"] if "alerts" in body else [body["alert"]]
    which = f"{len(alerts)} meters" if "alerts" in body else f"meter {alerts[0]['device_id']}"
    message = EmailMessage()
    message["Subject"] = f"[meterhub] {item.event.upper()}: {rule['name']} on {which}"
    message["From"] = sender
    message["To"] = ", ".join(item.addresses)
    lines = [f"Rule: {rule['name']} ({rule['kind']})"]
    for alert in alerts:
        lines += [
            f"Meter: {alert['device_id']}",
            f"Fired at: {alert['fired_at']}",
            *([f"Resolved at: {alert['resolved_at']}"] if alert["resolved_at"] else []),
        ]
    lines += ["", json.dumps(body, indent=2, ensure_ascii=False)]
    message.set_content("\n".join(lines))
    return message
