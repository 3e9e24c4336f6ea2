"""Projects, houses with residents, devices in houses, and tariffs: ``/api/v1/projects/``
and ``/api/v1/houses/``.

Who sees what: everyone sees only the projects granted to them (administrators see all),
and everything under a project they cannot see answers 404, as if it did not exist. Only
administrators create or delete projects, and move a meter between projects (403).
Deleting a project that has bills is refused (400 naming ``project_id``): bills are
billing history. Editing a house never touches bills: they keep their own snapshot of
the address and residents.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from meterhub.api.deps import AdminUser, ConnDep, CurrentUser, ProjectDep
from meterhub.api.pagination import NumberedPage, Page, PageSize, offset, paging
from meterhub.billing import project_removal, tariff_store
from meterhub.billing.tariffs import Tariff
from meterhub.billing.tou import DAY_SETS, MAX_PERIODS, PEAK_VALLEY, AnyTariff, TouTariff
from meterhub.errors import InvalidInput, NotFound
from meterhub.registry import projects as registry
from meterhub.registry.channels import DeviceType
from meterhub.registry.projects import ADDRESS_PARTS, House, Project

router = APIRouter(prefix="/api/v1", tags=["projects"])

RowId = Annotated[int, Path(ge=1, le=2_147_483_647)]
WaterKind = Literal["tap", "purified"]


def _number_as_text(value: object) -> object:
    """A JSON number becomes its shortest text (0.55 -> "0.55"): no float artefacts."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


DecimalText = Annotated[
    str,
    BeforeValidator(_number_as_text),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "number"}], "examples": ["0.55"]}),
]
"""A decimal as a string (exact) or a JSON number (read through its text)."""

# Schemas


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectCreate(Strict):
    name: str = Field(description="1-255 characters.", examples=["安心e家"])
    timezone: str = Field(description="IANA timezone of its billing schedules.")
    currency: str = Field(description="ISO 4217 code of its bills.", examples=["CNY"])


class ProjectUpdate(Strict):
    name: str | None = None
    timezone: str | None = None
    currency: str | None = None


class ProjectPublic(BaseModel):
    id: int
    name: str
    timezone: str
    currency: str


class ProjectsPublic(NumberedPage):
    results: list[ProjectPublic]


Address = Annotated[
    list[str],
    Field(
        description="Five parts, each at most 255 characters.",
        json_schema_extra={"minItems": ADDRESS_PARTS, "maxItems": ADDRESS_PARTS},
        examples=[["安心e家", "1", "2", "301", "空调房"]],
    ),
]


class ResidentCreate(Strict):
    name: str = Field(json_schema_extra={"minLength": 1, "maxLength": 255})
    cellphone: str = Field(
        description="Digits, '+', spaces and dashes.",
        json_schema_extra={"pattern": r"^[0-9+ -]{3,32}$"},
    )


class ResidentPublic(BaseModel):
    name: str
    cellphone: str


Residents = Annotated[list[ResidentCreate], Field(max_length=100)]


class HouseCreate(Strict):
    address: Address
    residents: Residents = []


class HouseUpdate(Strict):
    address: Address | None = None
    residents: Residents | None = Field(None, description="Replaces every resident.")


class HouseDeviceCreate(Strict):
    device_id: str = Field(min_length=1, max_length=64, description="An existing meter.")
    water_kind: WaterKind | None = Field(None, description="Required for water meters only.")


class HouseDevicePublic(BaseModel):
    device_id: str
    type: DeviceType
    water_kind: str | None = Field(description="tap or purified; null for electricity.")


class HousePublic(BaseModel):
    id: int
    project_id: int
    address: list[str]
    residents: list[ResidentPublic]
    devices: list[HouseDevicePublic]


class HousesPublic(NumberedPage):
    results: list[HousePublic]


class TierSet(Strict):
    up_to: DecimalText | None = Field(
        None, description="Units per bill this tier reaches; null for the last tier."
    )
    price: DecimalText


DaysText = Annotated[
    object,
    WithJsonSchema(
        {
            "anyOf": [
                {"enum": list(DAY_SETS)},
                {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 7}},
            ],
            "description": "all, weekdays, weekends, or ISO weekdays (1 Monday .. 7 Sunday).",
        }
    ),
]


