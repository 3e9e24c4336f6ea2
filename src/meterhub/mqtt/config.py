"""An MQTT data source's settings: the ``mqtt`` object of its JSON configuration, checked.

```json
{"mqtt": {"url": "mqtts://broker.example:8883", "username": "meterhub", "password": "...",
          "client_id": "meterhub-plant-1", "keepalive": 30,
          "tls": {"ca_file": "/etc/ssl/broker-ca.pem", "cert_file": null, "key_file": null,
                  "insecure": false},
          "topics": [{"pattern": "site/+/meter/{device}/energy", "channel": "kW"},
                     {"pattern": "site/+/meter/{device}/state"},
                     {"pattern": "plant/{name}/flow", "tag": "plant-1.{name}"}]}}
```

A pattern is an MQTT topic filter whose levels may be placeholders (``{device}``,
``{name}``), each matching one level as ``+`` does. ``{device}`` binds a meter's device id:
with ``channel`` the payload is that channel's value, without it a JSON object of the
meter's channels. ``tag`` instead names a tag of the source itself, placeholders filled in.
The password is kept apart from the configuration (``split_secret``) and never shown.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from meterhub.errors import InvalidInput
from meterhub.registry.channels import CHANNELS

DEVICE = "device"
CHANNEL_NAMES = tuple(sorted({channel.name for found in CHANNELS.values() for channel in found}))
MAX_TOPICS = 256
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_STRICT = ConfigDict(extra="forbid", frozen=True)


class TlsOptions(BaseModel):
    """Files on the server that runs the subscriber (the leader); read when it connects."""

    model_config = _STRICT

    ca_file: str | None = Field(
        None,
        min_length=1,
        description="CA bundle the broker's certificate is checked against; unset: the system's.",
    )
    cert_file: str | None = Field(None, min_length=1, description="Client certificate (PEM).")
    key_file: str | None = Field(None, min_length=1, description="Its private key (PEM).")
    insecure: bool = Field(False, description="Skip checking the broker's certificate.")

    @field_validator("key_file")
    @classmethod
    def _with_cert(cls, key_file: str | None, info: ValidationInfo) -> str | None:
        if key_file is not None and info.data.get("cert_file") is None:
            raise ValueError("a key_file goes with a cert_file")
        return key_file


class Binding(NamedTuple):
    """What a topic matched: its rule's index and the placeholders' values."""

    rule: int
    captures: dict[str, str]


class TopicRule(BaseModel):
    model_config = _STRICT

    pattern: str = Field(min_length=1, max_length=1024)
    channel: Literal["A", "kW", "V"] | None = Field(
        None, description="The meter channel a {device} pattern's single value goes to."
    )
    tag: str | None = Field(
        None,
        max_length=255,
        validate_default=True,
        description="The key of one of the source's own tags, {placeholders} filled in.",
    )

    @field_validator("pattern")
    @classmethod
    def _filter(cls, pattern: str) -> str:
        levels = pattern.split("/")
        names: list[str] = []
        for i, level in enumerate(levels):
            found = _PLACEHOLDER.fullmatch(level)
            if found:
                names.append(found[1])
            elif level == "#" and i < len(levels) - 1:
                raise ValueError("'#' may only be the last level")
            elif level not in ("+", "#") and any(c in level for c in "+#{}\0"):
                raise ValueError(
                    f"level {level!r}: a level is text without + # {{ }}, or +, #, or "
                    "{name} alone"
                )
        if len(set(names)) < len(names):
            raise ValueError("a placeholder appears twice")
        return pattern

    @field_validator("channel")
    @classmethod
    def _device_channel(cls, channel: str | None, info: ValidationInfo) -> str | None:
        if channel is not None and DEVICE not in _names(info.data.get("pattern", "")):
            raise ValueError("a channel goes with a pattern holding {device}")
        return channel

    @field_validator("tag")
    @classmethod
    def _template(cls, tag: str | None, info: ValidationInfo) -> str | None:
        names = _names(info.data.get("pattern", ""))
        if tag is None:
            if "pattern" in info.data and DEVICE not in names:
                raise ValueError("required: a pattern without {device} stores into a tag")
            return tag
        if info.data.get("channel") is not None:
            raise ValueError("give a channel (of a meter) or a tag (of the source), not both")
        bare = _PLACEHOLDER.sub("", tag)
        if not tag.strip() or tag.strip() != tag or any(c in bare for c in "{}/"):
            raise ValueError("a tag key without '/', spaces around it, or braces but {name}")
        unknown = sorted(set(_PLACEHOLDER.findall(tag)) - set(names))
        if unknown and "pattern" in info.data:
            raise ValueError(f"placeholder {{{unknown[0]}}} is not in the pattern")
        return tag

    @property
    def subscription(self) -> str:
        """The topic filter subscribed to: each placeholder as ``+``."""
        return "/".join("+" if _PLACEHOLDER.fullmatch(level) else level for level in self._levels)

    @property
    def _levels(self) -> list[str]:
        return self.pattern.split("/")

    def match(self, topic: str) -> dict[str, str] | None:
        """The placeholders' values when ``topic`` matches the pattern, else ``None``. As
        in MQTT, a topic starting with ``$`` matches no pattern starting with a wildcard."""
        levels, own = topic.split("/"), self._levels
        if topic.startswith("$") and own[0] != levels[0]:
            return None
        captures: dict[str, str] = {}
        for i, level in enumerate(own):
            if level == "#":
                return captures
            if i >= len(levels):
                return None
            found = _PLACEHOLDER.fullmatch(level)
            if found:
                captures[found[1]] = levels[i]
            elif level not in ("+", levels[i]):
                return None
        return captures if len(levels) == len(own) else None

    def tag_key(self, captures: dict[str, str]) -> str | None:
        """The source tag a match stores into; ``None`` for a meter's channels."""
        if self.tag is None:
            return None
        return _PLACEHOLDER.sub(lambda m: captures[m[1]], self.tag)


