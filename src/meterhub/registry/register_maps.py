"""Meter models: where a Modbus meter keeps each of its channels, as data.

A model is a register map, read from a document (a TOML file, a JSON body, a stored row)
of this shape::

    name = "SDM120"
    device_type = "electricity"
    max_gap = 16                 # optional: unused registers one read may span (default 16)

    [channels.A]                 # a channel (the tag's name)
    address = 0x0006             # first register, 0-based
    function = "input"           # "input" (code 4) or "holding" (code 3); default input
    type = "float32"             # int16 uint16 int32 uint32 float32 float64
    word_order = "big"           # most significant word first; default big
    byte_order = "big"           # most significant byte of each word first; default big
    scale = 1.0                  # value = decoded x scale; default 1
    unit = "A"                   # the standard channels' unit may be left out
    kind = "gauge"               # gauge or register; fixed for the standard channels
    min = 0                      # optional: values outside [min, max] are refused
    max = 100

A model must map its device type's standard channels (``channels.CHANNELS``: electricity
``A`` and ``kW``, water ``V``), with their unit and kind; it may add more.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from meterhub.errors import InvalidInput
from meterhub.registry.channels import CHANNELS, Channel, ChannelKind, DeviceType

E = TypeVar("E", bound=StrEnum)

MAX_READ = 125
"""Most registers one Modbus read may return."""
DEFAULT_MAX_GAP = 16
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CHANNEL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")


class RegisterFunction(StrEnum):
    INPUT = "input"
    HOLDING = "holding"


class DataType(StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def words(self) -> int:
        """How many 16-bit registers a value takes."""
        return {"int16": 1, "uint16": 1, "float64": 4}.get(self.value, 2)


class Order(StrEnum):
    BIG = "big"
    LITTLE = "little"


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    """Where one channel's value lives and how it is decoded."""

    channel: Channel
    address: int
    function: RegisterFunction = RegisterFunction.INPUT
    data_type: DataType = DataType.FLOAT32
    word_order: Order = Order.BIG
    byte_order: Order = Order.BIG
    scale: float = 1.0
    minimum: float | None = None
    maximum: float | None = None

    @property
    def end(self) -> int:
        """The address after its last register."""
        return self.address + self.data_type.words


@dataclass(frozen=True, slots=True)
class MeterModel:
    """A named register map for meters of one device type."""

    name: str
    device_type: DeviceType
    registers: tuple[RegisterSpec, ...]
    max_gap: int = DEFAULT_MAX_GAP
    builtin: bool = False

    @property
    def channels(self) -> tuple[Channel, ...]:
        return tuple(spec.channel for spec in self.registers)

    def document(self) -> dict[str, Any]:
        """The model in the file format (``parse_model`` reads it back)."""
        return {
            "name": self.name,
            "device_type": self.device_type.value,
            "max_gap": self.max_gap,
            "channels": {spec.channel.name: _spec_document(spec) for spec in self.registers},
        }


def device_channels(device_type: DeviceType, model: MeterModel | None) -> tuple[Channel, ...]:
    """The channels (tags) of a device: its model's, or its type's standard ones."""
    return model.channels if model is not None else CHANNELS[device_type]


def _spec_document(spec: RegisterSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "address": spec.address,
        "function": spec.function.value,
        "type": spec.data_type.value,
        "word_order": spec.word_order.value,
        "byte_order": spec.byte_order.value,
        "scale": spec.scale,
        "unit": spec.channel.unit,
        "kind": spec.channel.kind.value,
        "label": spec.channel.label,
    }
    if spec.minimum is not None:
        doc["min"] = spec.minimum
    if spec.maximum is not None:
        doc["max"] = spec.maximum
    return doc


# --- reading a document -------------------------------------------------------------------

_MODEL_FIELDS = {"name", "device_type", "max_gap", "channels"}
_SPEC_FIELDS = {
    "address",
    "function",
    "type",
    "word_order",
    "byte_order",
    "scale",
    "unit",
    "kind",
    "label",
    "min",
    "max",
}