class WindowSet(Strict):
    """From ``from`` to ``to`` (HH:MM, project time) on each of ``days``; ``to <= from``
    wraps past midnight into the next day."""

    days: DaysText = "all"
    start: str = Field(alias="from", examples=["08:00"])
    end: str = Field(alias="to", examples=["22:00"])


class PeriodSet(Strict):
    name: str = Field(examples=["peak"])
    price: DecimalText
    windows: list[WindowSet] = Field(max_length=50)


class TariffSet(Strict):
    """Either ``price`` (flat) or ``tiers`` (阶梯), plus an optional fixed charge per bill; or a
    time-of-use tariff (峰谷, ``kind`` ``tou``): ``periods`` priced apart, optional ``tiers``
    adding a surcharge per unit of the bill's total above each bound, and a fixed charge."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tiers": [{"up_to": "100", "price": "0.55"}, {"up_to": None, "price": "0.80"}],
                    "fixed_charge": "5.00",
                },
                {"price": "3.20"},
                PEAK_VALLEY,
            ]
        }
    )

    kind: Literal["tiered", "tou"] = "tiered"
    tiers: list[TierSet] | None = Field(None, max_length=100)
    price: DecimalText | None = None
    periods: list[PeriodSet] | None = Field(None, max_length=MAX_PERIODS)
    fixed_charge: DecimalText = "0"

    def tariff(self) -> AnyTariff:
        """The tariff; ``InvalidInput`` naming the bad field (``price``, ``tiers[i].*``,
        ``periods[i].windows[j].from``, ``fixed_charge``, ...)."""
        if self.kind == "tou":
            return self._tou()
        if self.periods is not None:
            raise InvalidInput.field("periods", 'only time-of-use tariffs (kind "tou") have them')
        if self.tiers is not None and self.price is not None:
            raise InvalidInput.field("price", "give either a flat price or tiers, not both")
        if self.tiers is not None:
            tiers = [tier.model_dump() for tier in self.tiers]
            return Tariff.from_json({"tiers": tiers, "fixed_charge": self.fixed_charge})
        if self.price is None:
            raise InvalidInput.field("price", "give a flat price or tiers")
        flat = {"tiers": [{"up_to": None, "price": self.price}], "fixed_charge": self.fixed_charge}
        try:
            return Tariff.from_json(flat)
        except InvalidInput as exc:
            errors = exc.errors.items()
            raise InvalidInput({"price" if "tiers" in f else f: m for f, m in errors}) from None

    def _tou(self) -> TouTariff:
        if self.price is not None:
            raise InvalidInput.field("price", "a time-of-use tariff prices each period instead")
        if self.periods is None:
            raise InvalidInput.field("periods", "a time-of-use tariff needs its periods")
        return TouTariff.from_json(
            {
                "periods": [period.model_dump(by_alias=True) for period in self.periods],
                "tiers": [tier.model_dump() for tier in self.tiers or []],
                "fixed_charge": self.fixed_charge,
            }
        )


class TierPublic(BaseModel):
    up_to: str | None
    price: str


class WindowPublic(BaseModel):
    days: str | list[int]
    start: str = Field(serialization_alias="from")
    end: str = Field(serialization_alias="to")


class PeriodPublic(BaseModel):
    name: str
    price: str
    windows: list[WindowPublic]


class TariffPublic(BaseModel):
    device_type: DeviceType
    water_kind: str | None = Field(description="tap or purified; null for electricity.")
    kind: Literal["tiered", "tou"] = Field(
        "tiered", exclude_if=lambda kind: kind == "tiered", description="Shown for tou only."
    )
    tiers: list[TierPublic] = Field(
        description="Tiered: the prices. Time-of-use: surcharges on the total (maybe none)."
    )
    periods: list[PeriodPublic] | None = Field(
        None, exclude_if=lambda periods: periods is None, description="Time-of-use only."
    )
    fixed_charge: str


class TariffsPublic(BaseModel):
    count: int
    results: list[TariffPublic]


# Access


def visible_house(house_id: RowId, user: CurrentUser, conn: ConnDep) -> House:
    """The house in the path if the caller may see its project; 404 as if unknown otherwise."""
    house = registry.get_house(conn, house_id)
    if not user.can_access(house.project_id):
        raise NotFound(f"no house with id {house_id}")
    return house


HouseDep = Annotated[House, Depends(visible_house)]


def _project_public(project: Project) -> ProjectPublic:
    return ProjectPublic(
        id=project.id, name=project.name, timezone=project.timezone, currency=project.currency
    )


def _house_public(house: House) -> HousePublic:
    return HousePublic(
        id=house.id,
        project_id=house.project_id,
        address=list(house.address),
        residents=[ResidentPublic(name=r.name, cellphone=r.cellphone) for r in house.residents],
        devices=[_device_public(d) for d in house.devices],
    )


def _device_public(device: registry.HouseDevice) -> HouseDevicePublic:
    return HouseDevicePublic(
        device_id=device.device_id, type=device.type, water_kind=device.water_kind
    )


def _tariff_public(device_type: DeviceType, water_kind: str, tariff: AnyTariff) -> TariffPublic:
    data = tariff.to_json()
    periods = data.get("periods")
    return TariffPublic(
        device_type=device_type,
        water_kind=water_kind or None,
        kind=data.get("kind", "tiered"),
        tiers=[TierPublic(**tier) for tier in data["tiers"]],
        periods=None
        if periods is None
        else [
            PeriodPublic(
                name=p["name"],
                price=p["price"],
                windows=[
                    WindowPublic(days=w["days"], start=w["from"], end=w["to"]) for w in p["windows"]
                ],
            )
            for p in periods
        ],
        fixed_charge=data["fixed_charge"],
    )


def _people(residents: list[ResidentCreate] | None) -> list[tuple[str, str]] | None:
    return None if residents is None else [(r.name, r.cellphone) for r in residents]


# Projects


@router.post("/projects/", status_code=201, operation_id="createProject")
def create_project(body: ProjectCreate, _admin: AdminUser, conn: ConnDep) -> ProjectPublic:
    """Create a project (administrators only)."""
    project = registry.create_project(conn, body.name, body.timezone, body.currency)
    return _project_public(project)


@router.get("/projects/", operation_id="listProjects")
def list_projects(
    user: CurrentUser, conn: ConnDep, page: Page = 1, page_size: PageSize = 100
) -> ProjectsPublic:
    """The projects the caller may see, by id."""
    only = user.visible_projects
    total, found = registry.list_projects(
        conn, only, offset=offset(page, page_size), limit=page_size
    )
    return ProjectsPublic(
        **paging(total, page, page_size),
        results=[_project_public(p) for p in found],
    )


@router.get("/projects/{project_id}/", operation_id="getProject")
def get_project(project: ProjectDep) -> ProjectPublic:
    """One project."""
    return _project_public(project)


@router.patch("/projects/{project_id}/", operation_id="updateProject")
def update_project(project: ProjectDep, body: ProjectUpdate, conn: ConnDep) -> ProjectPublic:
    """Rename a project or change its timezone (billing fires from now on) or currency
    (bills from now on; issued bills keep theirs)."""
    fields = body.model_dump(exclude_none=True)
    return _project_public(registry.update_project(conn, project.id, **fields))


@router.delete(
    "/projects/{project_id}/",
    status_code=204,
    response_class=Response,
    operation_id="deleteProject",
)
def delete_project(project_id: RowId, _admin: AdminUser, conn: ConnDep) -> None:
    """Delete a project with its houses, tariffs and billing tasks (administrators only);
    its meters stay, unassigned. Refused (400) once the project has bills."""
    project_removal.delete_project(conn, project_id)


# Houses


@router.post("/projects/{project_id}/houses/", status_code=201, operation_id="createHouse")
def create_house(project: ProjectDep, body: HouseCreate, conn: ConnDep) -> HousePublic:
    """Add a house with its residents to a project."""
    people = _people(body.residents) or []
    house_id = registry.create_house(conn, project.id, body.address, people)
    return _house_public(registry.get_house(conn, house_id))


@router.get("/projects/{project_id}/houses/", operation_id="listHouses")
def list_houses(
    project: ProjectDep, conn: ConnDep, page: Page = 1, page_size: PageSize = 100
) -> HousesPublic:
    """A project's houses by id, each with its residents and devices."""
    total, found = registry.list_houses(
        conn, project.id, offset=offset(page, page_size), limit=page_size
    )
    return HousesPublic(
        **paging(total, page, page_size),
        results=[_house_public(h) for h in found],
    )


