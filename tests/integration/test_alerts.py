"""Alerts on both databases: each rule kind fires once, stays open without repeated
notifications, reminds, resolves; acknowledgements; two evaluators at once; delivery to a
real webhook receiver and a real SMTP server started here."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from email import message_from_bytes
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, func, select

from meterhub.alerts.conditions import SETTLE_US, last_full_period, last_night
from meterhub.alerts.evaluator import AlertEvaluator
from meterhub.alerts.history import AlertFilter, AlertState, acknowledge, page_alerts
from meterhub.alerts.notify import Deliverer
from meterhub.alerts.rule_store import create_channel, create_rule, get_rule, update_rule
from meterhub.alerts.rules import Per
from meterhub.alerts.tables import notification_attempts, notifications
from meterhub.api.app import create_app
from meterhub.billing.tasks import create_task
from meterhub.db import make_engine, metadata
from meterhub.registry.channels import DeviceType
from meterhub.settings import Settings
from meterhub.storage.compactor import compact, compact_day
from meterhub.storage.tables import chunks
from meterhub.times import DAY_US, HOUR_US, from_us, now_us
from tests.alerts_support import (
    MINUTE,
    Site,
    base_time,
    body_of,
    make_site,
    queued,
    read,
    smtp_server,
    webhook_receiver,
)
from tests.support import wait_until

SECRET = "a-webhook-secret-of-32-characters"


@pytest.fixture
def site(engine: Engine) -> Site:
    return make_site(engine)


def rule(engine: Engine, site: Site, kind: str, **fields: object) -> int:
    with engine.begin() as conn:
        created = create_rule(conn, site.project_id, name=kind, kind=kind, **fields)  # type: ignore[arg-type]
        create_channel(
            conn, site.project_id, kind="webhook", url="http://127.0.0.1:9/", secret=SECRET
        )
    return created.id


def alerts_of(engine: Engine, state: AlertState | None = None) -> dict[str, AlertState]:
    with engine.connect() as conn:
        found = page_alerts(conn, AlertFilter(state=state), offset=0, limit=100)[1]
    return {a.device_id: a.state for a in found}


def test_offline_fires_once_reminds_until_acknowledged_and_resolves(
    engine: Engine, site: Site
) -> None:
    now = base_time()
    rule(
        engine,
        site,
        "offline",
        device_type="electricity",
        params={"minutes": 30},
        remind_after_minutes=10,
    )
    read(engine, site, "E1", (now - 10 * MINUTE, 1.0), (now + 25 * MINUTE, 2.0))
    read(engine, site, "E2", (now - 60 * MINUTE, 1.0))
    evaluator = AlertEvaluator(engine)
    evaluator.tick(now)
    assert alerts_of(engine) == {"E2": AlertState.OPEN}
    [(alert_id, event)] = queued(engine)
    assert event == "fired"
    evaluator.tick(now + MINUTE)  # still offline: no second notification
    assert queued(engine) == [(alert_id, "fired")]
    evaluator.tick(now + 11 * MINUTE)
    evaluator.tick(now + 12 * MINUTE)
    assert queued(engine) == [(alert_id, "fired"), (alert_id, "reminder")]
    with engine.begin() as conn:
        acked = acknowledge(conn, alert_id, "operator", now + 13 * MINUTE)
    assert (acked.acknowledged_by, acked.acknowledged_at) == ("operator", now + 13 * MINUTE)
    evaluator.tick(now + 30 * MINUTE)  # acknowledged: no more reminders
    assert len(queued(engine)) == 2
    read(engine, site, "E2", (now + 31 * MINUTE, 2.0))
    evaluator.tick(now + 32 * MINUTE)
    assert alerts_of(engine) == {"E2": AlertState.RESOLVED}
    assert queued(engine)[-1] == (alert_id, "resolved")
    evaluator.tick(now + 33 * MINUTE)
    assert len(queued(engine)) == 3


def test_consumption_above_per_hour_counts_drops_as_billing(engine: Engine, site: Site) -> None:
    hour_end = base_time() - 10 * MINUTE
    start = hour_end - HOUR_US
    steps = [start + n * 10 * MINUTE for n in range(7)]
    read(engine, site, "E1", *((ts, 100.0 + 5 * n) for n, ts in enumerate(steps)))  # 30/h
    read(
        engine, site, "E2", *zip(steps, [1000.0, 1005.0, 1010.0, 0.0, 5.0, 10.0, 15.0], strict=True)
    )  # 25
    rule_id = rule(
        engine,
        site,
        "consumption_above",
        device_type="electricity",
        params={"limit": 20, "per": "hour"},
    )
    evaluator = AlertEvaluator(engine)
    evaluator.tick(hour_end + MINUTE)  # not settled yet: nothing looked at
    assert alerts_of(engine) == {}
    evaluator.tick(hour_end + SETTLE_US)
    assert alerts_of(engine) == {"E1": AlertState.OPEN, "E2": AlertState.OPEN}
    with engine.connect() as conn:
        found = page_alerts(conn, AlertFilter(rule_id=rule_id), offset=0, limit=10)[1]
    assert {a.device_id: a.detail["consumption"] for a in found} == {"E1": 30.0, "E2": 25.0}
    evaluator.tick(hour_end + SETTLE_US + MINUTE)
    assert len(queued(engine)) == 2
    later = [hour_end + n * 10 * MINUTE for n in range(1, 7)]
    read(engine, site, "E1", *((ts, 131.0 + n) for n, ts in enumerate(later)))  # 6/h
    read(engine, site, "E2", *((ts, 16.0 + 5 * n) for n, ts in enumerate(later)))  # 31/h
    evaluator.tick(hour_end + HOUR_US + SETTLE_US)
    assert alerts_of(engine) == {"E1": AlertState.RESOLVED, "E2": AlertState.OPEN}
    assert [event for _, event in queued(engine)] == ["fired", "fired", "resolved"]


def test_consumption_per_day_from_compacted_days(engine: Engine, site: Site) -> None:
    zone = ZoneInfo("Europe/Berlin")
    day_start, day_end = last_full_period(base_time() - 5 * DAY_US, Per.DAY, zone)
    hours = range(day_start - 2 * HOUR_US, day_end + 2 * HOUR_US, HOUR_US)
    read(engine, site, "W1", *((ts, 100.0 + 0.5 * n) for n, ts in enumerate(hours)))
    read(engine, site, "W2", *((ts, 100.0 + 0.01 * n) for n, ts in enumerate(hours)))
    assert compact(engine, settle_us=0, now=base_time()) > 0  # read through storage.series
    rule(engine, site, "consumption_above", device_type="water", params={"limit": 5, "per": "day"})
    AlertEvaluator(engine).tick(day_end + SETTLE_US)
    with engine.connect() as conn:
        [found] = page_alerts(conn, AlertFilter(), offset=0, limit=10)[1]
    assert (found.device_id, found.detail["consumption"]) == ("W1", 12.0)


def leaky_night(engine: Engine, site: Site) -> tuple[int, int, int]:
    """Last night (01:00 to 05:00 in Berlin) W1 ran all through and W2 only after 03:00:
    the time now and the night's start and end."""
    now = base_time()
    start, end = last_night(now, "01:00", "05:00", ZoneInfo("Europe/Berlin"))
    steps = range(start, end + 1, 30 * MINUTE)
    read(engine, site, "W1", *((ts, 10.0 + 0.01 * n) for n, ts in enumerate(steps)))
    read(engine, site, "W2", *((ts, 20.0 + (0.01 if n > 4 else 0)) for n, ts in enumerate(steps)))
    return now, start, end