def _names(pattern: str) -> list[str]:
    return [m[1] for level in pattern.split("/") if (m := _PLACEHOLDER.fullmatch(level))]


class MqttConfig(BaseModel):
    model_config = _STRICT

    url: str = Field(max_length=2048, description="mqtt://host[:1883] or mqtts://host[:8883]")
    username: str | None = Field(None, min_length=1, max_length=1024)
    password_set: bool = Field(
        False, description="Whether a password is kept (answers only: set ``password``)."
    )
    client_id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="The broker session's id; default meterhub-<source id>. Keep it stable: "
        "the broker keeps what is published while meterhub is away under it.",
    )
    keepalive: int = Field(30, ge=5, le=3600, description="Seconds between two pings.")
    tls: TlsOptions | None = None
    topics: list[TopicRule] = Field(min_length=1, max_length=MAX_TOPICS)

    @field_validator("url")
    @classmethod
    def _broker_url(cls, url: str) -> str:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError("must be mqtt://host[:port] or mqtts://host[:port]")
        if not parts.hostname:
            raise ValueError("names no host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("credentials go in username and password, not in the URL")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("must be mqtt://host[:port] or mqtts://host[:port], nothing after")
        if port == 0:
            raise ValueError("port 0")
        return url

    @field_validator("tls")
    @classmethod
    def _secure_only(cls, tls: TlsOptions | None, info: ValidationInfo) -> TlsOptions | None:
        if tls is not None and str(info.data.get("url", "")).startswith("mqtt://"):
            raise ValueError("TLS options need an mqtts:// URL")
        return tls

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def secure(self) -> bool:
        return self.url.startswith("mqtts://")

    def session_id(self, source_id: str) -> str:
        return self.client_id or f"meterhub-{source_id}"

    def bind(self, topic: str) -> Binding | None:
        """The first rule, in order, whose pattern ``topic`` matches."""
        for i, rule in enumerate(self.topics):
            captures = rule.match(topic)
            if captures is not None:
                return Binding(i, captures)
        return None


def mqtt_section(config: str) -> MqttConfig | None:
    """The checked ``mqtt`` object of a stored configuration; ``None`` without one.
    ``InvalidInput`` names the first bad field (``mqtt.topics[2].pattern``)."""
    doc = json.loads(config)
    if not isinstance(doc, dict) or "mqtt" not in doc:
        return None
    return _checked(doc["mqtt"])


def _checked(section: Any) -> MqttConfig:
    try:
        return MqttConfig.model_validate(section)
    except ValidationError as exc:
        raise InvalidInput(
            {
                _field(error["loc"]): error["msg"].removeprefix("Value error, ")
                for error in exc.errors()
            }
        ) from None


def _field(loc: tuple[int | str, ...]) -> str:
    name = "mqtt"
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else f".{part}"
    return name


def split_secret(config: str, kept: str | None) -> tuple[str, str | None]:
    """A configuration to store, and the password to keep apart from it: the ``mqtt``
    object is checked (``InvalidInput`` naming the field) and its ``password`` taken out;
    ``password_set`` says whether one is kept. A configuration without ``password`` keeps
    the ``kept`` one (an answer sent back as it came changes nothing); ``null`` or ``""``
    drops it. A configuration without ``mqtt`` keeps no password."""
    try:
        doc = json.loads(config)
    except ValueError:
        raise InvalidInput.field("config", "must be a JSON document") from None
    if not isinstance(doc, dict) or "mqtt" not in doc:
        return config, None
    section = doc["mqtt"]
    if not isinstance(section, dict):
        raise InvalidInput.field("mqtt", "must be an object")
    try:
        json.dumps(section, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise InvalidInput.field("mqtt", "must be UTF-8 text (a lone surrogate is not)") from None
    secret = kept
    if "password" in section:
        password = section.pop("password")
        if password is not None and not isinstance(password, str):
            raise InvalidInput.field("mqtt.password", "must be a string")
        secret = password or None
    section.pop("password_set", None)
    _checked(section)
    section["password_set"] = secret is not None
    return json.dumps(doc), secret
