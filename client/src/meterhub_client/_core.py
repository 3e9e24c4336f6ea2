"""The client's core, shared by the sync and async clients, doing no I/O.

It turns method calls into :class:`Call` descriptions (method, URL, JSON body), splits
``set_data`` into :class:`Batch` es of bounded size, turns :class:`Reply` (status code
and body bytes) into results or exceptions, and decides when and after how long a
failed attempt is retried. The shells in ``_sync`` and ``_async`` only move bytes:
each of their methods builds a call here, sends it, and parses the reply here.
"""

from __future__ import annotations

import functools
import json
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, TypeVar, cast

import httpx

from meterhub_client._encoding import TimeInput
from meterhub_client._version import __version__
from meterhub_client.exceptions import (
    AuthenticationError,
    DataSourceNotActive,
    ErrorCode,
    NoDataToSend,
    TransportError,
    server_error,
)
from meterhub_client.request_data import RequestData, TagIdsInput, ValuesInput
from meterhub_client.tags import Tag, WirePoint, points_json, wire_text

CONNECT_PATH = "/smt/dataSources/connect"
SET_DATA_PATH = "/smt/data/set"
GET_DATA_PATH = "/smt/data/get"

T = TypeVar("T")

MAX_POINTS_LIMIT = 50_000
"""Upper bound of ``max_points_per_request``: ~80 bytes a point keeps a body near 4 MB,
well under the platform's 8 MiB limit."""

IN_FLIGHT = 4
"""Batches ``set_data`` keeps in flight (never two that share a tag): the platform works on
some while the next is encoded and received, and on PostgreSQL writes them side by side
(ingest through the SDK about 10% faster than with two)."""

MAX_BACKOFF = 30.0
"""No pause between two attempts lasts longer than this many seconds."""

