"""``RequestData``: the validated parameters of a history query (``POST /smt/data/get``).

Every attribute is checked and normalised when it is set, so a bad parameter raises
``pydantic.ValidationError`` (a ``ValueError``) where it is given, not at the platform.
Times are kept in wire form (int µs, or a naive ISO string read in the platform's
timezone); tag ids as strings or :class:`~meterhub_client.tags.TagId`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from enum import Enum
from typing import Annotated, Any, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, PlainValidator

from meterhub_client._encoding import (
    TimeInput,
    ValueInput,
    WireTime,
    WireValue,
    encode_duration,
    encode_time,
    encode_value,
)
from meterhub_client.tags import Tag, TagId, TagIdInput, normalize_tag_id, tag_id_to_wire


class _Unset(Enum):
    """Marks a keyword that was not given (``None`` means "no such parameter")."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset.UNSET
"""Default of keywords that leave an attribute as it is."""

TagIdsInput: TypeAlias = TagIdInput | Tag | Sequence[TagIdInput | Tag]
"""One tag id or a list of them (strings, :class:`TagId`, wire mappings, or tags)."""

ValuesInput: TypeAlias = ValueInput | Sequence[ValueInput]
"""One value or a list of values to filter by."""

_T = TypeVar("_T")


def _optional(check: Callable[[Any], _T]) -> Callable[[Any], _T | None]:
    def validate(value: Any) -> _T | None:
        return None if value is None else check(value)

    return validate


def _tag_id(value: Any) -> str | TagId:
    return value.id if isinstance(value, Tag) else normalize_tag_id(value)


def _tag_ids(value: Any) -> str | TagId | list[str | TagId]:
    if isinstance(value, str | TagId | Mapping | Tag):
        return _tag_id(value)
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("tag_id: the list of tag ids is empty")
        return [_tag_id(item) for item in value]
    raise ValueError(f"bad tag_id {value!r}: expected a tag id or a list of tag ids")


def _values(value: Any) -> WireValue | list[WireValue]:
    if isinstance(value, type):
        raise ValueError(
            f"bad value {value!r}: give the value(s) to filter by, not a type "
            "(filtering by a type was a fault of the original client)"
        )
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("value: the list of values is empty")
        return [encode_value(item) for item in value]
    return encode_value(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"bad max_count {value!r}: expected a positive int")
    return int(value)


def _flag(value: Any) -> bool:
    item = getattr(value, "item", None)
    plain = item() if callable(item) and not isinstance(value, bool) else value
    if not isinstance(plain, bool):
        raise ValueError(f"expected True or False, not {value!r}")
    return plain


def _time_step(value: Any) -> int:
    return encode_duration(value, "time_step")


class RequestData(BaseModel):
    """Parameters of a history query; build it with ``client.create_request_data(...)``.

    ``tag_id``        one tag id or a list of them (string, :class:`TagId`,
                      ``{"tagName": ..., "parentObjectId": ...}`` or a :class:`Tag`)
    ``from_time``     start of the period (see ``Tag.add_data`` for accepted times)
    ``to_time``       end of the period
    ``max_count``     at most this many points per tag (positive int)
    ``time_step``     values on a regular grid of this step: int µs or ``timedelta``
    ``value``         only points with this value (a number or a list of numbers)
    ``format_param``  ``True``: the platform renders times as ISO 8601 strings
    ``actual``        ``True``: only stored points, never interpolated ones

    ``None`` means the parameter is not sent. Assigning an attribute validates it;
    :meth:`update` changes several at once, all or none.
    """

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    tag_id: Annotated[str | TagId | list[str | TagId], PlainValidator(_tag_ids)]
    from_time: Annotated[WireTime | None, PlainValidator(_optional(encode_time))] = None
    to_time: Annotated[WireTime | None, PlainValidator(_optional(encode_time))] = None
    max_count: Annotated[int | None, PlainValidator(_optional(_count))] = None
    time_step: Annotated[int | None, PlainValidator(_optional(_time_step))] = None
    value: Annotated[WireValue | list[WireValue] | None, PlainValidator(_optional(_values))] = None
    format_param: Annotated[bool | None, PlainValidator(_optional(_flag))] = None
    actual: Annotated[bool | None, PlainValidator(_optional(_flag))] = None

    def update(
        self,
        *,
        tag_id: TagIdsInput | _Unset = UNSET,
        from_time: TimeInput | _Unset | None = UNSET,
        to_time: TimeInput | _Unset | None = UNSET,
        max_count: int | _Unset | None = UNSET,
        time_step: int | timedelta | _Unset | None = UNSET,
        value: ValuesInput | _Unset | None = UNSET,
        format_param: bool | _Unset | None = UNSET,
        actual: bool | _Unset | None = UNSET,
    ) -> None:
        """Change the given attributes (``None`` removes one); the others stay.

        All are validated before any changes: on ``ValidationError`` the object is as
        it was. An unknown keyword raises ``TypeError``.
        """
        changes = given(
            tag_id=tag_id,
            from_time=from_time,
            to_time=to_time,
            max_count=max_count,
            time_step=time_step,
            value=value,
            format_param=format_param,
            actual=actual,
        )
        changed = self.with_changes(changes)
        for name in changes:
            setattr(self, name, getattr(changed, name))

    def with_changes(self, changes: Mapping[str, Any]) -> RequestData:
        """A validated copy with ``changes`` (attribute name → new value) applied."""
        current = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self).model_validate(current | dict(changes))

    def to_params(self) -> dict[str, Any]:
        """The JSON ``params`` object: wire names, absent parameters left out."""
        params: dict[str, Any] = {"tagId": _tag_ids_to_wire(self.tag_id)}
        for name, key in _WIRE_NAMES.items():
            value = getattr(self, name)
            if value is not None:
                params[key] = value
        return params


_WIRE_NAMES = {
    "from_time": "from",
    "to_time": "to",
    "max_count": "maxCount",
    "time_step": "timeStep",
    "value": "value",
    "format_param": "format",
    "actual": "actual",
}


def _tag_ids_to_wire(
    tag_id: str | TagId | list[str | TagId],
) -> str | dict[str, str] | list[str | dict[str, str]]:
    if isinstance(tag_id, list):
        return [tag_id_to_wire(item) for item in tag_id]
    return tag_id_to_wire(tag_id)


def given(**keywords: Any) -> dict[str, Any]:
    """The keywords whose value is not :data:`UNSET`."""
    return {name: value for name, value in keywords.items() if value is not UNSET}
