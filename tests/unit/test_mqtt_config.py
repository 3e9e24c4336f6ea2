"""An MQTT source's settings: checked with the bad field named, patterns matched, the
password kept apart."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meterhub.errors import InvalidInput
from meterhub.mqtt.config import Binding, mqtt_section, split_secret

TOPICS = [
    {"pattern": "site/+/meter/{device}/energy", "channel": "kW"},
    {"pattern": "site/+/meter/{device}/state"},
    {"pattern": "plant/{name}/flow", "tag": "plant-1.{name}"},
    {"pattern": "plant/#", "tag": "plant-1.other"},
]


def config(**mqtt: Any) -> str:
    return json.dumps({"mqtt": {"url": "mqtt://127.0.0.1", "topics": TOPICS, **mqtt}})


def test_a_full_configuration() -> None:
    found = mqtt_section(config(url="mqtts://broker.example", tls={"insecure": True}))
    assert found is not None
    assert (found.host, found.port, found.secure) == ("broker.example", 8883, True)
    assert found.session_id("plant-1") == "meterhub-plant-1"
    assert [rule.subscription for rule in found.topics] == [
        "site/+/meter/+/energy",
        "site/+/meter/+/state",
        "plant/+/flow",
        "plant/#",
    ]
    assert mqtt_section('{"url": "opc.tcp://x"}') is None


@pytest.mark.parametrize(
    ("topic", "binding"),
    [
        ("site/a/meter/e-1/energy", Binding(0, {"device": "e-1"})),
        ("site/a/meter/e-1/state", Binding(1, {"device": "e-1"})),
        ("plant/boiler/flow", Binding(2, {"name": "boiler"})),
        ("plant/boiler/flow/x", Binding(3, {})),
        ("plant", Binding(3, {})),
        ("site/a/meter/e-1", None),
        ("site/a/meter/e-1/energy/x", None),
        ("other", None),
    ],
)
def test_topics_bind_to_the_first_matching_rule(topic: str, binding: Binding | None) -> None:
    found = mqtt_section(config())
    assert found is not None
    assert found.bind(topic) == binding


def test_a_tag_template_is_filled_in() -> None:
    found = mqtt_section(config())
    assert found is not None
    assert found.topics[2].tag_key({"name": "boiler"}) == "plant-1.boiler"
    assert found.topics[0].tag_key({"device": "e-1"}) is None


def test_dollar_topics_match_no_leading_wildcard() -> None:
    found = mqtt_section(json.dumps({"mqtt": {"url": "mqtt://h", "topics": [
        {"pattern": "#", "tag": "t"}, {"pattern": "$SYS/x", "tag": "u"}]}}))  # fmt: skip
    assert found is not None
    assert found.bind("$SYS/x") == Binding(1, {})


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"url": "http://127.0.0.1"}, "mqtt.url"),
        ({"url": "mqtt://"}, "mqtt.url"),
        ({"url": "mqtt://user:pw@host"}, "mqtt.url"),
        ({"url": "mqtt://host:99999"}, "mqtt.url"),
        ({"url": "mqtt://host/path"}, "mqtt.url"),
        ({"tls": {"insecure": True}}, "mqtt.tls"),
        ({"url": "mqtts://h", "tls": {"key_file": "/k"}}, "mqtt.tls.key_file"),
        ({"url": "mqtts://h", "tls": {"verify": False}}, "mqtt.tls.verify"),
        ({"client_id": "has space"}, "mqtt.client_id"),
        ({"keepalive": 1}, "mqtt.keepalive"),
        ({"qos": 2}, "mqtt.qos"),
        ({"topics": []}, "mqtt.topics"),
        ({"topics": [*TOPICS, {"pattern": "a/#/b", "tag": "t"}]}, "mqtt.topics[4].pattern"),
        ({"topics": [*TOPICS, {"pattern": "a/b+/c", "tag": "t"}]}, "mqtt.topics[4].pattern"),
        ({"topics": [*TOPICS, {"pattern": "a/{x}/{x}", "tag": "t"}]}, "mqtt.topics[4].pattern"),
        (
            {"topics": [*TOPICS, {"pattern": "a/{device}", "channel": "W"}]},
            "mqtt.topics[4].channel",
        ),
        ({"topics": [*TOPICS, {"pattern": "a/b", "channel": "A"}]}, "mqtt.topics[4].channel"),
        ({"topics": [*TOPICS, {"pattern": "a/b"}]}, "mqtt.topics[4].tag"),
        ({"topics": [*TOPICS, {"pattern": "a/{x}", "tag": "s.{y}"}]}, "mqtt.topics[4].tag"),
        ({"topics": [*TOPICS, {"pattern": "a/{x}", "tag": "s/{x}"}]}, "mqtt.topics[4].tag"),
        ({"topics": [*TOPICS, {"pattern": ""}]}, "mqtt.topics[4].pattern"),
        ({"topics": [{"pattern": "a/{device}", "channel": "A", "tag": "t"}]}, "mqtt.topics[0].tag"),
        ({"topics": ["a/b"]}, "mqtt.topics[0]"),
    ],
)
def test_bad_settings_name_their_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        split_secret(config(**changes), None)
    assert field in raised.value.errors


def test_the_password_is_kept_apart() -> None:
    stored, secret = split_secret(config(username="gw", password="s3cret"), None)
    assert secret == "s3cret"
    assert "s3cret" not in stored
    assert json.loads(stored)["mqtt"]["password_set"] is True
    # sent back as answered (password_set, no password): the password stays
    assert split_secret(stored, secret) == (stored, "s3cret")
    dropped, none = split_secret(config(password=None), "s3cret")
    assert none is None
    assert json.loads(dropped)["mqtt"]["password_set"] is False
    assert split_secret('{"url": "x"}', "s3cret") == ('{"url": "x"}', None)
    with pytest.raises(InvalidInput) as raised:
        split_secret(config(password=5), None)
    assert list(raised.value.errors) == ["mqtt.password"]
    for bad in ('{"mqtt": []}', '{"mqtt": {"password": "\\ud800"}}'):
        with pytest.raises(InvalidInput) as raised:
            split_secret(bad, None)
        assert list(raised.value.errors) == ["mqtt"]