RETRYABLE_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
"""httpx errors worth another attempt: timeouts, refused/reset connections, broken answers."""


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request to make: ``method`` on ``url`` with the JSON body ``content``."""

    method: str
    url: str
    content: bytes = field(repr=False)
    headers: Mapping[str, str] = field(
        default_factory=lambda: {"Content-Type": "application/json"}, repr=False
    )
    payload: dict[str, Any] | None = field(default=None, repr=False)
    """The body as Python values when the call was built from them (see ``json``)."""
    token_sent: bool = False
    """Whether the call goes with an ``Authorization`` header (the client's ``headers``):
    an error 9 then means the token was refused, else that none was sent."""

    @classmethod
    def post(cls, url: str, payload: dict[str, Any], *, token_sent: bool = False) -> Call:
        """A ``POST`` of ``payload`` as compact UTF-8 JSON."""
        content = wire_text(payload).encode("utf-8")
        return cls("POST", url, content, payload=payload, token_sent=token_sent)

    @classmethod
    def post_json(cls, url: str, content: bytes, *, token_sent: bool = False) -> Call:
        """A ``POST`` of a body already encoded as JSON."""
        return cls("POST", url, content, token_sent=token_sent)

    @property
    def json(self) -> dict[str, Any]:
        """The body as Python values."""
        if self.payload is not None:
            return self.payload
        body: dict[str, Any] = json.loads(self.content)
        return body


@dataclass(frozen=True, slots=True)
class Reply:
    """What came back: the HTTP status code and the raw body."""

    status_code: int
    content: bytes


@dataclass(frozen=True)
class Batch:
    """One ``set_data`` request and the buffered points it carries: of ``tags[i]``, the
    points numbered ``firsts[i]..lasts[i]`` (arrays: a batch of thousands of tags holds no
    object per tag for the garbage collector to visit)."""

    call: Call
    tags: list[Tag]
    firsts: array[int]
    lasts: array[int]
    points: int

    @functools.cached_property
    def tag_keys(self) -> frozenset[str]:
        """The platform's string ids of the batch's tags (a pair id and its string alike)."""
        return frozenset(tag._key() for tag in self.tags)

    def waits_for(self, sending: Iterable[Batch]) -> bool:
        """Whether this batch shares a tag with one of ``sending``: it may not travel beside
        them, or the platform could write a tag's points out of the order they were added."""
        return any(not self.tag_keys.isdisjoint(other.tag_keys) for other in sending)

    def acknowledge(self, reply: Reply) -> int:
        """Parse the reply; on success remove the sent points and return how many were written.

        The count is the platform's ``written`` (or the number sent if it gives none).
        On any error the exception propagates and every point stays buffered.
        """
        body = parse_reply(self.call, reply)
        for tag, first, last in zip(self.tags, self.firsts, self.lasts, strict=True):
            tag._discard(first, last)
        written = body.get("written")
        if isinstance(written, int) and not isinstance(written, bool):
            return written
        return self.points


def parse_reply(call: Call, reply: Reply) -> dict[str, Any]:
    """The JSON body of a successful reply, or the matching exception.

    HTTP 401, or error 9 whatever the status: :class:`AuthenticationError`. Another non-2xx
    status or a body that is not a JSON object with an integer ``error.id``:
    :class:`TransportError`. Non-zero ``error.id``: :class:`ServerResponseError` or its
    subclass for that id.
    """
    where = f"{call.method} {call.url}"
    if reply.status_code == 401:
        raise _authentication_error(call, reply)
    if not 200 <= reply.status_code < 300:
        raise TransportError(
            f"{where}: HTTP {reply.status_code}: {_excerpt(reply.content)}",
            status_code=reply.status_code,
        )
    try:
        body = decode_json(reply.content)
    except ValueError as exc:
        raise TransportError(
            f"{where}: the answer is not JSON: {_excerpt(reply.content)}",
            status_code=reply.status_code,
        ) from exc
    if not isinstance(body, dict) or not isinstance(error := body.get("error"), dict):
        raise _malformed(call, reply, "no error.id")
    error_id = error.get("id")
    if not isinstance(error_id, int) or isinstance(error_id, bool):
        raise _malformed(call, reply, "no integer error.id")
    if error_id == ErrorCode.NOT_AUTHENTICATED:
        raise _authentication_error(call, reply)
    if error_id != ErrorCode.OK:
        message = error.get("message")
        if not isinstance(message, str) or not message:
            message = _default_message(error_id)
        raise server_error(error_id, message)
    return body


def decode_json(content: bytes) -> Any:
    """``json.loads(content)``, by msgspec's decoder when it is installed (an optional
    speed-up, several times faster on large answers); what it refuses (such as NaN or an
    integer beyond 64 bits) is read by ``json.loads``, so the result is the same."""
    if _FAST_DECODE is not None:
        try:
            return _FAST_DECODE(content)
        except ValueError:  # msgspec.DecodeError
            pass
    return json.loads(content)


def _fast_decoder() -> Callable[[bytes], Any] | None:
    try:
        import msgspec
    except ImportError:  # pragma: no cover - msgspec is optional
        return None
    decode: Callable[[bytes], Any] = msgspec.json.decode
    return decode


_FAST_DECODE = _fast_decoder()


def _default_message(error_id: int) -> str:
    try:
        return ErrorCode(error_id).name.lower().replace("_", " ")
    except ValueError:
        return "unknown error"


def _authentication_error(call: Call, reply: Reply) -> AuthenticationError:
    """The platform's refusal of the call's credentials: its ``error.message`` when the body
    is the platform's JSON (a proxy's 401 page is quoted instead)."""
    try:
        message = decode_json(reply.content)["error"]["message"]
    except (ValueError, TypeError, KeyError):
        message = None
    if not isinstance(message, str) or not message:
        message = f"HTTP {reply.status_code}: {_excerpt(reply.content)}"
    return AuthenticationError(message, token_sent=call.token_sent, status_code=reply.status_code)


def _malformed(call: Call, reply: Reply, problem: str) -> TransportError:
    return TransportError(
        f"{call.method} {call.url}: malformed answer ({problem}): {_excerpt(reply.content)}",
        status_code=reply.status_code,
    )


def _excerpt(content: bytes, limit: int = 200) -> str:
    text = content[: limit + 1].decode("utf-8", errors="replace")
    return repr(text[:limit] + "…") if len(text) > limit else repr(text)


def normalize_base_url(base_url: str) -> str:
    """``base_url`` without trailing slashes; ``ValueError`` unless it is an http(s) URL."""
    if not isinstance(base_url, str):
        raise ValueError(f"bad base_url {base_url!r}: expected a string such as 'http://host:8000'")
    text = base_url.strip()
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ValueError(f"bad base_url {base_url!r}: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"bad base_url {base_url!r}: expected 'http://host[:port][/prefix]'")
    if url.query or url.fragment or "?" in text or "#" in text:
        raise ValueError(f"bad base_url {base_url!r}: no query or fragment allowed")
    return text.rstrip("/")


class BaseClient:
    """What both clients share: configuration, request building, reply parsing, retries.

    Nothing here performs I/O; :class:`~meterhub_client.DataInteractionClient` and
    :class:`~meterhub_client.AsyncDataInteractionClient` add the sending.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_points_per_request: int = 5000,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"bad timeout {timeout!r}: expected seconds > 0")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"bad retries {retries!r}: expected an int >= 0")
        if isinstance(backoff, bool) or not isinstance(backoff, int | float) or backoff < 0:
            raise ValueError(f"bad backoff {backoff!r}: expected seconds >= 0")
        points = max_points_per_request
        if isinstance(points, bool) or not isinstance(points, int):
            raise ValueError(f"bad max_points_per_request {points!r}: expected an int")
        if not 1 <= points <= MAX_POINTS_LIMIT:
            raise ValueError(f"bad max_points_per_request {points}: expected 1..{MAX_POINTS_LIMIT}")
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self.max_points_per_request = points
        given = dict(headers or {})
        defaults = {"User-Agent": f"meterhub-client/{__version__}", "Accept": "application/json"}
        overridden = {name.lower() for name in given}
        self.headers: dict[str, str] = {
            **{name: value for name, value in defaults.items() if name.lower() not in overridden},
            **given,
        }
        self._token_sent = "authorization" in overridden

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    # -- helpers that need no platform -------------------------------------------------

    def create_tags(self, tags: Iterable[Mapping[str, Any]]) -> list[Tag]:
        """:class:`Tag` objects from ``connect(...)["tags"]`` (``{"id", "attributes"}`` each)."""
        return [Tag.from_wire(record) for record in tags]

    def create_request_data(
        self,
        tag_id: TagIdsInput,
        from_time: TimeInput | None = None,
        to_time: TimeInput | None = None,
        max_count: int | None = None,
        time_step: int | timedelta | None = None,
        value: ValuesInput | None = None,
        format_param: bool | None = None,
        actual: bool | None = None,
    ) -> RequestData:
        """A validated :class:`RequestData` for ``get_data``; ``None`` leaves a parameter out."""
        return RequestData.model_validate(
            {
                "tag_id": tag_id,
                "from_time": from_time,
                "to_time": to_time,
                "max_count": max_count,
                "time_step": time_step,
                "value": value,
                "format_param": format_param,
                "actual": actual,
            }
        )

    # -- request building --------------------------------------------------------------

    def build_connect(self, data_source_id: str | int) -> Call:
        """The call of ``connect``: ``{"id": "<source id>"}``."""
        if isinstance(data_source_id, bool) or not isinstance(data_source_id, str | int):
            raise ValueError(f"bad data source id {data_source_id!r}: expected a string")
        source = str(data_source_id)
        if not source:
            raise ValueError("bad data source id: empty string")
        return Call.post(self.base_url + CONNECT_PATH, {"id": source}, token_sent=self._token_sent)

    def build_set_data(self, tags: Tag | Iterable[Tag]) -> Iterator[Batch]:
        """Snapshot every tag's buffer now; the batches come lazily, one per request.

        Each batch holds at most ``max_points_per_request`` points; a tag's points are
        split across batches when needed, in the order they were added. Raises
        :class:`NoDataToSend` at once when no tag holds a point.
        """
        snapshot = _Snapshot(_unique_tags(tags))
        if not snapshot.points:
            raise NoDataToSend(f"no buffered points in the {len(snapshot.tags)} tag(s) given")
        url = self.base_url + SET_DATA_PATH
        return _pack(url, self.max_points_per_request, snapshot, self._token_sent)

    def build_get_data(self, request: RequestData | None, changes: Mapping[str, Any]) -> Call:
        """The call of ``get_data``: ``request`` with ``changes`` applied (on a copy)."""
        if request is None:
            if "tag_id" not in changes:
                raise TypeError("get_data() needs a RequestData or tag_id=")
            request = RequestData.model_validate(dict(changes))
        elif not isinstance(request, RequestData):
            raise TypeError(f"get_data() takes a RequestData, not {type(request).__name__}")
        elif changes:
            request = request.with_changes(changes)
        payload = {"params": request.to_params()}
        return Call.post(self.base_url + GET_DATA_PATH, payload, token_sent=self._token_sent)

    # -- reply parsing -----------------------------------------------------------------

    def parse_connect(self, call: Call, reply: Reply) -> dict[str, Any]:
        """The whole connect answer (``attributes``, ``tags``, ...) once checked.

        Raises :class:`DataSourceNotActive` when ``attributes.smtActive`` is false.
        """
        body = parse_reply(call, reply)
        attributes = body.get("attributes", {})
        if not isinstance(attributes, dict):
            raise _malformed(call, reply, "attributes is not an object")
        if not attributes.get("smtActive", True):
            source = call.json.get("id")
            raise DataSourceNotActive(
                ErrorCode.DATA_SOURCE_NOT_ACTIVE, f"data source {source!r} is not active"
            )
        tags = body.get("tags")
        if not isinstance(tags, list):
            raise _malformed(call, reply, "tags is not a list")
        try:
            self.create_tags(tags)
        except ValueError as exc:
            raise _malformed(call, reply, str(exc)) from exc
        return body

    def parse_get_data(self, call: Call, reply: Reply) -> list[dict[str, Any]]:
        """The answer's ``data`` list, verbatim: ``[{"tagId", "excess", "data": [...]}, ...]``."""
        data = parse_reply(call, reply).get("data")
        if not isinstance(data, list):
            raise _malformed(call, reply, "data is not a list")
        return data

    # -- retries -----------------------------------------------------------------------

    def retry_delay(
        self, attempt: int, *, status_code: int | None = None, error: Exception | None = None
    ) -> float | None:
        """Seconds to wait before retrying after failed attempt number ``attempt`` (0-based).

        ``None`` means do not retry: the outcome is final (a 2xx-4xx status, an error not
        worth retrying, or no retries left). Connection errors, timeouts and 5xx statuses
        are retried up to ``retries`` times, waiting ``backoff * 2**attempt`` seconds.
        """
        if error is not None:
            retryable = isinstance(error, RETRYABLE_ERRORS)
        else:
            retryable = status_code is not None and 500 <= status_code <= 599
        if not retryable or attempt >= self.retries:
            return None
        return float(min(self.backoff * 2**attempt, MAX_BACKOFF))

    def transport_error(self, call: Call, error: Exception, attempts: int) -> TransportError:
        """The :class:`TransportError` for an httpx error that ended the call."""
        kind = type(error).__name__
        return TransportError(
            f"{call.method} {call.url}: {kind}: {error} (after {attempts} attempt(s))"
        )


class InThread(Generic[T]):
    """``function(*args)`` running in a thread of its own (a sync client's call in flight);
    ``result()`` waits for it and returns its value or raises its exception."""

    def __init__(self, function: Callable[..., T], *args: object) -> None:
        self._function, self._args = function, args
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="meterhub-client", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._function(*self._args)
        except BaseException as exc:  # handed to whoever waits
            self._error = exc

    def cancel(self) -> None:
        """Nothing: a thread cannot be stopped; whatever it returns is left unread."""

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return cast(T, self._value)


def _unique_tags(tags: Tag | Iterable[Tag]) -> list[Tag]:
    """The tags, each once, in order; a single tag is a list of one."""
    if isinstance(tags, Tag):
        return [tags]
    unique: dict[int, Tag] = {}
    for tag in tags:
        if not isinstance(tag, Tag):
            raise TypeError(f"set_data() takes Tag objects, not {type(tag).__name__}")
        unique.setdefault(id(tag), tag)
    return list(unique.values())


class _Snapshot:
    """The buffered points of ``tags`` at one instant: one after the other in ``points``,
    ``counts[i]`` of them for ``tags[i]``, numbered from ``firsts[i]``."""

    def __init__(self, tags: list[Tag]) -> None:
        self.tags = tags
        self.points: list[WirePoint] = []
        self.firsts, self.counts = array("q"), array("q")
        for tag in tags:
            before = len(self.points)
            self.firsts.append(tag._snapshot_into(self.points))
            self.counts.append(len(self.points) - before)


def _pack(url: str, limit: int, snapshot: _Snapshot, token_sent: bool) -> Iterator[Batch]:
    """Batches of at most ``limit`` points, filled greedily in tag order, each one's body
    written as it is taken (``token_sent``: see ``Call``)."""
    points = snapshot.points
    records: list[bytes] = []
    tags: list[Tag] = []
    firsts, lasts = array("q"), array("q")
    count = offset = 0
    for tag, first, size in zip(snapshot.tags, snapshot.firsts, snapshot.counts, strict=True):
        start = 0
        head = ('{"tagId":' + tag._wire_json() + ',"data":').encode("utf-8")
        while start < size:
            stop = min(size, start + limit - count)
            records.append(head + points_json(points[offset + start : offset + stop]) + b"}")
            tags.append(tag)
            firsts.append(first + start)
            lasts.append(first + stop - 1)
            count += stop - start
            start = stop
            if count == limit:
                yield _batch(url, records, tags, firsts, lasts, count, token_sent)
                records, tags, firsts, lasts, count = [], [], array("q"), array("q"), 0
        offset += size
    if count:
        yield _batch(url, records, tags, firsts, lasts, count, token_sent)


def _batch(
    url: str,
    records: list[bytes],
    tags: list[Tag],
    firsts: array[int],
    lasts: array[int],
    count: int,
    token_sent: bool,
) -> Batch:
    content = b'{"data":[' + b",".join(records) + b"]}"
    call = Call.post_json(url, content, token_sent=token_sent)
    return Batch(call, tags, firsts, lasts, count)