@router.get("/houses/{house_id}/", operation_id="getHouse")
def get_house(house: HouseDep) -> HousePublic:
    """One house with its residents and devices."""
    return _house_public(house)


@router.patch("/houses/{house_id}/", operation_id="updateHouse")
def update_house(house: HouseDep, body: HouseUpdate, conn: ConnDep) -> HousePublic:
    """Change the address and/or replace the residents; issued bills keep their snapshot."""
    updated = registry.update_house(
        conn, house.id, address=body.address, people=_people(body.residents)
    )
    return _house_public(updated)


@router.delete(
    "/houses/{house_id}/", status_code=204, response_class=Response, operation_id="deleteHouse"
)
def delete_house(house: HouseDep, conn: ConnDep) -> None:
    """Remove a house and its residents; its meters stay, unassigned, and its bills stay."""
    registry.delete_house(conn, house.id)


@router.post("/houses/{house_id}/devices/", status_code=201, operation_id="assignDevice")
def assign_device(
    house: HouseDep, body: HouseDeviceCreate, user: CurrentUser, conn: ConnDep
) -> HouseDevicePublic:
    """Put an existing meter in this house, moving it from any other house (from another
    project's: administrators only)."""
    device = registry.assign_device(
        conn, body.device_id, house.id, body.water_kind, across_projects=user.is_admin
    )
    return _device_public(device)


