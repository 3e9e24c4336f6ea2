"""Data source and tag management: ``/api/v1/data-sources/`` and ``/api/v1/tags/``."""

from __future__ import annotations

import email.message
import json
from typing import Annotated, Any, NamedTuple

import msgspec
from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, field_validator

from meterhub.api.deps import ConnDep, SettingsDep
from meterhub.api.pagination import NumberedPage, Page, PageSize, offset, paging
from meterhub.mqtt.config import split_secret
from meterhub.mqtt.status import State, statuses
from meterhub.registry.sources import (
    DataSource,
    create_source,
    delete_source,
    get_source,
    list_sources,
    source_secret,
    source_tag_rows,
    update_source,
)
from meterhub.registry.tags import (
    NewTag,
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
from meterhub.storage.points import latest_rows
from meterhub.times import iso

router = APIRouter(prefix="/api/v1", tags=["data sources"])

SourceId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]


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


class RefusalPublic(BaseModel):
    topic: str
    payload: str = Field(description="Its start, as text.")
    reason: str
    at: str


class MqttStatusPublic(BaseModel):
    """The subscriber of an MQTT source, as the leading server last reported it."""

    state: State = Field(description="connecting, connected, disconnected (retrying), stopped.")
    connected: bool
    since: str
    last_error: str | None
    last_error_at: str | None
    messages_stored: int
    last_stored_at: str | None
    bad_messages: int = Field(description="Messages refused: unreadable, unknown device, ...")
    last_bad: RefusalPublic | None


class DataSourcePublic(BaseModel):
    id: str
    name: str
    active: bool
    config: str = Field(description="As stored: an MQTT password is never included.")
    created_at: str
    mqtt: MqttStatusPublic | None = Field(description="For a source with MQTT settings.")
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


class _PairOut(msgspec.Struct, gc=False):
    tagName: str  # noqa: N815 - the wire name
    parentObjectId: str  # noqa: N815 - the wire name


class _LastOut(msgspec.Struct, gc=False):
    timestamp: str
    value: float
    quality: int


class _TagOut(msgspec.Struct, gc=False):
    """``TagPublic``, as msgspec encodes it."""

    id: str | _PairOut
    key: str
    source_id: str | None
    value_type: int
    scale: float
    unit: str
    attributes: dict[str, Any]
    active: bool
    last: _LastOut | None


class _SourceOut(msgspec.Struct, gc=False):
    """``DataSourcePublic``, as msgspec encodes it."""

    id: str
    name: str
    active: bool
    config: str
    created_at: str
    mqtt: dict[str, Any] | None
    tags: list[_TagOut]


_ENCODER = msgspec.json.Encoder()
_NO_ATTRIBUTES: dict[str, Any] = {}  # shared by every tag without attributes; never changed


def _source_answer(conn: ConnDep, source: DataSource, settings: Settings) -> Response:
    """``DataSourcePublic`` of a source with its tags, encoded as JSON directly from the rows
    (a source may hold tens of thousands of tags: no model per tag is built or validated)."""
    rows = source_tag_rows(conn, source.id)
    last = {row[0]: row for row in latest_rows(conn, [row[0] for row in rows])}
    tags = []
    for pk, key, value_type, scale, unit, attributes, active, name, parent in rows:
        held = last.get(pk)
        tags.append(
            _TagOut(
                key if name is None or parent is None else _PairOut(name, parent),
                key,
                source.id,
                int(value_type),
                float(scale),
                unit,
                _NO_ATTRIBUTES if attributes == "{}" else json.loads(attributes),
                bool(active),
                None
                if held is None
                else _LastOut(iso(held[1], settings.zone), float(held[2]), int(held[3])),
            )
        )
    answer = _SourceOut(
        source.id,
        source.name,
        bool(source.active),
        source.config,
        iso(source.created_at, settings.zone),
        _mqtt_public(conn, [source], settings).get(source.id),
        tags,
    )
    return Response(_ENCODER.encode(answer), media_type="application/json")