def test_night_flow_finds_a_leak_once_the_window_ends(engine: Engine, site: Site) -> None:
    zone = ZoneInfo("Europe/Berlin")
    now, start, end = leaky_night(engine, site)
    rule(engine, site, "night_flow", params={"from": "01:00", "to": "05:00"})
    evaluator = AlertEvaluator(engine)
    first = max(now, end + SETTLE_US)
    evaluator.tick(first)
    assert alerts_of(engine) == {"W1": AlertState.OPEN}
    assert from_us(start, zone).strftime("%H:%M") == "01:00"
    next_night = end + 24 * HOUR_US + SETTLE_US  # when the next night is looked at
    evaluator.tick((first + next_night) // 2)  # the same night: nothing new
    assert len(queued(engine)) == 1
    next_start, next_end = start + 24 * HOUR_US, end + 24 * HOUR_US
    read(engine, site, "W1", *((ts, 11.0) for ts in range(next_start, next_end + 1, 30 * MINUTE)))
    evaluator.tick(next_end + SETTLE_US + 2 * HOUR_US)  # a still night: the leak has ended
    assert alerts_of(engine) == {"W1": AlertState.RESOLVED}


def test_register_backwards_fires_for_a_new_drop(engine: Engine, site: Site) -> None:
    now = base_time()
    rule(engine, site, "register_backwards")
    read(engine, site, "E1", (now - 3 * MINUTE, 500.0), (now - 2 * MINUTE, 3.0))
    read(engine, site, "E2", (now - 3 * MINUTE, 500.0), (now - 2 * MINUTE, 501.0))
    evaluator = AlertEvaluator(engine)
    evaluator.tick(now)
    assert alerts_of(engine) == {"E1": AlertState.OPEN}
    late = (now - MINUTE // 2, 2.0)  # a drop stored after the evaluation of its time
    read(engine, site, "E2", (now - 2 * MINUTE, 501.0), late)
    evaluator.tick(now + MINUTE // 2)  # E1 counts on from its new value: resolved
    assert alerts_of(engine) == {"E1": AlertState.RESOLVED, "E2": AlertState.OPEN}
    evaluator.tick(now + 2 * MINUTE)
    assert alerts_of(engine) == {"E1": AlertState.RESOLVED, "E2": AlertState.RESOLVED}
    assert [event for _, event in queued(engine)] == ["fired", "fired", "resolved", "resolved"]


def test_missing_reading_before_a_billing_run(engine: Engine, site: Site) -> None:
    now = base_time()
    local = from_us(now + 2 * HOUR_US, ZoneInfo("Europe/Berlin"))
    daily = {"month": "*", "day": "*", "hour": str(local.hour), "minute": "0"}
    with engine.begin() as conn:
        create_task(conn, site.project_id, "power", DeviceType.ELECTRICITY, daily)
    rule(engine, site, "missing_before_billing", params={"hours_ahead": 3})
    read(engine, site, "E1", (now - MINUTE, 5.0))
    evaluator = AlertEvaluator(engine)
    evaluator.tick(now - 2 * HOUR_US)  # the run is 4 hours ahead: not yet
    assert alerts_of(engine) == {}
    evaluator.tick(now)
    assert alerts_of(engine) == {"E2": AlertState.OPEN}  # water meters: no water task
    read(engine, site, "E2", (now + MINUTE, 1.0))
    evaluator.tick(now + 2 * MINUTE)
    assert alerts_of(engine) == {"E2": AlertState.RESOLVED}


def test_a_disabled_rule_resolves_its_open_alerts(engine: Engine, site: Site) -> None:
    now = base_time()
    rule_id = rule(engine, site, "offline", device_id="E1", params={"minutes": 5})
    evaluator = AlertEvaluator(engine)
    evaluator.tick(now)
    assert alerts_of(engine) == {"E1": AlertState.OPEN}
    with engine.begin() as conn:
        update_rule(conn, get_rule(conn, rule_id), {"enabled": False})
    evaluator.tick(now + MINUTE)
    assert alerts_of(engine) == {"E1": AlertState.RESOLVED}


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_evaluators_at_once_fire_once(database_url: str, engine: Engine, site: Site) -> None:
    now = base_time()
    rule(engine, site, "offline", params={"minutes": 5})
    engines = [make_engine(database_url) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda e: AlertEvaluator(e).tick(now), engines))
    finally:
        for each in engines:
            each.dispose()
    assert len(alerts_of(engine)) == 4
    assert sorted(event for _, event in queued(engine)) == ["fired"] * 4


def test_migrations_create_the_tables_as_defined(engine: Engine) -> None:
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    ours = [d for d in differences if "alert" in repr(d) or "notification" in repr(d)]
    assert ours == []


def test_the_leading_server_evaluates_and_delivers(
    database_url: str, engine: Engine, site: Site
) -> None:
    with webhook_receiver() as receiver:
        with engine.begin() as conn:
            create_rule(conn, site.project_id, name="Reset", kind="register_backwards")
            create_channel(conn, site.project_id, kind="webhook", url=receiver.url, secret=SECRET)
        now = now_us()
        read(engine, site, "E1", (now, 500.0), (now + 1, 3.0))
        settings = Settings(
            database_url=database_url,
            collector_enabled=False,
            scheduler_enabled=False,
            compact_enabled=False,
            mqtt_enabled=False,
            alert_interval=0.2,
        )
        with TestClient(create_app(settings)):
            wait_until(lambda: receiver.requests, timeout=10)
    sent = body_of(receiver.requests[0])
    assert (sent["event"], sent["rule"]["name"], sent["alert"]["device_id"]) == (
        "fired",
        "Reset",
        "E1",
    )


# --- delivery -----------------------------------------------------------------------------


def settings_for(engine: Engine, **fields: object) -> Settings:
    url = engine.url.render_as_string(hide_password=False)
    chosen = {"alert_retry_base": 2.0, "alert_send_timeout": 2.0, **fields}
    return Settings(database_url=url, **chosen)  # type: ignore[arg-type]


def offline_rule(conn: Connection, site: Site) -> None:
    """A rule that fires for meter E1 (never read) at the first tick."""
    create_rule(
        conn, site.project_id, name="gone", kind="offline", device_id="E1", params={"minutes": 5}
    )


def test_webhook_is_signed_and_retried_with_backoff(engine: Engine, site: Site) -> None:
    now = base_time()
    with webhook_receiver([500]) as receiver:
        with engine.begin() as conn:
            offline_rule(conn, site)
            create_channel(conn, site.project_id, kind="webhook", url=receiver.url, secret=SECRET)
        AlertEvaluator(engine).tick(now)
        deliverer = Deliverer(engine, settings_for(engine))
        assert asyncio.run(deliverer.deliver(now)) == 1  # 500
        assert asyncio.run(deliverer.deliver(now + 1_000_000)) == 0  # backing off: 2 s
        assert asyncio.run(deliverer.deliver(now + 2_000_000)) == 1  # 200
        assert asyncio.run(deliverer.deliver(now + 60_000_000)) == 0  # delivered: done
    first, second = receiver.requests
    assert first[1] == second[1]
    headers, body = second
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Meterhub-Signature"] == f"sha256={expected}"
    assert abs(int(headers["X-Meterhub-Timestamp"]) - time.time()) < 60
    sent = body_of(second)
    assert (sent["event"], sent["alert"]["device_id"], sent["rule"]["kind"]) == (
        "fired",
        "E1",
        "offline",
    )
    with engine.connect() as conn:
        tries = conn.execute(select(notification_attempts).order_by(notification_attempts.c.id))
        logged = [(row.ok, row.status_code, row.attempted_at) for row in tries]
        state = conn.execute(select(notifications.c.state)).scalars().all()
    assert logged == [(False, 500, now), (True, 200, now + 2_000_000)]
    assert state == ["delivered"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_delivery_gives_up_after_the_last_try(engine: Engine, site: Site) -> None:
    now = base_time()
    with webhook_receiver([500, 503, 500]) as receiver:
        with engine.begin() as conn:
            offline_rule(conn, site)
            create_channel(conn, site.project_id, kind="webhook", url=receiver.url, secret=SECRET)
            create_channel(conn, site.project_id, kind="email", addresses=["ops@example.org"])
        AlertEvaluator(engine).tick(now)
        deliverer = Deliverer(engine, settings_for(engine, alert_max_attempts=2))
        for seconds in (0, 2, 60):
            asyncio.run(deliverer.deliver(now + seconds * 1_000_000))
    with engine.connect() as conn:
        states = conn.execute(select(notifications.c.state)).scalars().all()
        errors = conn.execute(select(notification_attempts.c.error)).scalars().all()
    assert states == ["failed", "failed"]
    assert len(receiver.requests) == 2
    assert sorted(errors, key=str) == sorted(
        [
            "HTTP 500",
            "HTTP 503",
            *["SMTPException: no SMTP server configured (METERHUB_SMTP_HOST)"] * 2,
        ],
        key=str,
    )


def site_outage(engine: Engine, site: Site, url: str) -> None:
    """A rule over every meter of the site (none read: all four fire at the first tick)
    and a webhook channel to ``url``."""
    with engine.begin() as conn:
        create_rule(conn, site.project_id, name="gone", kind="offline", params={"minutes": 5})
        create_channel(conn, site.project_id, kind="webhook", url=url, secret=SECRET)


def test_an_outage_goes_as_one_digest_each_way(engine: Engine, site: Site) -> None:
    """Four meters fire in one evaluation: one signed request carries them all, each alert
    keeps its own notification and logged try; their resolutions go as one digest too."""
    now = base_time()
    with webhook_receiver() as receiver:
        site_outage(engine, site, receiver.url)
        evaluator = AlertEvaluator(engine)
        evaluator.tick(now)
        deliverer = Deliverer(engine, settings_for(engine, alert_digest_from=3))
        assert asyncio.run(deliverer.deliver(now)) == 1
        for meter in ("E1", "E2", "W1", "W2"):
            read(engine, site, meter, (now + MINUTE, 5.0))
        evaluator.tick(now + 2 * MINUTE)
        assert asyncio.run(deliverer.deliver(now + 2 * MINUTE)) == 1
    fired, resolved = receiver.requests
    with engine.connect() as conn:
        rows = conn.execute(select(notifications).order_by(notifications.c.id)).all()
        tries = conn.execute(select(notification_attempts.c.notification_id)).scalars().all()
    for (headers, body), event in ((fired, "fired"), (resolved, "resolved")):
        sent = body_of((headers, body))
        members = [row for row in rows if row.event == event]
        assert (sent["event"], sent["rule"]["name"], sent["count"]) == (event, "gone", 4)
        assert [a["device_id"] for a in sent["alerts"]] == ["E1", "E2", "W1", "W2"]
        assert [a["id"] for a in sent["alerts"]] == [row.alert_id for row in members]
        expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Meterhub-Signature"] == f"sha256={expected}"
        assert headers["X-Meterhub-Delivery"] == str(members[0].id)
        assert {row.digest for row in members} == {members[0].id}
    assert [row.state for row in rows] == ["delivered"] * 8
    assert sorted(tries) == [row.id for row in rows]


def test_rules_firing_in_one_evaluation_go_as_a_digest_each(engine: Engine, site: Site) -> None:
    now = base_time()
    with webhook_receiver() as receiver:
        site_outage(engine, site, receiver.url)
        with engine.begin() as conn:
            create_rule(conn, site.project_id, name="also", kind="offline", params={"minutes": 5})
        AlertEvaluator(engine).tick(now)
        deliverer = Deliverer(engine, settings_for(engine, alert_digest_from=3))
        assert asyncio.run(deliverer.deliver(now)) == 2
    sent = sorted((body_of(r)["rule"]["name"], body_of(r)["count"]) for r in receiver.requests)
    assert sent == [("also", 4), ("gone", 4)]


def test_a_digest_is_retried_whole_with_the_same_body(engine: Engine, site: Site) -> None:
    """A failed digest goes again with the same notifications and bytes (even after a
    restart with digests switched off), while a notification queued meanwhile goes apart."""
    now = base_time()
    with webhook_receiver([500]) as receiver:
        site_outage(engine, site, receiver.url)
        evaluator = AlertEvaluator(engine)
        evaluator.tick(now)
        deliverer = Deliverer(engine, settings_for(engine, alert_digest_from=4))
        assert asyncio.run(deliverer.deliver(now)) == 1  # 500
        read(engine, site, "E1", (now + MINUTE, 5.0))
        evaluator.tick(now + MINUTE)  # E1 resolved: waits for its firing
        restarted = Deliverer(engine, settings_for(engine, alert_digest_from=0))
        assert asyncio.run(restarted.deliver(now + 2_000_000)) == 1  # the digest again: 200
        assert asyncio.run(restarted.deliver(now + MINUTE)) == 1  # E1's resolution
    (first_headers, first), (again_headers, again), (_, alone) = receiver.requests
    assert first == again
    assert first_headers["X-Meterhub-Delivery"] == again_headers["X-Meterhub-Delivery"]
    assert body_of((again_headers, again))["count"] == 4
    single = body_of((_, alone))
    assert (single["event"], single["alert"]["device_id"]) == ("resolved", "E1")


def test_an_outage_goes_as_one_email(engine: Engine, site: Site) -> None:
    now = base_time()
    with smtp_server() as (port, inbox):
        with engine.begin() as conn:
            create_rule(conn, site.project_id, name="gone", kind="offline", params={"minutes": 5})
            create_channel(conn, site.project_id, kind="email", addresses=["ops@example.org"])
        AlertEvaluator(engine).tick(now)
        settings = settings_for(
            engine, smtp_host="127.0.0.1", smtp_port=port, smtp_from="alerts@example.org"
        )
        assert asyncio.run(Deliverer(engine, settings).deliver(now)) == 4  # alone, below 5
        with engine.begin() as conn:
            create_rule(conn, site.project_id, name="also", kind="offline", params={"minutes": 5})
        AlertEvaluator(engine).tick(now + MINUTE)
        settings = settings.model_copy(update={"alert_digest_from": 2})
        assert asyncio.run(Deliverer(engine, settings).deliver(now + MINUTE)) == 1
    subjects = [message_from_bytes(content)["Subject"] for _, _, content in inbox.messages]
    assert sorted(subjects[:4]) == [
        f"[meterhub] FIRED: gone on meter {m}" for m in ("E1", "E2", "W1", "W2")
    ]
    assert subjects[4] == "[meterhub] FIRED: also on 4 meters"
    text = inbox.messages[4][2].decode()
    assert all(f"Meter: {meter}" in text for meter in ("E1", "E2", "W1", "W2"))


def test_a_receiver_that_hangs_does_not_hold_up_evaluation(engine: Engine, site: Site) -> None:
    now = base_time()
    with socket.socket() as silent:  # listens, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        with engine.begin() as conn:
            create_rule(conn, site.project_id, name="gone", kind="offline", params={"minutes": 5})
            create_channel(conn, site.project_id, kind="webhook", url=url, secret=SECRET)
        evaluator = AlertEvaluator(engine)
        evaluator.tick(now)
        deliverer = Deliverer(engine, settings_for(engine, alert_send_timeout=1.0))

        async def both() -> float:
            sending = asyncio.create_task(deliverer.deliver(now))
            await asyncio.sleep(0.2)
            started = time.perf_counter()
            await asyncio.to_thread(evaluator.tick, now + MINUTE)
            took = time.perf_counter() - started
            await sending
            return took

        assert asyncio.run(both()) < 0.8
    with engine.connect() as conn:
        errors = conn.execute(select(notification_attempts.c.error)).scalars().all()
    assert len(errors) == 4
    assert all("Timeout" in (error or "") for error in errors)


def test_email_through_a_real_smtp_server(engine: Engine, site: Site) -> None:
    now = base_time()
    with smtp_server() as (port, inbox):
        with engine.begin() as conn:
            create_rule(
                conn,
                site.project_id,
                name="Meter silent",
                kind="offline",
                device_id="W1",
                params={"minutes": 5},
            )
            create_channel(
                conn,
                site.project_id,
                kind="email",
                addresses=["ops@example.org", "night@example.org"],
            )
        AlertEvaluator(engine).tick(now)
        settings = settings_for(
            engine, smtp_host="127.0.0.1", smtp_port=port, smtp_from="alerts@example.org"
        )
        assert asyncio.run(Deliverer(engine, settings).deliver(now)) == 1
    [(sender, recipients, content)] = inbox.messages
    assert sender == "alerts@example.org"
    assert recipients == ["ops@example.org", "night@example.org"]
    text = content.decode()
    assert "Subject: [meterhub] FIRED: Meter silent on meter W1" in text
    assert '"kind": "offline"' in text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_webhook_outside_the_allowed_targets_is_given_up_untried(
    engine: Engine, site: Site
) -> None:
    now = base_time()
    with webhook_receiver() as receiver:
        with engine.begin() as conn:  # made before the list was set
            offline_rule(conn, site)
            create_channel(conn, site.project_id, kind="webhook", url=receiver.url, secret=SECRET)
        AlertEvaluator(engine).tick(now)
        settings = settings_for(engine, webhook_allow="hooks.example.com, 10.20.0.0/16")
        assert asyncio.run(Deliverer(engine, settings).deliver(now)) == 1
    assert receiver.requests == []
    with engine.connect() as conn:
        state = conn.execute(select(notifications.c.state)).scalars().all()
        errors = conn.execute(select(notification_attempts.c.error)).scalars().all()
    assert state == ["failed"]
    assert errors == ["not an allowed webhook target (METERHUB_WEBHOOK_ALLOW)"]


def test_night_flow_reads_a_night_already_compacted(engine: Engine, site: Site) -> None:
    """With ``METERHUB_COMPACT_AFTER`` under a day the night may be compacted before it is
    judged: the leak is found in the chunks, and a still meter stays quiet."""
    now, start, end = leaky_night(engine, site)
    with engine.connect() as conn:
        for tag in (site.tags["W1"], site.tags["W2"]):
            compact_day(conn, tag, start // DAY_US)  # the night's first UTC day, or all of it
        conn.commit()
        assert conn.execute(select(func.count()).select_from(chunks)).scalar() == 2
    rule(engine, site, "night_flow", params={"from": "01:00", "to": "05:00"})
    AlertEvaluator(engine).tick(max(now, end + SETTLE_US))
    assert alerts_of(engine) == {"W1": AlertState.OPEN}