@router.delete(
    "/houses/{house_id}/devices/{device_id}/",
    status_code=204,
    response_class=Response,
    operation_id="unassignDevice",
)
def unassign_device(house: HouseDep, device_id: str, conn: ConnDep) -> None:
    """Take a meter out of this house; it is no longer billed until assigned again."""
    registry.unassign_device(conn, house.id, device_id)


# Tariffs


@router.put("/projects/{project_id}/tariffs/{device_type}/", operation_id="setTariff")
def set_tariff(
    project: ProjectDep,
    device_type: DeviceType,
    body: TariffSet,
    conn: ConnDep,
    water_kind: WaterKind | None = None,
) -> TariffPublic:
    """Set or replace the tariff of a device type (water: per ``water_kind``); it prices
    the bills of runs from now on."""
    tariff = tariff_store.set_tariff(conn, project.id, device_type, body.tariff(), water_kind)
    return _tariff_public(device_type, water_kind or "", tariff)


@router.get("/projects/{project_id}/tariffs/", operation_id="listTariffs")
def list_tariffs(project: ProjectDep, conn: ConnDep) -> TariffsPublic:
    """Every tariff of a project."""
    found = tariff_store.project_tariffs(conn, project.id)
    results = [_tariff_public(kind, water, tariff) for (kind, water), tariff in found.items()]
    return TariffsPublic(count=len(results), results=results)


@router.get("/projects/{project_id}/tariffs/{device_type}/", operation_id="getTariff")
def get_tariff(
    project: ProjectDep, device_type: DeviceType, conn: ConnDep, water_kind: WaterKind | None = None
) -> TariffPublic:
    """One tariff of a project."""
    tariff = tariff_store.get_tariff(conn, project.id, device_type, water_kind)
    return _tariff_public(device_type, water_kind or "", tariff)


@router.delete(
    "/projects/{project_id}/tariffs/{device_type}/",
    status_code=204,
    response_class=Response,
    operation_id="deleteTariff",
)
def delete_tariff(
    project: ProjectDep, device_type: DeviceType, conn: ConnDep, water_kind: WaterKind | None = None
) -> None:
    """Remove a tariff; the project's devices of that type are not billed until a new one."""
    tariff_store.delete_tariff(conn, project.id, device_type, water_kind)