def _mqtt_public(
    conn: ConnDep, found: list[DataSource], settings: Settings
) -> dict[str, dict[str, Any]]:
    """``MqttStatusPublic`` (as JSON values) of those of ``found`` with MQTT settings."""
    zone = settings.zone
    answers = {}
    for source_id, status in statuses(conn, found).items():
        bad = status.last_bad
        answers[source_id] = {
            "state": status.state.value,
            "connected": status.connected,
            "since": iso(status.since, zone),
            "last_error": status.last_error,
            "last_error_at": None if status.error_at is None else iso(status.error_at, zone),
            "messages_stored": status.stored,
            "last_stored_at": None
            if status.last_stored_at is None
            else iso(status.last_stored_at, zone),
            "bad_messages": status.bad,
            "last_bad": None
            if bad is None
            else {
                "topic": bad.topic,
                "payload": bad.payload,
                "reason": bad.reason,
                "at": iso(bad.at, zone),
            },
        }
    return answers


def _sources_public(
    conn: ConnDep, found: list[DataSource], settings: Settings
) -> list[DataSourcePublic]:
    """Sources without their tags."""
    mqtt = _mqtt_public(conn, found, settings)
    return [
        DataSourcePublic(
            id=source.id,
            name=source.name,
            active=source.active,
            config=source.config,
            created_at=iso(source.created_at, settings.zone),
            mqtt=None if source.id not in mqtt else MqttStatusPublic(**mqtt[source.id]),
            tags=[],
        )
        for source in found
    ]


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its ``$defs`` written in place of each reference to them."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                rest = {key: value for key, value in node.items() if key != "$ref"}
                return {**resolve(defs[node["$ref"].rsplit("/", 1)[1]]), **resolve(rest)}
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


_CREATE = {"schema": _inlined(DataSourceCreate.model_json_schema())}
"""The request body of ``createDataSource``, documented as ``DataSourceCreate``."""


@router.post(
    "/data-sources/",
    status_code=201,
    operation_id="createDataSource",
    response_model=DataSourcePublic,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": _CREATE}}},
)
async def create_data_source(request: Request, conn: ConnDep, settings: SettingsDep) -> Response:
    """Create a data source, with its tags in the same request (body: ``DataSourceCreate``).

    The body is decoded and checked in C (msgspec) into objects the garbage collector
    never visits, so 20,000 tags take a fraction of what as many models would; a body
    that check refuses is validated as ``DataSourceCreate``, which names what is wrong."""
    creation = _creation(request.headers.get("content-type"), await request.body())
    source = await run_in_threadpool(_create, conn, creation)
    answer = await run_in_threadpool(_source_answer, conn, source, settings)
    answer.status_code = 201
    return answer


class _PairIn(msgspec.Struct, gc=False):
    tagName: Annotated[str, msgspec.Meta(min_length=1, max_length=127)]  # noqa: N815
    parentObjectId: Annotated[str, msgspec.Meta(min_length=1, max_length=127)]  # noqa: N815


class _TagIn(msgspec.Struct, gc=False):
    """``TagCreate`` in msgspec's terms, accepting a subset of what it accepts."""

    id: str | _PairIn
    value_type: ValueType = ValueType.FLOAT
    scale: float = 1.0
    unit: Annotated[str, msgspec.Meta(max_length=32)] = ""
    attributes: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class _SourceIn(msgspec.Struct, gc=False):
    """``DataSourceCreate`` in msgspec's terms (the id's pattern is checked apart)."""

    id: str
    name: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    active: bool = True
    config: str | dict[str, Any] = "{}"
    tags: list[_TagIn] = msgspec.field(default_factory=list)


_SOURCE_IN = msgspec.json.Decoder(_SourceIn)
_SOURCE_ID: TypeAdapter[str] = TypeAdapter(SourceId)


class _Creation(NamedTuple):
    id: str
    name: str
    active: bool
    config: str
    tags: list[NewTag]