class _Problems:
    """Errors by field, as the document names them (``channels.kW.address``)."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)


def parse_model(doc: object, *, builtin: bool = False) -> MeterModel:
    """The model a document describes; ``InvalidInput`` naming every bad field."""
    problems = _Problems()
    if not isinstance(doc, Mapping):
        raise InvalidInput.field("body", "a meter model is an object with name, device_type, ...")
    for unknown in sorted(set(doc) - _MODEL_FIELDS):
        problems.add(
            str(unknown), f"unknown field; the fields are {', '.join(sorted(_MODEL_FIELDS))}"
        )
    name = doc.get("name")
    if not isinstance(name, str) or not MODEL_NAME.match(name):
        problems.add(
            "name", "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    device_type = _choice(problems, doc, "device_type", DeviceType, None, required=True)
    max_gap = _integer(problems, doc, "max_gap", range(0, MAX_READ), DEFAULT_MAX_GAP)
    registers = _registers(problems, doc.get("channels"), device_type)
    if problems.errors:
        raise InvalidInput(problems.errors)
    assert isinstance(name, str)
    assert device_type is not None
    assert max_gap is not None
    return MeterModel(name, device_type, registers, max_gap, builtin)


def _registers(
    problems: _Problems, channels: object, device_type: DeviceType | None
) -> tuple[RegisterSpec, ...]:
    if not isinstance(channels, Mapping) or not channels:
        problems.add("channels", "an object of channels, each with its register")
        return ()
    standard = {c.name: c for c in CHANNELS[device_type]} if device_type else {}
    for name in standard:
        if name not in channels:
            problems.add(f"channels.{name}", f"{device_type} meters need channel {name}")
    specs = [
        _spec(problems, f"channels.{name}", str(name), entry, standard.get(str(name)))
        for name, entry in channels.items()
    ]
    found = [spec for spec in specs if spec is not None]
    ordered = [s for s in found if s.channel.name in standard]
    return (
        *sorted(ordered, key=lambda s: list(standard).index(s.channel.name)),
        *[s for s in found if s.channel.name not in standard],
    )


def _spec(
    problems: _Problems, where: str, name: str, entry: object, standard: Channel | None
) -> RegisterSpec | None:
    before = sum(map(len, problems.errors.values()))
    if not CHANNEL_NAME.match(name):
        problems.add(where, "a channel name is a letter, then up to 31 letters, digits or '_'")
    if not isinstance(entry, Mapping):
        problems.add(where, "an object with the channel's address, type, ...")
        return None
    for unknown in sorted(set(entry) - _SPEC_FIELDS):
        problems.add(
            f"{where}.{unknown}", f"unknown field; the fields are {', '.join(sorted(_SPEC_FIELDS))}"
        )
    data_type = _choice(problems, entry, "type", DataType, None, where, required=True)
    address = _integer(problems, entry, "address", range(0, 65536), None, where)
    if address is not None and data_type is not None and address + data_type.words > 65536:
        problems.add(f"{where}.address", "the value runs past register 65535")
    channel = _channel(problems, where, name, entry, standard)
    spec = RegisterSpec(
        channel=channel,
        address=address or 0,
        function=_choice(
            problems, entry, "function", RegisterFunction, RegisterFunction.INPUT, where
        )
        or RegisterFunction.INPUT,
        data_type=data_type or DataType.FLOAT32,
        word_order=_choice(problems, entry, "word_order", Order, Order.BIG, where) or Order.BIG,
        byte_order=_choice(problems, entry, "byte_order", Order, Order.BIG, where) or Order.BIG,
        scale=_number(problems, entry, "scale", where, 1.0) or 0.0,
        minimum=_number(problems, entry, "min", where, None),
        maximum=_number(problems, entry, "max", where, None),
    )
    if spec.scale == 0.0:
        problems.add(f"{where}.scale", "must be a finite number other than 0")
    if spec.minimum is not None and spec.maximum is not None and spec.minimum > spec.maximum:
        problems.add(f"{where}.min", "must not be above max")
    return spec if sum(map(len, problems.errors.values())) == before else None


def _channel(
    problems: _Problems, where: str, name: str, entry: Mapping[str, Any], standard: Channel | None
) -> Channel:
    unit, label = entry.get("unit"), entry.get("label")
    if unit is not None and (not isinstance(unit, str) or len(unit) > 32):
        problems.add(f"{where}.unit", "a text of at most 32 characters")
    if label is not None and (not isinstance(label, str) or len(label) > 64):
        problems.add(f"{where}.label", "a text of at most 64 characters")
    kind = _choice(problems, entry, "kind", ChannelKind, None, where)
    if standard is None:
        return Channel(name, str(unit or ""), kind or ChannelKind.GAUGE, str(label or name))
    if unit is not None and unit != standard.unit:
        problems.add(f"{where}.unit", f"channel {name} is in {standard.unit}: scale to it")
    if kind is not None and kind is not standard.kind:
        problems.add(f"{where}.kind", f"channel {name} is a {standard.kind}")
    return standard


def _choice(
    problems: _Problems,
    entry: Mapping[str, Any],
    key: str,
    kind: type[E],
    default: E | None,
    where: str = "",
    *,
    required: bool = False,
) -> E | None:
    field = f"{where}.{key}" if where else key
    value = entry.get(key)
    if value is None:
        if required:
            problems.add(field, "this field is required")
        return default
    try:
        return kind(value)
    except ValueError:
        problems.add(field, f"must be one of {', '.join(kind)}")
        return default


def _integer(
    problems: _Problems,
    entry: Mapping[str, Any],
    key: str,
    allowed: range,
    default: int | None,
    where: str = "",
) -> int | None:
    field = f"{where}.{key}" if where else key
    value = entry.get(key)
    if value is None:
        if default is None:
            problems.add(field, "this field is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        problems.add(field, f"a whole number from {allowed.start} to {allowed.stop - 1}")
        return default
    return value


def _number(
    problems: _Problems, entry: Mapping[str, Any], key: str, where: str, default: float | None
) -> float | None:
    value = entry.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problems.add(f"{where}.{key}", "must be a finite number")
        return default
    return float(value)
