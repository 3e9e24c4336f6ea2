"""Modbus register maps as pure functions: which reads a model needs, and registers in,
channel values (or an error) out. No sockets here: the driver, the simulator and tests
share it."""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from meterhub.collector.protocol import Reading
from meterhub.errors import MeterAnswerInvalid
from meterhub.registry.register_maps import (
    MAX_READ,
    DataType,
    MeterModel,
    Order,
    RegisterFunction,
    RegisterSpec,
)

_FORMATS = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: ``count`` registers of ``function`` from ``address``."""

    function: RegisterFunction
    address: int
    count: int

    def words(self, answer: Sequence[int], spec: RegisterSpec) -> Sequence[int]:
        """The registers of ``spec`` within this block's ``answer``."""
        start = spec.address - self.address
        return answer[start : start + spec.data_type.words]


def plan_reads(model: MeterModel) -> tuple[ReadBlock, ...]:
    """The fewest reads covering every register of ``model``: registers of one function
    share a read while it stays within ``MAX_READ`` registers and skips at most
    ``model.max_gap`` unused ones at a time."""
    blocks: list[ReadBlock] = []
    for function in RegisterFunction:
        specs = sorted((s for s in model.registers if s.function is function), key=_span)
        start = end = -1
        for spec in specs:
            if start >= 0 and spec.address - end <= model.max_gap and spec.end - start <= MAX_READ:
                end = max(end, spec.end)
                continue
            if start >= 0:
                blocks.append(ReadBlock(function, start, end - start))
            start, end = spec.address, spec.end
        if start >= 0:
            blocks.append(ReadBlock(function, start, end - start))
    return tuple(blocks)


def _span(spec: RegisterSpec) -> tuple[int, int]:
    return spec.address, spec.end


def block_of(blocks: Sequence[ReadBlock], spec: RegisterSpec) -> ReadBlock:
    """The block of ``blocks`` that holds ``spec``."""
    return next(
        b
        for b in blocks
        if b.function is spec.function
        and b.address <= spec.address
        and spec.end <= b.address + b.count
    )


def decode(spec: RegisterSpec, words: Sequence[int]) -> float:
    """The value of ``spec`` in its registers (``words``, 16-bit each), scaled."""
    if len(words) != spec.data_type.words:
        raise MeterAnswerInvalid(
            f"channel {spec.channel.name}: {len(words)} registers, expected {spec.data_type.words}"
        )
    ordered = words if spec.word_order is Order.BIG else list(reversed(words))
    raw = b"".join(_word_bytes(word, spec.byte_order) for word in ordered)
    (value,) = struct.unpack(">" + _FORMATS[spec.data_type], raw)
    return float(value) * spec.scale


def encode(spec: RegisterSpec, value: float) -> list[int]:
    """The registers that ``decode`` reads back as ``value`` (rounded for integer types)."""
    raw_value = value / spec.scale
    fmt = _FORMATS[spec.data_type]
    raw = struct.pack(">" + fmt, raw_value if fmt in "fd" else round(raw_value))
    words = [_word(raw[i : i + 2], spec.byte_order) for i in range(0, len(raw), 2)]
    return words if spec.word_order is Order.BIG else list(reversed(words))


def _word_bytes(word: int, order: Order) -> bytes:
    return word.to_bytes(2, "big" if order is Order.BIG else "little")


def _word(two: bytes, order: Order) -> int:
    return int.from_bytes(two, "big" if order is Order.BIG else "little")


def model_values(
    model: MeterModel, blocks: Sequence[ReadBlock], answers: Mapping[ReadBlock, Sequence[int]]
) -> Reading:
    """Every channel's value from the answers to ``blocks``; ``MeterAnswerInvalid`` for a
    short answer, or a value that is not finite or outside the map's min/max."""
    values: Reading = {}
    for block in blocks:
        if len(answers[block]) != block.count:
            raise MeterAnswerInvalid(
                f"{len(answers[block])} registers from {block.address}, expected {block.count}"
            )
    for spec in model.registers:
        block = block_of(blocks, spec)
        values[spec.channel.name] = checked(spec, decode(spec, block.words(answers[block], spec)))
    return values


def checked(spec: RegisterSpec, value: float) -> float:
    """``value`` if the map allows it; else ``MeterAnswerInvalid`` naming the channel."""
    name = spec.channel.name
    if not math.isfinite(value):
        raise MeterAnswerInvalid(f"channel {name} is not a finite number: {value}")
    if spec.minimum is not None and value < spec.minimum:
        raise MeterAnswerInvalid(f"channel {name} is {value:g}, below its minimum {spec.minimum:g}")
    if spec.maximum is not None and value > spec.maximum:
        raise MeterAnswerInvalid(f"channel {name} is {value:g}, above its maximum {spec.maximum:g}")
    return value