def _creation(content_type: str | None, body: bytes) -> _Creation:
    """The data source a creation call asks for: by msgspec when it accepts the body (which
    then means what it means to ``DataSourceCreate``), else by ``DataSourceCreate`` itself."""
    found = _decoded(body) if _is_json(content_type) else None
    if found is not None:
        tags = [
            NewTag(
                tag.id if isinstance(tag.id, str) else None,
                None if isinstance(tag.id, str) else tag.id.tagName,
                None if isinstance(tag.id, str) else tag.id.parentObjectId,
                int(tag.value_type),
                tag.scale,
                tag.unit,
                json.dumps(tag.attributes) if tag.attributes else "{}",
            )
            for tag in found.tags
        ]
        config = _config_text(found.config)
        return _Creation(found.id, found.name or found.id, found.active, config, tags)
    body_model = _validated(content_type, body)
    tags = [NewTag.of(tag.spec()) for tag in body_model.tags]
    name = body_model.name or body_model.id
    return _Creation(body_model.id, name, body_model.active, str(body_model.config), tags)


def _decoded(body: bytes) -> _SourceIn | None:
    try:
        found = _SOURCE_IN.decode(body)
        _SOURCE_ID.validate_python(found.id)
    except (msgspec.DecodeError, ValidationError):
        return None
    return found


def _is_json(content_type: str | None) -> bool:
    """FastAPI's test of a JSON body: ``application/json`` or ``application/*+json``."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _validated(content_type: str | None, body: bytes) -> DataSourceCreate:
    """The body as FastAPI would have validated a ``DataSourceCreate`` parameter, with the
    same ``RequestValidationError`` when it is not one."""
    if not body:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    value: Any = body
    if _is_json(content_type):
        try:
            value = json.loads(body)
        except json.JSONDecodeError as exc:
            error = {"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error"}
            raise RequestValidationError(
                [{**error, "input": {}, "ctx": {"error": exc.msg}}]
            ) from exc
        except ValueError as exc:  # not UTF-8, ...
            raise HTTPException(400, "There was an error parsing the body") from exc
    try:
        return DataSourceCreate.model_validate(value, from_attributes=True)  # as FastAPI does
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from None


def _create(conn: ConnDep, creation: _Creation) -> DataSource:
    config, secret = split_secret(creation.config, None)
    return create_source(
        conn,
        creation.id,
        creation.name,
        active=creation.active,
        config=config,
        secret=secret,
        tag_specs=creation.tags,
    )


@router.get("/data-sources/", operation_id="listDataSources")
def list_data_sources(
    conn: ConnDep, settings: SettingsDep, page: Page = 1, page_size: PageSize = 100
) -> DataSourcesPublic:
    """Data sources by id (their tags: ``/api/v1/tags/?source_id=``)."""
    total, found = list_sources(conn, offset=offset(page, page_size), limit=page_size)
    results = _sources_public(conn, found, settings)
    return DataSourcesPublic(**paging(total, page, page_size), results=results)


@router.get(
    "/data-sources/{source_id}/", operation_id="getDataSource", response_model=DataSourcePublic
)
def get_data_source(source_id: str, conn: ConnDep, settings: SettingsDep) -> Response:
    """One data source with its tags and their last values."""
    return _source_answer(conn, get_source(conn, source_id), settings)


@router.patch(
    "/data-sources/{source_id}/", operation_id="updateDataSource", response_model=DataSourcePublic
)
def update_data_source(
    source_id: str, body: DataSourceUpdate, conn: ConnDep, settings: SettingsDep
) -> Response:
    """Rename, (de)activate or reconfigure a source; a deactivated one refuses connections
    and writes (its history stays readable). MQTT settings without ``password`` keep the
    stored one; ``"password": null`` drops it."""
    changes = body.model_dump(exclude_none=True)
    if "config" in changes:
        kept = source_secret(conn, source_id)
        changes["config"], changes["secret"] = split_secret(changes["config"], kept)
    source = update_source(conn, source_id, changes)
    return _source_answer(conn, source, settings)


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
