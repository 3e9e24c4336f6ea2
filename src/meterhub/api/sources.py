"""Data source and tag management: ``/api/v1/data-sources/`` and ``/api/v1/tags/``."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field, TypeAdapter, field_validator

from meterhub.api.deps import ConnDep, SettingsDep
from meterhub.api.pagination import NumberedPage, offset, paging
from meterhub.registry.sources import (
    DataSource,
    create_source,
    delete_source,
    get_source,
    list_sources,
    source_tags,
    update_source,
)
from meterhub.registry.tags import (
    Tag,
    TagSpec,
    ValueType,
    create_tags,
    delete_tag,
    get_tag,
    list_tags,
    tag_key,
    update_tag,
)
from meterhub.settings import Settings
from meterhub.storage import delete_points, latest
from meterhub.times import iso

router = APIRouter(prefix="/api/v1", tags=["data sources"])

SourceId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
Page = Annotated[int, Query(ge=1)]
PageSize = Annotated[int, Query(ge=1, le=1000)]


class TagPair(BaseModel):
    tagName: str = Field(min_length=1, max_length=127)  # noqa: N815 - the wire name
    parentObjectId: str = Field(min_length=1, max_length=127)  # noqa: N815 - the wire name


class TagCreate(BaseModel):
    id: str | TagPair
    value_type: ValueType = ValueType.FLOAT
    scale: float = 1.0
    unit: str = Field("", max_length=32)
    attributes: dict[str, Any] = Field(default_factory=dict)

    def spec(self) -> TagSpec:
        pair = self.id
        ref = (
            pair
            if isinstance(pair, str)
            else {"tagName": pair.tagName, "parentObjectId": pair.parentObjectId}
        )
        return TagSpec(ref, self.value_type, self.scale, self.unit, self.attributes)


class SourceTagCreate(TagCreate):
    source_id: SourceId


class TagUpdate(BaseModel):
    value_type: ValueType | None = None
    scale: float | None = None
    unit: str | None = Field(None, max_length=32)
    attributes: dict[str, Any] | None = None
    active: bool | None = None


class LastValue(BaseModel):
    timestamp: str
    value: float
    quality: int


class TagPublic(BaseModel):
    id: str | TagPair
    key: str
    source_id: str | None
    value_type: ValueType
    scale: float
    unit: str
    attributes: dict[str, Any]
    active: bool
    last: LastValue | None


class TagsPublic(NumberedPage):
    results: list[TagPublic]


def _config_text(value: str | dict[str, Any]) -> str:
    """The configuration as the JSON string it is stored as."""
    return json.dumps(value) if isinstance(value, dict) else value


class DataSourceCreate(BaseModel):
    id: SourceId
    name: str | None = Field(None, max_length=255, description="Defaults to the id.")
    active: bool = True
    config: str | dict[str, Any] = Field("{}", description="JSON, as a string or an object.")
    tags: list[TagCreate] = Field(default_factory=list)

    _config = field_validator("config")(_config_text)


class DataSourceUpdate(BaseModel):
    name: str | None = Field(None, max_length=255)
    active: bool | None = None
    config: str | dict[str, Any] | None = None

    @field_validator("config")
    @classmethod
    def _json(cls, value: str | dict[str, Any] | None) -> str | None:
        return None if value is None else _config_text(value)


class DataSourcePublic(BaseModel):
    id: str
    name: str
    active: bool
    config: str
    created_at: str
    tags: list[TagPublic]


class DataSourcesPublic(NumberedPage):
    results: list[DataSourcePublic]


def _tags_public(conn: ConnDep, found: list[Tag], settings: Settings) -> list[TagPublic]:
    """The answer for stored tags, validated in one call however many there are."""
    last = latest(conn, [tag.pk for tag in found])
    answer = []
    for tag in found:
        held = last.get(tag.pk)
        answer.append(
            {
                "id": tag.ref,
                "key": tag.key,
                "source_id": tag.source_id,
                "value_type": tag.value_type,
                "scale": tag.scale,
                "unit": tag.unit,
                "attributes": tag.attributes,
                "active": tag.active,
                "last": None
                if held is None
                else {
                    "timestamp": iso(held.ts, settings.zone),
                    "value": held.value,
                    "quality": held.quality,
                },
            }
        )
    return _TAGS_PUBLIC.validate_python(answer)


_TAGS_PUBLIC = TypeAdapter(list[TagPublic])


def _source_public(
    conn: ConnDep, source: DataSource, settings: Settings, *, with_tags: bool = True
) -> DataSourcePublic:
    found = source_tags(conn, source.id) if with_tags else []
    return DataSourcePublic(
        id=source.id,
        name=source.name,
        active=source.active,
        config=source.config,
        created_at=iso(source.created_at, settings.zone),
        tags=_tags_public(conn, found, settings),
    )


@router.post("/data-sources/", status_code=201, operation_id="createDataSource")
def create_data_source(
    body: DataSourceCreate, conn: ConnDep, settings: SettingsDep
) -> DataSourcePublic:
    """Create a data source, with its tags in the same request."""
    source = create_source(
        conn,
        body.id,
        body.name or body.id,
        active=body.active,
        config=str(body.config),
        tag_specs=[tag.spec() for tag in body.tags],
    )
    return _source_public(conn, source, settings)


@router.get("/data-sources/", operation_id="listDataSources")
def list_data_sources(
    conn: ConnDep, settings: SettingsDep, page: Page = 1, page_size: PageSize = 100
) -> DataSourcesPublic:
    """Data sources by id (their tags: ``/api/v1/tags/?source_id=``)."""
    total, found = list_sources(conn, offset=offset(page, page_size), limit=page_size)
    results = [_source_public(conn, s, settings, with_tags=False) for s in found]
    return DataSourcesPublic(**paging(total, page, page_size), results=results)


@router.get("/data-sources/{source_id}/", operation_id="getDataSource")
def get_data_source(source_id: str, conn: ConnDep, settings: SettingsDep) -> DataSourcePublic:
    """One data source with its tags and their last values."""
    return _source_public(conn, get_source(conn, source_id), settings)


@router.patch("/data-sources/{source_id}/", operation_id="updateDataSource")
def update_data_source(
    source_id: str, body: DataSourceUpdate, conn: ConnDep, settings: SettingsDep
) -> DataSourcePublic:
    """Rename, (de)activate or reconfigure a source; a deactivated one refuses connections
    and writes (its history stays readable)."""
    source = update_source(conn, source_id, body.model_dump(exclude_none=True))
    return _source_public(conn, source, settings)


@router.delete(
    "/data-sources/{source_id}/",
    status_code=204,
    response_class=Response,
    operation_id="deleteDataSource",
)
def delete_data_source(source_id: str, conn: ConnDep) -> None:
    """Remove a source, its tags and all their points."""
    delete_points(conn, delete_source(conn, source_id))


@router.post("/tags/", status_code=201, operation_id="createTag")
def create_tag(body: SourceTagCreate, conn: ConnDep, settings: SettingsDep) -> TagPublic:
    """Add a tag to a data source."""
    get_source(conn, body.source_id)
    spec = body.spec()
    create_tags(conn, body.source_id, [spec])
    return _tags_public(conn, [get_tag(conn, tag_key(spec.ref))], settings)[0]


@router.get("/tags/", operation_id="listTags")
def list_all_tags(
    conn: ConnDep,
    settings: SettingsDep,
    source_id: str | None = None,
    search: Annotated[str | None, Query(max_length=255)] = None,
    page: Page = 1,
    page_size: PageSize = 100,
) -> TagsPublic:
    """Tags of every source and meter, with their last values."""
    total, found = list_tags(
        conn, source_id=source_id, search=search, offset=offset(page, page_size), limit=page_size
    )
    results = _tags_public(conn, found, settings)
    return TagsPublic(**paging(total, page, page_size), results=results)


@router.get("/tags/{tag_id}/", operation_id="getTag")
def get_one_tag(tag_id: str, conn: ConnDep, settings: SettingsDep) -> TagPublic:
    """One tag by its string id (a pair id reads ``<parentObjectId>.<tagName>``)."""
    return _tags_public(conn, [get_tag(conn, tag_id)], settings)[0]


@router.patch("/tags/{tag_id}/", operation_id="updateTag")
def update_one_tag(tag_id: str, body: TagUpdate, conn: ConnDep, settings: SettingsDep) -> TagPublic:
    """Change a tag's metadata, or (de)activate it: an inactive tag refuses writes."""
    tag = update_tag(conn, tag_id, body.model_dump(exclude_none=True))
    return _tags_public(conn, [tag], settings)[0]


@router.delete(
    "/tags/{tag_id}/", status_code=204, response_class=Response, operation_id="deleteTag"
)
def delete_one_tag(tag_id: str, conn: ConnDep) -> None:
    """Remove a source's tag and all its points."""
    delete_points(conn, [delete_tag(conn, tag_id)])
