"""MQTT payloads: the three forms, each documented time format, and every bad payload."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from meterhub.errors import InvalidInput, InvalidTime, InvalidValue
from meterhub.mqtt.payload import Reading, channels, excerpt, single

BERLIN = ZoneInfo("Europe/Berlin")
T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T_US = int(T.timestamp()) * 1_000_000


@pytest.mark.parametrize(
    ("payload", "reading"),
    [
        (b"12.5", Reading(None, {None: 12.5})),
        (b" -3 \n", Reading(None, {None: -3.0})),
        (b"1e3", Reading(None, {None: 1000.0})),
        (b'"7.25"', Reading(None, {None: 7.25})),
        (b'{"value": 4}', Reading(None, {None: 4.0})),
        (b'{"value": "4.5", "unit": "kWh"}', Reading(None, {None: 4.5})),
        (b'{"ts": %d, "value": 1}' % (T_US // 1_000_000), Reading(T_US, {None: 1.0})),
        (b'{"ts": %d.25, "value": 1}' % (T_US // 1_000_000), Reading(T_US + 250_000, {None: 1.0})),
        (b'{"ts": %d, "value": 1}' % (T_US // 1000), Reading(T_US, {None: 1.0})),
        (b'{"ts": %d, "value": 1}' % T_US, Reading(T_US, {None: 1.0})),
        (b'{"ts": %d, "value": 1}' % (T_US * 1000 + 999), Reading(T_US, {None: 1.0})),
        (b'{"ts": "%d", "value": 1}' % (T_US // 1000), Reading(T_US, {None: 1.0})),
        (b'{"ts": "2026-03-01T12:00:00Z", "value": 1}', Reading(T_US, {None: 1.0})),
        (b'{"ts": "2026-03-01T14:00:00+02:00", "value": 1}', Reading(T_US, {None: 1.0})),
        (b'{"ts": "2026-03-01T13:00:00", "value": 1}', Reading(T_US, {None: 1.0})),  # Berlin
    ],
)
def test_single_values(payload: bytes, reading: Reading) -> None:
    assert single(payload, BERLIN) == reading


def test_channels_of_a_meter() -> None:
    payload = b'{"ts": "2026-03-01T12:00:00Z", "A": 1.2, "kW": "3.4", "rssi": -70}'
    assert channels(payload, ("A", "kW"), UTC) == Reading(T_US, {"A": 1.2, "kW": 3.4})
    assert channels(b'{"kW": 9}', ("A", "kW"), UTC) == Reading(None, {"kW": 9.0})


@pytest.mark.parametrize(
    ("payload", "error", "field"),
    [
        (b"", InvalidInput, "payload"),
        (b"abc", InvalidInput, "payload"),
        (b"nan", InvalidInput, "payload"),
        (b"1_000", InvalidInput, "payload"),
        (b"\xff\xfe", InvalidInput, "payload"),
        (b"NaN", InvalidValue, "payload"),
        (b"Infinity", InvalidValue, "payload"),
        (b"1e400", InvalidValue, "payload"),
        (b"true", InvalidValue, "payload"),
        (b"[1, 2]", InvalidValue, "payload"),
        (b'{"ts": 1}', InvalidInput, "payload.value"),
        (b'{"value": null}', InvalidValue, "payload.value"),
        (b'{"value": "12,5"}', InvalidValue, "payload.value"),
        (b'{"value": 1, "ts": "yesterday"}', InvalidTime, "payload.ts"),
        (b'{"value": 1, "ts": null}', InvalidTime, "payload.ts"),
        (b'{"value": 1, "ts": true}', InvalidTime, "payload.ts"),
        (b'{"value": 1, "ts": "2026-02-30T00:00:00Z"}', InvalidTime, "payload.ts"),
        (b'{"value": 1, "ts": 1e300}', InvalidTime, "payload.ts"),
        (b'{"value": 1, "ts": 999999999999999999999}', InvalidTime, "payload.ts"),
        (b"{" * 100_000, InvalidInput, "payload"),
    ],
)
def test_bad_single_payloads(payload: bytes, error: type[InvalidInput], field: str) -> None:
    with pytest.raises(error) as raised:
        single(payload, UTC)
    assert list(raised.value.errors) == [field]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"12.5", "payload"),
        (b'{"ts": 1, "rssi": 3}', "payload"),
        (b'{"A": 1, "kW": "lots"}', "payload.kW"),
        (b'{"A": 1, "ts": "soon"}', "payload.ts"),
    ],
)
def test_bad_channel_payloads(payload: bytes, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        channels(payload, ("A", "kW"), UTC)
    assert list(raised.value.errors) == [field]


def test_excerpt_is_short_text() -> None:
    assert excerpt(b"\xff12") == "\ufffd12"
    assert excerpt(b"x" * 500) == "x" * 120 + "…"
