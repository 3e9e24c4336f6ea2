"""The one home of alert rule and channel persistence: create, read, list, change, delete.

A channel's secret is stored but never read back out of here (``Channel`` has none)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, Select, delete, insert, select, update

from meterhub.alerts.notify import ChannelKind
from meterhub.alerts.rules import (
    Rule,
    check_kind,
    check_name,
    check_params,
    check_remind,
    check_scope,
    printable,
)
from meterhub.alerts.tables import alert_channels, alert_rules
from meterhub.alerts.targets import REFUSED, WebhookTargets
from meterhub.errors import InvalidInput, NotFound
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import device_project, get_device
from meterhub.registry.tables import devices
from meterhub.times import now_us

RULES: Select[Any] = select(alert_rules, devices.c.device_id).outerjoin(
    devices, devices.c.id == alert_rules.c.device_pk
)
"""Rules with the device id of their meter, if they watch one."""
ADDRESS = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+")
ADDRESSES_MAX = 50
SECRET_MIN, SECRET_MAX = 16, 255
URL_MAX = 2000


def create_rule(
    conn: Connection,
    project_id: int,
    *,
    name: str,
    kind: str,
    device_id: str | None = None,
    device_type: str | None = None,
    params: object = None,
    remind_after_minutes: object = None,
    enabled: bool = True,
) -> Rule:
    """A new rule of a project; ``InvalidInput`` naming the first field that does not fit
    (all of its parameters that do not, as ``params.<name>``)."""
    checked_kind = check_kind(kind)
    device_pk, watched_type = _scope(conn, project_id, device_id, device_type)
    values = {
        "project_id": project_id,
        "name": check_name(name),
        "kind": checked_kind.value,
        "device_pk": device_pk,
        "device_type": _text(check_scope(checked_kind, watched_type)),
        "params": json.dumps(check_params(checked_kind, params)),
        "remind_after_minutes": check_remind(remind_after_minutes),
        "enabled": enabled,
        "created_at": now_us(),
    }
    rule_id = conn.execute(insert(alert_rules).values(**values).returning(alert_rules.c.id))
    return get_rule(conn, rule_id.scalar_one())


def _scope(
    conn: Connection, project_id: int, device_id: str | None, device_type: str | None
) -> tuple[int | None, DeviceType | None]:
    """The meter (pk) and type a rule watches; its meter must be in the project."""
    kind = None
    if device_type:
        if device_type not in tuple(DeviceType):
            raise InvalidInput.field("device_type", f"one of {', '.join(DeviceType)}")
        kind = DeviceType(device_type)
    if not device_id:
        return None, kind
    if not printable(device_id):
        raise InvalidInput.field("device_id", "no control characters")
    try:
        device = get_device(conn, device_id)
    except NotFound:
        device = None
    if device is None or device_project(conn, device) != project_id:
        raise InvalidInput.field("device_id", f"no meter {device_id} in this project")
    if kind is not None and kind is not device.type:
        raise InvalidInput.field("device_type", f"meter {device_id} is a {device.type} meter")
    return device.pk, device.type


def _text(kind: DeviceType | None) -> str | None:
    return None if kind is None else kind.value


def get_rule(conn: Connection, rule_id: int) -> Rule:
    row = conn.execute(RULES.where(alert_rules.c.id == rule_id)).first()
    if row is None:
        raise NotFound(f"no alert rule {rule_id}")
    return Rule.from_row(row)


def list_rules(conn: Connection, project_id: int) -> list[Rule]:
    """A project's rules, oldest first."""
    query = RULES.where(alert_rules.c.project_id == project_id).order_by(alert_rules.c.id)
    return [Rule.from_row(row) for row in conn.execute(query)]


def update_rule(conn: Connection, rule: Rule, changes: Mapping[str, Any]) -> Rule:
    """Change a rule's ``name``, ``params``, ``remind_after_minutes`` or ``enabled`` (its
    kind and meters stay); new parameters are evaluated afresh (the watermark is reset)."""
    values: dict[str, Any] = {}
    if "name" in changes:
        values["name"] = check_name(changes["name"])
    if "params" in changes:
        values["params"] = json.dumps(check_params(rule.kind, changes["params"]))
        values["watermark"] = None
    if "remind_after_minutes" in changes:
        values["remind_after_minutes"] = check_remind(changes["remind_after_minutes"])
    if "enabled" in changes:
        values["enabled"] = bool(changes["enabled"])
    if values:
        conn.execute(update(alert_rules).where(alert_rules.c.id == rule.id).values(**values))
    return get_rule(conn, rule.id)


