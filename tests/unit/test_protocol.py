"""The meter protocol: recorded answers in, channel values or MeterAnswerInvalid out."""

from __future__ import annotations

import pytest

from meterhub.collector.protocol import parse_answer, register_check
from meterhub.errors import MeterAnswerInvalid
from meterhub.registry.channels import CHANNELS, Channel, DeviceType
from meterhub.storage import Quality

ELECTRICITY = CHANNELS[DeviceType.ELECTRICITY]
WATER = CHANNELS[DeviceType.WATER]
AMPS, KWH = ELECTRICITY
(LITRES,) = WATER
GOOD = b'{"id":"44","A":"50","kW":"44325"}'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(GOOD, {"A": 50.0, "kW": 44325.0}, id="strings"),
        pytest.param(b'{"id":"44","A":50,"kW":44325}', {"A": 50.0, "kW": 44325.0}, id="numbers"),
        pytest.param(
            b'{"id":"44","A":"12.75","kW":44325.125}', {"A": 12.75, "kW": 44325.125}, id="floats"
        ),
        pytest.param(b'{"id":44,"A":"0","kW":"1e3"}', {"A": 0.0, "kW": 1000.0}, id="int-id"),
        pytest.param(b'{"id":44.0,"A":-3.5,"kW":0}', {"A": -3.5, "kW": 0.0}, id="float-id"),
        pytest.param(
            b'{"fw":"1.2","id":"44","kW":"7","V":"230","A":"1","ts":1700000000,"x":null}',
            {"A": 1.0, "kW": 7.0},
            id="extra-fields",
        ),
        pytest.param(
            b'{\n  "id": "44",\n  "A": "5",\n  "kW": "6"\n}\n', {"A": 5.0, "kW": 6.0}, id="pretty"
        ),
    ],
)
def test_parse_answer_electricity(body: bytes, expected: dict[str, float]) -> None:
    assert parse_answer(200, body, "44", ELECTRICITY) == expected


def test_parse_answer_water() -> None:
    assert parse_answer(200, b'{"id":"7","V":"12.5"}', "7", WATER) == {"V": 12.5}


@pytest.mark.parametrize(
    ("status", "body", "fragment"),
    [
        pytest.param(500, GOOD, "HTTP status 500", id="status-500"),
        pytest.param(404, b"not found", "HTTP status 404", id="status-404"),
        pytest.param(204, b"", "HTTP status 204", id="status-204"),
        pytest.param(200, b"<html>oops</html>", "not JSON", id="html"),
        pytest.param(200, b"", "not JSON", id="empty"),
        pytest.param(200, b'{"id":"44","A":"50"', "not JSON", id="truncated"),
        pytest.param(200, b"\xff\xfe\xfa garbage", "not JSON", id="binary"),
        pytest.param(200, b'[{"id":"44","A":"50","kW":"1"}]', "not a JSON object", id="array"),
        pytest.param(200, b'"44"', "not a JSON object", id="string"),
        pytest.param(200, b'{"A":"50","kW":"1"}', "missing field 'id'", id="no-id"),
        pytest.param(
            200, b'{"id":"45","A":"50","kW":"1"}', "wrong id '45', expected '44'", id="wrong-id"
        ),
        pytest.param(200, b'{"id":45,"A":"50","kW":"1"}', "wrong id '45'", id="wrong-int-id"),
        pytest.param(200, b'{"id":"044","A":"50","kW":"1"}', "wrong id '044'", id="padded-id"),
        pytest.param(200, b'{"id":"44","kW":"1"}', "missing field 'A'", id="no-A"),
        pytest.param(200, b'{"id":"44","A":"50"}', "missing field 'kW'", id="no-kW"),
        pytest.param(
            200, b'{"id":"44","A":"abc","kW":"1"}', "field 'A' is not a number: 'abc'", id="abc"
        ),
        pytest.param(200, b'{"id":"44","A":"","kW":"1"}', "'A' is not a number: ''", id="blank"),
        pytest.param(
            200, b'{"id":"44","A":true,"kW":"1"}', "field 'A' is not a number: True", id="bool"
        ),
        pytest.param(
            200, b'{"id":"44","A":"1","kW":null}', "field 'kW' is not a number: None", id="null"
        ),
        pytest.param(
            200, b'{"id":"44","A":NaN,"kW":"1"}', "'A' is not a finite number", id="nan-literal"
        ),
        pytest.param(
            200, b'{"id":"44","A":"NaN","kW":"1"}', "'A' is not a finite number", id="nan-string"
        ),
        pytest.param(
            200, b'{"id":"44","A":"1","kW":"inf"}', "'kW' is not a finite number", id="inf"
        ),
        pytest.param(
            200, b'{"id":"44","A":"1","kW":-Infinity}', "'kW' is not a finite number", id="-inf"
        ),
        pytest.param(
            200, b'{"id":"44","A":"1","kW":1e400}', "'kW' is not a finite number", id="huge-float"
        ),
        pytest.param(
            200,
            b'{"id":"44","A":"1","kW":1' + b"0" * 400 + b"}",
            "'kW' is not a",
            id="huge-int",
        ),
        pytest.param(
            200, b'{"id":"44","A":{"v":1},"kW":"1"}', "'A' is not a number: {", id="object"
        ),
        pytest.param(200, b'{"id":"44","A":[1],"kW":"1"}', "'A' is not a number: [", id="list"),
    ],
)
def test_parse_answer_rejects(status: int, body: bytes, fragment: str) -> None:
    with pytest.raises(MeterAnswerInvalid) as caught:
        parse_answer(status, body, "44", ELECTRICITY)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("channel", "previous", "value", "quality", "warning"),
    [
        (KWH, 100.0, 99.0, Quality.REGISTER_DECREASED, "register kW went backwards from 100 to 99"),
        (LITRES, 12.5, 0.0, Quality.REGISTER_DECREASED, "register V went backwards from 12.5 to 0"),
        (KWH, 100.0, 100.0, Quality.GOOD, None),
        (KWH, 100.0, 100.5, Quality.GOOD, None),
        (KWH, None, 5.0, Quality.GOOD, None),
        (KWH, None, -5.0, Quality.GOOD, None),
        (AMPS, 50.0, 10.0, Quality.GOOD, None),
        (AMPS, None, 0.0, Quality.GOOD, None),
    ],
)
def test_register_check(
    channel: Channel, previous: float | None, value: float, quality: Quality, warning: str | None
) -> None:
    assert register_check(channel, previous, value) == (quality, warning)
