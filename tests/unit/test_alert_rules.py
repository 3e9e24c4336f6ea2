"""Alert rules without a database: parameter checks naming the field, the periods and
night windows conditions look at, the webhook signature and the retry schedule."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from meterhub.alerts.conditions import last_full_period, last_night
from meterhub.alerts.notify import ChannelKind, Due, email_message, retry_delay, sign
from meterhub.alerts.rules import Per, RuleKind, check_params, check_remind, check_scope
from meterhub.errors import InvalidInput
from meterhub.registry.channels import DeviceType
from meterhub.times import from_us, to_us

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str) -> int:
    return to_us(datetime.fromisoformat(text), BERLIN)


@pytest.mark.parametrize(
    ("kind", "params", "expected"),
    [
        (RuleKind.OFFLINE, {"minutes": "30"}, {"minutes": 30}),
        (RuleKind.CONSUMPTION_ABOVE, {"limit": 2.5}, {"limit": 2.5, "per": "hour"}),
        (RuleKind.CONSUMPTION_ABOVE, {"limit": "7", "per": "day"}, {"limit": 7.0, "per": "day"}),
        (RuleKind.NIGHT_FLOW, {}, {"from": "01:00", "to": "05:00", "min_flow": 0.0}),
        (
            RuleKind.NIGHT_FLOW,
            {"from": "23:00", "min_flow": 0.01},
            {"from": "23:00", "to": "05:00", "min_flow": 0.01},
        ),
        (RuleKind.REGISTER_BACKWARDS, None, {}),
        (RuleKind.MISSING_BEFORE_BILLING, {}, {"hours_ahead": 24}),
    ],
)
def test_parameters_are_read_with_their_defaults(
    kind: RuleKind, params: dict[str, Any] | None, expected: dict[str, Any]
) -> None:
    assert check_params(kind, params) == expected


@pytest.mark.parametrize(
    ("kind", "params", "fields"),
    [
        (RuleKind.OFFLINE, {}, ["params.minutes"]),
        (RuleKind.OFFLINE, {"minutes": 0}, ["params.minutes"]),
        (RuleKind.OFFLINE, {"minutes": True}, ["params.minutes"]),
        (RuleKind.OFFLINE, {"minutes": 1.5}, ["params.minutes"]),
        (RuleKind.CONSUMPTION_ABOVE, {"limit": "nan"}, ["params.limit"]),
        (RuleKind.CONSUMPTION_ABOVE, {"limit": 0, "per": "week"}, ["params.limit", "params.per"]),
        (RuleKind.NIGHT_FLOW, {"from": "1:00"}, ["params.from"]),
        (RuleKind.NIGHT_FLOW, {"from": "02:00", "to": "02:00"}, ["params.to"]),
        (RuleKind.NIGHT_FLOW, {"min_flow": -1}, ["params.min_flow"]),
        (RuleKind.REGISTER_BACKWARDS, {"minutes": 5}, ["params.minutes"]),
        (RuleKind.MISSING_BEFORE_BILLING, {"hours_ahead": 745}, ["params.hours_ahead"]),
        (RuleKind.OFFLINE, [1], ["params"]),
    ],
)
def test_bad_parameters_are_named(kind: RuleKind, params: object, fields: list[str]) -> None:
    with pytest.raises(InvalidInput) as raised:
        check_params(kind, params)
    assert sorted(raised.value.errors) == fields


def test_scope_and_reminders() -> None:
    assert check_scope(RuleKind.NIGHT_FLOW, None) is DeviceType.WATER
    assert check_scope(RuleKind.OFFLINE, None) is None
    for kind, device_type in (
        (RuleKind.NIGHT_FLOW, DeviceType.ELECTRICITY),
        (RuleKind.CONSUMPTION_ABOVE, None),
    ):
        with pytest.raises(InvalidInput) as raised:
            check_scope(kind, device_type)
        assert list(raised.value.errors) == ["device_type"]
    assert check_remind("") is None
    assert check_remind(90) == 90
    with pytest.raises(InvalidInput, match="remind_after_minutes"):
        check_remind(-5)


@pytest.mark.parametrize(
    ("now", "per", "start", "end"),
    [
        ("2026-11-20T12:04", Per.HOUR, "2026-11-20T11:00", "2026-11-20T12:00"),
        ("2026-11-20T00:30", Per.DAY, "2026-11-19T00:00", "2026-11-20T00:00"),
        ("2026-03-30T08:00", Per.DAY, "2026-03-29T00:00", "2026-03-30T00:00"),  # 23 hours
    ],
)
def test_last_full_period(now: str, per: Per, start: str, end: str) -> None:
    assert last_full_period(at(now), per, BERLIN) == (at(start), at(end))


def test_hours_are_local_hours() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")  # UTC+05:30
    now = to_us(datetime.fromisoformat("2026-11-20T12:04"), kolkata)
    start, end = last_full_period(now, Per.HOUR, kolkata)
    assert from_us(end, kolkata).isoformat() == "2026-11-20T12:00:00+05:30"
    assert end - start == 3_600_000_000


@pytest.mark.parametrize(
    ("now", "window", "start", "end"),
    [
        ("2026-11-20T06:00", ("01:00", "05:00"), "2026-11-20T01:00", "2026-11-20T05:00"),
        ("2026-11-20T04:00", ("01:00", "05:00"), "2026-11-19T01:00", "2026-11-19T05:00"),
        ("2026-11-20T06:00", ("23:00", "05:00"), "2026-11-19T23:00", "2026-11-20T05:00"),
        ("2026-03-29T06:00", ("01:00", "05:00"), "2026-03-29T01:00", "2026-03-29T05:00"),
    ],
)
def test_last_night(now: str, window: tuple[str, str], start: str, end: str) -> None:
    assert last_night(at(now), *window, BERLIN) == (at(start), at(end))
    if now.startswith("2026-03-29"):  # the clocks go forward at 02:00: a 3-hour night
        assert at(end) - at(start) == 3 * 3_600_000_000


def test_signature_is_hmac_sha256_of_the_body() -> None:
    body = b'{"event": "fired"}'
    expected = hmac.new(b"secret-key", body, hashlib.sha256).hexdigest()
    assert sign("secret-key", body) == f"sha256={expected}"


def test_retries_back_off_exponentially_up_to_a_cap() -> None:
    assert [retry_delay(n, 10, 60) for n in range(1, 6)] == [10, 20, 40, 60, 60]


def test_email_says_what_happened() -> None:
    body = {
        "event": "resolved",
        "rule": {"id": 1, "name": "Leak", "kind": "night_flow"},
        "alert": {
            "device_id": "W1",
            "fired_at": "2026-11-20T05:05:00+00:00",
            "resolved_at": "2026-11-21T05:05:00+00:00",
        },
    }
    due = Due((7,), "resolved", json.dumps(body), 0, ChannelKind.EMAIL, None, None, ["a@b.org"])
    message = email_message(due, "meterhub@example.org")
    assert message["Subject"] == "[meterhub] RESOLVED: Leak on meter W1"
    assert message["To"] == "a@b.org"
    assert "Resolved at: 2026-11-21T05:05:00+00:00" in message.get_content()