def delete_rule(conn: Connection, rule_id: int) -> None:
    """Remove a rule with its alerts' history (switch it off to keep that)."""
    if conn.execute(delete(alert_rules).where(alert_rules.c.id == rule_id)).rowcount == 0:
        raise NotFound(f"no alert rule {rule_id}")


# --- channels -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Channel:
    """Where a project's notifications go: a webhook URL, or e-mail addresses."""

    id: int
    project_id: int
    kind: ChannelKind
    url: str | None
    addresses: list[str]
    enabled: bool
    created_at: int

    @classmethod
    def from_row(cls, row: Any) -> Channel:
        return cls(
            row.id,
            row.project_id,
            ChannelKind(row.kind),
            row.url,
            json.loads(row.addresses or "[]"),
            row.enabled,
            row.created_at,
        )


def create_channel(
    conn: Connection,
    project_id: int,
    *,
    kind: str,
    url: str | None = None,
    secret: str | None = None,
    addresses: Sequence[str] = (),
    enabled: bool = True,
    targets: WebhookTargets | None = None,
) -> Channel:
    """A new channel: a webhook (``url`` and its signing ``secret``, a URL ``targets``
    allows when given) or e-mail (``addresses``); ``InvalidInput`` naming the first field
    that does not fit."""
    if kind not in tuple(ChannelKind):
        raise InvalidInput.field("kind", f"one of {', '.join(ChannelKind)}")
    values: dict[str, Any] = {"project_id": project_id, "kind": kind, "enabled": enabled}
    if kind == ChannelKind.WEBHOOK:
        values |= {"url": _webhook_url(url, targets), "secret": _secret(secret)}
    else:
        values["addresses"] = json.dumps(_addresses(addresses))
    statement = insert(alert_channels).values(**values, created_at=now_us())
    channel_id = conn.execute(statement.returning(alert_channels.c.id)).scalar_one()
    return get_channel(conn, channel_id)


def _webhook_url(url: str | None, targets: WebhookTargets | None) -> str:
    text = (url or "").strip()
    parts = urlsplit(text) if printable(text) else urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname or len(text) > URL_MAX:
        raise InvalidInput.field("url", f"an http:// or https:// URL of at most {URL_MAX}")
    if targets is not None and not targets.allows(text):
        raise InvalidInput.field("url", REFUSED)
    return text


def _secret(secret: str | None) -> str:
    if secret is None or not SECRET_MIN <= len(secret) <= SECRET_MAX or not printable(secret):
        raise InvalidInput.field("secret", f"the signing key: {SECRET_MIN}-{SECRET_MAX} characters")
    return secret


def _addresses(addresses: Sequence[str]) -> list[str]:
    listed = [a.strip() for a in addresses if a.strip()]
    if not 1 <= len(listed) <= ADDRESSES_MAX:
        raise InvalidInput.field("addresses", f"1-{ADDRESSES_MAX} e-mail addresses")
    bad = [a for a in listed if not ADDRESS.fullmatch(a) or len(a) > 254 or not printable(a)]
    if bad:
        raise InvalidInput.field("addresses", f"not an e-mail address: {', '.join(bad)}")
    return listed


def get_channel(conn: Connection, channel_id: int) -> Channel:
    row = conn.execute(select(alert_channels).where(alert_channels.c.id == channel_id)).first()
    if row is None:
        raise NotFound(f"no alert channel {channel_id}")
    return Channel.from_row(row)


def list_channels(conn: Connection, project_id: int) -> list[Channel]:
    query = select(alert_channels).where(alert_channels.c.project_id == project_id)
    return [Channel.from_row(row) for row in conn.execute(query.order_by(alert_channels.c.id))]


def delete_channel(conn: Connection, channel_id: int) -> None:
    """Remove a channel with its queued notifications and their attempts."""
    query = delete(alert_channels).where(alert_channels.c.id == channel_id)
    if conn.execute(query).rowcount == 0:
        raise NotFound(f"no alert channel {channel_id}")
