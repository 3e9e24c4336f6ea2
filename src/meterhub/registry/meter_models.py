"""Stored meter models (``register_maps.MeterModel``): the built-in ones and users' own.

Built-in models (``models/*.toml`` of this package, stored by migration 0011) cannot be
changed or deleted. A model meters use keeps its device type and its channels' names
(their tags exist); its registers may be corrected.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from meterhub.errors import InvalidInput, NotFound
from meterhub.registry.register_maps import MeterModel, parse_model
from meterhub.registry.tables import devices, meter_models
from meterhub.times import now_us

BUILTIN_DIR = Path(__file__).parent / "models"


def read_model_file(path: Path) -> list[dict[str, Any]]:
    """The model documents of a file: TOML (one model) or JSON (one model or a list)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput.field("file", f"cannot read {path}: {exc}") from None
    return read_model_text(text, path.name)


def read_model_text(text: str, filename: str = "") -> list[dict[str, Any]]:
    """The model documents of a file's text: TOML (one model) for a ``.toml`` file, JSON
    (one model or a list) for a ``.json`` one; any other, or pasted text, is JSON when it
    starts with ``{`` or ``[``, else TOML. ``InvalidInput`` (``file``) when it does not
    parse."""
    suffix = Path(filename).suffix.lower()
    looks_json = text.lstrip().startswith(("{", "["))
    is_json = suffix == ".json" or (suffix != ".toml" and looks_json)
    shown = filename or "the text"
    try:
        doc = json.loads(text) if is_json else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        kind = "JSON" if is_json else "TOML"
        raise InvalidInput.field("file", f"{shown} is not valid {kind}: {exc}") from None
    return doc if isinstance(doc, list) else [doc]


def builtin_models() -> list[MeterModel]:
    """The models shipped with meterhub."""
    return [
        parse_model(doc, builtin=True)
        for path in sorted(BUILTIN_DIR.glob("*.toml"))
        for doc in read_model_file(path)
    ]


def model_row(model: MeterModel) -> dict[str, Any]:
    """The ``meter_models`` row of a model."""
    return {
        "name": model.name,
        "device_type": model.device_type.value,
        "definition": json.dumps(model.document()),
        "builtin": model.builtin,
        "created_at": now_us(),
    }


def _from_row(definition: str, builtin: bool) -> MeterModel:
    return parse_model(json.loads(definition), builtin=bool(builtin))


def list_models(conn: Connection) -> list[MeterModel]:
    query = select(meter_models.c.definition, meter_models.c.builtin)
    rows = conn.execute(query.order_by(meter_models.c.name))
    return [_from_row(row.definition, row.builtin) for row in rows]


def models_by_name(conn: Connection) -> dict[str, MeterModel]:
    return {model.name: model for model in list_models(conn)}


def find_model(conn: Connection, name: str) -> MeterModel | None:
    query = select(meter_models.c.definition, meter_models.c.builtin)
    row = conn.execute(query.where(meter_models.c.name == name)).first()
    return None if row is None else _from_row(row.definition, row.builtin)


def get_model(conn: Connection, name: str) -> MeterModel:
    model = find_model(conn, name)
    if model is None:
        raise NotFound(f"no meter model named {name}")
    return model


def create_model(conn: Connection, doc: object) -> MeterModel:
    """Store a new model; ``InvalidInput`` on a bad document or a taken name."""
    model = parse_model(doc)
    if find_model(conn, model.name) is not None:
        raise InvalidInput.field("name", f"a meter model named {model.name} already exists")
    conn.execute(insert(meter_models).values(**model_row(model)))
    return model


def replace_model(conn: Connection, name: str, doc: object) -> MeterModel:
    """Replace a user's model by ``doc`` (same name), within the rules of the module."""
    old = get_model(conn, name)
    model = parse_model(doc)
    errors: dict[str, str] = {}
    if old.builtin:
        errors["name"] = f"{name} is built in: add a model of another name instead"
    elif model.name != name:
        errors["name"] = f"must stay {name}"
    elif _users(conn, name):
        if model.device_type != old.device_type:
            errors["device_type"] = f"meters use {name}: it stays {old.device_type}"
        if [c.name for c in model.channels] != [c.name for c in old.channels]:
            errors["channels"] = f"meters use {name}: its channels stay {_names(old)}"
    if errors:
        raise InvalidInput(errors)
    row = model_row(model)
    del row["created_at"]
    conn.execute(update(meter_models).where(meter_models.c.name == name).values(**row))
    return model


def delete_model(conn: Connection, name: str) -> None:
    """Remove a user's model no meter uses."""
    model = get_model(conn, name)
    if model.builtin:
        raise InvalidInput.field("name", f"{name} is built in and cannot be deleted")
    users = _users(conn, name)
    if users:
        shown = ", ".join(users[:5]) + (" ..." if len(users) > 5 else "")
        raise InvalidInput.field("name", f"meters use {name}: {shown}")
    conn.execute(delete(meter_models).where(meter_models.c.name == name))


def import_models(conn: Connection, docs: list[dict[str, Any]]) -> tuple[int, int]:
    """Create or replace each model of ``docs``; ``(created, replaced)``."""
    created = replaced = 0
    for doc in docs:
        name = doc.get("name")
        if isinstance(name, str) and find_model(conn, name) is not None:
            replace_model(conn, name, doc)
            replaced += 1
        else:
            create_model(conn, doc)
            created += 1
    return created, replaced


def meters_per_model(conn: Connection) -> dict[str, int]:
    """How many meters use each model that any meter uses."""
    query = select(devices.c.model, func.count()).where(devices.c.model.is_not(None))
    rows = conn.execute(query.group_by(devices.c.model))
    return {row[0]: row[1] for row in rows}


def _users(conn: Connection, name: str) -> list[str]:
    query = select(devices.c.device_id).where(devices.c.model == name).order_by(devices.c.id)
    return list(conn.execute(query).scalars())


def _names(model: MeterModel) -> str:
    return ", ".join(channel.name for channel in model.channels)
