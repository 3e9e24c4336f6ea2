"""What each device type measures: its channels, as data."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DeviceType(StrEnum):
    ELECTRICITY = "electricity"
    WATER = "water"


class ChannelKind(StrEnum):
    GAUGE = "gauge"
    """A present value (current); any value may follow any other."""
    REGISTER = "register"
    """A cumulative total; it never goes down except on reset or replacement."""


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    unit: str
    kind: ChannelKind
    label: str
    """What the channel measures, for people: ``Current``, ``Energy``, ``Volume``."""


CHANNELS: dict[DeviceType, tuple[Channel, ...]] = {
    DeviceType.ELECTRICITY: (
        Channel("A", "A", ChannelKind.GAUGE, "Current"),
        Channel("kW", "kWh", ChannelKind.REGISTER, "Energy"),
    ),
    DeviceType.WATER: (Channel("V", "m³", ChannelKind.REGISTER, "Volume"),),
}


def tag_key(device_id: str, channel: str) -> str:
    """The string id of a device channel's tag, e.g. ``"44.kW"``."""
    return f"{device_id}.{channel}"
