"""Register maps: decoding every type and order, scaling, checks, and request grouping."""

from __future__ import annotations

import math
from typing import Any

import pytest

from meterhub.collector.registers import (
    ReadBlock,
    decode,
    encode,
    model_values,
    plan_reads,
)
from meterhub.errors import InvalidInput, MeterAnswerInvalid
from meterhub.registry.meter_models import builtin_models
from meterhub.registry.register_maps import (
    DataType,
    Order,
    RegisterFunction,
    parse_model,
)


def model(channels: dict[str, dict[str, Any]], **extra: Any) -> Any:
    doc = {"name": "m", "device_type": "electricity", "channels": channels, **extra}
    return parse_model(doc)


def spec(**fields: Any) -> Any:
    base = {"A": {"address": 0, "type": "uint16"}, "kW": {"address": 10, "type": "uint16"}}
    return model({**base, "X": fields}).registers[-1]


# 0x4148F5C3 is 12.56 as float32; words big-endian: [0x4148, 0xF5C3]
@pytest.mark.parametrize(
    ("fields", "words", "expected"),
    [
        ({"type": "int16"}, [0xFFFE], -2.0),
        ({"type": "uint16"}, [0xFFFE], 65534.0),
        ({"type": "uint16", "byte_order": "little"}, [0x3412], 0x1234),
        ({"type": "int32"}, [0xFFFF, 0xFFFD], -3.0),
        ({"type": "uint32"}, [0x0001, 0x0002], 65538.0),
        ({"type": "uint32", "word_order": "little"}, [0x0002, 0x0001], 65538.0),
        ({"type": "float32"}, [0x4148, 0xF5C3], 12.56),
        ({"type": "float32", "word_order": "little"}, [0xF5C3, 0x4148], 12.56),
        ({"type": "float32", "byte_order": "little"}, [0x4841, 0xC3F5], 12.56),
        (
            {"type": "float32", "word_order": "little", "byte_order": "little"},
            [0xC3F5, 0x4841],
            12.56,
        ),
        ({"type": "float64"}, [0x4029, 0x1EB8, 0x51EB, 0x851F], 12.56),
        ({"type": "float64", "word_order": "little"}, [0x851F, 0x51EB, 0x1EB8, 0x4029], 12.56),
        ({"type": "uint16", "scale": 0.1}, [1234], 123.4),
        ({"type": "float32", "scale": 0.001}, [0x4148, 0xF5C3], 0.01256),
    ],
)
def test_decoding(fields: dict[str, Any], words: list[int], expected: float) -> None:
    found = spec(address=20, **fields)
    assert decode(found, words) == pytest.approx(expected, rel=1e-6)
    assert decode(found, encode(found, decode(found, words))) == pytest.approx(expected, rel=1e-6)


def test_every_type_and_order_round_trips() -> None:
    for kind in DataType:
        for words in Order:
            for order in Order:
                found = spec(address=20, type=kind.value, word_order=words, byte_order=order)
                assert len(encode(found, 123.0)) == kind.words
                assert decode(found, encode(found, 123.0)) == 123.0


def test_values_are_checked() -> None:
    checked = model(
        {
            "A": {"address": 0, "type": "float32", "min": 0, "max": 100},
            "kW": {"address": 2, "type": "float32"},
        }
    )
    blocks = plan_reads(checked)
    nan = encode(checked.registers[1], math.nan)
    with pytest.raises(MeterAnswerInvalid, match="kW is not a finite number"):
        model_values(checked, blocks, {blocks[0]: encode(checked.registers[0], 5.0) + nan})
    big = encode(checked.registers[0], 101.0) + encode(checked.registers[1], 1.0)
    with pytest.raises(MeterAnswerInvalid, match="above its maximum 100"):
        model_values(checked, blocks, {blocks[0]: big})
    with pytest.raises(MeterAnswerInvalid, match="1 registers from 0, expected 4"):
        model_values(checked, blocks, {blocks[0]: [0]})
    good = encode(checked.registers[0], 5.0) + encode(checked.registers[1], 7.5)
    assert model_values(checked, blocks, {blocks[0]: good}) == {"A": 5.0, "kW": 7.5}


def test_reads_are_grouped() -> None:
    sdm120, sdm630 = sorted(builtin_models(), key=lambda m: m.name)
    inputs = RegisterFunction.INPUT
    assert plan_reads(sdm120) == (ReadBlock(inputs, 0, 14), ReadBlock(inputs, 72, 2))
    assert plan_reads(sdm630) == (
        ReadBlock(inputs, 0, 12),
        ReadBlock(inputs, 52, 2),
        ReadBlock(inputs, 72, 2),
    )
    mixed = model(
        {
            "A": {"address": 0, "type": "float32", "function": "holding"},
            "kW": {"address": 2, "type": "float64", "function": "holding"},
            "B": {"address": 0, "type": "uint16"},
            "C": {"address": 100, "type": "uint16"},
            "D": {"address": 130, "type": "uint32"},
        },
        max_gap=100,
    )
    assert plan_reads(mixed) == (
        ReadBlock(inputs, 0, 101),  # 130..131 would make 132 registers: over 125
        ReadBlock(inputs, 130, 2),
        ReadBlock(RegisterFunction.HOLDING, 0, 6),
    )
    adjacent_only = model(
        {"A": {"address": 0, "type": "uint16"}, "kW": {"address": 2, "type": "uint16"}},
        max_gap=0,
    )
    assert len(plan_reads(adjacent_only)) == 2


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"name": "m", "device_type": "gas", "channels": {}}, "device_type"),
        ({"name": "", "device_type": "water", "channels": {"V": {}}}, "name"),
        ({"name": "m", "device_type": "water", "channels": {"X": {"address": 0}}}, "channels.V"),
        (
            {
                "name": "m",
                "device_type": "water",
                "channels": {"V": {"address": -1, "type": "int16"}},
            },
            "channels.V.address",
        ),
        (
            {
                "name": "m",
                "device_type": "water",
                "channels": {"V": {"address": 1, "type": "int8"}},
            },
            "channels.V.type",
        ),
        (
            {
                "name": "m",
                "device_type": "water",
                "channels": {"V": {"address": 1, "type": "int16", "unit": "l"}},
            },
            "channels.V.unit",
        ),
        (
            {
                "name": "m",
                "device_type": "water",
                "channels": {"V": {"address": 1, "type": "int16", "scale": 0}},
            },
            "channels.V.scale",
        ),
        (
            {
                "name": "m",
                "device_type": "water",
                "channels": {"V": {"address": 65535, "type": "int32"}},
            },
            "channels.V.address",
        ),
    ],
)
def test_bad_models_name_the_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_model(doc)
    assert field in caught.value.errors


def test_a_model_reads_back_from_its_document() -> None:
    for found in builtin_models():
        again = parse_model(found.document(), builtin=True)
        assert again == found
