"""Meter models (Modbus register maps): ``/api/v1/meter-models/`` (administrators)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Response
from pydantic import BaseModel

from meterhub.api.deps import AdminUser, ConnDep
from meterhub.registry.meter_models import (
    create_model,
    delete_model,
    get_model,
    list_models,
    replace_model,
)
from meterhub.registry.register_maps import MeterModel

router = APIRouter(prefix="/api/v1/meter-models", tags=["meter models"])

ModelDocument = Body(
    description="A model in the file format of the README (`name`, `device_type`, `max_gap`, "
    "`channels`: {name: {address, function, type, word_order, byte_order, scale, unit, kind, "
    "label, min, max}}).",
    examples=[
        {
            "name": "my-meter",
            "device_type": "electricity",
            "channels": {
                "A": {"address": 6, "type": "float32"},
                "kW": {"address": 72, "type": "float32"},
            },
        }
    ],
)


class MeterModelPublic(BaseModel):
    name: str
    device_type: str
    builtin: bool
    definition: dict[str, Any]

    @classmethod
    def of(cls, model: MeterModel) -> MeterModelPublic:
        return cls(
            name=model.name,
            device_type=model.device_type.value,
            builtin=model.builtin,
            definition=model.document(),
        )


@router.get("/", operation_id="listMeterModels")
def list_meter_models(conn: ConnDep, _admin: AdminUser) -> list[MeterModelPublic]:
    """Every meter model, built-in and added, by name."""
    return [MeterModelPublic.of(model) for model in list_models(conn)]


@router.post("/", status_code=201, operation_id="createMeterModel")
def create_meter_model(
    conn: ConnDep, _admin: AdminUser, body: dict[str, Any] = ModelDocument
) -> MeterModelPublic:
    """Add a meter model; 400 names each bad field (``channels.kW.address``)."""
    return MeterModelPublic.of(create_model(conn, body))


@router.get("/{name}/", operation_id="getMeterModel")
def get_meter_model(name: str, conn: ConnDep, _admin: AdminUser) -> MeterModelPublic:
    return MeterModelPublic.of(get_model(conn, name))


@router.put("/{name}/", operation_id="replaceMeterModel")
def replace_meter_model(
    name: str, conn: ConnDep, _admin: AdminUser, body: dict[str, Any] = ModelDocument
) -> MeterModelPublic:
    """Replace an added model; one meters use keeps its device type and channel names."""
    return MeterModelPublic.of(replace_model(conn, name, body))


@router.delete(
    "/{name}/", status_code=204, response_class=Response, operation_id="deleteMeterModel"
)
def delete_meter_model(name: str, conn: ConnDep, _admin: AdminUser) -> None:
    """Remove an added model no meter uses."""
    delete_model(conn, name)
