"""meterhub-client: the connector SDK of the meterhub platform.

A connector gathers readings from a source meterhub cannot poll itself and pushes them
to the platform as points (tag, time, value, quality); it can read history back. The
same API exists twice: :class:`DataInteractionClient` (blocking, thread-safe) and
:class:`AsyncDataInteractionClient` (``async``/``await``, asyncio).

Quick start::

    from meterhub_client import DataInteractionClient

    with DataInteractionClient("http://127.0.0.1:8000") as client:
        conn = client.connect("1")                   # the data source's metadata and tags
        tags = client.create_tags(conn["tags"])      # [Tag, ...]
        tags[0].add_data("2018-06-26 10:15:00", 1.5)  # buffered, thread-safe
        tags[0].update([{"x": 1718000000000000, "y": 2, "q": 0}])
        written = client.set_data(tags)              # buffers are cleared once acknowledged
        history = client.get_data(tag_id=tags[0].id, from_time=0, max_count=100)

    async with AsyncDataInteractionClient("http://127.0.0.1:8000") as client:
        conn = await client.connect("1")
        ...

Times (``x``, ``from_time``, ``to_time``): an aware ``datetime`` (sent as µs since the
epoch), a naive ``datetime``/``date`` or ISO string without offset (the platform reads it
in its own timezone), int µs since the epoch, or an ISO 8601 string with offset.
Values (``y``): int, float, bool, ``Decimal`` or a numpy scalar; NaN and infinities are
refused. Bad times and values raise ``ValueError`` when added, never when sent.

Errors: see :mod:`meterhub_client.exceptions` (``MeterhubClientError`` is the base).
Connection errors, timeouts and 5xx answers are retried with exponential backoff;
``set_data`` sends at most ``max_points_per_request`` points per request.

Wire protocol: ``POST {base}/smt/dataSources/connect``, ``/smt/data/set`` and
``/smt/data/get``, each with a JSON body; answers carry ``{"error": {"id": 0}}`` on success.
"""

from meterhub_client._async import AsyncDataInteractionClient
from meterhub_client._sync import DataInteractionClient
from meterhub_client._version import __version__
from meterhub_client.exceptions import (
    AuthenticationError,
    DataSourceNotActive,
    DataSourceNotFound,
    ErrorCode,
    MeterhubClientError,
    NoDataToSend,
    ServerResponseError,
    TagNotFound,
    TransportError,
)
from meterhub_client.request_data import RequestData
from meterhub_client.tags import Tag, TagId

__all__ = [
    "AsyncDataInteractionClient",
    "AuthenticationError",
    "DataInteractionClient",
    "DataSourceNotActive",
    "DataSourceNotFound",
    "ErrorCode",
    "MeterhubClientError",
    "NoDataToSend",
    "RequestData",
    "ServerResponseError",
    "Tag",
    "TagId",
    "TagNotFound",
    "TransportError",
    "__version__",
]
